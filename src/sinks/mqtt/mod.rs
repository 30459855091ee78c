//! `mqtt`: publishes each device's newest state to an MQTT broker, with its
//! availability and Home Assistant discovery configs, over MQTT 3.1.1 (the
//! default) or MQTT 5 (`protocol = "5"`); both through rumqttc, behind one
//! small face (`client`) so the driver is written once.
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
//!   `<discovery_prefix>/status` says `online`.
//!
//! # Taking back what is no longer configured
//! What the sink announced is kept in `<data_dir>/mqtt/<sink id>.json`
//! (`ledger`). A field dropped from `fields` or from the model loses its
//! config (an empty retained message) when its device polls next; a pump no
//! source polls any more (taken out of the inventory, while hpflow ran or
//! while it was down) loses its configs, state and availability once it has
//! been unknown to every source and silent for 10 s. A config of ours the
//! broker still holds for a field a device no longer has is removed too, even
//! without the ledger (an older hpflow's, a lost data folder).
//!
//! # Delivery
//! The sink never waits for the broker: it keeps the newest state of each
//! device and hands it to the client while connected; when the broker is away
//! older states are replaced by newer ones, and after a reconnect (backoff
//! from 0.5 s to 30 s) each device's newest state is published.

mod client;
mod config;
mod ledger;
pub mod payload;
mod run;
mod settings;

#[cfg(test)]
mod tests;

pub use config::{prefix_problem, MqttConfig};
pub use ledger::ledger_path;
pub use settings::Protocol;
