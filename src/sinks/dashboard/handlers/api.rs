//! The JSON API (routes listed in the `dashboard` module documentation).
//! Errors are `{"error": "…"}`, validation errors add `"errors": [{key, message}]`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json_};

use super::query::parse_window;
use crate::event::{rfc3339, FieldMeta, Metric, Value};
use crate::sinks::dashboard::app::{App, SaveError};
use crate::sinks::dashboard::auth::Refusal;
use crate::sinks::dashboard::history::secs;
use crate::sinks::dashboard::settings::Settings;
use crate::sinks::dashboard::store::Device;
use crate::sinks::dashboard::views::format::{field_label, is_on, is_state, value_text, Group};

pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn no_pump(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("no heat pump `{id}` has reported to this dashboard"),
    )
}

fn summary(app: &App, d: &Device, now: SystemTime) -> serde_json::Map<String, Json_> {
    let m = &d.metric;
    let age = age_seconds(m, now);
    let mut o = serde_json::Map::new();
    o.insert("id".into(), m.device.to_string().into());
    o.insert(
        "name".into(),
        m.tags
            .get("name")
            .cloned()
            .unwrap_or_else(|| m.device.to_string())
            .into(),
    );
    o.insert("location".into(), m.tags.get("location").cloned().into());
    o.insert("model".into(), m.schema.model.clone().into());
    o.insert("tags".into(), json!(&*m.tags));
    o.insert("online".into(), (d.live && age <= app.offline_after().as_secs()).into());
    o.insert("last_poll".into(), rfc3339(m.time).into());
    o.insert("age_seconds".into(), age.into());
    let fault = m.fields.get(app.fault_field.as_str()).is_some_and(is_on);
    o.insert("fault".into(), fault.into());
    let mode = m
        .fields
        .get(app.mode_field.as_str())
        .map(|v| value_text(m.meta(&app.mode_field).map(|a| &**a), v));
    o.insert("mode".into(), mode.into());
    o
}

/// `GET /api/pumps`: every pump with its latest values.
pub async fn pumps(State(app): State<Arc<App>>) -> Response {
    let now = app.now();
    let store = app.read_store();
    let list: Vec<Json_> = store
        .devices
        .values()
        .map(|d| {
            let mut o = summary(&app, d, now);
            o.insert("values".into(), json!(d.metric.fields));
            Json_::Object(o)
        })
        .collect();
    drop(store);
    Json(json!({ "pumps": list })).into_response()
}

/// `GET /api/pumps/{id}`: one pump, every field with unit, group and since.
pub async fn pump(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let now = app.now();
    let store = app.read_store();
    let Some(d) = store.devices.get(id.as_str()) else {
        return no_pump(&id);
    };
    let m = &d.metric;
    let mut o = summary(&app, d, now);
    let mut fields: Vec<Json_> = m
        .schema
        .fields
        .iter()
        .filter(|f| m.fields.contains_key(&f.name))
        .map(|f| json!(field_json(m, Some(f), &f.name)))
        .collect();
    fields.extend(
        m.fields
            .keys()
            .filter(|k| m.schema.field(k).is_none())
            .map(|k| json!(field_json(m, None, k))),
    );
    o.insert("fields".into(), fields.into());
    Json(Json_::Object(o)).into_response()
}

/// `GET /api/pumps/{id}/states`: every operating state with since when it holds.
pub async fn states(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let store = app.read_store();
    let Some(d) = store.devices.get(id.as_str()) else {
        return no_pump(&id);
    };
    let m = &d.metric;
    let states: Vec<Json_> = m
        .fields
        .keys()
        .filter(|k| is_state_field(m, k))
        .map(|k| {
            let f = field_json(m, m.meta(k).map(|a| &**a), k);
            json!({
                "field": f.name,
                "label": field_label(k),
                "value": f.value,
                "text": f.text,
                "since": f.since,
                "since_known": f.since_known.unwrap_or(false),
            })
        })
        .collect();
    Json(json!({ "id": id, "states": states })).into_response()
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    window: Option<String>,
}

/// `GET /api/pumps/{id}/history/{field}?window=MIN`: points `[unix_ms, value]`.
pub async fn history(
    State(app): State<Arc<App>>,
    Path((id, field)): Path<(String, String)>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let window = match parse_window(q.window.as_deref(), app.settings().window_minutes(&id)) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let now = secs(app.now());
    let store = app.read_store();
    let Some(d) = store.devices.get(id.as_str()) else {
        return no_pump(&id);
    };
    let Some(series) = d.series.get(field.as_str()) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("`{id}` has no history of a numeric field `{field}`"),
        );
    };
    let start = now.saturating_sub(window * 60);
    let w = series.query(start);
    let decimals = d.metric.meta(&field).and_then(|m| m.decimals);
    let points: Vec<Json_> = w
        .points
        .iter()
        .filter(|p| p.t >= start.saturating_sub(w.resolution))
        .map(|p| json!([i64::from(p.t) * 1000, round(p.v, decimals)]))
        .collect();
    let unit = d.metric.meta(&field).and_then(|m| m.unit.clone());
    drop(store);
    Json(json!({
        "id": id,
        "field": field,
        "unit": unit,
        "window_minutes": window,
        "resolution_seconds": w.resolution,
        "points": points,
    }))
    .into_response()
}

/// History is kept as `f32`; print it as the field's decimals (or 7 digits).
fn round(v: f32, decimals: Option<u8>) -> Json_ {
    let x = match decimals {
        Some(d) => {
            let f = 10f64.powi(i32::from(d.min(9)));
            (f64::from(v) * f).round() / f
        }
        None => format!("{v}").parse::<f64>().unwrap_or(f64::from(v)),
    };
    json!(x)
}

fn settings_json(app: &App, s: &Settings) -> Json_ {
    let mut v = json!(s);
    v["auth_enabled"] = app.auth.enabled().into();
    v["poll_intervals"] = app
        .control
        .poll_intervals()
        .into_iter()
        .map(|(source, d)| json!({ "source": source, "seconds": d.as_secs_f64() }))
        .collect();
    v
}

/// `GET /api/settings`.
pub async fn settings(State(app): State<Arc<App>>) -> Response {
    Json(settings_json(&app, &app.settings())).into_response()
}

/// `PUT /api/settings`: the whole settings with the `version` they were read at.
pub async fn put_settings(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Json<Json_>, JsonRejection>,
) -> Response {
    let mut body = match authorized(&app, &headers, &uri, body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    // What GET adds for information may come back unchanged.
    if let Some(o) = body.as_object_mut() {
        o.remove("auth_enabled");
        o.remove("poll_intervals");
    }
    let next: Settings = match serde_json::from_value(body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("not valid settings: {e}")),
    };
    let based_on = next.version;
    let app2 = app.clone();
    match tokio::task::spawn_blocking(move || app2.save_settings(based_on, next)).await {
        Ok(Ok(s)) => Json(settings_json(&app, &s)).into_response(),
        Ok(Err(SaveError::Invalid(errors))) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": "the settings are not valid", "errors": errors })),
        )
            .into_response(),
        Ok(Err(e @ SaveError::Conflict { .. })) => error(StatusCode::CONFLICT, &e.to_string()),
        Ok(Err(e @ SaveError::Io { .. })) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("saving failed: {e}")),
    }
}

/// What every change through the API goes through: the admin token (bearer or
/// login cookie; `401`, or `403` when none is configured), the same-origin rule
/// (`403`), then the JSON body (`400` when malformed).
#[allow(clippy::result_large_err)] // the `Err` is the answer itself, returned at once
pub(super) fn authorized(
    app: &App,
    headers: &HeaderMap,
    uri: &Uri,
    body: Result<Json<Json_>, JsonRejection>,
) -> Result<Json_, Response> {
    let credential = match app.auth.credential(headers) {
        Ok(c) => Some(c),
        Err(Refusal::NoToken) => return Err(error(StatusCode::FORBIDDEN, &Refusal::NoToken.to_string())),
        Err(_) => None,
    };
    if credential.is_none() {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "send the admin token as `Authorization: Bearer <token>` (or log in)",
        );
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        return Err(r);
    }
    if let Err(r) = app.auth.same_origin(headers, uri, credential) {
        return Err(error(StatusCode::FORBIDDEN, &r.to_string()));
    }
    match body {
        Ok(Json(b)) => Ok(b),
        Err(e) => Err(error(StatusCode::BAD_REQUEST, &e.body_text())),
    }
}

/// JSON of one field for the API.
#[derive(Debug, Serialize)]
struct FieldJson {
    name: String,
    value: Option<Value>,
    text: Option<String>,
    unit: Option<String>,
    kind: Option<crate::event::FieldKind>,
    group: &'static str,
    description: Option<String>,
    since: Option<String>,
    since_known: Option<bool>,
}

fn field_json(m: &Metric, meta: Option<&FieldMeta>, name: &str) -> FieldJson {
    let value = m.fields.get(name).cloned();
    let since = m.since.get(name);
    FieldJson {
        name: name.to_string(),
        text: value.as_ref().map(|v| value_text(meta, v)),
        value,
        unit: meta.and_then(|x| x.unit.clone()),
        kind: meta.map(|x| x.kind),
        group: meta.map_or("Parameters", |x| Group::of(x).title()),
        description: meta.and_then(|x| x.description.clone()),
        since: since.and_then(|s| s.map(crate::event::rfc3339)),
        since_known: since.map(Option::is_some),
    }
}

/// Whether a field is a state (for the states API).
fn is_state_field(m: &Metric, name: &str) -> bool {
    m.since.contains_key(name) || m.meta(name).is_some_and(|x| is_state(x))
}

/// Age of the last poll in whole seconds.
pub(super) fn age_seconds(m: &Metric, now: SystemTime) -> u64 {
    now.duration_since(m.time).unwrap_or(Duration::ZERO).as_secs()
}

/// `GET /api/pumps/{id}/efficiency`: the days the `efficiency` transform
/// published, oldest first (`[]` without it); unknown figures are `null`.
pub async fn efficiency(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let days = app.telemetry.efficiency().days(&id);
    if days.is_none() && !app.read_store().devices.contains_key(id.as_str()) {
        return no_pump(&id);
    }
    let list: Vec<Json_> = days
        .iter()
        .flat_map(|d| d.iter())
        .map(|d| {
            json!({
                "date": d.date.to_string(),
                "heat_heating": d.heat_heating,
                "heat_dhw": d.heat_dhw,
                "booster_heating": d.booster_heating,
                "booster_dhw": d.booster_dhw,
                "electricity_heating": d.electricity_heating,
                "electricity_dhw": d.electricity_dhw,
                "outdoor_mean": d.outdoor_mean,
                "compressor_starts": d.compressor_starts,
                "compressor_run_seconds": d.compressor_run_seconds,
                "defrosts": d.defrosts,
                "defrost_seconds": d.defrost_seconds,
                "heat": d.heat(),
                "electricity": d.electricity(),
                "cop": d.cop(),
                "cop_heating": d.cop_heating(),
                "cop_dhw": d.cop_dhw(),
            })
        })
        .collect();
    Json(json!({ "id": id, "days": list })).into_response()
}
