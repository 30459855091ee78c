//! The router: pages, static files, security headers, body limit. The JSON
//! API is in [`super::api`], settings and login in [`super::settings_page`].

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};
use minijinja::value::Serde;
use minijinja::{context, AutoEscape, Environment, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};
use tracing::error;

use super::app::App;
use super::format::time_of_day;
use super::settings::WINDOW_MINUTES;
use super::{api, settings_page};

/// Largest request body accepted (the settings form of 10 pumps × 100 fields fits).
pub const BODY_LIMIT: usize = 64 * 1024;

pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const STYLE: &str = include_str!("static/style.css");
const SCRIPT: &str = include_str!("static/app.js");
const ICON: &str = include_str!("static/icon.svg");

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("card.html", include_str!("templates/card.html")),
    ("pump.html", include_str!("templates/pump.html")),
    ("settings.html", include_str!("templates/settings.html")),
    ("login.html", include_str!("templates/login.html")),
    ("message.html", include_str!("templates/message.html")),
];

/// Every route; see the module documentation of `dashboard` for the list.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/pump/{id}", get(pump))
        .route("/settings", get(settings_page::show).post(settings_page::save))
        .route("/login", get(settings_page::login_form).post(settings_page::login))
        .route("/logout", post(settings_page::logout))
        .route("/static/{file}", get(static_file))
        .route("/api/pumps", get(api::pumps))
        .route("/api/pumps/{id}", get(api::pump))
        .route("/api/pumps/{id}/states", get(api::states))
        .route("/api/pumps/{id}/history/{field}", get(api::history))
        .route("/api/settings", get(api::settings).put(api::put_settings))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::map_response(security_headers))
        .with_state(app)
}

/// The templates, parsed once; HTML auto-escaping for every one of them.
pub fn templates() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?,
    );
    env.set_formatter(html_formatter);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    // Bumped whenever CSS or JS change, so browsers may cache them for long.
    let asset = format!("{:08x}", crc32fast::hash(format!("{STYLE}{SCRIPT}{ICON}").as_bytes()));
    env.add_global("asset", asset);
    env.add_global("hpflow_version", env!("CARGO_PKG_VERSION"));
    Ok(env)
}

/// Escapes `& < > " '` (all HTML needs in text and quoted attributes); unlike
/// the default it leaves `/` alone, which keeps links readable and pages small.
fn html_formatter(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    if matches!(state.auto_escape(), AutoEscape::Html) && !value.is_safe() {
        if let Some(s) = value.as_str() {
            let mut last = 0;
            let fail = |_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "writing the page failed");
            for (i, b) in s.bytes().enumerate() {
                let rep = match b {
                    b'&' => "&amp;",
                    b'<' => "&lt;",
                    b'>' => "&gt;",
                    b'"' => "&quot;",
                    b'\'' => "&#39;",
                    _ => continue,
                };
                out.write_str(&s[last..i]).map_err(fail)?;
                out.write_str(rep).map_err(fail)?;
                last = i + 1;
            }
            return out.write_str(&s[last..]).map_err(fail);
        }
    }
    minijinja::escape_formatter(out, state, value)
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

/// The frame of every page.
#[derive(Serialize)]
pub struct Layout<'a> {
    pub title: &'a str,
    pub heading: String,
    pub nav: &'static str,
    /// Seconds between live updates; 0 turns them off (forms).
    pub refresh: u32,
    pub logged_in: bool,
    pub auth_enabled: bool,
    pub updated: String,
}

/// Renders `main` (a template) inside the layout, or alone for `?partial=1`
/// (what the live-update script fetches).
pub fn render<P: Serialize>(app: &App, layout: Layout<'_>, main: &str, page: &P, partial: bool) -> Response {
    render_with(app, layout, main, page, Value::UNDEFINED, partial)
}

/// [`render`] with `extra` (pre-rendered, safe fragments) as the variable `extra`.
pub fn render_with<P: Serialize>(
    app: &App,
    layout: Layout<'_>,
    main: &str,
    page: &P,
    extra: Value,
    partial: bool,
) -> Response {
    let ctx = context! {
        l => Value::from(Serde(&layout)),
        p => Value::from(Serde(page)),
        main => main,
        extra => extra,
    };
    let name = if partial { main } else { "layout.html" };
    match app.templates.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            error!(component = %app.id, template = main, error = %e, "Rendering a dashboard page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering the page failed; see hpflow's log\n",
            )
                .into_response()
        }
    }
}

pub fn layout<'a>(app: &'a App, headers: &HeaderMap, heading: String, nav: &'static str, live: bool) -> Layout<'a> {
    Layout {
        title: &app.title,
        heading,
        nav,
        refresh: if live {
            app.settings().refresh_interval_seconds
        } else {
            0
        },
        logged_in: app.auth.logged_in(headers),
        auth_enabled: app.auth.enabled(),
        updated: time_of_day(app.now(), &app.tz),
    }
}

/// A page that only says something (errors, not found).
pub fn message(app: &App, headers: &HeaderMap, status: StatusCode, heading: &str, text: &str) -> Response {
    #[derive(Serialize)]
    struct Message<'a> {
        text: &'a str,
    }
    let l = layout(app, headers, heading.to_string(), "", false);
    (status, render(app, l, "message.html", &Message { text }, false)).into_response()
}

#[derive(Deserialize)]
pub struct PageQuery {
    partial: Option<String>,
    window: Option<String>,
    chart: Option<String>,
}

async fn overview(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    #[derive(Serialize)]
    struct Overview {
        pumps: usize,
    }
    let now = app.now();
    let cards: Vec<Value> = match app.overview_html(now) {
        Ok(c) => c.into_iter().map(|h| Value::from_safe_string(h.to_string())).collect(),
        Err(e) => {
            error!(component = %app.id, error = %e, "Rendering a dashboard card failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering the page failed; see hpflow's log\n",
            )
                .into_response();
        }
    };
    let page = Overview { pumps: cards.len() };
    let l = layout(&app, &headers, app.title.clone(), "overview", true);
    render_with(&app, l, "overview.html", &page, Value::from(cards), q.partial.is_some())
}

async fn pump(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let window = match parse_window(q.window.as_deref(), app.settings().window_minutes(&id)) {
        Ok(w) => w,
        Err(text) => return message(&app, &headers, StatusCode::BAD_REQUEST, "Bad window", &text),
    };
    let now = app.now();
    match app.pump_page(&id, window, q.chart.as_deref(), now) {
        Some(page) => {
            let l = layout(&app, &headers, page.card.name.clone(), "pump", true);
            render(&app, l, "pump.html", &page, q.partial.is_some())
        }
        None => message(
            &app,
            &headers,
            StatusCode::NOT_FOUND,
            "No such heat pump",
            &format!("No heat pump `{id}` has reported to this dashboard."),
        ),
    }
}

/// A window in minutes from a query parameter, checked against the allowed range.
pub fn parse_window(given: Option<&str>, default: u32) -> Result<u32, String> {
    let Some(given) = given else { return Ok(default) };
    match given.trim().parse::<u32>() {
        Ok(w) if WINDOW_MINUTES.contains(&w) => Ok(w),
        _ => Err(format!(
            "The window must be a whole number of minutes from {} to {} (got `{given}`).",
            WINDOW_MINUTES.start(),
            WINDOW_MINUTES.end()
        )),
    }
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
