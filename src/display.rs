//! A poll's values as a person reads them: scaled exactly as the `scale`
//! transform scales them (it is run here, not imitated), enum codes as their
//! labels. `hpflow read` prints this and the simulator's truth dump is written
//! in the same form, so the two can be compared field by field.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Number};

use crate::component::BuildContext;
use crate::event::{Event, FieldMeta, Metric, Value};
use crate::transforms::scale::ScaleConfig;

/// Runs a raw poll through a default `scale` transform (the register map's
/// scale, offset and decimals). A metric that is already scaled is returned as is.
pub fn scale_metric(m: Metric) -> Metric {
    if m.schema.scaled {
        return m;
    }
    let schemas = [m.schema.clone()];
    let built = BuildContext::alone("display", Path::new("."), &schemas, &Arc::default(), |cx| {
        ScaleConfig::default().build(cx)
    });
    let mut scale = match built {
        Ok(s) => s,
        // A default `scale` has nothing that can fail to build; if it ever
        // does, raw values are still honest values.
        Err(_) => return m,
    };
    let mut out = Vec::with_capacity(1);
    scale.transform(Event::from(m.clone()), &mut out);
    match out.into_iter().next() {
        Some(Event::Metric(arc)) => Arc::unwrap_or_clone(arc),
        _ => m,
    }
}

/// One scaled value as JSON: numbers, bools, text, and enum codes as their labels.
pub fn engineering_value(meta: Option<&FieldMeta>, v: &Value) -> serde_json::Value {
    if let Some(label) = meta.and_then(|m| m.label(v)) {
        return serde_json::Value::String(label.to_string());
    }
    match v {
        Value::Int(i) => serde_json::Value::Number((*i).into()),
        Value::Float(f) => Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Text(t) => serde_json::Value::String(t.to_string()),
    }
}

/// A raw poll as `hpflow read --json` prints it: field → engineering value;
/// absent fields stay absent.
pub fn engineering_json(m: Metric) -> Map<String, serde_json::Value> {
    let m = scale_metric(m);
    m.fields
        .iter()
        .map(|(k, v)| (k.to_string(), engineering_value(m.meta(k).map(|a| &**a), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    use super::*;
    use crate::event::{Schema, ValueType};

    #[test]
    fn values_are_scaled_rounded_and_labelled() {
        let mut t = FieldMeta::gauge("t", ValueType::Int);
        t.scale = 0.1;
        let mut mode = FieldMeta::gauge("mode", ValueType::Int);
        mode.labels = Some(BTreeMap::from([(3, "Comfort mode".to_string())]));
        let schema = Arc::new(Schema::new("m", vec![t, mode, FieldMeta::gauge("on", ValueType::Bool)]));
        let mut m = Metric::new("hp1", Arc::default(), SystemTime::UNIX_EPOCH, schema);
        m.fields.insert("t".into(), Value::Int(3));
        m.fields.insert("mode".into(), Value::Int(3));
        m.fields.insert("on".into(), Value::Bool(true));
        let j = engineering_json(m);
        assert_eq!(j["t"], serde_json::json!(0.3));
        assert_eq!(j["mode"], serde_json::json!("Comfort mode"));
        assert_eq!(j["on"], serde_json::json!(true));
    }
}
