//! One face for rumqttc's two clients, MQTT 3.1.1 (`rumqttc`) and MQTT 5
//! (`rumqttc::v5`): the sink's driver and its receiving side are written once
//! against [`Client`] (hand a request to the client's queue without waiting)
//! and [`Connection`] (drive the event loop, report what happened as a
//! [`Link`]). What differs between the versions stays in here: the options
//! (last will, credentials, TLS, packet size), the packet types and the
//! connection errors, which are described the same way for both.

use std::time::Duration;

use rumqttc::v5;
use rumqttc::Transport;

use super::settings::{Protocol, Settings};

/// What the event loop reports to the receiving side.
#[derive(Debug)]
pub(crate) enum Link {
    Connected,
    /// The connection failed or broke: why, for people.
    Down(String),
    Message(String, Vec<u8>),
    /// Our disconnect went out (shutdown).
    Closed,
}

/// The sending half: requests go into rumqttc's bounded queue, never waiting;
/// `false` when the queue is full (or the event loop is gone).
pub(crate) enum Client {
    V311(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// The event loop, driven by [`drive`].
pub(crate) enum Connection {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<v5::EventLoop>),
}

/// A client and its event loop for `settings`, with hpflow's last will
/// (`offline`, retained, on `will_topic`).
pub(crate) fn connect(settings: &Settings, will_topic: &str, queue: usize) -> (Client, Connection) {
    let tls = settings
        .tls
        .as_ref()
        .map(|c| Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(c.clone())));
    // A state holds every field of a model (the ISG map: over 400).
    let max_packet = 1 << 20;
    match settings.protocol {
        Protocol::V311 => {
            let mut o = rumqttc::MqttOptions::new(&settings.client_id, &settings.host, settings.port);
            o.set_keep_alive(settings.keep_alive);
            o.set_clean_session(true);
            o.set_max_packet_size(max_packet, max_packet);
            o.set_last_will(rumqttc::LastWill::new(
                will_topic,
                "offline",
                qos_v311(settings.qos),
                true,
            ));
            if let Some(user) = &settings.username {
                o.set_credentials(user, settings.password.clone().unwrap_or_default());
            }
            if let Some(t) = tls {
                o.set_transport(t);
            }
            let (c, el) = rumqttc::AsyncClient::new(o, queue);
            (Client::V311(c), Connection::V311(Box::new(el)))
        }
        Protocol::V5 => {
            let mut o = v5::MqttOptions::new(&settings.client_id, &settings.host, settings.port);
            o.set_keep_alive(settings.keep_alive);
            o.set_clean_start(true);
            // The largest packet the broker may send us (retained discovery
            // configs, Home Assistant's status); what we may send is the
            // broker's to say in its CONNACK.
            o.set_max_packet_size(Some(max_packet as u32));
            o.set_last_will(v5::mqttbytes::v5::LastWill::new(
                will_topic,
                "offline",
                qos_v5(settings.qos),
                true,
                None,
            ));
            if let Some(user) = &settings.username {
                o.set_credentials(user, settings.password.clone().unwrap_or_default());
            }
            if let Some(t) = tls {
                o.set_transport(t);
            }
            let (c, el) = v5::AsyncClient::new(o, queue);
            (Client::V5(c), Connection::V5(Box::new(el)))
        }
    }
}

fn qos_v311(qos: u8) -> rumqttc::QoS {
    if qos == 0 {
        rumqttc::QoS::AtMostOnce
    } else {
        rumqttc::QoS::AtLeastOnce
    }
}

fn qos_v5(qos: u8) -> v5::mqttbytes::QoS {
    if qos == 0 {
        v5::mqttbytes::QoS::AtMostOnce
    } else {
        v5::mqttbytes::QoS::AtLeastOnce
    }
}

impl Client {
    pub(crate) fn try_publish(&self, topic: &str, qos: u8, retain: bool, body: Vec<u8>) -> bool {
        match self {
            Client::V311(c) => c.try_publish(topic, qos_v311(qos), retain, body).is_ok(),
            Client::V5(c) => c.try_publish(topic, qos_v5(qos), retain, body).is_ok(),
        }
    }

    /// Subscribes to every filter at QoS 1 in one request.
    pub(crate) fn try_subscribe(&self, filters: Vec<String>) -> bool {
        if filters.is_empty() {
            return true;
        }
        match self {
            Client::V311(c) => c
                .try_subscribe_many(
                    filters
                        .into_iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f, rumqttc::QoS::AtLeastOnce)),
                )
                .is_ok(),
            Client::V5(c) => c
                .try_subscribe_many(
                    filters
                        .into_iter()
                        .map(|f| v5::mqttbytes::v5::Filter::new(f, v5::mqttbytes::QoS::AtLeastOnce)),
                )
                .is_ok(),
        }
    }

    pub(crate) fn try_disconnect(&self) -> bool {
        match self {
            Client::V311(c) => c.try_disconnect().is_ok(),
            Client::V5(c) => c.try_disconnect().is_ok(),
        }
    }
}

impl Connection {
    /// One turn of the event loop: what happened worth reporting (`None` for
    /// acks, pings and the like), or the failure described for people.
    async fn poll(&mut self, s: &Settings) -> Result<Option<Link>, String> {
        use rumqttc::Outgoing;
        match self {
            Connection::V311(el) => {
                use rumqttc::{Event, Packet};
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Ok(Some(Link::Connected)),
                    Ok(Event::Incoming(Packet::Publish(p))) => Ok(Some(Link::Message(p.topic, p.payload.to_vec()))),
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => Ok(Some(Link::Closed)),
                    Ok(_) => Ok(None),
                    Err(e) => Err(describe(Failure::from_v311(&e), &e.to_string(), s)),
                }
            }
            Connection::V5(el) => {
                use v5::mqttbytes::v5::Packet;
                use v5::Event;
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Ok(Some(Link::Connected)),
                    Ok(Event::Incoming(Packet::Publish(p))) => Ok(Some(Link::Message(
                        String::from_utf8_lossy(&p.topic).into_owned(),
                        p.payload.to_vec(),
                    ))),
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => Ok(Some(Link::Closed)),
                    Ok(_) => Ok(None),
                    Err(e) => Err(describe(Failure::from_v5(&e), &e.to_string(), s)),
                }
            }
        }
    }
}

/// Drives the event loop until the sink goes away: every failure is reported
/// and retried after a backoff doubling from 0.5 s up to 30 s.
pub(crate) async fn drive(mut conn: Connection, tx: tokio::sync::mpsc::UnboundedSender<Link>, settings: Settings) {
    let first = Duration::from_millis(500);
    let mut backoff = first;
    loop {
        let link = match conn.poll(&settings).await {
            Ok(Some(Link::Connected)) => {
                backoff = first;
                Some(Link::Connected)
            }
            Ok(l) => l,
            Err(why) => {
                if tx.send(Link::Down(why)).is_err() {
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

/// A connection failure of either version, in the terms the description needs.
#[derive(Debug, PartialEq)]
pub(crate) enum Failure {
    BadCredentials,
    NotAuthorized,
    BadClientId,
    /// Another refusal, by the broker's reason.
    Refused(String),
    Tls(String),
    Io(String),
    Timeout,
    /// The session broke (a protocol error, a packet too large, …).
    State(String),
    Other(String),
}

impl Failure {
    fn from_v311(e: &rumqttc::ConnectionError) -> Failure {
        use rumqttc::{ConnectReturnCode as C, ConnectionError as E};
        match e {
            E::ConnectionRefused(C::BadUserNamePassword) => Failure::BadCredentials,
            E::ConnectionRefused(C::NotAuthorized) => Failure::NotAuthorized,
            E::ConnectionRefused(C::BadClientId) => Failure::BadClientId,
            E::ConnectionRefused(other) => Failure::Refused(format!("{other:?}")),
            E::Tls(e) => Failure::Tls(e.to_string()),
            E::Io(e) => Failure::Io(e.to_string()),
            E::NetworkTimeout | E::FlushTimeout => Failure::Timeout,
            E::MqttState(e) => Failure::State(e.to_string()),
            other => Failure::Other(other.to_string()),
        }
    }

    fn from_v5(e: &v5::ConnectionError) -> Failure {
        use v5::mqttbytes::v5::ConnectReturnCode as C;
        use v5::ConnectionError as E;
        match e {
            E::ConnectionRefused(C::BadUserNamePassword) => Failure::BadCredentials,
            E::ConnectionRefused(C::NotAuthorized) => Failure::NotAuthorized,
            E::ConnectionRefused(C::BadClientId | C::ClientIdentifierNotValid) => Failure::BadClientId,
            E::ConnectionRefused(other) => Failure::Refused(format!("{other:?}")),
            E::Tls(e) => Failure::Tls(e.to_string()),
            E::Io(e) => Failure::Io(e.to_string()),
            E::Timeout(_) => Failure::Timeout,
            E::MqttState(e) => Failure::State(e.to_string()),
            other => Failure::Other(other.to_string()),
        }
    }
}

/// The failure as a sentence naming the broker, with a hint for the TLS
/// failures a configuration causes (`text`: the error as rumqttc writes it).
pub(crate) fn describe(f: Failure, text: &str, s: &Settings) -> String {
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
    let at = format!("{}:{}", s.host, s.port);
    let plain = match f {
        Failure::BadCredentials => format!("broker {at} refused the connection: bad user name or password"),
        Failure::NotAuthorized => {
            format!("broker {at} refused the connection: not authorised (check `username` and the password)")
        }
        Failure::BadClientId => format!("broker {at} refused the client id `{}`", s.client_id),
        Failure::Refused(why) => format!("broker {at} refused the connection: {why}"),
        Failure::Tls(e) => format!("TLS with broker {at} failed: {e}"),
        Failure::Io(e) if s.tls.is_some() => format!("cannot connect to broker {at} over TLS: {e}"),
        Failure::Io(e) => format!("cannot reach broker {at}: {e}"),
        Failure::Timeout => format!("broker {at} did not answer in time"),
        Failure::State(e) => format!("lost the connection to broker {at}: {e}"),
        Failure::Other(e) => format!("connection to broker {at} failed: {e}"),
    };
    format!("{plain}{hint}")
}
