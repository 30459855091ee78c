//! The dashboard's forms and JSON bodies, arbitrary and mutated from valid
//! ones, sent as the admin to every route that takes a body: form fields of any
//! keys, values and encodings (broken percent escapes, invalid UTF-8), JSON of
//! wrong types, huge numbers and nested junk, wrong content types, oversized
//! bodies. Nothing panics, nothing answers 5xx, every refusal is a 4xx that
//! says why, and a refused request leaves every file the dashboard keeps
//! (the inventory, the settings) byte for byte as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN};
use axum::http::Request;
use hpflow::component::Control;
use hpflow::sinks::dashboard::{router, App, DashboardConfig};
use proptest::prelude::*;
use serde_json::Value as Json;
use tower::ServiceExt;

use super::{runner_with, CASES};
use crate::support::{free_port, repo, shipped_registers, wpm_schema};

const TOKEN: &str = "fuzz-admin-token-0123456789";
const HOST_NAME: &str = "127.0.0.1:8080";
const SAME_ORIGIN: &str = "http://127.0.0.1:8080";
/// Stands for the settings' current version in a seed; replaced before sending.
const VERSION_NOW: &str = "VERSION_NOW";
/// Cases per route.
const ROUTE_CASES: u32 = CASES / 10;

/// A route that takes a body, with a valid body to mutate and the keys it knows.
struct Route {
    method: &'static str,
    path: &'static str,
    json: bool,
    seed: &'static str,
    keys: &'static [&'static str],
    /// It reads a device: any host and port in the body are pointed at a closed
    /// loopback port, so no case ever reaches beyond this machine.
    connects: bool,
}

const PUMP_KEYS: &[&str] = &[
    "id",
    "name",
    "location",
    "model",
    "enabled",
    "modbus",
    "host",
    "port",
    "unit_id",
    "timeout",
    "type",
    "retries",
    "retry_delay",
    "version",
    "test",
    "editing",
];
const SETTINGS_KEYS: &[&str] = &[
    "version",
    "poll_interval_seconds",
    "refresh_interval_seconds",
    "sparkline_minutes",
    "pumps",
    "pump.hp1.sparkline_minutes",
    "pump.hp1.tiles",
    "hp1",
    "tiles",
    "visible_fields",
    "settings_version",
    "field",
];
const PUMP_JSON: &str = r#"{"id": "hp9", "name": "Attic & loft", "location": "Loft", "model": "stiebel_eltron_wpm",
    "enabled": true, "modbus": {"host": "192.0.2.11", "port": 5020, "unit_id": 2, "timeout": 2.5}}"#;
const PUMP_FORM: &str = "version=&id=hp9&name=Attic+%26+loft&location=Loft&model=stiebel_eltron_wpm\
                         &host=192.0.2.11&port=5020&unit_id=2&enabled=on";

fn routes() -> Vec<Route> {
    let json = |method, path, seed, keys| Route {
        method,
        path,
        json: true,
        seed,
        keys,
        connects: false,
    };
    let form = |path, seed, keys| Route {
        method: "POST",
        path,
        json: false,
        seed,
        keys,
        connects: false,
    };
    vec![
        json("POST", "/api/heatpumps", PUMP_JSON, PUMP_KEYS),
        json(
            "PUT",
            "/api/heatpumps/hp1",
            &*PUMP_JSON.replacen("hp9", "hp1", 1).leak(),
            PUMP_KEYS,
        ),
        json(
            "PATCH",
            "/api/heatpumps/hp1",
            r#"{"name": "Garage 2", "enabled": false, "modbus": {"port": 503}}"#,
            PUMP_KEYS,
        ),
        json("DELETE", "/api/heatpumps/hp1", "{}", PUMP_KEYS),
        Route {
            connects: true,
            ..json("POST", "/api/heatpumps/test", PUMP_JSON, PUMP_KEYS)
        },
        json(
            "PUT",
            "/api/settings",
            r#"{"version": "VERSION_NOW", "poll_interval_seconds": 30, "refresh_interval_seconds": 10,
                "sparkline_minutes": 60, "pumps": {"hp1": {"sparkline_minutes": 30,
                "tiles": ["outside_temperature"], "visible_fields": ["outside_temperature"]}}}"#,
            SETTINGS_KEYS,
        ),
        form(
            "/settings",
            "version=VERSION_NOW&poll_interval_seconds=30&refresh_interval_seconds=10&sparkline_minutes=60\
             &pump.hp1.sparkline_minutes=30",
            SETTINGS_KEYS,
        ),
        form("/login", "token=fuzz-admin-token-0123456789", &["token"]),
        form("/logout", "", &["token"]),
        form("/heatpumps", PUMP_FORM, PUMP_KEYS),
        form(
            "/heatpumps/hp1",
            &*PUMP_FORM.replacen("hp9", "hp1", 1).leak(),
            PUMP_KEYS,
        ),
        form("/heatpumps/hp1/delete", "version=", PUMP_KEYS),
        form("/heatpumps/hp1/enabled", "enabled=false", &["enabled", "version"]),
        form(
            "/heatpumps/hp1/fields",
            "settings_version=VERSION_NOW&field=outside_temperature&field=actual_dhw_temperature",
            SETTINGS_KEYS,
        ),
        Route {
            connects: true,
            ..form("/heatpumps/test", &*format!("{PUMP_FORM}&test=1").leak(), PUMP_KEYS)
        },
    ]
}

// ---------------------------------------------------------------------------
// Bodies.

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => ".{0,24}",
        1 => prop::sample::select(vec![
            "", " ", "0", "-1", "65536", "4294967296", "18446744073709551616", "99999999999999999999999",
            "1e3", "1e400", "-0", "NaN", "true", "on", "hp1", "hp2", "stiebel_eltron_wpm", "127.0.0.1",
            "<script>alert(1)</script>", "../../etc/passwd", "\u{0}", "\u{202e}", "a\nb: c", "{{ x }}",
        ])
        .prop_map(String::from),
    ]
}

fn key(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::sample::select(keys).prop_map(String::from), 1 => ".{0,10}"]
}

fn json_junk(keys: &'static [&'static str]) -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)),
        text().prop_map(Json::from),
    ];
    leaf.prop_recursive(4, 40, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((key(keys), inner), 0..6).prop_map(|kv| Json::Object(kv.into_iter().collect())),
        ]
    })
}

/// JSON text JSON values cannot hold, spliced into a valid body.
fn json_splinter() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "1e400",
        "-1e400",
        "123456789012345678901234567890",
        "-0",
        "0.00000000000000000000000000000000000001",
        "\"\\ud800\"",
        "NaN",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        "{\"a\":",
        "\u{0}",
        "\"\\u0000\"",
        "//",
        ",",
        "}",
    ])
}

/// Every object member of `v`, as a path of keys.
fn member_paths(v: &Json, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Json::Object(o) = v {
        for (k, child) in o {
            path.push(k.clone());
            out.push(path.clone());
            member_paths(child, path, out);
            path.pop();
        }
    }
}

fn at_path<'a>(v: &'a mut Json, path: &[String]) -> Option<&'a mut Json> {
    path.iter().try_fold(v, |v, k| v.get_mut(k))
}

/// One edit of a valid JSON value: a member replaced by junk, removed, added,
/// or its type changed.
fn edit(v: &mut Json, which: prop::sample::Index, op: u8, junk: Json, new_key: String) {
    let mut paths = vec![vec![]];
    member_paths(v, &mut Vec::new(), &mut paths);
    let path = which.get(&paths).clone();
    let Some(target) = at_path(v, &path) else { return };
    match op {
        0 => *target = junk,
        1 => {
            if let (Some((last, parent)), false) = (path.split_last(), path.is_empty()) {
                if let Some(Json::Object(o)) = at_path(v, parent) {
                    o.remove(last);
                }
            }
        }
        2 => {
            if let Json::Object(o) = target {
                o.insert(new_key, junk);
            } else {
                *target = junk;
            }
        }
        _ => {
            *target = match target.take() {
                Json::Number(n) => Json::String(n.to_string()),
                Json::String(s) => s
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Json::Null, Json::Number),
                Json::Bool(b) => Json::from(u8::from(b)),
                Json::Null => Json::Array(vec![]),
                other => Json::Array(vec![other]),
            }
        }
    }
}

fn json_body(route: &Route) -> impl Strategy<Value = Vec<u8>> {
    let seed: Json = serde_json::from_str(route.seed).expect("the seed is JSON");
    let text = route.seed.to_string();
    let keys = route.keys;
    let edits = prop::collection::vec((any::<prop::sample::Index>(), 0..4u8, json_junk(keys), key(keys)), 1..4);
    prop_oneof![
        4 => edits.prop_map(move |edits| {
            let mut v = seed.clone();
            for (which, op, junk, k) in edits {
                edit(&mut v, which, op, junk, k);
            }
            serde_json::to_vec(&v).unwrap()
        }),
        2 => json_junk(keys).prop_map(|v| serde_json::to_vec(&v).unwrap()),
        2 => (0..=text.len(), json_splinter(), any::<bool>()).prop_map(move |(at, s, cut)| {
            let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            let rest = if cut { "" } else { &text[at..] };
            format!("{}{s}{rest}", &text[..at]).into_bytes()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => Just(route.seed.as_bytes().to_vec()),
    ]
}

/// How a form's pairs are put into the body.
fn encode_form(pairs: &[(String, String)], how: u8) -> Vec<u8> {
    let enc = |s: &str| -> Vec<u8> {
        match how {
            // As a browser does.
            0 => s
                .bytes()
                .flat_map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => vec![b],
                    b' ' => vec![b'+'],
                    _ => format!("%{b:02X}").into_bytes(),
                })
                .collect(),
            // Not encoded at all: `&`, `=` and `%` inside values break the pairs.
            1 => s.as_bytes().to_vec(),
            // Escapes that are broken or decode to invalid UTF-8.
            _ => s
                .bytes()
                .flat_map(|b| match b % 5 {
                    0 => vec![b'%'],
                    1 => format!("%{:02X}", b | 0x80).into_bytes(),
                    2 => b"%Z".to_vec(),
                    _ => vec![b],
                })
                .collect(),
        }
    };
    let mut out = Vec::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend(enc(k));
        out.push(b'=');
        out.extend(enc(v));
    }
    out
}

fn form_pairs(seed: &str) -> Vec<(String, String)> {
    seed.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| {
                let s = s.replace('+', " ");
                let mut out = Vec::new();
                let b = s.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    if b[i] == b'%' && i + 2 < b.len() + 1 {
                        if let Ok(x) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                            out.push(x);
                            i += 3;
                            continue;
                        }
                    }
                    out.push(b[i]);
                    i += 1;
                }
                String::from_utf8(out).unwrap()
            };
            (decode(k), decode(v))
        })
        .collect()
}

/// Pairs as `(key, value)`; a form's body is made of them in `form_body`.
fn pairs(route: &Route) -> impl Strategy<Value = Vec<(String, String)>> {
    let seed = form_pairs(route.seed);
    let keys = route.keys;
    let edits = prop::collection::vec((any::<prop::sample::Index>(), 0..4u8, key(keys), text()), 1..4);
    prop_oneof![
        3 => edits.prop_map(move |edits| {
            let mut p = seed.clone();
            for (which, op, k, v) in edits {
                match (op, p.is_empty()) {
                    (0, false) => which.get_mut(&mut p).1 = v,
                    (1, false) => {
                        p.remove(which.index(p.len()));
                    }
                    (2, false) => {
                        let dup = (which.get(&p).0.clone(), v);
                        p.push(dup);
                    }
                    _ => p.push((k, v)),
                }
            }
            p
        }),
        1 => prop::collection::vec((key(keys), text()), 0..8),
    ]
}

fn form_body(route: &Route) -> impl Strategy<Value = (Vec<(String, String)>, u8)> {
    (
        pairs(route),
        prop_oneof![4 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
    )
}

fn content_type(json: bool) -> impl Strategy<Value = Option<&'static str>> {
    let right = if json {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    prop_oneof![
        8 => Just(Some(right)),
        1 => prop::sample::select(vec![
            None,
            Some("text/plain"),
            Some("application/json; charset=latin1"),
            Some("application/x-www-form-urlencoded; charset=utf-16"),
            Some("multipart/form-data; boundary=x"),
            Some(if json { "application/x-www-form-urlencoded" } else { "application/json" }),
            Some("application/jsonx"),
            Some(""),
        ]),
    ]
}

// ---------------------------------------------------------------------------
// The dashboard.

struct Dashboard {
    app: Arc<App>,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

fn dashboard() -> Dashboard {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("config/heatpumps.yml"), dir.path().join("heatpumps.yml")).unwrap();
    let config = DashboardConfig {
        inventory: Some("heatpumps.yml".into()),
        registers: Some(shipped_registers()),
        ..DashboardConfig::default()
    };
    let control = Arc::new(Control::default());
    let _interval = control.poll_interval("heatpumps", Duration::from_secs(10));
    let app = config
        .app(
            "dash",
            dir.path(),
            dir.path(),
            &[wpm_schema()],
            &control,
            Some(TOKEN.into()),
            None,
        )
        .expect("the dashboard builds");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Dashboard {
        app: Arc::new(app),
        dir,
        rt,
    }
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

struct Answer {
    status: u16,
    json: bool,
    body: String,
}

impl Dashboard {
    /// Sends a request as the admin would from the dashboard's own page.
    fn send(&self, method: &str, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        let r = Request::builder()
            .header(ORIGIN, SAME_ORIGIN)
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"));
        self.request(r, method, path, content_type, body)
    }

    fn request(
        &self,
        r: axum::http::request::Builder,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        let mut r = r.method(method).uri(path).header(HOST, HOST_NAME);
        if let Some(ct) = content_type {
            r = r.header(CONTENT_TYPE, ct);
        }
        let req = r.body(Body::from(body)).unwrap();
        self.rt.block_on(async {
            let res = router(self.app.clone()).oneshot(req).await.unwrap();
            let status = res.status().as_u16();
            let json = (res.headers().get(CONTENT_TYPE)).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            let bytes = axum::body::to_bytes(res.into_body(), 10 << 20).await.unwrap();
            Answer {
                status,
                json,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            }
        })
    }

    fn settings_version(&self) -> u64 {
        // Reading is open: no token, which the failed logins may have locked out.
        let a = self.request(Request::builder(), "GET", "/api/settings", None, Vec::new());
        let j: Json = serde_json::from_str(&a.body).unwrap();
        j["version"].as_u64().expect("the settings have a version")
    }
}

/// Points any host and port of a device-reading body at `closed` on loopback.
fn keep_local_json(body: Vec<u8>, closed: u16) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Json>(&body) else {
        return body;
    };
    if let Some(Json::Object(m)) = v.get_mut("modbus") {
        m.insert("host".into(), "127.0.0.1".into());
        m.insert("port".into(), closed.into());
    }
    serde_json::to_vec(&v).unwrap()
}

/// `"VERSION_NOW"` (in JSON) and `VERSION_NOW` (in a form) as the settings' current version.
fn with_version(bytes: Vec<u8>, version: u64) -> Vec<u8> {
    let find = |b: &[u8], pat: &[u8]| b.windows(pat.len()).position(|w| w == pat);
    let mut b = bytes;
    for pat in [format!("\"{VERSION_NOW}\""), VERSION_NOW.to_string()] {
        while let Some(at) = find(&b, pat.as_bytes()) {
            b.splice(at..at + pat.len(), version.to_string().into_bytes());
        }
    }
    b
}

#[test]
fn dashboard_forms_and_json_bodies_of_any_shape_are_refused_with_a_4xx_and_change_nothing() {
    let closed = free_port();
    let mut report = Vec::new();
    for route in routes() {
        let d = dashboard();
        let statuses = std::cell::RefCell::new(BTreeMap::<u16, usize>::new());
        let connects = route.connects;
        let body = if route.json {
            json_body(&route)
                .prop_map(move |b| if connects { keep_local_json(b, closed) } else { b })
                .boxed()
        } else {
            form_body(&route)
                .prop_map(move |(mut pairs, how)| {
                    if connects {
                        for (k, v) in &mut pairs {
                            match k.as_str() {
                                "host" => *v = "127.0.0.1".into(),
                                "port" => *v = closed.to_string(),
                                _ => {}
                            }
                        }
                    }
                    encode_form(&pairs, how)
                })
                .boxed()
        };
        let huge = Just(vec![b'a'; 70 * 1024]);
        let input = (prop_oneof![50 => body, 1 => huge], content_type(route.json));
        runner_with(ROUTE_CASES)
            .run(&input, |(bytes, content_type)| {
                let bytes = with_version(bytes, d.settings_version());
                let before = files(d.dir.path());
                let a = d.send(route.method, route.path, content_type, bytes.clone());
                *statuses.borrow_mut().entry(a.status).or_default() += 1;
                let what = format!(
                    "{} {} ({content_type:?}) {:?} answered {}: {}",
                    route.method,
                    route.path,
                    String::from_utf8_lossy(&bytes),
                    a.status,
                    a.body
                );
                prop_assert!(a.status < 500, "never a server error: {}", what);
                if a.status >= 400 {
                    prop_assert!(!a.body.trim().is_empty(), "a refusal says why: {}", what);
                    if a.json {
                        let j: Json =
                            serde_json::from_str(&a.body).map_err(|e| TestCaseError::fail(format!("{e}: {what}")))?;
                        let error = j["error"].as_str().unwrap_or_default();
                        prop_assert!(!error.trim().is_empty(), "a JSON refusal has an `error`: {}", what);
                    }
                    prop_assert!(
                        files(d.dir.path()) == before,
                        "a refused request changed a file: {}",
                        what
                    );
                }
                Ok(())
            })
            .unwrap();
        report.push((route.method, route.path, statuses.into_inner()));
    }
    let mut total = 0;
    for (method, path, statuses) in &report {
        let n: usize = statuses.values().sum();
        total += n;
        let by_status: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        eprintln!("dashboard {method} {path}: {n} cases ({})", by_status.join(", "));
    }
    eprintln!("dashboard: {total} cases over {} routes", report.len());
    assert_eq!(total, report.len() * ROUTE_CASES as usize);
}
