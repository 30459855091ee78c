//! `state_diff`: remembers each operating state of each device and since when it
//! holds; emits a state change when one flips.
//!
//! Tracked are, by default, the fields whose description has kind `state` (bools,
//! bitmap bits, enums), or exactly the fields listed in `fields`. For every device
//! and tracked field the transform keeps the current value and since when it
//! holds. Each metric passes on with `since[field]` set for every tracked field it
//! carries; when a value differs from the remembered one, a [`StateChange`]
//! (`from`, `to`, `at` = the poll's time, `from_since`) follows the metric.
//!
//! - A value seen for the first time has an unknown since (`None`), never "now":
//!   hpflow cannot know how long it held before. After the first flip, since is the
//!   poll time of the flip.
//! - An absent field (a failed read) neither flips nor forgets the state.
//! - Values are compared as numbers across int/float/bool (a map that starts
//!   decoding a state word as bool is not a flip), texts as texts.
//! - The states survive a restart: at most every `persist_interval` while
//!   something changed, the devices that changed are appended to
//!   `<data_dir>/state_diff/<component id>.journal` and synced; when the journal
//!   has grown to the size of the whole file, and on shutdown, the whole file
//!   `<component id>.json` is written atomically instead and the journal starts
//!   over (see [`journal`]). A flip that happened while hpflow
//!   was down is reported at the first poll that sees it. A missing, corrupt or
//!   older-format file is logged and the transform starts empty (a corrupt file
//!   is moved aside as `<id>.json.corrupt-<unix ms>`); a file that exists but
//!   cannot be read fails the build.
//! - `heartbeat`: every period, a [`StateChange`] with `from == to` and `at` = now
//!   for every remembered state of every device, so sinks that only store changes
//!   stay fresh. Heartbeats are told apart from flips by `from == to`.
//! - Memory stays bounded: a device that sent nothing for `expire_after` is
//!   forgotten, in memory and in the file (also when loading a file older than
//!   that), so its states start over with an unknown since if it comes back.
//!
//! ```toml
//! [transforms.states]
//! type = "state_diff"
//! inputs = ["scaled"]
//! # fields = ["compressor_running", "operating_mode"]   # default: every `state` field
//! persist_interval = "1s"
//! heartbeat = "15m"
//! expire_after = "7d"
//! ```
//!
//! State file (version 1; times are RFC 3339 UTC with nanoseconds):
//!
//! ```json
//! {"version":1,"devices":{"hp1":{"last_seen":"2025-01-01T10:00:00Z",
//!   "tags":{"heat_pump_id":"hp1"},
//!   "states":{"compressor_running":{"value":{"bool":true},"since":"2025-01-01T09:12:30Z"}}}}}
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::component::{BoxError, BuildContext, Check, Claim, Transform};
use crate::event::{Event, FieldKind, FieldMeta, Metric, Schema, StateChange, Tags, Value, ValueType};
use crate::fsutil::{read_state_file, write_atomically, Stored};
use crate::telemetry::ComponentMetrics;

use super::journal::{self, journal_path, Journal};

const FILE_VERSION: u32 = 1;

/// Names of tracked fields, shared by every event of a model.
type FieldList = Arc<[Arc<str>]>;
const MAX_CACHED_SCHEMAS: usize = 256;
/// How often expired devices are looked for (or every `expire_after`, if shorter).
const EXPIRY_CHECK: Duration = Duration::from_secs(60);
/// A device's `last_seen` alone makes the file dirty only once it moved this far
/// (or an eighth of `expire_after`, if shorter): it only serves expiry.
const LAST_SEEN_RESOLUTION: Duration = Duration::from_secs(3600);

/// `[transforms.<id>]` with `type = "state_diff"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDiffConfig {
    /// The fields to track. Default: every field whose description has kind
    /// `state` (bools, bitmap bits, enums).
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// Longest time a change waits before it is written to the state file.
    #[serde(default = "default_persist_interval", with = "crate::component::duration")]
    pub persist_interval: Duration,
    /// When set, every state of every device is re-sent this often as a
    /// state change with `from == to`. Default: off.
    #[serde(default, with = "crate::component::duration")]
    pub heartbeat: Option<Duration>,
    /// A device that sends nothing for this long is forgotten.
    #[serde(default = "default_expire_after", with = "crate::component::duration")]
    pub expire_after: Duration,
}

fn default_persist_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_expire_after() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

/// Where a component keeps its states.
pub fn state_path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("state_diff").join(format!("{id}.json"))
}

impl StateDiffConfig {
    pub fn check(&self, cx: &mut Check<'_>) {
        cx.pass_through();
        for (key, d) in [
            ("persist_interval", Some(self.persist_interval)),
            ("heartbeat", self.heartbeat),
            ("expire_after", Some(self.expire_after)),
        ] {
            if d == Some(Duration::ZERO) {
                cx.error(Some(key), format!("`{key}` must be longer than 0s"));
            }
        }
        match &self.fields {
            Some(fields) => check_fields(cx, fields),
            None => {
                let any_state = cx
                    .input_schemas
                    .iter()
                    .any(|s| s.fields.iter().any(|f| f.kind == FieldKind::State));
                if !cx.input_schemas.is_empty() && !any_state {
                    let msg = format!(
                        "no input model has a field of kind `state` (models: {}); nothing is tracked unless `fields` names some",
                        cx.known_models()
                    );
                    cx.warn(None, msg);
                }
            }
        }
        let path = state_path(cx.data_dir, cx.id);
        cx.claim(None, Claim::File(path));
    }

    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Transform>, BoxError> {
        let metrics = cx.registry.component(cx.id, "transform", "state_diff");
        let path = state_path(cx.data_dir, cx.id);
        let dir = path.parent().unwrap_or(cx.data_dir);
        fs::create_dir_all(dir).map_err(|e| format!("cannot create the state folder {}: {e}", dir.display()))?;
        let (mut devices, generation) = load(&path, cx.id, &metrics)?;
        let now = SystemTime::now();
        let before = devices.len();
        devices.retain(|_, d| !expired(d.last_seen, now, self.expire_after));
        let tracked = self.fields.as_ref().map(|f| {
            let mut seen = HashSet::new();
            f.iter()
                .filter(|n| seen.insert(n.as_str()))
                .map(|n| Arc::from(n.as_str()))
                .collect::<FieldList>()
        });
        Ok(Box::new(StateDiff {
            id: cx.id.into(),
            tracked,
            by_schema: HashMap::new(),
            dirty: devices.len() != before,
            devices,
            forgotten: Vec::new(),
            journal: None,
            generation,
            file_len: 0,
            path,
            persist_interval: self.persist_interval,
            heartbeat: self.heartbeat,
            expire_after: self.expire_after,
            last_save: None,
            next_heartbeat: None,
            next_expiry_check: None,
            metrics,
        }))
    }
}

/// An explicit field list must name fields of the input models, once each.
fn check_fields(cx: &mut Check<'_>, fields: &[String]) {
    if fields.is_empty() {
        cx.error(
            Some("fields"),
            "`fields` is empty, so nothing would be tracked; remove it to track every `state` field",
        );
    }
    let mut seen = HashSet::new();
    for (i, name) in fields.iter().enumerate() {
        let key = format!("fields[{i}]");
        if name.is_empty() {
            cx.error(Some(&key), "a field name must not be empty");
            continue;
        }
        if !seen.insert(name.as_str()) {
            cx.warn(Some(&key), format!("`{name}` is listed twice"));
            continue;
        }
        if cx.input_schemas.is_empty() {
            continue;
        }
        let metas: Vec<&Arc<FieldMeta>> = cx.input_schemas.iter().filter_map(|s| s.field(name)).collect();
        if metas.is_empty() {
            let msg = format!(
                "no input model has a field `{name}`; known models: {}",
                cx.known_models()
            );
            cx.error(Some(&key), msg);
        } else if metas.iter().all(|m| m.value_type == ValueType::Float) {
            cx.warn(
                Some(&key),
                format!("`{name}` is a float; every change of its value will count as a state change"),
            );
        }
    }
}

/// What is remembered of one device.
#[derive(Debug, Clone, PartialEq)]
struct Device {
    tags: Arc<Tags>,
    /// Poll time of the device's latest event.
    last_seen: SystemTime,
    /// `last_seen` as last written to the file.
    saved_last_seen: SystemTime,
    /// What the file holds of it changed since the last save.
    unsaved: bool,
    states: BTreeMap<Arc<str>, State>,
}

#[derive(Debug, Clone, PartialEq)]
struct State {
    value: Value,
    /// `None`: unknown (first seen without history).
    since: Option<SystemTime>,
    /// The field's description as last seen (not persisted).
    meta: Option<Arc<FieldMeta>>,
}

/// The running transform.
pub struct StateDiff {
    id: Arc<str>,
    /// The explicit field list; `None` tracks the `state` fields of each model.
    tracked: Option<FieldList>,
    /// Tracked fields by address of the description (kept alive by the entry).
    by_schema: HashMap<usize, (Arc<Schema>, FieldList)>,
    devices: BTreeMap<Arc<str>, Device>,
    /// Devices forgotten since the last save, for the journal.
    forgotten: Vec<Arc<str>>,
    /// The journal being appended to; `None`: the next save writes the whole file.
    journal: Option<Journal>,
    /// The generation of the state file as last written whole (or loaded).
    generation: u64,
    /// Its size.
    file_len: u64,
    dirty: bool,
    path: PathBuf,
    persist_interval: Duration,
    heartbeat: Option<Duration>,
    expire_after: Duration,
    last_save: Option<SystemTime>,
    next_heartbeat: Option<SystemTime>,
    next_expiry_check: Option<SystemTime>,
    metrics: Arc<ComponentMetrics>,
}

impl StateDiff {
    fn tracked_for(&mut self, schema: &Arc<Schema>) -> FieldList {
        if let Some(t) = &self.tracked {
            return t.clone();
        }
        let key = Arc::as_ptr(schema) as usize;
        if let Some((_, t)) = self.by_schema.get(&key) {
            return t.clone();
        }
        if self.by_schema.len() >= MAX_CACHED_SCHEMAS {
            self.by_schema.clear();
        }
        let t: FieldList = schema
            .fields
            .iter()
            .filter(|f| f.kind == FieldKind::State)
            .map(|f| f.name.clone())
            .collect();
        self.by_schema.insert(key, (schema.clone(), t.clone()));
        t
    }

    /// Updates the remembered states from one poll, stamps `since` on it and
    /// collects the flips.
    fn observe(&mut self, m: &mut Metric, tracked: &[Arc<str>], changes: &mut Vec<StateChange>) {
        let resolution = LAST_SEEN_RESOLUTION.min(self.expire_after / 8);
        let dev = self.devices.entry(m.device.clone()).or_insert_with(|| Device {
            tags: m.tags.clone(),
            last_seen: m.time,
            saved_last_seen: SystemTime::UNIX_EPOCH,
            unsaved: true,
            states: BTreeMap::new(),
        });
        // Whether what the file holds of this device changed.
        let mut changed = dev.tags != m.tags;
        dev.tags = m.tags.clone();
        dev.last_seen = dev.last_seen.max(m.time);
        if dev
            .last_seen
            .duration_since(dev.saved_last_seen)
            .is_ok_and(|d| d >= resolution)
        {
            changed = true;
        }
        for name in tracked {
            let Some(value) = m.fields.get(name) else {
                continue;
            };
            let meta = m.schema.field(name).cloned();
            let since = match dev.states.get_mut(name) {
                None => {
                    dev.states.insert(
                        name.clone(),
                        State {
                            value: value.clone(),
                            since: None,
                            meta,
                        },
                    );
                    changed = true;
                    None
                }
                Some(st) => {
                    if meta.is_some() {
                        st.meta = meta;
                    }
                    if same_state(&st.value, value) {
                        if st.value != *value {
                            st.value = value.clone();
                            changed = true;
                        }
                    } else {
                        let from = std::mem::replace(&mut st.value, value.clone());
                        changes.push(StateChange {
                            device: m.device.clone(),
                            tags: m.tags.clone(),
                            field: name.clone(),
                            from: Some(from),
                            to: value.clone(),
                            at: m.time,
                            from_since: st.since,
                            meta: st.meta.clone(),
                        });
                        st.since = Some(m.time);
                        changed = true;
                    }
                    st.since
                }
            };
            m.since.insert_ref(name, since);
        }
        if changed {
            dev.unsaved = true;
            self.dirty = true;
        }
    }

    fn emit_heartbeat(&self, now: SystemTime, out: &mut Vec<Event>) {
        for (device, d) in &self.devices {
            for (field, st) in &d.states {
                out.push(
                    StateChange {
                        device: device.clone(),
                        tags: d.tags.clone(),
                        field: field.clone(),
                        from: Some(st.value.clone()),
                        to: st.value.clone(),
                        at: now,
                        from_since: st.since,
                        meta: st.meta.clone(),
                    }
                    .into(),
                );
            }
        }
    }

    fn expire(&mut self, now: SystemTime) {
        let before = self.devices.len();
        let expire_after = self.expire_after;
        let forgotten = &mut self.forgotten;
        self.devices.retain(|id, d| {
            let keep = !expired(d.last_seen, now, expire_after);
            if !keep {
                forgotten.push(id.clone());
            }
            keep
        });
        let gone = before - self.devices.len();
        if gone > 0 {
            info!(component = %self.id, devices = gone, "Forgot the states of devices not seen for `expire_after`");
            self.dirty = true;
        }
    }

    /// The state file's bytes as of `generation`: the same JSON as serializing
    /// the whole [`StateFile`], streamed device by device. Written only when
    /// the journal has grown to the file's size, so no copy of each entry is
    /// kept between saves.
    fn render(&mut self, generation: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.file_len).unwrap_or(0) + 4096);
        out.extend_from_slice(
            format!("{{\"version\":{FILE_VERSION},\"generation\":{generation},\"devices\":{{").as_bytes(),
        );
        for (i, (id, d)) in self.devices.iter_mut().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, &**id).map_err(io::Error::other)?;
            out.push(b':');
            serde_json::to_writer(&mut out, &stored_device(d)).map_err(io::Error::other)?;
            d.saved_last_seen = d.last_seen;
            d.unsaved = false;
        }
        out.extend_from_slice(b"}}");
        Ok(out)
    }

    /// Saves what changed: appended to the journal, or the whole file once the
    /// journal has grown to its size (or there is no journal yet).
    fn save(&mut self, now: SystemTime) {
        self.last_save = Some(now);
        let result = match &self.journal {
            Some(j) if !j.outgrew(self.file_len) => self.append(),
            _ => self.compact(),
        };
        self.saved(result);
    }

    fn saved(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => {
                self.dirty = false;
            }
            Err(e) => {
                // What the journal holds may end in a line cut short: the
                // next save writes the whole file and a fresh journal.
                self.journal = None;
                self.metrics.error();
                warn!(component = %self.id, path = %self.path.display(), error = %e, "Saving states failed; retrying later");
            }
        }
    }

    /// Appends the forgotten devices and the changed ones to the journal.
    fn append(&mut self) -> io::Result<()> {
        let mut lines = Vec::new();
        for id in self.forgotten.drain(..) {
            // One that came back is written whole below, which replaces it.
            if !self.devices.contains_key(&id) {
                line(&mut lines, &id, None)?;
            }
        }
        for (id, d) in self.devices.iter_mut().filter(|(_, d)| d.unsaved) {
            let entry = serde_json::to_vec(&stored_device(d)).map_err(io::Error::other)?;
            d.saved_last_seen = d.last_seen;
            d.unsaved = false;
            line(&mut lines, id, Some(&entry))?;
        }
        match self.journal.as_mut() {
            Some(j) if !lines.is_empty() => j.append(&lines),
            Some(_) => Ok(()),
            None => Err(io::Error::other("no journal open")),
        }
    }

    /// Writes the whole file as the next generation, then starts its journal.
    fn compact(&mut self) -> io::Result<()> {
        let generation = self.generation + 1;
        let bytes = self.render(generation)?;
        write_atomically(&self.path, &bytes)?;
        self.generation = generation;
        self.file_len = bytes.len() as u64;
        self.forgotten.clear();
        self.journal = Some(Journal::start(&journal_path(&self.path), FILE_VERSION, generation)?);
        Ok(())
    }
}

fn expired(last_seen: SystemTime, now: SystemTime, expire_after: Duration) -> bool {
    now.duration_since(last_seen).is_ok_and(|d| d > expire_after)
}

/// True when two readings are the same state: equal numbers across int, float
/// and bool, equal texts.
fn same_state(a: &Value, b: &Value) -> bool {
    match (a, b) {
        _ if a == b => true,
        (Value::Int(_), Value::Int(_)) | (Value::Float(_), Value::Float(_)) | (Value::Bool(_), Value::Bool(_)) => false,
        (Value::Text(_), _) | (_, Value::Text(_)) => false,
        _ => a.as_f64() == b.as_f64(),
    }
}

impl Transform for StateDiff {
    fn transform(&mut self, event: Event, out: &mut Vec<Event>) {
        let Event::Metric(mut arc) = event else {
            out.push(event);
            return;
        };
        let tracked = self.tracked_for(&arc.schema);
        if !tracked.iter().any(|f| arc.fields.contains_key(f)) {
            // Nothing to stamp; a known device is still alive.
            if let Some(d) = self.devices.get_mut(&arc.device) {
                d.last_seen = d.last_seen.max(arc.time);
            }
            out.push(Event::Metric(arc));
            return;
        }
        let mut changes = Vec::new();
        self.observe(Arc::make_mut(&mut arc), &tracked, &mut changes);
        out.push(Event::Metric(arc));
        out.extend(changes.into_iter().map(Event::from));
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(
            self.heartbeat
                .map_or(self.persist_interval, |h| h.min(self.persist_interval)),
        )
    }

    fn tick(&mut self, now: SystemTime, out: &mut Vec<Event>) {
        if let Some(period) = self.heartbeat {
            match self.next_heartbeat {
                Some(next) if now >= next => {
                    self.emit_heartbeat(now, out);
                    self.next_heartbeat = Some(now + period);
                }
                // Unset, or the clock went back by more than a period.
                Some(next) if next <= now + period => {}
                _ => self.next_heartbeat = Some(now + period),
            }
        }
        if self
            .next_expiry_check
            .is_none_or(|t| now >= t || t > now + EXPIRY_CHECK)
        {
            self.expire(now);
            self.next_expiry_check = Some(now + EXPIRY_CHECK.min(self.expire_after));
        }
        if self.dirty {
            // Ticks jitter; half a tick of slack keeps "every interval" from becoming every other.
            let slack = self.tick_interval().unwrap_or_default() / 2;
            let due = self.last_save.is_none_or(|t| {
                now.duration_since(t)
                    .map_or(true, |d| d + slack >= self.persist_interval)
            });
            if due {
                self.save(now);
            }
        }
    }

    fn shutdown(&mut self, _out: &mut Vec<Event>) {
        // A stopped pipeline leaves the whole file and an empty journal.
        if self.dirty || self.journal.as_ref().is_some_and(Journal::has_entries) {
            let result = self.compact();
            self.saved(result);
        }
    }
}

// ---- The state file ----

/// A journal line: a device's entry, or `null` once it is forgotten.
#[derive(Deserialize)]
struct Line {
    device: String,
    state: Option<StoredDevice>,
}

/// Adds the line of `device`: its entry (JSON), or `None` once it is forgotten.
fn line(out: &mut Vec<u8>, device: &str, entry: Option<&[u8]>) -> io::Result<()> {
    out.extend_from_slice(b"{\"device\":");
    serde_json::to_writer(&mut *out, device).map_err(io::Error::other)?;
    out.extend_from_slice(b",\"state\":");
    out.extend_from_slice(entry.unwrap_or(b"null"));
    out.extend_from_slice(b"}\n");
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    /// Counts whole saves; the journal applies to its own generation only.
    #[serde(default)]
    generation: u64,
    devices: BTreeMap<String, StoredDevice>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredDevice {
    last_seen: String,
    #[serde(default)]
    tags: Tags,
    states: BTreeMap<String, StoredState>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredState {
    value: StoredValue,
    since: Option<String>,
}

/// Values keep their type across a restart (`{"int": 3}`), so a restored state
/// compares equal to the same reading.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoredValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

fn time_to_string(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

fn time_from_string(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339(s).map_err(|e| format!("bad time `{s}`: {e}"))
}

/// What the file keeps of one device.
fn stored_device(d: &Device) -> StoredDevice {
    let states = d
        .states
        .iter()
        .filter_map(|(name, st)| {
            let value = match &st.value {
                Value::Int(i) => StoredValue::Int(*i),
                // JSON has no NaN or infinity; such a state starts over after a restart.
                Value::Float(f) if !f.is_finite() => return None,
                Value::Float(f) => StoredValue::Float(*f),
                Value::Bool(b) => StoredValue::Bool(*b),
                Value::Text(t) => StoredValue::Text(t.to_string()),
            };
            let since = st.since.map(time_to_string);
            Some((name.to_string(), StoredState { value, since }))
        })
        .collect();
    StoredDevice {
        last_seen: time_to_string(d.last_seen),
        tags: (*d.tags).clone(),
        states,
    }
}

/// The whole file at once: what [`StateDiff::render`] must equal.
#[cfg(test)]
fn to_file(devices: &BTreeMap<Arc<str>, Device>, generation: u64) -> StateFile {
    StateFile {
        version: FILE_VERSION,
        generation,
        devices: devices
            .iter()
            .map(|(id, d)| (id.to_string(), stored_device(d)))
            .collect(),
    }
}

/// A device as the file keeps it, read back.
fn from_stored(d: StoredDevice) -> Result<Device, String> {
    let last_seen = time_from_string(&d.last_seen)?;
    let mut states = BTreeMap::new();
    for (name, st) in d.states {
        let value = match st.value {
            StoredValue::Int(i) => Value::Int(i),
            StoredValue::Float(f) => Value::Float(f),
            StoredValue::Bool(b) => Value::Bool(b),
            StoredValue::Text(t) => Value::Text(t.into()),
        };
        let since = st.since.as_deref().map(time_from_string).transpose()?;
        states.insert(
            Arc::from(name.as_str()),
            State {
                value,
                since,
                meta: None,
            },
        );
    }
    Ok(Device {
        tags: Arc::new(d.tags),
        last_seen,
        saved_last_seen: last_seen,
        unsaved: false,
        states,
    })
}

fn from_file(file: StateFile) -> Result<(BTreeMap<Arc<str>, Device>, u64), String> {
    let mut devices = BTreeMap::new();
    for (id, d) in file.devices {
        devices.insert(Arc::from(id.as_str()), from_stored(d)?);
    }
    Ok((devices, file.generation))
}

/// Reads the state file and applies its journal: the states and the file's
/// generation. A missing file is a first start; a corrupt or foreign one is
/// reported, moved aside, and the transform starts empty; only a file (or
/// journal) that exists but cannot be read is an error. A journal line cut
/// short (a crash during a save) ends the replay, with a warning.
fn load(path: &Path, id: &str, metrics: &ComponentMetrics) -> Result<(BTreeMap<Arc<str>, Device>, u64), BoxError> {
    let parse = |bytes: &[u8]| {
        serde_json::from_slice::<StateFile>(bytes)
            .map_err(|e| format!("not a state file: {e}"))
            .and_then(from_file)
    };
    let (mut devices, generation) = match read_state_file(path, FILE_VERSION, id, "starting without history", parse)? {
        Stored::Loaded(loaded) => loaded,
        Stored::Missing => return Ok((BTreeMap::new(), 0)),
        Stored::Unusable => {
            metrics.error();
            return Ok((BTreeMap::new(), 0));
        }
    };
    let journal = journal_path(path);
    let replay = journal::replay::<Line>(&journal, FILE_VERSION, generation)?;
    let replayed = replay.entries.len();
    for Line { device, state: entry } in replay.entries {
        match entry.map(from_stored).transpose() {
            Ok(Some(d)) => {
                devices.insert(Arc::from(device.as_str()), d);
            }
            Ok(None) => {
                devices.remove(device.as_str());
            }
            Err(problem) => {
                metrics.error();
                warn!(component = %id, path = %journal.display(), device = %device, %problem, "State journal entry unusable; that device keeps its earlier states");
            }
        }
    }
    if let Some(cut) = replay.cut {
        metrics.error();
        warn!(component = %id, path = %journal.display(), %cut, "State journal ends in an entry cut short (a save interrupted); the entries before it are restored");
    }
    info!(component = %id, path = %path.display(), devices = devices.len(), journal_entries = replayed, "Restored states");
    Ok((devices, generation))
}

#[cfg(test)]
mod tests;
