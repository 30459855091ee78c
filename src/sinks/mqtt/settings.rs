//! What the running `mqtt` sink is set up with: the checked configuration
//! ([`Settings`]) and the protocol version, shared by the driver (`run`) and
//! the client face (`client`) below the configuration that makes them.

use std::sync::Arc;
use std::time::Duration;

use super::payload::Topics;

/// The MQTT versions the sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// MQTT 3.1.1 (protocol level 4): every broker speaks it.
    #[default]
    V311,
    /// MQTT 5.
    V5,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V311 => "3.1.1",
            Protocol::V5 => "5",
        }
    }
}

/// Everything the sink runs with, from its config and what its check read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub id: Arc<str>,
    pub host: String,
    pub port: u16,
    pub protocol: Protocol,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive: Duration,
    pub qos: u8,
    pub prefix: String,
    pub per_field_topics: bool,
    /// The discovery prefix, when discovery is on.
    pub discovery: Option<String>,
    pub fields: Option<Vec<String>>,
    pub offline_after: Duration,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Settings {
    pub(crate) fn topics(&self) -> Topics {
        Topics {
            prefix: self.prefix.clone(),
            discovery: self.discovery.clone(),
        }
    }
}
