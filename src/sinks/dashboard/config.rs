//! `DashboardConfig`: what a pipeline file says about a `dashboard` sink.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tracing::{info, warn};

use crate::component::{parse_listen_address, BoxError, BuildContext, Check, Claim, Control, Sink};
use crate::event::Schema;

use super::app::{App, Parts, Registers};
use super::inventory::Inventory;
use super::server::Dashboard;
use super::settings::{self, Settings};
use super::views::templates::templates;
use crate::hpmanager::heatpumps;
use crate::registers::RegisterMap;

/// The environment variable holding the admin token.
pub const TOKEN_ENV: &str = "HPFLOW_ADMIN_TOKEN";
/// An admin token shorter than this gets a warning (from a file or the environment).
const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// Where the pages are served (IP:PORT).
    #[serde(default = "default_address")]
    pub address: String,
    /// Shown in the header and the browser tab.
    #[serde(default = "default_title")]
    pub title: String,
    /// HPManager's `display.yml`, read as the initial settings while no
    /// settings file exists yet. Relative to the pipeline file.
    #[serde(default)]
    pub display: Option<PathBuf>,
    /// A file whose first line is the admin token; else `HPFLOW_ADMIN_TOKEN`.
    /// Without either, settings are read-only.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// Origins besides the dashboard's own that may send changes, for a
    /// reverse proxy that rewrites `Host` (`https://heat.example.org`).
    #[serde(default)]
    pub trusted_origins: Vec<String>,
    /// Host names the dashboard answers to besides IP literals and `localhost`
    /// (`heat.example.org`); a request naming another `Host` is refused, so a
    /// web page cannot reach the dashboard through a name rebound to it.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// A pump without a poll for this long shows as offline. Default: three
    /// poll intervals, at least 30s.
    #[serde(default, with = "crate::component::duration")]
    pub offline_after: Option<Duration>,
    /// The field that flags a fault (non-zero: the card shows a banner).
    #[serde(default = "default_fault_field")]
    pub fault_field: String,
    /// The field whose label is the card's operating mode.
    #[serde(default = "default_mode_field")]
    pub mode_field: String,
    /// Pumps shown at most (memory stays bounded, see the `history` module).
    #[serde(default = "default_max_pumps")]
    pub max_pumps: usize,
    /// How often the history is also saved while running (it always is at shutdown).
    #[serde(default = "default_persist_interval", with = "crate::component::duration")]
    pub persist_interval: Duration,
    /// A request's headers must arrive within this, and a kept-alive
    /// connection that sends no new request within it is closed.
    #[serde(
        default = "crate::component::http::default_header_read_timeout",
        with = "crate::component::duration"
    )]
    pub header_read_timeout: Duration,
    /// Connections open at once, at most; past it new ones are closed at once.
    #[serde(default = "crate::component::http::default_max_connections")]
    pub max_connections: usize,

    /// The device inventory (HPManager's `heatpumps.yml`) the heat pump API
    /// manages. Relative to the pipeline file; needs `registers`.
    #[serde(default)]
    pub inventory: Option<PathBuf>,
    /// The register map whose models the inventory's pumps name (the models
    /// and registers API). Relative to the pipeline file.
    #[serde(default)]
    pub registers: Option<PathBuf>,
}

pub fn default_address() -> String {
    "127.0.0.1:8080".into()
}

pub fn default_title() -> String {
    "Heat pumps".into()
}

pub fn default_fault_field() -> String {
    "fault_status".into()
}

pub fn default_mode_field() -> String {
    "operating_mode".into()
}

pub fn default_max_pumps() -> usize {
    100
}

pub fn default_persist_interval() -> Duration {
    Duration::from_secs(600)
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            address: default_address(),
            title: default_title(),
            display: None,
            admin_token_file: None,
            trusted_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            offline_after: None,
            fault_field: default_fault_field(),
            mode_field: default_mode_field(),
            max_pumps: default_max_pumps(),
            persist_interval: default_persist_interval(),
            header_read_timeout: crate::component::http::DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: crate::component::http::DEFAULT_MAX_CONNECTIONS,
            inventory: None,
            registers: None,
        }
    }
}

/// `<data_dir>/dashboard/<id>/`: settings and saved history.
pub fn state_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("dashboard").join(id)
}

impl DashboardConfig {
    pub fn check(&self, cx: &mut Check<'_>) {
        crate::component::http::check_limits(
            cx,
            crate::component::http::HttpLimits {
                header_read_timeout: self.header_read_timeout,
                max_connections: self.max_connections,
            },
        );
        if let Some(addr) = parse_listen_address(cx, "address", &self.address) {
            cx.claim(Some("address"), Claim::Listen(addr));
        }
        if self.title.trim().is_empty() {
            cx.error(Some("title"), "`title` must not be empty");
        }
        if let Some(display) = &self.display {
            let path = cx.resolve(display);
            cx.reads(&path);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    if let Err(e) = settings::from_display_yml(&text).and_then(|s| check_settings(&s)) {
                        cx.error(Some("display"), format!("{}: {e}", path.display()));
                    }
                }
                Err(e) => cx.error(Some("display"), format!("cannot read {}: {e}", path.display())),
            }
        }
        if let Some(file) = &self.admin_token_file {
            match read_token_file(&cx.resolve(file)) {
                Ok(t) if t.len() < MIN_TOKEN_LEN => cx.warn(
                    Some("admin_token_file"),
                    format!("the admin token is shorter than {MIN_TOKEN_LEN} characters; a long random one (`openssl rand -hex 16`) is safer"),
                ),
                Ok(_) => {}
                Err(e) => cx.error(Some("admin_token_file"), e),
            }
        } else if let Ok(t) = std::env::var(TOKEN_ENV) {
            let t = t.trim();
            if !t.is_empty() && t.len() < MIN_TOKEN_LEN {
                cx.warn(
                    None,
                    format!("{TOKEN_ENV} is shorter than {MIN_TOKEN_LEN} characters; a long random one (`openssl rand -hex 16`) is safer"),
                );
            }
        }
        for (i, h) in self.allowed_hosts.iter().enumerate() {
            let ok = !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if !ok {
                cx.error(
                    Some(&format!("allowed_hosts[{i}]")),
                    format!("`{h}` is not a host name; write the name alone, e.g. `heat.example.org` (no scheme, port or path)"),
                );
            }
        }
        for (i, o) in self.trusted_origins.iter().enumerate() {
            let ok = o
                .split_once("://")
                .is_some_and(|(s, a)| matches!(s, "http" | "https") && !a.is_empty() && !a.contains('/'));
            if !ok {
                cx.error(
                    Some(&format!("trusted_origins[{i}]")),
                    format!("`{o}` is not an origin; write scheme://host[:port], e.g. `https://heat.example.org`"),
                );
            }
        }
        if self.offline_after.is_some_and(|d| d < Duration::from_secs(1)) {
            cx.error(Some("offline_after"), "`offline_after` must be at least 1s");
        }
        if self.max_pumps == 0 {
            cx.error(Some("max_pumps"), "`max_pumps` must be at least 1");
        }
        if self.persist_interval < Duration::from_secs(10) {
            cx.error(Some("persist_interval"), "`persist_interval` must be at least 10s");
        }
        if !cx.input_schemas.is_empty() && !cx.input_schemas.iter().any(|s| s.field(&self.fault_field).is_some()) {
            cx.warn(
                Some("fault_field"),
                format!(
                    "no input model has a field `{}`; cards will show no fault banner",
                    self.fault_field
                ),
            );
        }
        if let Err(e) = settings::load(&state_dir(cx.data_dir, cx.id).join("settings.toml")) {
            cx.error(None, format!("dashboard settings file {e}"));
        }
        self.check_inventory(cx);
    }

    /// The register map is loaded (and kept for the build); the inventory only
    /// read and parsed: the Modbus source that polls it checks its entries.
    fn check_inventory(&self, cx: &mut Check<'_>) {
        if let Some(registers) = &self.registers {
            let path = cx.resolve(registers);
            cx.reads(&path);
            match RegisterMap::load_shared(path) {
                Ok(map) => cx.keep(map),
                Err(diags) => diags.into_iter().for_each(|d| cx.external(d)),
            }
        }
        let Some(inventory) = &self.inventory else {
            return;
        };
        if self.registers.is_none() {
            cx.error(
                Some("inventory"),
                "`inventory` needs `registers` too: the register map whose models its heat pumps name",
            );
        }
        let path = cx.resolve(inventory);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                if let Err(d) = heatpumps::parse(&path, &text) {
                    cx.external(d);
                }
            }
            Err(e) => cx.error(
                Some("inventory"),
                format!("cannot read the inventory {}: {e}", path.display()),
            ),
        }
    }

    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Sink>, BoxError> {
        let address = self.socket_address()?;
        let token = std::env::var(TOKEN_ENV).ok();
        let map = cx.prepared::<Arc<RegisterMap>>().cloned();
        let app = self
            .app(
                cx.id,
                cx.pipeline_dir,
                cx.data_dir,
                cx.input_schemas,
                cx.control,
                token,
                map,
            )?
            .with_telemetry(cx.registry.clone());
        app.restore_history();
        let limits = crate::component::http::HttpLimits {
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
        };
        Ok(Box::new(
            Dashboard::bind(cx.id, address, Arc::new(app), self.persist_interval)?.with_limits(limits),
        ))
    }

    pub fn socket_address(&self) -> Result<SocketAddr, BoxError> {
        Ok(self
            .address
            .parse()
            .map_err(|_| format!("`{}` is not a listen address", self.address))?)
    }

    /// Builds the shared state: reads the token and the settings (or
    /// `display.yml`); [`App::restore_history`] then loads the saved history. `env_token` is what
    /// `HPFLOW_ADMIN_TOKEN` holds; `admin_token_file` wins over it.
    /// `map`: the register map the check kept, if any (else `registers` is read).
    #[allow(clippy::too_many_arguments)]
    pub fn app(
        &self,
        id: &str,
        pipeline_dir: &Path,
        data_dir: &Path,
        schemas: &[Arc<Schema>],
        control: &Arc<Control>,
        env_token: Option<String>,
        map: Option<Arc<RegisterMap>>,
    ) -> Result<App, BoxError> {
        let dir = state_dir(data_dir, id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let settings_path = dir.join("settings.toml");
        let registers = self.inventory(pipeline_dir, map)?;
        let settings = match settings::load(&settings_path)? {
            Some(s) => s,
            None => match &self.display {
                Some(d) => {
                    let path = crate::component::resolve(pipeline_dir, d);
                    let text =
                        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    let s = settings::from_display_yml(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                    info!(component = %id, path = %path.display(), "Initial dashboard settings from HPManager's display file");
                    s
                }
                None => Settings::default(),
            },
        };
        check_settings(&settings).map_err(|e| format!("dashboard settings {}: {e}", settings_path.display()))?;
        let token = match &self.admin_token_file {
            Some(f) => Some(read_token_file(&crate::component::resolve(pipeline_dir, f))?),
            None => env_token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
        };
        if token.is_none() {
            warn!(component = %id, "No admin token configured (HPFLOW_ADMIN_TOKEN or `admin_token_file`): dashboard settings are read-only");
        }
        let parts = Parts {
            id: id.to_string(),
            title: self.title.clone(),
            settings,
            settings_path,
            history_path: dir.join("history.bin"),
            token,
            trusted_origins: self.trusted_origins.clone(),
            allowed_hosts: self.allowed_hosts.iter().cloned().chain(own_host_names()).collect(),
            control: control.clone(),
            schemas: schemas.to_vec(),
            offline_after: self.offline_after,
            fault_field: self.fault_field.clone(),
            mode_field: self.mode_field.clone(),
            max_pumps: self.max_pumps,
            templates: templates().map_err(|e| format!("dashboard templates: {e}"))?,
            registers,
        };
        Ok(App::new(parts))
    }
}

impl DashboardConfig {
    /// The register map (`loaded` if the check kept it, else read now) and the
    /// inventory it checks.
    fn inventory(&self, pipeline_dir: &Path, loaded: Option<Arc<RegisterMap>>) -> Result<Registers, BoxError> {
        let Some(path) = &self.registers else {
            return Ok(Registers::default());
        };
        let map = match loaded {
            Some(m) => m,
            None => {
                let path = crate::component::resolve(pipeline_dir, path);
                Arc::new(RegisterMap::load(&path).map_err(|d| {
                    let shown: Vec<String> = d.iter().map(ToString::to_string).collect();
                    shown.join("\n")
                })?)
            }
        };
        let inventory =
            (self.inventory.as_ref()).map(|p| Inventory::new(crate::component::resolve(pipeline_dir, p), map.clone()));
        Ok(Registers {
            map: Some(map),
            inventory,
        })
    }
}

/// Settings from a file must pass the page's own checks (field names aside:
/// the pumps have not been seen yet).
fn check_settings(s: &Settings) -> Result<(), String> {
    let errors = s.validate(&|_| None);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.into_iter().map(|e| e.message).collect::<Vec<_>>().join(" "))
    }
}

/// The machine's own name and its `.local` (mDNS) form: a dashboard on the LAN
/// is usually opened by them.
fn own_host_names() -> Vec<String> {
    let name = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
    match name {
        Some(n) => vec![format!("{n}.local"), n],
        None => Vec::new(),
    }
}

fn read_token_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the admin token file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!("the admin token file {} is empty", path.display()));
    }
    Ok(token)
}
