//! The heat pump pages' and API's connection test: an entry (as the inventory
//! checks it) read once, as `hpflow read` reads a device, with what came back
//! in engineering units or why nothing did.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_yaml::Value as Yaml;

use crate::event::Value;
use crate::modbus::{one_off_device, plan_options, read_device_once, Failure, Reply, TcpConnector};
use crate::registers::RegisterMap;
use crate::yaml::scalar;

/// How long a connect or a request may take when the entry has no `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// What one read of a device came to.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionTest {
    /// Values read and no failure.
    pub ok: bool,
    /// `tcp host:port`.
    pub target: String,
    pub unit_id: u8,
    pub model: String,
    pub requests_sent: usize,
    pub requests_answered: usize,
    pub fields_read: usize,
    pub fields_total: usize,
    /// Field → engineering value (enum codes as their labels), in the model's order.
    pub values: Vec<(String, Value)>,
    pub error: Option<Failure>,
}

impl ConnectionTest {
    /// The values as a JSON object (field → value).
    pub fn values_json(&self) -> serde_json::Map<String, serde_json::Value> {
        (self.values.iter())
            .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
            .collect()
    }
}

/// Reads the device of `entry` (checked: its model is in `map`, `modbus` is tcp) once.
pub async fn test(map: &RegisterMap, entry: &Yaml) -> Option<ConnectionTest> {
    let model = map.model(&entry.get("model").and_then(scalar)?)?;
    let mb = entry.get("modbus")?;
    let host = mb.get("host").and_then(scalar)?;
    let port = mb
        .get("port")
        .and_then(Yaml::as_u64)
        .and_then(|p| u16::try_from(p).ok())?;
    let unit_id = mb
        .get("unit_id")
        .and_then(Yaml::as_u64)
        .and_then(|u| u8::try_from(u).ok())?;
    let timeout = (mb.get("timeout").and_then(Yaml::as_f64))
        .and_then(|t| Duration::try_from_secs_f64(t).ok())
        .unwrap_or(DEFAULT_TIMEOUT);
    let connector = TcpConnector { host, port };
    let target = format!("tcp {}:{}", connector.host, connector.port);
    let plan = model.plan(&plan_options(None, None, Duration::from_secs(3600)));
    let mut device = one_off_device("test", unit_id, plan, timeout);
    let outcome = read_device_once(Box::new(connector), &mut device).await;
    let schema = model.schema();
    let raw: BTreeMap<&str, &Value> = outcome.fields.iter().map(|(k, v)| (&**k, v)).collect();
    let values: Vec<(String, Value)> = (schema.fields.iter())
        .filter_map(|meta| Some((meta.name.to_string(), meta.engineering(raw.get(&*meta.name)?))))
        .collect();
    let error = outcome.failure(unit_id);
    Some(ConnectionTest {
        ok: error.is_none() && !values.is_empty(),
        target,
        unit_id,
        model: schema.model.clone(),
        requests_sent: outcome.requests.len(),
        requests_answered: (outcome.requests.iter())
            .filter(|(_, r)| matches!(r, Reply::Data(_)))
            .count(),
        fields_read: values.len(),
        fields_total: schema.fields.len(),
        values,
        error,
    })
}
