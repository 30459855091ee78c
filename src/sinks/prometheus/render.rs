//! The exporter's state (latest values per device), written out at each scrape.
//!
//! Updating does the work once per poll: each model's schema is compiled once into
//! a plan (metric family and kind per field, by the rank of the field in the
//! schema's slots, so a poll's values find theirs without hashing a name), each
//! device's label set is escaped once and cached while its tags stay the same,
//! and a device's samples (16 bytes each) are built outside the lock and swapped
//! in as one `Arc`. A scrape holds the locks only to copy those `Arc`s, gathers
//! each family's rows in one pass over the devices into one allocation, then
//! writes family by family (the formats want every sample of a family together,
//! while the state is kept per device).
//!
//! No sample carries a timestamp: Prometheus stamps a scrape with its own time and
//! relies on that for staleness handling; explicit timestamps would make series
//! linger for 5 minutes after a device is gone and make a late poll look out of
//! order. The poll time shows through `<ns>_state_since_seconds` where it matters.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::event::{Event, FieldMeta, Schema, Tags, ValueType};
use crate::telemetry::{DeviceHealth, Registry};

use super::exposition::{header, write_line, Format};
use super::internal;
use super::names::push_label;
use super::plan::{compile, device_labels, field_plan, since_label, Families, FieldPlan, Plan, StateSet, SINCE, UP};
use super::plan::{Family, Kind, Num};

/// Where the exporter reads the time; tests inject their own.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Where the exporter reads the Modbus devices' health at scrape time
/// (the pipeline's device health, from its telemetry registry).
pub type HealthSource = Arc<dyn Fn() -> Vec<DeviceHealth> + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// A sample of a device's last poll (or a counter), in 16 bytes: the number
/// itself, or the code of a state set, or a since stamp with its label's
/// index. In a device, `key` is the sample's family; in a scrape's rows
/// (gathered family by family), the device's index, so pass 2 writes each
/// family from rows in order instead of reaching back into 1,000 devices'
/// scattered samples for every line.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    key: u32,
    /// The kind (top two bits), a flag and an index.
    what: u32,
    bits: u64,
}

/// What a [`Sample`] holds.
enum Held {
    Num(Num),
    /// The index of the state set in the plan, and the code.
    State(u32, Option<i64>),
    /// A since stamp's label (the plan's, or the device's own when the plan
    /// has none), and the Unix seconds.
    Since(SinceLabel, f64),
}

#[derive(Clone, Copy)]
enum SinceLabel {
    Plan(u32),
    Own(u32),
}

impl Sample {
    const INT: u32 = 0;
    const FLOAT: u32 = 1 << 30;
    const STATE: u32 = 2 << 30;
    const SINCE: u32 = 3 << 30;
    const KIND: u32 = 3 << 30;
    /// A state set without a code; a since label of the device's own.
    const FLAG: u32 = 1 << 29;
    const INDEX: u32 = Sample::FLAG - 1;

    fn num(family: u32, v: Num) -> Sample {
        let (what, bits) = match v {
            Num::Int(i) => (Sample::INT, i as u64),
            Num::Float(x) => (Sample::FLOAT, x.to_bits()),
        };
        Sample {
            key: family,
            what,
            bits,
        }
    }

    fn state(family: u32, set: u32, code: Option<i64>) -> Sample {
        let flag = if code.is_some() { 0 } else { Sample::FLAG };
        Sample {
            key: family,
            what: Sample::STATE | flag | set,
            bits: code.unwrap_or(0) as u64,
        }
    }

    fn since(label: SinceLabel, secs: f64) -> Sample {
        let what = match label {
            SinceLabel::Plan(i) => i,
            SinceLabel::Own(i) => Sample::FLAG | i,
        };
        Sample {
            key: SINCE,
            what: Sample::SINCE | what,
            bits: secs.to_bits(),
        }
    }

    /// The same sample under another key (a row of device `key`).
    fn keyed(self, key: usize) -> Sample {
        Sample {
            key: key as u32,
            ..self
        }
    }

    fn held(self) -> Held {
        let index = self.what & Sample::INDEX;
        let flag = self.what & Sample::FLAG != 0;
        match self.what & Sample::KIND {
            Sample::INT => Held::Num(Num::Int(self.bits as i64)),
            Sample::FLOAT => Held::Num(Num::Float(f64::from_bits(self.bits))),
            Sample::STATE => Held::State(index, (!flag).then_some(self.bits as i64)),
            _ => {
                let label = if flag {
                    SinceLabel::Own(index)
                } else {
                    SinceLabel::Plan(index)
                };
                Held::Since(label, f64::from_bits(self.bits))
            }
        }
    }
}

/// What the exporter knows of one device. Replaced whole on each poll.
#[derive(Debug)]
struct Device {
    device: Arc<str>,
    /// The device's labels, escaped, comma-separated, without braces.
    labels: Arc<str>,
    tags: Arc<Tags>,
    plan: Arc<Plan>,
    /// When its last poll arrived (exporter clock).
    seen: SystemTime,
    /// The last poll carried at least one number.
    answered: bool,
    /// Gauges, state sets and since stamps of the last poll only, keyed by family.
    samples: Box<[Sample]>,
    /// Since labels of state fields the plan does not know (rare).
    own_since: Box<[Arc<str>]>,
    /// Every counter the device ever reported, at its last value, sorted by
    /// family: expiry and a poll that misses one never make a counter go
    /// backwards or vanish.
    counters: Box<[Sample]>,
}

impl Device {
    fn since_label(&self, label: SinceLabel) -> &str {
        match label {
            SinceLabel::Plan(i) => &self.plan.since_labels[i as usize],
            SinceLabel::Own(i) => &self.own_since[i as usize],
        }
    }
}

/// The latest value of every numeric field of every device, ready to render.
pub struct Exporter {
    prefix: String,
    base_units: bool,
    expire_after: Duration,
    clock: Clock,
    internal: Option<Arc<Registry>>,
    health: Option<HealthSource>,
    families: Mutex<Families>,
    devices: Mutex<BTreeMap<Arc<str>, Arc<Device>>>,
    /// Size of the last scrape's device series, to allocate the next one at once.
    last_size: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Exporter {
    /// `namespace` prefixes every device series (`heatpump` → `heatpump_up`);
    /// `internal` adds hpflow's own `hpflow_*` metrics to each scrape.
    pub fn new(namespace: &str, expire_after: Duration, clock: Clock, internal: Option<Arc<Registry>>) -> Self {
        let prefix = if namespace.is_empty() {
            String::new()
        } else {
            format!("{namespace}_")
        };
        let mut families = Families::default();
        let up = format!("{prefix}up");
        let since = format!("{prefix}state_since_seconds");
        families.add(Family {
            name: up.clone(),
            sample: up,
            kind: Kind::Gauge,
            help: "1 while the device answers: its last poll brought values, within expire_after, and its source does \
                   not report it down"
                .into(),
            unit: None,
        });
        families.add(Family {
            name: since.clone(),
            sample: since,
            kind: Kind::Gauge,
            help: "Unix time since which an operating state holds its current value".into(),
            unit: Some("seconds".into()),
        });
        Exporter {
            prefix,
            base_units: false,
            expire_after,
            clock,
            internal,
            health: None,
            families: Mutex::new(families),
            devices: Mutex::new(BTreeMap::new()),
            last_size: AtomicUsize::new(0),
        }
    }

    /// Converts time, energy and power to seconds, joules and watts (see
    /// [`super::names`]); call before the first event.
    pub fn with_base_units(mut self, on: bool) -> Self {
        self.base_units = on;
        self
    }

    /// Reads the Modbus sources' device health at each scrape: a device its
    /// source reports down has `up` 0 at once, and the `hpflow_modbus_*`
    /// metrics (with `internal`) come from it.
    pub fn with_health(mut self, health: HealthSource) -> Self {
        self.health = Some(health);
        self
    }

    /// Takes in one event: a poll replaces its device's samples (counters keep
    /// their last value); state changes carry nothing the next poll won't.
    pub fn update(&self, event: &Event) {
        let Event::Metric(m) = event else { return };
        let now = (self.clock)();
        let prev = lock(&self.devices).get(&m.device).cloned();
        let plan = match &prev {
            Some(d) if Arc::ptr_eq(&d.plan.schema, &m.schema) => d.plan.clone(),
            _ => self.plan_for(&m.schema),
        };
        let labels = match &prev {
            Some(d) if Arc::ptr_eq(&d.plan, &plan) && (Arc::ptr_eq(&d.tags, &m.tags) || d.tags == m.tags) => {
                d.labels.clone()
            }
            _ => device_labels(m, &plan.state_label_names),
        };
        let mut counters = prev.as_ref().map(|d| d.counters.to_vec()).unwrap_or_default();
        let mut samples = Vec::with_capacity(m.fields.len() + m.since.len());
        let mut own_since = Vec::new();
        let mut answered = false;
        // Values stored by the schema's own slots have the plan's ranks (the
        // plan's schema equals the event's); others are found by name.
        let ranked = Arc::ptr_eq(m.fields.slots(), m.schema.slots());
        for (rank, name, value) in m.fields.iter_ranked() {
            let Some(num) = Num::of(value) else { continue };
            answered = true;
            let rank = if ranked { rank } else { plan.rank(name) };
            let field_plan = match rank {
                Some(r) => plan.fields[r],
                None => self.adhoc_plan(name),
            };
            match field_plan {
                FieldPlan::Skip => {}
                FieldPlan::Gauge(f, c) => samples.push(Sample::num(f, num.convert(c))),
                FieldPlan::Counter(f, c) => {
                    let sample = Sample::num(f, num.convert(c));
                    match counters.binary_search_by_key(&f, |s| s.key) {
                        Ok(i) => counters[i] = sample,
                        Err(i) => counters.insert(i, sample),
                    }
                }
                FieldPlan::StateSet(f, set) => {
                    let code = match num {
                        Num::Int(i) => Some(i),
                        Num::Float(x) if x.fract() == 0.0 => Some(x as i64),
                        Num::Float(_) => None,
                    };
                    samples.push(Sample::state(f, set, code));
                }
            }
        }
        let ranked = Arc::ptr_eq(m.since.slots(), m.schema.slots());
        for (rank, name, since) in m.since.iter_ranked() {
            let Some(at) = since else { continue };
            let secs = match at.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            let rank = if ranked { rank } else { plan.rank(name) };
            let label = match rank.and_then(|r| plan.since[r]) {
                Some(i) => SinceLabel::Plan(i),
                None => {
                    own_since.push(since_label(name));
                    SinceLabel::Own(own_since.len() as u32 - 1)
                }
            };
            samples.push(Sample::since(label, secs));
        }
        let device = Arc::new(Device {
            device: m.device.clone(),
            labels,
            tags: m.tags.clone(),
            plan,
            seen: now,
            answered,
            samples: samples.into_boxed_slice(),
            own_since: own_since.into_boxed_slice(),
            counters: counters.into_boxed_slice(),
        });
        lock(&self.devices).insert(m.device.clone(), device);
    }

    /// Forgets the gauge and state samples of devices past `expire_after`, so
    /// memory holds only what a scrape shows.
    pub fn sweep(&self) {
        let now = (self.clock)();
        let mut devices = lock(&self.devices);
        for d in devices.values_mut() {
            if !d.samples.is_empty() && !self.fresh(d, now) {
                *d = Arc::new(Device {
                    device: d.device.clone(),
                    labels: d.labels.clone(),
                    tags: d.tags.clone(),
                    plan: d.plan.clone(),
                    seen: d.seen,
                    answered: d.answered,
                    samples: Box::default(),
                    own_since: Box::default(),
                    counters: d.counters.clone(),
                });
            }
        }
    }

    /// How often [`Exporter::sweep`] is worth running.
    pub fn sweep_interval(&self) -> Duration {
        (self.expire_after / 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Number of devices known (fresh or stale).
    pub fn devices(&self) -> usize {
        lock(&self.devices).len()
    }

    fn fresh(&self, d: &Device, now: SystemTime) -> bool {
        // A clock that stepped back counts as fresh rather than expiring everything.
        d.answered && now.duration_since(d.seen).map_or(true, |age| age <= self.expire_after)
    }

    /// The whole exposition in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        self.render_into(format, &mut out);
        out
    }

    /// Appends the whole exposition in `format` to `out`.
    pub fn render_into(&self, format: Format, out: &mut String) {
        self.render_with(format, out, usize::MAX, &mut |_| {});
    }

    /// The whole exposition in `format`, handed to `emit` in pieces of about
    /// `chunk` bytes (each ends with a whole line), so a scrape of thousands of
    /// devices never holds the whole text at once.
    pub fn render_chunked(&self, format: Format, chunk: usize, emit: &mut dyn FnMut(String)) {
        let mut out = String::with_capacity(chunk + chunk / 4);
        self.render_with(format, &mut out, chunk, emit);
        if !out.is_empty() {
            emit(out);
        }
    }

    /// Renders into `out`; whenever `out` holds `chunk` bytes or more after a
    /// line, it goes to `emit` and `out` starts empty again.
    fn render_with(&self, format: Format, out: &mut String, chunk: usize, emit: &mut dyn FnMut(String)) {
        let mut emitted = 0;
        let mut spill = |out: &mut String| {
            if out.len() >= chunk {
                emitted += out.len();
                emit(std::mem::replace(out, String::with_capacity(chunk + chunk / 4)));
            }
        };
        let now = (self.clock)();
        let devices: Vec<Arc<Device>> = lock(&self.devices).values().cloned().collect();
        let families: Vec<Arc<Family>> = lock(&self.families).list.clone();
        let health = self.health.as_ref().map(|h| h()).unwrap_or_default();
        // Down when every source polling the device says so.
        let mut answering: HashMap<&str, bool> = HashMap::with_capacity(health.len());
        for h in &health {
            *answering.entry(&h.device).or_default() |= h.up;
        }

        // Pass 1: each family's rows, device by device, counted first so they
        // sit in one allocation, family after family; pass 2 writes family by
        // family straight into `out`.
        // What pass 2 needs of each device, in order: its labels and its plan's state sets.
        let labels: Vec<&str> = devices.iter().map(|d| &*d.labels).collect();
        let state_sets: Vec<&[StateSet]> = devices.iter().map(|d| &d.plan.state_sets[..]).collect();
        let mut up = Vec::with_capacity(devices.len());
        let mut start = vec![0usize; families.len() + 1];
        for d in &devices {
            let fresh = self.fresh(d, now);
            up.push(fresh && answering.get(&*d.device).copied().unwrap_or(true));
            let samples: &[Sample] = if fresh { &d.samples } else { &[] };
            for s in samples.iter().chain(d.counters.iter()) {
                start[s.key as usize + 1] += 1;
            }
        }
        for f in 0..families.len() {
            start[f + 1] += start[f];
        }
        let mut next = start.clone();
        let mut rows = vec![Sample::default(); start[families.len()]];
        for (di, d) in devices.iter().enumerate() {
            let samples: &[Sample] = if self.fresh(d, now) { &d.samples } else { &[] };
            for s in samples.iter().chain(d.counters.iter()) {
                let at = &mut next[s.key as usize];
                rows[*at] = s.keyed(di);
                *at += 1;
            }
        }

        let mut order: Vec<usize> = (0..families.len()).collect();
        order.sort_by(|&a, &b| families[a].name.cmp(&families[b].name));
        if chunk == usize::MAX {
            let hint = self.last_size.load(Ordering::Relaxed);
            out.reserve(hint + hint / 8);
        }
        let begin = out.len();
        for f in order {
            let family = &families[f];
            let name = family.sample.as_str();
            if f == UP as usize {
                if devices.is_empty() {
                    continue;
                }
                header(out, format, family);
                for (labels, up) in labels.iter().zip(&up) {
                    spill(out);
                    write_line(out, name, labels, None, Num::Int((*up).into()));
                }
                continue;
            }
            let rows = &rows[start[f]..start[f + 1]];
            if rows.is_empty() {
                continue;
            }
            header(out, format, family);
            for row in rows {
                spill(out);
                let labels = labels[row.key as usize];
                match row.held() {
                    Held::Num(v) => write_line(out, name, labels, None, v),
                    Held::Since(label, secs) => {
                        let label = devices[row.key as usize].since_label(label);
                        write_line(out, name, labels, Some(label), Num::Float(secs));
                    }
                    Held::State(set, code) => {
                        let set = &state_sets[row.key as usize][set as usize];
                        let mut known = false;
                        for (c, frag) in &set.states {
                            let on = Some(*c) == code;
                            known |= on;
                            write_line(out, name, labels, Some(frag), Num::Int(on.into()));
                        }
                        if let (false, Some(c)) = (known, code) {
                            // A code the register map has no label for still shows, by number.
                            let mut frag = String::new();
                            push_label(&mut frag, &set.label_name, &c.to_string());
                            write_line(out, name, labels, Some(&frag), Num::Int(1));
                        }
                    }
                }
            }
        }
        spill(out);
        self.last_size.store(emitted + out.len() - begin, Ordering::Relaxed);
        if let Some(registry) = &self.internal {
            internal::render(out, format, registry, &health);
        }
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
    }

    /// The plan of a schema, compiled on first sight of its model (or of a
    /// changed schema of it).
    fn plan_for(&self, schema: &Arc<Schema>) -> Arc<Plan> {
        let mut fams = lock(&self.families);
        if let Some(p) = fams.plans.get(&schema.model) {
            if Arc::ptr_eq(&p.schema, schema) || *p.schema == **schema {
                return p.clone();
            }
        }
        let plan = Arc::new(compile(&mut fams, &self.prefix, self.base_units, schema));
        fams.plans.insert(schema.model.clone(), plan.clone());
        plan
    }

    /// The metric families known so far, `up` and `state_since_seconds` first.
    #[cfg(test)]
    pub(super) fn family_table(&self) -> Vec<Arc<Family>> {
        lock(&self.families).list.clone()
    }

    /// A field the schema does not describe: a plain gauge named after it.
    fn adhoc_plan(&self, name: &Arc<str>) -> FieldPlan {
        let mut fams = lock(&self.families);
        if let Some(p) = fams.adhoc.get(name) {
            return *p;
        }
        let meta = FieldMeta::gauge(name, ValueType::Float);
        let p = field_plan(&mut fams, &self.prefix, false, &meta);
        fams.adhoc.insert(name.clone(), p);
        p
    }
}
