//! Delivery counters of sinks that buffer and write to a server (today the
//! `influxdb` sink): what waits, what was written, retried, dropped or set aside.
//! The sink counts into them; the Prometheus sink reads them at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one delivering sink; all are totals since it was built except the
/// two `*_buffered` gauges.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    pub(crate) points_buffered: AtomicU64,
    pub(crate) bytes_buffered: AtomicU64,
    pub(crate) writes_ok: AtomicU64,
    pub(crate) points_written: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) dead_letter_dropped: AtomicU64,
    pub(crate) dead_letter_dropped_bytes: AtomicU64,
    pub(crate) dead_letter_failures: AtomicU64,
    pub(crate) corrupt_bytes: AtomicU64,
    pub(crate) skipped: AtomicU64,
}

/// A copy of [`DeliveryStats`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeliverySnapshot {
    /// Points waiting in the buffer (gauge).
    pub points_buffered: u64,
    /// Bytes they take, record headers included (gauge).
    pub bytes_buffered: u64,
    /// Write requests the server accepted.
    pub writes_ok: u64,
    /// Points in them.
    pub points_written: u64,
    /// Writes retried after a network error, 5xx, 408 or 429.
    pub retries: u64,
    /// Write requests that failed, for any reason.
    pub failures: u64,
    /// Points dropped: buffer full, buffer write failed, memory buffer at shutdown.
    pub dropped: u64,
    /// Points the server rejected, set aside in the dead-letter file.
    pub dead_lettered: u64,
    /// Dead-lettered points lost to `dead_letter_max_bytes` (the oldest rotated away).
    pub dead_letter_dropped: u64,
    /// Bytes of them.
    pub dead_letter_dropped_bytes: u64,
    /// Failed writes of the dead-letter file (the batch stayed in the buffer).
    pub dead_letter_failures: u64,
    /// Bytes of buffer files set aside as corrupt.
    pub corrupt_bytes: u64,
    /// Events with no field that line protocol can carry (all absent or NaN).
    pub skipped: u64,
}

impl DeliveryStats {
    pub fn snapshot(&self) -> DeliverySnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DeliverySnapshot {
            points_buffered: get(&self.points_buffered),
            bytes_buffered: get(&self.bytes_buffered),
            writes_ok: get(&self.writes_ok),
            points_written: get(&self.points_written),
            retries: get(&self.retries),
            failures: get(&self.failures),
            dropped: get(&self.dropped),
            dead_lettered: get(&self.dead_lettered),
            dead_letter_dropped: get(&self.dead_letter_dropped),
            dead_letter_dropped_bytes: get(&self.dead_letter_dropped_bytes),
            dead_letter_failures: get(&self.dead_letter_failures),
            corrupt_bytes: get(&self.corrupt_bytes),
            skipped: get(&self.skipped),
        }
    }
}
