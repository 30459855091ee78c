//! A seeded model test of the exporter: random polls (devices, models whose
//! schema changes, fields absent or outside the schema, NaN and infinities,
//! unknown enum codes, since stamps, tag changes), clock steps, sweeps and
//! devices reported down, against a plain reference that keeps each device's
//! lines in a list and writes them with `format!`. The whole exposition, in
//! both formats and cut in pieces, must match after every step.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::exposition::header;
use super::plan::{
    device_labels, field_plan, since_label, state_set, Families, Family, FieldPlan, Kind, Num, SINCE, UP,
};
use super::*;
use crate::event::{Event, FieldKind, FieldMeta, Metric, Schema, Tags, Value, ValueType};
use crate::modbus::Rng;
use crate::telemetry::DeviceHealth;

/// Draws from the crate's seeded generator, so a failure names its seed.
trait Draw {
    fn below(&mut self, n: usize) -> usize;

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

impl Draw for Rng {
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// What the reference keeps of a device: its lines as they will be written.
struct RefDevice {
    labels: String,
    seen: SystemTime,
    answered: bool,
    /// (family, extra label, value) of the last poll, in the order written.
    lines: Vec<(u32, Option<String>, Num)>,
    counters: BTreeMap<u32, Num>,
}

/// The plan of a schema, by field name.
struct RefPlan {
    schema: Arc<Schema>,
    fields: BTreeMap<Arc<str>, (FieldPlan, Option<Arc<super::plan::StateSet>>)>,
    state_label_names: HashSet<String>,
}

struct Reference {
    prefix: String,
    base_units: bool,
    expire_after: Duration,
    families: Families,
    plans: HashMap<String, Arc<RefPlan>>,
    devices: BTreeMap<Arc<str>, RefDevice>,
}

impl Reference {
    fn new(base_units: bool, expire_after: Duration) -> Self {
        let mut families = Families::default();
        for (name, unit) in [("heatpump_up", None), ("heatpump_state_since_seconds", Some("seconds"))] {
            families.add(Family {
                name: name.into(),
                sample: name.into(),
                kind: Kind::Gauge,
                help: String::new(),
                unit: unit.map(Into::into),
            });
        }
        Reference {
            prefix: "heatpump_".into(),
            base_units,
            expire_after,
            families,
            plans: HashMap::new(),
            devices: BTreeMap::new(),
        }
    }

    fn plan(&mut self, schema: &Arc<Schema>) -> Arc<RefPlan> {
        if let Some(p) = self.plans.get(&schema.model) {
            if *p.schema == **schema {
                return p.clone();
            }
        }
        let mut state_label_names = HashSet::new();
        let mut fields = BTreeMap::new();
        for meta in &schema.fields {
            let p = field_plan(&mut self.families, &self.prefix, self.base_units, meta);
            let set = matches!(p, FieldPlan::StateSet(..)).then(|| Arc::new(state_set(meta)));
            if let Some(set) = &set {
                state_label_names.insert(set.label_name.clone());
            }
            fields.insert(meta.name.clone(), (p, set));
        }
        let plan = Arc::new(RefPlan {
            schema: schema.clone(),
            fields,
            state_label_names,
        });
        self.plans.insert(schema.model.clone(), plan.clone());
        plan
    }

    fn update(&mut self, m: &Metric, now: SystemTime) {
        let plan = self.plan(&m.schema);
        let mut lines = Vec::new();
        let mut answered = false;
        let mut counters = self
            .devices
            .get(&m.device)
            .map(|d| d.counters.clone())
            .unwrap_or_default();
        for (name, value) in m.fields.iter() {
            let Some(num) = Num::of(value) else { continue };
            answered = true;
            let (p, set) = match plan.fields.get(name) {
                Some((p, set)) => (*p, set.clone()),
                None => {
                    let meta = FieldMeta::gauge(name, ValueType::Float);
                    (field_plan(&mut self.families, &self.prefix, false, &meta), None)
                }
            };
            match (p, set) {
                (FieldPlan::Gauge(f, c), _) => lines.push((f, None, num.convert(c))),
                (FieldPlan::Counter(f, c), _) => {
                    counters.insert(f, num.convert(c));
                }
                (FieldPlan::StateSet(f, _), Some(set)) => {
                    let code = match num {
                        Num::Int(i) => Some(i),
                        Num::Float(x) if x.fract() == 0.0 => Some(x as i64),
                        Num::Float(_) => None,
                    };
                    for (c, frag) in &set.states {
                        lines.push((f, Some(frag.clone()), Num::Int((Some(*c) == code).into())));
                    }
                    if let Some(c) = code.filter(|c| !set.states.iter().any(|(s, _)| s == c)) {
                        lines.push((f, Some(format!("{}=\"{c}\"", set.label_name)), Num::Int(1)));
                    }
                }
                _ => {}
            }
        }
        for (name, since) in m.since.iter() {
            let Some(at) = since else { continue };
            let secs = match at.duration_since(UNIX_EPOCH) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            lines.push((SINCE, Some(since_label(name).to_string()), Num::Float(secs)));
        }
        let labels = device_labels(m, &plan.state_label_names).to_string();
        let device = RefDevice {
            labels,
            seen: now,
            answered,
            lines,
            counters,
        };
        self.devices.insert(m.device.clone(), device);
    }

    fn fresh(&self, d: &RefDevice, now: SystemTime) -> bool {
        d.answered && now.duration_since(d.seen).map_or(true, |age| age <= self.expire_after)
    }

    fn sweep(&mut self, now: SystemTime) {
        let expire_after = self.expire_after;
        for d in self.devices.values_mut() {
            let fresh = d.answered && now.duration_since(d.seen).map_or(true, |age| age <= expire_after);
            if !fresh {
                d.lines.clear();
            }
        }
    }

    fn render(&self, format: Format, now: SystemTime, down: &HashSet<String>, help: &[Arc<Family>]) -> String {
        let mut out = String::new();
        let mut order: Vec<usize> = (0..self.families.list.len()).collect();
        order.sort_by(|&a, &b| self.families.list[a].name.cmp(&self.families.list[b].name));
        for f in order {
            let family = &self.families.list[f];
            let mut lines = String::new();
            for (id, d) in &self.devices {
                let fresh = self.fresh(d, now);
                if f == UP as usize {
                    let up = fresh && !down.contains(&**id);
                    lines += &format!("{}{{{}}} {}\n", family.sample, d.labels, u8::from(up));
                    continue;
                }
                let shown = if fresh { &d.lines[..] } else { &[] };
                for (_, extra, v) in shown.iter().filter(|l| l.0 as usize == f) {
                    let extra = extra.as_ref().map(|e| format!(",{e}")).unwrap_or_default();
                    lines += &format!("{}{{{}{extra}}} {}\n", family.sample, d.labels, value(*v));
                }
                if let Some(v) = d.counters.get(&(f as u32)) {
                    lines += &format!("{}{{{}}} {}\n", family.sample, d.labels, value(*v));
                }
            }
            if !lines.is_empty() {
                // The exporter's own two families have its HELP texts.
                let family = if f <= SINCE as usize { &help[f] } else { family };
                header(&mut out, format, family);
                out += &lines;
            }
        }
        if format == Format::OpenMetrics {
            out += "# EOF\n";
        }
        out
    }
}

/// A number as the exposition has always written it: ryu's shortest text,
/// integral floats as integers.
fn value(v: Num) -> String {
    match v {
        Num::Int(i) => i.to_string(),
        Num::Float(x) if x.is_nan() => "NaN".into(),
        Num::Float(x) if x.is_infinite() => if x > 0.0 { "+Inf" } else { "-Inf" }.into(),
        Num::Float(x) if x.fract() == 0.0 && x.abs() < 1e15 => (x as i64).to_string(),
        Num::Float(x) => ryu::Buffer::new().format_finite(x).to_string(),
    }
}

/// Field descriptions the random schemas draw from: clashing names, units
/// converted in base units, counters, enums, bools, text.
fn field_pool() -> Vec<FieldMeta> {
    let f = |name: &str, unit: Option<&str>, kind: FieldKind, ty: ValueType| {
        let mut m = FieldMeta::gauge(name, ty);
        m.unit = unit.map(Into::into);
        m.kind = kind;
        m.description = Some(format!("{name} \"described\"\nhere"));
        m
    };
    use FieldKind::*;
    use ValueType::*;
    let mut mode = f("mode", Some("enum"), State, Int);
    mode.labels = Some(BTreeMap::from([
        (0, "Off".into()),
        (1, "Heat \"x\"".into()),
        (3, "Cool\\".into()),
    ]));
    let mut phase = f("phase", None, Gauge, Int);
    phase.labels = Some(BTreeMap::from([(1, "One".into()), (2, "Two".into())]));
    let mut empty_labels = f("quiet", None, State, Int);
    empty_labels.labels = Some(BTreeMap::new());
    let mut decimals = f("flow_ms", Some("ms"), Gauge, Float);
    decimals.decimals = Some(1);
    vec![
        f("temp", Some("celsius"), Gauge, Float),
        f("temp-2", Some("celsius"), Gauge, Float),
        f("temp_2", Some("celsius"), Gauge, Float),
        f("up", None, Gauge, Int),
        f("heat_total", Some("kwh"), Counter, Int),
        f("heat", Some("kwh"), Counter, Float),
        f("runtime_hours", Some("hours"), Counter, Int),
        f("power", Some("kw"), Gauge, Float),
        f("power", Some("w"), Gauge, Float),
        f("running", None, State, Bool),
        f("firmware", None, Gauge, Text),
        f("field", None, Gauge, Int),
        f("speed", Some("percent"), Gauge, Int),
        f("speed", Some("percent"), Counter, Int),
        mode,
        phase,
        empty_labels,
        decimals,
    ]
}

/// A schema of `model` with a random part of the pool (sometimes a name twice).
fn random_schema(rng: &mut Rng, model: &str, pool: &[FieldMeta]) -> Arc<Schema> {
    let mut fields: Vec<FieldMeta> = pool.iter().filter(|_| rng.chance(60)).cloned().collect();
    if rng.chance(10) && !fields.is_empty() {
        let again = rng.pick(&fields).clone();
        fields.push(again);
    }
    Arc::new(Schema::new(model, fields))
}

fn random_value(rng: &mut Rng, meta: Option<&FieldMeta>) -> Value {
    const FLOATS: [f64; 12] = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.1,
        12.3,
        -7.25,
        1e300,
        2.5e-7,
        1e15,
        3.0,
        0.30000000000000004,
    ];
    match meta.map(|m| m.value_type) {
        Some(ValueType::Text) if rng.chance(80) => Value::Text("1.2.3".into()),
        Some(ValueType::Bool) => Value::Bool(rng.chance(50)),
        _ => match rng.below(5) {
            0 => Value::Int(rng.below(6) as i64 - 1),
            1 => Value::Int(rng.next_u64() as i64),
            2 => Value::Float(*rng.pick(&FLOATS)),
            3 => Value::Float(f64::from_bits(rng.next_u64())),
            _ => Value::Float((rng.below(20_000) as f64 - 10_000.0) / 10.0),
        },
    }
}

fn random_tags(rng: &mut Rng, id: &str) -> Arc<Tags> {
    let mut tags = Tags::new();
    tags.insert("name".into(), format!("Pump {id} \"{}\"", rng.below(2)));
    if rng.chance(70) {
        tags.insert("location".into(), "Basement\\1".into());
    }
    for extra in ["mode", "field", "customer-id", "customer_id", "heat_pump_id"] {
        if rng.chance(15) {
            tags.insert(extra.into(), format!("{extra}{}", rng.below(3)));
        }
    }
    Arc::new(tags)
}

fn random_poll(rng: &mut Rng, id: &str, schema: &Arc<Schema>, tags: Arc<Tags>, at: SystemTime) -> Metric {
    let mut m = Metric::new(id, tags, at, schema.clone());
    if rng.chance(15) {
        // Values stored outside the schema's slots (as a transform may leave them).
        m.fields = crate::event::Fields::new();
        m.since = crate::event::Fields::new();
    }
    for meta in &schema.fields {
        if rng.chance(75) {
            m.fields
                .insert(meta.name.clone(), random_value(rng, Some(meta.as_ref())));
        }
        if (meta.kind == FieldKind::State || meta.labels.is_some()) && rng.chance(60) {
            let since = match rng.below(4) {
                0 => None,
                1 => Some(UNIX_EPOCH - Duration::from_millis(1500)),
                _ => Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + rng.below(100_000) as u64)),
            };
            m.since.insert(meta.name.clone(), since);
        }
    }
    for extra in ["derived-cop", "derived_cop", "temp_2", "outside"] {
        if rng.chance(10) {
            m.fields.insert(extra.into(), random_value(rng, None));
        }
    }
    if rng.chance(5) {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        m.since.insert("not_in_schema".into(), Some(at));
    }
    m
}

#[test]
fn the_exposition_matches_a_plain_reference_after_every_step() {
    let pool = field_pool();
    for seed in 1..=60u64 {
        let mut rng = Rng::new(seed);
        let base_units = rng.chance(50);
        let expire_after = Duration::from_secs(300);
        let now = Arc::new(Mutex::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
        let clock: Clock = {
            let now = now.clone();
            Arc::new(move || *now.lock().unwrap())
        };
        let down: Arc<Mutex<HashSet<String>>> = Arc::default();
        let health: HealthSource = {
            let down = down.clone();
            Arc::new(move || {
                let down = down.lock().unwrap();
                down.iter()
                    .map(|d| DeviceHealth {
                        device: d.as_str().into(),
                        up: false,
                        ..DeviceHealth::default()
                    })
                    .collect()
            })
        };
        let ex = Exporter::new("heatpump", expire_after, clock, None)
            .with_base_units(base_units)
            .with_health(health);
        let help = ex.family_table();
        let mut reference = Reference::new(base_units, expire_after);

        let models = ["wpm", "lwz", ""];
        let mut schemas: Vec<Arc<Schema>> = models.iter().map(|m| random_schema(&mut rng, m, &pool)).collect();
        let devices: Vec<String> = (0..6).map(|d| format!("hp{d}")).collect();
        let mut tags: Vec<Arc<Tags>> = devices.iter().map(|d| random_tags(&mut rng, d)).collect();
        for step in 0..80 {
            let t = *now.lock().unwrap();
            match rng.below(10) {
                0 => {
                    // A model's schema changes (a reload, a firmware with more registers).
                    let i = rng.below(schemas.len());
                    schemas[i] = random_schema(&mut rng, models[i], &pool);
                }
                1 => {
                    let mut now = now.lock().unwrap();
                    match rng.below(4) {
                        0 => *now -= Duration::from_secs(rng.below(400) as u64),
                        _ => *now += Duration::from_secs(rng.below(400) as u64),
                    }
                }
                2 => {
                    ex.sweep();
                    reference.sweep(t);
                }
                3 => {
                    let d = rng.pick(&devices).clone();
                    let mut down = down.lock().unwrap();
                    if !down.remove(&d) {
                        down.insert(d);
                    }
                }
                _ => {
                    let d = rng.below(devices.len());
                    if rng.chance(10) {
                        tags[d] = random_tags(&mut rng, &devices[d]);
                    }
                    let schema = &schemas[d % 2 + usize::from(rng.chance(10))];
                    let m = random_poll(&mut rng, &devices[d], schema, tags[d].clone(), t);
                    reference.update(&m, t);
                    ex.update(&Event::from(m));
                }
            }
            let t = *now.lock().unwrap();
            let down_now = down.lock().unwrap().clone();
            for format in [Format::Text, Format::OpenMetrics] {
                let want = reference.render(format, t, &down_now, &help);
                let got = ex.render(format);
                if got != want {
                    let diff = got
                        .lines()
                        .zip(want.lines())
                        .find(|(g, w)| g != w)
                        .map(|(g, w)| format!("got  {g}\nwant {w}"))
                        .unwrap_or_else(|| "one ends early".into());
                    panic!(
                        "seed {seed}, step {step}, {format:?}: first difference\n{diff}\n\ngot\n{got}\nwant\n{want}"
                    );
                }
                let mut pieces = String::new();
                ex.render_chunked(format, 64, &mut |p| pieces.push_str(&p));
                assert_eq!(pieces, want, "seed {seed}, step {step}, {format:?} in pieces");
            }
        }
    }
}
