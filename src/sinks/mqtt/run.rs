//! The running `mqtt` sink: one task receiving events (never waiting on the
//! network) and one driving the MQTT client's event loop (connecting,
//! reconnecting with backoff, reporting what came in), for MQTT 3.1.1 or 5
//! alike ([`super::client`]).
//!
//! The receiving task keeps the newest state of each device and publishes it
//! only while connected, through the client's bounded request queue without
//! waiting (`try_publish`): when the broker is away, a device's older states
//! are replaced by newer ones, and on reconnect the newest of each is sent
//! after the discovery configs and availabilities.
//!
//! What it announced is kept in a [`Ledger`] across restarts, so that configs
//! (and topics) of pumps and fields it no longer has are cleared with an empty
//! retained message, whether they went away while it ran or while it was down.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value as Json;
use tokio::sync::mpsc;

use crate::component::{BoxError, Input, Sink, SinkContext};
use crate::event::{Event, Metric, Schema, Tags};
use crate::telemetry::{cpu, Registry};

use super::client::{self, Client, Link};
use super::ledger::Ledger;
use super::payload::{self, Entity, Topics};
use super::settings::Settings;

/// How long a device must be unknown to every source (and silent) before it
/// counts as removed: longer than a source takes to restart on a reload.
const GRACE: Duration = Duration::from_secs(10);

/// The sink, built and not yet running.
pub struct Mqtt {
    settings: Settings,
    registry: Arc<Registry>,
    ledger: Ledger,
}

impl Mqtt {
    pub fn new(settings: Settings, registry: Arc<Registry>, ledger: Ledger) -> Self {
        Mqtt {
            settings,
            registry,
            ledger,
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
    /// Discovery and availability messages waiting for room in the client's
    /// queue, in order (all retained).
    outbox: VecDeque<(String, Vec<u8>)>,
    /// Retained discovery configs seen on the broker under node ids of ours
    /// whose device has not polled yet: node id → topics.
    foreign: HashMap<String, BTreeSet<String>>,
    /// What was announced, across restarts, and what waits to be cleared.
    ledger: Ledger,
    /// Announced devices no source registers, since when (see [`Core::prune`]).
    unregistered: HashMap<String, Instant>,
    grace: Duration,
    last_error: Option<(String, Instant)>,
    /// Subscriptions to make once the client has room.
    subscribe_pending: bool,
    version: &'static str,
}

impl Core {
    fn new(s: Settings, registry: Arc<Registry>, ledger: Ledger, version: &'static str) -> Core {
        let mut c = Core {
            topics: s.topics(),
            s,
            registry,
            devices: BTreeMap::new(),
            connected: false,
            outbox: VecDeque::new(),
            foreign: HashMap::new(),
            ledger,
            unregistered: HashMap::new(),
            grace: GRACE,
            last_error: None,
            subscribe_pending: false,
            version,
        };
        // hpflow's own configs: an earlier one under another prefix (or with
        // discovery now off) is cleared.
        let own: BTreeSet<String> = payload::bridge(&c.topics, version)
            .map(|b| b.topic)
            .into_iter()
            .collect();
        for t in &own {
            c.ledger.keep(t);
        }
        let gone = c.ledger.set_own(own);
        c.ledger.clear(gone);
        c
    }

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
    /// change, queues them, and clears the ones it no longer has: those of
    /// its previous schema, those the ledger has from an earlier run, and
    /// those of ours the broker showed.
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
        gone.extend(self.ledger.set_configs(&m.device, entities.keys().cloned().collect()));
        gone.retain(|t| !entities.contains_key(t));
        for t in entities.keys() {
            self.ledger.keep(t);
        }
        for t in [self.topics.state(&m.device), self.topics.availability(&m.device)] {
            self.ledger.keep(&t);
            self.ledger.add_topic(&m.device, &t);
        }
        self.ledger.clear(gone);
        if self.connected {
            for (t, p) in &entities {
                self.outbox.push_back((t.clone(), p.to_string().into_bytes()));
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
        self.save_ledger();
    }

    fn save_ledger(&mut self) {
        if let Err(e) = self.ledger.save() {
            tracing::warn!(sink = %self.s.id, error = %e, "mqtt sink `{}`: cannot save what it announced; retrying later", self.s.id);
        }
    }

    fn link(&mut self, l: Link, metrics: &crate::telemetry::ComponentMetrics) {
        match l {
            Link::Connected => {
                let v = self.s.protocol.as_str();
                if self.last_error.take().is_some() {
                    tracing::info!(sink = %self.s.id, "mqtt sink `{}`: connected to {}:{} again (MQTT {v})", self.s.id, self.s.host, self.s.port);
                } else {
                    tracing::info!(sink = %self.s.id, "mqtt sink `{}`: connected to {}:{} (MQTT {v})", self.s.id, self.s.host, self.s.port);
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
        self.outbox.push_back((self.topics.status(), b"online".to_vec()));
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
            self.outbox.push_back((b.topic, b.payload.to_string().into_bytes()));
        }
        for d in self.devices.values_mut() {
            for (t, p) in &d.entities {
                self.outbox.push_back((t.clone(), p.to_string().into_bytes()));
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
                self.ledger.clear([topic.to_string()]);
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

    /// Takes back what was announced for devices no source polls any more
    /// (taken out of the inventory while hpflow ran, or while it was down):
    /// their discovery configs, state and availability get an empty retained
    /// message. A device counts as removed once no source has registered it
    /// for `grace` on end, and it has not polled in that time; while no source
    /// has any device registered (starting, stopping, the only source being
    /// rebuilt) nothing is judged.
    fn prune(&mut self) {
        let registered: HashSet<Arc<str>> = self
            .registry
            .devices()
            .snapshot()
            .into_iter()
            .map(|h| h.device)
            .collect();
        if registered.is_empty() {
            self.unregistered.clear();
            return;
        }
        let now = Instant::now();
        let grace = self.grace;
        self.unregistered.retain(|id, _| !registered.contains(id.as_str()));
        let mut gone = Vec::new();
        for id in self
            .ledger
            .devices
            .keys()
            .filter(|id| !registered.contains(id.as_str()))
        {
            let since = self.unregistered.entry(id.clone()).or_insert(now);
            if let Some(d) = self.devices.get(id.as_str()) {
                if now.duration_since(d.last_poll) < grace {
                    // It polls, whatever the registry says (a source that
                    // registers nothing): not removed, and the wait starts over.
                    *since = now;
                    continue;
                }
            }
            if now.duration_since(*since) >= grace {
                gone.push(id.clone());
            }
        }
        for id in gone {
            self.unregistered.remove(&id);
            if let Some(a) = self.ledger.remove_device(&id) {
                tracing::info!(sink = %self.s.id, device = %id, "mqtt sink `{}`: device {id} is no longer polled: its {} entities and topics are removed", self.s.id, a.configs.len());
                self.ledger.clear(a.all().cloned());
            }
            self.devices.remove(id.as_str());
            self.foreign.remove(&self.topics.node_id(&id));
        }
        self.save_ledger();
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
                self.outbox.push_back((self.topics.availability(id), body.to_vec()));
                d.published_online = Some(online);
                if d.logged_online != Some(online) {
                    d.logged_online = Some(online);
                    let word = if online { "online" } else { "offline" };
                    tracing::info!(sink = %self.s.id, device = %id, "mqtt sink `{}`: device {id} is {word}", self.s.id);
                }
            }
        }
    }

    /// Hands what waits to the client while connected and it has room:
    /// subscriptions, then the outbox in order, then the clears, then each
    /// device's newest state. Never waits; what does not fit stays for the
    /// next call.
    fn flush(&mut self, client: &Client, metrics: &crate::telemetry::ComponentMetrics) {
        if !self.connected {
            return;
        }
        let qos = self.s.qos;
        if self.subscribe_pending {
            let mut filters: Vec<String> = Vec::new();
            filters.extend(self.topics.ha_status());
            filters.extend(self.topics.discovery_filter());
            if !client.try_subscribe(filters) {
                return;
            }
            self.subscribe_pending = false;
        }
        while let Some((topic, body)) = self.outbox.pop_front() {
            if !client.try_publish(&topic, qos, true, body.clone()) {
                self.outbox.push_front((topic, body));
                return;
            }
        }
        if !self.ledger.clearing.is_empty() {
            let clearing: Vec<String> = self.ledger.clearing.iter().cloned().collect();
            let mut full = false;
            for t in clearing {
                if !client.try_publish(&t, qos, true, Vec::new()) {
                    full = true;
                    break;
                }
                self.ledger.clearing.remove(&t);
                self.ledger.changed();
            }
            self.save_ledger();
            if full {
                return;
            }
        }
        let mut fields_seen = Vec::new();
        for (id, d) in self.devices.iter_mut() {
            if !d.dirty {
                continue;
            }
            if !client.try_publish(&self.topics.state(id), qos, true, d.state.clone().into_bytes()) {
                break;
            }
            if self.s.per_field_topics {
                for (k, v) in &d.values {
                    // Per-field topics are extras: one that does not fit waits for the next poll.
                    let t = self.topics.field(id, k);
                    if client.try_publish(&t, qos, true, payload::field_payload(v).into_bytes()) {
                        fields_seen.push((id.clone(), t));
                    }
                }
            }
            d.dirty = false;
            metrics.sent(1);
        }
        if !fields_seen.is_empty() {
            for (id, t) in fields_seen {
                self.ledger.add_topic(&id, &t);
            }
            self.save_ledger();
        }
    }
}

#[async_trait]
impl Sink for Mqtt {
    async fn run(self: Box<Self>, mut input: Input, cx: SinkContext) -> Result<(), BoxError> {
        let Mqtt {
            settings,
            registry,
            ledger,
        } = *self;
        let topics = settings.topics();
        let (client, connection) = client::connect(&settings, &topics.status(), 1024);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(cpu::metered(client::drive(connection, tx, settings.clone())));
        let mut core = Core::new(settings, registry, ledger, env!("CARGO_PKG_VERSION"));
        core.save_ledger();
        // Retries what did not fit in the client's queue; checks availability
        // and removed devices each second.
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
                    core.prune();
                    core.availability();
                },
            }
            core.flush(&client, &cx.metrics);
        }
        // Input closed: send what waits, say hpflow is going offline, disconnect.
        if core.connected {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            core.flush(&client, &cx.metrics);
            let _ = client.try_publish(&core.topics.status(), core.s.qos, true, b"offline".to_vec());
            let _ = client.try_disconnect();
            while let Ok(Some(l)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                if matches!(l, Link::Closed | Link::Down(_)) {
                    break;
                }
            }
        }
        core.save_ledger();
        driver.abort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::super::settings::Protocol;
    use super::*;
    use crate::event::{FieldMeta, Value, ValueType};

    fn settings() -> Settings {
        Settings {
            id: "mqtt".into(),
            host: "127.0.0.1".into(),
            port: 1883,
            protocol: Protocol::V311,
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
        }
    }

    fn core_with(registry: Arc<Registry>, ledger: Ledger) -> Core {
        let mut c = Core::new(settings(), registry, ledger, "test");
        c.connected = true;
        c.grace = Duration::ZERO;
        c
    }

    fn core(registry: Arc<Registry>) -> Core {
        core_with(registry, Ledger::in_memory())
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
            .filter(|(t, _)| t == topic)
            .map(|(_, b)| String::from_utf8_lossy(b).to_string())
            .collect();
        c.outbox.clear();
        out
    }

    /// The topics waiting for an empty retained message, taken.
    fn cleared(c: &mut Core) -> Vec<String> {
        std::mem::take(&mut c.ledger.clearing).into_iter().collect()
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
        let topics: Vec<String> = c.outbox.iter().map(|(t, _)| t.clone()).collect();
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
        assert!(c.ledger.clearing.is_empty());
        c.event(poll("hp1", &["t"]));
        assert_eq!(cleared(&mut c), vec!["homeassistant/sensor/hpflow_hp1/old/config"]);
        // One arriving after the device polled is removed at once; a current one stays.
        c.message("homeassistant/binary_sensor/hpflow_hp1/gone/config", b"{}");
        c.message("homeassistant/sensor/hpflow_hp1/t/config", b"{}");
        assert_eq!(
            cleared(&mut c),
            vec!["homeassistant/binary_sensor/hpflow_hp1/gone/config"]
        );
        // The schema changes (a field dropped): its config is removed.
        c.event(poll("hp1", &["u"]));
        assert_eq!(cleared(&mut c), vec!["homeassistant/sensor/hpflow_hp1/t/config"]);
    }

    #[test]
    fn what_an_earlier_run_announced_and_this_one_does_not_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let path = super::super::ledger::ledger_path(dir.path(), "mqtt");
        let registry = Arc::new(Registry::default());
        let _h1 = registry.devices().register("pumps", "hp1");
        let h2 = registry.devices().register("pumps", "hp2");

        // First run: two pumps, hp1 with fields t and u.
        let mut c = core_with(registry.clone(), Ledger::load(&path, "mqtt").unwrap());
        c.event(poll("hp1", &["t", "u"]));
        c.event(poll("hp2", &["t"]));
        c.prune();
        assert!(cleared(&mut c).is_empty(), "both pumps are polled");
        drop(c);

        // Second run: hp2 is gone from the inventory, hp1 lost field u.
        registry.devices().remove("pumps", "hp2");
        drop(h2);
        let mut c = core_with(registry.clone(), Ledger::load(&path, "mqtt").unwrap());
        c.grace = Duration::from_secs(3600);
        c.prune();
        assert!(cleared(&mut c).is_empty(), "nothing is removed before the grace passed");
        c.grace = Duration::ZERO;
        c.prune();
        let mut gone = cleared(&mut c);
        gone.sort();
        assert_eq!(
            gone,
            vec![
                "homeassistant/sensor/hpflow_hp2/t/config",
                "hpflow/hp2/availability",
                "hpflow/hp2/state",
            ],
            "the removed pump's configs, state and availability"
        );
        // hp1 has not polled yet in this run: its configs stay until it does.
        c.prune();
        assert!(cleared(&mut c).is_empty());
        c.event(poll("hp1", &["t"]));
        assert_eq!(cleared(&mut c), vec!["homeassistant/sensor/hpflow_hp1/u/config"]);
        assert!(!c.ledger.devices.contains_key("hp2"));

        // The clears themselves survive a restart until they were handed out.
        c.ledger.clear(["homeassistant/sensor/hpflow_hp9/x/config".to_string()]);
        c.save_ledger();
        let again = Ledger::load(&path, "mqtt").unwrap();
        assert!(again.clearing.contains("homeassistant/sensor/hpflow_hp9/x/config"));
        assert_eq!(
            again.devices["hp1"].configs,
            BTreeSet::from(["homeassistant/sensor/hpflow_hp1/t/config".to_string()])
        );
    }

    #[test]
    fn a_device_is_pruned_only_after_the_grace_unknown_to_every_source_and_silent() {
        let registry = Arc::new(Registry::default());
        let mut c = core(registry.clone());
        c.grace = Duration::from_secs(60);
        c.event(poll("hp1", &["t"]));
        let long_ago = Instant::now() - Duration::from_secs(61);
        // No source has devices registered (starting or stopping): nothing judged.
        c.unregistered.insert("hp1".into(), long_ago);
        c.devices.get_mut("hp1").unwrap().last_poll = long_ago;
        c.prune();
        assert!(c.ledger.devices.contains_key("hp1"));
        assert!(c.unregistered.is_empty(), "and the wait starts over");
        // Another source's device is registered, hp1 is not: the wait begins.
        let _other = registry.devices().register("other", "hp7");
        c.prune();
        assert!(c.ledger.devices.contains_key("hp1"));
        // Unregistered for the grace, but it polled lately: kept, the wait starts over.
        c.unregistered.insert("hp1".into(), long_ago);
        c.devices.get_mut("hp1").unwrap().last_poll = Instant::now();
        c.prune();
        assert!(c.ledger.devices.contains_key("hp1"));
        assert!(c.unregistered["hp1"] > long_ago);
        // Registered again in between: forgotten.
        let h = registry.devices().register("pumps", "hp1");
        c.prune();
        assert!(!c.unregistered.contains_key("hp1"));
        registry.devices().remove("pumps", "hp1");
        drop(h);
        // Unknown to every source and silent for the grace: removed.
        c.unregistered.insert("hp1".into(), long_ago);
        c.devices.get_mut("hp1").unwrap().last_poll = long_ago;
        c.prune();
        assert!(!c.ledger.devices.contains_key("hp1"));
        assert!(!c.devices.contains_key("hp1"));
        assert!(cleared(&mut c).contains(&"homeassistant/sensor/hpflow_hp1/t/config".to_string()));
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
        let topics: Vec<&str> = c.outbox.iter().map(|(t, _)| t.as_str()).collect();
        assert!(topics.contains(&"homeassistant/sensor/hpflow_hp1/t/config"));
        assert!(topics.contains(&"homeassistant/sensor/hpflow_hp1/u/config"));
        assert!(topics.contains(&"homeassistant/binary_sensor/hpflow/connection/config"));
        assert!(c.devices["hp1"].dirty);
    }

    #[test]
    fn connection_failures_read_the_same_for_both_protocol_versions() {
        use super::super::client::{describe, Failure};
        let s = settings();
        assert_eq!(
            describe(Failure::BadCredentials, "", &s),
            "broker 127.0.0.1:1883 refused the connection: bad user name or password"
        );
        assert!(
            describe(Failure::Tls("x".into()), "invalid peer certificate: UnknownIssuer", &s)
                .ends_with("(the broker's certificate is not signed by the CA of `ca_file` or the system)")
        );
        assert!(describe(Failure::Io("refused".into()), "", &s).starts_with("cannot reach broker 127.0.0.1:1883"));
    }
}
