//! Sinks: protocol nouns that deliver events out of hpflow.
//!
//! Adding one: write its module, add a variant here.

pub mod console;
pub mod dashboard;
pub mod file;
pub mod influxdb;
pub mod prometheus;

use serde::Deserialize;

use crate::config::{BuildContext, Check, ComponentConfig, Kind};
use crate::topology::{BoxError, Sink};

#[derive(Debug, Clone)]
pub enum SinkConfig {
    Console(console::ConsoleConfig),
    Dashboard(Box<dashboard::DashboardConfig>),
    File(file::FileConfig),
    // Boxed: the largest config by far (clippy::large_enum_variant).
    Influxdb(Box<influxdb::InfluxdbConfig>),
    Prometheus(prometheus::PrometheusConfig),
}

impl ComponentConfig for SinkConfig {
    const KIND: Kind = Kind::Sink;
    const TYPES: &'static [&'static str] = &["console", "dashboard", "file", "influxdb", "prometheus"];

    fn parse(ty: &str, de: toml::de::ValueDeserializer<'_>) -> Option<Result<Self, toml::de::Error>> {
        Some(match ty {
            "console" => console::ConsoleConfig::deserialize(de).map(Self::Console),
            "dashboard" => dashboard::DashboardConfig::deserialize(de).map(|c| Self::Dashboard(Box::new(c))),
            "file" => file::FileConfig::deserialize(de).map(Self::File),
            "influxdb" => influxdb::InfluxdbConfig::deserialize(de).map(|c| Self::Influxdb(Box::new(c))),
            "prometheus" => prometheus::PrometheusConfig::deserialize(de).map(Self::Prometheus),
            _ => return None,
        })
    }

    fn type_name(&self) -> &'static str {
        match self {
            Self::Console(_) => "console",
            Self::Dashboard(_) => "dashboard",
            Self::File(_) => "file",
            Self::Influxdb(_) => "influxdb",
            Self::Prometheus(_) => "prometheus",
        }
    }

    fn check(&self, cx: &mut Check<'_>) {
        match self {
            Self::Console(c) => c.check(cx),
            Self::Dashboard(c) => c.check(cx),
            Self::File(c) => c.check(cx),
            Self::Influxdb(c) => c.check(cx),
            Self::Prometheus(c) => c.check(cx),
        }
    }
}

impl SinkConfig {
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Sink>, BoxError> {
        match self {
            Self::Console(c) => c.build(cx),
            Self::Dashboard(c) => c.build(cx),
            Self::File(c) => c.build(cx),
            Self::Influxdb(c) => c.build(cx),
            Self::Prometheus(c) => c.build(cx),
        }
    }
}
