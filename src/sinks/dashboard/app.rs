//! The running dashboard's shared state: store, settings, authentication,
//! the handle on the sources' poll intervals, and the parsed templates and
//! rendered cards the views keep, behind one `Arc` that the sink feeds and the
//! router reads. The bottom layer: it imports neither handlers nor views.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime};

use jiff::tz::TimeZone;
use minijinja::Environment;
use tracing::info;

use super::auth::Auth;
use super::card_cache::CardCache;
use super::inventory::Inventory;
use super::settings::{self, Invalid, Settings};
use super::store::Store;
use crate::component::Control;
use crate::event::{Event, Schema};
use crate::registers::RegisterMap;
use crate::telemetry::Registry;

/// Where "now" comes from; tests pin it.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// A pump counts as offline after this many poll intervals without a poll…
const OFFLINE_POLLS: u32 = 3;
/// …but never sooner than this.
const MIN_OFFLINE_AFTER: Duration = Duration::from_secs(30);

/// Why a settings change was not saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("the settings are not valid")]
    Invalid(Vec<Invalid>),
    #[error(
        "Not saved: the settings were changed elsewhere (now version {current}, your form was version {yours}). The page shows the current settings; make your change again."
    )]
    Conflict { yours: u64, current: u64 },
    #[error("Not saved: writing {path} failed: {error}")]
    Io { path: String, error: String },
}

/// What [`App::new`] needs; built by `DashboardConfig` (or a test).
pub struct Parts {
    pub id: String,
    pub title: String,
    pub settings: Settings,
    pub settings_path: PathBuf,
    pub history_path: PathBuf,
    pub token: Option<String>,
    pub trusted_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub control: Arc<Control>,
    pub schemas: Vec<Arc<Schema>>,
    pub offline_after: Option<Duration>,
    pub fault_field: String,
    pub mode_field: String,
    pub max_pumps: usize,
    /// The parsed templates (`views::templates::templates`).
    pub templates: Environment<'static>,
    /// The register map and inventory the heat pump API manages, if configured.
    pub registers: Registers,
}

/// `registers = "…"` and `inventory = "…"` of the dashboard, as loaded.
#[derive(Default)]
pub struct Registers {
    pub map: Option<Arc<RegisterMap>>,
    pub inventory: Option<Inventory>,
}

pub struct App {
    pub(super) id: Arc<str>,
    pub(super) title: String,
    store: RwLock<Store>,
    settings: RwLock<Arc<Settings>>,
    /// Held across check-version, write and swap, so two saves cannot interleave.
    save_lock: Mutex<()>,
    pub(super) settings_path: PathBuf,
    pub(super) history_path: PathBuf,
    pub(super) auth: Auth,
    pub(super) control: Arc<Control>,
    /// The pipeline's telemetry: the pages show a refused configuration reload.
    pub(super) telemetry: Arc<Registry>,
    /// The input models, so pumps restored from the history file have units and labels.
    schemas: Vec<Arc<Schema>>,
    pub(super) templates: Environment<'static>,
    pub(super) cards: CardCache,
    clock: Clock,
    pub(super) tz: TimeZone,
    offline_after: Option<Duration>,
    pub(super) fault_field: String,
    pub(super) mode_field: String,
    pub(super) registers: Registers,
}

impl App {
    pub fn new(parts: Parts) -> App {
        let store = Store::new(parts.max_pumps);
        let auth = Auth::new(parts.token, &parts.id, parts.trusted_origins, parts.allowed_hosts);
        let app = App {
            id: parts.id.into(),
            title: parts.title,
            store: RwLock::new(store),
            settings: RwLock::new(Arc::new(parts.settings)),
            save_lock: Mutex::new(()),
            settings_path: parts.settings_path,
            history_path: parts.history_path,
            auth,
            control: parts.control,
            telemetry: Arc::default(),
            schemas: parts.schemas,
            templates: parts.templates,
            cards: Default::default(),
            clock: Arc::new(SystemTime::now),
            tz: crate::localtime::system(),
            offline_after: parts.offline_after,
            fault_field: parts.fault_field,
            mode_field: parts.mode_field,
            registers: parts.registers,
        };
        if app.settings().poll_interval_seconds.is_some() {
            app.apply_poll_interval(&app.settings());
        }
        app
    }

    /// Shows the pipeline's reloads on the pages (a dashboard built alone shows none).
    pub fn with_telemetry(mut self, telemetry: Arc<Registry>) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Pins the clock and time zone (tests, benchmarks).
    pub fn with_clock(mut self, clock: Clock, tz: TimeZone) -> Self {
        self.clock = clock;
        self.tz = tz;
        self
    }

    pub fn now(&self) -> SystemTime {
        (self.clock)()
    }

    /// Loads the history saved by an earlier run (older than a day is dropped).
    pub fn restore_history(&self) {
        let mut store = self.store.write().unwrap_or_else(|p| p.into_inner());
        store.load(&self.history_path, &self.schemas, self.now(), &self.id);
    }

    pub fn ingest(&self, event: &Event) {
        self.store.write().unwrap_or_else(|p| p.into_inner()).ingest(event);
    }

    pub(super) fn read_store(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.settings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The description of a pump's fields, if it has been seen.
    pub fn schema_of(&self, pump: &str) -> Option<Arc<Schema>> {
        self.read_store()
            .devices
            .get(pump)
            .map(|d| d.metric.schema.clone())
            .filter(|s| !s.fields.is_empty())
    }

    /// How long without a poll before a pump shows as offline.
    pub fn offline_after(&self) -> Duration {
        if let Some(d) = self.offline_after {
            return d;
        }
        let poll = self
            .control
            .poll_intervals()
            .into_iter()
            .map(|(_, d)| d)
            .max()
            .or_else(|| {
                self.settings()
                    .poll_interval_seconds
                    .map(|s| Duration::from_secs(u64::from(s)))
            })
            .unwrap_or(Duration::from_secs(10));
        (poll * OFFLINE_POLLS).max(MIN_OFFLINE_AFTER)
    }

    /// Validates `next`, checks it was based on the current version, writes it
    /// atomically and only then makes it current and applies the poll interval.
    /// Blocking (file I/O): call from a blocking task.
    pub fn save_settings(&self, based_on: u64, mut next: Settings) -> Result<Arc<Settings>, SaveError> {
        let errors = next.validate(&|p| self.schema_of(p));
        if !errors.is_empty() {
            return Err(SaveError::Invalid(errors));
        }
        let _guard = self.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.settings();
        if based_on != current.version {
            return Err(SaveError::Conflict {
                yours: based_on,
                current: current.version,
            });
        }
        next.version = current.version + 1;
        let existing = std::fs::read_to_string(&self.settings_path).ok();
        let text = settings::render(existing.as_deref(), &next);
        crate::fsutil::write_atomically(&self.settings_path, text.as_bytes()).map_err(|e| SaveError::Io {
            path: self.settings_path.display().to_string(),
            error: e.to_string(),
        })?;
        let next = Arc::new(next);
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = next.clone();
        if next.poll_interval_seconds != current.poll_interval_seconds {
            self.apply_poll_interval(&next);
        }
        info!(component = %self.id, version = next.version, "Dashboard settings saved");
        Ok(next)
    }

    /// Sets every polling source's interval to the override, or back to its
    /// own when the override is cleared (Control keeps both, so sources built
    /// after the dashboard follow too). Returns how many sources poll now.
    fn apply_poll_interval(&self, s: &Settings) -> usize {
        let interval = s.poll_interval_seconds.map(|p| Duration::from_secs(u64::from(p)));
        let n = self.control.set_poll_interval_override(interval);
        if let Some(p) = s.poll_interval_seconds {
            info!(component = %self.id, seconds = p, sources = n, "Poll interval set from the dashboard settings");
        }
        n
    }

    /// Writes the history file (blocking).
    pub fn save_history(&self) -> std::io::Result<usize> {
        // Encoding is quick; the write must not hold up incoming polls.
        let bytes = self.read_store().encode();
        crate::fsutil::write_atomically(&self.history_path, &bytes)?;
        Ok(bytes.len())
    }
}
