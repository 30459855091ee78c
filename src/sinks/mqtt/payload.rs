//! What the `mqtt` sink publishes, as pure functions of an event and its
//! schema: topics, the state JSON and Home Assistant discovery configs.
//!
//! # Home Assistant mapping
//! Units are the register map's (HPManager's spellings) mapped to the ones HA
//! accepts for the device class ([`ha_unit`]):
//!
//! | map unit | HA unit | device class | state class |
//! |---|---|---|---|
//! | `celsius` | °C | temperature | measurement |
//! | `kelvin` | K | (none: a temperature *difference*; HA would convert it as a temperature) | measurement |
//! | `bar` | bar | pressure | measurement |
//! | `l/min`, `m3/h` | L/min, m³/h | volume_flow_rate | measurement |
//! | `w`, `kw` | W, kW | power | measurement |
//! | `wh`, `kwh`, `mwh` | Wh, kWh, MWh | energy | total_increasing |
//! | `m3` | m³ | volume | total_increasing |
//! | `seconds`, `minutes`, `hours`, `days` | s, min, h, d | duration | total_increasing for counters, else measurement |
//! | `percent` | % | (none) | measurement |
//! | other or none | as written (none for `dimensionless`, `enum`, `bitmap`) | (none) | measurement for gauges, total_increasing for counters |
//!
//! Fields of kind `state` (bitmaps, raw operating states) get no state class;
//! a counter in a unit whose device class HA allows only `measurement` for
//! (temperature, pressure, power, flow) gets `measurement`.
//!
//! Energy and volume accept no `measurement` in HA: their gauges (the ISG's
//! "today" figures) rise during the day and fall to 0 at midnight, which is
//! what `total_increasing` means (a fall starts a new cycle).
//!
//! Bools (and bitmap bits) are `binary_sensor`s; fields with enum labels are
//! `sensor`s with `device_class: enum` and the labels as `options`; text fields
//! and other `state` fields are plain sensors without a state class.
//! Configuration registers, i.e. fields read from holding registers (the
//! writable settings of the controller: set points, curves, modes), get
//! `entity_category: diagnostic`.
//!
//! # Enum codes without a label
//! Home Assistant's MQTT sensor ignores a value that is not one of an enum
//! sensor's `options` (it logs a warning and keeps showing the previous,
//! now wrong, state), and treats the text `None` from the value template as
//! "unknown". The state JSON keeps what `hpflow read --json` prints (a code
//! the map has no label for stays a number, for other consumers), and the
//! enum sensor's value template passes on only a value that is one of its
//! options, `None` otherwise: such a code shows as *unknown* in HA, never as
//! a stale or refused state.
//!
//! # Entity ids
//! Each entity suggests its entity id as `default_entity_id`
//! (`sensor.<device>_<field>`, what Home Assistant 2025.10 and later read) and
//! as the older `object_id` (`<device>_<field>`, read by earlier versions;
//! ignored since 2026.4, and with `default_entity_id` present 2025.10–2026.3
//! use that one and do not warn). HA uses either only when it first adds the
//! entity; `unique_id` is what ties an entity to its config afterwards.

use serde_json::{json, Map, Value as Json};

use crate::display::engineering_value;
use crate::event::{FieldKind, FieldMeta, Metric, Schema, Tags, Value, ValueType};

/// One topic level from a name (a device id, a field): MQTT's special
/// characters `/`, `+`, `#` and NUL become `_`.
pub fn topic_level(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| if matches!(c, '/' | '+' | '#' | '\0') { '_' } else { c })
        .collect();
    if out.is_empty() {
        "_".into()
    } else {
        out
    }
}

/// An id as Home Assistant wants object and node ids: `[a-z0-9_]`.
pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// An id as Home Assistant's entity ids want it (its `slugify`): `[a-z0-9_]`,
/// no leading, trailing or doubled `_`; for the suggested entity id only
/// (`unique_id` and node ids keep [`slug`], so existing entities keep theirs).
pub fn entity_slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in slug(s).chars() {
        if c == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        "unnamed".into()
    } else {
        out
    }
}

/// The topics one sink publishes on.
#[derive(Debug, Clone)]
pub struct Topics {
    pub prefix: String,
    /// The discovery prefix, when discovery is on.
    pub discovery: Option<String>,
}

impl Topics {
    /// hpflow's own availability, with the last will.
    pub fn status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    pub fn state(&self, device: &str) -> String {
        format!("{}/{}/state", self.prefix, topic_level(device))
    }

    pub fn availability(&self, device: &str) -> String {
        format!("{}/{}/availability", self.prefix, topic_level(device))
    }

    pub fn field(&self, device: &str, field: &str) -> String {
        format!("{}/{}/{}", self.prefix, topic_level(device), topic_level(field))
    }

    /// Home Assistant's own status topic (`online` after it starts).
    pub fn ha_status(&self) -> Option<String> {
        self.discovery.as_ref().map(|d| format!("{d}/status"))
    }

    /// A filter matching every discovery config (to find the stale ones of ours).
    pub fn discovery_filter(&self) -> Option<String> {
        self.discovery.as_ref().map(|d| format!("{d}/+/+/+/config"))
    }

    /// HA's node id of a device: `<prefix>_<device>` as a slug.
    pub fn node_id(&self, device: &str) -> String {
        slug(&format!("{}_{}", self.prefix, device))
    }

    /// The identifier of hpflow itself as an HA device (the `via_device` of the pumps).
    pub fn bridge_id(&self) -> String {
        slug(&self.prefix)
    }

    /// Splits a discovery config topic into (component, node id, object id).
    pub fn parse_config_topic<'t>(&self, topic: &'t str) -> Option<(&'t str, &'t str, &'t str)> {
        let d = self.discovery.as_deref()?;
        let rest = topic.strip_prefix(d)?.strip_prefix('/')?.strip_suffix("/config")?;
        let mut parts = rest.split('/');
        let (c, n, o) = (parts.next()?, parts.next()?, parts.next()?);
        parts.next().is_none().then_some((c, n, o))
    }
}

/// The state of one poll: field → value in engineering units (enum labels as
/// text, bools as `true`/`false`), absent fields left out; only `fields`
/// when given. The same as `hpflow read --json` prints for a poll.
pub fn state_json(m: &Metric, fields: Option<&[String]>) -> Map<String, Json> {
    m.fields
        .iter()
        .filter(|(k, _)| fields.is_none_or(|f| f.iter().any(|x| x.as_str() == &***k)))
        .map(|(k, v)| (k.to_string(), state_value(m.meta(k).map(|a| &**a), v)))
        .collect()
}

/// One field's state value, as in [`state_json`]. Raw values of an unscaled
/// schema are scaled here (`FieldMeta::engineering`).
pub fn state_value(meta: Option<&FieldMeta>, v: &Value) -> Json {
    match meta {
        Some(meta) if meta.needs_scaling() && !matches!(v, Value::Bool(_) | Value::Text(_)) => {
            engineering_value(Some(meta), &meta.engineering(v))
        }
        _ => engineering_value(meta, v),
    }
}

/// A field's value as the text of its own topic (`per_field_topics`): numbers
/// and bools as JSON writes them, text as it is.
pub fn field_payload(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The unit Home Assistant accepts for a register-map unit, and the device
/// class that unit measures, if HA has one.
pub fn ha_unit(unit: &str) -> (Option<&'static str>, Option<&'static str>) {
    match unit.to_ascii_lowercase().as_str() {
        "celsius" | "°c" | "degc" => (Some("°C"), Some("temperature")),
        "kelvin" | "k" => (Some("K"), None),
        "bar" => (Some("bar"), Some("pressure")),
        "mbar" => (Some("mbar"), Some("pressure")),
        "l/min" => (Some("L/min"), Some("volume_flow_rate")),
        "l/h" => (Some("L/h"), Some("volume_flow_rate")),
        "m3/h" => (Some("m³/h"), Some("volume_flow_rate")),
        "w" => (Some("W"), Some("power")),
        "kw" => (Some("kW"), Some("power")),
        "wh" => (Some("Wh"), Some("energy")),
        "kwh" => (Some("kWh"), Some("energy")),
        "mwh" => (Some("MWh"), Some("energy")),
        "m3" => (Some("m³"), Some("volume")),
        "l" => (Some("L"), Some("volume")),
        "s" | "sec" | "second" | "seconds" => (Some("s"), Some("duration")),
        "min" | "minute" | "minutes" => (Some("min"), Some("duration")),
        "h" | "hour" | "hours" => (Some("h"), Some("duration")),
        "d" | "day" | "days" => (Some("d"), Some("duration")),
        "percent" | "%" => (Some("%"), None),
        "hz" => (Some("Hz"), Some("frequency")),
        "dimensionless" | "enum" | "bitmap" | "bool" | "" => (None, None),
        _ => (None, None),
    }
}

/// A unit HA does not know as a device class's is still shown, as written.
fn display_unit(unit: &str) -> Option<String> {
    match ha_unit(unit) {
        (Some(u), _) => Some(u.to_string()),
        (None, _) if matches!(unit, "dimensionless" | "enum" | "bitmap" | "bool" | "") => None,
        (None, _) => Some(unit.to_string()),
    }
}

/// The HA platform of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Platform {
    Sensor,
    BinarySensor,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Sensor => "sensor",
            Platform::BinarySensor => "binary_sensor",
        }
    }
}

pub fn platform(meta: &FieldMeta) -> Platform {
    if meta.value_type == ValueType::Bool && meta.labels.is_none() {
        Platform::BinarySensor
    } else {
        Platform::Sensor
    }
}

/// Whether a field is a configuration register: read from a holding register
/// (the controller's writable settings).
pub fn is_configuration(meta: &FieldMeta) -> bool {
    meta.source.as_deref().is_some_and(|s| s.starts_with("holding"))
}

/// One discovery config to publish (retained) on `topic`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub topic: String,
    pub payload: Json,
}

/// What HA is told about one heat pump as a device: its name, the model
/// (the device's `model` tag, else the schema's model), the manufacturer (the
/// device's `manufacturer` tag, else the register map's), its area.
pub fn ha_device(topics: &Topics, device: &str, tags: &Tags, schema: &Schema) -> Json {
    let mut d = json!({
        "identifiers": [topics.node_id(device)],
        "name": tags.get("name").map(String::as_str).filter(|n| !n.is_empty()).unwrap_or(device),
        "model": tags.get("model").map(String::as_str).filter(|m| !m.is_empty()).unwrap_or(&schema.model),
        "via_device": topics.bridge_id(),
    });
    let manufacturer = tags
        .get("manufacturer")
        .map(String::as_str)
        .filter(|m| !m.is_empty())
        .or(schema.manufacturer.as_deref());
    if let Some(m) = manufacturer {
        d["manufacturer"] = m.into();
    }
    if let Some(l) = tags.get("location").filter(|l| !l.is_empty()) {
        d["suggested_area"] = l.as_str().into();
    }
    d
}

/// A field's name as people read it: `heat_kwh` → `Heat kwh`.
fn title(name: &str) -> String {
    let s = name.replace('_', " ");
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => s,
    }
}

/// A Jinja string literal (field names are data).
fn jinja_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The discovery configs of one device: one entity per field of its schema
/// (only `fields` when given), in the schema's order.
pub fn discovery(
    topics: &Topics,
    device: &str,
    tags: &Tags,
    schema: &Schema,
    fields: Option<&[String]>,
) -> Vec<Entity> {
    let Some(dp) = &topics.discovery else {
        return Vec::new();
    };
    let node = topics.node_id(device);
    let dev = ha_device(topics, device, tags, schema);
    let availability = json!([
        {"topic": topics.status()},
        {"topic": topics.availability(device)},
    ]);
    schema
        .fields
        .iter()
        .filter(|f| fields.is_none_or(|l| l.iter().any(|x| x.as_str() == &*f.name)))
        .map(|meta| {
            let platform = platform(meta);
            let object = slug(&meta.name);
            let key = jinja_str(&meta.name);
            let mut p = Map::new();
            p.insert("name".into(), title(&meta.name).into());
            p.insert("unique_id".into(), format!("{node}_{object}").into());
            let object_id = entity_slug(&format!("{device}_{}", meta.name));
            p.insert(
                "default_entity_id".into(),
                format!("{}.{object_id}", platform.as_str()).into(),
            );
            p.insert("object_id".into(), object_id.into());
            p.insert("state_topic".into(), topics.state(device).into());
            p.insert("availability".into(), availability.clone());
            p.insert("availability_mode".into(), "all".into());
            p.insert("device".into(), dev.clone());
            match platform {
                Platform::BinarySensor => {
                    p.insert(
                        "value_template".into(),
                        format!("{{{{ ('ON' if value_json[{key}] else 'OFF') if {key} in value_json else None }}}}")
                            .into(),
                    );
                    p.insert("payload_on".into(), "ON".into());
                    p.insert("payload_off".into(), "OFF".into());
                }
                Platform::Sensor => {
                    let template = match enum_options(meta) {
                        // Only a label HA knows as an option; anything else
                        // (a code the map has no label for) is `None`: unknown.
                        Some(options) => {
                            let list: Vec<String> = options.iter().map(|o| jinja_str(o)).collect();
                            format!(
                                "{{{{ value_json[{key}] if {key} in value_json and value_json[{key}] in [{}] else None }}}}",
                                list.join(", ")
                            )
                        }
                        None => format!("{{{{ value_json[{key}] if {key} in value_json else None }}}}"),
                    };
                    p.insert("value_template".into(), template.into());
                    sensor_keys(meta, &mut p);
                }
            }
            if is_configuration(meta) {
                p.insert("entity_category".into(), "diagnostic".into());
            }
            Entity {
                topic: format!("{dp}/{}/{node}/{object}/config", platform.as_str()),
                payload: Json::Object(p),
            }
        })
        .collect()
}

/// The options of an enum sensor: the field's labels, each once, in code order.
pub fn enum_options(meta: &FieldMeta) -> Option<Vec<&str>> {
    let labels = meta.labels.as_ref()?;
    let mut options: Vec<&str> = labels.values().map(String::as_str).collect();
    let mut seen = std::collections::BTreeSet::new();
    options.retain(|o| seen.insert(*o));
    Some(options)
}

/// device_class, state_class, unit, precision and options of a sensor.
fn sensor_keys(meta: &FieldMeta, p: &mut Map<String, Json>) {
    if let Some(options) = enum_options(meta) {
        p.insert("device_class".into(), "enum".into());
        p.insert("options".into(), options.into());
        return;
    }
    if meta.value_type == ValueType::Text {
        return;
    }
    let unit = meta.unit.as_deref().unwrap_or("");
    let (ha, class) = ha_unit(unit);
    if let Some(c) = class {
        p.insert("device_class".into(), c.into());
    }
    if let Some(u) = ha.map(str::to_string).or_else(|| display_unit(unit)) {
        p.insert("unit_of_measurement".into(), u.into());
    }
    let state_class = match (class, meta.kind) {
        // Bitmaps and other raw operating states: numbers, not measurements.
        (_, FieldKind::State) => None,
        // HA allows no `measurement` for these.
        (Some("energy" | "volume"), _) => Some("total_increasing"),
        (None | Some("duration"), FieldKind::Counter) => Some("total_increasing"),
        // Temperature, pressure, power, flow, frequency: `measurement` only,
        // even for a field the map calls a counter.
        (_, _) => Some("measurement"),
    };
    if let Some(s) = state_class {
        p.insert("state_class".into(), s.into());
    }
    if let Some(d) = meta.decimals {
        p.insert("suggested_display_precision".into(), d.into());
    } else if meta.value_type == ValueType::Int && meta.scale == 1.0 && meta.offset == 0.0 {
        p.insert("suggested_display_precision".into(), 0.into());
    }
}

/// hpflow itself as an HA device with one entity, its connection to the
/// broker: the device the heat pumps name as `via_device`.
pub fn bridge(topics: &Topics, version: &str) -> Option<Entity> {
    let dp = topics.discovery.as_ref()?;
    let id = topics.bridge_id();
    Some(Entity {
        topic: format!("{dp}/binary_sensor/{id}/connection/config"),
        payload: json!({
            "name": "Connection",
            "unique_id": format!("{id}_connection"),
            "default_entity_id": format!("binary_sensor.{}_connection", entity_slug(&id)),
            "object_id": format!("{}_connection", entity_slug(&id)),
            "state_topic": topics.status(),
            "payload_on": "online",
            "payload_off": "offline",
            "device_class": "connectivity",
            "entity_category": "diagnostic",
            "device": {
                "identifiers": [id],
                "name": "hpflow",
                "manufacturer": "hpflow",
                "model": "hpflow",
                "sw_version": version,
            },
        }),
    })
}
