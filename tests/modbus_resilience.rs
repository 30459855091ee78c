//! Dead, silent and returning devices: the schedule holds for the living, a
//! device that comes back is polled again within one interval, and a poll under
//! way at shutdown is finished and delivered.

mod support;

use std::time::{Duration, Instant, SystemTime};

use hpflow::registers::RegisterMap;
use hpflow::sim::{Clock, Faults, SimOptions, Simulator};
use hpflow::telemetry::RequestResult;
use support::modbus::{black_hole, dead_port, run_tcp};
use support::shipped_registers;

const INTERVAL: Duration = Duration::from_millis(200);

fn simulator() -> Simulator {
    let map = RegisterMap::load(shipped_registers()).unwrap();
    Simulator::new(SimOptions {
        clock: Clock::Frozen(SystemTime::UNIX_EPOCH + Duration::from_secs(1_768_480_000)),
        ..SimOptions::new(map.model("stiebel_eltron_wpm").unwrap().clone())
    })
    .unwrap()
}

fn device(id: &str, port: u16) -> String {
    format!("[[devices]]\nid = \"{id}\"\nmodel = \"stiebel_eltron_wpm\"\nhost = \"127.0.0.1\"\nport = {port}\n")
}

fn config(devices: &str) -> String {
    format!(
        "registers = {:?}\ninterval = \"200ms\"\ntimeout = \"1s\"\nphase_spread = false\n{devices}",
        shipped_registers().display().to_string()
    )
}

#[tokio::test]
async fn a_dead_device_and_a_silent_one_do_not_delay_a_live_one() {
    let sim = simulator();
    let live = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let silent = black_hole().await;
    let dead = dead_port().await;
    let devices = [
        device("dead", dead),
        device("silent", silent.addr.port()),
        device("live", live.local_addr().port()),
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    let mut src = run_tcp("deadlive", dir.path(), &config(&devices));

    let mut stamps = Vec::new();
    let mut worst_lag = Duration::ZERO;
    while stamps.len() < 8 {
        let m = src.next(Duration::from_secs(2), "the live device's polls").await;
        assert_eq!(&*m.device, "live", "only the live device produces events");
        let lag = SystemTime::now().duration_since(m.time).unwrap_or_default();
        worst_lag = worst_lag.max(lag);
        stamps.push(m.time);
    }
    // Every poll of the live device is on the 200 ms grid, and each arrived
    // promptly although the silent device's requests take a full second to time out.
    for w in stamps.windows(2) {
        let step = w[1].duration_since(w[0]).unwrap();
        let off = step.abs_diff(INTERVAL);
        assert!(
            off < Duration::from_millis(5),
            "polls {step:?} apart, expected {INTERVAL:?}"
        );
    }
    eprintln!("live device: worst delay from scheduled time to event {worst_lag:?}");
    // Waiting behind the silent device would show as a delay of a whole timeout (1 s).
    assert!(
        worst_lag < Duration::from_millis(500),
        "live polls delayed by {worst_lag:?}"
    );

    let dead_h = src.devices().get("deadlive", "dead").unwrap();
    let silent_h = src.devices().get("deadlive", "silent").unwrap();
    let live_h = src.devices().get("deadlive", "live").unwrap();
    assert!(!dead_h.up && dead_h.connect_failures >= 1);
    assert!(!silent_h.up && silent_h.requests(RequestResult::Timeout) >= 1);
    assert!(live_h.up && live_h.missed_ticks == 0 && live_h.last_success.is_some());
    src.stop().await;
}

#[tokio::test]
async fn polling_resumes_within_one_interval_after_the_server_returns_on_the_same_port() {
    let sim = simulator();
    let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let dir = tempfile::tempdir().unwrap();
    let mut src = run_tcp("restart", dir.path(), &config(&device("hp1", addr.port())));
    src.next(Duration::from_secs(2), "a poll before the server stops").await;

    // Kill the server, with its connections.
    drop(server);
    let down_since = Instant::now();
    while src.devices().get("restart", "hp1").is_some_and(|h| h.up) {
        assert!(
            down_since.elapsed() < Duration::from_secs(3),
            "the failure was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Drain what was sent before the failure, then stay down a few intervals.
    tokio::time::sleep(5 * INTERVAL).await;
    while src.rx.try_recv().is_ok() {}

    let server = sim.serve_tcp(addr).await.expect("the port can be bound again");
    let back = SystemTime::now();
    let m = src
        .next(Duration::from_secs(2), "a poll after the server returned")
        .await;
    // The first poll scheduled after the server's return succeeds: its scheduled
    // time (the event's timestamp) is within one interval of the return.
    let resumed = m.time.duration_since(back).unwrap_or_default();
    eprintln!("first successful poll scheduled {resumed:?} after the server returned (interval {INTERVAL:?})");
    assert!(
        resumed <= INTERVAL + Duration::from_millis(5),
        "resumed {resumed:?} after the return"
    );
    let h = src.devices().get("restart", "hp1").unwrap();
    assert!(h.up && h.connect_failures >= 1);
    drop(server);
    src.stop().await;
}

#[tokio::test]
async fn a_new_poll_interval_takes_effect_without_a_restart() {
    use hpflow::component::BuildContext;
    use hpflow::component::Control;
    let sim = simulator();
    let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg: hpflow::sources::modbus::ModbusTcpConfig =
        toml::from_str(&config(&device("hp1", server.local_addr().port()))).unwrap();
    let control = std::sync::Arc::new(Control::default());
    let registry: std::sync::Arc<hpflow::telemetry::Registry> = std::sync::Arc::default();
    let source = cfg
        .build(&BuildContext {
            id: "live_interval",
            pipeline_dir: dir.path(),
            data_dir: dir.path(),
            input_schemas: &[],
            registry: &registry,
            control: &control,
            prepared: None,
        })
        .unwrap();
    let mut src = support::modbus::run("live_interval", source, registry);
    let a = src.next(Duration::from_secs(2), "a first poll").await.time;
    let b = src.next(Duration::from_secs(2), "a second poll").await.time;
    assert!(b.duration_since(a).unwrap().abs_diff(INTERVAL) < Duration::from_millis(5));
    assert!(control.set_source_poll_interval("live_interval", Duration::from_millis(500)));
    // Skip the poll that may already be under way, then measure the new cadence.
    src.next(Duration::from_secs(2), "a poll after the change").await;
    let c = src
        .next(Duration::from_secs(2), "a poll on the new interval")
        .await
        .time;
    let d = src
        .next(Duration::from_secs(2), "another poll on the new interval")
        .await
        .time;
    let step = d.duration_since(c).unwrap();
    assert!(
        step.abs_diff(Duration::from_millis(500)) < Duration::from_millis(5),
        "polls {step:?} apart"
    );
    src.stop().await;
}

/// Shutdown while a poll is under way: the poll finishes and its event is
/// delivered before the source stops (the device may have answered it all,
/// and a poll a device answered must reach the sinks).
#[tokio::test]
async fn a_poll_under_way_at_shutdown_finishes_and_is_delivered() {
    let map = RegisterMap::load(shipped_registers()).unwrap();
    let latency = Duration::from_millis(60);
    let sim = Simulator::new(SimOptions {
        clock: Clock::Frozen(SystemTime::UNIX_EPOCH + Duration::from_secs(1_768_480_000)),
        faults: Faults {
            latency,
            ..Faults::default()
        },
        ..SimOptions::new(map.model("stiebel_eltron_wpm").unwrap().clone())
    })
    .unwrap();
    let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "registers = {:?}\ninterval = \"1h\"\ntimeout = \"2s\"\nphase_spread = false\n{}",
        shipped_registers().display().to_string(),
        device("slow", server.local_addr().port())
    );
    let mut src = run_tcp("underway", dir.path(), &text);

    // The first poll starts at once and takes several requests of `latency` each.
    let started = Instant::now();
    while sim.requests_served() < 2 {
        assert!(started.elapsed() < Duration::from_secs(5), "the poll never began");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    src.shutdown.cancel();
    let stopped_at = sim.requests_served();

    let m = src
        .next(Duration::from_secs(10), "the poll under way at shutdown")
        .await;
    assert_eq!(&*m.device, "slow");
    assert!(
        sim.requests_served() > stopped_at,
        "the poll went on after shutdown ({stopped_at} requests before it)"
    );
    assert!(
        m.fields.len() > 100,
        "the whole poll was decoded: {} fields",
        m.fields.len()
    );
    // Then the source stops: its output closes.
    match tokio::time::timeout(Duration::from_secs(5), src.rx.recv()).await {
        Ok(None) => {}
        Ok(Some(e)) => panic!("no second poll after shutdown, got {e:?}"),
        Err(_) => panic!("the source did not stop within 5 s of shutdown"),
    }
}
