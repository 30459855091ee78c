//! Where benches/dashboard_overview.rs includes the dashboard fixture from: it
//! lives in tests/support/dashboard.rs, with the rest of the tests' plumbing.

#[path = "../support/dashboard.rs"]
mod dashboard;

pub use dashboard::*;
