//! `scale`: turns raw register values into engineering values.
//!
//! Every numeric field becomes `raw × scale + offset`, with `scale` and `offset`
//! taken from the field's description (the register map), unless the pipeline
//! overrides them for that field. Results are rounded to the field's decimals, so
//! binary noise such as `0.30000000000000004` never leaves hpflow.
//!
//! A field's output type is decided once per field from its description, never
//! from the value, because InfluxDB fixes a field's type on first write:
//! - an integer field whose factor and offset are whole numbers and that carries
//!   no decimals stays an integer (`factor = 1` keeps raw counters exact);
//! - any other integer field becomes a float, rounded to its decimals: the
//!   explicit `decimals` of the override, else those of the register map, else the
//!   decimals needed to write the factor and offset exactly (0.1 → 1, 0.01 → 2,
//!   0.5 → 1, 1 → 0, 0.001 → 3; a factor with no short decimal form such as 1/3 gets
//!   enough decimals to show one raw step, at most 6);
//! - a float field is rounded to explicit decimals if it has any, otherwise its
//!   scaled value is rounded to 12 significant digits (only the arithmetic's noise
//!   goes, not the device's precision);
//! - bools, texts, enum codes, state fields and bitmap words are never scaled.
//!
//! The output description is the input's with scale 1, offset 0, the new value
//! type and decimals, marked `scaled`; events whose description is already
//! `scaled` pass unchanged, so two `scale` transforms in a row never scale twice.
//! State changes pass through.
//!
//! ```toml
//! [transforms.scaled]
//! type = "scale"
//! inputs = ["heatpumps"]
//!
//! # Replace the register map's factor and offset of one field.
//! [transforms.scaled.fields.outside_temperature]
//! factor = 0.1
//! offset = -0.5
//! decimals = 1
//!
//! # Or map an input range onto an output range (Telegraf's `scaler` style).
//! [transforms.scaled.fields.valve_position]
//! input_min = 0
//! input_max = 4095
//! output_min = 0
//! output_max = 100
//! decimals = 1
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use crate::component::{BoxError, BuildContext, Check, Transform};
use crate::event::{Event, FieldKind, FieldMeta, Schema, Value, ValueType};
use crate::telemetry::ComponentMetrics;

/// Decimals derived from a factor never exceed this: beyond it the factor has no
/// short decimal form and more digits would only show noise.
const MAX_DERIVED_DECIMALS: u8 = 6;
/// Explicit decimals beyond this exceed what an f64 carries.
const MAX_DECIMALS: u8 = 15;
/// Float fields without decimals keep this many significant digits after scaling.
const SIGNIFICANT_DIGITS: i32 = 12;
/// Descriptions are shared per model, so a handful is normal; far more means a
/// source builds a new one per poll, and the cache starts over instead of growing.
const MAX_CACHED_SCHEMAS: usize = 256;

/// `[transforms.<id>]` with `type = "scale"`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleConfig {
    /// Per-field overrides of the register map, by field name
    /// (`[transforms.<id>.fields.<name>]`). Fields not named here use the map.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldOverride>,
}

/// How one field is scaled instead of the register map's `scale`/`offset`.
/// Either `factor`/`offset` or all four range keys, never both styles. Whichever
/// style is used replaces the map's scale and offset entirely.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldOverride {
    /// Multiplies the raw value (default 1 when only `offset` is given).
    pub factor: Option<f64>,
    /// Added after multiplying (default 0 when only `factor` is given).
    pub offset: Option<f64>,
    /// Raw value that maps to `output_min`.
    pub input_min: Option<f64>,
    /// Raw value that maps to `output_max`; must differ from `input_min`.
    pub input_max: Option<f64>,
    /// Engineering value at `input_min`.
    pub output_min: Option<f64>,
    /// Engineering value at `input_max`.
    pub output_max: Option<f64>,
    /// Decimals to round to (0-15). Default: derived from the factor and offset.
    pub decimals: Option<u8>,
}

/// An override reduced to what it does.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Override {
    /// `(factor, offset)` when the override replaces the map's.
    linear: Option<(f64, f64)>,
    decimals: Option<u8>,
}

impl FieldOverride {
    /// The override's effect, or every problem with it as `(sub-key, message)`.
    fn resolve(&self) -> Result<Override, Vec<(Option<&'static str>, String)>> {
        let mut problems = Vec::new();
        let range = [
            ("input_min", self.input_min),
            ("input_max", self.input_max),
            ("output_min", self.output_min),
            ("output_max", self.output_max),
        ];
        let linear_keys = [("factor", self.factor), ("offset", self.offset)];
        for (key, v) in range.iter().chain(linear_keys.iter()) {
            if v.is_some_and(|v| !v.is_finite()) {
                problems.push((Some(*key), format!("`{key}` must be a finite number")));
            }
        }
        if let Some(d) = self.decimals.filter(|d| *d > MAX_DECIMALS) {
            problems.push((
                Some("decimals"),
                format!("`decimals` = {d} is more than a 64-bit float carries; use 0 to {MAX_DECIMALS}"),
            ));
        }
        let given: Vec<&str> = range.iter().filter(|(_, v)| v.is_some()).map(|(k, _)| *k).collect();
        let linear_given = self.factor.is_some() || self.offset.is_some();
        let mut linear = None;
        if linear_given && !given.is_empty() {
            let style = if self.factor.is_some() { "factor" } else { "offset" };
            problems.push((
                Some(given[0]),
                format!(
                    "`{}` cannot be combined with `{style}`: scale a field either by `factor`/`offset` or by `input_min`/`input_max`/`output_min`/`output_max`",
                    given[0]
                ),
            ));
        } else if linear_given {
            let factor = self.factor.unwrap_or(1.0);
            if factor == 0.0 {
                problems.push((
                    Some("factor"),
                    "`factor` = 0 would turn every value into the offset".to_string(),
                ));
            }
            linear = Some((factor, self.offset.unwrap_or(0.0)));
        } else if !given.is_empty() {
            match (self.input_min, self.input_max, self.output_min, self.output_max) {
                (Some(i0), Some(i1), Some(o0), Some(o1)) => {
                    if i0 == i1 {
                        problems.push((
                            Some("input_max"),
                            format!("`input_max` equals `input_min` ({i0}); the input range must not be empty"),
                        ));
                    } else {
                        let factor = (o1 - o0) / (i1 - i0);
                        linear = Some((factor, o0 - i0 * factor));
                    }
                }
                _ => {
                    let missing: Vec<&str> = range.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| *k).collect();
                    problems.push((
                        None,
                        format!(
                            "a range override needs all of `input_min`, `input_max`, `output_min`, `output_max`; missing: {}",
                            missing.join(", ")
                        ),
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(Override {
                linear,
                decimals: self.decimals,
            })
        } else {
            Err(problems)
        }
    }
}

impl ScaleConfig {
    pub fn check(&self, cx: &mut Check<'_>) {
        let mut overrides = HashMap::new();
        for (name, o) in &self.fields {
            let key = format!("fields.{name}");
            match o.resolve() {
                Ok(r) => {
                    if r == Override::default() {
                        cx.warn(
                            Some(&key),
                            format!(
                                "the override of `{name}` sets nothing; give `factor`/`offset`, a range or `decimals`"
                            ),
                        );
                    }
                    overrides.insert(name.clone(), r);
                }
                Err(problems) => {
                    for (sub, msg) in problems {
                        let at = sub.map_or_else(|| key.clone(), |s| format!("{key}.{s}"));
                        cx.error(Some(&at), msg);
                    }
                }
            }
            check_field_exists(cx, name, &key);
        }
        let outputs: Vec<Arc<Schema>> = cx
            .input_schemas
            .iter()
            .map(|s| {
                if s.scaled {
                    s.clone()
                } else {
                    compile(s, &overrides).schema
                }
            })
            .collect();
        for s in outputs {
            cx.output(s);
        }
    }

    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Transform>, BoxError> {
        let mut overrides = HashMap::new();
        for (name, o) in &self.fields {
            let r = o.resolve().map_err(|p| {
                let msgs: Vec<String> = p.into_iter().map(|(_, m)| m).collect();
                format!("fields.{name}: {}", msgs.join("; "))
            })?;
            overrides.insert(name.clone(), r);
        }
        let mut scale = Scale {
            overrides,
            cache: HashMap::new(),
            warned: HashSet::new(),
            metrics: Some(cx.registry.component(cx.id, "transform", "scale")),
        };
        for s in cx.input_schemas {
            scale.compiled(s);
        }
        Ok(Box::new(scale))
    }
}

/// Reports an override of a field that no input model has, or that is not a number.
fn check_field_exists(cx: &mut Check<'_>, name: &str, key: &str) {
    if cx.input_schemas.is_empty() {
        return;
    }
    let found: Vec<(&Schema, &Arc<FieldMeta>)> = cx
        .input_schemas
        .iter()
        .filter_map(|s| s.field(name).map(|f| (&**s, f)))
        .collect();
    if found.is_empty() {
        let msg = format!(
            "no input model has a field `{name}`; known models: {}",
            cx.known_models()
        );
        cx.error(Some(key), msg);
        return;
    }
    for (schema, meta) in &found {
        if let Some(why) = never_scaled(meta) {
            cx.error(
                Some(key),
                format!("`{name}` of model `{}` is {why}, which is never scaled", schema.model),
            );
            return;
        }
    }
    if found.iter().all(|(s, _)| s.scaled) {
        cx.warn(
            Some(key),
            format!("`{name}` arrives already scaled (an upstream `scale` transform); this override has no effect"),
        );
    }
}

/// Why a field is never scaled, if it is not.
fn never_scaled(meta: &FieldMeta) -> Option<&'static str> {
    match meta.value_type {
        ValueType::Bool => return Some("a bool"),
        ValueType::Text => return Some("a text"),
        ValueType::Int | ValueType::Float => {}
    }
    if meta.labels.is_some() {
        return Some("an enum (its codes have labels)");
    }
    if meta.kind == FieldKind::State {
        return Some("a state (bitmap bit or word)");
    }
    None
}

/// What happens to one field's values.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plan {
    /// Whole factor and offset: integer arithmetic, integer result.
    Int {
        factor: i64,
        offset: i64,
    },
    Float {
        factor: f64,
        offset: f64,
        round: Rounding,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rounding {
    Decimals(u8),
    Significant,
}

/// An input description turned into its output description and the plan per field.
#[derive(Debug)]
struct Compiled {
    schema: Arc<Schema>,
    /// Only fields whose values change.
    plans: FxHashMap<Arc<str>, Plan>,
}

fn compile(input: &Schema, overrides: &HashMap<String, Override>) -> Compiled {
    let mut plans = FxHashMap::default();
    let mut fields = Vec::with_capacity(input.fields.len());
    for meta in &input.fields {
        let (plan, value_type, decimals) = field_plan(meta, overrides.get(&*meta.name));
        if let Some(p) = plan {
            plans.insert(meta.name.clone(), p);
        }
        fields.push(FieldMeta {
            value_type,
            decimals,
            scale: 1.0,
            offset: 0.0,
            ..(**meta).clone()
        });
    }
    let mut schema = Schema::new(input.model.clone(), fields);
    schema.scaled = true;
    schema.manufacturer = input.manufacturer.clone();
    Compiled {
        schema: Arc::new(schema),
        plans,
    }
}

/// The plan, output type and output decimals of one field.
fn field_plan(meta: &FieldMeta, ov: Option<&Override>) -> (Option<Plan>, ValueType, Option<u8>) {
    if never_scaled(meta).is_some() {
        return (None, meta.value_type, meta.decimals);
    }
    let linear = ov.and_then(|o| o.linear);
    let (factor, offset) = linear.unwrap_or((meta.scale, meta.offset));
    // The map's decimals belong to the map's factor; an override's factor brings its own.
    let explicit = ov
        .and_then(|o| o.decimals)
        .or(if linear.is_none() { meta.decimals } else { None });
    let identity = factor == 1.0 && offset == 0.0;
    match meta.value_type {
        ValueType::Int => {
            let decimals = explicit.unwrap_or_else(|| derived_decimals(factor, offset));
            match (whole(factor), whole(offset)) {
                (Some(factor), Some(offset)) if decimals == 0 => {
                    let plan = (!identity).then_some(Plan::Int { factor, offset });
                    (plan, ValueType::Int, Some(0))
                }
                _ => {
                    let plan = Plan::Float {
                        factor,
                        offset,
                        round: Rounding::Decimals(decimals),
                    };
                    (Some(plan), ValueType::Float, Some(decimals))
                }
            }
        }
        _ => match explicit {
            Some(d) => {
                let plan = Plan::Float {
                    factor,
                    offset,
                    round: Rounding::Decimals(d),
                };
                (Some(plan), ValueType::Float, Some(d))
            }
            None if identity => (None, ValueType::Float, None),
            None => {
                let plan = Plan::Float {
                    factor,
                    offset,
                    round: Rounding::Significant,
                };
                (Some(plan), ValueType::Float, None)
            }
        },
    }
}

/// `x` as an integer if it is a whole number an f64 holds exactly.
fn whole(x: f64) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    (x.fract() == 0.0 && x.abs() <= EXACT).then_some(x as i64)
}

/// Decimals a scaled value needs: those of the factor and offset written exactly,
/// or, for a factor with no short decimal form, enough to show one raw step.
fn derived_decimals(factor: f64, offset: f64) -> u8 {
    let f = exact_decimals(factor).unwrap_or_else(|| step_decimals(factor));
    let o = exact_decimals(offset).unwrap_or(f);
    f.max(o).min(MAX_DERIVED_DECIMALS)
}

/// Digits after the point of the shortest decimal that reads back as `x`, if few.
fn exact_decimals(x: f64) -> Option<u8> {
    // Display prints the shortest round-tripping form and never an exponent.
    let s = x.abs().to_string();
    let d = s.split_once('.').map_or(0, |(_, frac)| frac.len());
    u8::try_from(d).ok().filter(|d| *d <= MAX_DERIVED_DECIMALS)
}

/// Decimals that show a change of `step` with two significant digits.
fn step_decimals(step: f64) -> u8 {
    let step = step.abs();
    if step == 0.0 || !step.is_finite() {
        return 0;
    }
    let d = (-step.log10()).ceil() + 1.0;
    d.clamp(0.0, f64::from(MAX_DERIVED_DECIMALS)) as u8
}

/// Rounds half away from zero to `decimals`; values too large to carry that many
/// decimals are already as precise as they can be.
fn round_to(x: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    let y = x * p;
    if !y.is_finite() || y.abs() >= 4_503_599_627_370_496.0 {
        return x;
    }
    // n / 10^d with both exact is correctly rounded: the nearest f64 to the decimal.
    let r = y.round() / p;
    if r == 0.0 {
        0.0 // no "-0" in the output
    } else {
        r
    }
}

fn round_significant(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = SIGNIFICANT_DIGITS - 1 - magnitude;
    if (0..=22).contains(&decimals) {
        round_to(x, decimals)
    } else {
        x
    }
}

/// Why a value could not be scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Failure {
    Overflow,
    NotFinite,
}

/// The scaled value; `Ok(None)` leaves the value as it is.
fn apply(plan: Plan, v: &Value) -> Result<Option<Value>, Failure> {
    match (plan, v) {
        (_, Value::Bool(_) | Value::Text(_)) => Ok(None),
        (Plan::Int { factor, offset }, Value::Int(raw)) => raw
            .checked_mul(factor)
            .and_then(|x| x.checked_add(offset))
            .map(|x| Some(Value::Int(x)))
            .ok_or(Failure::Overflow),
        (Plan::Int { factor, offset }, Value::Float(raw)) => {
            // A source that sent a float for an integer field: keep the promised type.
            let y = (raw * factor as f64 + offset as f64).round();
            if !y.is_finite() {
                Err(Failure::NotFinite)
            } else if y.abs() >= 9.2e18 {
                Err(Failure::Overflow)
            } else {
                Ok(Some(Value::Int(y as i64)))
            }
        }
        (Plan::Float { factor, offset, round }, Value::Int(_) | Value::Float(_)) => {
            let raw = match v {
                Value::Int(i) => *i as f64,
                Value::Float(f) => *f,
                _ => return Ok(None),
            };
            let y = raw * factor + offset;
            if !y.is_finite() {
                return Err(Failure::NotFinite);
            }
            let y = match round {
                Rounding::Decimals(d) => round_to(y, i32::from(d)),
                Rounding::Significant => round_significant(y),
            };
            Ok(Some(Value::Float(y)))
        }
    }
}

/// The running transform.
pub struct Scale {
    overrides: HashMap<String, Override>,
    /// By address of the input description, which the entry keeps alive so the
    /// address cannot be reused by another description.
    cache: HashMap<usize, (Arc<Schema>, Arc<Compiled>)>,
    /// Fields already reported as unscalable, so a bad register logs once.
    warned: HashSet<(Arc<str>, Arc<str>)>,
    metrics: Option<Arc<ComponentMetrics>>,
}

impl Scale {
    fn compiled(&mut self, schema: &Arc<Schema>) -> Arc<Compiled> {
        let key = Arc::as_ptr(schema) as usize;
        if let Some((_, c)) = self.cache.get(&key) {
            return c.clone();
        }
        if self.cache.len() >= MAX_CACHED_SCHEMAS {
            tracing::debug!(entries = self.cache.len(), "Scale cache full; starting over");
            self.cache.clear();
        }
        let c = Arc::new(compile(schema, &self.overrides));
        self.cache.insert(key, (schema.clone(), c.clone()));
        c
    }

    fn report(&mut self, device: &Arc<str>, field: &Arc<str>, failure: Failure) {
        if let Some(m) = &self.metrics {
            m.error();
        }
        if self.warned.len() < 10_000 && self.warned.insert((device.clone(), field.clone())) {
            tracing::warn!(
                device = %device,
                field = %field,
                failure = ?failure,
                "Scaled value does not fit its type; the field is left out (further occurrences are only counted)"
            );
        }
    }
}

impl Transform for Scale {
    fn transform(&mut self, event: Event, out: &mut Vec<Event>) {
        let mut arc = match event {
            Event::Metric(m) if !m.schema.scaled => m,
            other => {
                out.push(other);
                return;
            }
        };
        let compiled = self.compiled(&arc.schema);
        let m = Arc::make_mut(&mut arc);
        m.schema = compiled.schema.clone();
        let mut failed = Vec::new();
        for (name, value) in m.fields.iter_mut() {
            let Some(plan) = compiled.plans.get(name) else {
                continue;
            };
            match apply(*plan, value) {
                Ok(Some(v)) => *value = v,
                Ok(None) => {}
                Err(f) => failed.push((name.clone(), f)),
            }
        }
        // A value that cannot be scaled is absent, never wrong.
        for (name, f) in failed {
            m.fields.remove(&name);
            let device = m.device.clone();
            self.report(&device, &name, f);
        }
        out.push(Event::Metric(arc));
    }
}

#[cfg(test)]
mod tests;
