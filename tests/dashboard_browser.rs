//! The dashboard in a real headless Chromium, fed by a real pipeline: the
//! built-in simulator serves two Stiebel Eltron WPMs over Modbus TCP, a
//! `modbus_tcp` source polls them, `scale` and `state_diff` process the polls,
//! and the `dashboard` sink serves the pages. The browser is driven over the
//! DevTools protocol (`support::chromium`: a small WebSocket client, no extra crates).
//!
//! Checks: the overview shows what `hpflow read --json` reads from the same
//! simulator; no request leaves the served origin; no console error, uncaught
//! exception or CSP violation; the page updates itself; a setting changed
//! through the login and settings forms is saved and reaches the running
//! source. Screenshots go to `target/dashboard-*.png` for review.
//!
//! Needs the Debian package `chromium` (or `$CHROMIUM`); fails, never skips,
//! without it.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hpflow::commands::read;
use hpflow::component::Kind;
use hpflow::registers::RegisterMap;
use hpflow::sim::{Clock, SimOptions, Simulator};
use hpflow::sinks::dashboard::{Dashboard, DashboardConfig};
use hpflow::telemetry::{Day, Registry};
use serde_json::{json, Value as Json};
use support::chromium::Browser;
use support::dashboard::fixture;
use support::modbus::read_args;
use support::{shipped_registers, SCALED_STATES};

const TOKEN: &str = "browser-test-token-6f1c2a9e";
/// True when the page needs no sideways scrolling.
const FITS: &str = "document.documentElement.scrollWidth <= window.innerWidth";
const NAME: &str = "<img src=x onerror=\"window.pwned=1\"> Cellar";

fn pipeline_text(port: u16) -> String {
    let device = |u: u8, name: &str, location: &str| {
        format!(
            "[[sources.heatpumps.devices]]\nid = \"hp{u}\"\nname = {name:?}\nlocation = {location:?}\n\
             model = \"stiebel_eltron_wpm\"\nhost = \"127.0.0.1\"\nport = {port}\nunit_id = {u}\n"
        )
    };
    format!(
        r#"data_dir = "state"

[sources.heatpumps]
type = "modbus_tcp"
registers = {registers:?}
interval = "2s"
timeout = "1s"

{hp1}
{hp2}
{SCALED_STATES}
[sinks.dashboard]
type = "dashboard"
inputs = ["states"]
address = "127.0.0.1:0"
title = "Heat pumps"
admin_token_file = "token.txt"
"#,
        registers = shipped_registers().display().to_string(),
        hp1 = device(1, NAME, "Basement"),
        hp2 = device(2, "Garage pump", "Garage"),
    )
}

/// A tile's text matches a value `hpflow read --json` printed: numbers to the
/// decimals shown, labels and on/off exactly.
fn same_value(shown: &str, read: Option<&Json>) -> bool {
    match read {
        None => shown == "–",
        Some(Json::Number(n)) => {
            let Ok(x) = shown.parse::<f64>() else { return false };
            let decimals = shown.split_once('.').map_or(0, |(_, d)| d.len()) as i32;
            (x - n.as_f64().unwrap()).abs() <= 0.5 * 10f64.powi(-decimals) + 1e-9
        }
        Some(Json::Bool(b)) => shown == if *b { "on" } else { "off" },
        Some(Json::String(s)) => shown == s,
        Some(other) => panic!("unexpected value {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium_shows_what_read_reads_stays_on_its_origin_and_saves_settings() {
    let started = Instant::now();
    let browser = Browser::launch();

    // Two pumps behind one simulated ISG, frozen on a winter morning so values hold still.
    let map = RegisterMap::load(shipped_registers()).expect("the shipped map loads");
    let model = map.model("stiebel_eltron_wpm").unwrap().clone();
    let sim = Simulator::new(SimOptions {
        seed: 3,
        unit_ids: vec![1, 2],
        clock: Clock::Frozen(SystemTime::UNIX_EPOCH + Duration::from_secs(1_768_461_000)),
        ..SimOptions::new(model)
    })
    .unwrap();
    let sim_server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let sim_port = sim_server.local_addr().port();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token.txt"), format!("{TOKEN}\n")).unwrap();
    let settings_path = dir.path().join("state/dashboard/dashboard/settings.toml");
    std::fs::create_dir_all(settings_path.parent().unwrap()).unwrap();
    std::fs::write(
        &settings_path,
        "# written by the test\nrefresh_interval_seconds = 5 # fast, for the test\n",
    )
    .unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    let text = pipeline_text(sim_port);
    std::fs::write(&pipeline, &text).unwrap();

    let (checked, _) = hpflow::config::load_pipeline(&pipeline).unwrap_or_else(|d| panic!("valid pipeline:\n{d}"));
    let mut pieces = hpflow::topology::build(&checked, Arc::new(Registry::default())).expect("the pipeline builds");
    // The same dashboard, bound on a port we can learn.
    let table: toml::Table = toml::from_str(&text).unwrap();
    let mut section = table["sinks"]["dashboard"].as_table().unwrap().clone();
    section.remove("type");
    section.remove("inputs");
    let config: DashboardConfig = toml::Value::Table(section).try_into().unwrap();
    let control = pieces.control().clone();
    let sink = checked.file.sinks.iter().position(|s| s.id == "dashboard").unwrap();
    let schemas = checked
        .input_schemas
        .get(&(Kind::Sink, sink))
        .cloned()
        .unwrap_or_default();
    let app = config
        .app(
            "dashboard",
            dir.path(),
            &dir.path().join("state"),
            &schemas,
            &control,
            None,
            None,
        )
        .expect("the dashboard builds");
    let dashboard = Dashboard::bind(
        "dashboard",
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(app),
        Duration::from_secs(600),
    )
    .expect("binds");
    let origin = format!("http://{}", dashboard.local_addr().unwrap());
    assert!(pieces.replace_sink("dashboard", Box::new(dashboard)));
    let running = pieces.start();

    // Wait until both pumps have delivered a complete poll.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pumps: Json = http
            .get(format!("{origin}/api/pumps"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ready = pumps["pumps"].as_array().is_some_and(|p| {
            p.len() == 2
                && p.iter()
                    .all(|p| p["online"] == true && p["values"].as_object().unwrap().len() > 100)
        });
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "the pumps did not show up: {pumps}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let truth: Vec<serde_json::Map<String, Json>> = vec![
        read::json(&read_args(sim_port, 1, Some(shipped_registers()), "hp1"))
            .await
            .expect("read --json of unit 1"),
        read::json(&read_args(sim_port, 2, Some(shipped_registers()), "hp2"))
            .await
            .expect("read --json of unit 2"),
    ];

    // Everything the server sends is checked for addresses elsewhere.
    for path in [
        "/",
        "/pump/hp1",
        "/pump/hp1/efficiency",
        "/settings",
        "/login",
        "/static/style.css",
        "/static/app.js",
        "/static/icon.svg",
    ] {
        let body = http
            .get(format!("{origin}{path}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let foreign: Vec<&str> = body
            .match_indices("http")
            .map(|(i, _)| &body[i..(i + 40).min(body.len())])
            .filter(|s| s.starts_with("http://") || s.starts_with("https://"))
            .filter(|s| !s.starts_with("http://www.w3.org/2000/svg"))
            .collect();
        assert!(foreign.is_empty(), "{path} names other origins: {foreign:?}");
    }

    let origin2 = origin.clone();
    let result = tokio::task::spawn_blocking(move || {
        let origin = origin2;
        let mut cdp = browser.page();
        cdp.navigate(&format!("{origin}/"));

        // The overview against `read --json`, field by field.
        for (i, t) in truth.iter().enumerate() {
            let id = format!("hp{}", i + 1);
            let tiles = cdp.eval(&format!(
                "Array.from(document.querySelectorAll('#pump-{id} .tile')).map(t => \
                 [t.dataset.field, t.querySelector('.value').firstChild.textContent.trim()])"
            ));
            let tiles = tiles.as_array().unwrap();
            assert!(tiles.len() >= 10, "{id} has its tiles: {tiles:?}");
            for tile in tiles {
                let (field, shown) = (tile[0].as_str().unwrap(), tile[1].as_str().unwrap());
                if field == "operating_status" {
                    continue; // a bitmap word, shown as its bits: checked as status rows below
                }
                assert!(same_value(shown, t.get(field)), "{id} {field}: page {shown:?}, read --json {:?}", t.get(field));
            }
            let states = cdp.eval(&format!(
                "Array.from(document.querySelectorAll('#pump-{id} .states li')).map(l => \
                 [l.dataset.field, l.querySelector('b').textContent])"
            ));
            let states = states.as_array().unwrap();
            assert!(states.len() >= 8, "{id} status rows: {states:?}");
            for s in states {
                let (field, shown) = (s[0].as_str().unwrap(), s[1].as_str().unwrap());
                assert!(same_value(shown, t.get(field)), "{id} {field}: page {shown:?}, read --json {:?}", t.get(field));
            }
            let mode = cdp.eval(&format!("document.querySelector('#pump-{id} .mode').textContent"));
            assert_eq!(mode, t["operating_mode"], "{id} operating mode");
        }
        // The hostile name is text, not markup.
        let h2 = cdp.eval("[document.querySelector('#pump-hp1 h2').textContent, document.querySelectorAll('h2 img').length, window.pwned === undefined]");
        assert_eq!(h2, json!([NAME, 0, true]));
        cdp.screenshot("dashboard-overview.png");

        // Live update: the script fetches the page's main part and swaps it in.
        let before = cdp.eval("document.querySelector('.updated time').textContent");
        let mark = cdp.events.len();
        cdp.wait_for(mark, "a live update", Duration::from_secs(12), |e| {
            e["method"] == "Network.responseReceived"
                && e["params"]["response"]["url"].as_str().is_some_and(|u| u.contains("partial=1"))
                && e["params"]["response"]["status"] == 200
        });
        std::thread::sleep(Duration::from_millis(300));
        let after = cdp.eval("document.querySelector('.updated time').textContent");
        assert_ne!(before, after, "the page updated itself");
        assert_eq!(cdp.eval("document.querySelectorAll('.card').length"), json!(2));

        cdp.call(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] }),
        );
        cdp.screenshot("dashboard-overview-dark.png");
        cdp.call("Emulation.setEmulatedMedia", json!({ "features": [] }));
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true }),
        );
        cdp.navigate(&format!("{origin}/"));
        assert_eq!(cdp.eval(FITS), json!(true), "no sideways scrolling on a phone");
        cdp.screenshot("dashboard-phone.png");
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
        );
        cdp.navigate(&format!("{origin}/pump/hp2?window=15"));
        assert!(cdp.eval("document.querySelectorAll('svg.big path').length").as_u64().unwrap() >= 5);
        assert_eq!(cdp.eval(FITS), json!(true), "the pump page fits the window");
        cdp.screenshot("dashboard-pump.png");

        // Log in and change the poll interval through the forms.
        cdp.navigate(&format!("{origin}/login"));
        cdp.submit(&format!(
            "document.querySelector('#token').value = '{TOKEN}'; document.querySelector('form.login').submit()"
        ));
        let url = cdp.eval("location.pathname");
        assert_eq!(url, json!("/settings"), "logged in and sent to the settings");
        cdp.submit("document.querySelector('#poll').value = '30'; document.querySelector('form.settings').submit()");
        let notice = cdp.eval("document.querySelector('.notice') && document.querySelector('.notice').textContent");
        assert_eq!(notice, json!("Saved (version 1)."));
        cdp.screenshot("dashboard-settings.png");
        // A cookie readable by scripts would be a token thief's prize.
        assert_eq!(cdp.eval("document.cookie"), json!(""), "the session cookie is HttpOnly");

        let requests: Vec<String> = cdp
            .events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .map(|e| e["params"]["request"]["url"].as_str().unwrap_or("").to_string())
            .collect();
        let problems: Vec<String> = cdp
            .events
            .iter()
            .filter(|e| {
                (e["method"] == "Runtime.consoleAPICalled"
                    && matches!(e["params"]["type"].as_str(), Some("error" | "warning" | "assert")))
                    || e["method"] == "Runtime.exceptionThrown"
                    || (e["method"] == "Log.entryAdded"
                        && matches!(e["params"]["entry"]["level"].as_str(), Some("error" | "warning")))
            })
            .map(|e| e.to_string())
            .collect();
        let stderr = browser.stderr.lock().unwrap().clone();
        (requests, problems, stderr)
    })
    .await;
    let (requests, problems, stderr) = result.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));

    assert!(requests.len() > 10, "requests were observed: {requests:?}");
    let elsewhere: Vec<&String> = requests
        .iter()
        .filter(|u| !u.starts_with(&format!("{origin}/")))
        .collect();
    assert!(elsewhere.is_empty(), "requests left {origin}: {elsewhere:?}");
    assert!(
        problems.is_empty(),
        "console errors, exceptions or CSP violations: {problems:#?}"
    );
    let uncaught: Vec<&String> = stderr
        .iter()
        .filter(|l| l.contains("Uncaught") || (l.contains(":CONSOLE(") && !l.contains("DevTools")))
        .collect();
    assert!(uncaught.is_empty(), "Chromium logged: {uncaught:#?}");

    // The change persisted and reached the running source.
    let text = std::fs::read_to_string(&settings_path).unwrap();
    assert!(text.contains("poll_interval_seconds = 30"), "{text}");
    assert!(
        text.contains("refresh_interval_seconds = 5 # fast, for the test"),
        "comments kept: {text}"
    );
    assert_eq!(
        control.poll_intervals(),
        vec![("heatpumps".to_string(), Duration::from_secs(30))]
    );

    // Shutdown saves the history.
    running.shutdown_token().cancel();
    tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .expect("the pipeline stops");
    assert!(dir.path().join("state/dashboard/dashboard/history.bin").exists());
    drop(sim_server);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// Exceptions, console errors and warnings, and requests to other origins;
/// `provoked`: statuses a test asked for, whose network errors are expected.
fn problems(events: &[Json], origin: &str, provoked: &[u16]) -> Vec<String> {
    let expected = |e: &Json| {
        let text = e["params"]["entry"]["text"].as_str().unwrap_or("");
        e["params"]["entry"]["source"] == "network"
            && provoked
                .iter()
                .any(|s| text.contains(&format!("responded with a status of {s} ")))
    };
    events
        .iter()
        .filter(|e| {
            e["method"] == "Runtime.exceptionThrown"
                || (e["method"] == "Log.entryAdded"
                    && matches!(e["params"]["entry"]["level"].as_str(), Some("error" | "warning"))
                    && !expected(e))
                || (e["method"] == "Network.requestWillBeSent"
                    && !e["params"]["request"]["url"].as_str().unwrap_or("").starts_with(origin))
        })
        .map(|e| e.to_string())
        .collect()
}

/// Ten pumps with three hours of history, served by the router alone: the
/// page weight budget, sparklines with a gap, charts, dark mode, a phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_pumps_with_hours_of_history_fit_the_page_budget_and_show_gaps() {
    let browser = Browser::launch();
    let fx = fixture(10, 3, false, SystemTime::now(), Arc::new(SystemTime::now));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let router = hpflow::sinks::dashboard::router(fx.app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let http = reqwest::Client::new();
    let mut statics = 0;
    for f in ["style.css", "app.js", "icon.svg"] {
        statics += http
            .get(format!("{origin}/static/{f}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len();
    }
    for (path, pumps) in [("/", 10), ("/pump/hp3?window=180", 1), ("/settings", 10)] {
        let html = http
            .get(format!("{origin}{path}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            html.matches("<article class=\"card").count(),
            if path == "/settings" { 0 } else { pumps }
        );
        let total = html.len() + statics;
        eprintln!(
            "page weight of {path}: {} bytes of HTML + {statics} of CSS, JS and icon = {total}",
            html.len()
        );
        assert!(total < 100_000, "{path} weighs {total} bytes");
    }

    let origin2 = origin.clone();
    let problems = tokio::task::spawn_blocking(move || {
        let origin = origin2;
        let mut cdp = browser.page();
        cdp.navigate(&format!("{origin}/"));
        assert_eq!(cdp.eval(FITS), json!(true));
        let lines = cdp.eval("document.querySelectorAll('#pump-hp3 svg.spark path').length");
        assert_eq!(lines, json!(11), "every numeric tile of hp3 has a sparkline");
        let subpaths =
            cdp.eval("document.querySelector('#pump-hp3 svg.spark path').getAttribute('d').split('M').length - 1");
        assert_eq!(subpaths, json!(2), "the 15 minutes offline break the line");
        cdp.screenshot("dashboard-history.png");
        cdp.call(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] }),
        );
        cdp.navigate(&format!("{origin}/pump/hp3?window=180"));
        assert_eq!(cdp.eval(FITS), json!(true));
        cdp.screenshot("dashboard-pump-history-dark.png");
        cdp.call("Emulation.setEmulatedMedia", json!({ "features": [] }));
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true }),
        );
        cdp.navigate(&format!("{origin}/pump/hp2?window=60"));
        assert_eq!(cdp.eval(FITS), json!(true), "the pump page fits a phone");
        cdp.screenshot("dashboard-pump-phone.png");
        problems(&cdp.events, &origin, &[])
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The heat pump pages in the browser, served by the router with its
/// inventory file: log in, add a pump through the form (a bad port first,
/// answered beside the port), see it in the list, rename it through the edit
/// page, disable it and delete it; the file follows every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heat_pumps_are_added_edited_disabled_and_deleted_through_the_pages() {
    let browser = Browser::launch();
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("heatpumps.yml");
    std::fs::copy(support::repo().join("config/heatpumps.yml"), &inventory).unwrap();
    let config = DashboardConfig {
        inventory: Some("heatpumps.yml".into()),
        registers: Some(shipped_registers()),
        ..DashboardConfig::default()
    };
    let control = Arc::new(hpflow::component::Control::default());
    let app = config
        .app(
            "dashboard",
            dir.path(),
            dir.path(),
            &[],
            &control,
            Some(TOKEN.to_string()),
            None,
        )
        .expect("the dashboard builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let router = hpflow::sinks::dashboard::router(Arc::new(app));
    tokio::spawn(async move { axum::serve(listener, router).await });

    let origin2 = origin.clone();
    let inventory2 = inventory.clone();
    let problems = tokio::task::spawn_blocking(move || {
        let (origin, inventory) = (origin2, inventory2);
        let text = || std::fs::read_to_string(&inventory).unwrap();
        let mut cdp = browser.page();
        cdp.navigate(&format!("{origin}/heatpumps"));
        assert_eq!(
            cdp.eval("[document.querySelector('.readonly a').textContent, document.querySelectorAll('td.actions').length]"),
            json!(["Log in to change", 0]),
            "logged out, the list is read-only"
        );
        cdp.submit("document.querySelector('.readonly a').click()");
        cdp.submit(&format!(
            "document.querySelector('#token').value = '{TOKEN}'; document.querySelector('form.login').submit()"
        ));
        cdp.navigate(&format!("{origin}/heatpumps"));
        assert_eq!(cdp.eval("document.querySelector('#hp-hp1 .name').textContent"), json!("Heat Pump 1"));

        let fill = |port: &str| {
            format!(
                "const f = document.querySelector('form.pump-form'); \
                 f.querySelector('#hp-id').value = 'hp2'; f.querySelector('#hp-name').value = 'Attic & loft'; \
                 f.querySelector('#hp-location').value = 'Loft'; f.querySelector('#hp-model').value = 'stiebel_eltron_wpm'; \
                 f.querySelector('#hp-host').value = '192.0.2.11'; f.querySelector('#hp-port').value = '{port}'; \
                 f.querySelector('#hp-unit_id').value = '2'; f.submit()"
            )
        };
        cdp.submit(&fill("0"));
        assert_eq!(
            cdp.eval("[document.querySelector('#hp-port-error').textContent, document.querySelector('#hp-port').value, document.querySelector('#hp-name').value]"),
            json!(["heat pump `hp2`: `port` must be 1-65535, not 0", "0", "Attic & loft"]),
            "the message is beside the port and the input is kept"
        );
        assert!(!text().contains("hp2"), "nothing written: {}", text());
        cdp.screenshot("dashboard-heatpumps-invalid.png");
        cdp.submit("document.querySelector('#hp-port').value = '5020'; document.querySelector('form.pump-form').submit()");
        assert_eq!(cdp.eval("location.pathname + location.search"), json!("/heatpumps?done=added&id=hp2"));
        assert_eq!(
            cdp.eval("[document.querySelector('.notice').textContent, document.querySelector('#hp-hp2 .name').textContent, document.querySelector('#hp-hp2 td:nth-child(5)').textContent]"),
            json!(["Heat pump hp2 added.", "Attic & loft", "192.0.2.11:5020"])
        );
        assert!(text().contains("- id: hp2\n  name: Attic & loft\n"), "{}", text());
        cdp.screenshot("dashboard-heatpumps.png");

        cdp.submit("document.querySelector('#hp-hp2 a[href=\"/heatpumps/hp2/edit\"]').click()");
        assert_eq!(cdp.eval("document.querySelector('#hp-host').value"), json!("192.0.2.11"));
        cdp.submit("document.querySelector('#hp-name').value = 'Attic'; document.querySelector('form.pump-form').submit()");
        assert_eq!(cdp.eval("document.querySelector('#hp-hp2 .name').textContent"), json!("Attic"));
        assert!(text().contains("  name: Attic\n"), "{}", text());

        cdp.submit("document.querySelector('#hp-hp2 form[action$=\"/enabled\"] button').click()");
        assert_eq!(cdp.eval("document.querySelector('#hp-hp2 .enabled').textContent"), json!("no"));
        cdp.submit("document.querySelector('#hp-hp2 form[action$=\"/delete\"] button').click()");
        assert_eq!(
            cdp.eval("[document.querySelector('.notice').textContent, document.querySelectorAll('#hp-hp2').length]"),
            json!(["Heat pump hp2 deleted.", 0])
        );
        assert!(!text().contains("hp2"), "{}", text());
        // The refused form's 422 is on purpose.
        problems(&cdp.events, &origin, &[422])
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    assert!(problems.is_empty(), "{problems:#?}");
}

/// 200 days of a pump through autumn and winter up to today (UTC, the
/// fixture's zone): heat follows the cold, the COP falls with it, a daily hot
/// water charge, the booster on the coldest days, two days without figures.
fn winter_days(today: jiff::civil::Date) -> Vec<Day> {
    (0..200i32)
        .filter_map(|i| {
            let date = today.checked_sub(jiff::Span::new().days(199 - i)).unwrap();
            if i == 185 {
                return None; // the transform was not running that day
            }
            let x = f64::from(i);
            let outdoor = 12.0 - 16.0 * x / 200.0 + 3.0 * (x * 0.9).sin();
            let mut d = Day::new(date);
            let heating = (18.0 - outdoor).max(0.0) * 2.6;
            let cop = (3.4 + 0.09 * outdoor + 0.2 * (x * 2.1).sin()).clamp(1.6, 5.0);
            d.heat_heating = Some(heating);
            d.electricity_heating = Some(heating / cop);
            d.heat_dhw = Some(7.5 + (x * 0.7).cos());
            d.electricity_dhw = Some(d.heat_dhw.unwrap() / 2.6);
            if outdoor < -3.0 {
                d.booster_heating = Some(-outdoor * 1.5);
            }
            if i == 192 {
                d.electricity_heating = None; // a meter that went backwards
                d.electricity_dhw = None;
                d.booster_heating = None;
            }
            d.outdoor_mean = Some(outdoor);
            d.compressor_starts = (4.0 + (12.0 - outdoor).max(0.0) * 0.8 + 3.0 * (x * 1.3).sin().abs()) as u32;
            d.compressor_run_seconds = f64::from(d.compressor_starts) * (1500.0 + 60.0 * (10.0 - outdoor).max(0.0));
            d.defrosts = u32::from(outdoor < 3.0) * 4;
            Some(d)
        })
        .collect()
}

/// The efficiency page of a pump with 200 days of figures: within the page
/// budget, its charts drawn with a size, fitting a phone, in light and dark,
/// and the empty page of a pump without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_efficiency_page_draws_its_charts_on_a_desktop_and_a_phone() {
    let browser = Browser::launch();
    let fx = fixture(2, 1, false, SystemTime::now(), Arc::new(SystemTime::now));
    let today = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    let days = winter_days(today);
    fx.registry.efficiency().publish("hp1", days.into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let router = hpflow::sinks::dashboard::router(fx.app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let http = reqwest::Client::new();
    let mut weight = 0;
    for path in [
        "/pump/hp1/efficiency",
        "/static/style.css",
        "/static/app.js",
        "/static/icon.svg",
    ] {
        weight += http
            .get(format!("{origin}{path}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len();
    }
    eprintln!("page weight of the efficiency page with CSS, JS and icon: {weight} bytes");
    assert!(weight < 100_000, "the efficiency page weighs {weight} bytes");

    let origin2 = origin.clone();
    let problems = tokio::task::spawn_blocking(move || {
        let origin = origin2;
        let mut cdp = browser.page();
        // Today's figures on the card link to the page.
        cdp.navigate(&format!("{origin}/"));
        assert_eq!(
            cdp.eval("document.querySelector('#pump-hp1 .today [data-field=cop_today] b').textContent"),
            json!("3.10")
        );
        cdp.submit("document.querySelector('#pump-hp1 .today a').click()");
        assert_eq!(cdp.eval("location.pathname"), json!("/pump/hp1/efficiency"));

        let sizes = "Array.from(document.querySelectorAll('.eff svg')).map(s => { \
                     const r = s.getBoundingClientRect(); return [s.closest('figure').id, r.width > 200 && r.height > 80]; })";
        let check = |cdp: &mut support::chromium::Cdp, what: &str| {
            assert_eq!(
                cdp.eval(sizes),
                json!([["heat", true], ["electricity", true], ["cop", true], ["cycles", true]]),
                "{what}: every chart is drawn with a size"
            );
            assert_eq!(cdp.eval(FITS), json!(true), "{what}: no sideways scrolling");
            // 30 days less the missing one; the day without electricity has heat.
            assert_eq!(
                cdp.eval("[document.querySelectorAll('#heat g.day').length, document.querySelectorAll('#electricity g.day').length, document.querySelectorAll('#cycles g.day').length]"),
                json!([29, 28, 29]),
                "{what}"
            );
            // Axis labels are not squeezed below legibility.
            let smallest = cdp.eval(
                "Math.min(...Array.from(document.querySelectorAll('.eff svg text')).map(t => t.getBoundingClientRect().height))",
            );
            assert!(smallest.as_f64().unwrap() >= 9.0, "{what}: labels {smallest} px high");
            // No label of one chart overlaps another of the same chart.
            let overlaps = cdp.eval(
                "Array.from(document.querySelectorAll('.eff svg')).flatMap(s => { \
                   const r = Array.from(s.querySelectorAll('text')).map(t => [t.textContent, t.getBoundingClientRect()]); \
                   const o = []; \
                   for (let i = 0; i < r.length; i++) for (let j = i + 1; j < r.length; j++) { \
                     const a = r[i][1], b = r[j][1]; \
                     if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1) o.push(r[i][0] + ' / ' + r[j][0]); } \
                   return o; })",
            );
            assert_eq!(overlaps, json!([]), "{what}: overlapping labels");
        };
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 1500, "deviceScaleFactor": 1, "mobile": false }),
        );
        cdp.navigate(&format!("{origin}/pump/hp1/efficiency"));
        check(&mut cdp, "desktop");
        let points = cdp.eval("document.querySelectorAll('#cop circle').length").as_u64().unwrap();
        assert!(points >= 190, "a point per day with a COP: {points}");
        cdp.screenshot("dashboard-efficiency.png");
        cdp.call(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] }),
        );
        cdp.navigate(&format!("{origin}/pump/hp1/efficiency"));
        cdp.screenshot("dashboard-efficiency-dark.png");
        cdp.call("Emulation.setEmulatedMedia", json!({ "features": [] }));
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true }),
        );
        cdp.navigate(&format!("{origin}/pump/hp1/efficiency"));
        check(&mut cdp, "phone");
        cdp.screenshot("dashboard-efficiency-phone.png");
        cdp.eval("document.querySelector('#electricity').scrollIntoView(); true");
        cdp.screenshot("dashboard-efficiency-phone-charts.png");
        cdp.navigate(&format!("{origin}/pump/hp2/efficiency"));
        assert_eq!(cdp.eval("document.querySelectorAll('.eff svg').length"), json!(0));
        assert!(cdp
            .eval("document.querySelector('.empty-state pre').textContent")
            .as_str()
            .unwrap()
            .starts_with("[transforms.efficiency]\ntype = \"efficiency\""));
        assert_eq!(cdp.eval(FITS), json!(true), "the empty page fits a phone");
        cdp.screenshot("dashboard-efficiency-empty-phone.png");
        problems(&cdp.events, &origin, &[])
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    assert!(problems.is_empty(), "{problems:#?}");
}
