//! When to reconnect: capped, jittered exponential backoff, and the small
//! deterministic generator behind its jitter.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// `at + d`, or a year from `at` when a configured duration is too long for
/// the clock (no config value may make the schedule panic).
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(at)
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
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
