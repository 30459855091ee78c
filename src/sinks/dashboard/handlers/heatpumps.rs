//! The heat pump API, in HPManager's shapes: the inventory
//! (`GET/POST /api/heatpumps`, `GET/PUT/PATCH/DELETE /api/heatpumps/{id}`)
//! and the register map's models (`GET /api/models`,
//! `GET /api/registers/{model}`) and the connection test
//! (`POST /api/heatpumps/test`). Reads are open; changes go through
//! [`api::authorized`] like the settings. Errors carry HPManager's `detail`
//! and hpflow's `error` (the same sentence), validation errors add
//! `errors: [{field, message}]`.

// The `Err` of these helpers is the answer itself, returned at once.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::header::{ETAG, IF_MATCH};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value as Json_};
use serde_yaml::Value as Yaml;

use super::api::authorized;
use crate::event::rfc3339;
use crate::hpmanager::edit::{check_entry, Change, EditError, FieldError};
use crate::registers::RegisterMap;
use crate::sinks::dashboard::app::App;
use crate::sinks::dashboard::connection::{self, ConnectionTest};
use crate::sinks::dashboard::inventory::{ChangeError, Inventory};
use crate::sinks::dashboard::views::format::Group;

/// An error in both shapes: hpflow's `error` and HPManager's `detail`.
fn refused(status: StatusCode, message: &str, errors: &[FieldError]) -> Response {
    let mut body = json!({ "error": message, "detail": message });
    if !errors.is_empty() {
        body["errors"] = json!(errors);
    }
    (status, Json(body)).into_response()
}

fn not_configured(key: &str) -> Response {
    refused(
        StatusCode::NOT_FOUND,
        &format!(
            "this dashboard manages no heat pumps: set `{key}` in the dashboard sink's section of the pipeline file \
             (`inventory = \"heatpumps.yml\"` with `registers = \"registers.yml\"`)"
        ),
        &[],
    )
}

pub(super) fn inventory(app: &App) -> Result<&Inventory, Response> {
    match (&app.registers.inventory, &app.registers.map) {
        (Some(i), _) => Ok(i),
        (None, None) => Err(not_configured("inventory` and `registers")),
        (None, Some(_)) => Err(not_configured("inventory")),
    }
}

fn register_map(app: &App) -> Result<&Arc<RegisterMap>, Response> {
    app.registers.map.as_ref().ok_or_else(|| not_configured("registers"))
}

fn with_etag(mut r: Response, version: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        r.headers_mut().insert(ETAG, v);
    }
    r
}

/// An entry as HPManager answered it: its keys as in the file (defaults for
/// `enabled`, `name` and `location`), the latest values (`data`) and `cop`.
fn entry_json(app: &App, entry: &Yaml) -> Json_ {
    let mut o = match serde_json::to_value(entry) {
        Ok(Json_::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    let id = o
        .get("id")
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
    o.entry("name").or_insert_with(|| id.clone().into());
    o.entry("location").or_insert(Json_::Null);
    o.entry("enabled").or_insert(true.into());
    let data = id
        .and_then(|id| {
            app.read_store()
                .devices
                .get(id.as_str())
                .map(|d| json!(d.metric.fields))
        })
        .unwrap_or_else(|| json!({}));
    o.insert("data".into(), data);
    o.insert("cop".into(), Json_::Null);
    Json_::Object(o)
}

/// Reads the inventory off the async threads.
pub(super) async fn read(app: &Arc<App>) -> Result<(Vec<Yaml>, String), Response> {
    let app2 = app.clone();
    let read = tokio::task::spawn_blocking(move || inventory(&app2).map(|i| i.read())).await;
    match read {
        Ok(Ok(Ok(r))) => Ok(r),
        Ok(Err(r)) => Err(r),
        Ok(Ok(Err(e))) => Err(refused(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), &[])),
        Err(e) => Err(refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("reading failed: {e}"),
            &[],
        )),
    }
}

/// `GET /api/heatpumps`: `{"heat_pumps": [entry…], "timestamp"}`, every entry
/// of the file (disabled ones too).
pub async fn list(State(app): State<Arc<App>>) -> Response {
    let (entries, version) = match read(&app).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let list: Vec<Json_> = entries.iter().map(|e| entry_json(&app, e)).collect();
    let body = json!({ "heat_pumps": list, "timestamp": rfc3339(app.now()) });
    with_etag(Json(body).into_response(), &version)
}

/// `GET /api/heatpumps/{id}`: one entry and `timestamp`.
pub async fn one(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let (entries, version) = match read(&app).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(entry) = entries
        .iter()
        .find(|e| crate::hpmanager::edit::id_of(e).as_deref() == Some(&id))
    else {
        return refused(StatusCode::NOT_FOUND, &format!("Heat pump {id} not found"), &[]);
    };
    let mut body = entry_json(&app, entry);
    body["timestamp"] = rfc3339(app.now()).into();
    with_etag(Json(body).into_response(), &version)
}

/// Authorises a write and gives its body as a YAML entry.
fn authorized_entry(
    app: &App,
    headers: &HeaderMap,
    uri: &Uri,
    body: Result<Json<Json_>, JsonRejection>,
) -> Result<Yaml, Response> {
    let body = authorized(app, headers, uri, body)?;
    serde_yaml::to_value(&body).map_err(|e| refused(StatusCode::BAD_REQUEST, &format!("not a heat pump: {e}"), &[]))
}

/// Authorises, applies `change` (built from the body) and answers HPManager's
/// `{message, heat_pump, requires_restart}` (no restart: `hpflow run` reloads).
async fn change(
    app: Arc<App>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Json<Json_>, JsonRejection>,
    make: impl FnOnce(Yaml) -> Change,
    done: (StatusCode, &'static str),
) -> Response {
    if let Err(r) = inventory(&app) {
        return r;
    }
    let body = match authorized_entry(&app, &headers, &uri, body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let if_match = headers.get(IF_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string);
    let change = make(body);
    let deleting = matches!(change, Change::Delete(_));
    let (entry, version) = match apply(&app, change, if_match).await {
        Ok(r) => r,
        Err((status, text, errors)) => return refused(status, &text, &errors),
    };
    let (status, message) = done;
    let body = if deleting {
        let name = entry.get("name").and_then(crate::yaml::scalar);
        let name = name
            .or_else(|| crate::hpmanager::edit::id_of(&entry))
            .unwrap_or_default();
        json!({ "message": format!("Heat pump '{name}' deleted successfully"), "requires_restart": false })
    } else {
        json!({ "message": message, "heat_pump": entry_json(&app, &entry), "requires_restart": false })
    };
    with_etag((status, Json(body)).into_response(), &version)
}

/// Why a change was refused: its status, its sentence and the fields at fault.
pub(super) type Refused = (StatusCode, String, Vec<FieldError>);

/// Applies `change` to the inventory off the async threads (checked, then
/// written atomically); `if_match` is the version the client read. The API
/// and the heat pump pages both change the file through here.
pub(super) async fn apply(app: &Arc<App>, change: Change, if_match: Option<String>) -> Result<(Yaml, String), Refused> {
    let app2 = app.clone();
    let result = tokio::task::spawn_blocking(move || {
        let inventory = inventory(&app2).map_err(|_| ChangeError::Edit(EditError::File("no inventory".into())))?;
        inventory.change(change, if_match.as_deref())
    })
    .await;
    match result {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(change_error(e)),
        Err(e) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("saving failed: {e}"),
            Vec::new(),
        )),
    }
}

/// Checks `body` like a create body (`id` may be left out) and reads its
/// device once; the API and the pump forms test through here.
pub(super) async fn test_connection(app: &App, body: &Yaml) -> Result<ConnectionTest, Refused> {
    let no_map = || {
        (
            StatusCode::NOT_FOUND,
            "no register map configured".to_string(),
            Vec::new(),
        )
    };
    let map = app.registers.map.as_ref().ok_or_else(no_map)?;
    let entry = check_entry(body, map).map_err(|e| change_error(ChangeError::Edit(e)))?;
    connection::test(map, &entry).await.ok_or_else(|| {
        let text = "the heat pump cannot be tested: only Modbus TCP entries can".to_string();
        (StatusCode::UNPROCESSABLE_ENTITY, text, Vec::new())
    })
}

/// `POST /api/heatpumps/test` (the `{id}` route's `POST`: no other id takes
/// one): reads the device of a create body once and answers `{ok, target,
/// unit_id, model, requests: {sent, answered}, fields: {read, total}, values:
/// {field: value}, error: null | {kind, code, message}}`.
pub async fn test(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Json<Json_>, JsonRejection>,
) -> Response {
    if id != "test" {
        return refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST is only for /api/heatpumps and /api/heatpumps/test",
            &[],
        );
    }
    if let Err(r) = register_map(&app) {
        return r;
    }
    let body = match authorized_entry(&app, &headers, &uri, body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match test_connection(&app, &body).await {
        Ok(t) => Json(json!({
            "ok": t.ok,
            "target": t.target,
            "unit_id": t.unit_id,
            "model": t.model,
            "requests": { "sent": t.requests_sent, "answered": t.requests_answered },
            "fields": { "read": t.fields_read, "total": t.fields_total },
            "values": t.values_json(),
            "error": t.error,
        }))
        .into_response(),
        Err((status, text, errors)) => refused(status, &text, &errors),
    }
}

fn change_error(e: ChangeError) -> Refused {
    let text = e.to_string();
    let (status, errors) = match e {
        ChangeError::Edit(EditError::NotFound(_)) => (StatusCode::NOT_FOUND, Vec::new()),
        ChangeError::Edit(EditError::Duplicate(f)) => (StatusCode::CONFLICT, vec![f]),
        ChangeError::Edit(EditError::Invalid(errors)) => (StatusCode::UNPROCESSABLE_ENTITY, errors),
        ChangeError::Stale { .. } => (StatusCode::PRECONDITION_FAILED, Vec::new()),
        ChangeError::Edit(EditError::File(_)) | ChangeError::Io { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, Vec::new())
        }
    };
    (status, text, errors)
}

/// `POST /api/heatpumps`: `201` with the entry as written.
pub async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Json<Json_>, JsonRejection>,
) -> Response {
    let done = (StatusCode::CREATED, "Heat pump created successfully");
    change(app, headers, uri, body, Change::Create, done).await
}

/// `PUT /api/heatpumps/{id}` replaces the whole entry; `PATCH` sets the keys
/// given (`modbus` key by key).
pub async fn update(
    State(app): State<Arc<App>>,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Json<Json_>, JsonRejection>,
) -> Response {
    let done = (StatusCode::OK, "Heat pump updated successfully");
    let make = |b| match method {
        Method::PATCH => Change::Patch(id, b),
        _ => Change::Replace(id, b),
    };
    change(app, headers, uri, body, make, done).await
}

/// `DELETE /api/heatpumps/{id}`.
pub async fn delete(State(app): State<Arc<App>>, Path(id): Path<String>, headers: HeaderMap, uri: Uri) -> Response {
    let done = (StatusCode::OK, "");
    change(app, headers, uri, Ok(Json(Json_::Null)), |_| Change::Delete(id), done).await
}

/// `GET /api/models`: `{"models": [{name, description, register_count}]}`.
pub async fn models(State(app): State<Arc<App>>) -> Response {
    let map = match register_map(&app) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let models: Vec<Json_> = map
        .models()
        .map(|m| {
            json!({
                "name": m.name(),
                "description": m.description().unwrap_or(""),
                "register_count": m.registers().len(),
            })
        })
        .collect();
    Json(json!({ "models": models })).into_response()
}

/// `GET /api/registers/{model}`: `{"model", "fields": [{name, description,
/// unit, category}]}`, the fields a pump of the model reports.
pub async fn registers(State(app): State<Arc<App>>, Path(model): Path<String>) -> Response {
    let map = match register_map(&app) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(m) = map.model(&model) else {
        return refused(StatusCode::NOT_FOUND, &format!("Model '{model}' not found"), &[]);
    };
    let fields: Vec<Json_> = (m.schema().fields.iter())
        .map(|f| {
            json!({
                "name": &*f.name,
                "description": f.description.as_deref().unwrap_or(&f.name),
                "unit": f.unit.as_deref().unwrap_or(""),
                "category": Group::of(f).title(),
            })
        })
        .collect();
    Json(json!({ "model": model, "fields": fields })).into_response()
}
