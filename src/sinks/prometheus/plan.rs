//! Compiling a model's schema into metric families, once per model, and a
//! device's tags into its escaped label set, once per tag change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::event::{FieldKind, FieldMeta, Metric, Schema, Value, ValueType};

use super::names::{field_metric_names, label_name, push_label, sanitize, unit};

/// How a family is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Gauge,
    Counter,
    /// An enum as one 0/1 series per label. Typed `gauge` in both formats: an
    /// OpenMetrics `stateset` must name its label after the whole metric family,
    /// and hpflow names it after the field (`operating_mode="Heating"`).
    StateSet,
    /// OpenMetrics `info` (a gauge at 1 in the text format).
    Info,
}

/// One metric family.
#[derive(Debug)]
pub(super) struct Family {
    /// The family name (OpenMetrics `# TYPE`, without `_total`).
    pub name: String,
    /// The name each sample carries (with `_total` for counters).
    pub sample: String,
    pub kind: Kind,
    pub help: String,
    /// Set only when `name` ends with `_<unit>`, as OpenMetrics requires.
    pub unit: Option<String>,
}

/// Index of the `up` family in every exporter's table.
pub(super) const UP: u32 = 0;
/// Index of the `state_since_seconds` family.
pub(super) const SINCE: u32 = 1;

/// An integer or a float, each printed its own way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub(super) fn of(v: &Value) -> Option<Num> {
        match v {
            Value::Int(i) => Some(Num::Int(*i)),
            Value::Float(f) => Some(Num::Float(*f)),
            Value::Bool(b) => Some(Num::Int(i64::from(*b))),
            Value::Text(_) => None,
        }
    }

    /// Converted by `c`, rounded to the decimals the register carries so that a
    /// conversion adds no float noise.
    pub(super) fn convert(self, c: Conversion) -> Num {
        if c.factor == 1.0 {
            return self;
        }
        let x = match self {
            Num::Int(i) if c.factor.fract() == 0.0 => {
                if let Some(v) = i.checked_mul(c.factor as i64) {
                    return Num::Int(v);
                }
                i as f64 * c.factor
            }
            Num::Int(i) => i as f64 * c.factor,
            Num::Float(x) => x * c.factor,
        };
        match c.decimals {
            Some(d) if x.is_finite() => {
                let p = 10f64.powi(d);
                Num::Float((x * p).round() / p)
            }
            _ => Num::Float(x),
        }
    }
}

/// A unit conversion (`units = "base"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Conversion {
    pub(super) factor: f64,
    /// Decimals of the converted value, when the register's are known.
    pub(super) decimals: Option<i32>,
}

/// The 0/1 series of one enum field: `<label_name>="<label>"` per code, escaped.
#[derive(Debug)]
pub(super) struct StateSet {
    pub(super) label_name: String,
    pub(super) states: Vec<(i64, String)>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum FieldPlan {
    /// Text, or a name that clashes with another family.
    Skip,
    Gauge(u32, Conversion),
    Counter(u32, Conversion),
    /// The family and the index of its labels in [`Plan::state_sets`].
    StateSet(u32, u32),
}

/// A schema compiled for this exporter, by the rank of each field in the
/// schema's slots (where a poll's values sit), so a poll finds each field's
/// plan without hashing its name.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) schema: Arc<Schema>,
    /// Per rank.
    pub(super) fields: Box<[FieldPlan]>,
    /// Per rank: the index in `since_labels` of a state field's since label.
    pub(super) since: Box<[Option<u32>]>,
    /// `field="<name>"` of the since series.
    pub(super) since_labels: Vec<Arc<str>>,
    pub(super) state_sets: Vec<StateSet>,
    /// Label names the state sets add; a user tag of the same name is renamed.
    pub(super) state_label_names: HashSet<String>,
}

impl Plan {
    /// The rank of a field in the schema, found by name: for values stored by
    /// other slots than the schema's.
    pub(super) fn rank(&self, name: &str) -> Option<usize> {
        self.schema.slots().rank(name)
    }
}

#[derive(Debug, Default)]
pub(super) struct Families {
    pub(super) list: Vec<Arc<Family>>,
    pub(super) by_name: HashMap<String, u32>,
    /// The last plan per model; a schema equal to the cached one reuses it.
    pub(super) plans: HashMap<String, Arc<Plan>>,
    /// Fields that arrived without a description, by name (never state sets).
    pub(super) adhoc: FxHashMap<Arc<str>, FieldPlan>,
    /// Names already warned about, so a clash is logged once.
    pub(super) warned: HashSet<String>,
}

impl Families {
    pub(super) fn add(&mut self, family: Family) -> u32 {
        let id = self.list.len() as u32;
        self.by_name.insert(family.name.clone(), id);
        if family.sample != family.name {
            self.by_name.insert(family.sample.clone(), id);
        }
        self.list.push(Arc::new(family));
        id
    }

    /// The family of that name and kind, created if new; `None` when the name
    /// (or its sample name) is taken by a family of another kind.
    pub(super) fn get_or_add(&mut self, family: Family) -> Option<u32> {
        let existing = [&family.name, &family.sample]
            .into_iter()
            .find_map(|n| self.by_name.get(n).copied());
        match existing {
            // `up` and `state_since_seconds` are the exporter's own.
            Some(UP | SINCE) => None,
            Some(id) => {
                let f = &self.list[id as usize];
                (f.kind == family.kind && f.sample == family.sample).then_some(id)
            }
            None => Some(self.add(family)),
        }
    }
}

/// Label names a device's series already carry: state sets must not reuse them.
const STANDARD_LABELS: [&str; 5] = ["heat_pump_id", "name", "location", "model", "field"];

pub(super) fn compile(fams: &mut Families, prefix: &str, base_units: bool, schema: &Arc<Schema>) -> Plan {
    // The state sets' label names first: per-field plans need them all.
    let mut state_label_names = HashSet::new();
    for meta in &schema.fields {
        if is_state_set(meta) {
            state_label_names.insert(state_label_name(&meta.name));
        }
    }
    let slots = schema.slots();
    let mut fields = vec![FieldPlan::Skip; slots.len()];
    let mut since = vec![None; slots.len()];
    let mut since_labels = Vec::new();
    let mut state_sets = Vec::new();
    // Every field in schema order (families are claimed in that order); a
    // name given twice keeps its last description, as the slots do.
    for meta in &schema.fields {
        let Some(rank) = slots.rank(&meta.name) else { continue };
        fields[rank] = match field_plan(fams, prefix, base_units, meta) {
            FieldPlan::StateSet(f, _) => {
                state_sets.push(state_set(meta));
                FieldPlan::StateSet(f, state_sets.len() as u32 - 1)
            }
            p => p,
        };
        if meta.kind == FieldKind::State || meta.labels.is_some() || meta.value_type == ValueType::Bool {
            since_labels.push(since_label(&meta.name));
            since[rank] = Some(since_labels.len() as u32 - 1);
        }
    }
    Plan {
        schema: schema.clone(),
        fields: fields.into(),
        since: since.into(),
        since_labels,
        state_sets,
        state_label_names,
    }
}

/// The 0/1 series of an enum field.
pub(super) fn state_set(meta: &FieldMeta) -> StateSet {
    let label_name = state_label_name(&meta.name);
    let states = meta
        .labels
        .iter()
        .flatten()
        .map(|(code, label)| {
            let mut frag = String::new();
            push_label(&mut frag, &label_name, label);
            (*code, frag)
        })
        .collect();
    StateSet { label_name, states }
}

fn is_state_set(meta: &FieldMeta) -> bool {
    meta.value_type != ValueType::Text && meta.labels.as_ref().is_some_and(|l| !l.is_empty())
}

fn state_label_name(field: &str) -> String {
    let n = sanitize(field);
    if STANDARD_LABELS.contains(&n.as_str()) || n.starts_with("__") {
        format!("{n}_state")
    } else {
        n
    }
}

pub(super) fn since_label(field: &str) -> Arc<str> {
    let mut s = String::new();
    push_label(&mut s, "field", field);
    s.into()
}

pub(super) fn field_plan(fams: &mut Families, prefix: &str, base_units: bool, meta: &FieldMeta) -> FieldPlan {
    if meta.value_type == ValueType::Text {
        return FieldPlan::Skip;
    }
    let counter = meta.kind == FieldKind::Counter && !is_state_set(meta);
    let u = meta.unit.as_deref().and_then(|u| unit(u, base_units));
    let (name, sample) = field_metric_names(prefix, &meta.name, u.as_ref(), counter);
    let conversion = Conversion {
        factor: u.as_ref().map_or(1.0, |u| u.factor),
        decimals: meta.decimals.map(|d| {
            let factor = u.as_ref().map_or(1.0, |u| u.factor);
            // Dividing (ms → s) adds decimals; multiplying never does.
            i32::from(d) + (-factor.log10()).ceil().max(0.0) as i32
        }),
    };
    let unit = u
        .map(|u| u.suffix.into_owned())
        .filter(|u| name.ends_with(&format!("_{u}")));
    let help = match (&meta.description, &meta.unit) {
        (Some(d), _) if !d.trim().is_empty() => d.clone(),
        (_, Some(u)) if !u.trim().is_empty() => format!("{} ({u})", meta.name),
        _ => meta.name.to_string(),
    };
    let kind = if is_state_set(meta) {
        Kind::StateSet
    } else if counter {
        Kind::Counter
    } else {
        Kind::Gauge
    };
    let family = Family {
        name: name.clone(),
        sample,
        kind,
        help,
        unit,
    };
    let Some(id) = fams.get_or_add(family) else {
        if fams.warned.insert(name.clone()) {
            tracing::warn!(
                field = %meta.name,
                metric = %name,
                "Field skipped by the Prometheus sink: its metric name is taken by another metric of a different type"
            );
        }
        return FieldPlan::Skip;
    };
    match kind {
        Kind::Counter => FieldPlan::Counter(id, conversion),
        // The caller keeps the labels ([`state_set`]) and sets their index.
        Kind::StateSet => FieldPlan::StateSet(id, u32::MAX),
        Kind::Gauge | Kind::Info => FieldPlan::Gauge(id, conversion),
    }
}

/// The escaped label set of a device: `heat_pump_id` (the device id unless a tag
/// sets it), `model` (the schema's unless a tag sets it) and every tag, by
/// sanitised name. A tag named like a state set of its model (or `field`) becomes
/// `tag_<name>`; of two tags that sanitise alike, the first keeps the name.
pub(super) fn device_labels(m: &Metric, state_label_names: &HashSet<String>) -> Arc<str> {
    const STANDARD: [&str; 4] = ["heat_pump_id", "name", "location", "model"];
    let mut labels: BTreeMap<String, &str> = BTreeMap::new();
    labels.insert("heat_pump_id".into(), &m.device);
    if !m.schema.model.is_empty() {
        labels.insert("model".into(), &m.schema.model);
    }
    for (k, v) in m.tags.iter() {
        if STANDARD.contains(&k.as_str()) {
            labels.insert(k.clone(), v);
            continue;
        }
        let mut name = label_name(k);
        if name == "field" || state_label_names.contains(&name) {
            name = format!("tag_{name}");
        }
        labels.entry(name).or_insert(v);
    }
    let mut s = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        push_label(&mut s, k, v);
    }
    s.into()
}
