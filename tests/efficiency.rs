//! The `efficiency` transform against the simulator, over days.
//!
//! Two simulated heat pumps (their clock frozen and stepped, their day counters
//! moving at local midnight in Europe/Berlin, across the spring clock change) are
//! polled over Modbus TCP every minute of simulated time with hpflow's own client
//! and read plan; each poll goes through `scale` and `efficiency` with the
//! simulated time as its poll time. hpflow is restarted at seeded instants (the
//! transform saved and built again from its data folder), sometimes after hours
//! down, once across a midnight. The device's side is the count of truth: each
//! day's heat and electricity hpflow reports must equal what the simulator's
//! registers moved at that day's midnight (within 0.1 kWh), its COP the
//! simulator's (within 1 %), and the counters never go back.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hpflow::component::{BuildContext, Transform};
use hpflow::event::{Event, Metric, Tags};
use hpflow::modbus::{one_off_device, plan_options, poll_device, Link, TcpConnector};
use hpflow::registers::RegisterMap;
use hpflow::sim::{Clock, SimOptions, Simulator};
use hpflow::telemetry::Registry;
use hpflow::transforms::efficiency::EfficiencyConfig;
use hpflow::transforms::scale::ScaleConfig;
use jiff::civil::Date;
use jiff::tz::TimeZone;

mod support;

const ZONE: &str = "Europe/Berlin";
const UNITS: [u8; 2] = [1, 2];
const STEP: u64 = 60;

fn at(secs: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
}

/// Unix seconds of a local date's midnight.
fn midnight(tz: &TimeZone, d: Date) -> i64 {
    d.to_zoned_datetime(tz.clone()).unwrap().timestamp().as_second()
}

fn build(
    dir: &Path,
    registry: &Arc<Registry>,
    schema: &Arc<hpflow::event::Schema>,
) -> (Box<dyn Transform>, Box<dyn Transform>) {
    let scale: ScaleConfig = toml::from_str("").unwrap();
    let scale = BuildContext::alone("scaled", dir, std::slice::from_ref(schema), registry, |cx| {
        scale.build(cx)
    })
    .unwrap();
    let eff: EfficiencyConfig = toml::from_str(&format!("time_zone = \"{ZONE}\"")).unwrap();
    let eff = BuildContext::alone("efficiency", dir, std::slice::from_ref(schema), registry, |cx| {
        eff.build(cx)
    })
    .unwrap();
    (scale, eff)
}

fn through(t: &mut dyn Transform, e: Event) -> Event {
    let mut out = Vec::new();
    t.transform(e, &mut out);
    out.into_iter().next().expect("one event out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_energy_and_cop_equal_the_simulators_over_days_with_restarts() {
    let tz = TimeZone::get(ZONE).unwrap();
    let map = RegisterMap::load(support::shipped_registers()).unwrap();
    let model = map.model("stiebel_eltron_wpm").unwrap().clone();
    let schema = model.schema().clone();
    // Friday 27 March 2026, 20:00 local: four midnights, one of them the night
    // the clocks go forward.
    let start = midnight(&tz, jiff::civil::date(2026, 3, 27)) + 20 * 3600;
    let end = start + 4 * 86_400 + 6 * 3600;
    let sim = Simulator::new(SimOptions {
        seed: 13,
        unit_ids: UNITS.to_vec(),
        clock: Clock::Frozen(at(start)),
        time_zone: tz.clone(),
        ..SimOptions::new(model.clone())
    })
    .unwrap();
    let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let port = server.local_addr().port();
    let options = plan_options(None, None, Duration::from_secs(3600));
    let mut devices: Vec<_> = UNITS
        .iter()
        .map(|u| one_off_device(&format!("hp{u}"), *u, model.plan(&options), Duration::from_secs(2)))
        .collect();
    let mut link = Link::new(Box::new(TcpConnector {
        host: "127.0.0.1".into(),
        port,
    }));

    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::default());
    let (mut scale, mut eff) = build(dir.path(), &registry, &schema);
    let mut rng = fastrand::Rng::with_seed(2026);
    let mut restarts = 0;
    let mut down_across_midnight = false;
    let mut last_counter: [Option<f64>; 2] = [None; 2];
    let mut polls = 0;
    let mut t = start;
    while t < end {
        sim.set_time(at(t));
        for (i, dev) in devices.iter_mut().enumerate() {
            let outcome = poll_device(&mut link, dev).await;
            assert!(
                outcome.error.is_none(),
                "poll of hp{} at {t}: {:?}",
                i + 1,
                outcome.error
            );
            let mut m = Metric::new(&dev.id, Arc::new(Tags::new()), at(t), schema.clone());
            m.fields = outcome.fields;
            let e = through(&mut *scale, m.into());
            let Event::Metric(m) = through(&mut *eff, e) else {
                panic!("a metric comes out");
            };
            polls += 1;
            for name in ["heat_kwh", "electricity_kwh"] {
                let v = m.fields.get(name).and_then(|v| v.as_f64());
                assert!(v.is_some(), "{name} of hp{} at {t}", i + 1);
            }
            let heat = m.fields["heat_kwh"].as_f64().unwrap();
            if let Some(prev) = last_counter[i] {
                assert!(heat >= prev, "hp{}: heat_kwh went back at {t}: {prev} -> {heat}", i + 1);
            }
            last_counter[i] = Some(heat);
            if let Some(cop) = m.fields.get("cop_today").and_then(|v| v.as_f64()) {
                assert!(cop.is_finite() && cop >= 0.0, "cop_today {cop}");
            }
        }
        t += STEP as i64;
        // A restart now and then; sometimes hpflow stays down for hours.
        let local = jiff::Timestamp::from_second(t).unwrap().to_zoned_datetime(tz.clone());
        let before_midnight = local.hour() == 23 && local.minute() == 0;
        if rng.f64() < 0.004 || (before_midnight && !down_across_midnight && local.day() == 29) {
            eff.shutdown(&mut Vec::new());
            drop(eff);
            restarts += 1;
            if before_midnight && !down_across_midnight {
                down_across_midnight = true;
                t += 3 * 3600;
            } else if rng.bool() {
                t += rng.i64(600..3 * 3600);
            }
            let (s, e) = build(dir.path(), &registry, &schema);
            scale = s;
            eff = e;
        }
    }
    eff.tick(SystemTime::now(), &mut Vec::new());
    assert!(down_across_midnight, "the run was down across a midnight");

    // Every whole local day: hpflow's figures against the simulator's registers.
    let first = jiff::Timestamp::from_second(start)
        .unwrap()
        .to_zoned_datetime(tz.clone())
        .date();
    let mut compared = 0;
    let mut worst_cop = 0.0f64;
    let mut worst_exact = 0.0f64;
    for (i, unit) in UNITS.iter().enumerate() {
        let id = format!("hp{unit}");
        let days = registry.efficiency().days(&id).expect("days published");
        for offset in 1..=3 {
            let date = first.checked_add(jiff::Span::new().days(offset)).unwrap();
            let (m0, m1) = (midnight(&tz, date), midnight(&tz, date.tomorrow().unwrap()));
            let (e0, e1) = (
                sim.energy_at(*unit, at(m0)).unwrap(),
                sim.energy_at(*unit, at(m1)).unwrap(),
            );
            let moved = |a: f64, b: f64| b.floor() - a.floor();
            let truth = [
                moved(e0.heat_heating, e1.heat_heating),
                moved(e0.heat_dhw, e1.heat_dhw),
                moved(e0.el_heating, e1.el_heating),
                moved(e0.el_dhw, e1.el_dhw),
            ];
            let day = days
                .iter()
                .find(|d| d.date == date)
                .unwrap_or_else(|| panic!("{id} has {date}"));
            let got = [
                day.heat_heating,
                day.heat_dhw,
                day.electricity_heating,
                day.electricity_dhw,
            ];
            for (what, (g, want)) in ["heat heating", "heat dhw", "electricity heating", "electricity dhw"]
                .iter()
                .zip(got.iter().zip(truth))
            {
                let g = g.unwrap_or_else(|| panic!("{id} {date}: {what} unknown"));
                assert!(
                    (g - want).abs() <= 0.1,
                    "{id} {date}: {what} {g} kWh, the simulator {want} kWh"
                );
            }
            let sim_cop = (truth[0] + truth[1]) / (truth[2] + truth[3]);
            let cop = day.cop().unwrap_or_else(|| panic!("{id} {date}: no COP"));
            let dev = (cop - sim_cop).abs() / sim_cop;
            assert!(dev <= 0.01, "{id} {date}: COP {cop}, the simulator's {sim_cop}");
            assert!((2.0..=5.0).contains(&cop), "{id} {date}: COP {cop} is not believable");
            let exact = (e1.heat_heating - e0.heat_heating + e1.heat_dhw - e0.heat_dhw)
                / (e1.el_heating - e0.el_heating + e1.el_dhw - e0.el_dhw);
            worst_cop = worst_cop.max(dev);
            worst_exact = worst_exact.max((cop - exact).abs() / exact);
            eprintln!(
                "hp{} {date}: heat {:.0}+{:.0} kWh, electricity {:.0}+{:.0} kWh, COP {cop:.3} (simulator {sim_cop:.3}, unrounded {exact:.3}), outdoor {:.1} °C, {} starts",
                i + 1,
                got[0].unwrap(),
                got[1].unwrap(),
                got[2].unwrap(),
                got[3].unwrap(),
                day.outdoor_mean.unwrap_or(f64::NAN),
                day.compressor_starts
            );
            // A start is counted only when it happened (downtime may miss some).
            let runs = sim.compressor_runs(*unit, at(m0), at(m1)).unwrap();
            assert!(
                u64::from(day.compressor_starts) <= runs.starts + 1,
                "{id} {date}: {} starts counted, the simulator made {}",
                day.compressor_starts,
                runs.starts
            );
            compared += 1;
        }
    }
    eprintln!(
        "{polls} polls, {restarts} restarts, {compared} days compared: energy equal, COP within {:.3} % of the simulator's registers ({:.2} % of its unrounded energy)",
        worst_cop * 100.0,
        worst_exact * 100.0
    );
    assert_eq!(compared, 6);
    assert!(restarts >= 3, "only {restarts} restarts");
}
