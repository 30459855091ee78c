//! Running a device's adaptive read plan once over a link: busy retries,
//! exceptions, reconnects and backoff.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::backoff::{Backoff, Rng};
use super::link::{Connector, Link};
use super::reply::{exception_meaning, Reply};
use super::tcp_client::MAX_IN_FLIGHT;
use crate::event::Fields;
use crate::registers::{Change, Outcome, PlanOptions, PlanState, RawData, ReadPlan, ReadRequest};
use crate::telemetry::{HealthHandle, HealthRegistry};

/// Waits before retrying a request the device answered "busy" (06), per attempt.
const BUSY_WAIT: Duration = Duration::from_millis(200);
/// Retries of a busy request within one poll.
const BUSY_RETRIES: u32 = 2;
/// A device's wrong-length replies are logged at most this often.
const WRONG_LENGTH_TELL_EVERY: Duration = Duration::from_secs(3600);

/// A device as a poll holds it: its unit behind the link, its adaptive read
/// plan, its reconnect backoff and its health counters.
pub struct Device {
    pub id: Arc<str>,
    pub unit_id: u8,
    pub plan: PlanState,
    pub backoff: Backoff,
    pub health: HealthHandle,
    pub timeout: Duration,
    /// Most requests sent together (1: one at a time).
    pub in_flight: usize,
    /// Whether the device has shown it answers requests sent together.
    pub together: Together,
    /// When a wrong-length reply was last logged.
    wrong_length_told: Option<std::time::Instant>,
}

impl Device {
    /// The poll state of device `id` (unit `unit_id`) of `component`, reading
    /// `plan`; reconnects back off between the `reconnect` bounds, jittered per
    /// device; health is counted in `health`.
    pub fn new(
        component: &str,
        id: &Arc<str>,
        unit_id: u8,
        plan: ReadPlan,
        reconnect: (Duration, Duration),
        timeout: Duration,
        health: &HealthRegistry,
    ) -> Device {
        let key = format!("{component}/{id}");
        Device {
            id: id.clone(),
            unit_id,
            plan: PlanState::new(plan),
            backoff: {
                let (min, max) = reconnect;
                Backoff::new(min, max, Rng::from_key(&key))
            },
            health: health.register(component, id),
            timeout,
            in_flight: 1,
            together: Together::Unknown,
            wrong_length_told: None,
        }
    }
}

/// The planner's options with these overrides of its defaults.
pub fn plan_options(max_registers: Option<u16>, max_gap: Option<u16>, reprobe_after: Duration) -> PlanOptions {
    let mut options = PlanOptions {
        reprobe_after,
        ..PlanOptions::default()
    };
    if let Some(m) = max_registers {
        options.max_registers = m;
    }
    if let Some(g) = max_gap {
        options.max_gap = g;
    }
    options
}

/// What one poll of one device produced.
#[derive(Debug, Default)]
pub struct PollOutcome {
    pub fields: Fields,
    /// Every request sent, with its reply, in order. The values of a `Data`
    /// reply are moved into `fields`' decoding: its payload here is empty.
    pub requests: Vec<(ReadRequest, Reply)>,
    /// Why the poll stopped early (unreachable device, broken link), if it did.
    pub error: Option<String>,
    /// The kind of the error connecting, when the poll stopped there.
    pub connect_error: Option<std::io::ErrorKind>,
}

/// What kind of failure a read came to, for a person commissioning a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Nothing listens on the host and port.
    ConnectionRefused,
    /// No answer: connecting or a request timed out.
    Timeout,
    /// The device refused a request with a Modbus exception.
    Exception,
    /// A gateway answered that no device answers at the unit id (0A/0B).
    WrongUnitId,
    /// Any other connection problem (unknown host, reset, garbled reply).
    Link,
}

/// Why a read came to nothing, or stopped early: its kind, the exception code
/// if there was one, and the sentence to show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub code: Option<u8>,
    pub message: String,
}

impl PollOutcome {
    pub fn succeeded(&self) -> bool {
        !self.fields.is_empty()
    }

    /// Why this read of unit `unit_id` stopped early or read nothing, classified
    /// (`None`: it read values and ran to its end).
    pub fn failure(&self, unit_id: u8) -> Option<Failure> {
        let failure = |kind, code, message: String| Some(Failure { kind, code, message });
        if let Some(kind) = self.connect_error {
            let message = self.error.clone().unwrap_or_default();
            return match kind {
                std::io::ErrorKind::ConnectionRefused => failure(FailureKind::ConnectionRefused, None, message),
                std::io::ErrorKind::TimedOut => failure(FailureKind::Timeout, None, message),
                _ => failure(FailureKind::Link, None, message),
            };
        }
        if self.error.is_none() && self.succeeded() {
            return None;
        }
        let answered = self.requests.iter().any(|(_, r)| r.link_ok());
        let Some((req, reply)) = (self.requests.iter().rev())
            .find(|(_, r)| !matches!(r, Reply::Data(_)))
            .or(self.requests.last())
        else {
            return failure(FailureKind::Link, None, self.error.clone().unwrap_or_default());
        };
        let message = self.error.clone().unwrap_or_else(|| format!("{req}: {reply}"));
        match reply {
            Reply::Unreachable(c) => failure(
                FailureKind::WrongUnitId,
                Some(*c),
                format!(
                    "{message}: no device answers as unit {unit_id}; check the unit id (the gateway answered exception {c:02X}, {})",
                    exception_meaning(*c)
                ),
            ),
            Reply::Timeout if !answered => failure(
                FailureKind::Timeout,
                None,
                format!("{message}: the connection was accepted but unit {unit_id} did not answer; check the unit id"),
            ),
            Reply::Timeout => failure(FailureKind::Timeout, None, message),
            Reply::IllegalAddress => failure(
                FailureKind::Exception,
                Some(0x02),
                format!("{req}: exception 02 ({})", exception_meaning(0x02)),
            ),
            Reply::Busy => failure(
                FailureKind::Exception,
                Some(0x06),
                format!("{req}: exception 06 ({})", exception_meaning(0x06)),
            ),
            Reply::Refused(c) => failure(
                FailureKind::Exception,
                Some(*c),
                format!("{req}: exception {c:02X} ({})", exception_meaning(*c)),
            ),
            Reply::Broken(_) | Reply::Data(_) | Reply::WrongLength { .. } => failure(FailureKind::Link, None, message),
        }
    }

    /// The first failure worth telling a user about.
    pub fn first_error(&self) -> Option<String> {
        self.error.clone().or_else(|| {
            self.requests
                .iter()
                .find(|(_, r)| !matches!(r, Reply::Data(_)))
                .map(|(q, r)| format!("{q}: {r}"))
        })
    }
}

/// A device to read once (`hpflow read`, the dashboard's connection test):
/// unit `unit_id` read with `plan`, each connect and request bounded by `timeout`.
pub fn one_off_device(id: &str, unit_id: u8, plan: ReadPlan, timeout: Duration) -> Device {
    let hour = Duration::from_secs(3600);
    // What a source polling every hour backs off between.
    let reconnect = (Duration::from_secs(1), hour / 2);
    Device::new(
        "read",
        &id.into(),
        unit_id,
        plan,
        reconnect,
        timeout,
        &Default::default(),
    )
}

/// Reads `dev` once over a fresh connection opened by `connector`: the one
/// read of `hpflow read` and of the dashboard's connection test.
pub async fn read_device_once(connector: Box<dyn Connector>, dev: &mut Device) -> PollOutcome {
    let mut link = Link::new(connector);
    poll_device(&mut link, dev).await
}

/// Polls one device once over `link`.
///
/// A device that has shown it answers (a whole poll went through) gets its
/// requests sent together, up to its `in_flight`; replies are then taken in
/// order and handled exactly as if each had been sent alone. When a request
/// sent with others goes unanswered (or the link breaks), it and the rest are
/// sent again one at a time, at once: if the device answers alone what it did
/// not answer together, it is sent one request at a time from then on (until
/// the plan's re-probe time); if not, it is simply not answering.
pub async fn poll_device(link: &mut Link, dev: &mut Device) -> PollOutcome {
    let started = Instant::now().into_std();
    let mut out = PollOutcome::default();
    let mut results: Vec<(ReadRequest, Option<RawData>)> = Vec::new();
    let mut queue: VecDeque<ReadRequest> = dev.plan.requests(started).iter().cloned().collect();
    let mut reconnected = false;
    let mut link_trouble = false;
    let id = dev.id.clone();
    if let Together::No { since } = dev.together {
        if started.duration_since(since) >= dev.plan.plan().options().reprobe_after {
            dev.together = Together::Unknown;
        }
    }

    'requests: while !queue.is_empty() {
        if let Err((e, kind)) = link.ensure(&mut dev.backoff, dev.timeout, &dev.health).await {
            out.error = Some(e);
            out.connect_error = kind;
            break 'requests;
        }
        let depth = match dev.together {
            Together::Yes if link.sends_together() => dev.in_flight.min(MAX_IN_FLIGHT).min(queue.len()),
            _ => 1,
        };
        let batch: Vec<ReadRequest> = queue.drain(..depth).collect();
        let replies = link.read_together(dev.unit_id, &batch, dev.timeout).await;
        // Optional blocks dropped while handling this batch: the rest of the
        // batch's requests of such a block are passed over, as if never sent.
        let mut dropped: Vec<Arc<str>> = Vec::new();
        let mut replies = replies.into_iter();
        let mut batch = batch.into_iter();
        while let Some(req) = batch.next() {
            if req.optional && req.block.as_ref().is_some_and(|b| dropped.contains(b)) {
                replies.next();
                continue;
            }
            let Some((mut reply, mut took)) = replies.next() else {
                // Not answered: the batch stopped at a timeout or a broken link.
                break;
            };
            // Whether the reply in hand answers a request sent with others.
            let mut together = depth > 1;
            let mut busy = 0;
            loop {
                dev.health.request_done(reply.result(), took);
                if reply.link_ok() {
                    dev.backoff.succeeded();
                }
                let now = Instant::now().into_std();
                if together && matches!(reply, Reply::Timeout | Reply::Broken(_)) {
                    // Sent with others and not answered: send it and the rest
                    // alone, now, to tell a device that cannot take them
                    // together from one that stopped answering.
                    debug!(device = %id, request = %req, reply = %reply, "No answer to requests sent together; sending them one at a time");
                    dev.together = Together::Testing;
                    out.requests.push((req.clone(), reply));
                    for rest in batch.rev() {
                        queue.push_front(rest);
                    }
                    queue.push_front(req);
                    continue 'requests;
                }
                if dev.together == Together::Testing {
                    dev.together = if reply.link_ok() {
                        info!(device = %id, "Device answers requests sent one at a time but not sent together; sending one at a time (tried again after the re-probe interval)");
                        Together::No { since: now }
                    } else {
                        Together::Unknown
                    };
                }
                match &mut reply {
                    Reply::Data(d) => {
                        reconnected = false;
                        note_change(&id, dev.plan.record(&req, Outcome::Ok, now));
                        // The values go to decoding; the poll's record keeps the reply's kind.
                        let data = std::mem::replace(d, RawData::Words(Vec::new()));
                        results.push((req.clone(), Some(data)));
                    }
                    Reply::Busy if busy < BUSY_RETRIES => {
                        busy += 1;
                        debug!(device = %id, request = %req, attempt = busy, "Device busy; retrying");
                        out.requests.push((req.clone(), reply));
                        tokio::time::sleep(BUSY_WAIT * busy).await;
                        if let Err((e, kind)) = link.ensure(&mut dev.backoff, dev.timeout, &dev.health).await {
                            out.error = Some(e);
                            out.connect_error = kind;
                            break 'requests;
                        }
                        // The retry is sent alone.
                        let sent = Instant::now();
                        reply = link.read(dev.unit_id, &req, dev.timeout).await;
                        took = sent.elapsed();
                        together = false;
                        if !reply.link_ok() {
                            // The rest of the batch is sent again after it.
                            for rest in batch.by_ref().rev() {
                                queue.push_front(rest);
                            }
                        }
                        continue;
                    }
                    Reply::Busy | Reply::Refused(_) => {
                        debug!(device = %id, request = %req, reply = %reply, "Request refused; its fields are absent");
                        dev.plan.record(&req, Outcome::Failed, now);
                    }
                    Reply::WrongLength { .. } => {
                        dev.plan.record(&req, Outcome::Failed, now);
                        let due = dev
                            .wrong_length_told
                            .is_none_or(|t| now.duration_since(t) >= WRONG_LENGTH_TELL_EVERY);
                        if due {
                            dev.wrong_length_told = Some(now);
                            warn!(device = %id, request = %req, reply = %reply, "Device answered with the wrong number of values; the request's fields are absent (told once an hour per device)");
                        }
                    }
                    Reply::IllegalAddress => {
                        let change = dev.plan.record(&req, Outcome::IllegalAddress, now);
                        if let Some(Change::BlockDropped { block, .. }) = &change {
                            // The rest of a block that is not fitted would only be refused too.
                            queue.retain(|q| !(q.optional && q.block.as_ref() == Some(block)));
                            dropped.push(block.clone());
                        }
                        note_change(&id, change);
                        queue.extend(dev.plan.follow_ups());
                    }
                    Reply::Unreachable(_) => {
                        dev.plan.record(&req, Outcome::Failed, now);
                        out.error = Some(format!("{req}: {reply}"));
                        out.requests.push((req, reply));
                        break 'requests;
                    }
                    Reply::Timeout => {
                        link_trouble = true;
                        dev.plan.record(&req, Outcome::Failed, now);
                        let wait = dev.backoff.failed(Instant::now());
                        out.error = Some(format!(
                            "{req}: {reply} after {}",
                            humantime::format_duration(dev.timeout)
                        ));
                        debug!(device = %id, request = %req, backoff = ?wait, "Request timed out");
                        out.requests.push((req, reply));
                        break 'requests;
                    }
                    Reply::Broken(e) => {
                        link_trouble = true;
                        if !reconnected {
                            // A gateway may have closed an idle connection: one fresh
                            // connection per request before giving up.
                            reconnected = true;
                            debug!(device = %id, request = %req, error = %e, "Link broken; reconnecting once");
                            out.requests.push((req.clone(), reply));
                            queue.push_front(req);
                            continue 'requests;
                        }
                        dev.plan.record(&req, Outcome::Failed, now);
                        dev.backoff.failed(Instant::now());
                        out.error = Some(format!("{req}: {reply}"));
                        out.requests.push((req, reply));
                        break 'requests;
                    }
                }
                out.requests.push((req, reply));
                break;
            }
        }
    }
    match dev.together {
        // A whole poll went through: the next may send requests together.
        Together::Unknown if !link_trouble && out.error.is_none() && dev.in_flight > 1 => dev.together = Together::Yes,
        Together::Testing => dev.together = Together::Unknown,
        _ => {}
    }
    out.fields = dev.plan.decode(&results);
    out
}

/// Whether a device answers requests sent together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Together {
    /// Not known yet: one request at a time until a poll goes through whole.
    Unknown,
    /// It does: a poll's requests are sent together, `in_flight` at a time.
    Yes,
    /// A request sent with others went unanswered: the next, sent alone, decides.
    Testing,
    /// It answered alone what it did not answer together: one at a time
    /// until the re-probe interval has passed `since`.
    No { since: std::time::Instant },
}

fn note_change(device: &str, change: Option<Change>) {
    let Some(change) = change else { return };
    match change {
        Change::Split { request, into } => {
            let into: Vec<String> = into.iter().map(ToString::to_string).collect();
            info!(device = %device, request = %request, into = %into.join(", "), "Device refused a request (exception 02); splitting it");
        }
        Change::Skipped { request, .. } => {
            info!(device = %device, request = %request, "Device refused a single value (exception 02); skipping it until the re-probe");
        }
        Change::BlockDropped { block, .. } => {
            info!(device = %device, block = %block, "Optional block not served by the device (exception 02); dropped until the re-probe");
        }
        Change::Restored { request } => {
            info!(device = %device, request = %request, "Device answers a previously refused request again");
        }
        Change::BlockRestored { block } => {
            info!(device = %device, block = %block, "Optional block answered its re-probe; polling it again");
        }
    }
}
