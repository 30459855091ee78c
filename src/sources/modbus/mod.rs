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

use std::collections::HashMap;
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

use crate::component::{BoxError, BuildContext, Prepared, SourceContext};
use crate::event::{Event, Metric};
use crate::modbus::{plan_options, poll_device, Device, Link};
use crate::registers::{ReadPlan, RegisterMap};
use crate::telemetry::{cpu, HealthRegistry, Registry, Transition};
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
        plan: ReadPlan,
        poll: &PollConfig,
        default_timeout: Duration,
        start: Instant,
        health: &HealthRegistry,
    ) -> Scheduled {
        let key = format!("{component}/{}", spec.id);
        let offset = if poll.phase_spread {
            phase_offset(&key, poll.interval)
        } else {
            Duration::ZERO
        };
        let mut device = Device::new(
            component,
            &spec.id,
            spec.unit_id,
            plan,
            poll.reconnect_bounds(),
            spec.timeout.unwrap_or(default_timeout),
            health,
        );
        device.in_flight = usize::from(poll.in_flight);
        Scheduled {
            device,
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
    /// Each reload's inventory, when built in a pipeline that reloads.
    reloads: Option<watch::Receiver<Prepared>>,
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
            reloads: None,
        }
    }

    /// Joins the pipeline being built: the source's live interval (its own is
    /// the configured one) and the pipeline's telemetry.
    pub(crate) fn attach(&mut self, cx: &BuildContext<'_>) {
        self.interval = Some(cx.control.poll_interval(cx.id, self.poll.interval));
        self.telemetry = cx.registry.clone();
        self.follow_reloads(cx);
    }

    /// Polls each link's devices in a task of its own until shutdown, or until
    /// no downstream is left, forwarding every event. `links` groups an
    /// inventory's devices onto links, each under a key naming it (its address);
    /// a reload that changes the inventory (see [`Polling::follow_reloads`]) is
    /// applied here without stopping what it leaves unchanged.
    pub(crate) async fn run(mut self, cx: &mut SourceContext, links: impl Fn(&Inventory) -> Vec<LinkGroup>) {
        // The component's own token: a source with no downstream left stops
        // itself without touching the pipeline's shutdown.
        let stop = cx.shutdown.child_token();
        let (tx, mut rx) = mpsc::channel(256);
        // What the check kept, when built in a pipeline: what reloads compare with.
        let kept = (self.reloads.as_mut()).and_then(|r| r.borrow_and_update().downcast_ref::<Inventory>().cloned());
        let mut inventory = kept.unwrap_or_else(|| Inventory {
            map: self.map.clone(),
            devices: self.devices.clone(),
            bus: None,
        });
        let mut running = LinkTasks::default();
        let start = Instant::now();
        for group in links(&inventory) {
            let devices = self.scheduled(&cx.id, &group.specs, start, &mut Vec::new(), None);
            running.spawn(group, devices, &tx, &stop, &cx.metrics, &self.interval);
        }
        let mut tx = Some(tx);
        loop {
            tokio::select! {
                e = rx.recv() => match e {
                    Some(e) => {
                        if !cx.out.send(e).await {
                            // Every downstream is gone: nothing left to poll for.
                            stop.cancel();
                        }
                    }
                    None => break,
                },
                _ = stop.cancelled(), if tx.is_some() => {
                    // The link tasks stop; the queue closes when the last one has.
                    tx = None;
                }
                next = next_inventory(&mut self.reloads), if tx.is_some() => {
                    let (Some(next), Some(sender)) = (next, tx.as_ref()) else { continue };
                    if next == inventory {
                        continue;
                    }
                    let groups = links(&next);
                    let old_map = std::mem::replace(&mut inventory, next.clone()).map;
                    self.map = next.map.clone();
                    self.devices = next.devices.clone();
                    let changed = running.changed(&groups, |specs| {
                        specs.iter().all(|s| old_map.model(&s.model) == self.map.model(&s.model))
                    });
                    let mut retired = LinkTasks::retire(changed).await;
                    let now = Instant::now();
                    for group in groups {
                        if running.has(&group.key) {
                            continue;
                        }
                        let devices = self.scheduled(&cx.id, &group.specs, now, &mut retired, Some(&old_map));
                        running.spawn(group, devices, sender, &stop, &cx.metrics, &self.interval);
                    }
                    for gone in retired {
                        self.telemetry.devices().remove(&cx.id, &gone.spec.id);
                    }
                    info!(component = %cx.id, devices = self.devices.len(), links = running.len(), "Device inventory reloaded");
                }
            }
        }
        running.join().await;
        self.telemetry.devices().remove_component(&cx.id);
    }

    /// Follows reloads of the source's inventory, from what its check kept.
    fn follow_reloads(&mut self, cx: &BuildContext<'_>) {
        if let Some(p) = cx.prepared {
            self.reloads = Some(cx.control.follow_reloads(cx.id, p.clone()));
        }
    }

    /// The poll state of `specs` from `start`. A device whose entry is unchanged
    /// takes over its state from `reuse` (schedule and all; its plan anew when
    /// its model changed, as judged against `old_map`).
    fn scheduled(
        &self,
        component: &str,
        specs: &[DeviceSpec],
        start: Instant,
        reuse: &mut Vec<Scheduled>,
        old_map: Option<&RegisterMap>,
    ) -> Vec<Scheduled> {
        let options = plan_options(self.poll.max_registers, self.poll.max_gap, self.poll.reprobe_interval);
        // The devices of one model share its plan (each keeps its own state of it).
        let mut plans: HashMap<&str, ReadPlan> = HashMap::new();
        specs
            .iter()
            .filter_map(|spec| {
                let model = self.map.model(&spec.model)?.clone();
                let old = reuse.iter().position(|d| d.spec == *spec).map(|i| reuse.swap_remove(i));
                if old.is_some() && old_map.and_then(|m| m.model(&spec.model)) == Some(&model) {
                    return old.map(|mut d| {
                        d.device.in_flight = usize::from(self.poll.in_flight);
                        d
                    });
                }
                let plan = plans
                    .entry(&*spec.model)
                    .or_insert_with(|| model.plan(&options))
                    .clone();
                let mut fresh = Scheduled::new(
                    component,
                    spec.clone(),
                    plan,
                    &self.poll,
                    self.timeout,
                    start,
                    self.telemetry.devices(),
                );
                // Same device, changed model: a new plan, the same schedule.
                if let Some(d) = old {
                    fresh.schedule = d.schedule;
                }
                Some(fresh)
            })
            .collect()
    }
}

/// The devices an inventory puts behind one link.
pub(crate) struct LinkGroup {
    /// Names the link (its address); a link keeps its task across a reload
    /// when its key and its devices stay the same.
    pub(crate) key: String,
    pub(crate) link: Link,
    pub(crate) specs: Vec<DeviceSpec>,
}

/// The running link tasks of a source.
#[derive(Default)]
struct LinkTasks {
    tasks: Vec<LinkTask>,
}

struct LinkTask {
    key: String,
    specs: Vec<DeviceSpec>,
    retire: CancellationToken,
    task: tokio::task::JoinHandle<Vec<Scheduled>>,
}

impl LinkTasks {
    fn spawn(
        &mut self,
        group: LinkGroup,
        devices: Vec<Scheduled>,
        tx: &mpsc::Sender<Event>,
        stop: &CancellationToken,
        metrics: &Arc<crate::telemetry::ComponentMetrics>,
        interval: &Option<watch::Receiver<Duration>>,
    ) {
        let retire = CancellationToken::new();
        let task = tokio::spawn(cpu::metered(run_link(
            group.link,
            devices,
            tx.clone(),
            stop.clone(),
            retire.clone(),
            metrics.clone(),
            interval.clone(),
        )));
        self.tasks.push(LinkTask {
            key: group.key,
            specs: group.specs,
            retire,
            task,
        });
    }

    fn has(&self, key: &str) -> bool {
        self.tasks.iter().any(|t| t.key == key)
    }

    fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Takes out every task whose link is gone or whose devices changed (or
    /// whose models did not stay `same`).
    fn changed(&mut self, groups: &[LinkGroup], same: impl Fn(&[DeviceSpec]) -> bool) -> Vec<LinkTask> {
        let (keep, changed): (Vec<LinkTask>, Vec<LinkTask>) = std::mem::take(&mut self.tasks)
            .into_iter()
            .partition(|t| groups.iter().any(|g| g.key == t.key && g.specs == t.specs) && same(&t.specs));
        self.tasks = keep;
        changed
    }

    /// Retires tasks once the poll each has under way is done; returns their devices.
    async fn retire(tasks: Vec<LinkTask>) -> Vec<Scheduled> {
        let mut devices = Vec::new();
        for t in tasks {
            t.retire.cancel();
            devices.extend(t.task.await.unwrap_or_default());
        }
        devices
    }

    async fn join(self) {
        for t in self.tasks {
            let _ = t.task.await;
        }
    }
}

/// The next inventory a reload hands over; never resolves without reloads.
async fn next_inventory(rx: &mut Option<watch::Receiver<Prepared>>) -> Option<Inventory> {
    let Some(r) = rx.as_mut() else {
        return std::future::pending().await;
    };
    match r.changed().await {
        Ok(()) => r.borrow_and_update().downcast_ref::<Inventory>().cloned(),
        Err(_) => {
            *rx = None;
            None
        }
    }
}

/// A source from what its check found: the first error, or what was found.
fn found<T>(found: Option<T>, errors: inventory::Errors, missing: &str) -> Result<T, BoxError> {
    if !errors.0.is_empty() {
        return Err(errors.0.join("; ").into());
    }
    found.ok_or_else(|| missing.into())
}

/// Polls the devices behind one link until `shutdown` or `retire` (both wait
/// for a poll under way to finish), sending one event per
/// successful poll to `tx`. Returns the devices with their schedules, so a
/// reload can hand them to the link's next task.
async fn run_link(
    mut link: Link,
    mut devices: Vec<Scheduled>,
    tx: mpsc::Sender<Event>,
    shutdown: CancellationToken,
    retire: CancellationToken,
    metrics: Arc<crate::telemetry::ComponentMetrics>,
    mut interval: Option<watch::Receiver<Duration>>,
) -> Vec<Scheduled> {
    if devices.is_empty() {
        return devices;
    }
    loop {
        // The device due first; ties go to the earlier one in the list.
        let Some(i) = (0..devices.len()).min_by_key(|&i| devices[i].schedule.due()) else {
            return devices;
        };
        let due = devices[i].schedule.due();
        let sleep: Sleep = tokio::time::sleep_until(due);
        tokio::select! {
            _ = shutdown.cancelled() => return devices,
            _ = retire.cancelled() => return devices,
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
        // A poll under way finishes even at shutdown: the device may already
        // have answered it, and a poll it answered is delivered. It takes at
        // most a connect and a request timeout more (a timeout ends a poll).
        let outcome = poll_device(&mut link, &mut dev.device).await;
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
                return devices;
            }
        }
    }
}
