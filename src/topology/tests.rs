use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;

use super::*;
use crate::event::{FieldMeta, Metric, Schema, Value, ValueType};

/// Emits `count` metrics as fast as the pipeline takes them, then waits for shutdown.
struct Burst {
    count: usize,
}

#[async_trait]
impl Source for Burst {
    async fn run(self: Box<Self>, mut cx: SourceContext) -> Result<(), BoxError> {
        let schema = Arc::new(Schema::new("m", vec![FieldMeta::gauge("n", ValueType::Int)]));
        for n in 0..self.count {
            let mut m = Metric::new("hp1", Arc::default(), UNIX_EPOCH, schema.clone());
            m.fields.insert("n".into(), Value::Int(n as i64));
            cx.out.send(m.into()).await;
        }
        cx.shutdown.cancelled().await;
        Ok(())
    }
}

/// Collects everything it receives.
struct Collect(Arc<Mutex<Vec<Event>>>);

#[async_trait]
impl Sink for Collect {
    async fn run(self: Box<Self>, mut input: Input, _cx: SinkContext) -> Result<(), BoxError> {
        while let Some(e) = input.recv().await {
            self.0.lock().unwrap().push(e);
        }
        Ok(())
    }
}

/// Never reads its input until shutdown: a dead database.
struct Stuck;

#[async_trait]
impl Sink for Stuck {
    async fn run(self: Box<Self>, mut input: Input, _cx: SinkContext) -> Result<(), BoxError> {
        // Hold the queue full; return only when every upstream is gone.
        std::future::pending::<()>().await;
        while input.recv().await.is_some() {}
        Ok(())
    }
}

struct AddOne;

impl Transform for AddOne {
    fn transform(&mut self, mut event: Event, out: &mut Vec<Event>) {
        if let Event::Metric(m) = &mut event {
            let m = Arc::make_mut(m);
            if let Some(Value::Int(n)) = m.fields.get_mut("n") {
                *n += 1;
            }
        }
        out.push(event);
    }
}

fn pieces(
    sources: Vec<Box<dyn Source>>,
    transforms: Vec<Box<dyn Transform>>,
    sinks: Vec<(Box<dyn Sink>, usize)>,
    edges: Vec<(Node, Node)>,
) -> Pieces {
    Pieces {
        sources: sources
            .into_iter()
            .enumerate()
            .map(|(i, s)| Slot::new(&format!("src{i}"), "test", s, 0))
            .collect(),
        transforms: transforms
            .into_iter()
            .enumerate()
            .map(|(i, t)| Slot::new(&format!("tr{i}"), "test", t, TRANSFORM_QUEUE))
            .collect(),
        sinks: sinks
            .into_iter()
            .enumerate()
            .map(|(i, (s, q))| Slot::new(&format!("sink{i}"), "test", s, q))
            .collect(),
        edges,
        registry: Arc::default(),
        control: Arc::default(),
        shutdown_timeout: Duration::from_secs(2),
    }
}

#[tokio::test]
async fn a_blocked_sink_does_not_stop_another_sink_from_receiving_events() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let p = pieces(
        vec![Box::new(Burst { count: 5000 })],
        vec![],
        vec![(Box::new(Stuck), 16), (Box::new(Collect(got.clone())), 10_000)],
        vec![
            ((Kind::Source, 0), (Kind::Sink, 0)),
            ((Kind::Source, 0), (Kind::Sink, 1)),
        ],
    );
    let registry = p.registry().clone();
    let running = p.start();
    tokio::time::timeout(Duration::from_secs(10), async {
        while got.lock().unwrap().len() < 5000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the healthy sink received every event although the other sink is stuck");
    let stuck = registry.get("sink0").unwrap().counts();
    assert_eq!(
        stuck.events_dropped,
        5000 - 16,
        "a full queue drops and counts the newest events"
    );
    // The stuck sink never returns, so stop reports an unclean shutdown after the timeout.
    assert!(!running.stop().await);
}

#[tokio::test]
async fn shutdown_drains_events_in_flight_through_transforms_to_sinks() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let p = pieces(
        vec![Box::new(Burst { count: 1000 })],
        vec![Box::new(AddOne), Box::new(AddOne)],
        vec![(Box::new(Collect(got.clone())), 2000)],
        vec![
            ((Kind::Source, 0), (Kind::Transform, 0)),
            ((Kind::Transform, 0), (Kind::Transform, 1)),
            ((Kind::Transform, 1), (Kind::Sink, 0)),
        ],
    );
    let running = p.start();
    tokio::task::yield_now().await;
    assert!(running.stop().await, "clean stop");
    let got = got.lock().unwrap();
    // Whatever the source emitted before it saw the shutdown made it through.
    assert!(!got.is_empty());
    for (i, e) in got.iter().enumerate() {
        assert_eq!(
            e.as_metric().unwrap().fields["n"],
            Value::Int(i as i64 + 2),
            "in order, transformed twice"
        );
    }
}

#[tokio::test]
async fn fan_out_shares_one_event_between_sinks() {
    let a = Arc::new(Mutex::new(Vec::new()));
    let b = Arc::new(Mutex::new(Vec::new()));
    let p = pieces(
        vec![Box::new(Burst { count: 3 })],
        vec![],
        vec![(Box::new(Collect(a.clone())), 8), (Box::new(Collect(b.clone())), 8)],
        vec![
            ((Kind::Source, 0), (Kind::Sink, 0)),
            ((Kind::Source, 0), (Kind::Sink, 1)),
        ],
    );
    let running = p.start();
    tokio::time::timeout(Duration::from_secs(5), async {
        while b.lock().unwrap().len() < 3 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    assert!(running.stop().await);
    let (a, b) = (a.lock().unwrap(), b.lock().unwrap());
    match (&a[0], &b[0]) {
        (Event::Metric(x), Event::Metric(y)) => assert!(Arc::ptr_eq(x, y)),
        _ => panic!("metrics expected"),
    }
}

#[test]
fn the_build_uses_what_the_check_read_and_reads_no_file_again() {
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("registers.yml");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/registers.yml"),
        &map,
    )
    .unwrap();
    let text = format!(
        r#"data_dir = "{data}"
[sources.hp]
type = "modbus_tcp"
registers = "registers.yml"
[[sources.hp.devices]]
id = "hp1"
model = "stiebel_eltron_wpm"
host = "127.0.0.1"
[sinks.out]
type = "console"
inputs = ["hp"]
"#,
        data = dir.path().join("data").display()
    );
    let path = dir.path().join("pipeline.toml");
    let (file, diags) = crate::config::load_str(&path, &text, &|_| None).unwrap();
    let (checked, _) = crate::config::compile(file, diags).unwrap();
    let kept = checked.prepared::<crate::sources::modbus::Inventory>((Kind::Source, 0));
    assert_eq!(
        kept.map(|i| i.devices.len()),
        Some(1),
        "the check keeps the map and the devices"
    );
    // The register map is gone by build time: only what the check read can build the source.
    std::fs::remove_file(&map).unwrap();
    assert!(build(&checked, Arc::default()).is_ok());
}
