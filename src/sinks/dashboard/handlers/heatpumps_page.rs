//! The heat pump pages: the list with its add form (`GET /heatpumps`), the
//! edit form (`GET /heatpumps/{id}/edit`) and their posts (`POST /heatpumps`,
//! `POST /heatpumps/{id}`, `.../delete`, `.../enabled`) and the forms' "Test
//! connection" button (`POST /heatpumps/test` with `test` set: the form
//! comes back with what the device answered, nothing is written), and the
//! edit page's checklist of the fields shown on the pump's card
//! (`POST /heatpumps/{id}/fields`, saved to the dashboard settings' per-pump
//! `visible_fields` like the settings form, with its version check). Every post is
//! authorised like the settings form ([`form_refusal`]) and changes the file
//! through the API's [`apply`], so the checks and the atomic write are the
//! API's; a refused form comes back with what was typed and each message next
//! to its input.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_yaml::Value as Yaml;

use super::heatpumps::{apply, read, test_connection};
use super::settings_page::form_refusal;
use crate::hpmanager::edit::{id_of, Change};
use crate::sinks::dashboard::app::{App, SaveError};
use crate::sinks::dashboard::views::format::path_segment;
use crate::sinks::dashboard::views::heatpumps_page::{page, view, PumpForm, View};
use crate::sinks::dashboard::views::templates::message;

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
    id: Option<String>,
}

/// `GET /heatpumps`; `?done=added&id=hp2` says what the last post did.
pub async fn list(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<Done>) -> Response {
    let (entries, version) = match read(&app).await {
        Ok(r) => r,
        Err(r) => return not_managed(&app, &headers, r.status()),
    };
    let mut v = view(&app, &headers, &entries, version);
    if let (Some(done), Some(id)) = (q.done.as_deref(), q.id) {
        let what = match done {
            "added" => "added",
            "saved" => "saved",
            "deleted" => "deleted",
            "enabled" => "enabled",
            "disabled" => "disabled",
            _ => "changed",
        };
        v.notice = Some(match done {
            "fields" => format!("Fields shown for heat pump {id} saved."),
            _ => format!("Heat pump {id} {what}."),
        });
    }
    page(&app, &headers, StatusCode::OK, v)
}

/// `GET /heatpumps/{id}/edit`.
pub async fn edit(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (entries, version) = match read(&app).await {
        Ok(r) => r,
        Err(r) => return not_managed(&app, &headers, r.status()),
    };
    let Some(entry) = find(&entries, &id) else {
        return no_pump(&app, &headers, &id);
    };
    let form = PumpForm::of(entry);
    page(
        &app,
        &headers,
        StatusCode::OK,
        view(&app, &headers, &entries, version).editing(&id, form),
    )
}

/// `POST /heatpumps`: the add form.
pub async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let form = PumpForm::posted(&pairs);
    let change = Change::Create(form.entry());
    post(app, headers, uri, &pairs, None, form, change, "added").await
}

/// `POST /heatpumps/{id}` (the edit form; keys it does not show, such as a
/// `timeout` or HPManager's retries, are kept), `POST /heatpumps/{id}/delete`
/// and `POST /heatpumps/{id}/enabled` (`enabled=true` or `false`).
pub async fn change(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Path(path): Path<BTreeMap<String, String>>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let id = path.get("id").cloned().unwrap_or_default();
    match path.get("action").map(String::as_str) {
        // The test button of either form (the edit form of a pump `test` sends no `test`).
        None if id == "test" && pairs.iter().any(|(k, _)| k == "test") => test(app, headers, uri, &pairs).await,
        None => {
            let form = PumpForm::posted(&pairs);
            let change = Change::Patch(id.clone(), form.entry());
            post(app, headers, uri, &pairs, Some(&id), form, change, "saved").await
        }
        Some("delete") => {
            let change = Change::Delete(id);
            post(app, headers, uri, &pairs, None, PumpForm::default(), change, "deleted").await
        }
        Some("enabled") => {
            let on = pairs.iter().any(|(k, v)| k == "enabled" && v == "true");
            let mut patch = serde_yaml::Mapping::new();
            patch.insert("enabled".into(), on.into());
            let change = Change::Patch(id, Yaml::Mapping(patch));
            let done = if on { "enabled" } else { "disabled" };
            post(app, headers, uri, &pairs, None, PumpForm::default(), change, done).await
        }
        Some("fields") => fields(app, headers, uri, &id, &pairs).await,
        Some(_) => message(
            &app,
            &headers,
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no page at this address.",
        ),
    }
}

/// Authorises a post, applies `change` and sends the browser back to the list
/// (`303`); refused, it shows the page again: the edit form when `editing`,
/// else the list with the add form holding what was typed.
#[allow(clippy::too_many_arguments)]
async fn post(
    app: Arc<App>,
    headers: HeaderMap,
    uri: Uri,
    pairs: &[(String, String)],
    editing: Option<&str>,
    form: PumpForm,
    change: Change,
    done: &str,
) -> Response {
    let creating = matches!(change, Change::Create(_));
    let again = |mut v: View| match editing {
        Some(id) => v.editing(id, form.clone()),
        None if creating => {
            v.form = form.clone();
            v
        }
        None => v,
    };
    let (entries, version) = match read(&app).await {
        Ok(r) => r,
        Err(r) => return not_managed(&app, &headers, r.status()),
    };
    if let Some((status, text)) = form_refusal(&app, &headers, &uri) {
        let v = again(view(&app, &headers, &entries, version)).with_errors(text, &[]);
        return page(&app, &headers, status, v);
    }
    let if_match = (pairs.iter())
        .find(|(k, v)| k == "version" && !v.is_empty())
        .map(|(_, v)| v.clone());
    let v0 = again(view(&app, &headers, &entries, version));
    match apply(&app, change, if_match).await {
        Ok((entry, _)) => {
            let id = id_of(&entry).unwrap_or_default();
            Redirect::to(&format!("/heatpumps?done={done}&id={}", path_segment(&id))).into_response()
        }
        Err((StatusCode::NOT_FOUND, text, _)) => message(&app, &headers, StatusCode::NOT_FOUND, "Not found", &text),
        Err((status, text, errors)) => {
            // A stale form shows what the file holds now, so nothing is overwritten blindly.
            let v = if status == StatusCode::PRECONDITION_FAILED {
                match read(&app).await {
                    Ok((entries, version)) => again(view(&app, &headers, &entries, version)),
                    Err(_) => v0,
                }
            } else {
                v0
            };
            page(&app, &headers, status, v.with_errors(text, &errors))
        }
    }
}

/// The "Test connection" button: the form comes back (the edit form when it
/// says which pump it edits) with what the device answered, or with the
/// messages of the fields at fault.
async fn test(app: Arc<App>, headers: HeaderMap, uri: Uri, pairs: &[(String, String)]) -> Response {
    let form = PumpForm::posted(pairs);
    let editing = (pairs.iter())
        .find(|(k, v)| k == "editing" && !v.is_empty())
        .map(|(_, v)| v.clone());
    let (entries, version) = match read(&app).await {
        Ok(r) => r,
        Err(r) => return not_managed(&app, &headers, r.status()),
    };
    let mut entry = form.entry();
    // The edit form does not show a `timeout`; the test uses the pump's.
    let timeout = (editing.as_deref())
        .and_then(|id| find(&entries, id))
        .and_then(|e| e.get("modbus")?.get("timeout").cloned());
    if let (Some(t), Some(Yaml::Mapping(mb))) = (timeout, entry.get_mut("modbus")) {
        mb.insert("timeout".into(), t);
    }
    let mut v = view(&app, &headers, &entries, version);
    v = match &editing {
        Some(id) => v.editing(id, form),
        None => {
            v.form = form;
            v
        }
    };
    if let Some((status, text)) = form_refusal(&app, &headers, &uri) {
        return page(&app, &headers, status, v.with_errors(text, &[]));
    }
    match test_connection(&app, &entry).await {
        Ok(t) => {
            v.test = Some(t);
            page(&app, &headers, StatusCode::OK, v)
        }
        Err((status, text, errors)) => page(&app, &headers, status, v.with_errors(text, &errors)),
    }
}

/// `POST /heatpumps/{id}/fields`: the ticked `field`s become the pump's
/// `visible_fields` (none: the default tiles), saved at `settings_version`.
async fn fields(app: Arc<App>, headers: HeaderMap, uri: Uri, id: &str, pairs: &[(String, String)]) -> Response {
    let (entries, version) = match read(&app).await {
        Ok(r) => r,
        Err(r) => return not_managed(&app, &headers, r.status()),
    };
    let Some(entry) = find(&entries, id) else {
        return no_pump(&app, &headers, id);
    };
    let again = |errors: &[String]| {
        let v = view(&app, &headers, &entries, version.clone()).editing(id, PumpForm::of(entry));
        errors.iter().fold(v, |v, e| v.with_errors(e.clone(), &[]))
    };
    if let Some((status, text)) = form_refusal(&app, &headers, &uri) {
        return page(&app, &headers, status, again(&[text]));
    }
    let based_on = (pairs.iter())
        .find(|(k, _)| k == "settings_version")
        .and_then(|(_, v)| v.trim().parse::<u64>().ok());
    let Some(based_on) = based_on else {
        let text = "The form lacks its version; reload the page and try again.".to_string();
        return page(&app, &headers, StatusCode::UNPROCESSABLE_ENTITY, again(&[text]));
    };
    let ticked: Vec<String> = (pairs.iter())
        .filter(|(k, _)| k == "field")
        .map(|(_, v)| v.clone())
        .collect();
    let mut next = (*app.settings()).clone();
    next.pumps.entry(id.to_string()).or_default().visible_fields = (!ticked.is_empty()).then_some(ticked);
    let app2 = app.clone();
    let (status, errors) = match tokio::task::spawn_blocking(move || app2.save_settings(based_on, next)).await {
        Ok(Ok(_)) => return Redirect::to(&format!("/heatpumps?done=fields&id={}", path_segment(id))).into_response(),
        Ok(Err(SaveError::Invalid(errors))) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            errors.into_iter().map(|e| e.message).collect(),
        ),
        Ok(Err(e @ SaveError::Conflict { .. })) => (StatusCode::CONFLICT, vec![e.to_string()]),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, vec![e.to_string()]),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, vec![format!("Not saved: {e}")]),
    };
    page(&app, &headers, status, again(&errors))
}

fn find<'a>(entries: &'a [Yaml], id: &str) -> Option<&'a Yaml> {
    entries.iter().find(|e| id_of(e).as_deref() == Some(id))
}

fn no_pump(app: &App, headers: &HeaderMap, id: &str) -> Response {
    let text = format!("There is no heat pump `{id}` in the inventory.");
    message(app, headers, StatusCode::NOT_FOUND, "Not found", &text)
}

fn not_managed(app: &App, headers: &HeaderMap, status: StatusCode) -> Response {
    let text = if status == StatusCode::NOT_FOUND {
        "This dashboard manages no heat pumps: set `inventory` and `registers` in the dashboard sink's section of the pipeline file."
    } else {
        "The inventory file cannot be read; see hpflow's log."
    };
    message(app, headers, status, "Heat pumps", text)
}
