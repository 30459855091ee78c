//! When to poll.
//!
//! Polls run at a fixed rate: tick k is due at `start + k·interval`, so the
//! schedule never drifts however long a poll takes. A tick that passed while the
//! previous poll still ran is skipped (and counted), never run late in a burst.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::modbus::{fnv1a, later};

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

/// How many start slots an interval is cut into, at most.
pub const PHASE_SLOTS: u32 = 10;
/// The narrowest a start slot gets: shorter intervals have fewer slots.
const MIN_SLOT: Duration = Duration::from_millis(100);

/// A stable offset within `interval` for a device, so that a thousand devices
/// started together do not all poll in the same millisecond. FNV-1a: stable
/// across Rust releases and runs, unlike `DefaultHasher`.
///
/// Offsets fall on one of [`PHASE_SLOTS`] evenly spaced slots (each at least
/// 100 ms), not on any millisecond: devices sharing a slot are asked in the
/// same turn of the runtime, so their replies are collected by one wait for
/// readiness and one wake-up instead of one each. That cuts the CPU per poll by
/// about a third with a thousand devices (BENCHMARKS.md, `pipeline_poll`),
/// while each slot still carries only a tenth of them.
pub fn phase_offset(key: &str, interval: Duration) -> Duration {
    let fitting = (interval.as_millis() / MIN_SLOT.as_millis()).clamp(1, u128::from(PHASE_SLOTS)) as u32;
    let slot = (fnv1a(key.as_bytes()) % u64::from(fitting)) as u32;
    interval / fitting * slot
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

    #[test]
    fn phase_offsets_fall_on_slots_that_share_the_devices_out_evenly() {
        let mut per_slot = std::collections::BTreeMap::new();
        for i in 0..1000 {
            *per_slot
                .entry(phase_offset(&format!("heatpumps/hp{i:04}"), 10 * S))
                .or_insert(0) += 1;
        }
        let slots: Vec<Duration> = per_slot.keys().copied().collect();
        assert_eq!(
            slots,
            (0..10).map(|k| k * S).collect::<Vec<_>>(),
            "ten slots a second apart"
        );
        for (slot, n) in &per_slot {
            assert!((60..=140).contains(n), "slot {slot:?} has {n} of 1000 devices");
        }
        // Short intervals get fewer slots, none narrower than 100 ms.
        let short: std::collections::BTreeSet<Duration> = (0..100)
            .map(|i| phase_offset(&format!("hp{i}"), Duration::from_millis(250)))
            .collect();
        assert_eq!(short.len(), 2);
        assert!(short.iter().all(|o| o.as_millis() % 125 == 0));
        assert_eq!(phase_offset("hp1", Duration::from_millis(50)), Duration::ZERO);
    }
}
