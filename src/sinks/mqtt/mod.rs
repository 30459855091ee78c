//! `mqtt`: publishes each device's newest state to an MQTT broker, with its
//! availability and Home Assistant discovery configs.
//!
//! ```toml
//! [sinks.mqtt]
//! type = "mqtt"
//! inputs = ["states"]
//! host = "broker.local"
//! username = "hpflow"
//! password = "${MQTT_PASSWORD}"
//! ```
//!
//! # Topics (prefix `hpflow` by default)
//! - `<prefix>/status`: `online` while hpflow is connected, `offline` (the last
//!   will, and on a clean stop); retained.
//! - `<prefix>/<device>/state`: one JSON object per poll, field → value in
//!   engineering units, enum labels as text, bools `true`/`false`; retained.
//!   The same values `hpflow read --json` prints.
//! - `<prefix>/<device>/availability`: `online`, or `offline` when the
//!   device's source reports it down or no poll came for `offline_after`;
//!   retained.
//! - `<prefix>/<device>/<field>` with `per_field_topics`: the value alone.
//! - `<discovery_prefix>/<sensor|binary_sensor>/<prefix>_<device>/<field>/config`:
//!   Home Assistant discovery (see [`payload`] for the mapping), and
//!   `<discovery_prefix>/binary_sensor/<prefix>/connection/config` for hpflow
//!   itself, the `via_device` of every heat pump. Published again when
//!   `<discovery_prefix>/status` says `online`. A config of ours the broker
//!   still holds for a field a device no longer publishes is removed (an
//!   empty retained message) once that device has polled.
//!
//! # Delivery
//! The sink never waits for the broker: it keeps the newest state of each
//! device and hands it to the client while connected; when the broker is away
//! older states are replaced by newer ones, and after a reconnect (backoff
//! from 0.5 s to 30 s) each device's newest state is published.

mod config;
pub mod payload;
mod run;

#[cfg(test)]
mod tests;

pub use config::{prefix_problem, MqttConfig};
