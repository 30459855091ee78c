//! Sinks: protocol nouns that deliver events out of hpflow.
//!
//! Adding one: write its module, add a row to the table below.

pub mod console;
pub mod dashboard;
pub mod file;
pub mod influxdb;
pub mod mqtt;
pub mod prometheus;

use crate::component::{components, Kind};

components! {
    /// Every sink type, by its `type` in a pipeline file.
    pub enum SinkConfig: Kind::Sink => dyn Sink {
        "console" => Console(console::ConsoleConfig),
        // Boxed: the largest configs by far (clippy::large_enum_variant).
        "dashboard" => Dashboard(Box<dashboard::DashboardConfig>),
        "file" => File(file::FileConfig),
        "influxdb" => Influxdb(Box<influxdb::InfluxdbConfig>),
        "mqtt" => Mqtt(Box<mqtt::MqttConfig>),
        "prometheus" => Prometheus(prometheus::PrometheusConfig),
    }
}
