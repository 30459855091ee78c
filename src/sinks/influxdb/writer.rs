//! The delivery task: reads batches from the buffer in order, writes them, and
//! acknowledges them once the server has accepted them or they are set aside.
//!
//! It runs apart from the receiving task, so a slow or dead server never holds up
//! the pipeline: the receiving side only appends to the buffer.
//!
//! A batch the server rejects (4xx) is taken apart: the lines its answer names are
//! set aside, what it says it wrote is acknowledged, and where it does not say
//! which points it refused the batch is halved and sent again until each refused
//! point stands alone (sending an accepted point again is harmless: the same
//! series and timestamp overwrite it). Refused points go to the dead-letter file,
//! fsynced, before the buffer forgets them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::buffer::Record;
use super::client::{self, Client, Outcome};
use super::Shared;
use crate::telemetry::{cpu, ComponentMetrics};

/// Longest wait a server's `Retry-After` can ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// One reason for refused points is logged at WARN again only after this long.
const REWARN_AFTER: Duration = Duration::from_secs(3600);

pub(super) struct Delivery {
    pub id: Arc<str>,
    pub shared: Arc<Shared>,
    pub client: Client,
    pub batch_max_points: usize,
    pub batch_max_bytes: usize,
    pub batch_timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub dead_letter: DeadLetter,
    pub metrics: Arc<ComponentMetrics>,
    /// The buffer is in memory: what is left at shutdown is lost.
    pub memory_only: bool,
}

enum Delivered {
    Done,
    /// Shutdown came while the server or the dead-letter file was failing; the
    /// rest waits in the buffer.
    Stopped,
}

/// State of the current outage, for logging its start and its end once.
#[derive(Default)]
struct Outage {
    since: Option<Instant>,
    failures: u64,
}

/// What became of one record of the batch in hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pending,
    Written,
    /// Refused by the server, for `Job::reasons[i]`.
    Refused(usize),
    /// Dropped from the full buffer while it waited here: neither sent again nor
    /// set aside (the buffer counted the drop).
    Dropped,
}

struct Reason {
    status: u16,
    message: String,
}

/// One batch on its way: each record's verdict, and how many from the front are
/// acknowledged in the buffer. Acknowledging is by position, so only a prefix of
/// settled records is ever acknowledged.
struct Job {
    records: Vec<Record>,
    verdicts: Vec<Verdict>,
    reasons: Vec<Reason>,
    acked: usize,
}

impl Job {
    fn new(records: Vec<Record>) -> Job {
        Job {
            verdicts: vec![Verdict::Pending; records.len()],
            records,
            reasons: Vec::new(),
            acked: 0,
        }
    }

    fn refuse(&mut self, idx: &[usize], status: u16, message: &str) {
        let r = match self
            .reasons
            .iter()
            .position(|r| r.status == status && r.message == message)
        {
            Some(r) => r,
            None => {
                self.reasons.push(Reason {
                    status,
                    message: message.to_string(),
                });
                self.reasons.len() - 1
            }
        };
        for &i in idx {
            self.verdicts[i] = Verdict::Refused(r);
        }
    }

    /// The end of the settled prefix: records written, dropped, or (with
    /// `refused`) refused.
    fn settled_to(&self, refused: bool) -> usize {
        let mut end = self.acked;
        while let Some(v) = self.verdicts.get(end) {
            match v {
                Verdict::Pending => break,
                Verdict::Refused(_) if !refused => break,
                _ => end += 1,
            }
        }
        end
    }
}

/// Logs each reason for refused points at WARN once per [`REWARN_AFTER`] and
/// counts the rest, so a database that refuses every point does not flood the log.
pub(super) struct ReasonLog {
    every: Duration,
    /// Reason → when it was last logged, points refused for it since.
    seen: HashMap<String, (Instant, u64)>,
}

impl ReasonLog {
    pub fn new(every: Duration) -> ReasonLog {
        ReasonLog {
            every,
            seen: HashMap::new(),
        }
    }

    /// Counts `points` refused for `reason`. When it is time to log it, returns
    /// how many points were refused for it since it was last logged.
    pub fn note(&mut self, reason: &str, points: u64) -> Option<u64> {
        let now = Instant::now();
        // Reasons are few (one per field in conflict, one per kind of parse error);
        // should a server vary its messages without end, start over rather than grow.
        if self.seen.len() >= 1000 {
            let every = self.every;
            self.seen.retain(|_, (at, _)| now.duration_since(*at) < every);
            if self.seen.len() >= 1000 {
                self.seen.clear();
            }
        }
        match self.seen.get_mut(reason) {
            Some((at, quiet)) if now.duration_since(*at) < self.every => {
                *quiet += points;
                None
            }
            Some((at, quiet)) => {
                *at = now;
                Some(std::mem::take(quiet))
            }
            None => {
                self.seen.insert(reason.to_string(), (now, 0));
                Some(0)
            }
        }
    }
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
        let mut reasons = ReasonLog::new(REWARN_AFTER);
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
                // A `batch_timeout` too long to add to the clock waits for a full batch.
                let deadline = since.checked_add(self.batch_timeout);
                if deadline.is_none_or(|d| Instant::now() < d) {
                    tokio::select! {
                        _ = sleep_until(deadline) => {}
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
            match self.deliver(batch, &stop, &mut outage, &mut reasons).await {
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
        reasons: &mut ReasonLog,
    ) -> Delivered {
        let stats = &self.shared.stats;
        let mut job = Job::new(batch);
        // Parts still to send, as indexes into the batch, front first.
        let mut parts: VecDeque<Vec<usize>> = VecDeque::from([(0..job.records.len()).collect()]);
        let mut body = Vec::new();
        while let Some(mut part) = parts.pop_front() {
            part.retain(|&i| job.verdicts[i] == Verdict::Pending);
            let mut attempt = 0u32;
            while !part.is_empty() {
                body.clear();
                for &i in &part {
                    body.extend_from_slice(&job.records[i].data);
                }
                let outcome = self.client.write(&body).await;
                if !matches!(outcome, Outcome::Written) {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    self.metrics.error();
                }
                match outcome {
                    Outcome::Written => {
                        stats.writes_ok.fetch_add(1, Ordering::Relaxed);
                        self.written(&mut job, &part);
                        if let Some(since) = outage.since.take() {
                            info!(component = %self.id, failed_writes = outage.failures,
                                outage = %humantime::format_duration(Duration::from_secs(since.elapsed().as_secs())),
                                "InfluxDB writes succeed again");
                            outage.failures = 0;
                        }
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
                            return self.stop_with(&mut job, reasons).await;
                        }
                        let wait = match after {
                            Some(a) => a.min(MAX_RETRY_AFTER),
                            None => backoff(self.retry_initial, self.retry_max, attempt),
                        };
                        attempt = attempt.saturating_add(1);
                        stats.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = stop.cancelled() => return self.stop_with(&mut job, reasons).await,
                        }
                        // A long outage fills the buffer, which then drops its oldest
                        // records: those are not sent again.
                        self.forget_dropped(&mut job);
                        part.retain(|&i| job.verdicts[i] == Verdict::Pending);
                    }
                    Outcome::TooLarge if part.len() > 1 => {
                        let second = part.split_off(part.len() / 2);
                        debug!(component = %self.id, points = part.len() + second.len(),
                            "InfluxDB says the request is too large (413); splitting it");
                        parts.push_front(second);
                        parts.push_front(std::mem::take(&mut part));
                    }
                    Outcome::TooLarge => {
                        job.refuse(&part, 413, "request too large even for one point");
                        break;
                    }
                    Outcome::Rejected { status, message } => {
                        self.judge(&mut job, std::mem::take(&mut part), status, &message, &mut parts);
                    }
                }
            }
            // Acknowledge what is settled at the front; refused points wait for
            // the dead-letter write at the end of the batch.
            if let Err(e) = self.settle(&mut job, false, reasons).await {
                debug!(component = %self.id, error = %e, "Acknowledging delivered points failed");
            }
        }
        self.finish(&mut job, stop, reasons).await
    }

    /// Marks a part as written by the server.
    fn written(&self, job: &mut Job, part: &[usize]) {
        let n = part.len() as u64;
        for &i in part {
            job.verdicts[i] = Verdict::Written;
        }
        self.shared.stats.points_written.fetch_add(n, Ordering::Relaxed);
        self.metrics.sent(n);
    }

    /// Reads a rejection of `part`: sets aside the points it names, takes what it
    /// says was written as written, and queues the rest to be sent again, halved
    /// when the answer does not say which points were refused.
    fn judge(&self, job: &mut Job, part: Vec<usize>, status: u16, message: &str, parts: &mut VecDeque<Vec<usize>>) {
        if part.len() == 1 {
            job.refuse(&part, status, message);
            return;
        }
        let (refusal, named) = {
            let mut lines: HashMap<&str, Vec<usize>> = HashMap::new();
            for &i in &part {
                if let Ok(l) = std::str::from_utf8(&job.records[i].data) {
                    lines.entry(l.strip_suffix('\n').unwrap_or(l)).or_default().push(i);
                }
            }
            let r = client::refusal(message, |l| lines.contains_key(l));
            let mut named: Vec<(usize, String)> = Vec::new();
            for (line, why) in &r.unparsable {
                for &i in lines.get(line.as_str()).into_iter().flatten() {
                    named.push((i, format!("unable to parse: {why}")));
                }
            }
            if named.is_empty() {
                for (n, why) in &r.line_numbers {
                    if let Some(&i) = n.checked_sub(1).and_then(|k| part.get(k)) {
                        named.push((i, format!("line refused: {why}")));
                    }
                }
            }
            named.sort_by_key(|(i, _)| *i);
            named.dedup_by_key(|(i, _)| *i);
            (r, named)
        };
        debug!(component = %self.id, status, points = part.len(), named = named.len(),
            dropped = ?refusal.dropped, partial = refusal.partial, "InfluxDB rejected a request");
        let named_idx: HashSet<usize> = named.iter().map(|(i, _)| *i).collect();
        for (i, why) in &named {
            job.refuse(&[*i], status, why);
        }
        let rest: Vec<usize> = part.into_iter().filter(|i| !named_idx.contains(i)).collect();
        if rest.is_empty() {
            return;
        }
        match refusal.dropped {
            // Every point the answer does not name was dropped too.
            Some(d) if d > 0 && d >= rest.len() as u64 => job.refuse(&rest, status, message),
            // InfluxDB 1.x: only parse errors, and it wrote every other line.
            Some(0) if refusal.partial && !named.is_empty() => self.written(job, &rest),
            // The named lines are out; whether the server wrote the rest or not,
            // sending it again tells (and a point written twice is one point).
            _ if !named.is_empty() => parts.push_front(rest),
            // Nothing named: halve until the refused points stand alone.
            _ => {
                let mut first = rest;
                let second = first.split_off(first.len() / 2);
                parts.push_front(second);
                parts.push_front(first);
            }
        }
    }

    /// Marks the records of the batch that the full buffer dropped meanwhile.
    fn forget_dropped(&self, job: &mut Job) {
        let head = match self.shared.peek(1, usize::MAX) {
            Ok(h) => h.into_iter().next(),
            Err(_) => return,
        };
        for i in job.acked..job.records.len() {
            // Records are in buffer order: what ends before the oldest record still
            // waiting has been dropped.
            if head.as_ref().is_some_and(|h| job.records[i].end >= h.end) {
                break;
            }
            job.verdicts[i] = Verdict::Dropped;
        }
    }

    /// Acknowledges the settled front of the batch; with `refused`, its refused
    /// points first go to the dead-letter file (fsynced). Fails only when the
    /// dead-letter file cannot be written: then nothing more is acknowledged.
    async fn settle(&self, job: &mut Job, refused: bool, reasons: &mut ReasonLog) -> io::Result<()> {
        let end = job.settled_to(refused);
        if end == job.acked {
            return Ok(());
        }
        let mut groups: Vec<Group> = Vec::new();
        let mut counts: Vec<u64> = vec![0; job.reasons.len()];
        let now = crate::event::rfc3339(SystemTime::now());
        for i in job.acked..end {
            let Verdict::Refused(r) = job.verdicts[i] else { continue };
            counts[r] += 1;
            if groups.last().is_none_or(|g| g.reason != r) {
                let header = format!("# {now} HTTP {}", job.reasons[r].status);
                groups.push(Group::new(r, header, first_line(&job.reasons[r].message)));
            }
            if let Some(g) = groups.last_mut() {
                g.push(job.records[i].data.clone());
            }
        }
        if !groups.is_empty() {
            let dl = self.dead_letter.clone();
            let (dropped, result) = tokio::task::spawn_blocking(cpu::metered_blocking(move || {
                let mut dropped = Dropped::default();
                let r = dl.append(groups, &mut dropped);
                (dropped, r)
            }))
            .await
            .map_err(io::Error::other)?;
            if dropped.points > 0 || dropped.bytes > 0 {
                let stats = &self.shared.stats;
                stats.dead_letter_dropped.fetch_add(dropped.points, Ordering::Relaxed);
                stats
                    .dead_letter_dropped_bytes
                    .fetch_add(dropped.bytes, Ordering::Relaxed);
                self.metrics.dropped(dropped.points);
                info!(component = %self.id, points = dropped.points, bytes = dropped.bytes,
                    max_bytes = self.dead_letter.max_bytes, dead_letter = %self.dead_letter.path.display(),
                    "The dead-letter file reached dead_letter_max_bytes; its oldest part is gone");
            }
            result?;
            for (r, &n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
                self.shared.stats.dead_lettered.fetch_add(n, Ordering::Relaxed);
                let reason = &job.reasons[r];
                let message = client::shorten(&reason.message);
                match reasons.note(&client::reason_key(reason.status, &reason.message), n) {
                    Some(earlier) => warn!(component = %self.id, status = reason.status, %message, points = n,
                        points_since_last_warning = earlier, dead_letter = %self.dead_letter.path.display(),
                        "InfluxDB refused points; they are set aside in the dead-letter file (this reason is logged once an hour)"),
                    None => debug!(component = %self.id, status = reason.status, %message, points = n,
                        "InfluxDB refused points"),
                }
            }
        }
        let result = self.shared.ack(&job.records[job.acked..end]);
        job.acked = end;
        if let Err(e) = result {
            self.metrics.error();
            error!(component = %self.id, error = %e,
                "Cannot record delivered points in the buffer's ack file; after a restart they are sent again");
        }
        Ok(())
    }

    /// Settles the whole batch, refused points included. While the dead-letter
    /// file cannot be written the batch stays in the buffer and the write is
    /// retried with backoff; shutdown stops trying.
    async fn finish(&self, job: &mut Job, stop: &CancellationToken, reasons: &mut ReasonLog) -> Delivered {
        let mut attempt = 0u32;
        loop {
            let error = match self.settle(job, true, reasons).await {
                Ok(()) => {
                    if attempt > 0 {
                        info!(component = %self.id, dead_letter = %self.dead_letter.path.display(),
                            "The dead-letter file can be written again");
                    }
                    return Delivered::Done;
                }
                Err(e) => e,
            };
            self.shared.stats.dead_letter_failures.fetch_add(1, Ordering::Relaxed);
            self.metrics.error();
            let waiting = job.records.len() - job.acked;
            if attempt == 0 {
                error!(component = %self.id, %error, path = %self.dead_letter.path.display(), points = waiting,
                    "Cannot write the dead-letter file; the batch stays in the buffer and is tried again");
            } else {
                debug!(component = %self.id, %error, attempt, "Cannot write the dead-letter file, again");
            }
            if stop.is_cancelled() {
                return Delivered::Stopped;
            }
            let wait = backoff(self.retry_initial, self.retry_max, attempt);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return Delivered::Stopped,
            }
            self.forget_dropped(job);
        }
    }

    /// Shutdown during an outage: what is settled is acknowledged (refused points
    /// set aside if the file takes them), the rest waits in the buffer.
    async fn stop_with(&self, job: &mut Job, reasons: &mut ReasonLog) -> Delivered {
        if self.settle(job, true, reasons).await.is_err() {
            self.shared.stats.dead_letter_failures.fetch_add(1, Ordering::Relaxed);
            self.metrics.error();
        }
        Delivered::Stopped
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn first_line(s: &str) -> String {
    client::shorten(s.lines().next().unwrap_or_default())
}

/// Refused points of one reason, in order, for the dead-letter file.
struct Group {
    reason: usize,
    /// `# <time> HTTP <status>`; the point count and message follow.
    header: String,
    message: String,
    lines: VecDeque<Vec<u8>>,
    /// Bytes of `lines`.
    bytes: u64,
}

impl Group {
    fn new(reason: usize, header: String, message: String) -> Group {
        Group {
            reason,
            header,
            message,
            lines: VecDeque::new(),
            bytes: 0,
        }
    }

    fn push(&mut self, line: Vec<u8>) {
        self.bytes += line.len() as u64;
        self.lines.push_back(line);
    }

    fn pop_oldest(&mut self) -> Option<Vec<u8>> {
        let l = self.lines.pop_front()?;
        self.bytes -= l.len() as u64;
        Some(l)
    }

    fn comment(&self) -> String {
        let n = self.lines.len();
        let points = if n == 1 { "point" } else { "points" };
        format!("{} ({n} {points}): {}\n", self.header, self.message)
    }

    fn len(&self) -> u64 {
        self.comment().len() as u64 + self.bytes
    }

    fn render(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.comment().as_bytes());
        for l in &self.lines {
            out.extend_from_slice(l);
        }
    }
}

/// Points and bytes of the dead-letter file lost to its bound.
#[derive(Debug, Default)]
struct Dropped {
    points: u64,
    bytes: u64,
}

/// `dead-letter.lp`: the points the server refused, each group after a
/// `# <time> HTTP <status> (<n> points): <message>` comment, ready for
/// `influx write` once fixed. Together with the previous file, `dead-letter.lp.1`,
/// it holds at most `max_bytes`: the current file is rotated when a write would
/// take it past half of that, and the previous one is gone then (counted).
#[derive(Debug, Clone)]
pub(super) struct DeadLetter {
    pub path: PathBuf,
    pub max_bytes: u64,
}

impl DeadLetter {
    fn previous(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".1");
        PathBuf::from(p)
    }

    /// Appends the groups and fsyncs the file (and its folder when the file was
    /// created or rotated). Points lost to the bound are added to `dropped`, also
    /// when the write then fails.
    fn append(&self, mut groups: Vec<Group>, dropped: &mut Dropped) -> io::Result<()> {
        let half = (self.max_bytes / 2).max(1);
        // What does not fit even in an empty file loses its oldest points.
        let mut trimmed = Dropped::default();
        let mut total: u64 = groups.iter().map(Group::len).sum();
        let mut first = 0;
        while total > half && first < groups.len() {
            let g = &mut groups[first];
            total -= g.len();
            if let Some(l) = g.pop_oldest() {
                trimmed.points += 1;
                trimmed.bytes += l.len() as u64;
            }
            if g.lines.is_empty() {
                first += 1;
            } else {
                total += g.len();
            }
        }
        groups.drain(..first);
        let mut text = Vec::with_capacity(total as usize);
        for g in &groups {
            g.render(&mut text);
        }
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(d) = dir {
            fs::create_dir_all(d)?;
        }
        let current = match fs::metadata(&self.path) {
            Ok(m) if !m.is_file() => return Err(io::Error::other(format!("{} is not a file", self.path.display()))),
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut dir_changed = current.is_none();
        if let Some(len) = current.filter(|&len| len > 0 && len.saturating_add(text.len() as u64) > half) {
            let previous = self.previous();
            match fs::read(&previous) {
                Ok(old) => {
                    dropped.points += count_points(&old);
                    dropped.bytes += old.len() as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            debug!(path = %self.path.display(), bytes = len, "Rotating the dead-letter file");
            fs::rename(&self.path, &previous)?;
            dir_changed = true;
        }
        if !text.is_empty() {
            let mut f = OpenOptions::new().create(true).append(true).open(&self.path)?;
            f.write_all(&text)?;
            f.sync_all()?;
        }
        if dir_changed {
            if let Some(d) = dir {
                File::open(d)?.sync_all()?;
            }
        }
        dropped.points += trimmed.points;
        dropped.bytes += trimmed.bytes;
        Ok(())
    }
}

/// Points in a dead-letter file, from its comments' counts (a point's own text
/// may span lines, so lines are not counted).
fn count_points(text: &[u8]) -> u64 {
    String::from_utf8_lossy(text)
        .lines()
        .filter(|l| l.starts_with("# "))
        .filter_map(|l| {
            let (_, after) = l.split_once(" (")?;
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            after[digits..]
                .starts_with(" point")
                .then(|| after[..digits].parse::<u64>().ok())
                .flatten()
        })
        .sum()
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

    #[tokio::test(start_paused = true)]
    async fn a_reason_is_logged_once_an_hour_and_every_point_counted() {
        let mut log = ReasonLog::new(REWARN_AFTER);
        assert_eq!(log.note("conflict x", 5), Some(0));
        assert_eq!(log.note("conflict x", 2), None);
        assert_eq!(log.note("unparsable", 1), Some(0), "another reason is logged at once");
        tokio::time::advance(Duration::from_secs(59 * 60)).await;
        assert_eq!(log.note("conflict x", 3), None);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(log.note("conflict x", 4), Some(5), "the points since the last warning");
        assert_eq!(log.note("conflict x", 1), None);
        // Many distinct reasons do not grow the memory without bound.
        tokio::time::advance(REWARN_AFTER).await;
        for i in 0..5000 {
            log.note(&format!("r{i}"), 1);
        }
        assert!(log.seen.len() <= 1001, "{}", log.seen.len());
    }

    fn group(reason: usize, lines: &[String]) -> Group {
        let mut g = Group::new(reason, "# t HTTP 400".into(), "why".into());
        for l in lines {
            g.push(format!("{l}\n").into_bytes());
        }
        g
    }

    fn lines(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|i| format!("m x={i:04}.5 {i:04}")).collect()
    }

    #[test]
    fn the_dead_letter_file_rotates_and_counts_what_goes() {
        let tmp = tempfile::tempdir().unwrap();
        let dl = DeadLetter {
            path: tmp.path().join("sub").join("dead-letter.lp"),
            max_bytes: 1000,
        };
        let mut dropped = Dropped::default();
        // About 190 bytes a write; a file holds up to 500.
        for k in 0..6 {
            dl.append(vec![group(0, &lines(k * 10..k * 10 + 10))], &mut dropped)
                .unwrap();
        }
        let cur = std::fs::read(&dl.path).unwrap();
        let old = std::fs::read(dl.previous()).unwrap();
        assert!(cur.len() <= 500 && old.len() <= 500, "{} {}", cur.len(), old.len());
        assert_eq!(count_points(&cur) + count_points(&old) + dropped.points, 60);
        assert_eq!(dropped.points, 20, "{dropped:?}");
        assert!(String::from_utf8_lossy(&cur).starts_with("# t HTTP 400 (10 points): why\nm x=0040.5 0040\n"));
        assert!(dropped.bytes > 0);
    }

    #[test]
    fn what_exceeds_the_whole_bound_loses_its_oldest_points() {
        let tmp = tempfile::tempdir().unwrap();
        let dl = DeadLetter {
            path: tmp.path().join("dead-letter.lp"),
            max_bytes: 400,
        };
        let mut dropped = Dropped::default();
        dl.append(vec![group(0, &lines(0..10)), group(1, &lines(10..30))], &mut dropped)
            .unwrap();
        let text = std::fs::read_to_string(&dl.path).unwrap();
        assert!(text.len() <= 200, "{text}");
        let kept = count_points(text.as_bytes());
        assert_eq!(kept + dropped.points, 30);
        assert!(text.ends_with("m x=0029.5 0029\n"), "the newest stay: {text}");
        assert!(!text.contains("(0 points)"));
    }

    #[test]
    fn a_dead_letter_path_that_is_a_folder_is_an_error_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dl = DeadLetter {
            path: tmp.path().join("dead-letter.lp"),
            max_bytes: 1000,
        };
        std::fs::create_dir(&dl.path).unwrap();
        let mut dropped = Dropped::default();
        let e = dl.append(vec![group(0, &lines(0..40))], &mut dropped).unwrap_err();
        assert!(e.to_string().contains("is not a file"), "{e}");
        assert!(dl.path.is_dir() && !dl.previous().exists());
    }
}
