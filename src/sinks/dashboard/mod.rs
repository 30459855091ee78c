//! `dashboard`: live web pages of every heat pump, served from the events the
//! sink receives; it keeps its own recent history, so it needs no database.
//!
//! ```toml
//! [sinks.dashboard]
//! type = "dashboard"
//! inputs = ["states"]
//! address = "127.0.0.1:8080"                  # the default
//! title = "Heat pumps"
//! display = "../config/display.yml"           # HPManager's display settings, read while no settings file exists
//! # admin_token_file = "/run/secrets/hpflow_admin_token"   # else HPFLOW_ADMIN_TOKEN; neither: read-only
//! # trusted_origins = ["https://heat.example.org"]          # behind a reverse proxy that rewrites Host
//! # allowed_hosts = ["heatpump.home.arpa"]                  # names besides IP addresses and localhost
//! # offline_after = "1m"                      # default: 3 poll intervals, at least 30s
//! fault_field = "fault_status"                # non-zero: a fault banner on the card
//! mode_field = "operating_mode"               # its label is the card's operating mode
//! max_pumps = 100
//! persist_interval = "10m"                    # history is also saved at shutdown
//! # inventory = "../config/heatpumps.yml"    # the heat pump API manages this inventory…
//! # registers = "../config/registers.yml"    # …whose models come from this register map
//! ```
//!
//! # Pages
//! Everything renders on the server (minijinja templates embedded in the
//! binary, parsed once at start, auto-escaped), so pages are complete without
//! JavaScript. A 1.6 KB script makes them live: every refresh interval it
//! fetches the same URL with `?partial=1` (just the `<main>` part, same
//! template) and swaps it in. No CDN, fonts or external URLs.
//!
//! - `GET /`: one card per pump: name, location, model; online/offline with the
//!   age of the last poll; a fault banner; the operating mode; status rows with
//!   "since HH:MM" (a date when older than a day, "since unknown" when
//!   `state_diff` could not know); tiles in the configured order with unit,
//!   decimals and a sparkline (SVG drawn on the server, time on the x axis so
//!   gaps show, min – max below).
//! - `GET /pump/{id}?window=MIN&chart=FIELD`: the card, larger charts (the
//!   pump's tiles, plus `chart`), a window selector from 5 minutes to 24 hours,
//!   recent state flips, and every field grouped (temperatures, pressures,
//!   flow, power and energy, runtimes, status, parameters).
//! - `GET /pump/{id}/efficiency`: the days the `efficiency` transform
//!   published on the telemetry registry: heat and electricity per day
//!   (heating, hot water, booster stacked) and compressor starts over the last
//!   30 days, daily COP against the outdoor temperature and the seasonal COP of
//!   the last 365 days, as SVG drawn on the server (not refreshed live);
//!   without the transform, how to add it. The card shows `cop_today`, `heat_today_kwh` and
//!   `electricity_today_kwh` when the last poll has them.
//! - `GET /settings`, `POST /settings`: poll interval (applied to the running
//!   sources at once through [`Control`](crate::component::Control)), refresh
//!   interval, default and per-pump sparkline window, tiles per pump. See
//!   [`settings`] for the file; a save based on an old version gets `409`.
//! - `GET /heatpumps` (with `inventory` set; linked from the menu): the
//!   inventory with edit / enable-disable / delete and an add form;
//!   `GET /heatpumps/{id}/edit`. Posts (`POST /heatpumps`, `/heatpumps/{id}`,
//!   `/heatpumps/{id}/delete`, `/heatpumps/{id}/enabled`) are authorised like
//!   the settings form and checked and written like the heat pump API; `303`
//!   back to the list, or the form again with each message at its field. The
//!   forms' "Test connection" button posts `test=1` to `POST /heatpumps/test`:
//!   the form again with what one read of the device answered (see
//!   `connection.rs`), nothing written. `POST /heatpumps/{id}/fields` saves
//!   the edit page's checklist of fields as the pump's `visible_fields` in
//!   the settings (with their `settings_version`; `409` when stale).
//! - `GET /login`, `POST /login`, `POST /logout`: see [`auth`].
//! - `GET /static/{style.css,app.js,icon.svg}`.
//!
//! # JSON API
//! - `GET /api/pumps`: `{"pumps": [{id, name, location, model, tags, online,
//!   last_poll, age_seconds, fault, mode, values: {field: value}}]}`.
//! - `GET /api/pumps/{id}`: the same for one pump with `fields: [{name, value,
//!   text, unit, kind, group, description, since, since_known}]`.
//! - `GET /api/pumps/{id}/states`: `{"id", "states": [{field, label, value,
//!   text, since, since_known}]}` (`since` RFC 3339, `null` when unknown).
//! - `GET /api/pumps/{id}/efficiency`: `{"id", "days": [{date, heat_heating,
//!   …, cop, cop_heating, cop_dhw}]}` (dates `YYYY-MM-DD`, `null` unknown).
//! - `GET /api/pumps/{id}/history/{field}?window=MIN` (5–1440, default the
//!   pump's sparkline window): `{id, field, unit, window_minutes,
//!   resolution_seconds, points: [[unix_ms, value], …]}`.
//! - `GET /api/settings`: the settings with `version`, plus `auth_enabled` and
//!   the sources' current `poll_intervals`.
//! - `PUT /api/settings` (`Authorization: Bearer <token>` or the login cookie):
//!   the whole settings with the `version` they were read at. `200` with the new
//!   settings; `400` malformed, `401` no or wrong token, `403` no token
//!   configured or another origin, `409` changed meanwhile, `422` invalid
//!   (`errors: [{key, message}]`).
//! - HPManager's heat pump API, with `inventory` and `registers` set (else
//!   `404` naming the key): `GET/POST /api/heatpumps`,
//!   `GET/PUT/PATCH/DELETE /api/heatpumps/{id}`, `POST /api/heatpumps/test`
//!   (one read of the device of a create body), `GET /api/models`,
//!   `GET /api/registers/{model}`; see `handlers::heatpumps`, the file is
//!   changed by [`inventory`] through [`crate::hpmanager::edit`].
//!
//! Errors are `{"error": "…"}`; unknown pumps or fields are `404`.
//!
//! # Security
//! Reading is open; every change needs the admin token and must come from the
//! dashboard's own origin (see [`auth`]). Every response carries
//! `Content-Security-Policy: default-src 'self'; script-src 'self'; style-src
//! 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none';
//! form-action 'self'`, `X-Content-Type-Options: nosniff`, `Referrer-Policy:
//! same-origin` and `X-Frame-Options: DENY`. Bodies are limited to 64 KiB.
//!
//! # Memory
//! History is kept per pump and field in three tiers of fixed size (see
//! [`history`]): at most about 7.4 KB per numeric field whatever the poll
//! interval, so **10 pumps × 500 fields ≈ 37 MB** for 24 hours; `max_pumps`
//! bounds the number of pumps. The history is saved atomically to
//! `<data_dir>/dashboard/<id>/history.bin` every `persist_interval` and at
//! shutdown, and reloaded at start (older than 24 h is dropped).

// Layers, each importing only those below it:
// config, server (the sink) → handlers (HTTP) → views (rendering) → app,
// card_cache, store, history, settings, auth (state).
mod app;
pub mod auth;
mod card_cache;
mod config;
mod connection;
mod handlers;
pub mod history;
mod inventory;
mod server;
pub mod settings;
mod store;
mod views;

#[cfg(test)]
mod tests;

pub use app::{App, Clock, Parts, Registers, SaveError};
pub use config::{state_dir, DashboardConfig, TOKEN_ENV};
pub use handlers::{router, BODY_LIMIT, CSP};
pub use inventory::Inventory;
pub use server::Dashboard;
