//! `prometheus`: a scrape endpoint with the latest value of every numeric field of
//! every device, and hpflow's own health metrics.
//!
//! ```toml
//! [sinks.metrics]
//! type = "prometheus"
//! inputs = ["states"]
//! address = "127.0.0.1:9464"    # the default; `/metrics` is served there
//! namespace = "heatpump"         # prefix of the device series
//! expire_after = "5m"            # a device silent this long loses its gauge and state series
//! include_internal = true        # add hpflow_* metrics
//! units = "base"                 # seconds, joules, watts; or "register": the map's units
//! ```
//!
//! # Series
//! One series per numeric field and device, labelled `heat_pump_id` (the device
//! id unless a tag sets it), `name`, `location`, `model` and the device's other
//! tags (names sanitised: characters outside `[a-zA-Z0-9_]` become `_`).
//! - A field is `<namespace>_<field>_<unit>` (see [`names`] for the unit
//!   suffixes and `units = "base"`). Bools are 0/1. Text fields are left out.
//! - `kind = counter` fields are typed `counter` and end in `_total`. They never
//!   vanish or reset: a poll that misses one, or the device's expiry, keeps the
//!   last value.
//! - Enums (fields with labels) are state sets: one series per label, with the
//!   label `<field>="<label>"`, 1 for the current one and 0 for the others (a
//!   code without a label shows as its number).
//! - `<namespace>_state_since_seconds{field="…"}`: the Unix time since which each
//!   operating state holds its value (from `state_diff`; absent when unknown).
//! - `<namespace>_up`: 1 while the device's last poll brought values, is
//!   younger than `expire_after`, and its Modbus source does not report it down
//!   (read from the sources' health registry at each scrape); else 0, for as
//!   long as hpflow runs.
//!
//! Each scrape shows the last poll only: a field the last poll lacked (a failed
//! read) has no sample, so Prometheus marks it stale instead of repeating an old
//! value. Devices whose last poll is older than `expire_after` keep only `up`
//! (at 0) and their counters.
//!
//! HELP texts are the register map's descriptions. No sample carries a timestamp
//! (see `render.rs`). Metric names that clash (a field named `up`, or one name
//! with two types across models) skip the later field and log a warning once.
//!
//! The text format 0.0.4 is the default; OpenMetrics 1.0 (with `# UNIT` and
//! `# EOF`) is served when the `Accept` header prefers
//! `application/openmetrics-text`, as Prometheus' does.

mod config;
mod exposition;
mod internal;
pub mod names;
mod plan;
mod render;
mod server;

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;

pub use config::{PrometheusConfig, Units};
pub use exposition::Format;
pub use render::{system_clock, Clock, Exporter, HealthSource};
pub use server::{router, BindError, Prometheus};
