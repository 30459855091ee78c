//! Per-device health: is it answering, since when, and how its requests went.
//!
//! Every Modbus source registers its devices in the pipeline's [`HealthRegistry`]
//! (reached through the telemetry [`super::Registry`] it is built with); a sink
//! (the Prometheus endpoint) reads its snapshot at scrape time. A source that is
//! rebuilt replaces its own entries (keyed by component id and device id).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// What became of one Modbus request, the label of the request counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestResult {
    Ok,
    /// Exception 06: the device asked us to come back later.
    Busy,
    /// Exception 02: the device refused the start address or span.
    IllegalAddress,
    /// Exceptions 0x0A/0x0B: the gateway could not reach the device.
    GatewayFailed,
    /// Any other Modbus exception.
    Exception,
    /// No answer within `timeout`.
    Timeout,
    /// The link broke (I/O error, connection refused, garbled or mismatched reply).
    Transport,
    /// A reply with another number of values than asked for (discarded).
    WrongLength,
}

impl RequestResult {
    pub const ALL: [RequestResult; 8] = [
        RequestResult::Ok,
        RequestResult::Busy,
        RequestResult::IllegalAddress,
        RequestResult::GatewayFailed,
        RequestResult::Exception,
        RequestResult::Timeout,
        RequestResult::Transport,
        RequestResult::WrongLength,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestResult::Ok => "ok",
            RequestResult::Busy => "busy",
            RequestResult::IllegalAddress => "illegal_address",
            RequestResult::GatewayFailed => "gateway_failed",
            RequestResult::Exception => "exception",
            RequestResult::Timeout => "timeout",
            RequestResult::Transport => "transport",
            RequestResult::WrongLength => "wrong_length",
        }
    }
}

/// Upper bounds, in seconds, of the duration histograms' buckets (`+Inf` is
/// implied): from a quick local register read to a gateway timing out.
pub const DURATION_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A fixed-bucket histogram of durations, in the Prometheus shape. Updated under
/// the device's lock like the rest of its health, so plain integers suffice.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Histogram {
    /// Observations per bucket of [`DURATION_BUCKETS`], not cumulative; the
    /// ones above the last bound count only in `count`.
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    /// Sum of the observations, in seconds.
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        // Prometheus buckets are `le`: a value on a bound counts in that bucket.
        if let Some(i) = DURATION_BUCKETS.iter().position(|&le| secs <= le) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += secs;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the observations, in seconds.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Each bucket's upper bound with the observations at or below it
    /// (cumulative, as exposed); `+Inf` is [`Histogram::count`].
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        DURATION_BUCKETS.iter().zip(&self.buckets).scan(0, |acc, (&le, &n)| {
            *acc += n;
            Some((le, *acc))
        })
    }
}

/// Whether a poll that began `lag` after its scheduled instant counts as on
/// time: within a tenth of the interval, or within a second whatever the
/// interval (a busy runtime or a slow neighbour on a shared link delays a fast
/// schedule by some milliseconds without anything being wrong).
pub fn on_time(lag: Duration, interval: Duration) -> bool {
    lag < (interval / 10).max(Duration::from_secs(1))
}

/// The health of one device, as last updated by its poll loop.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceHealth {
    /// The source component polling the device.
    pub component: Arc<str>,
    pub device: Arc<str>,
    /// The last poll produced at least one value.
    pub up: bool,
    pub last_success: Option<SystemTime>,
    /// Polls in a row that produced nothing.
    pub consecutive_failures: u64,
    pub polls: u64,
    pub polls_failed: u64,
    /// Scheduled polls skipped because the previous one was still running.
    pub missed_ticks: u64,
    /// Connection attempts that failed (refused, unreachable, timed out).
    pub connect_failures: u64,
    pub requests: BTreeMap<RequestResult, u64>,
    pub last_poll_duration: Option<Duration>,
    /// Polls that began on time (see [`on_time`]).
    pub polls_on_time: u64,
    /// Polls that began later than that (the link was busy with other devices).
    pub polls_late: u64,
    /// How long each request took to be answered (or to fail).
    pub request_duration: Histogram,
    /// How long each poll took, all its requests together.
    pub poll_duration: Histogram,
}

impl DeviceHealth {
    pub fn requests(&self, result: RequestResult) -> u64 {
        self.requests.get(&result).copied().unwrap_or(0)
    }
}

/// A device's entry in the registry, held by the task that polls it.
#[derive(Debug, Clone)]
pub struct HealthHandle(Arc<Mutex<DeviceHealth>>);

impl HealthHandle {
    fn with<R>(&self, f: impl FnOnce(&mut DeviceHealth) -> R) -> R {
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut h)
    }

    pub fn request(&self, result: RequestResult) {
        self.with(|h| *h.requests.entry(result).or_insert(0) += 1);
    }

    /// Counts a request and how long it took.
    pub fn request_done(&self, result: RequestResult, took: Duration) {
        self.with(|h| {
            *h.requests.entry(result).or_insert(0) += 1;
            h.request_duration.observe(took);
        });
    }

    /// Records that a poll began `lag` after its scheduled instant.
    pub fn poll_started(&self, lag: Duration, interval: Duration) {
        self.with(|h| {
            if on_time(lag, interval) {
                h.polls_on_time += 1;
            } else {
                h.polls_late += 1;
            }
        });
    }

    pub fn connect_failed(&self) {
        self.with(|h| h.connect_failures += 1);
    }

    pub fn missed(&self, ticks: u64) {
        if ticks > 0 {
            self.with(|h| h.missed_ticks += ticks);
        }
    }

    /// Records the end of a poll; returns the state change worth logging once.
    pub fn poll_done(&self, success: bool, at: SystemTime, took: Duration) -> Transition {
        self.with(|h| {
            let was_up = h.up;
            let first = h.polls == 0;
            h.polls += 1;
            h.last_poll_duration = Some(took);
            h.poll_duration.observe(took);
            if success {
                h.up = true;
                h.last_success = Some(at);
                h.consecutive_failures = 0;
            } else {
                h.up = false;
                h.polls_failed += 1;
                h.consecutive_failures += 1;
            }
            match (first, was_up, success) {
                (_, false, true) if !first => Transition::Recovered,
                (true, _, false) | (false, true, false) => Transition::Down,
                _ => Transition::Unchanged,
            }
        })
    }

    pub fn get(&self) -> DeviceHealth {
        self.with(|h| h.clone())
    }
}

/// What a poll changed about a device's availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    /// The device stopped answering (or never answered on its first poll).
    Down,
    /// The device answers again after being down.
    Recovered,
}

/// All devices of all Modbus sources.
/// Entries by (component id, device id).
type Entries = BTreeMap<(Arc<str>, Arc<str>), HealthHandle>;

#[derive(Debug, Default)]
pub struct HealthRegistry {
    devices: Mutex<Entries>,
}

impl HealthRegistry {
    /// A fresh entry for a device (replacing any earlier one of the same component).
    pub fn register(&self, component: &str, device: &str) -> HealthHandle {
        let h = HealthHandle(Arc::new(Mutex::new(DeviceHealth {
            component: component.into(),
            device: device.into(),
            ..Default::default()
        })));
        let mut map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        map.insert((component.into(), device.into()), h.clone());
        h
    }

    /// Forgets every device of a component (when it stops for good).
    pub fn remove_component(&self, component: &str) {
        let mut map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(c, _), _| &**c != component);
    }

    /// Forgets one device of a component (taken out of its inventory).
    pub fn remove(&self, component: &str, device: &str) {
        let mut map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(c, d), _| !(&**c == component && &**d == device));
    }

    pub fn get(&self, component: &str, device: &str) -> Option<DeviceHealth> {
        let map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(Arc::from(component), Arc::from(device)))
            .map(HealthHandle::get)
    }

    /// A copy of every device's health, ordered by component and device.
    pub fn snapshot(&self) -> Vec<DeviceHealth> {
        let map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        map.values().map(HealthHandle::get).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_down_device_is_reported_once_and_its_recovery_once() {
        let r = HealthRegistry::default();
        let h = r.register("src", "hp1");
        let t = SystemTime::UNIX_EPOCH;
        let d = Duration::from_millis(5);
        assert_eq!(h.poll_done(true, t, d), Transition::Unchanged);
        assert_eq!(h.poll_done(false, t, d), Transition::Down);
        assert_eq!(h.poll_done(false, t, d), Transition::Unchanged);
        assert_eq!(h.poll_done(true, t, d), Transition::Recovered);
        assert_eq!(h.poll_done(true, t, d), Transition::Unchanged);
        let s = r.get("src", "hp1").unwrap();
        assert!(s.up);
        assert_eq!((s.polls, s.polls_failed, s.consecutive_failures), (5, 2, 0));
    }

    #[test]
    fn a_device_dead_from_the_start_is_reported_down_on_its_first_poll() {
        let r = HealthRegistry::default();
        let h = r.register("src", "hp1");
        let t = SystemTime::UNIX_EPOCH;
        assert_eq!(h.poll_done(false, t, Duration::ZERO), Transition::Down);
        assert_eq!(h.poll_done(false, t, Duration::ZERO), Transition::Unchanged);
        assert_eq!(h.poll_done(true, t, Duration::ZERO), Transition::Recovered);
    }

    #[test]
    fn request_results_are_counted_by_kind() {
        let r = HealthRegistry::default();
        let h = r.register("src", "hp1");
        h.request(RequestResult::Ok);
        h.request(RequestResult::Ok);
        h.request(RequestResult::Timeout);
        let s = h.get();
        assert_eq!(s.requests(RequestResult::Ok), 2);
        assert_eq!(s.requests(RequestResult::Timeout), 1);
        assert_eq!(s.requests(RequestResult::Busy), 0);
    }

    #[test]
    fn histogram_counts_each_duration_in_its_bucket_and_cumulates_them() {
        let mut h = Histogram::default();
        for ms in [3, 5, 7, 120, 120, 30_000] {
            h.observe(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 6);
        assert!((h.sum() - 30.255).abs() < 1e-9);
        let buckets: Vec<(f64, u64)> = h.cumulative().collect();
        assert_eq!(buckets.len(), DURATION_BUCKETS.len());
        // 5 ms lies on a bound: `le` includes it.
        assert_eq!(buckets[0], (0.005, 2));
        assert_eq!(buckets[1], (0.01, 3));
        assert_eq!(buckets[4], (0.1, 3));
        assert_eq!(buckets[5], (0.25, 5));
        // 30 s is above every bound: only `+Inf` (the count) holds it.
        assert_eq!(buckets[10], (10.0, 5));
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn a_poll_is_on_time_within_a_tenth_of_its_interval_or_a_second() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert!(on_time(ms(999), s(2)));
        assert!(!on_time(s(1), s(2)));
        assert!(on_time(s(5), s(60)));
        assert!(!on_time(s(6), s(60)));
        let r = HealthRegistry::default();
        let h = r.register("src", "hp1");
        h.poll_started(Duration::ZERO, s(10));
        h.poll_started(s(3), s(10));
        let d = h.get();
        assert_eq!((d.polls_on_time, d.polls_late), (1, 1));
    }

    #[test]
    fn request_and_poll_durations_are_recorded() {
        let r = HealthRegistry::default();
        let h = r.register("src", "hp1");
        h.request_done(RequestResult::Ok, Duration::from_millis(20));
        h.poll_done(true, SystemTime::UNIX_EPOCH, Duration::from_millis(40));
        let d = h.get();
        assert_eq!(d.requests(RequestResult::Ok), 1);
        assert_eq!(d.request_duration.count(), 1);
        assert_eq!(d.poll_duration.count(), 1);
        assert!((d.poll_duration.sum() - 0.04).abs() < 1e-9);
    }
}
