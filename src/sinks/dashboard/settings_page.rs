//! The settings page (`GET`/`POST /settings`) and logging in and out.
//! Every `POST /settings` is checked in this order: is a token configured
//! (403), is it authenticated (401), does it come from our own origin (403), is
//! it valid (422), was it based on the current version (409).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::app::{App, SaveError};
use super::auth::Refusal;
use super::format::field_label;
use super::routes::{layout, render};
use super::settings::{self, Invalid, Settings, POLL_SECONDS, REFRESH_SECONDS, WINDOW_MINUTES};

#[derive(Serialize, Default)]
struct View {
    version: String,
    poll: String,
    refresh: String,
    window: String,
    /// Messages by input name (`refresh_interval_seconds`, `pumps.hp1.visible_fields`).
    errors: BTreeMap<String, Vec<String>>,
    /// All messages, for the summary at the top.
    all_errors: Vec<String>,
    notice: Option<String>,
    can_edit: bool,
    read_only: Option<String>,
    sources: Vec<Source>,
    pumps: Vec<PumpForm>,
    /// The fields of each model, listed once however many pumps share it.
    models: Vec<ModelFields>,
    poll_range: String,
    refresh_range: String,
    window_range: String,
}

#[derive(Serialize)]
struct Source {
    name: String,
    seconds: String,
}

#[derive(Serialize)]
struct PumpForm {
    id: String,
    name: String,
    window_key: String,
    fields_key: String,
    error_key: String,
    window: String,
    fields: String,
    placeholder: String,
    model: String,
}

#[derive(Serialize)]
struct ModelFields {
    model: String,
    fields: Vec<Known>,
}

#[derive(Serialize)]
struct Known {
    name: String,
    label: String,
}

fn range(r: &std::ops::RangeInclusive<u32>) -> String {
    format!("{}–{}", r.start(), r.end())
}

/// The form filled from `s`, then overwritten by what was `submitted` (so a
/// rejected form shows what the person typed).
fn view(app: &App, headers: &HeaderMap, s: &Settings, submitted: Option<&[(String, String)]>) -> View {
    let can_edit = app.auth.enabled() && app.auth.logged_in(headers);
    let read_only = if !app.auth.enabled() {
        Some(Refusal::NoToken.to_string())
    } else if !can_edit {
        Some("Log in with the admin token to change these settings.".to_string())
    } else {
        None
    };
    let store = app.read_store();
    let mut pumps: Vec<PumpForm> = app
        .pump_ids()
        .into_iter()
        .map(|id| {
            let device = store.devices.get(id.as_str());
            let name = device
                .and_then(|d| d.metric.tags.get("name").cloned())
                .unwrap_or_else(|| id.clone());
            let defaults = device
                .map(|d| app.tile_fields(&d.metric, None))
                .unwrap_or_default()
                .join("\n");
            let model = device.map(|d| d.metric.schema.model.clone()).unwrap_or_default();
            let p = s.pumps.get(&id);
            PumpForm {
                window_key: format!("pump.{id}.sparkline_minutes"),
                fields_key: format!("pump.{id}.visible_fields"),
                error_key: format!("pumps.{id}"),
                window: p
                    .and_then(|p| p.sparkline_minutes)
                    .map(|w| w.to_string())
                    .unwrap_or_default(),
                fields: p
                    .and_then(|p| p.visible_fields.as_ref())
                    .map(|f| f.join("\n"))
                    .unwrap_or_default(),
                placeholder: defaults,
                model,
                name,
                id,
            }
        })
        .collect();
    let mut models: Vec<ModelFields> = Vec::new();
    for d in store.devices.values() {
        let schema = &d.metric.schema;
        if schema.fields.is_empty() || models.iter().any(|m| m.model == schema.model) {
            continue;
        }
        models.push(ModelFields {
            model: schema.model.clone(),
            fields: schema
                .fields
                .iter()
                .map(|f| Known {
                    name: f.name.to_string(),
                    label: field_label(&f.name),
                })
                .collect(),
        });
    }
    drop(store);
    let mut v = View {
        models,
        version: s.version.to_string(),
        poll: s.poll_interval_seconds.map(|p| p.to_string()).unwrap_or_default(),
        refresh: s.refresh_interval_seconds.to_string(),
        window: s.sparkline_minutes.to_string(),
        can_edit,
        read_only,
        sources: app
            .control
            .poll_intervals()
            .into_iter()
            .map(|(name, d)| Source {
                name,
                seconds: format!("{}", d.as_secs_f64()),
            })
            .collect(),
        poll_range: range(&POLL_SECONDS),
        refresh_range: range(&REFRESH_SECONDS),
        window_range: range(&WINDOW_MINUTES),
        ..View::default()
    };
    for (k, val) in submitted.unwrap_or_default() {
        match k.as_str() {
            "poll_interval_seconds" => v.poll = val.clone(),
            "refresh_interval_seconds" => v.refresh = val.clone(),
            "sparkline_minutes" => v.window = val.clone(),
            _ => {
                for p in &mut pumps {
                    if *k == p.window_key {
                        p.window = val.clone();
                    } else if *k == p.fields_key {
                        p.fields = val.clone();
                    }
                }
            }
        }
    }
    v.pumps = pumps;
    v
}

fn with_errors(mut v: View, errors: &[Invalid]) -> View {
    for e in errors {
        // Per-pump messages are shown once per pump, whichever input they concern.
        let key = match e
            .key
            .strip_suffix(".visible_fields")
            .or_else(|| e.key.strip_suffix(".sparkline_minutes"))
        {
            Some(pump) if e.key.starts_with("pumps.") => pump.to_string(),
            _ => e.key.clone(),
        };
        v.errors.entry(key).or_default().push(e.message.clone());
        v.all_errors.push(e.message.clone());
    }
    v
}

fn page(app: &App, headers: &HeaderMap, status: StatusCode, v: View) -> Response {
    let l = layout(app, headers, "Settings".into(), "settings", false);
    (status, render(app, l, "settings.html", &v, false)).into_response()
}

#[derive(Deserialize)]
pub struct ShowQuery {
    saved: Option<String>,
}

/// `GET /settings`.
pub async fn show(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<ShowQuery>) -> Response {
    let mut v = view(&app, &headers, &app.settings(), None);
    if q.saved.is_some() {
        v.notice = Some(format!("Saved (version {}).", v.version));
    }
    page(&app, &headers, StatusCode::OK, v)
}

/// `POST /settings`: the form.
pub async fn save(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let refuse = |status, text: String| {
        let mut v = view(&app, &headers, &app.settings(), Some(&pairs));
        v.all_errors.push(text);
        page(&app, &headers, status, v)
    };
    if !app.auth.enabled() {
        return refuse(StatusCode::FORBIDDEN, Refusal::NoToken.to_string());
    }
    let credential = app.auth.credential(&headers).ok();
    if credential.is_none() {
        return refuse(StatusCode::UNAUTHORIZED, Refusal::NotLoggedIn.to_string());
    }
    if let Err(r) = app.auth.same_origin(&headers, &uri, credential) {
        return refuse(StatusCode::FORBIDDEN, r.to_string());
    }
    let current = app.settings();
    let (version, next) = match settings::from_form(&pairs, &current) {
        Ok(x) => x,
        Err(errors) => {
            let v = with_errors(view(&app, &headers, &current, Some(&pairs)), &errors);
            return page(&app, &headers, StatusCode::UNPROCESSABLE_ENTITY, v);
        }
    };
    let app2 = app.clone();
    match tokio::task::spawn_blocking(move || app2.save_settings(version, next)).await {
        Ok(Ok(_)) => Redirect::to("/settings?saved=1").into_response(),
        Ok(Err(SaveError::Invalid(errors))) => {
            let v = with_errors(view(&app, &headers, &current, Some(&pairs)), &errors);
            page(&app, &headers, StatusCode::UNPROCESSABLE_ENTITY, v)
        }
        Ok(Err(e @ SaveError::Conflict { .. })) => {
            // Show what is saved now: the other person's change must not be overwritten blindly.
            let mut v = view(&app, &headers, &app.settings(), None);
            v.all_errors.push(e.to_string());
            page(&app, &headers, StatusCode::CONFLICT, v)
        }
        Ok(Err(e)) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("Not saved: {e}")),
    }
}

#[derive(Serialize)]
struct LoginView {
    enabled: bool,
    error: Option<String>,
    help: String,
}

fn login_page(app: &App, headers: &HeaderMap, status: StatusCode, error: Option<String>) -> Response {
    let l = layout(app, headers, "Log in".into(), "login", false);
    let v = LoginView {
        enabled: app.auth.enabled(),
        error,
        help: Refusal::NoToken.to_string(),
    };
    (status, render(app, l, "login.html", &v, false)).into_response()
}

/// `GET /login`.
pub async fn login_form(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    login_page(&app, &headers, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /login`: the admin token in, a session cookie out.
pub async fn login(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri, Form(f): Form<LoginForm>) -> Response {
    if let Err(r) = app.auth.same_origin(&headers, &uri, None) {
        return login_page(&app, &headers, StatusCode::FORBIDDEN, Some(r.to_string()));
    }
    match app.auth.login(&f.token) {
        Ok(session) => {
            let mut r = Redirect::to("/settings").into_response();
            if let Ok(v) = app.auth.session_cookie(&session).parse() {
                r.headers_mut().insert(SET_COOKIE, v);
            }
            r
        }
        Err(e) => {
            let status = match e {
                Refusal::NoToken => StatusCode::FORBIDDEN,
                Refusal::TooManyFailures => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            login_page(&app, &headers, status, Some(e.to_string()))
        }
    }
}

/// `POST /logout`.
pub async fn logout(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(r) = app.auth.same_origin(&headers, &uri, None) {
        return login_page(&app, &headers, StatusCode::FORBIDDEN, Some(r.to_string()));
    }
    app.auth.logout(&headers);
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = app.auth.clear_cookie().parse() {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}
