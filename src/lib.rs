//! hpflow: polls heat pumps over Modbus and delivers their values to InfluxDB,
//! Prometheus and a live dashboard. See ARCHITECTURE.md for the map.

pub mod commands;
pub mod component;
pub mod config;
pub mod diagnostic;
pub mod display;
pub mod event;
pub mod fsutil;
pub mod hpmanager;
pub mod interpolate;
pub mod localtime;
pub mod modbus;
pub mod registers;
pub mod sim;
pub mod sinks;
pub mod sources;
pub mod telemetry;
pub mod topology;
pub mod transforms;
pub(crate) mod yaml;

/// The integration tests' loopback helpers (tests/support/net.rs), for the
/// sinks' own tests that start the same real servers.
#[cfg(test)]
#[path = "../tests/support/net.rs"]
mod test_net;
