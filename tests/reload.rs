//! `hpflow run` reloads its configuration while it runs: the real binary, a
//! simulated gateway with three heat pumps, and the device inventory edited
//! under it. Each step is checked on the Prometheus endpoint, with the device
//! that was never touched as the witness that nothing else moved.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::process::{hpflow, signal, simulator_with, terminate, wait_for, Killed};
use support::{free_port, http_get, shipped_registers};

const INTERVAL: Duration = Duration::from_millis(200);
const WAIT: Duration = Duration::from_secs(10);

fn pump(id: &str, name: &str, port: u16, unit: u8, enabled: bool) -> String {
    format!(
        "- id: {id}\n  name: {name}\n  model: stiebel_eltron_wpm\n  enabled: {enabled}\n  modbus:\n    \
         host: 127.0.0.1\n    port: {port}\n    unit_id: {unit}\n"
    )
}

/// The Modbus source both tests run, polling `heatpumps.yml` every 200 ms.
fn source() -> String {
    format!(
        "data_dir = \"data\"\n[sources.pumps]\ntype = \"modbus_tcp\"\nregisters = \"{}\"\n\
         devices = \"heatpumps.yml\"\ninterval = \"200ms\"\ntimeout = \"1s\"\n",
        shipped_registers().display()
    )
}

fn write_inventory(dir: &Path, pumps: &[String]) {
    // Written beside and renamed over, as editors save.
    let tmp = dir.join(".heatpumps.yml.tmp");
    std::fs::write(&tmp, format!("heatpumps:\n{}", pumps.concat())).unwrap();
    std::fs::rename(&tmp, dir.join("heatpumps.yml")).unwrap();
}

/// The value of one sample of the scrape, if it is there.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn polls(metrics: &str, device: &str) -> Option<f64> {
    sample(
        metrics,
        &format!("hpflow_modbus_polls_total{{component_id=\"pumps\",device=\"{device}\"}}"),
    )
}

fn reloads(metrics: &str, result: &str) -> f64 {
    sample(metrics, &format!("hpflow_config_reloads_total{{result=\"{result}\"}}")).unwrap_or(-1.0)
}

struct Running {
    child: Killed,
    port: u16,
    started: Instant,
    /// hp1's poll count at the last look: it must only grow.
    hp1: f64,
}

impl Running {
    /// `hpflow run PIPELINE`, logging at info into `log`, scraped on `port`.
    fn start(pipeline: &Path, log: &Path, port: u16) -> Running {
        Running::start_with(pipeline, log, port, &[])
    }

    /// As `start`, with more environment.
    fn start_with(pipeline: &Path, log: &Path, port: u16, env: &[(&str, &str)]) -> Running {
        let child = hpflow()
            .arg("run")
            .arg(pipeline)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Running {
            child: Killed(child),
            port,
            started: Instant::now(),
            hp1: 0.0,
        }
    }

    fn metrics(&self) -> String {
        http_get(self.port, "/metrics").unwrap_or_default()
    }

    /// Waits until the scrape satisfies `f`, and checks the witness: hp1,
    /// never edited, polled on, its count never reset.
    fn until(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        let mut last = self.metrics();
        while !f(&last) {
            let wanted: Vec<&str> = last
                .lines()
                .filter(|l| l.starts_with("hpflow_config") || l.starts_with("hpflow_modbus_polls_total"))
                .take(12)
                .collect();
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for {what}; the scrape had:\n{}",
                wanted.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
            last = self.metrics();
        }
        let hp1 = polls(&last, "hp1").expect("hp1 is polled all along");
        assert!(hp1 >= self.hp1, "hp1's polls went from {} to {hp1}: reset", self.hp1);
        self.hp1 = hp1;
        last
    }
}

#[test]
fn the_device_inventory_is_reloaded_under_a_running_pipeline() {
    let (_sim, gateway) = simulator_with(&["--devices", "3"]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let dashboard = free_port();
    write_inventory(dir.path(), &[pump("hp1", "One", gateway, 1, true)]);
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"{source}

[transforms.scaled]
type = "scale"
inputs = ["pumps"]

[sinks.metrics]
type = "prometheus"
inputs = ["scaled"]
address = "127.0.0.1:{port}"

[sinks.dashboard]
type = "dashboard"
inputs = ["scaled"]
address = "127.0.0.1:{dashboard}"
"#,
            source = source(),
        ),
    )
    .unwrap();
    let log = dir.path().join("hpflow.log");
    let mut run = Running::start(&pipeline, &log, port);
    run.until("hp1 polled", |m| polls(m, "hp1").is_some_and(|p| p >= 3.0));

    // Reading the files changes nothing: no reload, however often they are
    // opened (the reload itself opens them all: a loop once, see FileWatch).
    let before = run.metrics();
    for _ in 0..20 {
        for file in [dir.path().join("heatpumps.yml"), pipeline.clone()] {
            std::fs::read(&file).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1000));
    let after = run.until("polls after the reads", |m| polls(m, "hp1").is_some());
    for result in ["applied", "refused"] {
        assert_eq!(
            reloads(&after, result),
            reloads(&before, result),
            "opening the files made a reload ({result})"
        );
    }

    // Add: hp2 behind the same gateway is polled; hp1 goes on.
    write_inventory(
        dir.path(),
        &[
            pump("hp1", "One", gateway, 1, true),
            pump("hp2", "Two", gateway, 2, true),
        ],
    );
    run.until("hp2 added", |m| polls(m, "hp2").is_some_and(|p| p >= 2.0));

    // Edit: hp2 renamed; its series carry the new name.
    write_inventory(
        dir.path(),
        &[
            pump("hp1", "One", gateway, 1, true),
            pump("hp2", "Garage", gateway, 2, true),
        ],
    );
    run.until("hp2 renamed", |m| {
        m.contains("heat_pump_id=\"hp2\",model=\"stiebel_eltron_wpm\",name=\"Garage\"")
    });

    // Disable: hp2 is no longer polled and its health leaves the scrape.
    write_inventory(
        dir.path(),
        &[
            pump("hp1", "One", gateway, 1, true),
            pump("hp2", "Garage", gateway, 2, false),
        ],
    );
    run.until("hp2 disabled", |m| polls(m, "hp2").is_none());

    // A typo: the reload is refused, said where, and everything runs on.
    std::fs::write(
        dir.path().join("heatpumps.yml"),
        "heatpumps:\n- id: hp1\n  modbus: [unclosed\n",
    )
    .unwrap();
    let before = run.hp1;
    let m = run.until("the typo refused", |m| reloads(m, "refused") >= 1.0);
    assert_eq!(sample(&m, "hpflow_config_last_reload_successful"), Some(0.0), "{m}");
    run.until("hp1 polled on after the refusal", |m| {
        polls(m, "hp1").is_some_and(|p| p >= before + 3.0)
    });
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("Configuration reload refused"), "{said}");
    assert!(
        said.contains("heatpumps.yml:"),
        "the error names its file and line:\n{said}"
    );
    let page = http_get(dashboard, "/").unwrap_or_default();
    assert!(
        page.contains("Configuration reload refused") && page.contains("heatpumps.yml:"),
        "the dashboard shows the refusal and where:\n{page}"
    );

    // Fixed, with hp3 in hp2's place: applied, hp3 polled.
    write_inventory(
        dir.path(),
        &[
            pump("hp1", "One", gateway, 1, true),
            pump("hp3", "Three", gateway, 3, true),
        ],
    );
    let m = run.until("hp3 added after the fix", |m| polls(m, "hp3").is_some_and(|p| p >= 2.0));
    let page = http_get(dashboard, "/").unwrap_or_default();
    assert!(!page.contains("Configuration reload refused"), "{page}");
    assert_eq!(sample(&m, "hpflow_config_last_reload_successful"), Some(1.0), "{m}");
    assert_eq!(sample(&m, "hpflow_config_restart_required"), Some(0.0), "{m}");

    // Remove hp3; then SIGHUP with nothing changed reloads and changes nothing.
    write_inventory(dir.path(), &[pump("hp1", "One", gateway, 1, true)]);
    run.until("hp3 removed", |m| polls(m, "hp3").is_none());
    let applied = reloads(&run.metrics(), "applied");
    signal(&run.child.0, "HUP");
    run.until("SIGHUP reloaded", |m| reloads(m, "applied") >= applied + 1.0);

    // hp1 was polled on its own schedule throughout: no poll lost to a reload
    // and none added (one poll per interval since the start, give or take the
    // first connection).
    let elapsed = run.started.elapsed();
    let expected = elapsed.as_secs_f64() / INTERVAL.as_secs_f64();
    let hp1 = polls(&run.metrics(), "hp1").unwrap();
    eprintln!("hp1: {hp1} polls in {elapsed:?} at {INTERVAL:?}");
    assert!(
        hp1 <= expected + 1.0,
        "{hp1} polls: more than one per interval ({expected:.1})"
    );
    assert!(
        hp1 >= expected - 5.0,
        "{hp1} polls: a gap (expected about {expected:.1})"
    );

    let status = terminate(&mut run.child.0, Duration::from_secs(10));
    assert!(status.success(), "hpflow exits cleanly after the reloads: {status:?}");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("Device inventory reloaded"), "{said}");
}

/// One HTTP/1.1 request over a plain socket (`head`: the request line and
/// headers but `Host`, `Content-Length` and `Connection`); the whole reply.
fn request(port: u16, head: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{head}\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

fn status(reply: &str) -> u16 {
    reply.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// `POST` with the admin token; the status code.
fn post_json(port: u16, path: &str, token: &str, body: &str) -> u16 {
    let head = format!("POST {path} HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json");
    status(&request(port, &head, body))
}

/// Logs in through the login form and posts `body` to the form at `path`
/// from the dashboard's own page, as a browser does; the status code.
fn post_form_logged_in(port: u16, path: &str, token: &str, body: &str) -> u16 {
    let form = |path: &str, extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nOrigin: http://127.0.0.1:{port}\r\n\
             Content-Type: application/x-www-form-urlencoded{extra}"
        )
    };
    let reply = request(port, &form("/login", ""), &format!("token={token}"));
    assert_eq!(status(&reply), 303, "{reply}");
    let cookie = (reply.lines())
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie:")
                .then(|| l[11..].trim())
        })
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    status(&request(port, &form(path, &format!("\r\nCookie: {cookie}")), body))
}

/// `hpflow run` polling hp1, with a dashboard managing the inventory; `add`
/// adds hp2 through the dashboard (its port, the gateway's, the admin
/// token), which must then be polled and get its card on the overview.
fn a_pump_added_through_the_dashboard_is_polled(add: impl FnOnce(u16, u16, &str)) {
    let (_sim, gateway) = simulator_with(&["--devices", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let (metrics, dashboard) = (free_port(), free_port());
    write_inventory(dir.path(), &[pump("hp1", "One", gateway, 1, true)]);
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"{source}

[sinks.metrics]
type = "prometheus"
inputs = ["pumps"]
address = "127.0.0.1:{metrics}"

[sinks.dashboard]
type = "dashboard"
inputs = ["pumps"]
address = "127.0.0.1:{dashboard}"
inventory = "heatpumps.yml"
registers = "{map}"
"#,
            source = source(),
            map = shipped_registers().display()
        ),
    )
    .unwrap();
    let token = "end-to-end-admin-token-0123";
    let log = dir.path().join("hpflow.log");
    let mut run = Running::start_with(&pipeline, &log, metrics, &[("HPFLOW_ADMIN_TOKEN", token)]);
    run.until("hp1 polled", |m| polls(m, "hp1").is_some_and(|p| p >= 3.0));
    add(dashboard, gateway, token);
    run.until("hp2 added through the dashboard", |m| {
        polls(m, "hp2").is_some_and(|p| p >= 2.0)
    });
    let start = Instant::now();
    while !http_get(dashboard, "/").is_some_and(|page| page.contains("id=\"pump-hp2\"")) {
        assert!(start.elapsed() < WAIT, "hp2's card did not appear on the overview");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = terminate(&mut run.child.0, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

/// The pipeline itself edited: inline devices are taken live; a sink with
/// other keys (a namespace, a listen address) is rebuilt in place; a new
/// component waits for a restart, and the scrape says so.
#[test]
fn inline_devices_change_live_a_changed_sink_is_rebuilt_and_a_new_graph_waits() {
    let (_sim, gateway) = simulator_with(&["--devices", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let (metrics, moved) = (free_port(), free_port());
    let pipeline = dir.path().join("pipeline.toml");
    let write = |units: &[u8], namespace: &str, port: u16, extra: &str| {
        let devices: String = units
            .iter()
            .map(|u| {
                format!(
                    "[[sources.pumps.devices]]\nid = \"hp{u}\"\nmodel = \"stiebel_eltron_wpm\"\n\
                     host = \"127.0.0.1\"\nport = {gateway}\nunit_id = {u}\n"
                )
            })
            .collect();
        let text = format!(
            "data_dir = \"data\"\n[sources.pumps]\ntype = \"modbus_tcp\"\nregisters = \"{map}\"\n\
             interval = \"200ms\"\ntimeout = \"1s\"\n{devices}\n[sinks.metrics]\ntype = \"prometheus\"\n\
             inputs = [\"pumps\"]\naddress = \"127.0.0.1:{port}\"\nnamespace = \"{namespace}\"\n{extra}",
            map = shipped_registers().display()
        );
        let tmp = dir.path().join(".pipeline.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &pipeline).unwrap();
    };
    write(&[1], "heatpump", metrics, "");
    let log = dir.path().join("hpflow.log");
    let mut run = Running::start(&pipeline, &log, metrics);
    run.until("hp1 polled", |m| polls(m, "hp1").is_some_and(|p| p >= 3.0));

    write(&[1, 2], "heatpump", metrics, "");
    let m = run.until("hp2 added inline", |m| polls(m, "hp2").is_some_and(|p| p >= 2.0));
    assert_eq!(sample(&m, "hpflow_config_restart_required"), Some(0.0), "{m}");

    // Another namespace: the sink is rebuilt in place and scrapes say so.
    write(&[1, 2], "other", metrics, "");
    run.until("the sink rebuilt with its namespace", |m| m.contains("other_up{"));

    // Another listen address: rebound; the old one is let go.
    write(&[1, 2], "other", moved, "");
    run.port = moved;
    let m = run.until("the sink answering on its new address", |m| m.contains("other_up{"));
    assert_eq!(sample(&m, "hpflow_config_restart_required"), Some(0.0), "{m}");
    assert!(http_get(metrics, "/metrics").is_none(), "the old address is let go");

    // A new sink is a new graph: it waits for the restart.
    write(
        &[1, 2],
        "other",
        moved,
        "[sinks.out]\ntype = \"console\"\ninputs = [\"pumps\"]\n",
    );
    run.until("the new sink noted as waiting", |m| {
        sample(m, "hpflow_config_restart_required") == Some(1.0)
    });
    let status = terminate(&mut run.child.0, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_heat_pump_added_through_the_dashboard_api_is_polled() {
    a_pump_added_through_the_dashboard_is_polled(|dashboard, gateway, token| {
        let body = format!(
            r#"{{"id": "hp2", "name": "Two", "model": "stiebel_eltron_wpm",
            "modbus": {{"host": "127.0.0.1", "port": {gateway}, "unit_id": 2}}}}"#
        );
        assert_eq!(post_json(dashboard, "/api/heatpumps", token, &body), 201);
    });
}

#[test]
fn a_heat_pump_added_through_the_dashboard_form_is_polled() {
    a_pump_added_through_the_dashboard_is_polled(|dashboard, gateway, token| {
        let body = format!(
            "id=hp2&name=Two&location=&model=stiebel_eltron_wpm&host=127.0.0.1&port={gateway}&unit_id=2&enabled=on"
        );
        assert_eq!(post_form_logged_in(dashboard, "/heatpumps", token, &body), 303);
    });
}

/// What must survive a rebuild does: the InfluxDB buffer's points (the
/// database is down, so they only pile up) and state_diff's states; a changed
/// register map re-plans the pump of that model, which polls on; a changed
/// display file rebuilds the dashboard that reads it.
#[test]
fn a_rebuilt_sink_and_transform_keep_their_buffer_and_states_and_a_changed_map_is_replanned() {
    let (_sim, gateway) = simulator_with(&["--devices", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let (metrics, nobody, dashboard) = (free_port(), free_port(), free_port());
    let display = |seconds: u32| {
        std::fs::write(dir.path().join("display.yml"), format!("refresh_interval: {seconds}\n")).unwrap()
    };
    display(30);
    let map = dir.path().join("registers.yml");
    let shipped = std::fs::read_to_string(shipped_registers()).unwrap();
    std::fs::write(&map, &shipped).unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    let write = |request_timeout: &str, heartbeat: &str| {
        let text = format!(
            r#"data_dir = "data"
[sources.pumps]
type = "modbus_tcp"
registers = "registers.yml"
interval = "200ms"
timeout = "1s"
[[sources.pumps.devices]]
id = "hp1"
model = "stiebel_eltron_wpm"
host = "127.0.0.1"
port = {gateway}
unit_id = 1

[transforms.scaled]
type = "scale"
inputs = ["pumps"]

[transforms.states]
type = "state_diff"
inputs = ["scaled"]
persist_interval = "1s"
heartbeat = "{heartbeat}"

[sinks.metrics]
type = "prometheus"
inputs = ["states"]
address = "127.0.0.1:{metrics}"

[sinks.influx]
type = "influxdb"
inputs = ["states"]
endpoint = "http://127.0.0.1:{nobody}"
database = "hp"
request_timeout = "{request_timeout}"

[sinks.dashboard]
type = "dashboard"
inputs = ["states"]
address = "127.0.0.1:{dashboard}"
display = "display.yml"
"#
        );
        let tmp = dir.path().join(".pipeline.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &pipeline).unwrap();
    };
    write("5s", "15m");
    // A first run leaves hp1's states in state_diff's file; they get a known
    // since (as after a flip long ago), so a reset would show.
    let state_file = dir.path().join("data/state_diff/states.json");
    let mut first = Killed(
        hpflow()
            .arg("run")
            .arg(&pipeline)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("hp1's states on disk", WAIT, || {
        std::fs::read_to_string(&state_file).is_ok_and(|s| since(&s, "operating_mode").is_some())
    });
    assert!(terminate(&mut first.0, Duration::from_secs(10)).success());
    let mut states: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    for (_, st) in states["devices"]["hp1"]["states"].as_object_mut().unwrap() {
        st["since"] = serde_json::Value::String(LONG_AGO.to_string());
    }
    std::fs::write(&state_file, states.to_string()).unwrap();

    let log = dir.path().join("hpflow.log");
    let mut run = Running::start(&pipeline, &log, metrics);
    let buffered = |m: &str| sample(m, "hpflow_influxdb_buffer_points{component_id=\"influx\"}").unwrap_or(0.0);
    // The first run's points are in the buffer from the start: wait for this
    // run's own polls as well.
    let m = run.until("points piling up in the buffer", |m| {
        buffered(m) >= 5.0 && polls(m, "hp1").is_some()
    });
    let before = buffered(&m);

    // The sink rebuilt: its buffer is reopened with every point it held.
    let applied = reloads(&run.metrics(), "applied");
    write("6s", "15m");
    run.until("the reload applied", |m| reloads(m, "applied") > applied);
    wait_for("the sink rebuilt", WAIT, || {
        std::fs::read_to_string(&log).is_ok_and(|said| {
            said.lines()
                .any(|l| l.contains("Component rebuilt") && l.contains("sinks.influx"))
        })
    });
    let m = run.metrics();
    assert!(
        buffered(&m) >= before,
        "the buffer held {before} points, then {}",
        buffered(&m)
    );
    run.until("points piling up again", |m| buffered(m) >= before + 5.0);

    // state_diff rebuilt: it reads its states back from its file.
    let applied = reloads(&run.metrics(), "applied");
    write("6s", "30m");
    run.until("the reload applied", |m| reloads(m, "applied") > applied);
    wait_for("state_diff rebuilt", WAIT, || {
        std::fs::read_to_string(&log).is_ok_and(|said| {
            said.lines()
                .any(|l| l.contains("Component rebuilt") && l.contains("transforms.states"))
        })
    });
    let polled = run.hp1;
    run.until("polled on after the rebuild", |m| {
        polls(m, "hp1").is_some_and(|p| p >= polled + 3.0)
    });
    // Saved again by the new instance (every second): the since it read back.
    std::thread::sleep(Duration::from_millis(1500));
    let states_after = std::fs::read_to_string(&state_file).unwrap();
    assert_eq!(
        since(&states_after, "operating_mode").as_deref(),
        Some(LONG_AGO),
        "operating_mode's since carried over the rebuild:\n{states_after}"
    );

    // A changed register map: the pump of that model is planned anew and polls on.
    let described = shipped.replacen(
        "description: \"outdoor temperature (manual 507, type 2)\"",
        "description: \"outdoor temperature, renamed by a reload\"",
        1,
    );
    assert_ne!(
        described, shipped,
        "the shipped map describes outside_temperature as expected"
    );
    std::fs::write(&map, described).unwrap();
    wait_for("the pump re-planned", WAIT, || {
        std::fs::read_to_string(&log).is_ok_and(|said| said.contains("Device inventory reloaded"))
    });
    let polled = run.hp1;
    run.until("hp1 polled on its new plan", |m| {
        polls(m, "hp1").is_some_and(|p| p >= polled + 3.0)
    });
    // The dashboard's display file: the dashboard is rebuilt and shows it.
    let refresh = |s: u32| format!("data-refresh=\"{s}\"");
    assert!(http_get(dashboard, "/").unwrap_or_default().contains(&refresh(30)));
    display(45);
    wait_for("the dashboard rebuilt with the new display file", WAIT, || {
        http_get(dashboard, "/").is_some_and(|page| page.contains(&refresh(45)))
    });
    let status = terminate(&mut run.child.0, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("Component rebuilt"), "{said}");
}

/// A since no restart or rebuild could make up.
const LONG_AGO: &str = "2025-01-01T00:00:00Z";

/// The `since` of a state of hp1 in a state_diff file (`Some("")` while unknown).
fn since(states: &str, state: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(states).ok()?;
    let st = json["devices"]["hp1"]["states"].get(state)?;
    Some(st["since"].as_str().unwrap_or_default().to_string())
}
