//! The data model: what flows through a pipeline.
//!
//! An [`Event`] is either one poll of one device ([`Metric`]) or one flip of one
//! operating state ([`StateChange`]). Both sit behind an `Arc`, so fanning an event
//! out to several components costs a reference-count increment; a transform that
//! changes an event copies it only when someone else still holds it
//! (`Arc::make_mut`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

mod fields;

pub use fields::{Fields, Slots};

/// One field value. Integers and floats are kept apart because InfluxDB fixes a
/// field's type on first write and rejects a later write of the other type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(Arc<str>),
}

impl Value {
    /// The value as a number, for sinks that only take numbers (bools as 0/1).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Text(_) => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Text(s) => f.write_str(s),
        }
    }
}

/// How a field behaves over time; sinks pick their idiom from it
/// (Prometheus gauge, counter or state set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    #[default]
    Gauge,
    /// Only grows (energy totals, runtimes); resets are device events, not ours.
    Counter,
    /// An operating state: a bool, a bitmap bit or an enum.
    State,
}

/// The value type a field always has once it leaves the component that sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    Int,
    Float,
    Bool,
    Text,
}

/// Shared description of one field of a model: what it means and how to show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldMeta {
    pub name: Arc<str>,
    pub unit: Option<String>,
    pub description: Option<String>,
    pub kind: FieldKind,
    pub value_type: ValueType,
    /// Raw value × scale + offset gives the engineering value (the `scale` transform applies it).
    pub scale: f64,
    pub offset: f64,
    /// Decimals the engineering value carries (from the register map or derived from `scale`).
    pub decimals: Option<u8>,
    /// Enum labels by raw code.
    pub labels: Option<BTreeMap<i64, String>>,
    /// The register this field is read from, for documentation (`hpflow read`, HELP texts).
    pub source: Option<String>,
}

impl FieldMeta {
    /// A plain gauge with no scaling: the description for fields that a component
    /// makes up (tests, derived values).
    pub fn gauge(name: &str, value_type: ValueType) -> Self {
        FieldMeta {
            name: name.into(),
            unit: None,
            description: None,
            kind: FieldKind::Gauge,
            value_type,
            scale: 1.0,
            offset: 0.0,
            decimals: None,
            labels: None,
            source: None,
        }
    }

    /// True when the `scale` transform would change this field's raw value.
    pub fn needs_scaling(&self) -> bool {
        self.scale != 1.0 || self.offset != 0.0
    }

    /// A raw value in engineering units: its enum label as text, or
    /// raw × scale + offset rounded to the field's decimals (bools and text as they are).
    pub fn engineering(&self, raw: &Value) -> Value {
        if let Some(label) = self.label(raw) {
            return Value::Text(label.into());
        }
        let x = match raw {
            Value::Int(i) if self.needs_scaling() => *i as f64,
            Value::Float(f) => *f,
            _ => return raw.clone(),
        };
        let v = x * self.scale + self.offset;
        Value::Float(match self.decimals {
            Some(d) => {
                let f = 10f64.powi(i32::from(d));
                (v * f).round() / f
            }
            None => v,
        })
    }

    /// The enum label for a raw code, if the field has labels.
    pub fn label(&self, value: &Value) -> Option<&str> {
        let code = value.as_i64()?;
        self.labels.as_ref()?.get(&code).map(String::as_str)
    }
}

/// The descriptions of every field a model can produce, shared by all events of
/// the devices of that model.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Schema {
    pub model: String,
    pub fields: Vec<Arc<FieldMeta>>,
    /// The field names by rank in name order (where a poll's values sit) and
    /// by position in `fields`.
    #[serde(skip)]
    slots: Arc<Slots>,
    /// Set by the `scale` transform: values are in engineering units now.
    pub scaled: bool,
    /// Who makes the model's devices, when the register map says
    /// (`manufacturer`); transforms that rebuild a schema keep it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
}

impl Schema {
    pub fn new(model: impl Into<String>, fields: Vec<FieldMeta>) -> Self {
        let fields: Vec<Arc<FieldMeta>> = fields.into_iter().map(Arc::new).collect();
        let mut schema = Schema {
            model: model.into(),
            fields,
            slots: Slots::empty(),
            scaled: false,
            manufacturer: None,
        };
        schema.reindex();
        schema
    }

    /// Rebuilds the slots (the name index) after `fields` was changed in place.
    pub fn reindex(&mut self) {
        self.slots = Arc::new(Slots::new(self.fields.iter().map(|f| &f.name)));
    }

    /// Empty fields that store this schema's fields by position.
    pub fn new_fields<V>(&self) -> Fields<V> {
        Fields::with_slots(self.slots.clone())
    }

    /// The name index: each field's rank in name order, where a poll's values sit.
    pub fn slots(&self) -> &Arc<Slots> {
        &self.slots
    }

    pub fn field(&self, name: &str) -> Option<&Arc<FieldMeta>> {
        self.slots.position(name).map(|i| &self.fields[i])
    }
}

/// Tags of a device: heat_pump_id, name, location, model and any the user adds.
pub type Tags = BTreeMap<String, String>;

/// One poll of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The device id (also the `heat_pump_id` tag unless renamed).
    pub device: Arc<str>,
    pub tags: Arc<Tags>,
    /// When the poll was due to start (the schedule's instant, not when it finished).
    pub time: SystemTime,
    pub fields: Fields,
    pub schema: Arc<Schema>,
    /// For each tracked state field: since when it holds its current value
    /// (`None`: unknown, it was first seen without history). Set by `state_diff`.
    pub since: Fields<Option<SystemTime>>,
}

impl Metric {
    pub fn new(device: &str, tags: Arc<Tags>, time: SystemTime, schema: Arc<Schema>) -> Self {
        Metric {
            device: device.into(),
            tags,
            time,
            fields: schema.new_fields(),
            since: schema.new_fields(),
            schema,
        }
    }

    pub fn meta(&self, field: &str) -> Option<&Arc<FieldMeta>> {
        self.schema.field(field)
    }
}

/// One operating state of one device changed value.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    pub device: Arc<str>,
    pub tags: Arc<Tags>,
    pub field: Arc<str>,
    /// `None` when the previous value is unknown (never happens for a flip
    /// `state_diff` saw, kept for completeness of restored history).
    pub from: Option<Value>,
    pub to: Value,
    pub at: SystemTime,
    /// Since when `from` held, if known: the length of the state that ended.
    pub from_since: Option<SystemTime>,
    pub meta: Option<Arc<FieldMeta>>,
}

/// What travels on the pipeline's channels.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Metric(Arc<Metric>),
    StateChange(Arc<StateChange>),
}

impl Event {
    pub fn device(&self) -> &str {
        match self {
            Event::Metric(m) => &m.device,
            Event::StateChange(s) => &s.device,
        }
    }

    pub fn as_metric(&self) -> Option<&Metric> {
        match self {
            Event::Metric(m) => Some(m),
            Event::StateChange(_) => None,
        }
    }
}

impl From<Metric> for Event {
    fn from(m: Metric) -> Self {
        Event::Metric(Arc::new(m))
    }
}

impl From<StateChange> for Event {
    fn from(s: StateChange) -> Self {
        Event::StateChange(Arc::new(s))
    }
}

impl Event {
    /// The event as one JSON object (the `console` and `file` sinks' format).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Map};
        match self {
            Event::Metric(m) => {
                let fields: Map<String, serde_json::Value> = m
                    .fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::to_value(v).unwrap_or_default()))
                    .collect();
                let since: Map<String, serde_json::Value> = m
                    .since
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.map(rfc3339).into()))
                    .collect();
                let mut o = json!({
                    "type": "metric",
                    "device": &*m.device,
                    "time": rfc3339(m.time),
                    "tags": &*m.tags,
                    "fields": fields,
                });
                if !since.is_empty() {
                    o["since"] = since.into();
                }
                o
            }
            Event::StateChange(s) => json!({
                "type": "state_change",
                "device": &*s.device,
                "tags": &*s.tags,
                "field": &*s.field,
                "from": s.from,
                "to": s.to,
                "at": rfc3339(s.at),
                "from_since": s.from_since.map(rfc3339),
            }),
        }
    }
}

/// RFC 3339 UTC with milliseconds, the format of every time hpflow prints.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Milliseconds since the Unix epoch, for logs and JSON (0 for times before it).
pub fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloning_an_event_shares_the_poll() {
        let schema = Arc::new(Schema::new("m", vec![FieldMeta::gauge("t", ValueType::Float)]));
        let mut m = Metric::new("hp1", Arc::default(), SystemTime::UNIX_EPOCH, schema);
        m.fields.insert("t".into(), Value::Float(1.5));
        let a = Event::from(m);
        let b = a.clone();
        match (&a, &b) {
            (Event::Metric(x), Event::Metric(y)) => assert!(Arc::ptr_eq(x, y)),
            _ => unreachable!(),
        }
    }

    #[test]
    fn enum_label_is_found_by_raw_code() {
        let mut meta = FieldMeta::gauge("mode", ValueType::Int);
        meta.labels = Some(BTreeMap::from([(3, "Comfort mode".to_string())]));
        assert_eq!(meta.label(&Value::Int(3)), Some("Comfort mode"));
        assert_eq!(meta.label(&Value::Int(9)), None);
    }
}
