//! The HTTP side of the dashboard: the router (pages, JSON API, settings,
//! login, static files, security headers, body limit) and the handlers, which
//! read the request, ask [`views`](super::views) to render and answer. Pages
//! are in [`pages`], the JSON API in [`api`] (the heat pump inventory and
//! models in [`heatpumps`]), settings and login in [`settings_page`], the heat pump
//! pages in [`heatpumps_page`].

mod api;
mod heatpumps;
mod heatpumps_page;
mod pages;
mod query;
mod settings_page;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};

use super::app::App;
use super::views::templates::{message, ICON, SCRIPT, STYLE};

/// Largest request body accepted (the settings form of 10 pumps × 100 fields fits).
pub const BODY_LIMIT: usize = 64 * 1024;

pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Every route; see the module documentation of `dashboard` for the list.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/pump/{id}", get(pages::pump))
        .route("/pump/{id}/efficiency", get(pages::efficiency))
        .route("/heatpumps", get(heatpumps_page::list).post(heatpumps_page::create))
        .route("/heatpumps/{id}", post(heatpumps_page::change))
        .route("/heatpumps/{id}/edit", get(heatpumps_page::edit))
        .route("/heatpumps/{id}/{action}", post(heatpumps_page::change))
        .route("/settings", get(settings_page::show).post(settings_page::save))
        .route("/login", get(settings_page::login_form).post(settings_page::login))
        .route("/logout", post(settings_page::logout))
        .route("/static/{file}", get(static_file))
        .route("/api/pumps", get(api::pumps))
        .route("/api/pumps/{id}", get(api::pump))
        .route("/api/pumps/{id}/states", get(api::states))
        .route("/api/pumps/{id}/efficiency", get(api::efficiency))
        .route("/api/pumps/{id}/history/{field}", get(api::history))
        .route("/api/settings", get(api::settings).put(api::put_settings))
        .route("/api/heatpumps", get(heatpumps::list).post(heatpumps::create))
        .route(
            "/api/heatpumps/{id}",
            get(heatpumps::one)
                .put(heatpumps::update)
                .patch(heatpumps::update)
                .delete(heatpumps::delete)
                .post(heatpumps::test),
        )
        .route("/api/models", get(heatpumps::models))
        .route("/api/registers/{model}", get(heatpumps::registers))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(app.clone(), limit_guesses))
        .layer(middleware::from_fn_with_state(app.clone(), known_host))
        .layer(middleware::map_response(security_headers))
        .with_state(app)
}

/// Counts every failed credential (a wrong bearer token, a wrong token typed
/// into the login form) per client address, and answers `429` to a client's
/// further attempts once it used up its minute.
async fn limit_guesses(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    use axum::extract::connect_info::{ConnectInfo, MockConnectInfo};
    let ext = req.extensions();
    let client = (ext.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0))
        .or_else(|| ext.get::<MockConnectInfo<std::net::SocketAddr>>().map(|c| c.0))
        .map(|a| a.ip());
    let attempt = req.headers().contains_key(axum::http::header::AUTHORIZATION)
        || (req.method() == axum::http::Method::POST && req.uri().path() == "/login");
    if !attempt {
        return next.run(req).await;
    }
    if app.auth.throttled(client) {
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            format!("{}\n", crate::sinks::dashboard::auth::Refusal::TooManyFailures),
        )
            .into_response();
        r.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static("60"));
        return r;
    }
    let res = next.run(req).await;
    if res.status() == StatusCode::UNAUTHORIZED {
        app.auth.failed(client);
    }
    res
}

/// Refuses a request whose `Host` the dashboard does not answer to (DNS
/// rebinding); one without `Host` (HTTP/1.0) goes on.
async fn known_host(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .map(|h| h.to_str().unwrap_or("(not text)"));
    match host {
        Some(h) if !app.auth.host_allowed(h) => {
            let body = format!(
                "This dashboard does not answer to the host name `{h}`. If you reach it by that name, add it to `allowed_hosts` in the dashboard's section of the pipeline file.\n"
            );
            (StatusCode::MISDIRECTED_REQUEST, body).into_response()
        }
        _ => next.run(req).await,
    }
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

async fn static_file(Path(file): Path<String>) -> Response {
    let (body, ty) = match file.as_str() {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    };
    ([(CONTENT_TYPE, ty), (CACHE_CONTROL, "public, max-age=86400")], body).into_response()
}

async fn not_found(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap) -> Response {
    if uri.path().starts_with("/api/") {
        return api::error(StatusCode::NOT_FOUND, "no such API route; see the README for the list");
    }
    message(
        &app,
        &headers,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no page at this address.",
    )
}
