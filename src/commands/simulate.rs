//! `hpflow simulate`: simulated Stiebel Eltron heat pumps for demos and tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{find_model, load_map, EXIT_CONFIG, EXIT_UNAVAILABLE};
use crate::sim::{Clock, Faults, RtuServer, SimOptions, Simulator, TcpServer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Layout {
    /// One endpoint, one unit id per heat pump (a gateway).
    Units,
    /// One TCP port per heat pump (the listen port, the next, …), each unit id `--unit-id`.
    Ports,
}

/// `hpflow simulate`: serve simulated heat pumps over Modbus TCP or RTU.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Address to serve Modbus TCP on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:5020")]
    pub listen: SocketAddr,
    /// Unit id of the (first) simulated heat pump.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=247))]
    pub unit_id: u8,
    /// Number of heat pumps.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=247))]
    pub devices: u16,
    /// How several heat pumps are reached.
    #[arg(long, value_enum, default_value = "units")]
    pub layout: Layout,
    /// Serve Modbus RTU on this serial device (e.g. one end of a socat pty pair) instead of TCP.
    #[arg(long, conflicts_with = "pty")]
    pub serial: Option<PathBuf>,
    /// Serve Modbus RTU on a new pseudo-terminal and print the path clients open.
    #[arg(long)]
    pub pty: bool,
    /// Serial line speed (with --serial).
    #[arg(long, default_value_t = 9600)]
    pub baud: u32,
    /// Register map file (default: the map built into hpflow).
    #[arg(long)]
    pub registers: Option<PathBuf>,
    /// Model of the map to serve.
    #[arg(long, default_value = "stiebel_eltron_wpm")]
    pub model: String,
    /// Time zone of the controllers' day (an IANA name such as Europe/Berlin,
    /// or UTC): the day counters move into the totals at its midnight.
    /// Default: the system's time zone.
    #[arg(long, value_name = "NAME")]
    pub time_zone: Option<String>,
    /// Seed of the simulated weather and plant; the same seed serves the same values.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Controller id at input 5001 (391 WPM 3i, 449 WPMsystem; default: by seed).
    #[arg(long)]
    pub controller_id: Option<u16>,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Start the simulated clock at this instant (RFC 3339, e.g.
    /// 2026-01-15T03:00:00Z) instead of now, so a run covers a known part of the day.
    #[arg(long, value_name = "TIME", value_parser = humantime::parse_rfc3339_weak)]
    pub start: Option<std::time::SystemTime>,
    /// Share of requests (0-1) answered with --exception-code.
    #[arg(long, default_value_t = 0.0)]
    pub exception_rate: f64,
    /// Modbus exception code used by --exception-rate (6: server busy).
    #[arg(long, default_value_t = 6)]
    pub exception_code: u8,
    /// Delay before every answer, e.g. 50ms.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub latency: Duration,
    /// Close the connection (RTU: stay silent) on every Nth request.
    #[arg(long)]
    pub drop_every: Option<u64>,
    /// Act as a device that takes one request at a time over TCP: requests
    /// that arrive together with another are dropped unanswered.
    #[arg(long)]
    pub one_request_at_a_time: bool,
    /// Write the values being served (as `hpflow read --json` prints them) to
    /// this file whenever they change, and on SIGUSR1.
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

/// Builds the simulators the arguments ask for: one per endpoint.
pub fn simulators(
    args: &SimulateArgs,
    model: Arc<crate::registers::Model>,
) -> Result<Vec<Simulator>, crate::sim::SimError> {
    let faults = Faults {
        exception_rate: args.exception_rate,
        exception_code: args.exception_code,
        latency: args.latency,
        drop_every: args.drop_every,
        one_request_at_a_time: args.one_request_at_a_time,
    };
    let time_zone = match &args.time_zone {
        Some(name) => jiff::tz::TimeZone::get(name).map_err(|e| crate::sim::SimError::UnknownTimeZone {
            name: name.clone(),
            reason: e.to_string(),
        })?,
        None => jiff::tz::TimeZone::system(),
    };
    let base = SimOptions {
        seed: args.seed,
        time_zone,
        controller_id: args.controller_id,
        clock: Clock::Running { speed: args.speed },
        start: args.start,
        faults,
        ..SimOptions::new(model)
    };
    let n = args.devices;
    let per_port = args.layout == Layout::Ports && args.serial.is_none() && !args.pty;
    if per_port {
        (0..n)
            .map(|i| {
                Simulator::new(SimOptions {
                    seed: args.seed.wrapping_add(u64::from(i)),
                    unit_ids: vec![args.unit_id],
                    ..base.clone()
                })
            })
            .collect()
    } else {
        let units: Vec<u8> = (0..n).map(|i| args.unit_id.saturating_add(i as u8)).collect();
        Ok(vec![Simulator::new(SimOptions {
            unit_ids: units,
            ..base
        })?])
    }
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let map = match load_map(args.registers.as_ref()) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    let model = match find_model(&map, &args.model) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    if u16::from(args.unit_id) + args.devices - 1 > 247 && args.layout == Layout::Units {
        eprintln!(
            "error: unit ids {}..{} go past 247",
            args.unit_id,
            u16::from(args.unit_id) + args.devices - 1
        );
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let sims = match simulators(&args, model) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };

    let mut tcp: Vec<TcpServer> = Vec::new();
    let mut rtu: Vec<RtuServer> = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    if args.serial.is_some() || args.pty {
        let Some(sim) = sims.first() else {
            return Ok(ExitCode::from(EXIT_CONFIG));
        };
        let server = match &args.serial {
            Some(p) => sim.serve_serial(p, args.baud),
            None => sim.serve_pty(),
        };
        match server {
            Ok(s) => {
                let path = s.path().map(|p| p.display().to_string()).unwrap_or_default();
                println!("simulating units {:?} over Modbus RTU on {path}", sim.unit_ids());
                rtu.push(s);
            }
            Err(e) => {
                eprintln!("error: cannot serve Modbus RTU: {e}");
                return Ok(ExitCode::from(EXIT_UNAVAILABLE));
            }
        }
    } else {
        for (i, sim) in sims.iter().enumerate() {
            let mut addr = args.listen;
            if addr.port() != 0 {
                addr.set_port(addr.port().saturating_add(i as u16));
            }
            match sim.serve_tcp(addr).await {
                Ok(s) => {
                    println!(
                        "simulating units {:?} (controller {:?}) over Modbus TCP on {}",
                        sim.unit_ids(),
                        sim.unit_ids()
                            .iter()
                            .map(|u| sim.controller_id(*u).unwrap_or(0))
                            .collect::<Vec<_>>(),
                        s.local_addr()
                    );
                    labels.push(s.local_addr().to_string());
                    tcp.push(s);
                }
                Err(e) => {
                    eprintln!("error: cannot listen on {addr}: {e}");
                    return Ok(ExitCode::from(EXIT_UNAVAILABLE));
                }
            }
        }
    }

    let truth = |sims: &[Simulator]| -> serde_json::Value {
        if let [only] = sims {
            only.truth_json()
        } else {
            serde_json::Value::Object(
                labels
                    .iter()
                    .cloned()
                    .zip(sims.iter().map(Simulator::truth_json))
                    .collect(),
            )
        }
    };
    let mut last = serde_json::Value::Null;
    let mut check = tokio::time::interval(Duration::from_millis(200));
    let mut usr1 = user_signal();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = check.tick() => {
                if let Some(path) = &args.truth {
                    let now = truth(&sims);
                    if now != last {
                        if let Err(e) = crate::sim::write_json_atomic(path, &now) {
                            eprintln!("error: cannot write {}: {e}", path.display());
                        }
                        last = now;
                    }
                }
            }
            _ = next_signal(&mut usr1) => {
                if let Some(path) = &args.truth {
                    last = truth(&sims);
                    if let Err(e) = crate::sim::write_json_atomic(path, &last) {
                        eprintln!("error: cannot write {}: {e}", path.display());
                    }
                }
            }
        }
    }
    drop(tcp);
    drop(rtu);
    Ok(ExitCode::SUCCESS)
}

#[cfg(unix)]
type UserSignal = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type UserSignal = Option<()>;

#[cfg(unix)]
fn user_signal() -> UserSignal {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).ok()
}

#[cfg(not(unix))]
fn user_signal() -> UserSignal {
    None
}

#[cfg(unix)]
async fn next_signal(s: &mut UserSignal) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_signal(_s: &mut UserSignal) {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn model() -> Arc<crate::registers::Model> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/registers.yml");
        let map = crate::registers::RegisterMap::load(&path).expect("the shipped map loads");
        Arc::clone(map.model("stiebel_eltron_wpm").expect("the shipped model"))
    }

    #[test]
    fn time_zone_names_the_controllers_day_and_an_unknown_one_is_refused() {
        let args = Cli::parse_from(["simulate", "--time-zone", "Europe/Berlin", "--devices", "2"]).args;
        let sims = simulators(&args, model()).expect("a known time zone");
        assert_eq!(sims[0].time_zone().iana_name(), Some("Europe/Berlin"));

        let args = Cli::parse_from(["simulate", "--time-zone", "Europe/Atlantis"]).args;
        let err = simulators(&args, model()).expect_err("an unknown time zone is refused");
        assert!(matches!(err, crate::sim::SimError::UnknownTimeZone { .. }), "{err:?}");
        assert!(
            err.to_string().contains("unknown time zone \"Europe/Atlantis\""),
            "{err}"
        );
    }
}
