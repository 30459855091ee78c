//! Modbus sources: `modbus_tcp` and `modbus_rtu`.
//!
//! Both run the same loop ([`run_link`]): one task owns one link (a TCP
//! connection to a host:port, or a serial bus) and polls the devices behind it
//! in turn, each on its own fixed-rate [`Schedule`]. A TCP device alone on its
//! host:port gets a task of its own, so a dead or slow device delays only
//! devices that share its gateway or bus, and those only by its bounded timeout.
//!
//! One poll of one device is the Modbus client's ([`crate::modbus::poll_device`]).
//! Partial success emits what succeeded; a poll where nothing succeeded emits
//! nothing. Fields are raw: the `scale` transform applies scale and offset.

mod config;
mod inventory;
mod rtu;
mod schedule;
mod tcp;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use config::{ModbusRtuConfig, ModbusTcpConfig, PollConfig};
pub use inventory::{DeviceConfig, DeviceSpec, Devices, Endpoint, Inventory};
pub use rtu::ModbusRtu;
pub use tcp::ModbusTcp;

use crate::component::{BoxError, BuildContext, SourceContext};
use crate::event::{Event, Metric};
use crate::modbus::{plan_options, poll_device, Device, Link};
use crate::registers::RegisterMap;
use crate::telemetry::{HealthRegistry, Registry, Transition};
use schedule::{phase_offset, Schedule};

/// A device as its link's task holds it: its poll state, its inventory entry
/// and its fixed-rate schedule.
pub(crate) struct Scheduled {
    device: Device,
    spec: DeviceSpec,
    schedule: Schedule,
    /// The key the phase offset is hashed from, when phases are spread.
    phase_key: Option<String>,
}

impl Scheduled {
    /// Builds the poll state of a device; the schedule starts at `start`.
    pub(crate) fn new(
        component: &str,
        spec: DeviceSpec,
        model: &Arc<crate::registers::Model>,
        poll: &PollConfig,
        default_timeout: Duration,
        start: Instant,
        health: &HealthRegistry,
    ) -> Scheduled {
        let options = plan_options(poll.max_registers, poll.max_gap, poll.reprobe_interval);
        let key = format!("{component}/{}", spec.id);
        let offset = if poll.phase_spread {
            phase_offset(&key, poll.interval)
        } else {
            Duration::ZERO
        };
        Scheduled {
            device: Device::new(
                component,
                &spec.id,
                spec.unit_id,
                model.plan(&options),
                poll.reconnect_bounds(),
                spec.timeout.unwrap_or(default_timeout),
                health,
            ),
            schedule: Schedule::new(start, offset, poll.interval),
            phase_key: poll.phase_spread.then_some(key),
            spec,
        }
    }

    /// Moves the device to a new interval, from now on.
    fn reschedule(&mut self, interval: Duration, now: Instant) {
        let offset = match &self.phase_key {
            Some(k) => phase_offset(k, interval),
            None => Duration::ZERO,
        };
        self.schedule = Schedule::new(now, offset, interval);
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

/// What both Modbus sources run: the checked devices, how to poll them and,
/// once built in a pipeline, its knobs and telemetry. The sources differ only
/// in how they group devices onto links.
pub(crate) struct Polling {
    map: Arc<RegisterMap>,
    devices: Vec<DeviceSpec>,
    poll: PollConfig,
    timeout: Duration,
    /// Live poll interval changes (the dashboard's settings), when run in a pipeline.
    interval: Option<watch::Receiver<Duration>>,
    /// Where the devices' health is counted: the pipeline's, or the source's own.
    telemetry: Arc<Registry>,
}

impl Polling {
    pub(crate) fn new(map: Arc<RegisterMap>, devices: Vec<DeviceSpec>, poll: PollConfig, timeout: Duration) -> Self {
        Polling {
            map,
            devices,
            poll,
            timeout,
            interval: None,
            telemetry: Arc::default(),
        }
    }

    /// Joins the pipeline being built: the source's live interval (its own is
    /// the configured one) and the pipeline's telemetry.
    pub(crate) fn attach(&mut self, cx: &BuildContext<'_>) {
        self.interval = Some(cx.control.poll_interval(cx.id, self.poll.interval));
        self.telemetry = cx.registry.clone();
    }

    /// Polls each link's devices in a task of its own until shutdown, or until
    /// no downstream is left, forwarding every event.
    pub(crate) async fn run(&self, cx: &mut SourceContext, links: Vec<(Link, Vec<DeviceSpec>)>) {
        let start = Instant::now();
        // The component's own token: a source with no downstream left stops
        // itself without touching the pipeline's shutdown.
        let stop = cx.shutdown.child_token();
        let (tx, rx) = mpsc::channel(256);
        let mut tasks = Vec::new();
        for (link, specs) in links {
            let devices: Vec<Scheduled> = specs
                .into_iter()
                .filter_map(|spec| {
                    let model = self.map.model(&spec.model)?.clone();
                    Some(Scheduled::new(
                        &cx.id,
                        spec,
                        &model,
                        &self.poll,
                        self.timeout,
                        start,
                        self.telemetry.devices(),
                    ))
                })
                .collect();
            tasks.push(tokio::spawn(run_link(
                link,
                devices,
                tx.clone(),
                stop.clone(),
                cx.metrics.clone(),
                self.interval.clone(),
            )));
        }
        drop(tx);
        forward(rx, cx, stop, tasks, &self.telemetry).await;
    }
}

/// A source from what its check found: the first error, or what was found.
fn found<T>(found: Option<T>, errors: inventory::Errors, missing: &str) -> Result<T, BoxError> {
    if !errors.0.is_empty() {
        return Err(errors.0.join("; ").into());
    }
    found.ok_or_else(|| missing.into())
}

/// Polls the devices behind one link until `shutdown`, sending one event per
/// successful poll to `tx`.
async fn run_link(
    mut link: Link,
    mut devices: Vec<Scheduled>,
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
            dev.device.health.missed(missed);
            debug!(device = %dev.spec.id, missed, "Polls skipped: the previous poll was still running");
        }
        let at = schedule::wall_time(tick);
        let began = Instant::now();
        dev.device
            .health
            .poll_started(began.saturating_duration_since(tick), dev.schedule.interval());
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            o = poll_device(&mut link, &mut dev.device) => o,
        };
        let took = began.elapsed();
        let ok = outcome.succeeded();
        if !ok {
            metrics.error();
        }
        match dev.device.health.poll_done(ok, SystemTime::now(), took) {
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
                dev.device.plan.plan().model().schema().clone(),
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
async fn forward(
    mut rx: mpsc::Receiver<Event>,
    cx: &mut SourceContext,
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
