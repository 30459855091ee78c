//! The settings form and the login form as the pages show them: the form
//! filled from the settings (or from what was typed, when it was refused), the
//! messages next to their inputs, and both pages rendered in the layout.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::format::field_label;
use super::templates::{layout, render};
use crate::sinks::dashboard::app::App;
use crate::sinks::dashboard::auth::Refusal;
use crate::sinks::dashboard::settings::{Invalid, Settings, POLL_SECONDS, REFRESH_SECONDS, WINDOW_MINUTES};

#[derive(Serialize, Default)]
pub struct View {
    pub version: String,
    poll: String,
    refresh: String,
    window: String,
    /// Messages by input name (`refresh_interval_seconds`, `pumps.hp1.visible_fields`).
    errors: BTreeMap<String, Vec<String>>,
    /// All messages, for the summary at the top.
    pub all_errors: Vec<String>,
    pub notice: Option<String>,
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

/// Whether the person may change `what`, and if not, why (shown above the form).
pub fn may_edit(app: &App, headers: &HeaderMap, what: &str) -> (bool, Option<String>) {
    let can_edit = app.auth.enabled() && app.auth.logged_in(headers);
    let read_only = if !app.auth.enabled() {
        Some(Refusal::NoToken.to_string())
    } else if !can_edit {
        Some(format!("Log in with the admin token to change {what}."))
    } else {
        None
    };
    (can_edit, read_only)
}

fn range(r: &std::ops::RangeInclusive<u32>) -> String {
    format!("{}–{}", r.start(), r.end())
}

/// The form filled from `s`, then overwritten by what was `submitted` (so a
/// rejected form shows what the person typed).
pub fn view(app: &App, headers: &HeaderMap, s: &Settings, submitted: Option<&[(String, String)]>) -> View {
    let (can_edit, read_only) = may_edit(app, headers, "these settings");
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

pub fn with_errors(mut v: View, errors: &[Invalid]) -> View {
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

/// The settings page showing `v`, answered with `status`.
pub fn page(app: &App, headers: &HeaderMap, status: StatusCode, v: View) -> Response {
    let l = layout(app, headers, "Settings".into(), "settings", false);
    (status, render(app, l, "settings.html", &v, false)).into_response()
}

#[derive(Serialize)]
struct LoginView {
    enabled: bool,
    error: Option<String>,
    help: String,
}

/// The login page, with `error` above the form.
pub fn login_page(app: &App, headers: &HeaderMap, status: StatusCode, error: Option<String>) -> Response {
    let l = layout(app, headers, "Log in".into(), "login", false);
    let v = LoginView {
        enabled: app.auth.enabled(),
        error,
        help: Refusal::NoToken.to_string(),
    };
    (status, render(app, l, "login.html", &v, false)).into_response()
}
