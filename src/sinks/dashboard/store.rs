//! What the dashboard knows about each pump: its last poll, recent state
//! flips and the history of every numeric field; saved on shutdown and
//! reloaded at start.
//!
//! History file (`<data_dir>/dashboard/<id>/history.bin`): the magic
//! `HPFDASH1`, then per device its id, model, tags, last poll (time, fields,
//! since) and every field's [`Series`], all little-endian and length-prefixed,
//! closed by a CRC-32 of everything before it. A file that does not check out is
//! moved aside (`.corrupt-<unix ms>`) and the dashboard starts empty.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;
use tracing::{info, warn};

use super::history::{secs, DecodeError, Reader, Series, Writer, MAX_WINDOW};
use crate::event::{unix_millis, Event, Metric, Schema, StateChange, Tags, Value};
use crate::fsutil::move_aside;

const MAGIC: &[u8; 8] = b"HPFDASH1";
/// State flips remembered per pump for its page.
pub const CHANGES_KEPT: usize = 20;

/// One pump.
pub struct Device {
    /// The last poll (restored from the history file until the first new one).
    pub metric: Arc<Metric>,
    /// False while the pump has not been heard from since start.
    pub live: bool,
    /// Field names come from the pipeline's models, never from a request.
    pub series: FxHashMap<Arc<str>, Series>,
    pub changes: VecDeque<Arc<StateChange>>,
    /// Bumped by everything that changes what the pump's card shows.
    pub generation: u64,
}

/// Every pump, by id.
pub struct Store {
    pub devices: BTreeMap<Arc<str>, Device>,
    max_pumps: usize,
    warned_full: bool,
}

impl Store {
    pub fn new(max_pumps: usize) -> Self {
        Store {
            devices: BTreeMap::new(),
            max_pumps,
            warned_full: false,
        }
    }

    pub fn ingest(&mut self, event: &Event) {
        match event {
            Event::Metric(m) => self.metric(m),
            Event::StateChange(c) => {
                if c.from.as_ref() == Some(&c.to) {
                    return; // a heartbeat, not a flip
                }
                if let Some(d) = self.devices.get_mut(&c.device) {
                    if d.changes.len() == CHANGES_KEPT {
                        d.changes.pop_front();
                    }
                    d.changes.push_back(c.clone());
                    d.generation += 1;
                }
            }
        }
    }

    fn metric(&mut self, m: &Arc<Metric>) {
        if m.fields.is_empty() {
            return;
        }
        if !self.devices.contains_key(&m.device) {
            if self.devices.len() >= self.max_pumps {
                if !self.warned_full {
                    self.warned_full = true;
                    warn!(device = %m.device, max_pumps = self.max_pumps, "Dashboard is full; pumps beyond `max_pumps` are not shown");
                }
                return;
            }
            self.devices.insert(
                m.device.clone(),
                Device {
                    metric: m.clone(),
                    live: true,
                    series: FxHashMap::default(),
                    changes: VecDeque::new(),
                    generation: 0,
                },
            );
        }
        let Some(d) = self.devices.get_mut(&m.device) else {
            return;
        };
        d.generation += 1;
        let t = secs(m.time);
        for (name, v) in &m.fields {
            if let Some(x) = v.as_f64() {
                match d.series.get_mut(name) {
                    Some(s) => s.push(t, x),
                    None => {
                        let mut s = Series::default();
                        s.push(t, x);
                        d.series.insert(name.clone(), s);
                    }
                }
            }
        }
        if !d.live || m.time >= d.metric.time {
            d.metric = m.clone();
            d.live = true;
        }
    }

    /// The encoded history file.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.buf.extend_from_slice(MAGIC);
        w.u32(self.devices.len() as u32);
        for (id, d) in &self.devices {
            let m = &d.metric;
            w.str(id);
            w.str(&m.schema.model);
            w.u32(m.tags.len() as u32);
            for (k, v) in m.tags.iter() {
                w.str(k);
                w.str(v);
            }
            w.i64(unix_millis(m.time));
            w.u32(m.fields.len() as u32);
            for (k, v) in &m.fields {
                w.str(k);
                match v {
                    Value::Int(i) => {
                        w.u8(0);
                        w.i64(*i);
                    }
                    Value::Float(f) => {
                        w.u8(1);
                        w.f64(*f);
                    }
                    Value::Bool(b) => {
                        w.u8(2);
                        w.u8(u8::from(*b));
                    }
                    Value::Text(t) => {
                        w.u8(3);
                        w.str(t);
                    }
                }
            }
            w.u32(m.since.len() as u32);
            for (k, v) in &m.since {
                w.str(k);
                w.i64(v.map_or(i64::MIN, unix_millis));
            }
            w.u32(d.series.len() as u32);
            for (k, s) in &d.series {
                w.str(k);
                s.encode(&mut w);
            }
        }
        let crc = crc32fast::hash(&w.buf);
        w.u32(crc);
        w.buf
    }

    /// Restores an encoded history; `schemas` describe the models the inputs
    /// carry, so restored pumps show units and labels before their first poll.
    pub fn decode(&mut self, bytes: &[u8], schemas: &[Arc<Schema>], now: SystemTime) -> Result<(), DecodeError> {
        if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(DecodeError("not a dashboard history file"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let mut crc_bytes = [0; 4];
        crc_bytes.copy_from_slice(crc);
        if crc32fast::hash(body) != u32::from_le_bytes(crc_bytes) {
            return Err(DecodeError("checksum mismatch"));
        }
        let mut r = Reader::new(&body[MAGIC.len()..]);
        let cutoff = secs(now).saturating_sub(MAX_WINDOW.as_secs() as u32);
        let n = r.u32()?;
        for _ in 0..n {
            let id: Arc<str> = r.str()?.into();
            let model = r.str()?.to_string();
            let mut tags = Tags::new();
            for _ in 0..r.u32()? {
                let k = r.str()?.to_string();
                tags.insert(k, r.str()?.to_string());
            }
            let time = time_of(r.i64()?);
            let schema = schemas
                .iter()
                .find(|s| s.model == model)
                .cloned()
                .unwrap_or_else(|| Arc::new(Schema::new(model, Vec::new())));
            let mut m = Metric::new(&id, Arc::new(tags), time, schema);
            for _ in 0..r.u32()? {
                let k: Arc<str> = r.str()?.into();
                let v = match r.u8()? {
                    0 => Value::Int(r.i64()?),
                    1 => Value::Float(r.f64()?),
                    2 => Value::Bool(r.u8()? != 0),
                    3 => Value::Text(r.str()?.into()),
                    _ => return Err(DecodeError("unknown value type")),
                };
                m.fields.insert(k, v);
            }
            for _ in 0..r.u32()? {
                let k: Arc<str> = r.str()?.into();
                let ms = r.i64()?;
                m.since.insert(k, (ms != i64::MIN).then(|| time_of(ms)));
            }
            let mut series = FxHashMap::default();
            for _ in 0..r.u32()? {
                let k: Arc<str> = r.str()?.into();
                let mut s = Series::decode(&mut r)?;
                s.forget_before(cutoff);
                if !s.is_empty() {
                    series.insert(k, s);
                }
            }
            if self.devices.len() < self.max_pumps {
                self.devices.insert(
                    id,
                    Device {
                        metric: Arc::new(m),
                        live: false,
                        series,
                        changes: VecDeque::new(),
                        generation: 0,
                    },
                );
            }
        }
        if !r.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(())
    }

    /// Loads `path` if it exists; an unusable file is moved aside, never fatal.
    pub fn load(&mut self, path: &Path, schemas: &[Arc<Schema>], now: SystemTime, id: &str) {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                warn!(component = %id, path = %path.display(), error = %e, "Cannot read the dashboard history; starting without it");
                return;
            }
        };
        let mut fresh = Store::new(self.max_pumps);
        match fresh.decode(&bytes, schemas, now) {
            Ok(()) => {
                info!(component = %id, path = %path.display(), pumps = fresh.devices.len(), "Restored dashboard history");
                self.devices = fresh.devices;
            }
            Err(problem) => match move_aside(path) {
                Ok(aside) => warn!(
                    component = %id, path = %path.display(), moved_to = %aside.display(), %problem,
                    "Dashboard history unusable; starting without it"
                ),
                Err(e) => warn!(
                    component = %id, path = %path.display(), %problem, error = %e,
                    "Dashboard history unusable and could not be moved aside; starting without it"
                ),
            },
        }
    }
}

fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FieldMeta, ValueType};

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(
            "wpm",
            vec![
                FieldMeta::gauge("outside_temperature", ValueType::Float),
                FieldMeta::gauge("compressor_running", ValueType::Bool),
            ],
        ))
    }

    fn poll(device: &str, secs: u64, t: f64) -> Event {
        let mut m = Metric::new(device, Arc::default(), UNIX_EPOCH + Duration::from_secs(secs), schema());
        m.fields.insert("outside_temperature".into(), Value::Float(t));
        m.fields.insert("compressor_running".into(), Value::Bool(true));
        m.since.insert("compressor_running".into(), None);
        Event::from(m)
    }

    #[test]
    fn history_survives_a_save_and_reload() {
        let mut store = Store::new(10);
        for i in 0..100 {
            store.ingest(&poll("hp1", 1_000_000 + i * 10, f64::from(i as u32)));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.bin");
        crate::fsutil::write_atomically(&path, &store.encode()).unwrap();
        let mut back = Store::new(10);
        back.load(&path, &[schema()], UNIX_EPOCH + Duration::from_secs(1_001_000), "d");
        let d = &back.devices["hp1"];
        assert!(!d.live);
        assert_eq!(d.metric.fields, store.devices["hp1"].metric.fields);
        assert_eq!(d.metric.since, store.devices["hp1"].metric.since);
        assert_eq!(d.metric.schema.fields.len(), 2);
        assert_eq!(
            d.series["outside_temperature"],
            store.devices["hp1"].series["outside_temperature"]
        );
    }

    #[test]
    fn a_corrupt_history_is_moved_aside() {
        let mut store = Store::new(10);
        store.ingest(&poll("hp1", 1_000_000, 1.0));
        let mut bytes = store.encode();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.bin");
        std::fs::write(&path, &bytes).unwrap();
        let mut back = Store::new(10);
        back.load(&path, &[], SystemTime::now(), "d");
        assert!(back.devices.is_empty());
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn pumps_beyond_the_limit_are_not_kept() {
        let mut store = Store::new(2);
        for id in ["a", "b", "c"] {
            store.ingest(&poll(id, 1_000_000, 1.0));
        }
        assert_eq!(store.devices.keys().map(|k| &**k).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn heartbeats_are_not_flips() {
        let mut store = Store::new(2);
        store.ingest(&poll("hp1", 1_000_000, 1.0));
        let change = |from: bool, to: bool| {
            Event::from(StateChange {
                device: "hp1".into(),
                tags: Arc::default(),
                field: "compressor_running".into(),
                from: Some(Value::Bool(from)),
                to: Value::Bool(to),
                at: UNIX_EPOCH,
                from_since: None,
                meta: None,
            })
        };
        store.ingest(&change(true, true));
        store.ingest(&change(true, false));
        assert_eq!(store.devices["hp1"].changes.len(), 1);
    }
}
