//! `modbus_rtu` end to end over pseudo-terminals: the simulator on one end of
//! a socat pair, the source on the other, two units sharing the bus.
//! socat is required: a missing socat fails the test, it does not skip it.

mod support;

use std::time::{Duration, SystemTime};

use hpflow::registers::RegisterMap;
use hpflow::sim::{Clock, SimOptions, Simulator};
use support::modbus::run_rtu;
use support::shipped_registers;
use support::socat::socat_pair;

fn simulator(units: Vec<u8>) -> Simulator {
    let map = RegisterMap::load(shipped_registers()).unwrap();
    Simulator::new(SimOptions {
        unit_ids: units,
        seed: 3,
        clock: Clock::Frozen(SystemTime::UNIX_EPOCH + Duration::from_secs(1_768_460_000)),
        ..SimOptions::new(map.model("stiebel_eltron_wpm").unwrap().clone())
    })
    .unwrap()
}

fn config(port: &std::path::Path) -> String {
    let devices: String = (1..=2)
        .map(|u| format!("[[devices]]\nid = \"hp{u}\"\nmodel = \"stiebel_eltron_wpm\"\nunit_id = {u}\n"))
        .collect();
    format!(
        "port = {:?}\nbaud = 19200\nregisters = {:?}\ninterval = \"300ms\"\ntimeout = \"1s\"\nphase_spread = false\n{devices}",
        port.display().to_string(),
        shipped_registers().display().to_string()
    )
}

/// Polls until both units delivered a poll equal to the simulator's truth.
async fn both_units_match(src: &mut support::modbus::Running, sim: &Simulator) {
    let mut matched = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let m = src.next(Duration::from_secs(3), "RTU polls").await;
        let unit: u8 = m.device[2..].parse().unwrap();
        assert_eq!(m.fields, sim.truth_raw(unit).unwrap().fields, "unit {unit} over RTU");
        matched.insert(unit);
        if matched.len() == 2 {
            return;
        }
    }
    panic!("only units {matched:?} were polled");
}

#[tokio::test]
async fn rtu_reads_two_units_through_a_socat_pty_pair() {
    let pair = socat_pair();
    let sim = simulator(vec![1, 2]);
    let server = sim.serve_serial(&pair.a, 19200).expect("the simulator opens its end");
    let dir = tempfile::tempdir().unwrap();
    let mut src = run_rtu("rtu_socat", dir.path(), &config(&pair.b));
    let started = std::time::Instant::now();
    both_units_match(&mut src, &sim).await;
    eprintln!("both units read over RTU in {:?}", started.elapsed());
    let h = src.devices().get("rtu_socat", "hp2").unwrap();
    assert!(h.up);
    src.stop().await;
    drop(server);
}

#[tokio::test]
async fn the_simulator_makes_its_own_pty_when_socat_is_not_at_hand() {
    let sim = simulator(vec![1, 2]);
    let server = sim.serve_pty().expect("a pseudo-terminal can be made");
    let path = server.path().expect("the client end's path").to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let mut src = run_rtu("rtu_pty", dir.path(), &config(&path));
    both_units_match(&mut src, &sim).await;
    src.stop().await;
}

/// A unit that answers every fourth request (a poll's second) after it timed out: the
/// late answer has the same unit, function code and length as the next request
/// (two blocks of three input registers), so only the link can tell them apart.
/// Every value polled must be the one of its own register; polls go on.
#[tokio::test]
async fn a_late_answer_is_never_read_as_the_answer_to_the_next_request() {
    use std::sync::atomic::Ordering;
    let pair = socat_pair();
    let dir = tempfile::tempdir().unwrap();
    let map = support::modbus::write_map(
        dir.path(),
        "models:\n  m:\n    registers:\n\
         \x20     - {name: a0, address: 100, register_type: input}\n\
         \x20     - {name: a1, address: 101, register_type: input}\n\
         \x20     - {name: a2, address: 102, register_type: input}\n\
         \x20     - {name: b0, address: 300, register_type: input}\n\
         \x20     - {name: b1, address: 301, register_type: input}\n\
         \x20     - {name: b2, address: 302, register_type: input}\n",
    );
    let dev = support::modbus::FakeDevice::new();
    // Each register holds its own address: a value in the wrong field shows.
    dev.set(4, 100, &[100, 101, 102]);
    dev.set(4, 300, &[300, 301, 302]);
    dev.late_every.store(4, Ordering::SeqCst);
    dev.late_ms.store(450, Ordering::SeqCst);
    let _server = support::modbus::serve_fake_rtu(dev.clone(), &pair.a);
    let toml = format!(
        "port = {:?}\nbaud = 19200\nregisters = \"{map}\"\ninterval = \"200ms\"\ntimeout = \"300ms\"\nphase_spread = false\n\n[[devices]]\nid = \"u1\"\nmodel = \"m\"\nunit_id = 1\n",
        pair.b.display().to_string()
    );
    let mut src = run_rtu("late", dir.path(), &toml);
    let mut values = 0;
    let mut polls = 0;
    while dev.requests.load(Ordering::SeqCst) < 40 {
        let m = src.next(Duration::from_secs(5), "RTU polls with late answers").await;
        polls += 1;
        for (name, v) in &m.fields {
            let base = if name.starts_with('a') { 100 } else { 300 };
            let want = base + i64::from(name.as_bytes()[1] - b'0');
            assert_eq!(
                v.as_i64(),
                Some(want),
                "poll {polls}: `{name}` holds another register's value"
            );
            values += 1;
        }
    }
    let h = src.devices().get("late", "u1").unwrap();
    let timeouts = h.requests(hpflow::telemetry::RequestResult::Timeout);
    eprintln!("{polls} polls, {values} values all in their own fields, {timeouts} timeouts");
    assert!(timeouts >= 3, "the late answers timed out ({timeouts})");
    assert!(polls >= 8, "polling went on ({polls} polls)");
    src.stop().await;
}
