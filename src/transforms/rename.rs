//! `rename`: gives fields and tags other names.
//!
//! Field renames apply to a metric's values, its `since` stamps and its
//! description (the renamed field's description carries the new name), and to the
//! `field` of state changes. Tag renames apply to both kinds of event. All renames
//! of one map happen at once, so `a = "b"` with `b = "a"` swaps two fields.
//!
//! Checked before anything runs: a new name must not collide with a field that
//! an input model keeps (or with `heat_pump_id`, `name`, `location`, `model` for
//! tags), two renames may not share a target, a renamed field must exist in some
//! input model, and no name may be empty. Tags that users add per device cannot be
//! known in advance; should a renamed tag or field still meet an existing one at
//! run time, the renamed one wins.
//!
//! ```toml
//! [transforms.renamed]
//! type = "rename"
//! inputs = ["scaled"]
//! fields = { outside_temperature = "temperature_outside", hc1_temperature = "flow_temperature" }
//! tags = { location = "site" }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::component::{BoxError, BuildContext, Check, Transform};
use crate::event::{Event, FieldMeta, Schema, Tags};

/// Tags every device has; user tags come on top and cannot be known statically.
const BUILTIN_TAGS: &[&str] = &["heat_pump_id", "name", "location", "model"];
const MAX_CACHED_SCHEMAS: usize = 256;
/// Tag sets are shared per device; beyond this many the cache starts over.
const MAX_CACHED_TAGS: usize = 16_384;

/// `[transforms.<id>]` with `type = "rename"`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    /// Field renames, old name = new name.
    #[serde(default)]
    pub fields: IndexMap<String, String>,
    /// Tag renames, old name = new name.
    #[serde(default)]
    pub tags: IndexMap<String, String>,
}

impl RenameConfig {
    pub fn check(&self, cx: &mut Check<'_>) {
        if self.fields.is_empty() && self.tags.is_empty() {
            cx.warn(
                None,
                "renames nothing; give `fields = { old = \"new\" }` or `tags = { old = \"new\" }`",
            );
        }
        check_map(cx, "fields", &self.fields);
        check_map(cx, "tags", &self.tags);
        if !cx.input_schemas.is_empty() {
            for (old, new) in &self.fields {
                check_field(cx, &self.fields, old, new);
            }
        }
        for (old, new) in &self.tags {
            let kept = BUILTIN_TAGS.contains(&new.as_str()) && !self.tags.contains_key(new);
            if kept && old != new {
                cx.error(
                    Some(&format!("tags.{old}")),
                    format!("renaming tag `{old}` to `{new}` collides with the tag `{new}` every device has; rename that one too or pick another name"),
                );
            }
        }
        let fields: HashMap<Arc<str>, Arc<str>> = field_map(&self.fields);
        let outputs: Vec<Arc<Schema>> = cx.input_schemas.iter().map(|s| rename_schema(s, &fields)).collect();
        for s in outputs {
            cx.output(s);
        }
    }

    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Transform>, BoxError> {
        let mut rename = Rename {
            fields: field_map(&self.fields),
            tags: self.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            schemas: HashMap::new(),
            tag_sets: HashMap::new(),
        };
        for s in cx.input_schemas {
            rename.schema(s);
        }
        Ok(Box::new(rename))
    }
}

fn field_map(m: &IndexMap<String, String>) -> HashMap<Arc<str>, Arc<str>> {
    m.iter()
        .map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str())))
        .collect()
}

/// Problems a rename map has on its own: empty names, shared targets, no-ops.
fn check_map(cx: &mut Check<'_>, table: &str, map: &IndexMap<String, String>) {
    let noun = if table == "fields" { "field" } else { "tag" };
    let mut targets: HashMap<&str, &str> = HashMap::new();
    for (old, new) in map {
        let key = format!("{table}.{old}");
        if old.is_empty() {
            cx.error(Some(&key), format!("the name of a {noun} to rename must not be empty"));
        }
        if new.is_empty() {
            cx.error(Some(&key), format!("the new name of {noun} `{old}` is empty"));
            continue;
        }
        if old == new {
            cx.warn(Some(&key), format!("{noun} `{old}` is renamed to itself"));
            continue;
        }
        if let Some(first) = targets.insert(new, old) {
            cx.error(
                Some(&key),
                format!("{noun}s `{first}` and `{old}` are both renamed to `{new}`; each new name must be unique"),
            );
        }
    }
}

/// A field rename against the input models: it must exist, and its new name must
/// not meet a field the model keeps.
fn check_field(cx: &mut Check<'_>, map: &IndexMap<String, String>, old: &str, new: &str) {
    let key = format!("fields.{old}");
    if old.is_empty() || new.is_empty() || old == new {
        return;
    }
    let having: Vec<&Schema> = cx
        .input_schemas
        .iter()
        .filter(|s| s.field(old).is_some())
        .map(|s| &**s)
        .collect();
    if having.is_empty() {
        let msg = format!(
            "no input model has a field `{old}`; known models: {}",
            cx.known_models()
        );
        cx.error(Some(&key), msg);
        return;
    }
    // A target that is itself renamed away frees its name (swaps are fine).
    let clashing: Vec<&str> = having
        .iter()
        .filter(|s| s.field(new).is_some() && !map.contains_key(new))
        .map(|s| s.model.as_str())
        .collect();
    if !clashing.is_empty() {
        let msg = format!(
            "renaming `{old}` to `{new}` collides with the field `{new}` of model {}; rename that one too or pick another name",
            clashing.join(", ")
        );
        cx.error(Some(&key), msg);
    }
}

/// The description with renamed fields; the same `Arc` when nothing is renamed.
fn rename_schema(input: &Arc<Schema>, map: &HashMap<Arc<str>, Arc<str>>) -> Arc<Schema> {
    if !input.fields.iter().any(|f| map.contains_key(&f.name)) {
        return input.clone();
    }
    let targets: HashSet<&Arc<str>> = input.fields.iter().filter_map(|f| map.get(&f.name)).collect();
    let mut schema = (**input).clone();
    schema.fields = input
        .fields
        .iter()
        .filter_map(|f| match map.get(&f.name) {
            Some(new) => Some(rename_meta(f, new)),
            // Only reachable for models the check did not see: the renamed field wins.
            None if targets.contains(&f.name) => None,
            None => Some(f.clone()),
        })
        .collect();
    schema.reindex();
    Arc::new(schema)
}

fn rename_meta(meta: &FieldMeta, new: &Arc<str>) -> Arc<FieldMeta> {
    Arc::new(FieldMeta {
        name: new.clone(),
        ..meta.clone()
    })
}

/// The running transform.
pub struct Rename {
    fields: HashMap<Arc<str>, Arc<str>>,
    tags: HashMap<String, String>,
    /// Output description by address of the input one (kept alive by the entry,
    /// so the address is not reused while cached).
    schemas: HashMap<usize, (Arc<Schema>, Arc<Schema>)>,
    /// Renamed tag set by address of the device's tag set, for the same reason.
    tag_sets: HashMap<usize, (Arc<Tags>, Arc<Tags>)>,
}

impl Rename {
    fn schema(&mut self, input: &Arc<Schema>) -> Arc<Schema> {
        let key = Arc::as_ptr(input) as usize;
        if let Some((_, out)) = self.schemas.get(&key) {
            return out.clone();
        }
        if self.schemas.len() >= MAX_CACHED_SCHEMAS {
            self.schemas.clear();
        }
        let out = rename_schema(input, &self.fields);
        self.schemas.insert(key, (input.clone(), out.clone()));
        out
    }

    fn tags(&mut self, input: &Arc<Tags>) -> Arc<Tags> {
        if !input.keys().any(|k| self.tags.contains_key(k)) {
            return input.clone();
        }
        let key = Arc::as_ptr(input) as usize;
        if let Some((_, out)) = self.tag_sets.get(&key) {
            return out.clone();
        }
        if self.tag_sets.len() >= MAX_CACHED_TAGS {
            self.tag_sets.clear();
        }
        let out = Arc::new(rename_keys((**input).clone(), BTreeMap::new(), &|k: &String| {
            self.tags.get(k).cloned()
        }));
        self.tag_sets.insert(key, (input.clone(), out.clone()));
        out
    }

    fn field_renamed(&self, name: &Arc<str>) -> Option<Arc<str>> {
        self.fields.get(name).cloned()
    }
}

/// Renames the keys of a map all at once; a renamed key replaces a kept one.
/// The pairs of `map` put into `out` under the names `new_name` gives (the
/// rest under their own); a renamed value wins over one already under its new name.
fn rename_keys<K, V, M: Extend<(K, V)>>(
    map: impl IntoIterator<Item = (K, V)>,
    mut out: M,
    new_name: &dyn Fn(&K) -> Option<K>,
) -> M {
    let mut renamed = Vec::new();
    out.extend(map.into_iter().filter_map(|(k, v)| match new_name(&k) {
        Some(n) => {
            renamed.push((n, v));
            None
        }
        None => Some((k, v)),
    }));
    out.extend(renamed);
    out
}

impl Transform for Rename {
    fn transform(&mut self, event: Event, out: &mut Vec<Event>) {
        match event {
            Event::Metric(mut arc) => {
                let schema = self.schema(&arc.schema);
                let tags = self.tags(&arc.tags);
                let renames_values = arc
                    .fields
                    .keys()
                    .chain(arc.since.keys())
                    .any(|k| self.fields.contains_key(k));
                if renames_values || !Arc::ptr_eq(&schema, &arc.schema) || !Arc::ptr_eq(&tags, &arc.tags) {
                    let m = Arc::make_mut(&mut arc);
                    if renames_values {
                        let f = |k: &Arc<str>| self.field_renamed(k);
                        m.fields = rename_keys(std::mem::take(&mut m.fields), schema.new_fields(), &f);
                        m.since = rename_keys(std::mem::take(&mut m.since), schema.new_fields(), &f);
                    }
                    m.schema = schema;
                    m.tags = tags;
                }
                out.push(Event::Metric(arc));
            }
            Event::StateChange(mut arc) => {
                let tags = self.tags(&arc.tags);
                let field = self.field_renamed(&arc.field);
                if field.is_some() || !Arc::ptr_eq(&tags, &arc.tags) {
                    let s = Arc::make_mut(&mut arc);
                    if let Some(new) = field {
                        s.meta = s.meta.as_ref().map(|m| rename_meta(m, &new));
                        s.field = new;
                    }
                    s.tags = tags;
                }
                out.push(Event::StateChange(arc));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::SystemTime;

    use super::*;
    use crate::event::{Metric, StateChange, Value, ValueType};

    type Errors = Vec<(Option<String>, String)>;

    fn wpm() -> Arc<Schema> {
        Arc::new(Schema::new(
            "wpm",
            vec![
                FieldMeta::gauge("outside_temperature", ValueType::Float),
                FieldMeta::gauge("hot_gas_temperature", ValueType::Float),
                FieldMeta::gauge("compressor_running", ValueType::Bool),
            ],
        ))
    }

    fn config(text: &str) -> RenameConfig {
        toml::from_str(text).unwrap()
    }

    fn check(c: &RenameConfig, schema: &Arc<Schema>) -> (Errors, Vec<Arc<Schema>>) {
        let schemas = std::slice::from_ref(schema);
        let dir = Path::new(".");
        let mut cx = Check::new("renamed", dir, dir, schemas);
        c.check(&mut cx);
        (cx.errors(), cx.outputs.clone())
    }

    fn build(c: &RenameConfig, schema: &Arc<Schema>) -> Box<dyn Transform> {
        let schemas = std::slice::from_ref(schema);
        BuildContext::alone("renamed", Path::new("."), schemas, &Arc::default(), |cx| c.build(cx)).unwrap()
    }

    fn tags() -> Arc<Tags> {
        Arc::new(Tags::from([
            ("heat_pump_id".to_string(), "hp1".to_string()),
            ("location".to_string(), "cellar".to_string()),
        ]))
    }

    fn one(t: &mut dyn Transform, e: Event) -> Event {
        let mut out = Vec::new();
        t.transform(e, &mut out);
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    #[test]
    fn renaming_onto_an_existing_field_is_rejected() {
        let c = config("fields = { outside_temperature = \"hot_gas_temperature\" }");
        let (errs, _) = check(&c, &wpm());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0.as_deref(), Some("fields.outside_temperature"));
        assert!(
            errs[0]
                .1
                .contains("collides with the field `hot_gas_temperature` of model wpm"),
            "{}",
            errs[0].1
        );
    }

    #[test]
    fn swapping_two_fields_is_no_collision() {
        let c = config(
            "fields = { outside_temperature = \"hot_gas_temperature\", hot_gas_temperature = \"outside_temperature\" }",
        );
        let (errs, outputs) = check(&c, &wpm());
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(outputs[0].fields[0].name.as_ref(), "hot_gas_temperature");
    }

    #[test]
    fn two_renames_to_one_name_are_rejected() {
        let c = config("fields = { outside_temperature = \"t\", hot_gas_temperature = \"t\" }\ntags = { name = \"n\", location = \"n\" }");
        let (errs, _) = check(&c, &wpm());
        let keys: Vec<_> = errs.iter().map(|e| e.0.as_deref().unwrap()).collect();
        assert_eq!(keys, ["fields.hot_gas_temperature", "tags.location"], "{errs:?}");
    }

    #[test]
    fn renaming_onto_a_builtin_tag_is_rejected() {
        let c = config("tags = { site = \"location\" }");
        let (errs, _) = check(&c, &wpm());
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0.as_deref(), Some("tags.site"));
        let c = config("tags = { site = \"location\", location = \"room\" }");
        assert!(check(&c, &wpm()).0.is_empty());
    }

    #[test]
    fn unknown_fields_and_empty_names_are_rejected() {
        let c = config("fields = { outside_temp = \"t\", compressor_running = \"\" }\ntags = { \"\" = \"x\" }");
        let (errs, _) = check(&c, &wpm());
        let keys: Vec<_> = errs.iter().map(|e| e.0.as_deref().unwrap()).collect();
        assert_eq!(
            keys,
            ["fields.compressor_running", "tags.", "fields.outside_temp"],
            "{errs:?}"
        );
        assert!(errs[2].1.contains("known models: wpm"));
    }

    #[test]
    fn rename_applies_to_fields_since_schema_and_tags() {
        let s = wpm();
        let c = config("fields = { outside_temperature = \"temperature_outside\", compressor_running = \"compressor\" }\ntags = { location = \"site\" }");
        let mut t = build(&c, &s);
        let mut m = Metric::new("hp1", tags(), SystemTime::UNIX_EPOCH, s.clone());
        m.fields.insert("outside_temperature".into(), Value::Float(2.5));
        m.fields.insert("hot_gas_temperature".into(), Value::Float(60.0));
        m.fields.insert("compressor_running".into(), Value::Bool(true));
        m.since.insert("compressor_running".into(), None);
        let Event::Metric(a) = one(&mut *t, m.clone().into()) else {
            panic!()
        };
        let names: Vec<&str> = a.fields.keys().map(|k| &**k).collect();
        assert_eq!(names, ["compressor", "hot_gas_temperature", "temperature_outside"]);
        assert_eq!(a.fields["temperature_outside"], Value::Float(2.5));
        assert_eq!(a.since.keys().map(|k| &**k).collect::<Vec<_>>(), ["compressor"]);
        assert_eq!(
            a.schema.field("temperature_outside").unwrap().name.as_ref(),
            "temperature_outside"
        );
        assert!(a.schema.field("outside_temperature").is_none());
        assert_eq!(a.tags.get("site").map(String::as_str), Some("cellar"));
        assert!(!a.tags.contains_key("location"));

        // Later events of the same model and device share the renamed description and tags.
        let Event::Metric(b) = one(&mut *t, m.into()) else {
            panic!()
        };
        assert!(Arc::ptr_eq(&a.schema, &b.schema));
        assert!(Arc::ptr_eq(&a.tags, &b.tags));
    }

    #[test]
    fn rename_applies_to_state_changes() {
        let s = wpm();
        let c = config("fields = { compressor_running = \"compressor\" }\ntags = { location = \"site\" }");
        let mut t = build(&c, &s);
        let sc = StateChange {
            device: "hp1".into(),
            tags: tags(),
            field: "compressor_running".into(),
            from: Some(Value::Bool(false)),
            to: Value::Bool(true),
            at: SystemTime::UNIX_EPOCH,
            from_since: None,
            meta: s.field("compressor_running").cloned(),
        };
        let Event::StateChange(out) = one(&mut *t, sc.into()) else {
            panic!()
        };
        assert_eq!(out.field.as_ref(), "compressor");
        assert_eq!(out.meta.as_ref().unwrap().name.as_ref(), "compressor");
        assert_eq!(out.tags.get("site").map(String::as_str), Some("cellar"));
    }

    #[test]
    fn events_without_renamed_names_pass_untouched() {
        let s = wpm();
        let c = config("fields = { other = \"x\" }\ntags = { room = \"r\" }");
        let mut t = build(&c, &s);
        let mut m = Metric::new("hp1", tags(), SystemTime::UNIX_EPOCH, s.clone());
        m.fields.insert("outside_temperature".into(), Value::Float(2.5));
        let e = Event::from(m);
        let out = one(&mut *t, e.clone());
        match (&e, &out) {
            (Event::Metric(a), Event::Metric(b)) => assert!(Arc::ptr_eq(a, b)),
            _ => panic!(),
        }
    }
}
