//! The templates and the frame of every page: the minijinja environment
//! (parsed once, HTML auto-escaped), the layout, rendering a page whole or
//! as the `<main>` part alone, and the message page. The static files the
//! pages link are here too, since their checksum versions the links.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use minijinja::value::Serde;
use minijinja::{context, AutoEscape, Environment, UndefinedBehavior, Value};
use serde::Serialize;
use tracing::error;

use super::format::time_of_day;
use crate::sinks::dashboard::app::App;

pub const STYLE: &str = include_str!("../static/style.css");
pub const SCRIPT: &str = include_str!("../static/app.js");
pub const ICON: &str = include_str!("../static/icon.svg");

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../templates/layout.html")),
    ("macros.html", include_str!("../templates/macros.html")),
    ("overview.html", include_str!("../templates/overview.html")),
    ("pump.html", include_str!("../templates/pump.html")),
    ("efficiency.html", include_str!("../templates/efficiency.html")),
    ("settings.html", include_str!("../templates/settings.html")),
    ("heatpumps.html", include_str!("../templates/heatpumps.html")),
    ("heatpump_edit.html", include_str!("../templates/heatpump_edit.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("message.html", include_str!("../templates/message.html")),
];

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
            return super::escape::write_escaped(out, s)
                .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "writing the page failed"));
        }
    }
    minijinja::escape_formatter(out, state, value)
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
    /// The dashboard manages a heat pump inventory (the nav links its page).
    pub inventory: bool,
    pub updated: String,
    /// Why the last configuration reload was refused, while it is the last one.
    pub reload_error: Option<String>,
    /// A reloaded change waits for a restart.
    pub restart_needed: bool,
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
    let reloads = app.telemetry.reloads().snapshot();
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
        inventory: app.registers.inventory.is_some(),
        updated: time_of_day(app.now(), &app.tz),
        reload_error: reloads.last_error,
        restart_needed: reloads.restart_needed,
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
