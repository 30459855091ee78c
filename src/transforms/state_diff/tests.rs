use std::io::Write;
use std::sync::Mutex;

use super::*;
use crate::telemetry::Registry;

/// A poll time `secs` after a fixed instant a day ago (recent, so the default
/// `expire_after` keeps it), with nanoseconds that must survive the file.
fn t(secs: u64) -> SystemTime {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 86_400
    });
    SystemTime::UNIX_EPOCH + Duration::new(base + secs, 123_456_789)
}

fn wpm() -> Arc<Schema> {
    let mut compressor = FieldMeta::gauge("compressor_running", ValueType::Bool);
    compressor.kind = FieldKind::State;
    let mut mode = FieldMeta::gauge("operating_mode", ValueType::Int);
    mode.kind = FieldKind::State;
    mode.labels = Some(BTreeMap::from([(1, "Standby".to_string()), (3, "Comfort".to_string())]));
    Arc::new(Schema::new(
        "wpm",
        vec![
            compressor,
            mode,
            FieldMeta::gauge("outside_temperature", ValueType::Float),
            FieldMeta::gauge("error_code", ValueType::Int),
        ],
    ))
}

fn config(text: &str) -> StateDiffConfig {
    toml::from_str(text).unwrap()
}

fn build_in(c: &StateDiffConfig, dir: &Path, registry: &Arc<Registry>) -> Result<Box<dyn Transform>, BoxError> {
    BuildContext::alone("states", dir, &[wpm()], registry, |cx| c.build(cx))
}

fn build(c: &StateDiffConfig, dir: &Path) -> Box<dyn Transform> {
    build_in(c, dir, &Arc::new(Registry::default())).unwrap()
}

fn poll(schema: &Arc<Schema>, time: SystemTime, fields: &[(&str, Value)]) -> Event {
    let mut m = Metric::new("hp1", Arc::default(), time, schema.clone());
    for (k, v) in fields {
        m.fields.insert((*k).into(), v.clone());
    }
    m.into()
}

/// Feeds one event; returns the metric and the state changes that followed it.
fn feed(t: &mut dyn Transform, e: Event) -> (Arc<Metric>, Vec<Arc<StateChange>>) {
    let mut out = Vec::new();
    t.transform(e, &mut out);
    let mut it = out.into_iter();
    let Some(Event::Metric(m)) = it.next() else {
        panic!("the metric comes first")
    };
    let changes = it
        .map(|e| match e {
            Event::StateChange(s) => s,
            Event::Metric(_) => panic!("one metric in, one out"),
        })
        .collect();
    (m, changes)
}

fn on(v: bool) -> [(&'static str, Value); 1] {
    [("compressor_running", Value::Bool(v))]
}

fn check(c: &StateDiffConfig) -> Vec<(Option<String>, String)> {
    let schemas = [wpm()];
    let dir = Path::new(".");
    let mut cx = Check::new("states", dir, dir, &schemas);
    c.check(&mut cx);
    assert_eq!(cx.outputs, schemas, "passes its inputs through");
    cx.errors()
}

#[test]
fn a_flip_emits_one_state_change_with_from_to_at_and_from_since() {
    let dir = tempfile::tempdir().unwrap();
    let s = wpm();
    let mut sd = build(&config(""), dir.path());
    assert!(feed(&mut *sd, poll(&s, t(0), &on(false))).1.is_empty());
    assert!(feed(&mut *sd, poll(&s, t(10), &on(false))).1.is_empty());

    let (m, changes) = feed(&mut *sd, poll(&s, t(20), &on(true)));
    assert_eq!(changes.len(), 1);
    let c = &changes[0];
    assert_eq!((&*c.device, &*c.field), ("hp1", "compressor_running"));
    assert_eq!(
        (c.from.clone(), c.to.clone()),
        (Some(Value::Bool(false)), Value::Bool(true))
    );
    assert_eq!((c.at, c.from_since), (t(20), None));
    assert_eq!(c.meta.as_ref().map(|m| &*m.name), Some("compressor_running"));
    assert_eq!(m.since["compressor_running"], Some(t(20)));

    let (m, changes) = feed(&mut *sd, poll(&s, t(30), &on(true)));
    assert!(changes.is_empty());
    assert_eq!(m.since["compressor_running"], Some(t(20)));

    let (_, changes) = feed(&mut *sd, poll(&s, t(40), &on(false)));
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].at, changes[0].from_since), (t(40), Some(t(20))));
}

#[test]
fn a_state_first_seen_has_an_unknown_since() {
    let dir = tempfile::tempdir().unwrap();
    let s = wpm();
    let mut sd = build(&config(""), dir.path());
    let (m, changes) = feed(
        &mut *sd,
        poll(
            &s,
            t(0),
            &[
                ("compressor_running", Value::Bool(true)),
                ("operating_mode", Value::Int(3)),
            ],
        ),
    );
    assert!(changes.is_empty());
    assert_eq!(m.since.get("compressor_running"), Some(&None));
    assert_eq!(m.since.get("operating_mode"), Some(&None));
    let (m, _) = feed(&mut *sd, poll(&s, t(10), &on(true)));
    assert_eq!(m.since.get("compressor_running"), Some(&None));
}

#[test]
fn an_absent_field_neither_flips_nor_forgets() {
    let dir = tempfile::tempdir().unwrap();
    let s = wpm();
    let mut sd = build(&config(""), dir.path());
    feed(&mut *sd, poll(&s, t(0), &on(false)));
    feed(&mut *sd, poll(&s, t(10), &on(true)));
    let (m, changes) = feed(&mut *sd, poll(&s, t(20), &[("outside_temperature", Value::Float(3.5))]));
    assert!(changes.is_empty());
    assert!(!m.since.contains_key("compressor_running"));
    let (m, changes) = feed(&mut *sd, poll(&s, t(30), &on(true)));
    assert!(changes.is_empty());
    assert_eq!(m.since["compressor_running"], Some(t(10)));
}

#[test]
fn gauges_are_not_tracked_by_default_and_an_explicit_list_tracks_only_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let s = wpm();
    let mut sd = build(&config(""), dir.path());
    feed(&mut *sd, poll(&s, t(0), &[("error_code", Value::Int(0))]));
    let (m, changes) = feed(&mut *sd, poll(&s, t(10), &[("error_code", Value::Int(7))]));
    assert!(changes.is_empty() && m.since.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let mut sd = build(&config("fields = [\"error_code\"]"), dir.path());
    let fields = |code, on| {
        [
            ("error_code", Value::Int(code)),
            ("compressor_running", Value::Bool(on)),
        ]
    };
    feed(&mut *sd, poll(&s, t(0), &fields(0, false)));
    let (m, changes) = feed(&mut *sd, poll(&s, t(10), &fields(7, true)));
    assert_eq!(changes.len(), 1);
    assert_eq!(&*changes[0].field, "error_code");
    assert_eq!(m.since.keys().map(|k| &**k).collect::<Vec<_>>(), ["error_code"]);
}

#[test]
fn the_same_number_in_another_type_is_no_flip() {
    assert!(same_state(&Value::Int(1), &Value::Bool(true)));
    assert!(same_state(&Value::Int(3), &Value::Float(3.0)));
    assert!(!same_state(&Value::Int(3), &Value::Int(4)));
    assert!(!same_state(&Value::Text("1".into()), &Value::Int(1)));
}

#[test]
fn unknown_explicit_fields_are_rejected_at_their_index() {
    let errs = check(&config("fields = [\"compressor_running\", \"compresor_running\"]"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0.as_deref(), Some("fields[1]"));
    assert!(errs[0]
        .1
        .contains("no input model has a field `compresor_running`; known models: wpm"));
    assert!(check(&config("")).is_empty());
}

#[test]
fn zero_durations_and_an_empty_list_are_rejected() {
    let errs = check(&config("fields = []\npersist_interval = \"0s\"\nheartbeat = \"0s\""));
    let keys: Vec<_> = errs.iter().map(|e| e.0.as_deref().unwrap()).collect();
    assert_eq!(keys, ["persist_interval", "heartbeat", "fields"]);
    let c = config("heartbeat = \"15m\"\nexpire_after = \"2d\"");
    assert_eq!(c.heartbeat, Some(Duration::from_secs(900)));
    assert_eq!(c.expire_after, Duration::from_secs(2 * 86_400));
    assert_eq!(c.persist_interval, Duration::from_secs(1));
}

#[test]
fn since_survives_a_restart_without_a_spurious_flip() {
    let dir = tempfile::tempdir().unwrap();
    let s = wpm();
    let mut sd = build(&config(""), dir.path());
    feed(&mut *sd, poll(&s, t(0), &on(false)));
    feed(&mut *sd, poll(&s, t(10), &on(true)));
    feed(&mut *sd, poll(&s, t(10), &[("operating_mode", Value::Int(3))]));
    sd.shutdown(&mut Vec::new());
    drop(sd);
    assert!(state_path(dir.path(), "states").exists());

    let mut sd = build(&config(""), dir.path());
    let (m, changes) = feed(
        &mut *sd,
        poll(
            &s,
            t(20),
            &[
                ("compressor_running", Value::Bool(true)),
                ("operating_mode", Value::Int(3)),
            ],
        ),
    );
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(m.since["compressor_running"], Some(t(10)));
    assert_eq!(m.since["operating_mode"], None);

    // A flip while hpflow was down is reported at the first poll that sees it.
    let (_, changes) = feed(&mut *sd, poll(&s, t(30), &[("operating_mode", Value::Int(1))]));
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].from.clone(), changes[0].at), (Some(Value::Int(3)), t(30)));
}

#[test]
fn ticks_save_changes_at_most_every_persist_interval() {
    let dir = tempfile::tempdir().unwrap();
    let s = wpm();
    let path = state_path(dir.path(), "states");
    let mut sd = build(&config("persist_interval = \"10s\""), dir.path());
    assert_eq!(sd.tick_interval(), Some(Duration::from_secs(10)));
    let now = SystemTime::now();
    sd.tick(now, &mut Vec::new());
    assert!(!path.exists(), "nothing to save yet");
    feed(&mut *sd, poll(&s, t(0), &on(false)));
    sd.tick(now + Duration::from_secs(1), &mut Vec::new());
    assert!(path.exists());
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"version\":1"), "{text}");
    let running = |path: &Path| persisted(path)["hp1"].states["compressor_running"].value.clone();
    assert_eq!(running(&path), Value::Bool(false));
    feed(&mut *sd, poll(&s, t(10), &on(true)));
    sd.tick(now + Duration::from_secs(2), &mut Vec::new());
    assert_eq!(running(&path), Value::Bool(false), "saved less than 10s ago");
    sd.tick(now + Duration::from_secs(12), &mut Vec::new());
    assert_eq!(running(&path), Value::Bool(true));
    let journal = fs::read_to_string(path.with_extension("journal")).unwrap();
    assert!(
        journal.contains("\"compressor_running\":{\"value\":{\"bool\":true}"),
        "the change went to the journal: {journal}"
    );
    let mut leftovers: Vec<_> = (fs::read_dir(path.parent().unwrap()).unwrap())
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    leftovers.sort();
    assert_eq!(
        leftovers,
        ["states.journal", "states.json"],
        "no temporary file left behind"
    );
    // A stop writes the whole file, and the journal starts over.
    sd.shutdown(&mut Vec::new());
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("\"compressor_running\":{\"value\":{\"bool\":true}"),
        "{text}"
    );
    assert_eq!(
        fs::read_to_string(path.with_extension("journal"))
            .unwrap()
            .lines()
            .count(),
        1
    );
}

/// A log writer into a shared buffer, to see what the transform warns about.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn build_logged(dir: &Path, registry: &Arc<Registry>) -> (Result<Box<dyn Transform>, BoxError>, String) {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let built = tracing::subscriber::with_default(subscriber, || build_in(&config(""), dir, registry));
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    (built, text)
}

#[test]
fn a_corrupt_state_file_starts_empty_with_a_warning() {
    for content in [
        "{\"version\":1,\"devices\":{\"hp1\":",
        "{\"version\":0,\"devices\":{}}",
        "[1,2]",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(dir.path(), "states");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        let registry = Arc::new(Registry::default());
        let (built, logs) = build_logged(dir.path(), &registry);
        let mut sd = built.unwrap();
        assert!(logs.contains("WARN") && logs.contains("State file unusable"), "{logs}");
        assert_eq!(registry.get("states").unwrap().counts().errors, 1);
        let aside: Vec<String> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            aside.len() == 1 && aside[0].starts_with("states.json.corrupt-"),
            "{aside:?}"
        );
        assert_eq!(fs::read_to_string(path.with_file_name(&aside[0])).unwrap(), content);

        let (m, changes) = feed(&mut *sd, poll(&wpm(), t(0), &on(true)));
        assert!(changes.is_empty());
        assert_eq!(m.since["compressor_running"], None);
        sd.shutdown(&mut Vec::new());
        assert!(path.exists(), "a fresh file replaces the corrupt one");
    }
}

#[test]
fn a_state_file_that_cannot_be_read_fails_the_build() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(state_path(dir.path(), "states")).unwrap();
    let err = build_in(&config(""), dir.path(), &Arc::new(Registry::default()))
        .err()
        .unwrap();
    assert!(err.to_string().contains("cannot read the state file"), "{err}");
}

#[test]
fn a_heartbeat_re_sends_every_state_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let s = wpm();
    let mut sd = build(&config("heartbeat = \"15m\""), dir.path());
    assert_eq!(sd.tick_interval(), Some(Duration::from_secs(1)));
    feed(&mut *sd, poll(&s, t(0), &on(false)));
    feed(
        &mut *sd,
        poll(
            &s,
            t(10),
            &[
                ("compressor_running", Value::Bool(true)),
                ("operating_mode", Value::Int(3)),
            ],
        ),
    );
    let now = t(20);
    let mut out = Vec::new();
    sd.tick(now, &mut out);
    sd.tick(now + Duration::from_secs(899), &mut out);
    assert!(out.is_empty(), "not yet due");
    sd.tick(now + Duration::from_secs(900), &mut out);
    let beats: Vec<&StateChange> = out
        .iter()
        .map(|e| match e {
            Event::StateChange(s) => &**s,
            Event::Metric(_) => panic!("heartbeats are state changes"),
        })
        .collect();
    assert_eq!(beats.len(), 2);
    assert_eq!(&*beats[0].field, "compressor_running");
    assert_eq!(beats[0].from.as_ref(), Some(&beats[0].to));
    assert_eq!(
        (beats[0].at, beats[0].from_since),
        (now + Duration::from_secs(900), Some(t(10)))
    );
    assert_eq!((&*beats[1].field, beats[1].from_since), ("operating_mode", None));
}

#[test]
fn devices_not_seen_for_expire_after_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let s = wpm();
    let mut sd = build(&config("expire_after = \"1h\""), dir.path());
    feed(&mut *sd, poll(&s, t(0), &on(false)));
    feed(&mut *sd, poll(&s, t(10), &on(true)));
    sd.tick(t(1800), &mut Vec::new());
    let (m, _) = feed(&mut *sd, poll(&s, t(1810), &on(true)));
    assert_eq!(m.since["compressor_running"], Some(t(10)), "kept within expire_after");
    sd.tick(t(1810 + 3601), &mut Vec::new());
    let path = state_path(dir.path(), "states");
    assert!(!persisted(&path).contains_key("hp1"), "forgotten in the file too");
    let (m, changes) = feed(&mut *sd, poll(&s, t(1810 + 3700), &on(false)));
    assert!(changes.is_empty());
    assert_eq!(m.since["compressor_running"], None);
}

/// What a state_diff would restore from its state file at `path` (and journal).
fn persisted(path: &Path) -> BTreeMap<Arc<str>, Device> {
    let metrics = ComponentMetrics::new("transform", "state_diff");
    load(path, "states", &metrics).unwrap().0
}

/// A state_diff with its defaults, saving to `path`.
fn bare(path: PathBuf) -> StateDiff {
    StateDiff {
        id: "states".into(),
        tracked: None,
        by_schema: HashMap::new(),
        devices: BTreeMap::new(),
        forgotten: Vec::new(),
        journal: None,
        generation: 0,
        file_len: 0,
        dirty: false,
        path,
        persist_interval: Duration::from_secs(1),
        heartbeat: None,
        expire_after: default_expire_after(),
        last_save: None,
        next_heartbeat: None,
        next_expiry_check: None,
        metrics: Arc::new(ComponentMetrics::new("transform", "state_diff")),
    }
}

/// The reference model of the file: every device serialized whole, with the
/// `last_seen` its entry was last written with.
fn whole_file(sd: &StateDiff) -> Vec<u8> {
    let mut devices = sd.devices.clone();
    for d in devices.values_mut() {
        d.last_seen = d.saved_last_seen;
    }
    serde_json::to_vec(&to_file(&devices, sd.generation)).unwrap()
}

#[test]
fn saves_read_back_as_held_and_whole_saves_equal_serializing_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("states.json");
    let schema = wpm();
    let mut rng = fastrand::Rng::with_seed(16);
    let mut sd = bare(path.clone());
    let mut now = 0u64;
    let mut saves = 0;
    for step in 0..3000 {
        // Mostly seconds apart, now and then more than the last_seen resolution.
        now += if rng.u8(..100) == 0 { 2 * 3600 } else { rng.u64(1..5) };
        let device = format!("hp{}", rng.u8(..12));
        let mut m = Metric::new(&device, Arc::default(), t(now), schema.clone());
        if rng.u8(..50) == 0 {
            m.tags = Arc::new(Tags::from([("site".to_string(), format!("s{}", rng.u8(..3)))]));
        }
        if rng.bool() {
            m.fields
                .insert("compressor_running".into(), Value::Bool(rng.u8(..4) == 0));
        }
        if rng.bool() {
            let mode = if rng.bool() {
                Value::Int(rng.i64(1..4))
            } else {
                Value::Float(3.0)
            };
            m.fields.insert("operating_mode".into(), mode);
        }
        let mut out = Vec::new();
        sd.transform(m.into(), &mut out);
        if rng.u8(..10) == 0 || step == 2999 {
            let whole = sd.journal.is_none() || rng.u8(..8) == 0;
            if whole {
                let result = sd.compact();
                sd.saved(result);
                let written = std::fs::read(&path).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&written),
                    String::from_utf8_lossy(&whole_file(&sd)),
                    "step {step}"
                );
            } else {
                sd.save(t(now));
            }
            saves += 1;
            // The file and its journal read back as the states held.
            let restored = persisted(&path);
            assert_eq!(restored.len(), sd.devices.len(), "step {step}");
            for (id, d) in &sd.devices {
                let r = &restored[id];
                assert_eq!(r.tags, d.tags, "{id}");
                let values = |d: &Device| {
                    d.states
                        .iter()
                        .map(|(k, s)| (k.clone(), s.value.clone(), s.since))
                        .collect::<Vec<_>>()
                };
                assert_eq!(values(r), values(d), "{id} at step {step}");
            }
        }
    }
    assert!(saves > 250, "{saves} saves");
    assert_eq!(sd.devices.len(), 12);
}

/// What a device's states are, for comparing what was held with what is restored.
type Held = BTreeMap<Arc<str>, (Arc<Tags>, Vec<(Arc<str>, Value, Option<SystemTime>)>)>;

fn held(devices: &BTreeMap<Arc<str>, Device>) -> Held {
    (devices.iter())
        .map(|(id, d)| {
            let states = (d.states.iter())
                .map(|(k, s)| (k.clone(), s.value.clone(), s.since))
                .collect();
            (id.clone(), (d.tags.clone(), states))
        })
        .collect()
}

fn journal_len(path: &Path) -> u64 {
    fs::metadata(path.with_extension("journal")).map_or(0, |m| m.len())
}

/// A kill at any instant, against a reference model of what each save held:
/// seeded random polls, expiries and saves (appended or whole), then the
/// process dies without a shutdown, sometimes while appending to the journal
/// (the journal cut at a random byte of the last append) or between writing
/// the whole file and starting its journal. What is restored is what the last
/// finished save held; a device whose line was cut keeps what the save before
/// it held.
#[test]
fn a_kill_at_any_instant_restores_the_last_finished_save() {
    let schema = wpm();
    let (mut cut_appends, mut half_compactions) = (0, 0);
    for seed in 0..60u64 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("states.json");
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut sd = bare(path.clone());
        sd.expire_after = Duration::from_secs(600);
        let (mut saved, mut before_last) = (Held::new(), Held::new());
        // The journal's bytes written by the last save, when it appended.
        let mut last_append = None;
        let mut now = 1_000u64;
        for _ in 0..rng.usize(1..150) {
            now += if rng.u8(..40) == 0 { 700 } else { rng.u64(1..20) };
            let device = format!("hp{}", rng.u8(..8));
            let mut m = Metric::new(&device, Arc::default(), t(now), schema.clone());
            if rng.u8(..30) == 0 {
                m.tags = Arc::new(Tags::from([("site".to_string(), format!("s{}", rng.u8(..3)))]));
            }
            m.fields
                .insert("compressor_running".into(), Value::Bool(rng.u8(..3) == 0));
            if rng.bool() {
                m.fields.insert("operating_mode".into(), Value::Int(rng.i64(1..4)));
            }
            sd.transform(m.into(), &mut Vec::new());
            if rng.u8(..10) == 0 {
                sd.expire(t(now));
            }
            if rng.u8(..4) == 0 {
                let before = journal_len(&path);
                let generation = sd.generation;
                if rng.u8(..10) == 0 {
                    let result = sd.compact();
                    sd.saved(result);
                } else {
                    sd.save(t(now));
                }
                let after = journal_len(&path);
                last_append = (sd.generation == generation && after > before).then_some((before, after));
                before_last = std::mem::replace(&mut saved, held(&sd.devices));
            }
        }
        let what = format!("seed {seed}");
        match rng.u8(..3) {
            // Killed while appending: the journal ends inside the last append.
            0 if last_append.is_some() => {
                let (from, to) = last_append.unwrap();
                let cut = rng.u64(from..to);
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(path.with_extension("journal"))
                    .unwrap();
                f.set_len(cut).unwrap();
                drop(sd);
                cut_appends += 1;
                let restored = held(&persisted(&path));
                for id in saved.keys().chain(before_last.keys()).chain(restored.keys()) {
                    let (r, s, b) = (restored.get(id), saved.get(id), before_last.get(id));
                    assert!(r == s || r == b, "{what}: {id} restored as neither save held it");
                }
            }
            // Killed after writing the whole file, before its journal started:
            // the old journal must not be applied over it.
            1 if sd.journal.is_some() => {
                let now_held = held(&sd.devices);
                let bytes = sd.render(sd.generation + 1).unwrap();
                write_atomically(&path, &bytes).unwrap();
                drop(sd);
                half_compactions += 1;
                assert_eq!(held(&persisted(&path)), now_held, "{what}");
            }
            _ => {
                drop(sd);
                assert_eq!(held(&persisted(&path)), saved, "{what}");
            }
        }
    }
    assert!(
        cut_appends > 5 && half_compactions > 5,
        "{cut_appends} cut appends, {half_compactions} half compactions"
    );
}
