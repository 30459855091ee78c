//! The settings page (`GET`/`POST /settings`) and logging in and out.
//! Every `POST /settings` is checked in this order: is a token configured
//! (403), is it authenticated (401), does it come from our own origin (403), is
//! it valid (422), was it based on the current version (409).

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::sinks::dashboard::app::{App, SaveError};
use crate::sinks::dashboard::auth::Refusal;
use crate::sinks::dashboard::settings;
use crate::sinks::dashboard::views::settings_page::{login_page, page, view, with_errors};

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
    if let Some((status, text)) = form_refusal(&app, &headers, &uri) {
        return refuse(status, text);
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

/// Why a form post may not change anything, checked in this order: no token
/// is configured (403), the sender is not logged in (401), the post comes from
/// another origin (403). `None`: it may.
pub(super) fn form_refusal(app: &App, headers: &HeaderMap, uri: &Uri) -> Option<(StatusCode, String)> {
    if !app.auth.enabled() {
        return Some((StatusCode::FORBIDDEN, Refusal::NoToken.to_string()));
    }
    let credential = app.auth.credential(headers).ok();
    if credential.is_none() {
        return Some((StatusCode::UNAUTHORIZED, Refusal::NotLoggedIn.to_string()));
    }
    if let Err(r) = app.auth.same_origin(headers, uri, credential) {
        return Some((StatusCode::FORBIDDEN, r.to_string()));
    }
    None
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
