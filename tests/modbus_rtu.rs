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
