//! The simulator against hpflow's own readers: `hpflow read --json` must print
//! exactly what the simulator says it serves, the ISG's start-address rule
//! holds, and the source copes with the simulator's faults.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hpflow::commands::read;
use hpflow::modbus::{read_once, Reply};
use hpflow::registers::RegisterMap;
use hpflow::registers::{RawData, Table};
use hpflow::sim::{Clock, Faults, SimOptions, Simulator};
use support::modbus::{read_args, run_tcp};
use support::{repo, shipped_registers};

const WAIT: Duration = Duration::from_secs(5);

fn model() -> Arc<hpflow::registers::Model> {
    let map = RegisterMap::load(shipped_registers()).expect("the shipped map loads");
    map.model("stiebel_eltron_wpm").expect("the shipped model").clone()
}

/// 2026-01-15 (a winter day) at `h`:`m` UTC.
fn at(h: u64, m: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_768_435_200 + h * 3600 + m * 60)
}

/// A simulator whose controllers keep UTC days, whatever the machine's time zone.
fn frozen(seed: u64, controller: u16, t: SystemTime) -> Simulator {
    Simulator::new(SimOptions {
        seed,
        controller_id: Some(controller),
        clock: Clock::Frozen(t),
        time_zone: jiff::tz::TimeZone::UTC,
        ..SimOptions::new(model())
    })
    .expect("simulator options are valid")
}

#[tokio::test]
async fn read_json_prints_exactly_the_simulators_truth() {
    // Night, a hot-water charge, a cold morning, an afternoon; both controllers.
    let cases = [
        (1, 449, at(2, 5)),
        (2, 391, at(5, 40)),
        (3, 449, at(7, 10)),
        (4, 391, at(15, 20)),
    ];
    for (seed, controller, t) in cases {
        let sim = frozen(seed, controller, t);
        let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let got = read::json(&read_args(
            server.local_addr().port(),
            1,
            Some(shipped_registers()),
            "hp1",
        ))
        .await
        .expect("read succeeds");
        let truth = sim.truth(1).expect("unit 1 exists");
        assert!(truth.len() > 100, "the truth covers the map: {} fields", truth.len());
        for (k, v) in &truth {
            assert_eq!(got.get(k), Some(v), "seed {seed} field {k}");
        }
        assert_eq!(
            got.len(),
            truth.len(),
            "no field beyond the truth: {:?}",
            got.keys().filter(|k| !truth.contains_key(*k)).collect::<Vec<_>>()
        );
        let label = if controller == 449 { "WPMsystem" } else { "WPM 3i" };
        assert_eq!(got["controller_identification"], serde_json::json!(label));
        assert!(got["outside_temperature"].is_f64());
        assert!(
            got.get("actual_temperature_fe7").is_none(),
            "a sensor not fitted (0x8000) is absent"
        );
        assert!(got["heat_meter_heating_total"].as_i64().unwrap() >= 15_000);
    }
}

#[tokio::test]
async fn the_simulator_flips_status_bits_and_moves_counters_over_a_day() {
    let sim = frozen(1, 449, at(0, 0));
    let mut compressor = std::collections::BTreeSet::new();
    let mut dhw = std::collections::BTreeSet::new();
    let mut totals = Vec::new();
    const STEP: u64 = 20;
    for minute in (0..(36 * 60)).step_by(STEP as usize) {
        sim.set_time(at(0, 0) + Duration::from_secs(minute * 60));
        let t = sim.truth(1).unwrap();
        compressor.insert(t["compressor_running"].as_bool().unwrap());
        dhw.insert(t["hp_dhw_mode"].as_bool().unwrap());
        totals.push((
            t["heat_meter_heating_total"].as_i64().unwrap(),
            t["heat_meter_heating_day"].as_i64().unwrap(),
        ));
    }
    assert_eq!(compressor.len(), 2, "the compressor both ran and stood still");
    assert_eq!(dhw.len(), 2, "a hot-water charge happened");
    // The total is flat during the day and jumps at midnight; the day counter drops then.
    let midnight = (24 * 60 / STEP) as usize;
    assert_eq!(totals[1].0, totals[midnight - 1].0, "the total is flat during the day");
    assert!(
        totals[midnight].0 > totals[midnight - 1].0,
        "the day moved into the total at midnight"
    );
    assert!(totals[midnight].1 < totals[midnight - 1].1, "the day counter restarted");
}

#[tokio::test]
async fn a_read_starting_on_an_undocumented_address_is_refused_like_an_isg() {
    let sim = frozen(1, 449, at(12, 0));
    let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let stream = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    let mut ctx = tokio_modbus::client::tcp::attach_slave(stream, tokio_modbus::Slave(1));
    let t = Duration::from_secs(2);
    let input = Table::InputRegisters;
    // Block 1 as one read: answered.
    match read_once(&mut ctx, input, 500, 111, t).await {
        Reply::Data(RawData::Words(w)) => {
            assert_eq!(w.len(), 111);
            assert_eq!(w[0], 0x8000, "FE7 sensor not fitted");
        }
        other => panic!("500x111: {other}"),
    }
    // 611 is not in the map: refused, even for one register.
    assert_eq!(read_once(&mut ctx, input, 611, 1, t).await, Reply::IllegalAddress);
    // A documented start may span undocumented addresses, which read 0x8000.
    match read_once(&mut ctx, input, 610, 3, t).await {
        Reply::Data(RawData::Words(w)) => assert_eq!(&w[1..], &[0x8000, 0x8000]),
        other => panic!("610x3: {other}"),
    }
    // The WPMsystem quirk: a read starting at 608 is refused, a span across it is not.
    assert_eq!(read_once(&mut ctx, input, 608, 1, t).await, Reply::IllegalAddress);
    assert!(matches!(read_once(&mut ctx, input, 607, 3, t).await, Reply::Data(_)));
    // Holding and input are separate spaces: 506 is no holding register.
    assert_eq!(
        read_once(&mut ctx, Table::HoldingRegisters, 506, 1, t).await,
        Reply::IllegalAddress
    );
    // The controller id at input 5001.
    assert_eq!(
        read_once(&mut ctx, input, 5001, 1, t).await,
        Reply::Data(RawData::Words(vec![449]))
    );
    // Ventilation is an optional block this controller lacks.
    assert_eq!(read_once(&mut ctx, input, 819, 16, t).await, Reply::IllegalAddress);
    // A unit id nobody answers to: the gateway says so.
    let stream = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    let mut other = tokio_modbus::client::tcp::attach_slave(stream, tokio_modbus::Slave(9));
    assert_eq!(read_once(&mut other, input, 506, 1, t).await, Reply::Unreachable(0x0B));
}

/// A WPMsystem answers every optional block: after the first poll, each run of
/// answered requests is read as one, with the same values.
#[tokio::test]
async fn answered_requests_are_joined_into_fewer_reads_with_the_same_values() {
    use hpflow::modbus::{one_off_device, poll_device, Link, TcpConnector};
    let sim = frozen(5, 449, at(10, 0));
    let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let connector = TcpConnector {
        host: "127.0.0.1".into(),
        port: server.local_addr().port(),
    };
    let plan = model().plan(&hpflow::registers::PlanOptions::default());
    let planned = plan.requests().len();
    let mut dev = one_off_device("hp1", 1, plan, WAIT);
    let mut link = Link::new(Box::new(connector));
    let first = poll_device(&mut link, &mut dev).await;
    // Each request apart; the ventilation block (2 requests) is not fitted on
    // a WPMsystem: its first request is refused and the block dropped.
    assert_eq!(first.requests.len(), planned - 1, "{:?}", first.requests);
    let refused: Vec<_> = first
        .requests
        .iter()
        .filter(|(_, r)| !matches!(r, Reply::Data(_)))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0.block.as_deref(), Some("ventilation"));
    for _ in 0..3 {
        let next = poll_device(&mut link, &mut dev).await;
        assert!(
            next.requests.iter().all(|(_, r)| matches!(r, Reply::Data(_))),
            "{:?}",
            next.requests
        );
        // The 21 answered requests, joined where one table runs on within the
        // gap (2500+2560+2569, 3625+3643+3679+3689, 5219+5229, 4249..4271): 12 reads.
        assert_eq!(next.requests.len(), 12, "{:?}", next.requests);
        assert_eq!(next.fields, first.fields, "the same values from the joined reads");
    }
}

#[tokio::test]
async fn the_hpmanager_map_plans_to_five_requests() {
    let hpm = repo().join("src/registers/testdata/hpmanager_registers.yml");
    let mut args = read_args(502, 1, Some(hpm), "hp1");
    args.plan = true;
    let text = read::plan(&args).expect("plan");
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("device hp1: 5 requests touching "), "{text}");
    let requests: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(requests.len(), 5, "{text}");
    for (fc, start) in [(4, 506), (3, 1500), (4, 2500), (4, 3500), (4, 3679)] {
        let want = format!("start {start:>5}");
        assert!(
            requests
                .iter()
                .any(|l| l.contains(&format!("function {fc:02}")) && l.contains(&want)),
            "no FC{fc:02} request at {start}:\n{text}"
        );
    }
}

#[tokio::test]
async fn the_source_reads_several_units_behind_one_gateway_despite_dropped_connections() {
    let sim = Simulator::new(SimOptions {
        seed: 9,
        unit_ids: vec![1, 2, 3],
        clock: Clock::Frozen(at(9, 0)),
        faults: Faults {
            drop_every: Some(7),
            ..Faults::default()
        },
        ..SimOptions::new(model())
    })
    .unwrap();
    let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = server.local_addr().port();
    let devices: String = (1..=3)
        .map(|u| {
            format!("[[devices]]\nid = \"hp{u}\"\nmodel = \"stiebel_eltron_wpm\"\nhost = \"127.0.0.1\"\nport = {port}\nunit_id = {u}\n")
        })
        .collect();
    let toml = format!(
        "registers = {:?}\ninterval = \"300ms\"\ntimeout = \"1s\"\nphase_spread = false\n{devices}",
        shipped_registers().display().to_string()
    );
    let mut src = run_tcp("gateway", dir.path(), &toml);
    let mut complete = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let m = src.next(WAIT, "polls of three units").await;
        let unit: u8 = m.device[2..].parse().unwrap();
        let truth = sim.truth_raw(unit).unwrap();
        if m.fields == truth.fields {
            complete.insert(unit);
        } else {
            let missing: Vec<_> = truth
                .fields
                .keys()
                .filter(|k| !m.fields.contains_key(k))
                .take(5)
                .collect();
            let wrong: Vec<_> = m
                .fields
                .iter()
                .filter(|(k, v)| truth.fields.get(k) != Some(v))
                .take(5)
                .collect();
            eprintln!(
                "unit {unit}: {} of {} fields; missing {missing:?}; differing {wrong:?}",
                m.fields.len(),
                truth.fields.len()
            );
        }
        if complete.len() == 3 {
            break;
        }
    }
    assert_eq!(
        complete.len(),
        3,
        "every unit delivered a complete poll although every 7th request dropped the connection"
    );
    assert!(sim.requests_served() > 14);
    src.stop().await;
}

#[tokio::test]
async fn the_truth_is_written_atomically_as_json() {
    let sim = frozen(5, 391, at(18, 0));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truth.json");
    sim.write_truth(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v, serde_json::Value::Object(sim.truth(1).unwrap()));
    assert!(!dir.path().join("truth.json.tmp").exists());
}

#[tokio::test]
async fn scan_finds_the_answering_ranges_at_the_rate_asked() {
    use hpflow::commands::scan::{scan, ScanArgs, TableArg};
    let sim = frozen(2, 449, at(12, 0));
    let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let args = ScanArgs {
        target: read_args(server.local_addr().port(), 1, None, "hp1").target,
        table: TableArg::Input,
        range: (495, 615),
        rate: Duration::from_millis(2),
        values: false,
    };
    let started = std::time::Instant::now();
    let report = scan(&args).await.expect("scan runs");
    let took = started.elapsed();
    // Block 1 answers from 500 to 610, except a read starting at 608 (the WPMsystem quirk).
    assert_eq!(report.ranges(), vec![(500, 607), (609, 610)]);
    assert_eq!(report.refused, 121 - 110);
    assert_eq!(report.silent, 0);
    assert!(
        took >= Duration::from_millis(2 * 120),
        "121 reads at 500/s took only {took:?}"
    );
}
