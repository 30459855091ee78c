//! Router tests: every route through `oneshot`, no socket. The pumps are
//! described by the shipped Stiebel Eltron register map and fed polls the way
//! `scale` and `state_diff` deliver them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::header::{
    AUTHORIZATION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN, REFERER, REFERRER_POLICY,
    SET_COOKIE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, Request, StatusCode};
use jiff::tz::TimeZone;
use tower::ServiceExt;

use super::*;
use crate::component::Control;
use crate::event::{Event, Metric, Schema, StateChange, Tags, Value, ValueType};
use crate::registers::RegisterMap;

/// 2025-06-15 15:06:40 UTC.
const NOW: u64 = 1_750_000_000;
const TOKEN: &str = "test-admin-token-0123456789";
const HOST_NAME: &str = "dash.test:8080";
const SAME: &str = "http://dash.test:8080";
const EVIL_NAME: &str = "<script>alert(1)</script>";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn wpm() -> Arc<Schema> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/registers.yml");
    let map = RegisterMap::load(path).expect("the shipped register map loads");
    map.model("stiebel_eltron_wpm").expect("the WPM model").schema().clone()
}

fn tags(id: &str, name: &str, location: &str) -> Arc<Tags> {
    let mut t = Tags::new();
    t.insert("heat_pump_id".into(), id.into());
    t.insert("name".into(), name.into());
    t.insert("location".into(), location.into());
    t.insert("model".into(), "stiebel_eltron_wpm".into());
    Arc::new(t)
}

/// Thirty minutes of 10-second polls ending at NOW.
fn feed(app: &App, schema: &Arc<Schema>, id: &str, name: &str, fault: bool) {
    let tags = tags(id, name, "Cellar & <b>garage</b>");
    for i in 0..180u64 {
        let t = now() - Duration::from_secs(1790 - i * 10);
        let mut m = Metric::new(id, tags.clone(), t, schema.clone());
        let f = |k: &str, v: Value, m: &mut Metric| {
            m.fields.insert(k.into(), v);
        };
        f("outside_temperature", Value::Float(4.0 + (i as f64) / 100.0), &mut m);
        f("actual_dhw_temperature", Value::Float(48.5), &mut m);
        f("actual_return_temperature", Value::Float(31.2), &mut m);
        f("operating_mode", Value::Int(2), &mut m);
        f("operating_status", Value::Int(0b100_0001), &mut m);
        f("compressor_running", Value::Bool(true), &mut m);
        f("hc1_pump", Value::Bool(true), &mut m);
        f("defrost_mode", Value::Bool(false), &mut m);
        f("fault_status", Value::Int(i64::from(fault)), &mut m);
        // Every other field of the model answers too, as a real pump's do.
        for meta in &schema.fields {
            if !m.fields.contains_key(&meta.name) {
                let v = match meta.value_type {
                    ValueType::Float => Value::Float(12.5),
                    ValueType::Int => Value::Int(7),
                    ValueType::Bool => Value::Bool(false),
                    ValueType::Text => Value::Text("x".into()),
                };
                m.fields.insert(meta.name.clone(), v);
            }
        }
        m.fields.remove("actual_flow_temperature_nhz");
        m.since
            .insert("compressor_running".into(), Some(now() - Duration::from_secs(3600)));
        m.since.insert("hc1_pump".into(), None);
        m.since
            .insert("defrost_mode".into(), Some(now() - Duration::from_secs(3 * 86_400)));
        m.since
            .insert("fault_status".into(), Some(now() - Duration::from_secs(600)));
        app.ingest(&Event::from(m));
    }
    app.ingest(&Event::from(StateChange {
        device: id.into(),
        tags,
        field: "compressor_running".into(),
        from: Some(Value::Bool(false)),
        to: Value::Bool(true),
        at: now() - Duration::from_secs(3600),
        from_since: Some(now() - Duration::from_secs(5400)),
        meta: None,
    }));
}

struct Harness {
    app: Arc<App>,
    control: Arc<Control>,
    dir: tempfile::TempDir,
}

impl Harness {
    fn settings_path(&self) -> PathBuf {
        state_dir(self.dir.path(), "dash").join("settings.toml")
    }
}

/// The tests reach the dashboard as `dash.test`, a name it must be told about.
fn build(dir: &Path, control: &Arc<Control>, token: Option<&str>, mut config: DashboardConfig) -> App {
    config.allowed_hosts.push("dash.test".into());
    config
        .app("dash", dir, dir, &[wpm()], control, token.map(str::to_string), None)
        .expect("the dashboard builds")
        .with_clock(Arc::new(now), TimeZone::UTC)
}

fn harness_with(token: Option<&str>, config: DashboardConfig, before: impl FnOnce(&Path)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    before(dir.path());
    let control = Arc::new(Control::default());
    let _rx = control.poll_interval("heatpumps", Duration::from_secs(10));
    let app = build(dir.path(), &control, token, config);
    let schema = wpm();
    feed(&app, &schema, "hp1", EVIL_NAME, false);
    feed(&app, &schema, "hp2", "Heat Pump 2", true);
    Harness {
        app: Arc::new(app),
        control,
        dir,
    }
}

fn harness(token: Option<&str>) -> Harness {
    harness_with(token, DashboardConfig::default(), |_| {})
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(app: &Arc<App>, req: Request<Body>) -> Reply {
    let res = router(app.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 10 << 20).await.unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(app: &Arc<App>, uri: &str) -> Reply {
    send(
        app,
        Request::get(uri).header(HOST, HOST_NAME).body(Body::empty()).unwrap(),
    )
    .await
}

fn form(uri: &str, body: &str, headers: &[(axum::http::HeaderName, &str)]) -> Request<Body> {
    let mut r = Request::post(uri)
        .header(HOST, HOST_NAME)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in headers {
        r = r.header(k, *v);
    }
    r.body(Body::from(body.to_string())).unwrap()
}

fn put_json(body: &str, headers: &[(axum::http::HeaderName, &str)]) -> Request<Body> {
    let mut r = Request::put("/api/settings")
        .header(HOST, HOST_NAME)
        .header(CONTENT_TYPE, "application/json");
    for (k, v) in headers {
        r = r.header(k, *v);
    }
    r.body(Body::from(body.to_string())).unwrap()
}

/// Logs in like the form does; returns the `Cookie` header value.
async fn login(app: &Arc<App>) -> String {
    let r = send(app, form("/login", &format!("token={TOKEN}"), &[(ORIGIN, SAME)])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let cookie = r.headers.get(SET_COOKIE).unwrap().to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn settings_form(version: u64, poll: &str, refresh: &str) -> String {
    format!("version={version}&poll_interval_seconds={poll}&refresh_interval_seconds={refresh}&sparkline_minutes=60")
}

#[tokio::test]
async fn the_overview_shows_each_pump_with_mode_states_since_tiles_and_sparklines() {
    let h = harness(None);
    let r = get(&h.app, "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    let b = &r.body;
    assert!(b.contains("Heat Pump 2"), "{b}");
    assert!(b.contains("Programmed operation"), "mode label");
    assert!(b.contains("<b>online</b> · <time datetime=\"2025-06-15T15:06:40.000Z\">polled 0 s ago</time>"));
    assert!(
        b.contains("data-field=\"compressor_running\"><span>Compressor</span> <b>on</b> <small>since 14:06</small>"),
        "{b}"
    );
    assert!(b.contains("<span>Heating circuit 1 pump</span> <b>on</b> <small>since unknown</small>"));
    assert!(b.contains("<span>Defrost</span> <b>off</b> <small>since 2025-06-12 15:06</small>"));
    assert!(
        b.contains("<p class=\"fault\" role=\"alert\">Fault status: Fault, since 14:56</p>"),
        "{b}"
    );
    assert_eq!(b.matches("class=\"fault\"").count(), 1, "only hp2 has a fault");
    assert!(b.contains("<span class=\"value\">5.79 <small>°C</small></span>"), "{b}");
    let i = b.find("Operating status").unwrap();
    assert!(
        b[i..].contains("<span class=\"value\">Heating circuit 1 pump, Compressor</span>"),
        "{}",
        &b[i..i + 700]
    );
    assert!(b.contains("<svg class=\"spark\" viewBox=\"0 0 120 32\""));
    assert!(b.contains("<span class=\"range\">4 – 5.79</span>"), "{b}");
    // Tiles in HPManager's default order.
    let outside = b.find("Outside temperature").unwrap();
    let ret = b.find("Actual return temperature").unwrap();
    let dhw = b.find("Actual DHW temperature").unwrap();
    assert!(outside < ret && ret < dhw);
}

#[tokio::test]
async fn a_pump_named_like_a_script_renders_as_text_everywhere() {
    let h = harness(Some(TOKEN));
    let cookie = login(&h.app).await;
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;";
    for uri in ["/", "/?partial=1", "/pump/hp1", "/pump/hp1?partial=1"] {
        let r = get(&h.app, uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert!(!r.body.contains(EVIL_NAME), "{uri} contains the raw name");
        assert!(!r.body.contains("<b>garage</b>"), "{uri} contains raw tag markup");
        assert!(r.body.contains(escaped), "{uri} lacks the escaped name");
    }
    let r = send(
        &h.app,
        Request::get("/settings")
            .header(COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(!r.body.contains(EVIL_NAME) && r.body.contains(escaped));
    // JSON is served as JSON (with nosniff), never as HTML.
    let r = get(&h.app, "/api/pumps").await;
    assert_eq!(r.headers[CONTENT_TYPE], "application/json");
    assert_eq!(r.headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["pumps"][0]["name"], EVIL_NAME);
    // An unknown pump id echoed in a 404 page is escaped too.
    let r = get(&h.app, "/pump/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!r.body.contains("<img") && r.body.contains("&lt;img src=x onerror=alert(1)&gt;"));
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let h = harness(None);
    for uri in [
        "/",
        "/pump/hp1",
        "/settings",
        "/login",
        "/api/pumps",
        "/static/app.js",
        "/nope",
        "/api/nope",
    ] {
        let r = get(&h.app, uri).await;
        assert_eq!(r.headers[CONTENT_SECURITY_POLICY], CSP, "{uri}");
        assert!(CSP.contains("script-src 'self';") && !CSP.contains("unsafe-inline"));
        assert!(CSP.contains("frame-ancestors 'none'"));
        assert_eq!(r.headers[X_CONTENT_TYPE_OPTIONS], "nosniff", "{uri}");
        assert_eq!(r.headers[REFERRER_POLICY], "same-origin", "{uri}");
    }
}

#[tokio::test]
async fn pages_have_no_inline_script_or_style_and_no_external_urls() {
    let h = harness(Some(TOKEN));
    let cookie = login(&h.app).await;
    h.app.telemetry.efficiency().publish("hp1", efficiency_days().into());
    for uri in [
        "/",
        "/pump/hp1",
        "/pump/hp1/efficiency",
        "/pump/hp2/efficiency",
        "/settings",
        "/login",
    ] {
        let r = send(
            &h.app,
            Request::get(uri).header(COOKIE, &cookie).body(Body::empty()).unwrap(),
        )
        .await;
        let b = &r.body;
        assert_eq!(b.matches("<script").count(), 1, "{uri}: only the external script");
        assert!(b.contains("<script src=\"/static/app.js?v="), "{uri}");
        assert!(
            !b.contains(" style=") && !b.contains("<style"),
            "{uri}: CSP forbids inline style"
        );
        assert!(
            !b.contains(" on") || !regex_like_handler(b),
            "{uri}: no inline event handlers"
        );
        assert!(
            !b.contains("http://") && !b.contains("https://"),
            "{uri}: no absolute URLs"
        );
        assert!(b.len() < 100_000, "{uri} is {} bytes", b.len());
    }
}

/// True when the page has an attribute like `onclick=`.
fn regex_like_handler(b: &str) -> bool {
    b.split(" on").skip(1).any(|rest| {
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        !name.is_empty() && rest[name.len()..].starts_with('=')
    })
}

#[tokio::test]
async fn the_pump_page_groups_every_field_and_offers_windows_from_5_minutes_to_24_hours() {
    let h = harness(None);
    let r = get(&h.app, "/pump/hp2?window=180&chart=heating_pressure").await;
    assert_eq!(r.status, StatusCode::OK);
    let b = &r.body;
    for g in [
        "Temperatures",
        "Pressures",
        "Power and energy",
        "Runtimes",
        "Status",
        "Parameters",
    ] {
        assert!(b.contains(&format!("<h2>{g}</h2>")), "group {g}");
    }
    for (label, w) in [("5 min", 5), ("1 h", 60), ("24 h", 1440)] {
        assert!(b.contains(&format!("<a href=\"/pump/hp2?window={w}#c\"")), "{label}");
    }
    assert!(b.contains("<a href=\"/pump/hp2?window=180#c\" aria-current=\"true\">3 h</a>"));
    assert_eq!(
        b.matches("<svg class=\"big\"").count(),
        12,
        "the asked-for chart plus the 11 numeric tiles"
    );
    let first_chart = b.find("<figure class=\"chart\">").unwrap();
    let caption = &b[first_chart..first_chart + 300];
    assert!(caption.contains("<span>Heating pressure</span>"), "{caption}");
    assert!(b.contains("<div class=\"axis\"><span>−3 h</span><span>now</span></div>"));
    assert!(
        b.contains("Compressor running: off → on <small>(after 30 min)</small>"),
        "state changes"
    );
    // A field the last poll lacked is listed as absent, not shown as a number.
    assert!(
        b.contains("Not in the last poll (1): actual_flow_temperature_nhz"),
        "{b}"
    );
}

#[tokio::test]
async fn a_bad_window_is_400_and_an_unknown_pump_404() {
    let h = harness(None);
    for w in ["4", "1441", "abc", "-5"] {
        let r = get(&h.app, &format!("/pump/hp1?window={w}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{w}");
        assert!(
            r.body
                .contains("The window must be a whole number of minutes from 5 to 1440"),
            "{}",
            r.body
        );
    }
    assert_eq!(get(&h.app, "/pump/nope").await.status, StatusCode::NOT_FOUND);
    let r = get(&h.app, "/api/pumps/hp1/history/outside_temperature?window=0").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_partial_render_is_just_the_main_section() {
    let h = harness(None);
    let r = get(&h.app, "/?partial=1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.body.contains("<html") && !r.body.contains("<head>"));
    assert!(r.body.contains("<article class=\"card"));
    let full = get(&h.app, "/").await;
    assert!(
        full.body.contains(r.body.trim()),
        "the partial is the page's main section"
    );
}

#[tokio::test]
async fn static_files_are_served_with_their_types_and_nothing_else() {
    let h = harness(None);
    for (f, ty) in [
        ("style.css", "text/css"),
        ("app.js", "text/javascript"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let r = get(&h.app, &format!("/static/{f}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.headers[CONTENT_TYPE].to_str().unwrap().starts_with(ty));
    }
    assert_eq!(get(&h.app, "/static/../Cargo.toml").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&h.app, "/static/secret.txt").await.status, StatusCode::NOT_FOUND);
    let r = get(&h.app, "/nowhere").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("There is no page at this address."));
    let r = get(&h.app, "/api/nowhere").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.starts_with("{\"error\":"));
    let r = send(&h.app, Request::delete("/settings").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_api_gives_pumps_one_pump_states_with_since_and_history() {
    let h = harness(None);
    let r = get(&h.app, "/api/pumps").await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let hp2 = &v["pumps"][1];
    assert_eq!(hp2["id"], "hp2");
    assert_eq!(hp2["online"], true);
    assert_eq!(hp2["fault"], true);
    assert_eq!(hp2["mode"], "Programmed operation");
    assert_eq!(hp2["values"]["actual_dhw_temperature"], 48.5);
    assert_eq!(hp2["last_poll"], "2025-06-15T15:06:40.000Z");

    let r = get(&h.app, "/api/pumps/hp2").await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let field = |n: &str| {
        v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(field("outside_temperature")["unit"], "celsius");
    assert_eq!(field("outside_temperature")["group"], "Temperatures");
    assert_eq!(field("operating_mode")["text"], "Programmed operation");

    let r = get(&h.app, "/api/pumps/hp2/states").await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let state = |n: &str| {
        v["states"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(state("compressor_running")["since"], "2025-06-15T14:06:40.000Z");
    assert_eq!(state("compressor_running")["text"], "on");
    assert_eq!(state("hc1_pump")["since"], serde_json::Value::Null);
    assert_eq!(state("hc1_pump")["since_known"], false);

    let r = get(&h.app, "/api/pumps/hp2/history/outside_temperature?window=5").await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["resolution_seconds"], 0);
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 31, "5 minutes of 10-second polls, both ends included");
    assert_eq!(points.last().unwrap(), &serde_json::json!([NOW * 1000, 5.79]));
    let r = get(&h.app, "/api/pumps/hp2/history/outside_temperature?window=1440").await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        v["points"].as_array().unwrap().len(),
        180,
        "a young series answers from raw polls"
    );

    assert_eq!(get(&h.app, "/api/pumps/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&h.app, "/api/pumps/nope/states").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&h.app, "/api/pumps/hp1/history/nope").await.status,
        StatusCode::NOT_FOUND
    );
    let r = get(&h.app, "/api/settings").await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["version"], 0);
    assert_eq!(v["auth_enabled"], false);
    assert_eq!(v["poll_intervals"][0]["source"], "heatpumps");
}

#[tokio::test]
async fn without_a_token_settings_are_read_only_and_the_page_says_how_to_enable_them() {
    let h = harness(None);
    let r = get(&h.app, "/settings").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .body
        .contains("Settings are read-only: no admin token is configured. Set the HPFLOW_ADMIN_TOKEN"));
    assert!(r.body.contains("<fieldset disabled>"));
    let r = send(
        &h.app,
        form("/settings", &settings_form(0, "30", "10"), &[(ORIGIN, SAME)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(&h.app, put_json(r#"{"version":0}"#, &[(AUTHORIZATION, &bearer())])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(&h.app, form("/login", "token=anything", &[(ORIGIN, SAME)])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!h.settings_path().exists());
}

#[tokio::test]
async fn changes_need_the_admin_token() {
    let h = harness(Some(TOKEN));
    let r = get(&h.app, "/settings").await;
    assert!(r.body.contains("Log in with the admin token to change these settings."));
    let r = send(
        &h.app,
        form("/settings", &settings_form(0, "30", "10"), &[(ORIGIN, SAME)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("Log in with the admin token to change settings."));
    let r = send(
        &h.app,
        form(
            "/settings",
            &settings_form(0, "30", "10"),
            &[(ORIGIN, SAME), (COOKIE, "hpflow_dash_session=forged")],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(&h.app, put_json(r#"{"version":0}"#, &[])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let r = send(&h.app, put_json(r#"{"version":0}"#, &[(AUTHORIZATION, "Bearer wrong")])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!h.settings_path().exists());
}

#[tokio::test]
async fn login_sets_an_httponly_strict_session_cookie_that_is_not_the_token() {
    let h = harness(Some(TOKEN));
    let r = get(&h.app, "/login").await;
    assert!(r.body.contains("type=\"password\" name=\"token\""));
    let r = send(&h.app, form("/login", "token=wrong", &[(ORIGIN, SAME)])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("The admin token is wrong."));
    assert!(r.headers.get(SET_COOKIE).is_none());
    let r = send(&h.app, form("/login", &format!("token={TOKEN}"), &[(ORIGIN, SAME)])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers[LOCATION], "/settings");
    let cookie = r.headers[SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("; HttpOnly") && cookie.contains("; SameSite=Strict") && cookie.contains("Path=/"));
    assert!(!cookie.contains(TOKEN));
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = send(
        &h.app,
        Request::get("/settings")
            .header(COOKIE, &pair)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(!r.body.contains("<fieldset disabled>") && r.body.contains("Log out"));
    let r = send(&h.app, form("/logout", "", &[(ORIGIN, SAME), (COOKIE, &pair)])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.headers[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let r = send(
        &h.app,
        form(
            "/settings",
            &settings_form(0, "30", "10"),
            &[(ORIGIN, SAME), (COOKIE, &pair)],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the session ended");
}

#[tokio::test]
async fn changes_from_another_origin_are_refused() {
    let h = harness(Some(TOKEN));
    let cookie = login(&h.app).await;
    let body = settings_form(0, "30", "10");
    let cases: [&[(axum::http::HeaderName, &str)]; 4] = [
        &[(ORIGIN, "http://evil.example")],
        &[(ORIGIN, "null")],
        &[(REFERER, "http://evil.example/page")],
        &[],
    ];
    for extra in cases {
        let mut headers = vec![(COOKIE, cookie.as_str())];
        headers.extend_from_slice(extra);
        let r = send(&h.app, form("/settings", &body, &headers)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{extra:?}");
        assert!(r.body.contains("Refused a change sent from another site"), "{}", r.body);
    }
    let r = send(
        &h.app,
        form("/login", &format!("token={TOKEN}"), &[(ORIGIN, "http://evil.example")]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &h.app,
        form("/logout", "", &[(ORIGIN, "http://evil.example"), (COOKIE, &cookie)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &h.app,
        put_json(
            r#"{"version":0}"#,
            &[(AUTHORIZATION, &bearer()), (ORIGIN, "http://evil.example")],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The same origin named by Referer alone is fine.
    let r = send(
        &h.app,
        form(
            "/settings",
            &body,
            &[(COOKIE, &cookie), (REFERER, "http://dash.test:8080/settings")],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(h.app.settings().version, 1);
}

#[tokio::test]
async fn a_saved_form_persists_atomically_keeps_comments_and_sets_the_poll_interval_live() {
    let hand = "# kitchen tablet\nversion = 4\nrefresh_interval_seconds = 30 # slow wifi\nsparkline_minutes = 60\n";
    let h = harness_with(Some(TOKEN), DashboardConfig::default(), |dir| {
        let path = state_dir(dir, "dash").join("settings.toml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, hand).unwrap();
    });
    let cookie = login(&h.app).await;
    let body = format!(
        "{}&pump.hp1.sparkline_minutes=120&pump.hp1.visible_fields=actual_dhw_temperature%0D%0Aoutside_temperature",
        settings_form(4, "30", "15")
    );
    let r = send(&h.app, form("/settings", &body, &[(COOKIE, &cookie), (ORIGIN, SAME)])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers[LOCATION], "/settings?saved=1");
    let text = std::fs::read_to_string(h.settings_path()).unwrap();
    assert!(text.starts_with("# kitchen tablet\nversion = 5\n"), "{text}");
    assert!(text.contains("refresh_interval_seconds = 15 # slow wifi"), "{text}");
    assert!(text.contains("poll_interval_seconds = 30"));
    assert!(text.contains("[pumps.hp1]\nsparkline_minutes = 120"), "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(h.settings_path().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(
        h.control.poll_intervals(),
        vec![("heatpumps".to_string(), Duration::from_secs(30))]
    );
    // It takes effect on the pages: tile order, window, refresh.
    let r = get(&h.app, "/").await;
    assert!(r.body.contains("data-refresh=\"15\""));
    let hp1 = &r.body[r.body.find("id=\"pump-hp1\"").unwrap()..r.body.find("id=\"pump-hp2\"").unwrap()];
    assert!(hp1.find("Actual DHW temperature").unwrap() < hp1.find("Outside temperature").unwrap());
    assert!(!hp1.contains("Actual return temperature"));
    assert!(hp1.contains("Sparklines: last 2 h"));
    let r = get(&h.app, "/settings?saved=1").await;
    assert!(r.body.contains("Saved (version 5)."));
    // Clearing the override gives the sources their own interval back.
    let r = send(
        &h.app,
        form(
            "/settings",
            &settings_form(5, "", "15"),
            &[(COOKIE, &cookie), (ORIGIN, SAME)],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        h.control.poll_intervals(),
        vec![("heatpumps".to_string(), Duration::from_secs(10))]
    );
    assert!(!std::fs::read_to_string(h.settings_path())
        .unwrap()
        .contains("poll_interval_seconds"));
}

#[tokio::test]
async fn a_source_registered_after_the_dashboard_is_built_is_shown_and_gets_its_own_interval_back() {
    let dir = tempfile::tempdir().unwrap();
    let control = Arc::new(Control::default());
    // The dashboard first, the source after it: the other order than `harness`.
    let app = Arc::new(build(dir.path(), &control, Some(TOKEN), DashboardConfig::default()));
    let _rx = control.poll_interval("heatpumps", Duration::from_secs(10));
    let ten = serde_json::json!([{ "source": "heatpumps", "seconds": 10.0 }]);
    let r = get(&app, "/api/settings").await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["poll_intervals"], ten);
    assert!(get(&app, "/settings").await.body.contains("Now: heatpumps every 10 s."));

    // An override, then clearing it: the source gets the interval it registered back.
    let cookie = login(&app).await;
    for (version, poll, now) in [(0, "30", 30), (1, "", 10)] {
        let body = settings_form(version, poll, "10");
        let r = send(&app, form("/settings", &body, &[(COOKIE, &cookie), (ORIGIN, SAME)])).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let page = get(&app, "/settings").await.body;
        assert!(page.contains(&format!("Now: heatpumps every {now} s.")), "{page}");
    }
    assert_eq!(
        control.poll_intervals(),
        vec![("heatpumps".to_string(), Duration::from_secs(10))]
    );
    let r = get(&app, "/api/settings").await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["poll_intervals"], ten);
}

#[tokio::test]
async fn invalid_settings_are_explained_and_nothing_is_saved() {
    let h = harness(Some(TOKEN));
    let cookie = login(&h.app).await;
    let body = format!(
        "{}&pump.hp1.sparkline_minutes=9999&pump.hp1.visible_fields=outside_temperature%0Anot_a_field",
        settings_form(0, "3", "ten")
    );
    let r = send(&h.app, form("/settings", &body, &[(COOKIE, &cookie), (ORIGIN, SAME)])).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body
            .contains("The refresh interval must be a whole number (got `ten`)."),
        "{}",
        r.body
    );
    assert!(!h.settings_path().exists());
    assert!(r.body.contains("value=\"ten\""), "what was typed is shown again");
    let body = format!(
        "{}&pump.hp1.sparkline_minutes=9999&pump.hp1.visible_fields=outside_temperature%0Anot_a_field",
        settings_form(0, "3", "10")
    );
    let r = send(&h.app, form("/settings", &body, &[(COOKIE, &cookie), (ORIGIN, SAME)])).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    for msg in [
        "The poll interval must be between 5 and 120 seconds (got 3).",
        "The sparkline window of `hp1` must be between 5 and 1440 minutes (got 9999).",
        "`hp1` has no field `not_a_field`; pick names from the list of its fields.",
    ] {
        assert!(r.body.contains(msg), "missing: {msg}\n{}", r.body);
    }
    assert!(r.body.contains("aria-invalid=\"true\""));
    assert!(!h.settings_path().exists());
    assert_eq!(h.control.poll_intervals()[0].1, Duration::from_secs(10));
    let r = send(
        &h.app,
        put_json(
            r#"{"version":0,"refresh_interval_seconds":500}"#,
            &[(AUTHORIZATION, &bearer())],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["errors"][0]["key"], "refresh_interval_seconds");
    let r = send(
        &h.app,
        put_json(r#"{"version":0,"bogus":1}"#, &[(AUTHORIZATION, &bearer())]),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("bogus"));
}

#[tokio::test]
async fn a_form_based_on_an_old_version_gets_409_and_loses_nothing() {
    let h = harness(Some(TOKEN));
    let cookie = login(&h.app).await;
    let headers = [(COOKIE, cookie.as_str()), (ORIGIN, SAME)];
    let first = send(&h.app, form("/settings", &settings_form(0, "20", "10"), &headers)).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    let second = send(&h.app, form("/settings", &settings_form(0, "90", "10"), &headers)).await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert!(second
        .body
        .contains("Not saved: the settings were changed elsewhere (now version 1, your form was version 0)"));
    assert!(
        second.body.contains("name=\"version\" value=\"1\""),
        "the form now carries the current version"
    );
    assert!(
        second.body.contains("value=\"20\""),
        "and shows the other person's change"
    );
    let text = std::fs::read_to_string(h.settings_path()).unwrap();
    assert!(text.contains("poll_interval_seconds = 20"));
    assert_eq!(h.control.poll_intervals()[0].1, Duration::from_secs(20));
}

#[tokio::test]
async fn concurrent_saves_through_the_api_let_exactly_one_win() {
    let h = harness(Some(TOKEN));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let app = h.app.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!(r#"{{"version":0,"refresh_interval_seconds":{}}}"#, 10 + i);
            send(&app, put_json(&body, &[(AUTHORIZATION, &bearer())])).await
        }));
    }
    let mut ok = 0;
    let mut conflicts = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => {
                conflicts += 1;
                assert!(r.body.contains("changed elsewhere"));
            }
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    assert_eq!((ok, conflicts), (1, 7));
    let saved: settings::Settings = toml::from_str(&std::fs::read_to_string(h.settings_path()).unwrap()).unwrap();
    assert_eq!(saved.version, 1);
    assert_eq!(saved, *h.app.settings());
    // A client that read version 1 may save; GET's extra keys may come back unchanged.
    let r = get(&h.app, "/api/settings").await;
    let mut v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    v["sparkline_minutes"] = 240.into();
    let r = send(&h.app, put_json(&v.to_string(), &[(AUTHORIZATION, &bearer())])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(h.app.settings().sparkline_minutes, 240);
    assert_eq!(h.app.settings().version, 2);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let h = harness(Some(TOKEN));
    let cookie = login(&h.app).await;
    let body = format!(
        "{}&pump.hp1.visible_fields={}",
        settings_form(0, "", "10"),
        "x".repeat(BODY_LIMIT)
    );
    let r = send(&h.app, form("/settings", &body, &[(COOKIE, &cookie), (ORIGIN, SAME)])).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!h.settings_path().exists());
}

#[tokio::test]
async fn hpmanagers_display_file_gives_the_initial_settings() {
    let config = DashboardConfig {
        display: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sinks/dashboard/testdata/display.yml")),
        ..DashboardConfig::default()
    };
    let h = harness_with(None, config, |_| {});
    let s = h.app.settings();
    assert_eq!(s.refresh_interval_seconds, 10);
    assert_eq!(s.visible_fields("hp2").unwrap().len(), 11);
    let r = get(&h.app, "/").await;
    let hp2 = &r.body[r.body.find("id=\"pump-hp2\"").unwrap()..];
    assert!(!hp2.contains("Actual DHW temperature"), "hp2's list has no DHW tiles");
}

#[tokio::test]
async fn a_flat_visible_fields_list_in_display_yml_leaves_every_pump_its_default_tiles() {
    // HPManager's older format: one list for no pump in particular, which it ignored.
    let config = DashboardConfig {
        display: Some("display.yml".into()),
        ..DashboardConfig::default()
    };
    let h = harness_with(None, config.clone(), |dir| {
        std::fs::write(
            dir.join("display.yml"),
            "refresh_interval: 15\nvisible_fields: [actual_dhw_temperature]\n",
        )
        .unwrap();
    });
    let mut cx = crate::component::Check::new("dash", h.dir.path(), h.dir.path(), &[]);
    config.check(&mut cx);
    assert!(cx.problems.is_empty(), "{:#?}", cx.problems);
    let s = h.app.settings();
    assert_eq!(s.refresh_interval_seconds, 15);
    assert!(s.pumps.is_empty(), "{s:?}");
    let card = |body: &str| {
        let start = body.find("id=\"pump-hp1\"").expect("hp1's card");
        let end = body.find("id=\"pump-hp2\"").expect("hp2's card");
        body[start..end].to_string()
    };
    let r = get(&h.app, "/").await;
    assert_eq!(r.status, StatusCode::OK);
    let plain = harness(None);
    assert_eq!(card(&r.body), card(&get(&plain.app, "/").await.body));
}

#[tokio::test]
async fn a_silent_pump_turns_offline_and_its_history_survives_a_restart() {
    let h = harness(None);
    assert_eq!(h.app.save_history().map(|n| n > 0).ok(), Some(true));
    // The same folder, an hour later, before any new poll.
    let control = Arc::new(Control::default());
    let later = || UNIX_EPOCH + Duration::from_secs(NOW + 3600);
    let app = DashboardConfig {
        allowed_hosts: vec!["dash.test".into()],
        ..DashboardConfig::default()
    }
    .app("dash", h.dir.path(), h.dir.path(), &[wpm()], &control, None, None)
    .unwrap()
    .with_clock(Arc::new(later), TimeZone::UTC);
    app.restore_history();
    let app = Arc::new(app);
    let r = get(&app, "/").await;
    assert!(r.body.contains("<b>offline</b>"));
    assert!(r.body.contains("last poll 1 h ago, before a restart"), "{}", r.body);
    assert!(
        r.body.contains("Programmed operation"),
        "restored values keep their labels"
    );
    let r = get(&app, "/api/pumps/hp1/history/outside_temperature?window=120").await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["points"].as_array().unwrap().len(), 180);
}

#[test]
fn the_documented_sample_config_parses() {
    let doc = include_str!("mod.rs");
    let start = doc.find("//! ```toml\n").expect("a TOML sample") + "//! ```toml\n".len();
    let end = start + doc[start..].find("//! ```").unwrap();
    let text: String = doc[start..end]
        .lines()
        .map(|l| l.strip_prefix("//!").unwrap_or(l).trim_start_matches(' ').to_string() + "\n")
        .collect();
    let mut table: toml::Table = toml::from_str(&text).expect("the sample is TOML");
    let mut section = table.remove("sinks").unwrap()["dashboard"].as_table().unwrap().clone();
    assert_eq!(section.remove("type").unwrap().as_str(), Some("dashboard"));
    section.remove("inputs");
    let config: DashboardConfig = toml::Value::Table(section)
        .try_into()
        .expect("the sample's keys are known");
    assert_eq!(config.address, "127.0.0.1:8080");
    assert_eq!(config.persist_interval, Duration::from_secs(600));
}

#[test]
fn config_problems_are_reported_by_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty-token"), "\n").unwrap();
    std::fs::write(dir.path().join("display.yml"), "refresh_interval: 1\n").unwrap();
    let config: DashboardConfig = toml::from_str(
        r#"
address = "localhost"
display = "display.yml"
admin_token_file = "empty-token"
trusted_origins = ["heat.example.org"]
max_pumps = 0
"#,
    )
    .unwrap();
    let mut cx = crate::component::Check::new("dash", dir.path(), dir.path(), &[]);
    config.check(&mut cx);
    let mut problems: Vec<String> = cx
        .problems
        .iter()
        .map(|p| match p {
            crate::component::Problem::Error { key, message } => {
                format!("{}: {message}", key.as_deref().unwrap_or("-"))
            }
            other => format!("{other:?}"),
        })
        .collect();
    problems.sort();
    assert_eq!(problems.len(), 5, "{problems:#?}");
    assert!(
        problems[0].starts_with("address: `localhost` is not a listen address"),
        "{problems:#?}"
    );
    assert!(problems[1].contains("admin token file") && problems[1].contains("is empty"));
    assert!(
        problems[2].starts_with("display: ") && problems[2].contains("The refresh interval must be between 5 and 120")
    );
    assert!(problems[3].starts_with("max_pumps: "));
    assert!(problems[4].starts_with("trusted_origins[0]: `heat.example.org` is not an origin"));
    let bad_key = toml::from_str::<DashboardConfig>("adress = \"127.0.0.1:1\"").unwrap_err();
    assert!(bad_key.to_string().contains("unknown field `adress`"));
}

#[tokio::test]
async fn a_refused_reload_is_shown_on_every_page_until_one_is_applied() {
    let h = harness(None);
    let registry = Arc::new(crate::telemetry::Registry::default());
    let app =
        Arc::new(build(h.dir.path(), &h.control, None, DashboardConfig::default()).with_telemetry(registry.clone()));
    assert!(!get(&app, "/").await.body.contains("Configuration reload refused"));
    registry
        .reloads()
        .refused("heatpumps.yml:3:11: error: sources.pumps: <unclosed> flow sequence".to_string());
    for page in ["/", "/settings"] {
        let body = get(&app, page).await.body;
        assert!(body.contains("Configuration reload refused"), "{page}: {body}");
        assert!(
            body.contains("heatpumps.yml:3:11: error: sources.pumps: &lt;unclosed&gt; flow sequence"),
            "{page}: the error, escaped: {body}"
        );
    }
    registry.reloads().applied(true);
    let body = get(&app, "/").await.body;
    assert!(!body.contains("Configuration reload refused"), "{body}");
    assert!(body.contains("waits for a restart"), "{body}");
}

// The heat pump inventory API.

struct Pumps {
    h: Harness,
    path: PathBuf,
}

impl Pumps {
    fn text(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap()
    }

    fn entries(&self) -> Vec<crate::hpmanager::heatpumps::HeatpumpEntry> {
        crate::hpmanager::heatpumps::parse(&self.path, &self.text())
            .expect("the inventory reader reads what the API wrote")
            .heatpumps
    }
}

fn pumps(token: Option<&str>) -> Pumps {
    let registers = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/registers.yml");
    let config = DashboardConfig {
        inventory: Some("heatpumps.yml".into()),
        registers: Some(registers),
        ..DashboardConfig::default()
    };
    // The shipped example: hp1 with HPManager's retry keys, and comments.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/heatpumps.yml");
    let h = harness_with(token, config, |dir| {
        std::fs::copy(&shipped, dir.join("heatpumps.yml")).unwrap();
    });
    let path = h.dir.path().join("heatpumps.yml");
    Pumps { h, path }
}

fn json_request(method: &str, uri: &str, body: &str, headers: &[(axum::http::HeaderName, &str)]) -> Request<Body> {
    let mut r = Request::builder()
        .method(method)
        .uri(uri)
        .header(HOST, HOST_NAME)
        .header(CONTENT_TYPE, "application/json");
    for (k, v) in headers {
        r = r.header(k, *v);
    }
    r.body(Body::from(body.to_string())).unwrap()
}

async fn as_admin(app: &Arc<App>, method: &str, uri: &str, body: &str) -> Reply {
    send(app, json_request(method, uri, body, &[(AUTHORIZATION, &bearer())])).await
}

fn parsed(r: &Reply) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

const NEW_PUMP: &str = r#"{"id": "hp2", "name": "Heat Pump 2", "location": "Cellar & loft",
    "model": "stiebel_eltron_wpm", "modbus": {"host": "192.0.2.11", "port": 5020, "unit_id": 2}}"#;

#[tokio::test]
async fn a_created_heat_pump_is_listed_and_written_in_hpmanagers_format() {
    let p = pumps(Some(TOKEN));
    let r = as_admin(&p.h.app, "POST", "/api/heatpumps", NEW_PUMP).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let v = parsed(&r);
    assert_eq!(v["message"], "Heat pump created successfully");
    assert_eq!(v["requires_restart"], false);
    assert_eq!(v["heat_pump"]["modbus"]["port"], 5020);
    assert!(r.headers.contains_key("etag"));

    let r = get(&p.h.app, "/api/heatpumps").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = parsed(&r);
    let list = v["heat_pumps"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v:#}");
    assert_eq!(list[0]["id"], "hp1");
    // hp1 has reported to this dashboard: its latest values come along.
    assert_eq!(list[0]["data"]["actual_dhw_temperature"], 48.5);
    assert_eq!(list[1]["id"], "hp2");
    assert_eq!(list[1]["enabled"], true);
    assert_eq!(list[1]["modbus"]["type"], "tcp");
    let r = get(&p.h.app, "/api/heatpumps/hp2").await;
    assert_eq!(parsed(&r)["location"], "Cellar & loft");

    let entries = p.entries();
    assert_eq!(entries.len(), 2);
    let hp2 = &entries[1];
    assert_eq!(hp2.name.as_deref(), Some("Heat Pump 2"));
    assert_eq!(hp2.model.as_deref(), Some("stiebel_eltron_wpm"));
    let mb = hp2.modbus.as_ref().unwrap();
    assert_eq!(
        (
            mb.kind.as_deref(),
            mb.host.as_deref(),
            mb.port.as_ref().and_then(|p| p.as_i64()),
            mb.unit_id
        ),
        (Some("tcp"), Some("192.0.2.11"), Some(5020), Some(2))
    );
    // hp1 is kept as it was, HPManager's retry keys included; keys in HPManager's order.
    assert!(p.text().contains("    retries: 3\n"), "{}", p.text());
    assert!(
        p.text().contains(
            "- id: hp2\n  name: Heat Pump 2\n  location: Cellar & loft\n  model: stiebel_eltron_wpm\n  enabled: true\n  modbus:\n    type: tcp\n    host: 192.0.2.11\n    port: 5020\n    unit_id: 2\n"
        ),
        "{}",
        p.text()
    );
}

#[tokio::test]
async fn bad_heat_pumps_are_refused_by_field_and_nothing_is_written() {
    let p = pumps(Some(TOKEN));
    let before = std::fs::read(&p.path).unwrap();
    let pump = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(NEW_PUMP).unwrap();
        edit(&mut v);
        v.to_string()
    };
    let cases: Vec<(String, StatusCode, &str, &str)> = vec![
        (
            pump(&|v| v["id"] = "hp1".into()),
            StatusCode::CONFLICT,
            "id",
            "heat pump id `hp1` is used twice",
        ),
        (
            pump(&|v| v["model"] = "acme_9000".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "model",
            "heat pump `hp2`: unknown model `acme_9000`; the register map has: stiebel_eltron_wpm",
        ),
        (
            pump(&|v| v["modbus"]["port"] = 70000.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "modbus.port",
            "heat pump `hp2`: `port` must be 1-65535, not 70000",
        ),
        (
            pump(&|v| v["modbus"]["port"] = 0.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "modbus.port",
            "heat pump `hp2`: `port` must be 1-65535, not 0",
        ),
        (
            pump(&|v| v["modbus"]["unit_id"] = 248.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "modbus.unit_id",
            "heat pump `hp2`: `unit_id` must be 0-247, not 248",
        ),
        (
            pump(&|v| v["name"] = EVIL_NAME.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
            "heat pump `hp2`: `name` must be plain text, without `<`, `>` or control characters",
        ),
        (
            pump(&|v| v["location"] = "a > b".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "location",
            "heat pump `hp2`: `location` must be plain text, without `<`, `>` or control characters",
        ),
        (
            pump(&|v| v["modbus"]["host"] = "".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "modbus.host",
            "heat pump `hp2` needs `modbus.host`",
        ),
        (
            pump(&|v| v["id"] = "hp 2".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "id",
            "`id` must be lowercase letters, digits, `_` and `-`, starting with a letter or digit, not `hp 2`",
        ),
        (
            pump(&|v| v["modbus"]["prot"] = 502.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "modbus.prot",
            "unknown key `prot`; `modbus` has type, host, port, unit_id, timeout, retries, retry_delay",
        ),
    ];
    for (body, status, field, message) in cases {
        let r = as_admin(&p.h.app, "POST", "/api/heatpumps", &body).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        let v = parsed(&r);
        let errors = v["errors"].as_array().unwrap_or_else(|| panic!("{v:#}"));
        assert!(
            errors.iter().any(|e| e["field"] == field && e["message"] == message),
            "{body}: {v:#}"
        );
        assert!(v["detail"].as_str().unwrap().contains(message), "{v:#}");
        assert_eq!(std::fs::read(&p.path).unwrap(), before, "{body} changed the file");
    }
    // The same checks on a replacement and a patch.
    let r = as_admin(
        &p.h.app,
        "PATCH",
        "/api/heatpumps/hp1",
        r#"{"modbus": {"port": 99999}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(parsed(&r)["errors"][0]["field"], "modbus.port");
    let r = as_admin(
        &p.h.app,
        "PUT",
        "/api/heatpumps/hp1",
        &pump(&|v| v["modbus"]["unit_id"] = (-1).into()),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = as_admin(&p.h.app, "POST", "/api/heatpumps", "{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = as_admin(&p.h.app, "PUT", "/api/heatpumps/nope", NEW_PUMP).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(std::fs::read(&p.path).unwrap(), before);
}

#[tokio::test]
async fn heat_pump_changes_need_the_admin_token_and_the_same_origin() {
    let p = pumps(Some(TOKEN));
    let before = std::fs::read(&p.path).unwrap();
    let app = &p.h.app;
    let r = send(app, json_request("POST", "/api/heatpumps", NEW_PUMP, &[])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let wrong = [(AUTHORIZATION, "Bearer wrong")];
    let r = send(app, json_request("DELETE", "/api/heatpumps/hp1", "", &wrong)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let cookie = login(app).await;
    let cross = [(COOKIE, cookie.as_str()), (ORIGIN, "http://evil.example")];
    let r = send(app, json_request("POST", "/api/heatpumps", NEW_PUMP, &cross)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = send(
        app,
        json_request("PATCH", "/api/heatpumps/hp1", r#"{"enabled": false}"#, &cross),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let no_origin = [(COOKIE, cookie.as_str())];
    let r = send(app, json_request("DELETE", "/api/heatpumps/hp1", "", &no_origin)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(std::fs::read(&p.path).unwrap(), before);
    // The logged-in page's own origin may.
    let same = [(COOKIE, cookie.as_str()), (ORIGIN, SAME)];
    let r = send(app, json_request("POST", "/api/heatpumps", NEW_PUMP, &same)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    let p = pumps(None);
    let r = as_admin(&p.h.app, "POST", "/api/heatpumps", NEW_PUMP).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(std::fs::read(&p.path).unwrap(), before);
}

#[tokio::test]
async fn patch_changes_only_the_keys_given_and_delete_removes() {
    let p = pumps(Some(TOKEN));
    let r = as_admin(
        &p.h.app,
        "PATCH",
        "/api/heatpumps/hp1",
        r#"{"name": "Garage pump", "modbus": {"port": 5020}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(parsed(&r)["heat_pump"]["modbus"]["host"], "192.0.2.10");
    let hp1 = &p.entries()[0];
    assert_eq!(hp1.name.as_deref(), Some("Garage pump"));
    assert_eq!(hp1.location.as_deref(), Some("Garage"));
    let mb = hp1.modbus.as_ref().unwrap();
    assert_eq!(mb.port.as_ref().and_then(|p| p.as_i64()), Some(5020));
    assert_eq!(
        (mb.host.as_deref(), mb.unit_id, mb.timeout),
        (Some("192.0.2.10"), Some(1), Some(5.0))
    );
    assert!(
        p.text().contains("    retries: 3\n    retry_delay: 1.0\n"),
        "{}",
        p.text()
    );

    let r = as_admin(&p.h.app, "PUT", "/api/heatpumps/hp1", NEW_PUMP).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(p.entries().len(), 1);
    assert_eq!(crate::yaml::scalar(&p.entries()[0].id).as_deref(), Some("hp2"));
    assert!(
        !p.text().contains("retries"),
        "a replacement is the whole entry: {}",
        p.text()
    );

    let r = as_admin(&p.h.app, "DELETE", "/api/heatpumps/hp2", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(parsed(&r)["message"], "Heat pump 'Heat Pump 2' deleted successfully");
    assert!(p.entries().is_empty());
    let r = as_admin(&p.h.app, "DELETE", "/api/heatpumps/hp2", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = get(&p.h.app, "/api/heatpumps/hp2").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_change_based_on_an_old_version_gets_412_and_concurrent_creates_all_land() {
    let p = pumps(Some(TOKEN));
    let etag = get(&p.h.app, "/api/heatpumps").await.headers["etag"]
        .to_str()
        .unwrap()
        .to_string();
    let r = as_admin(&p.h.app, "PATCH", "/api/heatpumps/hp1", r#"{"enabled": false}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    let before = std::fs::read(&p.path).unwrap();
    let stale = [(AUTHORIZATION, bearer()), (IF_MATCH_NAME, etag)];
    let stale: Vec<(axum::http::HeaderName, &str)> = stale.iter().map(|(k, v)| (k.clone(), v.as_str())).collect();
    let r = send(
        &p.h.app,
        json_request("PATCH", "/api/heatpumps/hp1", r#"{"enabled": true}"#, &stale),
    )
    .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.body);
    assert_eq!(std::fs::read(&p.path).unwrap(), before);

    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let app = p.h.app.clone();
            tokio::spawn(async move {
                let body = NEW_PUMP.replace("\"hp2\"", &format!("\"hp{}\"", i + 10));
                as_admin(&app, "POST", "/api/heatpumps", &body).await.status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::CREATED);
    }
    assert_eq!(p.entries().len(), 9);
}

const IF_MATCH_NAME: axum::http::HeaderName = axum::http::header::IF_MATCH;

#[tokio::test]
async fn models_and_registers_come_from_the_register_map_and_without_it_the_routes_say_what_to_set() {
    let p = pumps(None);
    let v = parsed(&get(&p.h.app, "/api/models").await);
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{v:#}");
    assert_eq!(models[0]["name"], "stiebel_eltron_wpm");
    assert!(models[0]["register_count"].as_u64().unwrap() > 50, "{v:#}");
    let r = get(&p.h.app, "/api/registers/stiebel_eltron_wpm").await;
    let v = parsed(&r);
    let fields = v["fields"].as_array().unwrap();
    let outside = fields.iter().find(|f| f["name"] == "outside_temperature").unwrap();
    assert_eq!(outside["category"], "Temperatures");
    assert_eq!(outside["unit"], "celsius");
    assert_eq!(get(&p.h.app, "/api/registers/acme").await.status, StatusCode::NOT_FOUND);

    let h = harness(Some(TOKEN));
    for uri in [
        "/api/heatpumps",
        "/api/heatpumps/hp1",
        "/api/models",
        "/api/registers/stiebel_eltron_wpm",
    ] {
        let r = get(&h.app, uri).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        let v = parsed(&r);
        let e = v["error"].as_str().unwrap();
        assert!(e.contains("set `") && e.contains("registers"), "{uri}: {e}");
    }
    let r = as_admin(&h.app, "POST", "/api/heatpumps", NEW_PUMP).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(parsed(&r)["error"].as_str().unwrap().contains("`inventory`"));
}

#[test]
fn the_inventory_is_checked_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.yml"), "heatpumps:\n- id: [\n").unwrap();
    let check = |toml_text: &str| {
        let config: DashboardConfig = toml::from_str(toml_text).unwrap();
        let mut cx = crate::component::Check::new("dash", dir.path(), dir.path(), &[]);
        config.check(&mut cx);
        cx.problems
            .iter()
            .map(|p| match p {
                crate::component::Problem::Error { key, message } => {
                    format!("{}: {message}", key.as_deref().unwrap_or("-"))
                }
                crate::component::Problem::External(d) => d.to_string(),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
    };
    let p = check("inventory = \"missing.yml\"");
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(
        p[0].starts_with("inventory: `inventory` needs `registers` too"),
        "{p:#?}"
    );
    assert!(p[1].starts_with("inventory: cannot read the inventory "), "{p:#?}");
    let registers = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/registers.yml");
    let p = check(&format!("inventory = \"broken.yml\"\nregisters = {:?}", registers));
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].contains("broken.yml:"), "{p:#?}");
    let p = check(&format!(
        "inventory = {:?}\nregisters = {:?}",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/heatpumps.yml"),
        registers
    ));
    assert!(p.is_empty(), "{p:#?}");
}

// The heat pump pages: the same checks and writes as the API, through forms.

const PUMP_FORM: &str = "version=&id=hp2&name=Attic+%26+loft&location=Loft&model=stiebel_eltron_wpm\
                         &host=192.0.2.11&port=5020&unit_id=2&enabled=on";

async fn get_as(app: &Arc<App>, uri: &str, cookie: &str) -> Reply {
    let req = Request::get(uri).header(HOST, HOST_NAME).header(COOKIE, cookie);
    send(app, req.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn a_heat_pump_added_through_the_form_is_written_listed_edited_disabled_and_deleted() {
    let p = pumps(Some(TOKEN));
    let app = &p.h.app;
    let r = get(app, "/").await;
    assert!(
        r.body.contains(r#"<a href="/heatpumps">Heat pumps</a>"#),
        "the nav links the page"
    );
    let cookie = login(app).await;
    let admin = [(COOKIE, cookie.as_str()), (ORIGIN, SAME)];
    let r = send(app, form("/heatpumps", PUMP_FORM, &admin)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers[LOCATION], "/heatpumps?done=added&id=hp2");
    let entries = p.entries();
    assert_eq!(entries.len(), 2);
    let hp2 = &entries[1];
    assert_eq!(
        (hp2.id.as_str(), hp2.name.as_deref(), hp2.enabled),
        (Some("hp2"), Some("Attic & loft"), true)
    );
    let mb = hp2.modbus.as_ref().unwrap();
    assert_eq!(
        (
            mb.host.as_deref(),
            mb.port.as_ref().and_then(|p| p.as_i64()),
            mb.unit_id
        ),
        (Some("192.0.2.11"), Some(5020), Some(2))
    );

    let r = get_as(app, "/heatpumps?done=added&id=hp2", &cookie).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Heat pump hp2 added."), "{}", r.body);
    assert!(
        r.body.contains("<td class=\"name\">Attic &amp; loft</td>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<td>192.0.2.11:5020</td>"), "{}", r.body);
    assert!(r.body.contains(r#"action="/heatpumps/hp2/delete""#), "{}", r.body);
    assert!(r.body.contains(r#"<option value="stiebel_eltron_wpm""#), "{}", r.body);

    // The edit form is filled from the file; a change keeps what the form does not show.
    let r = get_as(app, "/heatpumps/hp1/edit", &cookie).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains(r#"action="/heatpumps/hp1""#), "{}", r.body);
    assert!(r.body.contains(r#"name="host" value="192.0.2.10""#), "{}", r.body);
    let edit =
        "version=&id=hp1&name=Renamed&location=&model=stiebel_eltron_wpm&host=192.0.2.10&port=502&unit_id=1&enabled=on";
    let r = send(app, form("/heatpumps/hp1", edit, &admin)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let hp1 = &p.entries()[0];
    assert_eq!((hp1.name.as_deref(), hp1.location.as_deref()), (Some("Renamed"), None));
    assert!(p.text().contains("    retries: 3\n"), "{}", p.text());

    let r = send(app, form("/heatpumps/hp1/enabled", "enabled=false", &admin)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(!p.entries()[0].enabled);
    let r = send(app, form("/heatpumps/hp2/delete", "", &admin)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(p.entries().len(), 1);
    let r = send(app, form("/heatpumps/hp2/delete", "", &admin)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_bad_form_comes_back_with_each_message_at_its_field_and_nothing_is_written() {
    let p = pumps(Some(TOKEN));
    let app = &p.h.app;
    let before = std::fs::read(&p.path).unwrap();
    let cookie = login(app).await;
    let admin = [(COOKIE, cookie.as_str()), (ORIGIN, SAME)];
    let bad = PUMP_FORM
        .replace("port=5020", "port=70000")
        .replace("name=Attic+%26+loft", "name=%3Cb%3EAttic%3C%2Fb%3E");
    let r = send(app, form("/heatpumps", &bad, &admin)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(std::fs::read(&p.path).unwrap(), before);
    // The message right after the port input, which keeps what was typed.
    assert!(
        r.body.contains(
            "<input id=\"hp-port\" name=\"port\" value=\"70000\" aria-invalid=\"true\" aria-describedby=\"hp-port-error\">\n\
             <p class=\"error\" id=\"hp-port-error\">heat pump `hp2`: `port` must be 1-65535, not 70000</p>"
        ),
        "{}",
        r.body
    );
    // The name with markup comes back as text, next to its own message.
    assert!(
        r.body
            .contains(r#"name="name" value="&lt;b&gt;Attic&lt;/b&gt;" aria-invalid="true""#),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<b>Attic"), "{}", r.body);
    assert!(r.body.contains(r#"name="host" value="192.0.2.11">"#), "{}", r.body);

    // A taken id is refused at the id; an edit of a missing pump is 404.
    let taken = PUMP_FORM.replace("id=hp2", "id=hp1");
    let r = send(app, form("/heatpumps", &taken, &admin)).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains(r#"<p class="error" id="hp-id-error">"#), "{}", r.body);
    let r = send(app, form("/heatpumps/nope", PUMP_FORM, &admin)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = get_as(app, "/heatpumps/nope/edit", &cookie).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = send(app, form("/heatpumps/hp1/rename", PUMP_FORM, &admin)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // A form read before someone else's change is refused.
    let stale = PUMP_FORM.replace("version=", "version=0123456789abcdef");
    let r = send(app, form("/heatpumps", &stale, &admin)).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.body);
    assert_eq!(std::fs::read(&p.path).unwrap(), before);
}

#[tokio::test]
async fn heat_pump_forms_need_a_login_and_the_same_origin_and_logged_out_the_list_is_read_only() {
    let p = pumps(Some(TOKEN));
    let app = &p.h.app;
    let before = std::fs::read(&p.path).unwrap();
    let r = get(app, "/heatpumps").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("<td class=\"name\">Heat Pump 1</td>"), "{}", r.body);
    assert!(
        r.body.contains(r#"<a href="/login">Log in to change</a>"#),
        "{}",
        r.body
    );
    assert!(!r.body.contains("/heatpumps/hp1/delete"), "no actions: {}", r.body);
    assert!(r.body.contains("<fieldset disabled>"), "{}", r.body);

    let posts = [
        ("/heatpumps", PUMP_FORM),
        ("/heatpumps/hp1", PUMP_FORM),
        ("/heatpumps/hp1/delete", ""),
        ("/heatpumps/hp1/enabled", "enabled=false"),
    ];
    for (uri, body) in posts {
        let r = send(app, form(uri, body, &[(ORIGIN, SAME)])).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}: {}", r.body);
        let r = send(app, form(uri, body, &[(ORIGIN, SAME), (AUTHORIZATION, "Bearer wrong")])).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    let cookie = login(app).await;
    let cross: [&[(axum::http::HeaderName, &str)]; 3] = [
        &[(COOKIE, &cookie), (ORIGIN, "http://evil.example")],
        &[(COOKIE, &cookie), (REFERER, "http://evil.example/page")],
        &[(COOKIE, &cookie)],
    ];
    for headers in cross {
        for (uri, body) in posts {
            let r = send(app, form(uri, body, headers)).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri} {headers:?}");
            assert!(r.body.contains("Refused a change sent from another site"), "{}", r.body);
        }
    }
    assert_eq!(std::fs::read(&p.path).unwrap(), before);

    // Without a token nothing can be changed, and the page says how to enable it.
    let p = pumps(None);
    let r = send(&p.h.app, form("/heatpumps", PUMP_FORM, &[(ORIGIN, SAME)])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(std::fs::read(&p.path).unwrap(), before);
    // Without an inventory there is no link and the page says what to set.
    let h = harness(Some(TOKEN));
    assert!(!get(&h.app, "/").await.body.contains("/heatpumps"));
    let r = get(&h.app, "/heatpumps").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("`inventory`"), "{}", r.body);
}

// The connection test.

/// A simulated WPM (unit 1) served on 127.0.0.1; its port.
async fn simulated_pump() -> (crate::sim::TcpServer, u16) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/registers.yml");
    let map = RegisterMap::load(&path).expect("the shipped map loads");
    let model = Arc::clone(map.model("stiebel_eltron_wpm").expect("the shipped model"));
    let sim = crate::sim::Simulator::new(crate::sim::SimOptions::new(model)).expect("valid options");
    let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let port = server.local_addr().port();
    (server, port)
}

fn test_body(port: u16, unit_id: u8) -> String {
    format!(
        r#"{{"model": "stiebel_eltron_wpm", "modbus": {{"host": "127.0.0.1", "port": {port}, "unit_id": {unit_id}, "timeout": 2}}}}"#
    )
}

#[tokio::test]
async fn a_connection_test_reads_a_live_device_once_and_writes_nothing() {
    let p = pumps(Some(TOKEN));
    let before = std::fs::read(&p.path).unwrap();
    let (_server, port) = simulated_pump().await;
    let r = as_admin(&p.h.app, "POST", "/api/heatpumps/test", &test_body(port, 1)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = parsed(&r);
    assert_eq!(j["ok"], true, "{j}");
    assert_eq!(j["error"], serde_json::Value::Null, "{j}");
    assert_eq!(j["target"], format!("tcp 127.0.0.1:{port}"));
    let values = j["values"].as_object().unwrap();
    assert!(!values.is_empty(), "{j}");
    assert_eq!(j["fields"]["read"].as_u64(), Some(values.len() as u64));
    assert!(j["requests"]["answered"].as_u64().unwrap() > 0, "{j}");
    // Engineering values: enum codes come back as their labels.
    assert!(values.values().any(serde_json::Value::is_string), "{j}");
    assert_eq!(std::fs::read(&p.path).unwrap(), before);

    // The form: the add form comes back with the values and what was typed.
    let cookie = login(&p.h.app).await;
    let admin = [(COOKIE, cookie.as_str()), (ORIGIN, SAME)];
    let body = format!("version=&id=&model=stiebel_eltron_wpm&host=127.0.0.1&port={port}&unit_id=1&test=1");
    let r = send(&p.h.app, form("/heatpumps/test", &body, &admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Connection test: tcp 127.0.0.1:"), "{}", r.body);
    assert!(r.body.contains("fields read."), "{}", r.body);
    assert!(r.body.contains(&format!(r#"name="port" value="{port}""#)), "{}", r.body);
    // The edit form comes back as the edit form.
    let body = format!(
        "version=&editing=hp1&id=hp1&model=stiebel_eltron_wpm&host=127.0.0.1&port={port}&unit_id=1&enabled=on&test=1"
    );
    let r = send(&p.h.app, form("/heatpumps/test", &body, &admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains(r#"action="/heatpumps/hp1""#), "{}", r.body);
    assert!(r.body.contains("Connection test:"), "{}", r.body);
    assert_eq!(std::fs::read(&p.path).unwrap(), before);
}

#[tokio::test]
async fn a_connection_test_tells_a_closed_port_from_a_wrong_unit_id() {
    let p = pumps(Some(TOKEN));
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = as_admin(&p.h.app, "POST", "/api/heatpumps/test", &test_body(closed, 1)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = parsed(&r);
    assert_eq!(j["ok"], false, "{j}");
    assert_eq!(j["error"]["kind"], "connection_refused", "{j}");
    assert!(
        j["error"]["message"].as_str().unwrap().contains("cannot connect"),
        "{j}"
    );

    let (_server, port) = simulated_pump().await;
    let r = as_admin(&p.h.app, "POST", "/api/heatpumps/test", &test_body(port, 7)).await;
    let j = parsed(&r);
    assert_eq!(j["ok"], false, "{j}");
    assert_eq!(j["error"]["kind"], "wrong_unit_id", "{j}");
    assert_eq!(j["error"]["code"], 0x0B, "{j}");
    assert!(j["error"]["message"].as_str().unwrap().contains("unit 7"), "{j}");
    assert_eq!(j["fields"]["read"], 0, "{j}");

    // Checked like a create body, field by field.
    let bad = r#"{"model": "nope", "modbus": {"host": "127.0.0.1", "port": 70000}}"#;
    let r = as_admin(&p.h.app, "POST", "/api/heatpumps/test", bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let fields: Vec<String> = (parsed(&r)["errors"].as_array().unwrap().iter())
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fields, ["model", "modbus.port"]);
    // No other pump id takes a POST.
    let r = as_admin(&p.h.app, "POST", "/api/heatpumps/hp1", &test_body(port, 1)).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.body);
}

#[tokio::test]
async fn a_connection_test_needs_the_admin_and_the_same_origin() {
    let p = pumps(Some(TOKEN));
    let app = &p.h.app;
    let body = test_body(1, 1);
    let r = send(app, json_request("POST", "/api/heatpumps/test", &body, &[])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let cookie = login(app).await;
    let cross = [(COOKIE, cookie.as_str()), (ORIGIN, "http://evil.example")];
    let r = send(app, json_request("POST", "/api/heatpumps/test", &body, &cross)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let fields = "version=&model=stiebel_eltron_wpm&host=127.0.0.1&port=1&unit_id=1&test=1";
    let r = send(app, form("/heatpumps/test", fields, &cross)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(!r.body.contains("Connection test:"), "{}", r.body);
    let r = send(app, form("/heatpumps/test", fields, &[(ORIGIN, SAME)])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let p = pumps(None);
    let r = as_admin(&p.h.app, "POST", "/api/heatpumps/test", &body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

#[tokio::test]
async fn the_edit_page_chooses_the_fields_shown_by_category_and_saves_them_with_the_version_check() {
    let p = pumps(Some(TOKEN));
    let app = &p.h.app;
    let cookie = login(app).await;
    let r = get_as(app, "/heatpumps/hp1/edit", &cookie).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains(r#"action="/heatpumps/hp1/fields""#), "{}", r.body);
    assert!(r.body.contains("<legend>Temperatures</legend>"), "{}", r.body);
    assert!(
        r.body.contains(r#"name="field" value="outside_temperature">"#),
        "{}",
        r.body
    );
    let version = app.settings().version;
    let body = format!("settings_version={version}&field=outside_temperature&field=actual_dhw_temperature");

    // Refused without a login or from another origin; nothing saved.
    let r = send(app, form("/heatpumps/hp1/fields", &body, &[(ORIGIN, SAME)])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let cross = [(COOKIE, cookie.as_str()), (ORIGIN, "http://evil.example")];
    let r = send(app, form("/heatpumps/hp1/fields", &body, &cross)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(app.settings().visible_fields("hp1"), None);

    let admin = [(COOKIE, cookie.as_str()), (ORIGIN, SAME)];
    let r = send(app, form("/heatpumps/hp1/fields", &body, &admin)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers[LOCATION], "/heatpumps?done=fields&id=hp1");
    assert_eq!(
        app.settings().visible_fields("hp1").unwrap(),
        ["outside_temperature", "actual_dhw_temperature"]
    );
    let saved = std::fs::read_to_string(p.h.settings_path()).unwrap();
    assert!(saved.contains("outside_temperature"), "{saved}");
    let r = get_as(app, "/heatpumps/hp1/edit", &cookie).await;
    assert!(
        r.body.contains(r#"name="field" value="outside_temperature" checked>"#),
        "{}",
        r.body
    );

    // A form read before that save gets 409 and changes nothing.
    let stale = format!("settings_version={version}&field=outside_temperature");
    let r = send(app, form("/heatpumps/hp1/fields", &stale, &admin)).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("changed elsewhere"), "{}", r.body);
    assert_eq!(app.settings().visible_fields("hp1").unwrap().len(), 2);

    // None ticked: back to the default tiles.
    let now = app.settings().version;
    let r = send(
        app,
        form("/heatpumps/hp1/fields", &format!("settings_version={now}"), &admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(app.settings().visible_fields("hp1"), None);
    let r = send(app, form("/heatpumps/nope/fields", "settings_version=0", &admin)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

// ---- The efficiency page ----

use crate::telemetry::Day;

/// 40 days of figures ending on NOW's day (2025-06-15, UTC): the 10th has by
/// far the most heat, the 12th no electricity figure, the 5th is missing.
fn efficiency_days() -> Vec<Day> {
    let last = jiff::civil::date(2025, 6, 15);
    let mut days = Vec::new();
    for i in 0..40i32 {
        let date = last.checked_sub(jiff::Span::new().days(39 - i)).unwrap();
        if date == jiff::civil::date(2025, 6, 5) {
            continue;
        }
        let mut d = Day::new(date);
        let heating = 10.0 + f64::from(i % 7);
        d.heat_heating = Some(heating);
        d.heat_dhw = Some(3.0);
        d.electricity_heating = Some(heating / (2.5 + f64::from(i % 3)));
        d.electricity_dhw = Some(1.5);
        d.outdoor_mean = Some(-5.0 + f64::from(i) * 0.5);
        d.compressor_starts = (i % 5 + 1) as u32;
        d.compressor_run_seconds = f64::from(d.compressor_starts) * 1200.0;
        if date == jiff::civil::date(2025, 6, 10) {
            d.heat_heating = Some(50.0);
            d.booster_heating = Some(2.0);
        }
        if date == jiff::civil::date(2025, 6, 12) {
            d.electricity_heating = None;
            d.electricity_dhw = None;
        }
        days.push(d);
    }
    days
}

/// The part of a page from `id="{id}"` to the end of its figure.
fn figure<'a>(body: &'a str, id: &str) -> &'a str {
    let start = body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no figure {id}"));
    let rest = &body[start..];
    &rest[..rest.find("</figure>").unwrap()]
}

/// Each day's group of bars in a chart: its date, the x of its first bar and
/// the top of its stack (smallest y), or NaN without a bar.
fn bar_days(chart: &str) -> Vec<(String, f64, f64)> {
    let attr = |s: &str, name: &str| -> f64 {
        let i = s.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        s[i..i + s[i..].find('"').unwrap()].parse().unwrap()
    };
    chart
        .split("<g class=\"day\" data-date=\"")
        .skip(1)
        .map(|g| {
            let g = &g[..g.find("</g>").unwrap()];
            let date = g[..10].to_string();
            let rects: Vec<&str> = g.split("<rect").skip(1).collect();
            let x = rects.first().map_or(f64::NAN, |r| attr(r, "x"));
            let top = rects.iter().map(|r| attr(r, "y")).fold(f64::NAN, f64::min);
            (date, x, top)
        })
        .collect()
}

#[tokio::test]
async fn the_efficiency_page_draws_30_days_of_bars_the_cop_scatter_and_the_scop() {
    let h = harness(None);
    let days = efficiency_days();
    h.app.telemetry.efficiency().publish("hp1", days.clone().into());
    let r = get(&h.app, "/pump/hp1/efficiency").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let body = &r.body;

    // Heat: one stack per known day of the last 30, the 5th missing; left to right by date.
    let heat = bar_days(figure(body, "heat"));
    assert_eq!(heat.len(), 29, "{heat:?}");
    assert_eq!(heat.first().unwrap().0, "2025-05-17");
    assert_eq!(heat.last().unwrap().0, "2025-06-15");
    assert!(!heat.iter().any(|(d, ..)| d == "2025-06-05"), "a missing day is a gap");
    assert!(heat.windows(2).all(|w| w[0].1 < w[1].1), "x follows the date");
    let highest = heat.iter().min_by(|a, b| a.2.total_cmp(&b.2)).unwrap();
    assert_eq!(highest.0, "2025-06-10", "the day with the most heat stands highest");
    assert_eq!(figure(body, "heat").matches("<rect class=\"booster\"").count(), 1);
    // Electricity: the day without the figure has no bar (not a zero one).
    let el = bar_days(figure(body, "electricity"));
    assert_eq!(el.len(), 28);
    assert!(!el.iter().any(|(d, ..)| d == "2025-06-12"));
    assert!(figure(body, "electricity").contains("<title id=\"electricity-t\">Electricity per day (kWh)</title>"));

    // COP against the outdoor temperature: every known day of the year, warmer to the right.
    let cop = figure(body, "cop");
    assert_eq!(
        cop.matches("<circle class=\"pt").count(),
        38,
        "39 days, one without electricity"
    );
    assert!(!cop.contains("data-date=\"2025-06-12\""), "no COP without electricity");
    assert_eq!(cop.matches("<circle class=\"pt recent\"").count(), 28);
    let cx = |date: &str| -> f64 {
        let i = cop.find(&format!("data-date=\"{date}\" cx=\"")).unwrap() + 27;
        cop[i..i + cop[i..].find('"').unwrap()].parse().unwrap()
    };
    assert!(
        cx("2025-05-10") < cx("2025-06-01"),
        "outdoor mean rises through the data"
    );
    assert!(cop.contains("Outdoor temperature, daily mean (°C)"));

    // SCOP: Σ heat ÷ Σ electricity of the days with both.
    let both: Vec<&Day> = days.iter().filter(|d| d.electricity().is_some()).collect();
    let scop = both.iter().map(|d| d.heat().unwrap()).sum::<f64>()
        / both.iter().map(|d| d.electricity().unwrap()).sum::<f64>();
    let tile = &body[body.find("data-scop=\"1\"").unwrap()..];
    let tile = &tile[..tile.find("</div>").unwrap()];
    assert!(
        tile.contains(&format!("<span class=\"value\">{scop:.2}</span>")),
        "{scop:.2} in {tile}"
    );
    assert!(tile.contains("38 days"), "{tile}");
    assert!(body.contains("data-scop=\"3\""), "hot water has its own");

    // Compressor starts: a bar per known day, as high as the starts.
    let cycles = bar_days(figure(body, "cycles"));
    assert_eq!(cycles.len(), 29);
    let most = days.iter().rev().take(29).map(|d| d.compressor_starts).max().unwrap();
    let tallest = cycles.iter().min_by(|a, b| a.2.total_cmp(&b.2)).unwrap();
    let day = days.iter().find(|d| d.date.to_string() == tallest.0).unwrap();
    assert_eq!(day.compressor_starts, most);
    assert!(figure(body, "cycles").contains("Mean run per start over these days: 20 min."));

    // The pump page links here, and this page back; the name is escaped.
    assert!(body.contains("<a href=\"/pump/hp1\">← &lt;script&gt;alert(1)&lt;/script&gt;</a>"));
    assert!(!body.contains(EVIL_NAME));
    assert!(get(&h.app, "/pump/hp1")
        .await
        .body
        .contains("href=\"/pump/hp1/efficiency\""));
    assert!(!body.contains("[transforms.efficiency]"));
    assert!(body.contains("<body data-refresh=\"0\">"), "daily figures: not live");
}

#[tokio::test]
async fn without_the_efficiency_transform_the_page_says_how_to_add_it_and_unknown_pumps_are_404() {
    let h = harness(None);
    let r = get(&h.app, "/pump/hp2/efficiency").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("<code>[transforms.efficiency]</code>"), "{}", r.body);
    assert!(r.body.contains("<code>type = \"efficiency\"</code>"));
    assert!(
        r.body
            .contains("type = &quot;efficiency&quot;\ninputs = [&quot;scaled&quot;]"),
        "the example, escaped"
    );
    assert!(r
        .body
        .contains("between <code>scale</code> and <code>state_diff</code>"));
    assert!(!r.body.contains("<svg class=\"bars\""));
    assert!(!r.body.contains("Seasonal COP"));

    for uri in ["/pump/nope/efficiency", "/api/pumps/nope/efficiency"] {
        assert_eq!(get(&h.app, uri).await.status, StatusCode::NOT_FOUND, "{uri}");
    }
    // A pump only the transform knows (not yet polled into this dashboard) has its page.
    h.app.telemetry.efficiency().publish("hp9", efficiency_days().into());
    let r = get(&h.app, "/pump/hp9/efficiency").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(bar_days(figure(&r.body, "heat")).len(), 29);
}

#[tokio::test]
async fn the_efficiency_api_gives_the_days_with_dates_and_nulls() {
    let h = harness(None);
    let r = get(&h.app, "/api/pumps/hp2/efficiency").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(parsed(&r), serde_json::json!({"id": "hp2", "days": []}));
    h.app.telemetry.efficiency().publish("hp1", efficiency_days().into());
    let v = parsed(&get(&h.app, "/api/pumps/hp1/efficiency").await);
    let days = v["days"].as_array().unwrap();
    assert_eq!(days.len(), 39);
    assert_eq!(days[0]["date"], "2025-05-07");
    let d12 = days.iter().find(|d| d["date"] == "2025-06-12").unwrap();
    assert_eq!(d12["electricity_heating"], serde_json::Value::Null);
    assert_eq!(d12["cop"], serde_json::Value::Null);
    assert_eq!(d12["heat"], 14.0, "heat is known without electricity");
    let d10 = days.iter().find(|d| d["date"] == "2025-06-10").unwrap();
    assert_eq!(d10["booster_heating"], 2.0);
    assert_eq!(d10["heat"], 55.0);
}

#[tokio::test]
async fn the_card_shows_todays_cop_and_energy_only_when_the_poll_has_them() {
    let h = harness(None);
    let schema = wpm();
    let mut m = Metric::new("hp1", tags("hp1", "One", ""), now(), schema);
    m.fields.insert("cop_today".into(), Value::Float(3.2149));
    m.fields.insert("heat_today_kwh".into(), Value::Float(24.46));
    m.fields.insert("electricity_today_kwh".into(), Value::Float(7.6));
    h.app.ingest(&Event::from(m));
    let body = get(&h.app, "/").await.body;
    let card = |id: &str| {
        let s = &body[body.find(&format!("id=\"pump-{id}\"")).unwrap()..];
        s[..s.find("</article>").unwrap()].to_string()
    };
    let one = card("hp1");
    assert!(one.contains("data-field=\"cop_today\">COP <b>3.21</b>"), "{one}");
    assert!(one.contains("data-field=\"heat_today_kwh\">Heat <b>24.5</b> <small>kWh</small>"));
    assert!(one.contains("data-field=\"electricity_today_kwh\">Electricity <b>7.6</b> <small>kWh</small>"));
    assert!(one.contains("href=\"/pump/hp1/efficiency\""));
    let two = card("hp2");
    assert!(
        !two.contains("class=\"today\""),
        "nothing (not 0) without the figures: {two}"
    );
}

#[tokio::test]
async fn a_host_name_the_dashboard_was_not_told_about_is_refused_even_for_reading() {
    let h = harness(Some("t0ken-t0ken-t0ken"));
    let req = |host: &str| Request::get("/").header(HOST, host).body(Body::empty()).unwrap();
    // A page of evil.example whose name now points at the dashboard (DNS rebinding).
    let r = send(&h.app, req("evil.example:8080")).await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST);
    assert!(
        r.body.contains("allowed_hosts") && !r.body.contains("Heat pump"),
        "{}",
        r.body
    );
    let r = send(&h.app, req("dash.test.evil.example")).await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST);
    // A bearer token does not make another host acceptable either.
    let put = Request::put("/api/settings")
        .header(HOST, "evil.example")
        .header(AUTHORIZATION, "Bearer t0ken-t0ken-t0ken")
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(&h.app, put).await.status, StatusCode::MISDIRECTED_REQUEST);
    // Addresses and localhost are answered, as is the listed name.
    for ok in ["127.0.0.1:8080", "[::1]:8080", "localhost:8080", HOST_NAME] {
        assert_eq!(send(&h.app, req(ok)).await.status, StatusCode::OK, "{ok}");
    }
}

#[tokio::test]
async fn wrong_bearer_tokens_and_logins_are_throttled_per_client_address() {
    use axum::extract::connect_info::MockConnectInfo;
    let h = harness(Some(TOKEN));
    let from = |ip: &str| {
        let addr: std::net::SocketAddr = format!("{ip}:40000").parse().unwrap();
        router(h.app.clone()).layer(MockConnectInfo(addr))
    };
    let status = |res: axum::response::Response| res.status();
    let guesser = "192.0.2.66";
    // Ten wrong bearer tokens from one address (the API, not the login form)...
    for i in 0..10 {
        let r = from(guesser)
            .oneshot(put_json(
                r#"{"version":0}"#,
                &[(AUTHORIZATION, &format!("Bearer guess{i}"))],
            ))
            .await
            .unwrap();
        assert_eq!(status(r), StatusCode::UNAUTHORIZED);
    }
    // ...lock that address out, even with the right token, and the login form too.
    let right = format!("Bearer {TOKEN}");
    let r = from(guesser)
        .oneshot(put_json(r#"{"version":0}"#, &[(AUTHORIZATION, &right)]))
        .await
        .unwrap();
    assert_eq!(status(r), StatusCode::TOO_MANY_REQUESTS);
    let r = from(guesser)
        .oneshot(form("/login", &format!("token={TOKEN}"), &[(ORIGIN, SAME)]))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "60");
    // Another address is not locked out: its login works.
    let r = from("192.0.2.7")
        .oneshot(form("/login", &format!("token={TOKEN}"), &[(ORIGIN, SAME)]))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "the login of another client goes through"
    );
    // Reading stays open for everyone.
    let r = from(guesser)
        .oneshot(Request::get("/").header(HOST, HOST_NAME).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Random pumps for the overview comparison: odd names and tags, fields
/// missing from some polls, enum codes with and without a label, faults,
/// pumps gone quiet for minutes or days, the day's figures finite or not,
/// and some pumps with their own tiles and window.
fn feed_random(app: &App, schema: &Arc<Schema>, r: &mut crate::modbus::Rng) {
    const NAMES: &[&str] = &[
        "Heat pump",
        EVIL_NAME,
        "\"Q\" & 'S'",
        "Wärmepumpe – Keller",
        "",
        "a>b<c",
    ];
    let pick = |r: &mut crate::modbus::Rng, n: usize| r.next_u64() as usize % n;
    let mut settings = (*app.settings()).clone();
    let pumps = 1 + pick(r, 6);
    for p in 0..pumps {
        let id = if pick(r, 5) == 0 {
            format!("hp\"{p}<x>")
        } else {
            format!("hp{p}")
        };
        let mut t = Tags::new();
        if pick(r, 4) != 0 {
            t.insert("name".into(), NAMES[pick(r, NAMES.len())].into());
        }
        if pick(r, 3) != 0 {
            t.insert("location".into(), NAMES[pick(r, NAMES.len())].into());
        }
        let tags = Arc::new(t);
        let quiet = [0, 0, 40, 7200, 3 * 86_400][pick(r, 5)];
        let polls = 1 + pick(r, 400) as u64;
        let missing = pick(r, 4) as u64; // one field in `missing + 2` is absent from a poll
        for i in 0..polls {
            let t = now() - Duration::from_secs(quiet + (polls - 1 - i) * 10);
            let mut m = Metric::new(&id, tags.clone(), t, schema.clone());
            for (k, meta) in schema.fields.iter().enumerate() {
                if (k as u64 + i).is_multiple_of(missing + 2) && missing > 0 {
                    continue;
                }
                let v = match meta.value_type {
                    ValueType::Float => Value::Float(match pick(r, 50) {
                        0 => f64::NAN,
                        1 => 1e15,
                        _ => (r.next_f64() * 80.0 - 20.0 + i as f64 / 10.0).round() / 10.0,
                    }),
                    ValueType::Int => Value::Int(pick(r, 12) as i64 - 1),
                    ValueType::Bool => Value::Bool(pick(r, 2) == 0),
                    ValueType::Text => Value::Text(NAMES[pick(r, NAMES.len())].into()),
                };
                m.fields.insert(meta.name.clone(), v);
                if crate::sinks::dashboard::views::format::is_state(meta) && pick(r, 3) != 0 {
                    let since = [
                        None,
                        Some(now() - Duration::from_secs(600)),
                        Some(now() - Duration::from_secs(5 * 86_400)),
                    ];
                    m.since.insert(meta.name.clone(), since[pick(r, 3)]);
                }
            }
            for f in ["cop_today", "heat_today_kwh", "electricity_today_kwh"] {
                if pick(r, 2) == 0 {
                    let v = [3.456, 0.0, f64::INFINITY, 12.25][pick(r, 4)];
                    m.fields.insert(f.into(), Value::Float(v));
                }
            }
            app.ingest(&Event::from(m));
        }
        if pick(r, 3) == 0 {
            let own = settings.pumps.entry(id.clone()).or_default();
            own.sparkline_minutes = Some([5, 30, 60, 180, 1440][pick(r, 5)]);
            let mut fields: Vec<String> = Vec::new();
            for _ in 0..1 + pick(r, 8) {
                let name = schema.fields[pick(r, schema.fields.len())].name.to_string();
                if !fields.contains(&name) {
                    fields.push(name);
                }
            }
            own.visible_fields = Some(fields);
        }
    }
    app.save_settings(settings.version, settings).expect("valid settings");
}

#[test]
fn random_pumps_get_the_same_overview_cards_as_the_template_rendered() {
    let schema = wpm();
    for seed in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        let control = Arc::new(Control::default());
        let _rx = control.poll_interval("heatpumps", Duration::from_secs(10));
        let app = build(dir.path(), &control, None, DashboardConfig::default());
        let mut r = crate::modbus::Rng::new(seed);
        feed_random(&app, &schema, &mut r);
        for later in [0, 1, 59, 3600, 2 * 86_400] {
            let t = now() + Duration::from_secs(later);
            let ours = app.overview_html(t);
            let reference = app.overview_via_template(t);
            assert_eq!(ours.len(), reference.len());
            for (a, b) in ours.iter().zip(&reference) {
                assert_eq!(a, b, "seed {seed}, {later} s after the last poll");
            }
            // Served again from the cache, the same.
            assert_eq!(app.overview_html(t), ours);
        }
        let page: String = app.overview_html(now()).concat();
        assert!(
            !page.contains("<script>") && !page.contains("<x>"),
            "seed {seed}: raw markup"
        );
    }
}
