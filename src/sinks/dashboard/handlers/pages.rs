//! The pages' handlers: the overview (`GET /`), one pump (`GET /pump/{id}`)
//! and its efficiency (`GET /pump/{id}/efficiency`).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::Value;
use serde::{Deserialize, Serialize};

use super::query::parse_window;
use crate::sinks::dashboard::app::App;
use crate::sinks::dashboard::views::templates::{layout, message, render, render_with};

#[derive(Deserialize)]
pub struct PageQuery {
    partial: Option<String>,
    window: Option<String>,
    chart: Option<String>,
}

/// `GET /`: one card per pump.
pub async fn overview(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    #[derive(Serialize)]
    struct Overview {
        pumps: usize,
    }
    let now = app.now();
    let cards: Vec<Value> = app
        .overview_html(now)
        .into_iter()
        .map(|h| Value::from_safe_string(h.to_string()))
        .collect();
    let page = Overview { pumps: cards.len() };
    let l = layout(&app, &headers, app.title.clone(), "overview", true);
    render_with(&app, l, "overview.html", &page, Value::from(cards), q.partial.is_some())
}

/// `GET /pump/{id}?window=MIN&chart=FIELD`: one pump over a window.
pub async fn pump(
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

/// `GET /pump/{id}/efficiency`: daily energy, COP and compressor starts. Not
/// live: daily figures change slowly, and a swap would close the open table.
pub async fn efficiency(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    match app.efficiency_page(&id, app.now()) {
        Some(page) => {
            let l = layout(&app, &headers, format!("{}: efficiency", page.name), "pump", false);
            render(&app, l, "efficiency.html", &page, q.partial.is_some())
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
