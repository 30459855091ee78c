//! `MqttConfig`: what a pipeline file says about an `mqtt` sink, and its check
//! (topic prefixes, QoS, credentials, TLS files) before anything connects.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::component::{BoxError, BuildContext, Check, Claim, Sink};

use super::ledger::{ledger_path, Ledger};
use super::run::Mqtt;
use super::settings::{Protocol, Settings};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker's host name or IP address.
    pub host: String,
    /// The broker's port: 1883 by default, 8883 with `tls`.
    #[serde(default)]
    pub port: Option<u16>,
    /// The MQTT version: `"3.1.1"` (the default) or `"5"`.
    #[serde(default)]
    pub protocol: Option<ProtocolSetting>,
    /// The MQTT client id; `hpflow-<sink id>` by default.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// The password as text (usually `${MQTT_PASSWORD}`, from the environment).
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding the password (its first line), relative to the pipeline file.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default = "default_keep_alive", with = "crate::component::duration")]
    pub keep_alive: Duration,
    /// 0 (at most once) or 1 (at least once).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// The first levels of every topic hpflow publishes.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Also publish each field on `<prefix>/<device>/<field>`.
    #[serde(default)]
    pub per_field_topics: bool,
    /// Publish Home Assistant discovery configs.
    #[serde(default = "default_true")]
    pub discovery: bool,
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// The fields to publish (state and discovery); all by default.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// A device with no poll for this long is marked offline (besides when its
    /// source reports it down).
    #[serde(default = "default_offline_after", with = "crate::component::duration")]
    pub offline_after: Duration,
    /// Connect over TLS (rustls), checking the broker against `ca_file` or the
    /// system's roots.
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for brokers that ask for one, with `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `protocol` as written, text or number (`"5"` and `5` mean the same), read
/// as it is so that the check can name a wrong one at its key.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolSetting(pub String);

impl ProtocolSetting {
    pub fn parse(&self) -> Option<Protocol> {
        match self.0.trim() {
            "3.1.1" => Some(Protocol::V311),
            "5" | "5.0" => Some(Protocol::V5),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for ProtocolSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ProtocolSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an MQTT version: \"3.1.1\" or \"5\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ProtocolSetting(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ProtocolSetting(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ProtocolSetting(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(ProtocolSetting(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}

fn default_qos() -> u8 {
    1
}

fn default_prefix() -> String {
    "hpflow".into()
}

fn default_true() -> bool {
    true
}

fn default_discovery_prefix() -> String {
    "homeassistant".into()
}

fn default_offline_after() -> Duration {
    Duration::from_secs(5 * 60)
}

/// Why a topic prefix cannot be used, if it cannot: MQTT wildcards, empty
/// levels (`a//b`, a leading or trailing `/`), `$` topics (the broker's own).
pub fn prefix_problem(prefix: &str) -> Option<String> {
    if prefix.is_empty() {
        return Some("the prefix is empty; write at least one topic level, e.g. `hpflow`".into());
    }
    if prefix.contains(['+', '#']) {
        return Some(format!(
            "`{prefix}` contains an MQTT wildcard (`+` or `#`), which a topic to publish on cannot hold"
        ));
    }
    if prefix.split('/').any(str::is_empty) {
        return Some(format!(
            "`{prefix}` has an empty topic level (a leading, trailing or doubled `/`)"
        ));
    }
    if prefix.starts_with('$') {
        return Some(format!(
            "`{prefix}` starts with `$`, which brokers keep for their own topics"
        ));
    }
    if prefix.contains('\0') {
        return Some("the prefix contains a NUL character".into());
    }
    None
}

/// What the check read from files, kept for the build: the password and the
/// TLS settings (so what was checked is what connects).
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub password: Option<String>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl MqttConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.tls { 8883 } else { 1883 })
    }

    /// The MQTT version to speak (3.1.1 unless `protocol` says otherwise; a
    /// value the check refuses never gets this far).
    pub fn protocol(&self) -> Protocol {
        self.protocol
            .as_ref()
            .and_then(ProtocolSetting::parse)
            .unwrap_or_default()
    }

    pub fn client_id(&self, sink_id: &str) -> String {
        self.client_id.clone().unwrap_or_else(|| format!("hpflow-{sink_id}"))
    }

    pub fn check(&self, cx: &mut Check<'_>) {
        if self.host.trim().is_empty() {
            cx.error(Some("host"), "the broker's `host` is empty");
        }
        if let Some(p) = &self.protocol {
            if p.parse().is_none() {
                cx.error(
                    Some("protocol"),
                    format!(
                        "protocol `{}` is not an MQTT version hpflow speaks: write \"3.1.1\" (the default) or \"5\"",
                        p.0
                    ),
                );
            }
        }
        if self.port == Some(0) {
            cx.error(Some("port"), "port 0 is not a broker's port; write 1-65535");
        }
        if let Some(id) = &self.client_id {
            if id.is_empty() || id.len() > 65535 {
                cx.error(Some("client_id"), "the client id must be 1 to 65535 bytes long");
            }
        }
        if self.qos > 1 {
            cx.error(
                Some("qos"),
                format!(
                    "qos {} is not supported: write 0 (at most once) or 1 (at least once)",
                    self.qos
                ),
            );
        }
        if self.keep_alive < Duration::from_secs(5) || self.keep_alive > Duration::from_secs(65535) {
            cx.error(Some("keep_alive"), "`keep_alive` must be between 5s and 65535s");
        }
        if self.offline_after < Duration::from_secs(1) {
            cx.error(
                Some("offline_after"),
                "`offline_after` must be at least 1s (a few poll intervals)",
            );
        }
        if let Some(p) = prefix_problem(&self.prefix) {
            cx.error(Some("prefix"), p);
        }
        if self.discovery {
            if let Some(p) = prefix_problem(&self.discovery_prefix) {
                cx.error(Some("discovery_prefix"), p);
            }
        }
        if let Some(fields) = &self.fields {
            check_fields(cx, fields);
        }

        let mut loaded = Loaded::default();
        if self.password.is_some() && self.password_file.is_some() {
            cx.error(Some("password_file"), "give `password` or `password_file`, not both");
        }
        if let Some(pw) = &self.password {
            loaded.password = Some(pw.clone());
        }
        if let Some(file) = &self.password_file {
            let path = cx.resolve(file);
            cx.reads(&path);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let first = text.lines().next().unwrap_or("").to_string();
                    if first.is_empty() {
                        cx.error(
                            Some("password_file"),
                            format!("{} is empty: its first line should be the password", path.display()),
                        );
                    }
                    loaded.password = Some(first);
                }
                Err(e) => cx.error(Some("password_file"), format!("cannot read {}: {e}", path.display())),
            }
        }
        if loaded.password.is_some() && self.username.is_none() {
            cx.error(
                Some("username"),
                "a password needs a `username` (the sink sends a password only with a user name)",
            );
        }

        if !self.tls {
            for (key, set) in [
                ("ca_file", self.ca_file.is_some()),
                ("cert_file", self.cert_file.is_some()),
                ("key_file", self.key_file.is_some()),
            ] {
                if set {
                    cx.error(Some(key), format!("`{key}` is only used with `tls = true`"));
                }
            }
        } else {
            match self.tls_config(cx) {
                Ok(Some(c)) => loaded.tls = Some(c),
                Ok(None) => {}
                Err((key, message)) => cx.error(Some(key), message),
            }
        }
        cx.claim(None, Claim::File(ledger_path(cx.data_dir, cx.id)));
        cx.keep(loaded);
    }

    /// The rustls client configuration from the TLS keys; `Ok(None)` when a
    /// file problem was already reported.
    fn tls_config(&self, cx: &mut Check<'_>) -> Result<Option<Arc<rustls::ClientConfig>>, (&'static str, String)> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let mut read = |key: &'static str, file: &Path| -> Result<(PathBuf, Vec<u8>), (&'static str, String)> {
            let path = cx.resolve(file);
            cx.reads(&path);
            std::fs::read(&path)
                .map(|b| (path.clone(), b))
                .map_err(|e| (key, format!("cannot read {}: {e}", path.display())))
        };
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(file) => {
                let (path, bytes) = read("ca_file", file)?;
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        (
                            "ca_file",
                            format!("{} is not a PEM certificate file: {e}", path.display()),
                        )
                    })?;
                if certs.is_empty() {
                    return Err(("ca_file", format!("{} holds no PEM certificate", path.display())));
                }
                for c in certs {
                    roots.add(c).map_err(|e| {
                        (
                            "ca_file",
                            format!("a certificate in {} is not usable: {e}", path.display()),
                        )
                    })?;
                }
            }
            None => {
                let found = rustls_native_roots();
                if found.is_empty() {
                    return Err((
                        "ca_file",
                        "no `ca_file` given and the system has no CA certificates; name the broker's CA in `ca_file`"
                            .into(),
                    ));
                }
                for c in found {
                    let _ = roots.add(c);
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ("tls", format!("TLS setup failed: {e}")))?
            .with_root_certificates(roots);
        let config = match (&self.cert_file, &self.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err(("key_file", "`cert_file` needs its `key_file`".into())),
            (None, Some(_)) => return Err(("cert_file", "`key_file` needs its `cert_file`".into())),
            (Some(cert), Some(key)) => {
                let (cpath, cbytes) = read("cert_file", cert)?;
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cbytes)
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        (
                            "cert_file",
                            format!("{} is not a PEM certificate file: {e}", cpath.display()),
                        )
                    })?;
                if chain.is_empty() {
                    return Err(("cert_file", format!("{} holds no PEM certificate", cpath.display())));
                }
                let (kpath, kbytes) = read("key_file", key)?;
                let key = PrivateKeyDer::from_pem_slice(&kbytes)
                    .map_err(|e| ("key_file", format!("{} holds no PEM private key: {e}", kpath.display())))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| ("key_file", format!("the client certificate and key do not fit: {e}")))?
            }
        };
        Ok(Some(Arc::new(config)))
    }

    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Sink>, BoxError> {
        let loaded = match cx.prepared::<Loaded>() {
            Some(l) => l.clone(),
            None => {
                // Built without a check pass (tests): check alone now.
                let schemas = cx.input_schemas;
                let mut check = Check::new(cx.id, cx.pipeline_dir, cx.data_dir, schemas);
                self.check(&mut check);
                if check.has_errors() {
                    return Err(format!("mqtt sink `{}`: invalid configuration", cx.id).into());
                }
                match check.prepared.as_ref().and_then(|p| p.downcast_ref::<Loaded>()) {
                    Some(l) => l.clone(),
                    None => Loaded::default(),
                }
            }
        };
        let settings = Settings {
            id: cx.id.into(),
            host: self.host.clone(),
            port: self.port(),
            protocol: self.protocol(),
            client_id: self.client_id(cx.id),
            username: self.username.clone(),
            password: loaded.password,
            keep_alive: self.keep_alive,
            qos: self.qos,
            prefix: self.prefix.clone(),
            per_field_topics: self.per_field_topics,
            discovery: self.discovery.then(|| self.discovery_prefix.clone()),
            fields: self.fields.clone(),
            offline_after: self.offline_after,
            tls: loaded.tls,
        };
        let path = ledger_path(cx.data_dir, cx.id);
        let ledger = Ledger::load(&path, cx.id).map_err(|e| format!("mqtt sink `{}`: {e}", cx.id))?;
        Ok(Box::new(Mqtt::new(settings, cx.registry.clone(), ledger)))
    }
}

fn check_fields(cx: &mut Check<'_>, fields: &[String]) {
    if cx.input_schemas.is_empty() {
        return;
    }
    for (i, f) in fields.iter().enumerate() {
        if !cx.input_schemas.iter().any(|s| s.field(f).is_some()) {
            cx.error(
                Some(&format!("fields[{i}]")),
                format!("no input has a field `{f}` (models: {})", cx.known_models()),
            );
        }
    }
}

/// The system's CA certificates (what rustls-native-certs finds).
fn rustls_native_roots() -> Vec<rustls::pki_types::CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}
