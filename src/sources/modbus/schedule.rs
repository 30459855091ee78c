//! When to poll and when to reconnect.
//!
//! Polls run at a fixed rate: tick k is due at `start + k·interval`, so the
//! schedule never drifts however long a poll takes. A tick that passed while the
//! previous poll still ran is skipped (and counted), never run late in a burst.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// A fixed-rate schedule for one device.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    interval: Duration,
    /// Index of the next tick to run.
    next: u64,
}

impl Schedule {
    /// Ticks at `start + offset + k·interval` for k = 0, 1, ….
    pub fn new(start: Instant, offset: Duration, interval: Duration) -> Self {
        Schedule {
            start: later(start, offset),
            interval: interval.max(Duration::from_millis(1)),
            next: 0,
        }
    }

    fn at(&self, k: u64) -> Instant {
        // u32 ticks of ≥1 ms are 49 days; beyond, saturate rather than overflow.
        let k = u32::try_from(k).unwrap_or(u32::MAX);
        later(self.start, self.interval.saturating_mul(k))
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// When the next tick is due.
    pub fn due(&self) -> Instant {
        self.at(self.next)
    }

    /// Takes the next tick once `now` has reached it: returns its instant and how
    /// many earlier ticks were skipped because they were already past.
    ///
    /// A tick counts as missed when a later tick is also due by `now`: the poll
    /// runs for the latest due tick only.
    pub fn take(&mut self, now: Instant) -> (Instant, u64) {
        let mut missed = 0;
        while self.at(self.next + 1) <= now {
            self.next += 1;
            missed += 1;
        }
        let due = self.at(self.next);
        self.next += 1;
        (due, missed)
    }
}

/// `at + d`, or a year from `at` when a configured duration is too long for
/// the clock (no config value may make the schedule panic).
pub fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(at)
}

/// The wall-clock time of a scheduled instant (the poll's timestamp).
pub fn wall_time(at: Instant) -> SystemTime {
    let now = Instant::now();
    let sys = SystemTime::now();
    if at <= now {
        sys.checked_sub(now - at).unwrap_or(sys)
    } else {
        sys.checked_add(at - now).unwrap_or(sys)
    }
}

/// A stable offset within `interval` for a device, so that a thousand devices
/// started together do not all poll in the same millisecond. FNV-1a: stable
/// across Rust releases and runs, unlike `DefaultHasher`.
pub fn phase_offset(key: &str, interval: Duration) -> Duration {
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(fnv1a(key.as_bytes()) % ms)
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A small deterministic generator (SplitMix64) for jitter; nothing here needs
/// cryptographic quality, so no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Seeded from a key and the clock: different per device and per run.
    pub fn from_key(key: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng(fnv1a(key.as_bytes()) ^ nanos)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Capped exponential backoff with jitter between connection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    not_before: Option<Instant>,
    rng: Rng,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, rng: Rng) -> Self {
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
            not_before: None,
            rng,
        }
    }

    /// May we try to connect at `now`?
    pub fn ready(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }

    /// A connection attempt failed at `now`; returns the wait before the next one.
    /// The wait doubles from `min` up to `max`, and each is drawn from its upper
    /// half (equal jitter), so devices that failed together spread out.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let exp = self.failures.min(30);
        self.failures = self.failures.saturating_add(1);
        let full = self.min.saturating_mul(1u32 << exp.min(31)).min(self.max);
        let wait = full.mul_f64(0.5 + 0.5 * self.rng.next_f64());
        self.not_before = Some(later(now, wait));
        wait
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.not_before = None;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn ticks_stay_on_the_grid_however_long_a_poll_takes() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Duration::ZERO, 10 * S);
        assert_eq!(s.take(t0), (t0, 0));
        // The poll took 3 s: the next tick is still at 10 s, not 13 s.
        assert_eq!(s.due(), t0 + 10 * S);
        assert_eq!(s.take(t0 + 10 * S + Duration::from_millis(2)), (t0 + 10 * S, 0));
        assert_eq!(s.due(), t0 + 20 * S);
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_that_passed_during_a_long_poll_are_skipped_and_counted() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Duration::ZERO, 10 * S);
        s.take(t0);
        // The first poll hung for 35 s: ticks 10 and 20 are gone, 30 runs now.
        assert_eq!(s.take(t0 + 35 * S), (t0 + 30 * S, 2));
        assert_eq!(s.due(), t0 + 40 * S);
    }

    #[test]
    fn phase_offsets_are_stable_and_inside_the_interval() {
        let a = phase_offset("src/hp1", 10 * S);
        assert_eq!(a, phase_offset("src/hp1", 10 * S));
        assert!(a < 10 * S);
        assert_ne!(a, phase_offset("src/hp2", 10 * S));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_the_cap_with_jitter() {
        let now = Instant::now();
        let mut b = Backoff::new(S, 8 * S, Rng::new(7));
        let waits: Vec<Duration> = (0..6).map(|_| b.failed(now)).collect();
        for (i, w) in waits.iter().enumerate() {
            let full = (S * (1 << i)).min(8 * S);
            assert!(*w >= full / 2 && *w <= full, "wait {i} = {w:?}, full {full:?}");
        }
        assert!(!b.ready(now));
        assert!(b.ready(now + 8 * S));
        b.succeeded();
        assert!(b.ready(now));
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn rng_is_deterministic_from_its_seed() {
        let mut a = Rng::new(1);
        let mut b = Rng::new(1);
        assert_eq!(a.next_u64(), b.next_u64());
        assert!((0.0..1.0).contains(&a.next_f64()));
    }
}
