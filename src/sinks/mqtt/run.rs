//! The running `mqtt` sink: one task receiving events (never waiting on the
//! network) and one driving rumqttc's event loop (connecting, reconnecting
//! with backoff, reporting what came in).
//!
//! The receiving task keeps the newest state of each device and publishes it
//! only while connected, through rumqttc's bounded request queue without
//! waiting (`try_publish`): when the broker is away, a device's older states
//! are replaced by newer ones, and on reconnect the newest of each is sent
//! after the discovery configs and availabilities.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, EventLoop, LastWill, MqttOptions, QoS, Transport};
use serde_json::Value as Json;
use tokio::sync::mpsc;

use crate::component::{BoxError, Input, Sink, SinkContext};
use crate::event::{Event, Metric, Schema, Tags};
use crate::telemetry::Registry;

use super::payload::{self, Entity, Topics};

/// Everything the sink runs with, from its config and what its check read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub id: Arc<str>,
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive: Duration,
    pub qos: u8,
    pub prefix: String,
    pub per_field_topics: bool,
    /// The discovery prefix, when discovery is on.
    pub discovery: Option<String>,
    pub fields: Option<Vec<String>>,
    pub offline_after: Duration,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Settings {
    fn qos(&self) -> QoS {
        if self.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        }
    }

    fn topics(&self) -> Topics {
        Topics {
            prefix: self.prefix.clone(),
            discovery: self.discovery.clone(),
        }
    }

    fn options(&self, topics: &Topics) -> MqttOptions {
        let mut o = MqttOptions::new(&self.client_id, &self.host, self.port);
        o.set_keep_alive(self.keep_alive);
        o.set_clean_session(true);
        // A state holds every field of a model (the ISG map: over 400).
        o.set_max_packet_size(1 << 20, 1 << 20);
        o.set_last_will(LastWill::new(topics.status(), "offline", self.qos(), true));
        if let Some(user) = &self.username {
            o.set_credentials(user, self.password.clone().unwrap_or_default());
        }
        if let Some(tls) = &self.tls {
            o.set_transport(Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        o
    }
}

/// The sink, built and not yet running.
pub struct Mqtt {
    settings: Settings,
    registry: Arc<Registry>,
}

impl Mqtt {
    pub fn new(settings: Settings, registry: Arc<Registry>) -> Self {
        Mqtt { settings, registry }
    }
}

/// What the event-loop task reports.
#[derive(Debug)]
enum Link {
    Connected,
    /// The connection failed or broke: why, for people.
    Down(String),
    Message(String, Vec<u8>),
    /// Our disconnect went out (shutdown).
    Closed,
}

/// The connection error as a sentence naming the broker, with a hint for
/// the TLS failures a configuration causes.
fn describe(e: &ConnectionError, s: &Settings) -> String {
    let text = e.to_string();
    let hint = if text.contains("CertificateRequired") {
        " (the broker asks for a client certificate: set `cert_file` and `key_file`)"
    } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        " (the broker's certificate is not signed by the CA of `ca_file` or the system)"
    } else if text.contains("NotValidForName") {
        " (the broker's certificate does not name `host`)"
    } else if text.contains("Expired") {
        " (a certificate has expired)"
    } else {
        ""
    };
    format!("{}{hint}", describe_plain(e, s))
}

fn describe_plain(e: &ConnectionError, s: &Settings) -> String {
    let at = format!("{}:{}", s.host, s.port);
    match e {
        ConnectionError::ConnectionRefused(code) => match code {
            ConnectReturnCode::BadUserNamePassword => {
                format!("broker {at} refused the connection: bad user name or password")
            }
            ConnectReturnCode::NotAuthorized => {
                format!("broker {at} refused the connection: not authorised (check `username` and the password)")
            }
            ConnectReturnCode::BadClientId => {
                format!("broker {at} refused the client id `{}`", s.client_id)
            }
            other => format!("broker {at} refused the connection: {other:?}"),
        },
        ConnectionError::Tls(e) => format!("TLS with broker {at} failed: {e}"),
        ConnectionError::Io(e) if s.tls.is_some() => format!("cannot connect to broker {at} over TLS: {e}"),
        ConnectionError::Io(e) => format!("cannot reach broker {at}: {e}"),
        ConnectionError::NetworkTimeout => format!("broker {at} did not answer in time"),
        ConnectionError::MqttState(e) => format!("lost the connection to broker {at}: {e}"),
        other => format!("connection to broker {at} failed: {other}"),
    }
}

/// Drives rumqttc's event loop until the sink goes away: every failure is
/// reported and retried after a backoff doubling from 0.5 s up to 30 s.
async fn drive(mut el: EventLoop, tx: mpsc::UnboundedSender<Link>, settings: Settings) {
    use rumqttc::{Event as MqttEvent, Outgoing, Packet};
    let first = Duration::from_millis(500);
    let mut backoff = first;
    loop {
        let link = match el.poll().await {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                backoff = first;
                Some(Link::Connected)
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => Some(Link::Message(p.topic, p.payload.to_vec())),
            Ok(MqttEvent::Outgoing(Outgoing::Disconnect)) => Some(Link::Closed),
            Ok(_) => None,
            Err(e) => {
                if tx.send(Link::Down(describe(&e, &settings))).is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                None
            }
        };
        if let Some(l) = link {
            if tx.send(l).is_err() {
                return;
            }
        }
    }
}

/// One device as the sink knows it.
struct Device {
    tags: Arc<Tags>,
    schema: Arc<Schema>,
    /// The discovery configs for its current schema, by topic.
    entities: BTreeMap<String, Json>,
    /// The newest state, as JSON text, and its fields.
    state: String,
    values: serde_json::Map<String, Json>,
    /// The newest state is not yet handed to the client.
    dirty: bool,
    last_poll: Instant,
    /// What its availability topic says (None: nothing published yet).
    published_online: Option<bool>,
    /// The availability last logged, so a reconnect does not log it again.
    logged_online: Option<bool>,
}

/// The receiving side's state.
struct Core {
    s: Settings,
    topics: Topics,
    registry: Arc<Registry>,
    devices: BTreeMap<Arc<str>, Device>,
    connected: bool,
    /// Discovery, availability and removal messages waiting for room in the
    /// client's queue, in order.
    outbox: VecDeque<(String, Vec<u8>, bool)>,
    /// Retained discovery configs seen on the broker under node ids of ours
    /// whose device has not polled yet: node id → topics.
    foreign: HashMap<String, BTreeSet<String>>,
    last_error: Option<(String, Instant)>,
    /// Subscriptions to make once the client has room.
    subscribe_pending: bool,
    version: &'static str,
}

impl Core {
    fn event(&mut self, e: Event) {
        let Event::Metric(m) = e else { return };
        let fields = self.s.fields.as_deref();
        let values = payload::state_json(&m, fields);
        let state = Json::Object(values.clone()).to_string();
        let changed = match self.devices.get(&m.device) {
            Some(d) => !Arc::ptr_eq(&d.schema, &m.schema) || d.tags != m.tags,
            None => true,
        };
        if changed {
            self.describe_device(&m);
        }
        if let Some(d) = self.devices.get_mut(&m.device) {
            d.state = state;
            d.values = values;
            d.dirty = true;
            d.last_poll = Instant::now();
            if d.tags != m.tags {
                d.tags = m.tags.clone();
            }
            // A device coming (back) online is announced at once; the rest
            // is the periodic check's (it reads every device's health).
            if d.published_online == Some(true) || !self.connected {
                return;
            }
        }
        self.availability();
    }

    /// (Re)computes a device's entities after its first poll or a schema
    /// change, queues them, and clears the ones it no longer has.
    fn describe_device(&mut self, m: &Metric) {
        let entities: BTreeMap<String, Json> =
            payload::discovery(&self.topics, &m.device, &m.tags, &m.schema, self.s.fields.as_deref())
                .into_iter()
                .map(|Entity { topic, payload }| (topic, payload))
                .collect();
        let node = self.topics.node_id(&m.device);
        let mut gone: BTreeSet<String> = self.foreign.remove(&node).unwrap_or_default();
        let old = self.devices.remove(&m.device);
        if let Some(old) = &old {
            gone.extend(old.entities.keys().cloned());
        }
        gone.retain(|t| !entities.contains_key(t));
        if self.connected {
            for t in gone {
                self.outbox.push_back((t, Vec::new(), true));
            }
            for (t, p) in &entities {
                self.outbox.push_back((t.clone(), p.to_string().into_bytes(), true));
            }
        }
        let published_online = old.as_ref().and_then(|o| o.published_online);
        let logged_online = old.as_ref().and_then(|o| o.logged_online);
        self.devices.insert(
            m.device.clone(),
            Device {
                tags: m.tags.clone(),
                schema: m.schema.clone(),
                entities,
                state: String::new(),
                values: Default::default(),
                dirty: false,
                last_poll: Instant::now(),
                published_online,
                logged_online,
            },
        );
    }

    fn link(&mut self, l: Link, metrics: &crate::telemetry::ComponentMetrics) {
        match l {
            Link::Connected => {
                if self.last_error.take().is_some() {
                    tracing::info!(sink = %self.s.id, "mqtt sink `{}`: connected to {}:{} again", self.s.id, self.s.host, self.s.port);
                } else {
                    tracing::info!(sink = %self.s.id, "mqtt sink `{}`: connected to {}:{}", self.s.id, self.s.host, self.s.port);
                }
                self.connected = true;
                self.on_connect();
            }
            Link::Down(why) => {
                self.connected = false;
                self.outbox.clear();
                metrics.error();
                let repeat = self
                    .last_error
                    .as_ref()
                    .is_some_and(|(w, at)| *w == why && at.elapsed() < Duration::from_secs(60));
                if !repeat {
                    tracing::error!(sink = %self.s.id, "mqtt sink `{}`: {why}; retrying", self.s.id);
                    self.last_error = Some((why, Instant::now()));
                }
            }
            Link::Message(topic, body) => self.message(&topic, &body),
            Link::Closed => {}
        }
    }

    /// After every (re)connect: subscriptions, hpflow online, then every
    /// device's discovery, availability and newest state.
    fn on_connect(&mut self) {
        self.outbox.clear();
        self.outbox.push_back((self.topics.status(), b"online".to_vec(), true));
        self.subscribe_pending = true;
        self.announce();
        for d in self.devices.values_mut() {
            d.published_online = None;
        }
        self.availability();
    }

    /// Every discovery config, then every state again (HA asks for this when
    /// it starts: its status topic says `online`).
    fn announce(&mut self) {
        if let Some(b) = payload::bridge(&self.topics, self.version) {
            self.outbox
                .push_back((b.topic, b.payload.to_string().into_bytes(), true));
        }
        for d in self.devices.values_mut() {
            for (t, p) in &d.entities {
                self.outbox.push_back((t.clone(), p.to_string().into_bytes(), true));
            }
            if !d.state.is_empty() {
                d.dirty = true;
            }
        }
    }

    fn message(&mut self, topic: &str, body: &[u8]) {
        if self.topics.ha_status().as_deref() == Some(topic) {
            if body == b"online" && self.connected {
                tracing::debug!(sink = %self.s.id, "Home Assistant came online: discovery published again");
                self.announce();
            }
            return;
        }
        let Some((_, node, _)) = self.topics.parse_config_topic(topic) else {
            return;
        };
        let ours = format!("{}_", self.topics.bridge_id());
        if !node.starts_with(&ours) {
            return;
        }
        if body.is_empty() {
            if let Some(set) = self.foreign.get_mut(node) {
                set.remove(topic);
            }
            return;
        }
        let topics = &self.topics;
        match self.devices.iter().find(|(id, _)| topics.node_id(id) == node) {
            Some((_, d)) if !d.entities.contains_key(topic) => {
                // An entity this device no longer has (dropped from `fields`
                // or from its model): removed with an empty retained config.
                self.outbox.push_back((topic.to_string(), Vec::new(), true));
            }
            Some(_) => {}
            None => {
                self.foreign
                    .entry(node.to_string())
                    .or_default()
                    .insert(topic.to_string());
            }
        }
    }

    /// Publishes each device's availability where it changed: offline when
    /// its source reports it down or no poll came for `offline_after`.
    fn availability(&mut self) {
        let mut down: HashMap<Arc<str>, bool> = HashMap::new();
        for h in self.registry.devices().snapshot() {
            let e = down.entry(h.device.clone()).or_insert(true);
            // Any source that polls it successfully, or has not polled yet, keeps it up.
            *e &= !h.up && h.polls > 0;
        }
        let now = Instant::now();
        for (id, d) in self.devices.iter_mut() {
            let online = !down.get(id).copied().unwrap_or(false)
                && now.duration_since(d.last_poll) < self.s.offline_after
                && !d.state.is_empty();
            if d.published_online != Some(online) && self.connected {
                let body: &[u8] = if online { b"online" } else { b"offline" };
                self.outbox
                    .push_back((self.topics.availability(id), body.to_vec(), true));
                d.published_online = Some(online);
                if d.logged_online != Some(online) {
                    d.logged_online = Some(online);
                    let word = if online { "online" } else { "offline" };
                    tracing::info!(sink = %self.s.id, device = %id, "mqtt sink `{}`: device {id} is {word}", self.s.id);
                }
            }
        }
    }
}

impl Core {
    /// Hands what waits to the client while connected and it has room:
    /// subscriptions, then the outbox in order, then each device's newest
    /// state. Never waits; what does not fit stays for the next call.
    fn flush(&mut self, client: &AsyncClient, metrics: &crate::telemetry::ComponentMetrics) {
        if !self.connected {
            return;
        }
        let qos = self.s.qos();
        if self.subscribe_pending {
            let mut filters: Vec<String> = Vec::new();
            filters.extend(self.topics.ha_status());
            filters.extend(self.topics.discovery_filter());
            let ok = filters.is_empty()
                || client
                    .try_subscribe_many(
                        filters
                            .into_iter()
                            .map(|f| rumqttc::SubscribeFilter::new(f, QoS::AtLeastOnce)),
                    )
                    .is_ok();
            if !ok {
                return;
            }
            self.subscribe_pending = false;
        }
        while let Some((topic, body, retain)) = self.outbox.pop_front() {
            if client.try_publish(&topic, qos, retain, body.clone()).is_err() {
                self.outbox.push_front((topic, body, retain));
                return;
            }
        }
        for (id, d) in self.devices.iter_mut() {
            if !d.dirty {
                continue;
            }
            if client
                .try_publish(self.topics.state(id), qos, true, d.state.clone().into_bytes())
                .is_err()
            {
                return;
            }
            if self.s.per_field_topics {
                for (k, v) in &d.values {
                    // Per-field topics are extras: one that does not fit waits for the next poll.
                    let _ = client.try_publish(self.topics.field(id, k), qos, true, payload::field_payload(v));
                }
            }
            d.dirty = false;
            metrics.sent(1);
        }
    }
}

#[async_trait]
impl Sink for Mqtt {
    async fn run(self: Box<Self>, mut input: Input, cx: SinkContext) -> Result<(), BoxError> {
        let Mqtt { settings, registry } = *self;
        let topics = settings.topics();
        let (client, eventloop) = AsyncClient::new(settings.options(&topics), 1024);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(drive(eventloop, tx, settings.clone()));
        let mut core = Core {
            s: settings,
            topics,
            registry,
            devices: BTreeMap::new(),
            connected: false,
            outbox: VecDeque::new(),
            foreign: HashMap::new(),
            last_error: None,
            subscribe_pending: false,
            version: env!("CARGO_PKG_VERSION"),
        };
        // Retries what did not fit in the client's queue; checks availability each second.
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_check = Instant::now();
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                e = input.recv() => match e {
                    Some(e) => core.event(e),
                    None => break,
                },
                Some(l) = rx.recv() => core.link(l, &cx.metrics),
                _ = tick.tick() => if last_check.elapsed() >= Duration::from_secs(1) {
                    last_check = Instant::now();
                    core.availability();
                },
            }
            core.flush(&client, &cx.metrics);
        }
        // Input closed: send what waits, say hpflow is going offline, disconnect.
        if core.connected {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            core.flush(&client, &cx.metrics);
            let _ = client.try_publish(core.topics.status(), core.s.qos(), true, "offline");
            let _ = client.try_disconnect();
            while let Ok(Some(l)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                if matches!(l, Link::Closed | Link::Down(_)) {
                    break;
                }
            }
        }
        driver.abort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::event::{FieldMeta, Value, ValueType};

    fn core(registry: Arc<Registry>) -> Core {
        let settings = Settings {
            id: "mqtt".into(),
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "c".into(),
            username: None,
            password: None,
            keep_alive: Duration::from_secs(30),
            qos: 1,
            prefix: "hpflow".into(),
            per_field_topics: false,
            discovery: Some("homeassistant".into()),
            fields: None,
            offline_after: Duration::from_secs(60),
            tls: None,
        };
        Core {
            topics: settings.topics(),
            s: settings,
            registry,
            devices: BTreeMap::new(),
            connected: true,
            outbox: VecDeque::new(),
            foreign: HashMap::new(),
            last_error: None,
            subscribe_pending: false,
            version: "test",
        }
    }

    fn poll(device: &str, fields: &[&str]) -> Event {
        let schema = Arc::new(Schema::new(
            "m",
            fields.iter().map(|f| FieldMeta::gauge(f, ValueType::Float)).collect(),
        ));
        let mut m = Metric::new(device, Arc::default(), SystemTime::now(), schema);
        for f in fields {
            m.fields.insert((*f).into(), Value::Float(1.0));
        }
        Event::from(m)
    }

    fn sent(c: &mut Core, topic: &str) -> Vec<String> {
        let out = c
            .outbox
            .iter()
            .filter(|(t, _, _)| t == topic)
            .map(|(_, b, _)| String::from_utf8_lossy(b).to_string())
            .collect();
        c.outbox.clear();
        out
    }

    #[test]
    fn availability_follows_the_sources_health_and_the_age_of_the_last_poll() {
        let registry = Arc::new(Registry::default());
        let health = registry.devices().register("pumps", "hp1");
        let mut c = core(registry);
        c.event(poll("hp1", &["t"]));
        assert_eq!(
            sent(&mut c, "hpflow/hp1/availability"),
            vec!["online"],
            "online at its first poll"
        );
        c.availability();
        assert_eq!(
            sent(&mut c, "hpflow/hp1/availability"),
            Vec::<String>::new(),
            "only changes"
        );

        // The source reports it down: offline; a successful poll: online.
        health.poll_done(false, SystemTime::now(), Duration::ZERO);
        c.availability();
        assert_eq!(sent(&mut c, "hpflow/hp1/availability"), vec!["offline"]);
        health.poll_done(true, SystemTime::now(), Duration::ZERO);
        c.event(poll("hp1", &["t"]));
        assert_eq!(sent(&mut c, "hpflow/hp1/availability"), vec!["online"]);

        // No poll for `offline_after`, whatever the source says: offline.
        c.devices.get_mut("hp1").unwrap().last_poll = Instant::now() - Duration::from_secs(61);
        c.availability();
        assert_eq!(sent(&mut c, "hpflow/hp1/availability"), vec!["offline"]);

        // A reconnect publishes hpflow online and every availability again.
        c.event(poll("hp1", &["t"]));
        c.outbox.clear();
        c.on_connect();
        let topics: Vec<String> = c.outbox.iter().map(|(t, _, _)| t.clone()).collect();
        assert_eq!(topics.first().map(String::as_str), Some("hpflow/status"));
        assert!(topics.contains(&"hpflow/hp1/availability".to_string()));
        assert!(topics.contains(&"homeassistant/sensor/hpflow_hp1/t/config".to_string()));
        assert!(c.devices["hp1"].dirty, "the newest state goes out again");
    }

    #[test]
    fn configs_of_ours_for_fields_a_device_no_longer_has_are_removed() {
        let mut c = core(Arc::new(Registry::default()));
        // Retained configs arrive before the device polled: kept aside.
        c.message("homeassistant/sensor/hpflow_hp1/old/config", b"{}");
        c.message("homeassistant/sensor/hpflow_hp1/t/config", b"{}");
        // Someone else's, and another prefix's: never touched.
        c.message("homeassistant/sensor/other_hp1/old/config", b"{}");
        c.message("homeassistant/sensor/hpflowx/old/config", b"{}");
        assert!(c.outbox.is_empty());
        c.event(poll("hp1", &["t"]));
        assert_eq!(sent(&mut c, "homeassistant/sensor/hpflow_hp1/old/config"), vec![""]);
        // One arriving after the device polled is removed at once; a current one stays.
        c.message("homeassistant/binary_sensor/hpflow_hp1/gone/config", b"{}");
        c.message("homeassistant/sensor/hpflow_hp1/t/config", b"{}");
        let removed: Vec<&str> = c.outbox.iter().map(|(t, _, _)| t.as_str()).collect();
        assert_eq!(removed, vec!["homeassistant/binary_sensor/hpflow_hp1/gone/config"]);
        c.outbox.clear();
        // The schema changes (a field dropped): its config is removed.
        c.event(poll("hp1", &["u"]));
        assert_eq!(sent(&mut c, "homeassistant/sensor/hpflow_hp1/t/config"), vec![""]);
    }

    #[test]
    fn home_assistant_coming_online_gets_every_config_and_state_again() {
        let mut c = core(Arc::new(Registry::default()));
        c.event(poll("hp1", &["t", "u"]));
        c.devices.get_mut("hp1").unwrap().dirty = false;
        c.outbox.clear();
        c.message("homeassistant/status", b"offline");
        assert!(c.outbox.is_empty());
        c.message("homeassistant/status", b"online");
        let topics: Vec<&str> = c.outbox.iter().map(|(t, _, _)| t.as_str()).collect();
        assert!(topics.contains(&"homeassistant/sensor/hpflow_hp1/t/config"));
        assert!(topics.contains(&"homeassistant/sensor/hpflow_hp1/u/config"));
        assert!(topics.contains(&"homeassistant/binary_sensor/hpflow/connection/config"));
        assert!(c.devices["hp1"].dirty);
    }
}
