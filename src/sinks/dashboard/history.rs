//! Recent history of every numeric field of every pump, in memory, bounded.
//!
//! Each field keeps three tiers of fixed capacity:
//!
//! | tier     | resolution       | points | covers (10 s polls) |
//! |----------|------------------|--------|---------------------|
//! | raw      | every poll       | 240    | 40 min              |
//! | minute   | 1-minute means   | 360    | 6 h                 |
//! | 5-minute | 5-minute means   | 288    | 24 h                |
//!
//! A point is 8 bytes (Unix seconds as `u32`, value as `f32`: plenty for a
//! chart; the tiles show the exact latest value from the last poll). So one
//! field holds at most (240 + 360 + 288) × 8 = 7,104 bytes of points plus about
//! 300 bytes of bookkeeping, whatever the poll interval: **10 pumps × 500
//! fields ≈ 37 MB at most** for 24 hours. A query for a window picks the finest
//! tier that reaches back far enough (see [`Series::query`]); the sparkline
//! renderer then averages into pixel columns.
//!
//! The tiers survive a restart through [`Writer`]/[`Reader`], a small
//! length-prefixed little-endian encoding the store wraps with a checksum.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const RAW_POINTS: usize = 240;
pub const MINUTE_POINTS: usize = 360;
pub const FIVE_MINUTE_POINTS: usize = 288;
/// The widest window a query may ask for: what the 5-minute tier covers.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// One point of a chart: Unix seconds and the value (a bucket's mean in the
/// coarser tiers, stamped with the bucket's start).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t: u32,
    pub v: f32,
}

/// Unix seconds as stored in a [`Point`], clamped to what a `u32` holds.
pub fn secs(t: SystemTime) -> u32 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32)
        .unwrap_or(0)
}

/// A bucket still filling up.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Open {
    start: u32,
    sum: f64,
    n: u32,
}

impl Open {
    fn point(&self) -> Point {
        Point {
            t: self.start,
            v: (self.sum / f64::from(self.n.max(1))) as f32,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Tier {
    points: VecDeque<Point>,
    cap: usize,
    /// Bucket width in seconds; 0 for raw samples.
    width: u32,
    /// True once a point was dropped for lack of room: from then on the tier
    /// only knows what came after its oldest point.
    evicted: bool,
    open: Option<Open>,
}

impl Tier {
    fn new(cap: usize, width: u32) -> Self {
        Tier {
            points: VecDeque::new(),
            cap,
            width,
            evicted: false,
            open: None,
        }
    }

    fn push(&mut self, t: u32, v: f64) {
        if self.width == 0 {
            if let Some(last) = self.points.back_mut() {
                if t < last.t {
                    return; // older than what we have: a replay, not news
                }
                if t == last.t {
                    last.v = v as f32;
                    return;
                }
            }
            self.append(Point { t, v: v as f32 });
            return;
        }
        let start = t - t % self.width;
        match &mut self.open {
            Some(open) if open.start == start => {
                open.sum += v;
                open.n += 1;
            }
            Some(open) if start < open.start => {}
            _ => {
                if let Some(done) = self.open.take() {
                    self.append(done.point());
                }
                self.open = Some(Open { start, sum: v, n: 1 });
            }
        }
    }

    fn append(&mut self, p: Point) {
        if self.points.len() == self.cap {
            self.points.pop_front();
            self.evicted = true;
        } else if self.points.len() == self.points.capacity() {
            // Grow in steps but never past the cap, so the bound holds exactly.
            let want = (self.points.len() * 2).clamp(16, self.cap);
            self.points.reserve_exact(want - self.points.len());
        }
        self.points.push_back(p);
    }

    /// True when the tier knows everything from `start` on (or everything there is).
    fn covers(&self, start: u32) -> bool {
        !self.evicted || self.points.front().is_none_or(|p| p.t <= start)
    }

    /// The points from `start` on, read in place (the open bucket last).
    fn since(&self, start: u32) -> impl Iterator<Item = Point> + Clone + '_ {
        // Buckets that began before `start` but end after it still describe the window.
        let from = start.saturating_sub(self.width.saturating_sub(1));
        let first = self.points.partition_point(|p| p.t < from);
        let open = self.open.filter(|open| open.start >= from).map(|open| open.point());
        self.points.range(first..).copied().chain(open)
    }

    fn is_empty(&self) -> bool {
        self.points.is_empty() && self.open.is_none()
    }
}

/// The history of one field of one pump.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    raw: Tier,
    minute: Tier,
    five: Tier,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            raw: Tier::new(RAW_POINTS, 0),
            minute: Tier::new(MINUTE_POINTS, 60),
            five: Tier::new(FIVE_MINUTE_POINTS, 300),
        }
    }
}

/// The points of a window and the resolution they have (0: every poll).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub points: Vec<Point>,
    pub resolution: u32,
}

impl Series {
    pub fn push(&mut self, t: u32, v: f64) {
        if !v.is_finite() {
            return;
        }
        self.raw.push(t, v);
        self.minute.push(t, v);
        self.five.push(t, v);
    }

    /// The points from `start` (Unix seconds) on, from the finest tier that
    /// reaches back that far; the 5-minute tier when none does.
    pub fn query(&self, start: u32) -> Window {
        let (points, resolution) = self.points_since(start);
        Window {
            points: points.collect(),
            resolution,
        }
    }

    /// What [`Series::query`] answers, read in place rather than copied (the
    /// sparklines walk it twice), with the resolution (0: every poll).
    pub fn points_since(&self, start: u32) -> (impl Iterator<Item = Point> + Clone + '_, u32) {
        let tier = [&self.raw, &self.minute]
            .into_iter()
            .find(|t| t.covers(start))
            .unwrap_or(&self.five);
        (tier.since(start), tier.width)
    }

    /// The newest raw point, if any.
    pub fn last(&self) -> Option<Point> {
        self.raw.points.back().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty() && self.minute.is_empty() && self.five.is_empty()
    }

    /// Drops everything older than `cutoff` (Unix seconds); used on reload.
    pub fn forget_before(&mut self, cutoff: u32) {
        for tier in [&mut self.raw, &mut self.minute, &mut self.five] {
            let keep = tier.points.partition_point(|p| p.t < cutoff);
            if keep > 0 {
                tier.points.drain(..keep);
                tier.evicted = true;
            }
        }
    }

    pub fn encode(&self, w: &mut Writer) {
        for tier in [&self.raw, &self.minute, &self.five] {
            w.u8(u8::from(tier.evicted));
            w.u32(tier.points.len() as u32);
            for p in &tier.points {
                w.u32(p.t);
                w.f32(p.v);
            }
            match &tier.open {
                Some(o) => {
                    w.u8(1);
                    w.u32(o.start);
                    w.f64(o.sum);
                    w.u32(o.n);
                }
                None => w.u8(0),
            }
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Series, DecodeError> {
        let mut s = Series::default();
        for tier in [&mut s.raw, &mut s.minute, &mut s.five] {
            tier.evicted = r.u8()? != 0;
            let n = r.u32()? as usize;
            // A file written with larger caps (or a corrupt count) must not
            // break the bound: keep the newest `cap` points.
            let mut last = 0;
            for _ in 0..n {
                let p = Point {
                    t: r.u32()?,
                    v: r.f32()?,
                };
                if p.t < last || !p.v.is_finite() {
                    return Err(DecodeError("history points out of order"));
                }
                last = p.t;
                tier.append(p);
            }
            if r.u8()? == 1 {
                let o = Open {
                    start: r.u32()?,
                    sum: r.f64()?,
                    n: r.u32()?,
                };
                if o.n > 0 && o.sum.is_finite() {
                    tier.open = Some(o);
                }
            }
        }
        Ok(s)
    }
}

/// Little-endian, length-prefixed encoding of the saved history.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f32(&mut self, v: f32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
    }
}

/// A saved history file that does not decode.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub &'static str);

/// Reads what [`Writer`] wrote; every read is bounds-checked.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError("the file ends early"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn f32(&mut self) -> Result<f32, DecodeError> {
        Ok(f32::from_le_bytes(self.array()?))
    }
    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array()?))
    }
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError("a name is not UTF-8"))
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(polls: u32, every: u32) -> Series {
        let mut s = Series::default();
        for i in 0..polls {
            s.push(1_000_000 + i * every, f64::from(i));
        }
        s
    }

    #[test]
    fn a_day_of_ten_second_polls_stays_within_the_caps() {
        let s = filled(8640, 10);
        assert_eq!(s.raw.points.len(), RAW_POINTS);
        assert_eq!(s.minute.points.len(), MINUTE_POINTS);
        assert_eq!(s.five.points.len(), FIVE_MINUTE_POINTS);
        for t in [&s.raw, &s.minute, &s.five] {
            assert!(
                t.points.capacity() <= t.cap,
                "capacity {} over cap {}",
                t.points.capacity(),
                t.cap
            );
        }
    }

    #[test]
    fn short_windows_use_raw_polls_and_long_ones_coarser_buckets() {
        let s = filled(8640, 10);
        let end = 1_000_000 + 8639 * 10;
        let w = s.query(end - 300);
        assert_eq!(w.resolution, 0);
        assert_eq!(w.points.len(), 31);
        let w = s.query(end - 3 * 3600);
        assert_eq!(w.resolution, 60);
        assert!((180..=182).contains(&w.points.len()), "{}", w.points.len());
        let w = s.query(end - 24 * 3600);
        assert_eq!(w.resolution, 300);
        assert!(w.points.len() >= 287, "{}", w.points.len());
    }

    #[test]
    fn a_young_series_answers_every_window_from_raw_polls() {
        let s = filled(20, 10);
        let w = s.query(0);
        assert_eq!(w.resolution, 0);
        assert_eq!(w.points.len(), 20);
    }

    #[test]
    fn buckets_hold_the_mean_and_the_open_bucket_is_included() {
        let mut s = Series::default();
        s.push(600, 1.0);
        s.push(610, 3.0);
        s.push(660, 10.0);
        let out: Vec<Point> = s.minute.since(0).collect();
        assert_eq!(out, vec![Point { t: 600, v: 2.0 }, Point { t: 660, v: 10.0 }]);
    }

    #[test]
    fn late_and_non_finite_samples_are_ignored() {
        let mut s = Series::default();
        s.push(100, 1.0);
        s.push(90, 5.0);
        s.push(110, f64::NAN);
        assert_eq!(s.query(0).points, vec![Point { t: 100, v: 1.0 }]);
    }

    #[test]
    fn a_series_survives_encoding() {
        let s = filled(1000, 10);
        let mut w = Writer::default();
        s.encode(&mut w);
        let mut r = Reader::new(&w.buf);
        assert_eq!(Series::decode(&mut r).unwrap(), s);
        assert!(r.is_empty());
    }

    #[test]
    fn a_truncated_encoding_is_an_error_not_a_panic() {
        let s = filled(50, 10);
        let mut w = Writer::default();
        s.encode(&mut w);
        for cut in [0, 1, 5, w.buf.len() / 2, w.buf.len() - 1] {
            assert!(Series::decode(&mut Reader::new(&w.buf[..cut])).is_err(), "cut at {cut}");
        }
    }
}
