//! Modbus sources: `modbus_tcp` and `modbus_rtu`.
//!
//! Both run the same loop ([`run_link`]): one task owns one link (a TCP
//! connection to a host:port, or a serial bus) and polls the devices behind it
//! in turn, each on its own fixed-rate [`Schedule`]. A TCP device alone on its
//! host:port gets a task of its own, so a dead or slow device delays only
//! devices that share its gateway or bus, and those only by its bounded timeout.
//!
//! One poll of one device ([`poll_device`]) sends the requests of its adaptive
//! read plan, each wrapped in a timeout (tokio-modbus has none), and maps what
//! comes back in one place ([`classify`]):
//! - data → decoded; exception 06 (busy) → retried after a short wait, twice;
//! - exception 02 → fed to the plan, which splits the request or skips the
//!   value (the halves are sent in the same poll);
//! - exceptions 0A/0B (gateway path/target) → the device is unreachable this poll;
//! - any other exception → that request's fields are absent;
//! - timeout or broken link → the connection is dropped; a link that broke is
//!   reconnected at once, once per request (gateways close idle
//!   connections); after that the device's capped, jittered backoff decides
//!   when the next attempt may happen.
//!
//! Partial success emits what succeeded; a poll where nothing succeeded emits
//! nothing. Fields are raw: the `scale` transform applies scale and offset.

mod config;
mod display;
mod inventory;
mod rtu;
mod schedule;
mod tcp;

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use config::{DeviceConfig, Devices, ModbusRtuConfig, ModbusTcpConfig, Parity, PollConfig, MAX_REGISTERS};
pub use display::{engineering_json, engineering_value, scale_metric};
pub use inventory::{DeviceSpec, Endpoint};
pub use rtu::{ModbusRtu, RtuConnector};
pub use schedule::{phase_offset, Backoff, Rng, Schedule};
pub use tcp::{ModbusTcp, TcpConnector};

use crate::event::{Event, Metric, Value};
use crate::registers::{Change, Outcome, PlanOptions, PlanState, RawData, ReadRequest, Table};
use crate::telemetry::{HealthHandle, HealthRegistry, Registry, RequestResult, Transition};

/// Waits before retrying a request the device answered "busy" (06), per attempt.
const BUSY_WAIT: Duration = Duration::from_millis(200);
/// Retries of a busy request within one poll.
const BUSY_RETRIES: u32 = 2;

/// What one request came to. [`classify`] is the only place that looks at
/// tokio-modbus' two error layers: the outer `Error` is a broken link
/// (reconnect), the inner `ExceptionCode` is the device refusing one request
/// (the link is fine).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Data(RawData),
    /// 06 server busy (or 05 acknowledge: "still working on it").
    Busy,
    /// 02 illegal data address.
    IllegalAddress,
    /// 0A gateway path unavailable / 0B gateway target failed to respond.
    Unreachable(u8),
    /// Any other exception code.
    Refused(u8),
    Timeout,
    /// I/O error, connection closed, garbled or mismatched reply.
    Broken(String),
}

impl Reply {
    /// The label this reply is counted under.
    pub fn result(&self) -> RequestResult {
        match self {
            Reply::Data(_) => RequestResult::Ok,
            Reply::Busy => RequestResult::Busy,
            Reply::IllegalAddress => RequestResult::IllegalAddress,
            Reply::Unreachable(_) => RequestResult::GatewayFailed,
            Reply::Refused(_) => RequestResult::Exception,
            Reply::Timeout => RequestResult::Timeout,
            Reply::Broken(_) => RequestResult::Transport,
        }
    }

    /// The device (or its gateway) answered: the link works.
    pub fn link_ok(&self) -> bool {
        !matches!(self, Reply::Timeout | Reply::Broken(_))
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Data(RawData::Words(w)) => write!(f, "{} registers", w.len()),
            Reply::Data(RawData::Bits(b)) => write!(f, "{} bits", b.len()),
            Reply::Busy => f.write_str("exception 06 (server busy)"),
            Reply::IllegalAddress => f.write_str("exception 02 (illegal data address)"),
            Reply::Unreachable(c) => write!(f, "exception {c:02X} (gateway could not reach the device)"),
            Reply::Refused(c) => write!(f, "exception {c:02X}"),
            Reply::Timeout => f.write_str("no answer (timeout)"),
            Reply::Broken(e) => write!(f, "link broken: {e}"),
        }
    }
}

/// Maps a request's result, through both of tokio-modbus' error layers and our
/// timeout, onto a [`Reply`].
pub fn classify(result: Result<tokio_modbus::Result<RawData>, tokio::time::error::Elapsed>) -> Reply {
    match result {
        Err(_) => Reply::Timeout,
        Ok(Err(e)) => Reply::Broken(e.to_string()),
        Ok(Ok(Ok(data))) => Reply::Data(data),
        Ok(Ok(Err(code))) => match code {
            ExceptionCode::ServerDeviceBusy | ExceptionCode::Acknowledge => Reply::Busy,
            ExceptionCode::IllegalDataAddress => Reply::IllegalAddress,
            ExceptionCode::GatewayPathUnavailable | ExceptionCode::GatewayTargetDevice => {
                Reply::Unreachable(u8::from(code))
            }
            other => Reply::Refused(u8::from(other)),
        },
    }
}

/// Sends one read and waits at most `timeout` for its answer.
pub async fn read_once(ctx: &mut Context, table: Table, start: u16, count: u16, timeout: Duration) -> Reply {
    let call = async {
        match table {
            Table::InputRegisters => ctx
                .read_input_registers(start, count)
                .await
                .map(|r| r.map(RawData::Words)),
            Table::HoldingRegisters => ctx
                .read_holding_registers(start, count)
                .await
                .map(|r| r.map(RawData::Words)),
            Table::Coils => ctx.read_coils(start, count).await.map(|r| r.map(RawData::Bits)),
            Table::DiscreteInputs => ctx
                .read_discrete_inputs(start, count)
                .await
                .map(|r| r.map(RawData::Bits)),
        }
    };
    classify(tokio::time::timeout(timeout, call).await)
}

/// Opens the transport of a link.
#[async_trait]
pub trait Connector: Send + 'static {
    /// Connects, within `timeout`.
    async fn connect(&mut self, timeout: Duration) -> io::Result<Context>;
    /// "tcp 10.0.0.5:502" or "rtu /dev/ttyUSB0", for logs.
    fn describe(&self) -> String;
    /// Whether a request timeout should drop the connection. True for TCP (a late
    /// answer would confuse the next request); false for a serial bus, where one
    /// silent unit says nothing about the others.
    fn drop_on_timeout(&self) -> bool {
        true
    }
    /// Silence to keep between frames (RTU's inter-frame gap).
    fn frame_gap(&self) -> Duration {
        Duration::ZERO
    }
}

/// One connection (or serial port) shared by the devices behind it.
pub struct Link {
    connector: Box<dyn Connector>,
    ctx: Option<Context>,
    last_io: Option<Instant>,
    /// Why the last connection attempt failed, for messages while backing off.
    last_error: Option<String>,
}

impl Link {
    pub fn new(connector: Box<dyn Connector>) -> Self {
        Link {
            connector,
            ctx: None,
            last_io: None,
            last_error: None,
        }
    }

    pub fn describe(&self) -> String {
        self.connector.describe()
    }

    pub fn is_connected(&self) -> bool {
        self.ctx.is_some()
    }

    /// Drops the connection; the next request reconnects.
    pub fn disconnect(&mut self) {
        self.ctx = None;
    }

    /// The connection, opened if needed (when the device's backoff allows).
    async fn ensure(&mut self, backoff: &mut Backoff, timeout: Duration, health: &HealthHandle) -> Result<(), String> {
        if self.ctx.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        if !backoff.ready(now) {
            let why = self.last_error.as_deref().unwrap_or("the last request failed");
            return Err(format!("waiting to reconnect ({why})"));
        }
        match self.connector.connect(timeout).await {
            Ok(ctx) => {
                self.ctx = Some(ctx);
                self.last_io = None;
                self.last_error = None;
                Ok(())
            }
            Err(e) => {
                health.connect_failed();
                let wait = backoff.failed(Instant::now());
                let msg = format!("cannot connect to {}: {e}", self.connector.describe());
                self.last_error = Some(msg.clone());
                Err(format!(
                    "{msg} (next attempt in {} at the earliest)",
                    humantime::format_duration(Duration::from_millis(wait.as_millis() as u64))
                ))
            }
        }
    }

    /// Sends one request to `unit` over the open connection.
    async fn read(&mut self, unit: u8, req: &ReadRequest, timeout: Duration) -> Reply {
        let gap = self.connector.frame_gap();
        if let (Some(last), false) = (self.last_io, gap.is_zero()) {
            tokio::time::sleep_until(schedule::later(last, gap)).await;
        }
        let Some(ctx) = self.ctx.as_mut() else {
            return Reply::Broken("not connected".into());
        };
        ctx.set_slave(Slave(unit));
        let reply = read_once(ctx, req.table, req.start, req.count, timeout).await;
        self.last_io = Some(Instant::now());
        match &reply {
            Reply::Broken(e) => {
                self.ctx = None;
                self.last_error = Some(format!("link broken: {e}"));
            }
            Reply::Timeout => {
                if self.connector.drop_on_timeout() {
                    self.ctx = None;
                }
                self.last_error = Some(format!("no answer within {}", humantime::format_duration(timeout)));
            }
            _ => {}
        }
        reply
    }
}

/// A device as its poll loop holds it.
pub struct Device {
    pub spec: DeviceSpec,
    pub component: Arc<str>,
    pub plan: PlanState,
    pub schedule: Schedule,
    pub backoff: Backoff,
    pub health: HealthHandle,
    pub timeout: Duration,
    /// The key the phase offset is hashed from, when phases are spread.
    phase_key: Option<String>,
}

impl Device {
    /// Builds the poll state of a device; the schedule starts at `start`.
    pub(crate) fn new(
        component: &str,
        spec: DeviceSpec,
        model: &Arc<crate::registers::Model>,
        poll: &PollConfig,
        default_timeout: Duration,
        start: Instant,
        health: &HealthRegistry,
    ) -> Device {
        let mut options = PlanOptions {
            reprobe_after: poll.reprobe_interval,
            ..PlanOptions::default()
        };
        if let Some(m) = poll.max_registers {
            options.max_registers = m;
        }
        if let Some(g) = poll.max_gap {
            options.max_gap = g;
        }
        let key = format!("{component}/{}", spec.id);
        let offset = if poll.phase_spread {
            phase_offset(&key, poll.interval)
        } else {
            Duration::ZERO
        };
        Device {
            component: component.into(),
            plan: PlanState::new(model.plan(&options)),
            schedule: Schedule::new(start, offset, poll.interval),
            backoff: {
                let (min, max) = poll.reconnect_bounds();
                Backoff::new(min, max, Rng::from_key(&key))
            },
            health: health.register(component, &spec.id),
            timeout: spec.timeout.unwrap_or(default_timeout),
            phase_key: poll.phase_spread.then_some(key),
            spec,
        }
    }

    /// Moves the device to a new interval, from now on.
    pub fn reschedule(&mut self, interval: Duration, now: Instant) {
        let offset = match &self.phase_key {
            Some(k) => phase_offset(k, interval),
            None => Duration::ZERO,
        };
        self.schedule = Schedule::new(now, offset, interval);
    }
}

/// What one poll of one device produced.
#[derive(Debug, Default)]
pub struct PollOutcome {
    pub fields: BTreeMap<Arc<str>, Value>,
    /// Every request sent, with its reply, in order.
    pub requests: Vec<(ReadRequest, Reply)>,
    /// Why the poll stopped early (unreachable device, broken link), if it did.
    pub error: Option<String>,
}

impl PollOutcome {
    pub fn succeeded(&self) -> bool {
        !self.fields.is_empty()
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

/// Polls one device once over `link`.
pub async fn poll_device(link: &mut Link, dev: &mut Device) -> PollOutcome {
    let started = Instant::now().into_std();
    let mut out = PollOutcome::default();
    let mut results: Vec<(ReadRequest, Option<RawData>)> = Vec::new();
    let mut queue: VecDeque<ReadRequest> = dev.plan.requests(started).into();
    let mut reconnected = false;
    let id = dev.spec.id.clone();

    'requests: while let Some(req) = queue.pop_front() {
        let mut busy = 0;
        loop {
            if let Err(e) = link.ensure(&mut dev.backoff, dev.timeout, &dev.health).await {
                out.error = Some(e);
                break 'requests;
            }
            let sent = Instant::now();
            let reply = link.read(dev.spec.unit_id, &req, dev.timeout).await;
            dev.health.request_done(reply.result(), sent.elapsed());
            if reply.link_ok() {
                dev.backoff.succeeded();
            }
            let now = Instant::now().into_std();
            match &reply {
                Reply::Data(d) => {
                    reconnected = false;
                    note_change(&id, dev.plan.record(&req, Outcome::Ok, now));
                    results.push((req.clone(), Some(d.clone())));
                }
                Reply::Busy if busy < BUSY_RETRIES => {
                    busy += 1;
                    debug!(device = %id, request = %req, attempt = busy, "Device busy; retrying");
                    out.requests.push((req.clone(), reply));
                    tokio::time::sleep(BUSY_WAIT * busy).await;
                    continue;
                }
                Reply::Busy | Reply::Refused(_) => {
                    debug!(device = %id, request = %req, reply = %reply, "Request refused; its fields are absent");
                    dev.plan.record(&req, Outcome::Failed, now);
                }
                Reply::IllegalAddress => {
                    let change = dev.plan.record(&req, Outcome::IllegalAddress, now);
                    if let Some(Change::BlockDropped { block, .. }) = &change {
                        // The rest of a block that is not fitted would only be refused too.
                        queue.retain(|q| !(q.optional && q.block.as_ref() == Some(block)));
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
                    if !reconnected {
                        // A gateway may have closed an idle connection: one fresh
                        // connection per request before giving up.
                        reconnected = true;
                        debug!(device = %id, request = %req, error = %e, "Link broken; reconnecting once");
                        out.requests.push((req.clone(), reply));
                        continue;
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
    out.fields = dev.plan.decode(&results);
    out
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

/// Waits for a new poll interval (from the dashboard's settings); never
/// resolves when there is no one to send one.
async fn interval_change(rx: &mut Option<watch::Receiver<Duration>>) -> Option<Duration> {
    let Some(r) = rx.as_mut() else {
        return std::future::pending().await;
    };
    match r.changed().await {
        Ok(()) => Some(*r.borrow_and_update()),
        Err(_) => {
            *rx = None;
            None
        }
    }
}

/// Polls the devices behind one link until `shutdown`, sending one event per
/// successful poll to `tx`.
pub(crate) async fn run_link(
    mut link: Link,
    mut devices: Vec<Device>,
    tx: mpsc::Sender<Event>,
    shutdown: CancellationToken,
    metrics: Arc<crate::telemetry::ComponentMetrics>,
    mut interval: Option<watch::Receiver<Duration>>,
) {
    if devices.is_empty() {
        return;
    }
    loop {
        // The device due first; ties go to the earlier one in the list.
        let Some(i) = (0..devices.len()).min_by_key(|&i| devices[i].schedule.due()) else {
            return;
        };
        let due = devices[i].schedule.due();
        let sleep: Sleep = tokio::time::sleep_until(due);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sleep => {}
            changed = interval_change(&mut interval) => {
                if let Some(iv) = changed.filter(|iv| !iv.is_zero()) {
                    let now = Instant::now();
                    info!(link = %link.describe(), interval = %humantime::format_duration(iv), "Poll interval changed");
                    devices.iter_mut().for_each(|d| d.reschedule(iv, now));
                }
                continue;
            }
        }
        let dev = &mut devices[i];
        let (tick, missed) = dev.schedule.take(Instant::now());
        if missed > 0 {
            dev.health.missed(missed);
            debug!(device = %dev.spec.id, missed, "Polls skipped: the previous poll was still running");
        }
        let at = schedule::wall_time(tick);
        let began = Instant::now();
        dev.health
            .poll_started(began.saturating_duration_since(tick), dev.schedule.interval());
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            o = poll_device(&mut link, dev) => o,
        };
        let took = began.elapsed();
        let ok = outcome.succeeded();
        if !ok {
            metrics.error();
        }
        match dev.health.poll_done(ok, SystemTime::now(), took) {
            Transition::Down => {
                let error = outcome.first_error().unwrap_or_else(|| "no values decoded".into());
                warn!(device = %dev.spec.id, link = %link.describe(), error = %error, "Modbus device not answering; will keep trying (logged once)");
            }
            Transition::Recovered => {
                info!(device = %dev.spec.id, link = %link.describe(), "Modbus device answering again");
            }
            Transition::Unchanged => {
                if !ok {
                    debug!(device = %dev.spec.id, error = ?outcome.first_error(), "Modbus poll failed");
                }
            }
        }
        if ok {
            let mut m = Metric::new(
                &dev.spec.id,
                dev.spec.tags.clone(),
                at,
                dev.plan.plan().model().schema().clone(),
            );
            m.fields = outcome.fields;
            if tx.send(Event::from(m)).await.is_err() {
                return;
            }
        }
    }
}

/// Forwards what the link tasks produce to the component's output until they
/// have all stopped; `stop` ends them early when no downstream is left.
pub(crate) async fn forward(
    mut rx: mpsc::Receiver<Event>,
    cx: &mut crate::component::SourceContext,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    telemetry: &Registry,
) {
    while let Some(e) = rx.recv().await {
        if !cx.out.send(e).await {
            // Every downstream is gone: nothing left to poll for.
            stop.cancel();
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    telemetry.devices().remove_component(&cx.id);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exc(code: ExceptionCode) -> Reply {
        classify(Ok(Ok(Err(code))))
    }

    #[test]
    fn both_error_layers_map_in_one_place() {
        assert_eq!(exc(ExceptionCode::ServerDeviceBusy), Reply::Busy);
        assert_eq!(exc(ExceptionCode::IllegalDataAddress), Reply::IllegalAddress);
        assert_eq!(exc(ExceptionCode::GatewayPathUnavailable), Reply::Unreachable(0x0A));
        assert_eq!(exc(ExceptionCode::GatewayTargetDevice), Reply::Unreachable(0x0B));
        assert_eq!(exc(ExceptionCode::IllegalFunction), Reply::Refused(0x01));
        assert_eq!(exc(ExceptionCode::ServerDeviceFailure), Reply::Refused(0x04));
        let io = tokio_modbus::Error::Transport(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(matches!(classify(Ok(Err(io))), Reply::Broken(_)));
        assert_eq!(
            classify(Ok(Ok(Ok(RawData::Words(vec![1]))))),
            Reply::Data(RawData::Words(vec![1]))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_without_an_answer_is_a_timeout() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(Ok(RawData::Words(vec![])))
        };
        assert_eq!(
            classify(tokio::time::timeout(Duration::from_secs(1), slow).await),
            Reply::Timeout
        );
    }

    #[test]
    fn only_timeouts_and_broken_links_count_against_the_link() {
        assert!(Reply::IllegalAddress.link_ok());
        assert!(Reply::Unreachable(0x0B).link_ok());
        assert!(!Reply::Timeout.link_ok());
        assert!(!Reply::Broken("x".into()).link_ok());
    }
}
