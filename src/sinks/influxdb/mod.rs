//! `influxdb`: writes events as line protocol to InfluxDB 1.x (`api = "v1"`),
//! InfluxDB 2.x/3.x or VictoriaMetrics (`api = "v2"`), through a durable buffer.
//!
//! ```toml
//! [sinks.influx]
//! type = "influxdb"
//! inputs = ["states"]
//! endpoint = "http://localhost:8086"
//! api = "v2"                         # "v1" takes database, retention_policy, username, password
//! org = "heatpump-monitoring"
//! bucket = "heatpump-data"
//! token = "${INFLUXDB_TOKEN}"        # optional for VictoriaMetrics
//! measurement = "heatpump_metrics"   # the defaults from here on
//! state_measurement = "heatpump_state_changes"
//! precision = "ms"                   # ns | us | ms | s
//! enum_values = "label"              # label (HPManager's strings) | code (integers)
//! batch_max_points = 5000
//! batch_max_bytes = 1048576
//! batch_timeout = "1s"
//! request_timeout = "10s"
//! gzip = true
//! retry_initial = "1s"
//! retry_max = "30s"
//! dead_letter_max_bytes = 16777216   # 16 MiB: dead-letter.lp and .lp.1 together
//!
//! [sinks.influx.buffer]              # in <data_dir>/influxdb/<id>/
//! enabled = true
//! max_bytes = 268435456              # 256 MiB
//! sync_interval = "1s"
//! ```
//!
//! Schema (HPManager's, types included): a poll is a point of `measurement` with
//! the event's tags (`heat_pump_id`, `name`, `location`, `model` and the user's)
//! and its fields as they are, at the poll's scheduled time. Enum fields are
//! written as their label strings (`operating_mode="Comfort mode"`, an unknown
//! code as `"Unknown(7)"`), as HPManager's collector wrote them, so hpflow can write
//! into a database HPManager started (InfluxDB fixes a field's type per shard and
//! refuses the other type); `enum_values = "code"` writes the integer codes instead,
//! for new databases only. Bitmap bits are booleans, bitmap words integers,
//! `scale: 1` registers integers and scaled values floats, either way. A state
//! change is a point of `state_measurement` with the extra tag `field` and the
//! fields `from`/`to` (integers: enum codes, bools as 0/1 — one measurement holds
//! every state field and InfluxDB fixes a field's type per measurement, so text or
//! float states use `from_text`/`to_text`, `from_float`/`to_float`) and
//! `from_since` (seconds the previous state held, when known).
//!
//! # Delivery
//! The receiving task encodes each event to one line and appends it to the buffer
//! (`buffer.rs`), and nothing else: it never waits on the network. A separate
//! delivery task (`writer.rs`) reads batches in order (`batch_max_points`,
//! `batch_max_bytes`, or what arrived within `batch_timeout`), writes them, and
//! acknowledges them in the buffer once the server answered 2xx or the points it
//! refused are set aside.
//! - Network errors, timeouts, 5xx, 408, 429, and 401/403/404 (a wrong token, a
//!   missing database or bucket: setup problems someone can fix, not bad points)
//!   are retried with capped exponential
//!   backoff and jitter (`retry_initial` … `retry_max`; a `Retry-After` in seconds
//!   is honoured, up to 5 minutes), for as long as it takes: the buffer holds the
//!   points meanwhile. The first failure of an outage is logged at WARN, the end at
//!   INFO; every failed request is counted. Each retry first looks at the buffer's
//!   oldest record: points the full buffer dropped meanwhile are not sent again.
//! - 413 splits the batch in half until it fits.
//! - Any other 4xx (a field type conflict, a parse error, a point beyond the
//!   retention period): the server refused some points, and only those are set
//!   aside, in `<data_dir>/influxdb/<id>/dead-letter.lp`; the rest count as
//!   written. Lines the answer names (`unable to parse '<line>'`, `line <n>`) go at
//!   once; InfluxDB 1.x wrote the others when it says `partial write … dropped=0`,
//!   else they are sent again. Where the answer only counts (`partial write: field
//!   type conflict … dropped=N`: N may be low, and it hides parse errors of the same
//!   request) the part is halved and sent again until each refused point stands
//!   alone, unless N covers the whole part. Sending an accepted point again is
//!   harmless: the same series and timestamp overwrite it. VictoriaMetrics answers
//!   204 and skips unparsable lines itself: nothing to set aside there.
//! - The dead-letter file holds each group of refused points after a
//!   `# <time> HTTP <status> (<n> points): <message>` comment, ready for
//!   `influx write` once fixed. It is fsynced (and its folder, when the file was
//!   created or rotated) before the points leave the buffer. If it cannot be
//!   written, the batch stays in the buffer and the write is retried with backoff
//!   (`dead_letter_failures`, `errors`, an ERROR per spell). `dead_letter_max_bytes`
//!   bounds it together with the previous file: a write that would take
//!   `dead-letter.lp` past half of it first renames it to `dead-letter.lp.1`, and
//!   the older `.1` is gone, counted (`dead_letter_dropped`, `…_bytes`,
//!   `events_dropped`). Each reason (the status and the message with numbers and
//!   line text taken out, so one kind of conflict is one reason) is logged at WARN
//!   once an hour with the points refused since; every point is counted
//!   (`dead_lettered`).
//! - At start a health check (v1: `/ping` and `SHOW DATABASES`; v2: `/health` or
//!   `/ping` and, on InfluxDB 2, the bucket) logs what is wrong at WARN; the sink
//!   runs and buffers anyway.
//!
//! # Guarantees
//! With the disk buffer (the default) every event the sink receives is written to
//! a buffer file before it is sent, and leaves the buffer only once the server
//! accepted it.
//! - Orderly shutdown and restart: exactly once. On shutdown the sink fsyncs, keeps
//!   delivering while writes succeed, stops at the first failure, and the rest is
//!   sent after the next start, before anything new. (If the pipeline's shutdown
//!   timeout cuts a write short, that one batch may be sent again.)
//! - hpflow crash (SIGKILL, panic, OOM): nothing is lost, since appends reach the
//!   kernel at once; the batch in flight at the crash may be sent again
//!   (at-least-once). InfluxDB keeps one point per series and timestamp, so a
//!   repeated point overwrites itself and does not show twice.
//! - Power loss: appended data is fsynced every `buffer.sync_interval` (and on
//!   shutdown), so the worst case is losing the events received in the last
//!   `sync_interval` (1 s by default) before the power went. The ack position is
//!   fsynced at start, at shutdown and before a delivered segment is deleted, not
//!   on every write, so points delivered shortly before may be sent again; a
//!   position that was fsynced is never lost (it has two slots, and unsynced
//!   writes go to the other one).
//!   A torn or corrupt tail is cut at the first record failing its length or CRC
//!   check: the intact part is delivered, the rest moved to `corrupt/` and reported
//!   at WARN with byte counts. An unreadable ack file means replaying every
//!   segment from the oldest (at-least-once). The sink never refuses to start
//!   because of its own files; if the folder cannot be used at all it buffers in
//!   memory and logs an ERROR.
//! - Full buffer (`buffer.max_bytes` of waiting points): the oldest points are
//!   dropped, counted (`events_dropped`, `dropped`) and logged at WARN, also
//!   from a batch in hand that is being retried: it is not sent again.
//! - `buffer.enabled = false`: the same bound in memory; what is waiting at
//!   shutdown or a crash is lost (counted as dropped at shutdown).
//!
//! # Stats
//! The sink counts into its [`DeliveryStats`], registered in the pipeline's
//! telemetry under its component id when it is built (replaced when a sink with
//! the same id is built again); the Prometheus sink reads them at scrape time
//! (plain relaxed atomics, cheap enough for every scrape).
//! Failures are also counted in the component's `errors` in the telemetry,
//! delivered points in `events_out`, dropped ones in `events_dropped`.

mod buffer;
#[cfg(test)]
mod buffer_model;
mod client;
mod config;
mod line_protocol;
mod segment;
#[cfg(test)]
mod simfs;
mod vfs;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use config::buffer_dir;
pub use config::{Api, BufferConfig, EnumValues, InfluxdbConfig, Precision};
pub use line_protocol::Encoder;

use buffer::{Buffer, OpenReport, Record};
use client::Client;
use writer::Delivery;

use crate::component::{BoxError, BuildContext, Input, Sink, SinkContext};
use crate::event::Event;
use crate::telemetry::{cpu, DeliveryStats};

impl InfluxdbConfig {
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Sink>, BoxError> {
        let client = Client::new(self)?;
        let stats = cx.registry.register_delivery(cx.id);
        Ok(Box::new(Influxdb {
            config: self.clone(),
            dir: buffer_dir(cx.data_dir, cx.id),
            encoder: Encoder::new(&self.measurement, &self.state_measurement, self.precision)
                .with_enum_values(self.enum_values),
            client,
            stats,
        }))
    }
}

/// What the receiving and the delivery task share.
struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the delivery task when records were appended.
    notify: Notify,
    stats: Arc<DeliveryStats>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A panic while holding the lock leaves the buffer consistent on disk;
        // go on with it rather than poison the sink.
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn gauges(&self, b: &Buffer) {
        let (records, bytes) = b.pending();
        self.stats.points_buffered.store(records, Ordering::Relaxed);
        self.stats.bytes_buffered.store(bytes, Ordering::Relaxed);
    }

    fn len(&self) -> (u64, u64) {
        self.lock().pending()
    }

    fn peek(&self, max_points: usize, max_bytes: usize) -> std::io::Result<Vec<Record>> {
        let mut b = self.lock();
        let r = b.peek(max_points, max_bytes);
        let corrupt = b.take_corruptions();
        self.gauges(&b);
        drop(b);
        for c in corrupt {
            self.stats.corrupt_bytes.fetch_add(c.moved_bytes, Ordering::Relaxed);
            warn!(segment = %c.segment.display(), kept_bytes = c.kept_bytes, moved_bytes = c.moved_bytes,
                moved_to = ?c.moved_to, reason = %c.reason, "Corrupt InfluxDB buffer segment cut");
        }
        r
    }

    fn ack(&self, records: &[Record]) -> std::io::Result<()> {
        let mut b = self.lock();
        let r = b.ack(records);
        self.gauges(&b);
        r
    }
}

/// Aborts the delivery task when the sink's own task goes away, however it goes.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Rate-limits a repeated WARN while still counting every occurrence.
struct Throttle {
    last: Option<Instant>,
    pending: u64,
}

impl Throttle {
    const EVERY: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Throttle { last: None, pending: 0 }
    }

    /// Adds `n`; returns the total to log now, if it is time.
    fn add(&mut self, n: u64) -> Option<u64> {
        self.pending += n;
        if self.last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.pending))
    }
}

/// The running sink.
pub struct Influxdb {
    config: InfluxdbConfig,
    dir: PathBuf,
    encoder: Encoder,
    client: Client,
    stats: Arc<DeliveryStats>,
}

impl Influxdb {
    fn open_buffer(&self, id: &str, cx: &SinkContext) -> (Buffer, bool) {
        let max = self.config.buffer.max_bytes;
        if !self.config.buffer.enabled {
            return (Buffer::memory(max), true);
        }
        match Buffer::open(&self.dir, max, buffer::segment_bytes_for(max)) {
            Ok((b, report)) => {
                self.report_open(id, cx, &report);
                (b, false)
            }
            Err(e) => {
                cx.metrics.error();
                error!(component = %id, dir = %self.dir.display(), error = %e,
                    "Cannot use the InfluxDB disk buffer; buffering in memory, so a restart loses waiting points");
                (Buffer::memory(max), true)
            }
        }
    }

    fn report_open(&self, id: &str, cx: &SinkContext, r: &OpenReport) {
        if let Some(problem) = &r.ack_problem {
            cx.metrics.error();
            warn!(component = %id, dir = %self.dir.display(), %problem,
                "InfluxDB buffer ack file unreadable; replaying from the oldest segment (points may be sent twice)");
        }
        for c in &r.corrupt {
            cx.metrics.error();
            self.stats.corrupt_bytes.fetch_add(c.moved_bytes, Ordering::Relaxed);
            warn!(component = %id, segment = %c.segment.display(), kept_bytes = c.kept_bytes,
                moved_bytes = c.moved_bytes, moved_to = ?c.moved_to, reason = %c.reason,
                "Corrupt InfluxDB buffer segment: delivering the intact part, the rest is set aside");
        }
        if r.dropped_records > 0 {
            cx.metrics.dropped(r.dropped_records);
            self.stats.dropped.fetch_add(r.dropped_records, Ordering::Relaxed);
            warn!(component = %id, points = r.dropped_records, max_bytes = self.config.buffer.max_bytes,
                "InfluxDB buffer holds more than buffer.max_bytes; dropped the oldest points");
        }
        if r.records > 0 {
            info!(component = %id, points = r.records, bytes = r.bytes,
                "InfluxDB buffer holds points from an earlier run; sending them first");
        }
    }
}

/// The receiving side's scratch space and log throttles.
struct Receiver {
    encoded: Vec<u8>,
    ends: Vec<usize>,
    drops: Throttle,
    failures: Throttle,
}

impl Receiver {
    /// Encodes and appends a batch of events; never waits on anything but the disk.
    fn accept(&mut self, events: &[Event], encoder: &Encoder, shared: &Shared, cx: &SinkContext) {
        self.encoded.clear();
        self.ends.clear();
        let mut skipped = 0;
        for e in events {
            if encoder.encode(e, &mut self.encoded) {
                self.ends.push(self.encoded.len());
            } else {
                skipped += 1;
            }
        }
        if skipped > 0 {
            shared.stats.skipped.fetch_add(skipped, Ordering::Relaxed);
        }
        if self.ends.is_empty() {
            return;
        }
        let mut start = 0;
        let lines: Vec<&[u8]> = self
            .ends
            .iter()
            .map(|&end| {
                let l = &self.encoded[start..end];
                start = end;
                l
            })
            .collect();
        let appended = {
            let mut b = shared.lock();
            let a = b.append(&lines);
            shared.gauges(&b);
            a
        };
        shared.notify.notify_one();
        let dropped = appended.dropped_records + appended.lost_records;
        if dropped > 0 {
            cx.metrics.dropped(dropped);
            shared.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        if appended.dropped_records > 0 {
            if let Some(n) = self.drops.add(appended.dropped_records) {
                warn!(component = %cx.id, points = n,
                    "InfluxDB buffer full (buffer.max_bytes); dropped the oldest points");
            }
        }
        if let Some(e) = appended.error {
            cx.metrics.error();
            if let Some(n) = self.failures.add(appended.lost_records) {
                error!(component = %cx.id, error = %e, points = n, "Cannot append to the InfluxDB buffer; points lost");
            }
        }
    }
}

/// Fsyncs what was appended since the last call, off the async threads. What
/// fails to sync is handed back to the buffer and tried again next time.
async fn sync(shared: &Shared, cx: &SinkContext) {
    let handles = shared.lock().sync_handles();
    if handles.is_empty() {
        return;
    }
    let result = tokio::task::spawn_blocking(cpu::metered_blocking(move || buffer::sync_all(handles))).await;
    let error = match result {
        Ok(Ok(())) => return,
        Ok(Err((e, failed))) => {
            shared.lock().sync_failed(failed);
            e.to_string()
        }
        Err(e) => e.to_string(),
    };
    cx.metrics.error();
    error!(component = %cx.id, %error, "Cannot fsync the InfluxDB buffer; a power loss may lose recent points");
}

#[async_trait]
impl Sink for Influxdb {
    async fn run(self: Box<Self>, mut input: Input, cx: SinkContext) -> Result<(), BoxError> {
        let (buffer, memory_only) = self.open_buffer(&cx.id, &cx);
        let shared = Arc::new(Shared {
            buffer: Mutex::new(buffer),
            notify: Notify::new(),
            stats: self.stats.clone(),
        });
        {
            let b = shared.lock();
            shared.gauges(&b);
        }
        let stop = CancellationToken::new();
        let c = &self.config;
        let delivery = Delivery {
            id: cx.id.clone(),
            shared: shared.clone(),
            client: self.client.clone(),
            batch_max_points: c.batch_max_points.max(1),
            batch_max_bytes: c.batch_max_bytes.max(1),
            batch_timeout: c.batch_timeout,
            retry_initial: c.retry_initial,
            retry_max: c.retry_max.max(c.retry_initial),
            dead_letter: writer::DeadLetter {
                path: self.dir.join("dead-letter.lp"),
                max_bytes: c.dead_letter_max_bytes,
            },
            metrics: cx.metrics.clone(),
            memory_only,
        };
        let mut task = AbortOnDrop(tokio::spawn(cpu::metered(delivery.run(stop.clone()))));

        let mut ticker = tokio::time::interval(c.buffer.sync_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut receiver = Receiver {
            encoded: Vec::with_capacity(64 << 10),
            ends: Vec::new(),
            drops: Throttle::new(),
            failures: Throttle::new(),
        };
        let mut events = Vec::with_capacity(1024);
        loop {
            tokio::select! {
                event = input.recv() => {
                    let Some(event) = event else { break };
                    events.push(event);
                    input.drain_ready(&mut events, 1023);
                    receiver.accept(&events, &self.encoder, &shared, &cx);
                    events.clear();
                }
                _ = ticker.tick() => sync(&shared, &cx).await,
            }
        }
        // Upstream closed: make what was received durable, then let the delivery
        // task send what it can and finish.
        sync(&shared, &cx).await;
        stop.cancel();
        shared.notify.notify_one();
        if let Err(e) = (&mut task.0).await {
            error!(component = %cx.id, error = %e, "InfluxDB delivery task failed");
        }
        let closed = shared.lock().close();
        if let Err(e) = closed {
            cx.metrics.error();
            error!(component = %cx.id, error = %e, "Cannot fsync the InfluxDB buffer at shutdown");
        }
        Ok(())
    }
}
