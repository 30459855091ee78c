//! Requests sent together (`in_flight`): a poll reads exactly what the same
//! poll sent one request at a time reads, and a device that cannot take
//! requests together is found, and then polled one at a time, without losing
//! a poll. The device's side is the count of truth: what the simulator
//! answered, and its request log.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use hpflow::event::Fields;
use hpflow::modbus::{plan_options, poll_device, Device, Link, PollOutcome, TcpConnector, Together};
use hpflow::registers::{Model, RegisterMap};
use hpflow::sim::{Clock, Faults, SimOptions, Simulator};
use hpflow::telemetry::{HealthRegistry, RequestResult};
use support::shipped_registers;

fn model() -> std::sync::Arc<Model> {
    let map = RegisterMap::load(shipped_registers()).unwrap();
    map.model("stiebel_eltron_wpm").unwrap().clone()
}

/// A simulator standing still, so every poll of it reads the same values.
fn simulator(seed: u64, faults: Faults) -> Simulator {
    Simulator::new(SimOptions {
        seed,
        clock: Clock::Frozen(SystemTime::UNIX_EPOCH + Duration::from_secs(1_768_480_000)),
        faults,
        ..SimOptions::new(model())
    })
    .unwrap()
}

fn device(id: &str, in_flight: usize, timeout: Duration, reprobe: Duration, health: &HealthRegistry) -> Device {
    let plan = model().plan(&plan_options(None, None, reprobe));
    let bounds = (Duration::from_millis(1), Duration::from_millis(1));
    let mut d = Device::new("together", &id.into(), 1, plan, bounds, timeout, health);
    d.in_flight = in_flight;
    d
}

fn link(addr: SocketAddr) -> Link {
    Link::new(Box::new(TcpConnector {
        host: addr.ip().to_string(),
        port: addr.port(),
    }))
}

/// What one request at a time reads from `sim`: the reference.
async fn one_at_a_time(sim: &Simulator) -> Fields {
    let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let health = HealthRegistry::default();
    let mut dev = device(
        "reference",
        1,
        Duration::from_secs(2),
        Duration::from_secs(3600),
        &health,
    );
    let out = poll_device(&mut link(server.local_addr()), &mut dev).await;
    assert!(out.error.is_none(), "reference poll failed: {:?}", out.error);
    assert_eq!(dev.together, Together::Unknown, "in_flight 1 never sends together");
    out.fields
}

/// Every value a poll read is the reference's value of that field.
fn no_wrong_value(poll: &PollOutcome, reference: &Fields, what: &str) {
    for (name, value) in poll.fields.iter() {
        assert_eq!(reference.get(name), Some(value), "{what}: field {name}");
    }
}

/// Seeded random `in_flight` settings, with and without a device that answers
/// busy now and then or drops its connection: every value read is the value
/// one request at a time reads, and without faults every poll reads them all,
/// with its requests sent together from the second poll on.
#[tokio::test]
async fn requests_sent_together_read_what_one_at_a_time_reads() {
    for seed in 0..12u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let in_flight = rng.usize(2..=16);
        let faults = match seed % 3 {
            0 => Faults::default(),
            1 => Faults {
                exception_rate: 0.05,
                exception_code: 0x06,
                ..Faults::default()
            },
            _ => Faults {
                drop_every: Some(rng.u64(5..40)),
                ..Faults::default()
            },
        };
        let clean = faults.exception_rate == 0.0 && faults.drop_every.is_none();
        let reference = one_at_a_time(&simulator(seed, Faults::default())).await;
        let sim = simulator(seed, faults);
        let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let health = HealthRegistry::default();
        let mut dev = device(
            "hp",
            in_flight,
            Duration::from_secs(2),
            Duration::from_secs(3600),
            &health,
        );
        let mut link = link(server.local_addr());
        let what = |poll| format!("seed {seed}, in_flight {in_flight}, poll {poll}");
        for poll in 0..6 {
            let before = sim.requests_served();
            let out = poll_device(&mut link, &mut dev).await;
            no_wrong_value(&out, &reference, &what(poll));
            if clean {
                assert!(out.error.is_none(), "{}: {:?}", what(poll), out.error);
                assert_eq!(out.fields, reference, "{}", what(poll));
                assert_eq!(
                    sim.requests_served() - before,
                    out.requests.len() as u64,
                    "{}: each request sent once",
                    what(poll)
                );
                let expect = if poll == 0 { Together::Yes } else { dev.together };
                assert_eq!(dev.together, expect, "{}", what(poll));
            }
        }
        if clean {
            assert_eq!(dev.together, Together::Yes, "seed {seed}");
            let h = health.get("together", "hp").unwrap();
            assert_eq!(h.requests(RequestResult::Timeout), 0, "seed {seed}");
        }
    }
}

/// A device that reads one request per packet and drops the rest: the first
/// poll sent together loses nothing (what went unanswered is sent again alone
/// at once), and from then on the device is polled one request at a time.
#[tokio::test]
async fn a_device_that_takes_one_request_at_a_time_is_found_without_losing_a_poll() {
    let reference = one_at_a_time(&simulator(3, Faults::default())).await;
    let sim = simulator(
        3,
        Faults {
            one_request_at_a_time: true,
            ..Faults::default()
        },
    );
    let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let health = HealthRegistry::default();
    let reprobe = Duration::from_secs(2);
    let timeout = Duration::from_millis(300);
    let mut dev = device("gw", 16, timeout, reprobe, &health);
    let mut link = link(server.local_addr());
    let mut states = Vec::new();
    for poll in 0..5 {
        let out = poll_device(&mut link, &mut dev).await;
        assert!(out.error.is_none(), "poll {poll}: {:?}", out.error);
        assert_eq!(out.fields, reference, "poll {poll}");
        states.push(dev.together);
    }
    // One at a time first; the second poll sends together, finds that the
    // device does not answer so, and finishes one at a time.
    assert_eq!(states[0], Together::Yes);
    assert!(
        states[1..].iter().all(|s| matches!(s, Together::No { .. })),
        "{states:?}"
    );
    let timeouts = health.get("together", "gw").unwrap().requests(RequestResult::Timeout);
    assert_eq!(timeouts, 1, "one request went unanswered, once");

    // After the re-probe interval it is tried again, and found again.
    tokio::time::sleep(reprobe).await;
    for poll in 0..3 {
        let out = poll_device(&mut link, &mut dev).await;
        assert!(out.error.is_none(), "after the re-probe, poll {poll}: {:?}", out.error);
        assert_eq!(out.fields, reference, "after the re-probe, poll {poll}");
    }
    assert!(matches!(dev.together, Together::No { .. }), "{:?}", dev.together);
    let timeouts = health.get("together", "gw").unwrap().requests(RequestResult::Timeout);
    assert_eq!(timeouts, 2, "tried together once more after the re-probe");
}

/// A device that stops answering while its requests are sent together fails
/// its poll as it would one at a time, is not marked as unable to take
/// requests together, and is sent them together again once it is back.
#[tokio::test]
async fn a_device_that_goes_away_is_not_mistaken_for_one_that_cannot_take_requests_together() {
    let sim = simulator(5, Faults::default());
    let reference = one_at_a_time(&sim).await;
    let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let health = HealthRegistry::default();
    let mut dev = device("hp", 16, Duration::from_millis(300), Duration::from_secs(3600), &health);
    let mut link = link(addr);
    for _ in 0..2 {
        assert!(poll_device(&mut link, &mut dev).await.error.is_none());
    }
    assert_eq!(dev.together, Together::Yes);

    drop(server);
    let out = poll_device(&mut link, &mut dev).await;
    assert!(out.error.is_some() && out.fields.is_empty(), "{out:?}");
    assert_eq!(dev.together, Together::Unknown, "not blamed on sending together");

    let _server = sim.serve_tcp(addr).await.expect("the port can be bound again");
    let mut back = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let out = poll_device(&mut link, &mut dev).await;
        if out.error.is_none() {
            back = Some(out);
            break;
        }
    }
    assert_eq!(back.expect("polled again once back").fields, reference);
    let out = poll_device(&mut link, &mut dev).await;
    assert_eq!(out.fields, reference);
    assert_eq!(dev.together, Together::Yes);
}
