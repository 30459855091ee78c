//! `PrometheusConfig`: what a pipeline file says about a `prometheus` sink.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::component::{parse_listen_address, BoxError, BuildContext, Check, Claim, Sink};

use super::names::is_valid_prefix;
use super::render::{system_clock, Exporter};
use super::server::Prometheus;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Where `/metrics` is served (IP:PORT).
    #[serde(default = "default_address")]
    pub address: String,
    /// Prefix of every device series (`heatpump` → `heatpump_up`); empty for none.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// A device whose last poll is older than this loses its gauge and state
    /// series (its counters and its `up`, at 0, stay).
    #[serde(default = "default_expire_after", with = "crate::component::duration")]
    pub expire_after: Duration,
    /// Adds hpflow's own `hpflow_*` metrics (components, Modbus, InfluxDB).
    #[serde(default = "default_include_internal")]
    pub include_internal: bool,
    /// `register`: values in the register map's units (`_kilowatt_hours`,
    /// `_hours`); `base`: time, energy and power in seconds, joules and watts.
    #[serde(default)]
    pub units: Units,
    /// A request's headers must arrive within this, and a kept-alive
    /// connection that sends no new request within it is closed.
    #[serde(
        default = "crate::component::http::default_header_read_timeout",
        with = "crate::component::duration"
    )]
    pub header_read_timeout: Duration,
    /// Connections open at once, at most; past it new ones are closed at once.
    #[serde(default = "crate::component::http::default_max_connections")]
    pub max_connections: usize,
}

/// Which units the series are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Units {
    /// As the register map has them, so values match the device's display and InfluxDB.
    Register,
    /// Prometheus base units (the convention, and what `promtool check metrics`
    /// accepts without a lint): the default.
    #[default]
    Base,
}

pub fn default_address() -> String {
    "127.0.0.1:9464".into()
}

pub fn default_namespace() -> String {
    "heatpump".into()
}

pub fn default_expire_after() -> Duration {
    Duration::from_secs(5 * 60)
}

pub fn default_include_internal() -> bool {
    true
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            address: default_address(),
            namespace: default_namespace(),
            expire_after: default_expire_after(),
            include_internal: default_include_internal(),
            units: Units::default(),
            header_read_timeout: crate::component::http::DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: crate::component::http::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl PrometheusConfig {
    fn limits(&self) -> crate::component::http::HttpLimits {
        crate::component::http::HttpLimits {
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
        }
    }

    pub fn check(&self, cx: &mut Check<'_>) {
        crate::component::http::check_limits(cx, self.limits());
        if let Some(addr) = parse_listen_address(cx, "address", &self.address) {
            cx.claim(Some("address"), Claim::Listen(addr));
        }
        if !is_valid_prefix(&self.namespace) {
            cx.error(
                Some("namespace"),
                format!(
                    "`{}` is not a metric name prefix: use letters, digits and `_`, not starting with a digit",
                    self.namespace
                ),
            );
        } else if self.namespace == "hpflow" {
            cx.error(
                Some("namespace"),
                "`hpflow` is reserved for hpflow's own metrics; keep `heatpump` or pick another",
            );
        }
        if self.expire_after < Duration::from_secs(1) {
            cx.error(
                Some("expire_after"),
                "`expire_after` must be at least 1s (it should span a few poll intervals)",
            );
        }
    }

    /// Binds the listen address now, so a port in use fails the start with the
    /// component named, rather than later in a task.
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Sink>, BoxError> {
        let address: SocketAddr = self
            .address
            .parse()
            .map_err(|_| format!("`{}` is not a listen address", self.address))?;
        let internal = self.include_internal.then(|| cx.registry.clone());
        let exporter = Exporter::new(&self.namespace, self.expire_after, system_clock(), internal)
            .with_base_units(self.units == Units::Base)
            .with_health({
                let registry = cx.registry.clone();
                Arc::new(move || registry.devices().snapshot())
            });
        let exporter = Arc::new(exporter);
        Ok(Box::new(
            Prometheus::bind(cx.id, address, exporter)?.with_limits(self.limits()),
        ))
    }
}
