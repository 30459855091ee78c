//! `hpflow demo`: hpflow's main job on a machine with no heat pump and no database.
//!
//! Reads the demo pipeline, starts a simulated heat pump in-process for every
//! Modbus TCP device it names (they must be on loopback), prints where the
//! dashboard and the metrics are, and runs the pipeline as `hpflow run` does.
//! With `INFLUXDB_URL` set, an `influxdb` sink is added after the last
//! transform, so the demo fills a real database for Grafana too.
//!
//! Without a pipeline path it runs `pipelines/demo.toml` as built into the
//! binary, so it works from any folder: the pipeline and the register map it
//! names are written as shipped into a fresh temporary folder, where its
//! relative paths (the map, the default `data_dir`) resolve, and which is
//! removed when the demo stops. `--modbus-port` moves the simulated pumps, and
//! the devices that poll them, to another loopback port: it changes only the
//! endpoints of what the check kept, which is what the sources are built from.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::import::EXIT_CANTCREAT;
use super::{BUILTIN_REGISTERS, EXIT_CONFIG};
use crate::component::Kind;
use crate::config::{compile, load_str, CheckedPipeline};
use crate::registers::Model;
use crate::sim::{Clock, SimOptions, Simulator, TcpServer};
use crate::sinks::SinkConfig;
use crate::sources::modbus::{DeviceSpec, Endpoint, Inventory};
use crate::sources::SourceConfig;

/// The shipped demo pipeline, built in so `hpflow demo` needs no files. It names
/// the register map as `../config/registers.yml`, where [`builtin_folder`] puts
/// [`BUILTIN_REGISTERS`].
pub const BUILTIN_DEMO: &str = include_str!("../../pipelines/demo.toml");

/// How the built-in pipeline is named in messages.
const BUILTIN_NAME: &str = "pipelines/demo.toml (built in)";

/// `hpflow demo [PIPELINE]`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// The demo pipeline; its Modbus TCP devices are simulated where they point (on loopback).
    /// Default: pipelines/demo.toml as built into hpflow, run from a temporary folder.
    pub pipeline: Option<PathBuf>,
    /// Serve the simulated heat pumps on this loopback port, and poll them there, instead of
    /// the port the pipeline's devices name.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub modbus_port: Option<u16>,
    /// Simulated seconds per real second, so compressor cycles and defrosts show within minutes.
    #[arg(long, default_value_t = 20.0)]
    pub speed: f64,
    /// Seed of the simulated weather and plants (each heat pump gets its own from it).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// One address the simulated heat pumps answer on, and who is behind it.
struct Gateway {
    addr: SocketAddr,
    model: Arc<Model>,
    devices: Vec<DeviceSpec>,
}

/// The pipeline the demo runs: its path, its text and its name for messages.
struct DemoPipeline {
    path: PathBuf,
    text: String,
    shown: String,
    /// The built-in pipeline's folder, removed when this is dropped (after the pipeline stopped).
    _folder: Option<tempfile::TempDir>,
}

impl DemoPipeline {
    /// The file given, else the built-in pipeline in a fresh folder; a message and
    /// the exit code when neither can be had.
    fn open(given: Option<&Path>) -> Result<DemoPipeline, ExitCode> {
        let Some(path) = given else {
            return match builtin_folder() {
                Ok((folder, path)) => Ok(DemoPipeline {
                    path,
                    text: BUILTIN_DEMO.to_string(),
                    shown: BUILTIN_NAME.to_string(),
                    _folder: Some(folder),
                }),
                Err(e) => {
                    eprintln!(
                        "error: cannot write the built-in demo pipeline into a temporary folder ({}): {e}\n\
                         Set TMPDIR to a writable folder, or pass the path of a pipeline file.",
                        std::env::temp_dir().display()
                    );
                    Err(ExitCode::from(EXIT_CANTCREAT))
                }
            };
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(DemoPipeline {
                path: path.to_path_buf(),
                text,
                shown: path.display().to_string(),
                _folder: None,
            }),
            Err(e) => {
                eprintln!(
                    "error: cannot read the demo pipeline {}: {e}\n\
                     Pass the path of a pipeline file, or run `hpflow demo` alone for the built-in demo.",
                    path.display()
                );
                Err(ExitCode::from(EXIT_CONFIG))
            }
        }
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    // `_folder` lives to the end: the built-in pipeline's folder goes once it stopped.
    let DemoPipeline {
        path,
        text,
        shown,
        _folder,
    } = match DemoPipeline::open(args.pipeline.as_deref()) {
        Ok(d) => d,
        Err(code) => return Ok(code),
    };
    let path = path.as_path();
    let env = |name: &str| std::env::var(name).ok();
    let (text, influxdb) = with_influxdb(text, &env);
    let checked = load_str(path, &text, &env).and_then(|(file, diags)| compile(file, diags));
    let (mut pipeline, warnings) = match checked {
        Ok(p) => p,
        Err(diags) => {
            eprint!("{diags}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    if let Some(port) = args.modbus_port {
        move_devices(&mut pipeline, port);
    }
    let gateways = match gateways(&pipeline) {
        Ok(g) => g,
        Err(problems) => {
            for p in problems {
                eprintln!("error: {shown}: {p}");
            }
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };

    let mut servers: Vec<TcpServer> = Vec::new();
    let mut out = String::new();
    for (i, gw) in gateways.iter().enumerate() {
        let sim = Simulator::new(SimOptions {
            seed: args.seed.wrapping_add(100 * i as u64),
            unit_ids: gw.devices.iter().map(|d| d.unit_id).collect(),
            clock: Clock::Running { speed: args.speed },
            ..SimOptions::new(gw.model.clone())
        });
        let sim = match sim {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot simulate the heat pumps at {}: {e}", gw.addr);
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        };
        match sim.serve_tcp(gw.addr).await {
            Ok(server) => {
                for d in &gw.devices {
                    let controller = match sim.controller_id(d.unit_id) {
                        Some(391) => "WPM 3i",
                        Some(449) => "WPMsystem",
                        _ => "WPM",
                    };
                    let _ = writeln!(
                        out,
                        "  {:<10} {:<24} simulated {controller} on {} unit {}",
                        &*d.id,
                        d.tags.get("name").map(String::as_str).unwrap_or(""),
                        server.local_addr(),
                        d.unit_id
                    );
                }
                servers.push(server);
            }
            Err(e) => {
                eprintln!(
                    "error: cannot simulate the heat pumps at {}: {e}\n\
                     Is another `hpflow demo` or `hpflow simulate` running? Stop it, or serve the simulated \
                     heat pumps on another port with `--modbus-port PORT`.",
                    gw.addr
                );
                return Ok(ExitCode::from(1));
            }
        }
    }

    let pumps: usize = gateways.iter().map(|g| g.devices.len()).sum();
    let mut banner = format!(
        "hpflow demo: {pumps} simulated heat pump{} ({}x speed), pipeline {}\n{out}",
        if pumps == 1 { "" } else { "s" },
        args.speed,
        shown
    );
    for line in urls(&pipeline) {
        let _ = writeln!(banner, "{line}");
    }
    if let Some(url) = influxdb {
        let _ = writeln!(banner, "  influxdb   {url}");
    }
    banner.push_str("Stop with Ctrl-C.\n");
    // A closed stdout (`hpflow demo | head -3`) must not stop the demo.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(banner.as_bytes()).and_then(|()| stdout.flush());
    drop(stdout);

    let code = super::run::run_checked(path, pipeline, &warnings).await;
    drop(servers);
    Ok(code)
}

/// A fresh temporary folder holding the built-in pipeline as `pipelines/demo.toml`
/// and the built-in register map as `config/registers.yml`, as in the repository,
/// so the pipeline's relative paths resolve inside it (its default `data_dir` too:
/// the demo leaves nothing in the working folder). Returns it with the pipeline's path.
fn builtin_folder() -> std::io::Result<(tempfile::TempDir, PathBuf)> {
    let folder = tempfile::Builder::new().prefix("hpflow-demo-").tempdir()?;
    let pipeline = folder.path().join("pipelines/demo.toml");
    for (path, text) in [
        (pipeline.clone(), BUILTIN_DEMO),
        (folder.path().join("config/registers.yml"), BUILTIN_REGISTERS),
    ] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, text)?;
    }
    Ok((folder, pipeline))
}

/// Points every loopback Modbus TCP device at `port`, in what the check kept for
/// the build; `gateways` then serves the simulated heat pumps there.
fn move_devices(pipeline: &mut CheckedPipeline, port: u16) {
    for i in 0..pipeline.file.sources.len() {
        let node = (Kind::Source, i);
        let Some(kept) = pipeline.prepared::<Inventory>(node) else {
            continue;
        };
        let mut moved = kept.clone();
        for d in &mut moved.devices {
            if let Endpoint::Tcp { host, port: p } = &mut d.endpoint {
                if loopback(host).is_some() {
                    *p = port;
                }
            }
        }
        pipeline.prepared.insert(node, Arc::new(moved));
    }
}

/// Adds an `influxdb` sink after the pipeline's last transform when `INFLUXDB_URL`
/// is set: the v2 API when `INFLUXDB_TOKEN` or `INFLUXDB_BUCKET` is set (HPManager's
/// variables), else v1 into `INFLUXDB_DATABASE` (default `heatpump`).
fn with_influxdb(mut text: String, env: &dyn Fn(&str) -> Option<String>) -> (String, Option<String>) {
    let Some(url) = env("INFLUXDB_URL").filter(|u| !u.is_empty()) else {
        return (text, None);
    };
    let is_set = |n: &str| env(n).is_some_and(|v| !v.is_empty());
    let input = last_transform(&text).unwrap_or_else(|| "states".to_string());
    let api = if is_set("INFLUXDB_TOKEN") || is_set("INFLUXDB_BUCKET") {
        "api = \"v2\"\norg = \"${INFLUXDB_ORG:-heatpump-monitoring}\"\nbucket = \"${INFLUXDB_BUCKET:-heatpump-data}\"\ntoken = \"${INFLUXDB_TOKEN:-}\"\n"
    } else {
        "api = \"v1\"\ndatabase = \"${INFLUXDB_DATABASE:-heatpump}\"\n"
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let _ = write!(
        text,
        "\n# Added by `hpflow demo` because INFLUXDB_URL is set.\n[sinks.influxdb]\ntype = \"influxdb\"\ninputs = [{}]\nendpoint = \"${{INFLUXDB_URL}}\"\n{api}",
        toml_string(&input)
    );
    (text, Some(url))
}

/// The id of the last `[transforms.ID]` table in the text, where the demo's events leave.
fn last_transform(text: &str) -> Option<String> {
    let doc: toml::Table = text.parse().ok()?;
    let transforms = doc.get("transforms")?.as_table()?;
    // toml::Table keeps keys sorted, not in file order: find the one no other transform reads.
    let read: Vec<&str> = transforms
        .values()
        .filter_map(|t| t.get("inputs")?.as_array())
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    let mut ends = transforms.keys().filter(|k| !read.contains(&k.as_str()));
    let first = ends.next()?.clone();
    ends.next().is_none().then_some(first)
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The pipeline's Modbus TCP devices grouped by address; every one must be on
/// loopback, since the demo answers in their place.
fn gateways(pipeline: &CheckedPipeline) -> Result<Vec<Gateway>, Vec<String>> {
    let mut problems = Vec::new();
    let mut by_addr: BTreeMap<SocketAddr, Gateway> = BTreeMap::new();
    for (i, entry) in pipeline.file.sources.iter().enumerate() {
        if let SourceConfig::ModbusRtu(_) = &entry.config {
            problems.push(format!(
                "source `{}`: the demo simulates Modbus TCP devices only (for RTU: `hpflow simulate --pty`)",
                entry.id
            ));
            continue;
        }
        // What the source's check read; the compile pass that kept it passed.
        let Some(Inventory { map, devices, .. }) = pipeline.prepared::<Inventory>((Kind::Source, i)) else {
            problems.push(format!("source `{}`: its devices were not checked", entry.id));
            continue;
        };
        for d in devices.iter().cloned() {
            let Endpoint::Tcp { host, port } = &d.endpoint else {
                continue;
            };
            let Some(ip) = loopback(host) else {
                problems.push(format!(
                    "source `{}`: device `{}` is at {host}, not on this machine; the demo only simulates devices at 127.0.0.1 or localhost",
                    entry.id, d.id
                ));
                continue;
            };
            let Some(model) = map.model(&d.model).cloned() else {
                problems.push(format!("device `{}`: unknown model `{}`", d.id, d.model));
                continue;
            };
            let addr = SocketAddr::new(ip, *port);
            let gw = by_addr.entry(addr).or_insert_with(|| Gateway {
                addr,
                model: model.clone(),
                devices: Vec::new(),
            });
            if gw.model.name() != model.name() {
                problems.push(format!(
                    "devices `{}` and `{}` share {addr} but have different models; the demo serves one model per address",
                    gw.devices[0].id, d.id
                ));
                continue;
            }
            if let Some(other) = gw.devices.iter().find(|o| o.unit_id == d.unit_id) {
                problems.push(format!(
                    "devices `{}` and `{}` are both unit {} at {addr}",
                    other.id, d.id, d.unit_id
                ));
                continue;
            }
            gw.devices.push(d);
        }
    }
    if by_addr.is_empty() && problems.is_empty() {
        problems.push("the pipeline has no enabled Modbus TCP device to simulate".into());
    }
    if problems.is_empty() {
        Ok(by_addr.into_values().collect())
    } else {
        Err(problems)
    }
}

/// The address to serve a loopback host name on.
fn loopback(host: &str) -> Option<IpAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let ip: IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    ip.is_loopback().then_some(ip)
}

/// "  dashboard  http://127.0.0.1:8080/" lines for the pipeline's HTTP sinks.
fn urls(pipeline: &CheckedPipeline) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in &pipeline.file.sinks {
        let (label, address, suffix) = match &entry.config {
            SinkConfig::Dashboard(c) => ("dashboard", c.address.as_str(), "/"),
            SinkConfig::Prometheus(c) => ("metrics", c.address.as_str(), "/metrics"),
            _ => continue,
        };
        lines.push(format!("  {label:<10} {}", http_url(address, suffix)));
    }
    lines
}

/// A URL a browser on this machine can open for a listen address (0.0.0.0 → 127.0.0.1).
fn http_url(address: &str, suffix: &str) -> String {
    match address.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let host = if a.is_ipv4() { "127.0.0.1" } else { "[::1]" };
            format!("http://{host}:{}{suffix}", a.port())
        }
        Ok(a) => format!("http://{a}{suffix}"),
        Err(_) => format!("http://{address}{suffix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
    }

    const DEMO: &str = "[sources.s]\ntype = \"modbus_tcp\"\n[transforms.b]\ntype = \"state_diff\"\ninputs = [\"a\"]\n[transforms.a]\ntype = \"scale\"\ninputs = [\"s\"]\n";

    #[test]
    fn no_influxdb_url_leaves_the_pipeline_alone() {
        let (text, url) = with_influxdb(DEMO.into(), &env(&[]));
        assert_eq!(text, DEMO);
        assert_eq!(url, None);
        let (text, url) = with_influxdb(DEMO.into(), &env(&[("INFLUXDB_URL", "")]));
        assert_eq!(text, DEMO);
        assert_eq!(url, None);
    }

    #[test]
    fn influxdb_sink_reads_the_last_transform_with_the_api_the_variables_ask_for() {
        let (text, url) = with_influxdb(DEMO.into(), &env(&[("INFLUXDB_URL", "http://127.0.0.1:8086")]));
        assert_eq!(url.as_deref(), Some("http://127.0.0.1:8086"));
        let doc: toml::Table = text.parse().expect("still TOML");
        let sink = &doc["sinks"]["influxdb"];
        assert_eq!(sink["inputs"].as_array().unwrap()[0].as_str(), Some("b"));
        assert_eq!(sink["api"].as_str(), Some("v1"));
        assert_eq!(sink["endpoint"].as_str(), Some("${INFLUXDB_URL}"));

        let (text, _) = with_influxdb(
            DEMO.into(),
            &env(&[("INFLUXDB_URL", "http://x:8086"), ("INFLUXDB_TOKEN", "t")]),
        );
        let doc: toml::Table = text.parse().unwrap();
        assert_eq!(doc["sinks"]["influxdb"]["api"].as_str(), Some("v2"));
        assert_eq!(
            doc["sinks"]["influxdb"]["bucket"].as_str(),
            Some("${INFLUXDB_BUCKET:-heatpump-data}")
        );
    }

    #[test]
    fn the_built_in_demo_checks_in_its_own_folder_and_its_pumps_move_with_the_modbus_port() {
        let (folder, path) = builtin_folder().expect("a temporary folder");
        let (file, diags) = load_str(&path, BUILTIN_DEMO, &|_| None).expect("the built-in demo parses");
        let (mut pipeline, _) = compile(file, diags).expect("the built-in demo checks with the built-in map");
        assert!(
            pipeline.file.data_dir.starts_with(folder.path()),
            "its default data_dir is in its own folder: {}",
            pipeline.file.data_dir.display()
        );
        move_devices(&mut pipeline, 15020);
        let gateways = gateways(&pipeline).expect("both pumps are simulated");
        assert_eq!(gateways.len(), 1);
        assert_eq!(gateways[0].addr, SocketAddr::from(([127, 0, 0, 1], 15020)));
        assert_eq!(gateways[0].devices.len(), 2);
        drop(folder);
        assert!(!path.exists(), "the folder goes with the demo");
    }

    #[test]
    fn only_loopback_hosts_are_simulated() {
        assert_eq!(loopback("localhost"), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(loopback("127.0.0.2").is_some());
        assert!(loopback("::1").is_some());
        assert_eq!(loopback("192.0.2.10"), None);
        assert_eq!(loopback("isg.local"), None);
    }

    #[test]
    fn urls_for_unspecified_addresses_point_at_loopback() {
        assert_eq!(http_url("0.0.0.0:8080", "/"), "http://127.0.0.1:8080/");
        assert_eq!(http_url("127.0.0.1:9464", "/metrics"), "http://127.0.0.1:9464/metrics");
        assert_eq!(http_url("[::]:9464", "/metrics"), "http://[::1]:9464/metrics");
    }
}
