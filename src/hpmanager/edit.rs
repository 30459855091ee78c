//! Changing `heatpumps.yml` one entry at a time, for the dashboard's heat pump
//! API: an entry sent as JSON is checked key by key (each problem names its
//! field, with the messages the Modbus source gives for the same mistakes in
//! the file), written in HPManager's layout, and the whole file serialised
//! again. Entries the change does not touch stay as they were, unknown keys
//! included; comments do not survive (serde_yaml keeps none).
//!
//! Pure text in, text out: the caller reads the file, holds a lock across the
//! change and writes the result atomically.

use serde::Serialize;
use serde_yaml::{Mapping, Value};

use super::heatpumps::{self, DEFAULT_PORT, DEFAULT_TYPE, DEFAULT_UNIT_ID};
use crate::registers::RegisterMap;
use crate::yaml::scalar;

/// Longest `name` or `location` (HPManager's limit).
pub const MAX_TEXT: usize = 100;

/// The keys of an entry, in the order they are written.
const ENTRY_KEYS: [&str; 6] = ["id", "name", "location", "model", "enabled", "modbus"];
/// The keys of `modbus` (`retries`/`retry_delay` are HPManager's, kept for it).
const MODBUS_KEYS: [&str; 7] = ["type", "host", "port", "unit_id", "timeout", "retries", "retry_delay"];
/// What `GET` adds to an entry; a client may send it back unchanged.
const READ_ONLY: [&str; 3] = ["data", "cop", "timestamp"];

/// A problem with one field of the entry sent (`modbus.port`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// One change to the inventory; entries are YAML values (from JSON).
#[derive(Debug, Clone)]
pub enum Change {
    Create(Value),
    /// Replaces entry `id` (the new one may have another id).
    Replace(String, Value),
    /// Sets the keys given; `modbus` keys are merged one by one.
    Patch(String, Value),
    Delete(String),
}

/// Why a change was not made; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("Heat pump with ID '{0}' not found")]
    NotFound(String),
    /// The id is taken by another entry.
    #[error("{}", .0.message)]
    Duplicate(FieldError),
    #[error("the heat pump is not valid: {}", .0.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// The file on disk cannot be changed as it is.
    #[error("{0}")]
    File(String),
}

/// The file's entries (an empty or missing file has none).
pub fn entries(text: &str) -> Result<Vec<Value>, EditError> {
    let root = root(text)?;
    Ok(match root.get("heatpumps") {
        Some(Value::Sequence(s)) => s.clone(),
        _ => Vec::new(),
    })
}

/// The id of an entry as text.
pub fn id_of(entry: &Value) -> Option<String> {
    entry.get("id").and_then(scalar)
}

/// Applies `change` to the file `text`. Returns the new text and the entry as
/// written (for a delete: the entry removed).
pub fn apply(text: &str, change: Change, map: &RegisterMap) -> Result<(String, Value), EditError> {
    let mut root = root(text)?;
    let mut list = match root.get("heatpumps") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(s)) => s.clone(),
        Some(_) => {
            return Err(EditError::File(
                "`heatpumps` in the file is not a list; fix the file by hand".into(),
            ))
        }
    };
    let find = |list: &[Value], id: &str| list.iter().position(|e| id_of(e).as_deref() == Some(id));
    let (at, entry) = match change {
        Change::Delete(id) => {
            let i = find(&list, &id).ok_or(EditError::NotFound(id))?;
            let removed = list.remove(i);
            root.insert("heatpumps".into(), Value::Sequence(list));
            return Ok((serialise(&root)?, removed));
        }
        Change::Create(body) => {
            unknown_keys(&body)?;
            (None, normalise(&body, map)?)
        }
        Change::Replace(id, body) => {
            let i = find(&list, &id).ok_or(EditError::NotFound(id))?;
            unknown_keys(&body)?;
            (Some(i), normalise(&body, map)?)
        }
        Change::Patch(id, body) => {
            let i = find(&list, &id).ok_or(EditError::NotFound(id))?;
            unknown_keys(&body)?;
            (Some(i), normalise(&merge(&list[i], &body), map)?)
        }
    };
    let new_id = id_of(&entry).unwrap_or_default();
    if list
        .iter()
        .enumerate()
        .any(|(i, e)| Some(i) != at && id_of(e).as_deref() == Some(&new_id))
    {
        return Err(EditError::Duplicate(invalid("id", heatpumps::used_twice(&new_id))));
    }
    match at {
        Some(i) => list[i] = entry.clone(),
        None => list.push(entry.clone()),
    }
    root.insert("heatpumps".into(), Value::Sequence(list));
    Ok((serialise(&root)?, entry))
}

/// Checks the entry a connection test is given like a create body (its `id`
/// may be left out or empty) and returns it as it would be written.
pub fn check_entry(body: &Value, map: &RegisterMap) -> Result<Value, EditError> {
    let mut body = body.clone();
    if let Value::Mapping(m) = &mut body {
        if m.get("id").and_then(scalar).is_none_or(|id| id.trim().is_empty()) {
            m.insert("id".into(), "test".into());
        }
    }
    unknown_keys(&body)?;
    normalise(&body, map)
}

fn root(text: &str) -> Result<Mapping, EditError> {
    match serde_yaml::from_str::<Value>(text) {
        Ok(Value::Mapping(m)) => Ok(m),
        Ok(Value::Null) => Ok(Mapping::new()),
        Ok(_) => Err(EditError::File(
            "the inventory file is not a mapping with `heatpumps:`; fix the file by hand".into(),
        )),
        Err(e) => Err(EditError::File(format!(
            "the inventory file is not valid YAML ({e}); fix the file by hand"
        ))),
    }
}

fn serialise(root: &Mapping) -> Result<String, EditError> {
    serde_yaml::to_string(root).map_err(|e| EditError::File(format!("cannot write the inventory: {e}")))
}

/// Keys a client sent that an entry does not have (a typo must not pass silently).
fn unknown_keys(body: &Value) -> Result<(), EditError> {
    let Value::Mapping(m) = body else {
        return Err(EditError::Invalid(vec![invalid(
            "",
            "a heat pump must be a JSON object",
        )]));
    };
    let mut errors = Vec::new();
    let names = |m: &Mapping| m.keys().filter_map(scalar).collect::<Vec<_>>();
    for k in names(m) {
        if !ENTRY_KEYS.contains(&k.as_str()) && !READ_ONLY.contains(&k.as_str()) {
            errors.push(invalid(
                &k,
                format!("unknown key `{k}`; a heat pump has {}", ENTRY_KEYS.join(", ")),
            ));
        }
    }
    if let Some(Value::Mapping(mb)) = m.get("modbus") {
        for k in names(mb) {
            if !MODBUS_KEYS.contains(&k.as_str()) {
                errors.push(invalid(
                    &format!("modbus.{k}"),
                    format!("unknown key `{k}`; `modbus` has {}", MODBUS_KEYS.join(", ")),
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(EditError::Invalid(errors))
    }
}

/// `patch` over `entry`: its keys replace the entry's, `modbus` key by key.
fn merge(entry: &Value, patch: &Value) -> Value {
    let mut out = entry.as_mapping().cloned().unwrap_or_default();
    for (k, v) in patch.as_mapping().into_iter().flatten() {
        match (out.get_mut(k), v) {
            (Some(Value::Mapping(old)), Value::Mapping(new)) if k.as_str() == Some("modbus") => {
                for (mk, mv) in new {
                    old.insert(mk.clone(), mv.clone());
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Mapping(out)
}

/// Checks an entry and writes it in HPManager's layout: its keys in order with
/// HPManager's defaults filled in; keys it does not know (only possible from
/// the file) after them.
fn normalise(body: &Value, map: &RegisterMap) -> Result<Value, EditError> {
    let empty = Mapping::new();
    let m = body.as_mapping().unwrap_or(&empty);
    let mut errors = Vec::new();
    let mut out = Mapping::new();
    let id = match m.get("id").and_then(scalar).map(|s| s.trim().to_ascii_lowercase()) {
        Some(id) if id.is_empty() => {
            errors.push(invalid("id", "`id` must not be empty"));
            id
        }
        Some(id) => {
            let ok = id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && id.starts_with(|c: char| c.is_ascii_alphanumeric());
            if !ok {
                errors.push(invalid(
                    "id",
                    format!(
                        "`id` must be lowercase letters, digits, `_` and `-`, starting with a letter or digit, not `{id}`"
                    ),
                ));
            }
            id
        }
        None => {
            errors.push(invalid("id", "heat pump entry without an `id`"));
            String::new()
        }
    };
    out.insert("id".into(), id.clone().into());
    for k in ["name", "location"] {
        match m.get(k) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                let s = s.trim();
                if s.is_empty() {
                    errors.push(invalid(
                        k,
                        format!("heat pump `{id}`: `{k}` must not be empty (leave it out)"),
                    ));
                } else if s.chars().count() > MAX_TEXT {
                    errors.push(invalid(
                        k,
                        format!("heat pump `{id}`: `{k}` must be at most {MAX_TEXT} characters"),
                    ));
                } else if s.contains(['<', '>']) || s.chars().any(char::is_control) {
                    errors.push(invalid(
                        k,
                        format!("heat pump `{id}`: `{k}` must be plain text, without `<`, `>` or control characters"),
                    ));
                }
                out.insert(k.into(), s.into());
            }
            Some(_) => errors.push(invalid(k, format!("heat pump `{id}`: `{k}` must be text"))),
        }
    }
    let model = m.get("model").and_then(scalar).unwrap_or_default();
    if map.model(&model).is_none() {
        errors.push(invalid(
            "model",
            format!("heat pump `{id}`: {}", map.unknown_model(&model)),
        ));
    }
    out.insert("model".into(), model.into());
    let enabled = match m.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(invalid(
                "enabled",
                format!("heat pump `{id}`: `enabled` must be true or false"),
            ));
            true
        }
    };
    out.insert("enabled".into(), enabled.into());
    match m.get("modbus") {
        Some(Value::Mapping(mb)) => {
            out.insert("modbus".into(), modbus(&id, mb, &mut errors).into());
        }
        _ => errors.push(invalid("modbus", heatpumps::no_modbus(&id))),
    }
    for (k, v) in m {
        let known = k
            .as_str()
            .is_some_and(|k| ENTRY_KEYS.contains(&k) || READ_ONLY.contains(&k));
        if !known {
            out.insert(k.clone(), v.clone());
        }
    }
    if errors.is_empty() {
        Ok(Value::Mapping(out))
    } else {
        Err(EditError::Invalid(errors))
    }
}

fn modbus(id: &str, mb: &Mapping, errors: &mut Vec<FieldError>) -> Mapping {
    let mut out = Mapping::new();
    let kind = mb.get("type").and_then(scalar).unwrap_or_else(|| DEFAULT_TYPE.into());
    if !kind.eq_ignore_ascii_case("tcp") {
        errors.push(invalid(
            "modbus.type",
            format!("heat pump `{id}`: the API writes `tcp` entries only, not `{kind}`; edit rtu entries in the file"),
        ));
    }
    out.insert("type".into(), kind.to_ascii_lowercase().into());
    let host = mb.get("host").and_then(scalar).unwrap_or_default().trim().to_string();
    if host.is_empty() {
        errors.push(invalid("modbus.host", heatpumps::needs_host(id)));
    } else if !is_host(&host) {
        errors.push(invalid(
            "modbus.host",
            format!("heat pump `{id}`: `host` must be an IP address or a host name, not `{host}`"),
        ));
    }
    out.insert("host".into(), host.into());
    let mut int =
        |key: &str, default: i64, range: std::ops::RangeInclusive<i64>, message: fn(&str, &str) -> String| match mb
            .get(key)
        {
            None | Some(Value::Null) => default,
            Some(v) => match v.as_i64() {
                Some(n) if range.contains(&n) => n,
                _ => {
                    errors.push(invalid(&format!("modbus.{key}"), message(id, &shown(v))));
                    default
                }
            },
        };
    let port = int("port", DEFAULT_PORT.into(), 1..=65535, heatpumps::bad_port);
    let unit_id = int("unit_id", DEFAULT_UNIT_ID.into(), 0..=247, heatpumps::bad_unit_id);
    out.insert("port".into(), port.into());
    out.insert("unit_id".into(), unit_id.into());
    match mb.get("timeout") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_f64() {
            Some(t) if heatpumps::timeout_ok(t) => {
                out.insert("timeout".into(), v.clone());
            }
            _ => errors.push(invalid("modbus.timeout", heatpumps::bad_timeout(id, &shown(v)))),
        },
    }
    for (k, v) in mb {
        if !matches!(k.as_str(), Some("type" | "host" | "port" | "unit_id" | "timeout")) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// A value as the messages show it.
fn shown(v: &Value) -> String {
    scalar(v).unwrap_or_else(|| serde_json::to_string(v).unwrap_or_default())
}

/// An IP address, or a host name of letters, digits, `-` and `.` (HPManager's rule).
fn is_host(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    s.len() <= 253
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}
