//! The delivery task: reads batches from the buffer in order, writes them, and
//! acknowledges them once the server has accepted them.
//!
//! It runs apart from the receiving task, so a slow or dead server never holds up
//! the pipeline: the receiving side only appends to the buffer.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::buffer::Record;
use super::client::{Client, Outcome};
use super::Shared;
use crate::internal_metrics::ComponentMetrics;

/// Longest wait a server's `Retry-After` can ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// The same rejection is logged at WARN again only after this long.
const REWARN_AFTER: Duration = Duration::from_secs(600);

pub(super) struct Delivery {
    pub id: Arc<str>,
    pub shared: Arc<Shared>,
    pub client: Client,
    pub batch_max_points: usize,
    pub batch_max_bytes: usize,
    pub batch_timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub dead_letter: PathBuf,
    pub metrics: Arc<ComponentMetrics>,
    /// The buffer is in memory: what is left at shutdown is lost.
    pub memory_only: bool,
}

enum Delivered {
    Done,
    /// Shutdown came while the server was failing; the rest waits in the buffer.
    Stopped,
}

/// State of the current outage, for logging its start and its end once.
#[derive(Default)]
struct Outage {
    since: Option<Instant>,
    failures: u64,
}

impl Delivery {
    /// Runs until `stop` is cancelled and then either everything is delivered or a
    /// write fails.
    pub async fn run(self, stop: CancellationToken) {
        let problems = tokio::select! {
            p = self.client.health() => p,
            _ = stop.cancelled() => Vec::new(),
        };
        if problems.is_empty() {
            info!(component = %self.id, url = %self.client.write_url(), "InfluxDB sink ready");
        }
        for problem in problems {
            self.metrics.error();
            warn!(component = %self.id, url = %self.client.write_url(), %problem,
                "InfluxDB health check failed; points are buffered until writes succeed");
        }
        let mut stopping = false;
        let mut first_seen: Option<Instant> = None;
        let mut outage = Outage::default();
        let mut last_rejection: Option<(u16, Instant)> = None;
        loop {
            let (records, bytes) = self.shared.len();
            if records == 0 {
                first_seen = None;
                if stopping {
                    break;
                }
                tokio::select! {
                    _ = self.shared.notify.notified() => {}
                    _ = stop.cancelled(), if !stopping => stopping = true,
                }
                continue;
            }
            let since = *first_seen.get_or_insert_with(Instant::now);
            let full = records >= self.batch_max_points as u64 || bytes >= self.batch_max_bytes as u64;
            if !stopping && !full {
                let deadline = since + self.batch_timeout;
                if Instant::now() < deadline {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => {}
                        _ = self.shared.notify.notified() => {}
                        _ = stop.cancelled(), if !stopping => stopping = true,
                    }
                    continue;
                }
            }
            let batch = self.shared.peek(self.batch_max_points, self.batch_max_bytes);
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    self.metrics.error();
                    error!(component = %self.id, error = %e, "Reading the InfluxDB buffer failed; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(self.retry_initial) => {}
                        _ = stop.cancelled(), if !stopping => stopping = true,
                    }
                    if stopping {
                        break;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                continue;
            }
            match self.deliver(batch, &stop, &mut outage, &mut last_rejection).await {
                Delivered::Done => {}
                Delivered::Stopped => break,
            }
        }
        let (left, _) = self.shared.len();
        if left > 0 {
            if self.memory_only {
                self.metrics.dropped(left);
                self.shared.stats.dropped.fetch_add(left, Ordering::Relaxed);
                warn!(component = %self.id, points = left,
                    "InfluxDB sink stopped with undelivered points and no disk buffer; they are lost");
            } else {
                info!(component = %self.id, points = left,
                    "InfluxDB sink stopped; undelivered points wait in the disk buffer for the next start");
            }
        }
    }

    async fn deliver(
        &self,
        batch: Vec<Record>,
        stop: &CancellationToken,
        outage: &mut Outage,
        last_rejection: &mut Option<(u16, Instant)>,
    ) -> Delivered {
        let stats = &self.shared.stats;
        let mut parts = VecDeque::from([batch]);
        let mut body = Vec::new();
        while let Some(part) = parts.pop_front() {
            body.clear();
            for r in &part {
                body.extend_from_slice(&r.data);
            }
            let mut attempt = 0u32;
            loop {
                let outcome = self.client.write(&body).await;
                if !matches!(outcome, Outcome::Written) {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    self.metrics.error();
                }
                match outcome {
                    Outcome::Written => {
                        let n = part.len() as u64;
                        stats.writes_ok.fetch_add(1, Ordering::Relaxed);
                        stats.points_written.fetch_add(n, Ordering::Relaxed);
                        self.metrics.sent(n);
                        if let Some(since) = outage.since.take() {
                            info!(component = %self.id, failed_writes = outage.failures,
                                outage = %humantime::format_duration(Duration::from_secs(since.elapsed().as_secs())),
                                "InfluxDB writes succeed again");
                            outage.failures = 0;
                        }
                        self.ack(&part);
                        break;
                    }
                    Outcome::Retry { reason, after } => {
                        outage.failures += 1;
                        if outage.since.is_none() {
                            outage.since = Some(Instant::now());
                            warn!(component = %self.id, url = %self.client.write_url(), error = %reason,
                                "Writing to InfluxDB failed; retrying while points wait in the buffer");
                        } else {
                            debug!(component = %self.id, error = %reason, attempt, "Writing to InfluxDB failed again");
                        }
                        if stop.is_cancelled() {
                            return Delivered::Stopped;
                        }
                        let wait = match after {
                            Some(a) => a.min(MAX_RETRY_AFTER),
                            None => backoff(self.retry_initial, self.retry_max, attempt),
                        };
                        attempt = attempt.saturating_add(1);
                        stats.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = stop.cancelled() => return Delivered::Stopped,
                        }
                    }
                    Outcome::TooLarge if part.len() > 1 => {
                        let mut first = part;
                        let second = first.split_off(first.len() / 2);
                        debug!(component = %self.id, points = first.len() + second.len(),
                            "InfluxDB says the request is too large (413); splitting it");
                        parts.push_front(second);
                        parts.push_front(first);
                        break;
                    }
                    Outcome::TooLarge => {
                        self.reject(&part, 413, "request too large even for one point", last_rejection);
                        break;
                    }
                    Outcome::Rejected { status, message } => {
                        self.reject(&part, status, &message, last_rejection);
                        break;
                    }
                }
            }
        }
        Delivered::Done
    }

    fn ack(&self, part: &[Record]) {
        let result = self.shared.ack(part);
        if let Err(e) = result {
            self.metrics.error();
            error!(component = %self.id, error = %e,
                "Cannot record delivered points in the buffer's ack file; after a restart they are sent again");
        }
    }

    /// Sets a batch the server refused aside in the dead-letter file and moves on.
    fn reject(&self, part: &[Record], status: u16, message: &str, last: &mut Option<(u16, Instant)>) {
        let n = part.len() as u64;
        let loud = match last {
            Some((s, at)) => *s != status || at.elapsed() >= REWARN_AFTER,
            None => true,
        };
        if loud {
            *last = Some((status, Instant::now()));
            warn!(component = %self.id, status, message, points = n, dead_letter = %self.dead_letter.display(),
                "InfluxDB rejected a batch; it is set aside in the dead-letter file");
        } else {
            debug!(component = %self.id, status, message, points = n, "InfluxDB rejected a batch");
        }
        self.shared.stats.dead_lettered.fetch_add(n, Ordering::Relaxed);
        if let Err(e) = self.append_dead_letter(part, status, message) {
            self.metrics.dropped(n);
            self.shared.stats.dropped.fetch_add(n, Ordering::Relaxed);
            error!(component = %self.id, error = %e, path = %self.dead_letter.display(), points = n,
                "Cannot write the dead-letter file; the rejected points are lost");
        }
        self.ack(part);
    }

    fn append_dead_letter(&self, part: &[Record], status: u16, message: &str) -> std::io::Result<()> {
        if let Some(dir) = self.dead_letter.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut text = format!(
            "# {} HTTP {status}: {}\n",
            crate::event::rfc3339(SystemTime::now()),
            message.lines().next().unwrap_or_default()
        )
        .into_bytes();
        for r in part {
            text.extend_from_slice(&r.data);
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.dead_letter)?;
        f.write_all(&text)
    }
}

/// Capped exponential backoff with jitter: between half and all of
/// `initial × 2^attempt`, at most `max`.
pub fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = initial.saturating_mul(2u32.saturating_pow(attempt.min(30)));
    let cap = exp.min(max);
    let half = cap / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 0..40 {
            let d = backoff(i, m, attempt);
            let full = i.saturating_mul(2u32.saturating_pow(attempt.min(30))).min(m);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?} vs {full:?}");
        }
        assert!(backoff(i, m, 10) >= Duration::from_secs(1));
    }
}
