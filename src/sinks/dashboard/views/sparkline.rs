//! Sparklines and charts as SVG path data, drawn on the server.
//!
//! Time runs along the x axis over the whole window, so a pump that was offline
//! leaves a gap instead of a line drawn across it. Points are averaged into
//! pixel columns (the window's last step of downsampling, after the history
//! tiers); two columns with data are joined unless the time between them
//! exceeds `gap`. Only numbers and path commands are produced, so the output
//! needs no escaping; the templates put it in a `d` attribute.

use crate::sinks::dashboard::history::Point;

/// The drawing area, in SVG user units of the `viewBox`.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// Pixel columns the window is averaged into (`width` must be a multiple).
    pub columns: u32,
}

/// The small line on an overview tile.
pub const SPARKLINE: Frame = Frame {
    width: 120,
    height: 32,
    columns: 60,
};

/// The larger chart on a pump's page.
pub const CHART: Frame = Frame {
    width: 600,
    height: 160,
    columns: 150,
};

/// A drawn line with the extremes of what it shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// SVG path data (`M0 12l2 1 2-1…`), one subpath per stretch without gaps.
    pub d: String,
    pub min: f32,
    pub max: f32,
}

/// Column aggregate: the mean and the time span the column's points cover.
#[derive(Clone, Copy)]
struct Column {
    sum: f64,
    n: u32,
    first: u32,
    last: u32,
}

/// Draws `points` (sorted by time) over the window `[t0, t1]` (Unix seconds).
/// `None` when there is nothing to draw.
///
/// Two passes over the points, read where they are (the history's tiers):
/// the extremes first, then each pixel column as soon as its points are
/// summed, so drawing allocates nothing but the path.
pub fn draw<I>(points: I, t0: u32, t1: u32, gap: u32, frame: Frame) -> Option<Line>
where
    I: IntoIterator<Item = Point>,
    I::IntoIter: Clone,
{
    let points = points.into_iter();
    if t1 <= t0 || frame.columns == 0 {
        return None;
    }
    let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
    let mut any = false;
    for p in points.clone() {
        min = min.min(p.v);
        max = max.max(p.v);
        any = true;
    }
    if !any || !min.is_finite() || !max.is_finite() {
        return None;
    }
    let span = u64::from(t1 - t0);
    let n = frame.columns;
    let mut pen = Pen::new(frame, gap, min, max);
    let mut open: Option<(u32, Column)> = None;
    // The column is floor(offset × n / span). Points come in time order, so it
    // is found by stepping over column boundaries rather than by a division
    // per point (out of order, it is computed afresh).
    let (n64, last_col) = (u64::from(n), u64::from(n - 1));
    let mut col64 = 0u64;
    for p in points {
        let offset = u64::from(p.t.saturating_sub(t0)).min(span);
        let scaled = offset * n64;
        if scaled < col64 * span {
            col64 = (scaled / span).min(last_col);
        }
        while col64 < last_col && scaled >= (col64 + 1) * span {
            col64 += 1;
        }
        let col = col64 as u32;
        match &mut open {
            Some((c, agg)) if *c == col => {
                agg.sum += f64::from(p.v);
                agg.n += 1;
                agg.last = p.t;
            }
            _ => {
                if let Some((c, agg)) = open.take() {
                    pen.column(c, agg);
                }
                open = Some((
                    col,
                    Column {
                        sum: f64::from(p.v),
                        n: 1,
                        first: p.t,
                        last: p.t,
                    },
                ));
            }
        }
    }
    if let Some((c, agg)) = open {
        pen.column(c, agg);
    }
    Some(Line {
        d: pen.finish(),
        min,
        max,
    })
}

/// Writes the path column by column.
struct Pen {
    d: String,
    step: u32,
    gap: u32,
    height: u32,
    min: f32,
    max: f32,
    prev: Option<(i64, i64, u32)>,
    run: usize,
    /// The segment not yet written: collinear steps merge into it (flat
    /// stretches are common and cost one segment instead of dozens).
    pending: Option<(i64, i64)>,
}

impl Pen {
    fn new(frame: Frame, gap: u32, min: f32, max: f32) -> Self {
        Pen {
            d: String::with_capacity(frame.columns as usize * 6 + 16),
            step: frame.width / frame.columns,
            gap,
            height: frame.height,
            min,
            max,
            prev: None,
            run: 0,
            pending: None,
        }
    }

    fn y_of(&self, v: f64) -> i64 {
        const PAD: f64 = 2.0;
        if self.max > self.min {
            let usable = f64::from(self.height) - 2.0 * PAD;
            round(PAD + (f64::from(self.max) - v) / f64::from(self.max - self.min) * usable)
        } else {
            i64::from(self.height / 2)
        }
    }

    fn column(&mut self, col: u32, agg: Column) {
        let x = i64::from(col * self.step + self.step / 2);
        let y = self.y_of(agg.sum / f64::from(agg.n));
        match self.prev {
            Some((px, py, plast)) if agg.first.saturating_sub(plast) <= self.gap => {
                let (dx, dy) = (x - px, y - py);
                self.pending = match self.pending {
                    Some((pdx, pdy)) if pdx * dy == pdy * dx => Some((pdx + dx, pdy + dy)),
                    Some(seg) => {
                        push_segment(&mut self.d, seg, self.run == 1);
                        self.run += 1;
                        Some((dx, dy))
                    }
                    None => Some((dx, dy)),
                };
            }
            _ => {
                end_subpath(&mut self.d, &mut self.pending, self.run);
                self.d.push('M');
                push_int(&mut self.d, x);
                self.d.push(' ');
                push_int(&mut self.d, y);
                self.run = 1;
            }
        }
        self.prev = Some((x, y, agg.last));
    }

    fn finish(mut self) -> String {
        end_subpath(&mut self.d, &mut self.pending, self.run);
        self.d
    }
}

/// `x.round() as i64` (half away from zero) without the call into libm that
/// `round` is on plain x86-64; exact for |x| < 2⁵², and the y axis is a few
/// hundred units at most.
fn round(x: f64) -> i64 {
    let i = x as i64;
    let frac = x - i as f64;
    if frac >= 0.5 {
        i + 1
    } else if frac <= -0.5 {
        i - 1
    } else {
        i
    }
}

fn push_segment(d: &mut String, (dx, dy): (i64, i64), first: bool) {
    if first {
        d.push('l');
    }
    push_num(d, dx);
    push_num(d, dy);
}

/// Writes the last segment of a subpath, or a dot for a lone point (a
/// zero-length line shows as a dot thanks to round line caps).
fn end_subpath(d: &mut String, pending: &mut Option<(i64, i64)>, run: usize) {
    match pending.take() {
        Some(seg) => push_segment(d, seg, run == 1),
        None if run == 1 => d.push_str("h0"),
        None => {}
    }
}

/// Appends a number to path data with the fewest separators SVG allows.
fn push_num(d: &mut String, v: i64) {
    if v >= 0 && !d.ends_with('l') {
        d.push(' ');
    }
    push_int(d, v);
}

/// Appends an integer in decimal, as `{v}` would, without the formatting machinery.
fn push_int(d: &mut String, v: i64) {
    if v < 0 {
        d.push('-');
    }
    let mut u = v.unsigned_abs();
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        d.push(char::from(b));
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;

    use super::*;

    fn pts(v: &[(u32, f32)]) -> Vec<Point> {
        v.iter().map(|&(t, v)| Point { t, v }).collect()
    }

    #[test]
    fn a_rising_line_goes_up_across_the_window() {
        let line = draw(pts(&[(0, 1.0), (60, 2.0), (120, 3.0)]), 0, 120, 100, SPARKLINE).unwrap();
        assert_eq!(line.d, "M1 30l60-14 58-14");
        assert_eq!((line.min, line.max), (1.0, 3.0));
    }

    #[test]
    fn time_is_on_the_x_axis_so_a_late_start_draws_on_the_right() {
        let line = draw(pts(&[(100, 5.0), (110, 5.0), (120, 5.0)]), 0, 120, 100, SPARKLINE).unwrap();
        assert_eq!(line.d, "M101 16l18 0", "a flat line is one segment");
    }

    #[test]
    fn a_silence_longer_than_the_gap_breaks_the_line() {
        let line = draw(pts(&[(0, 1.0), (10, 1.0), (80, 2.0), (90, 2.0)]), 0, 120, 30, SPARKLINE).unwrap();
        assert_eq!(line.d.matches('M').count(), 2, "{}", line.d);
    }

    #[test]
    fn a_lone_point_is_drawn_as_a_dot() {
        let line = draw(pts(&[(60, 1.0)]), 0, 120, 30, SPARKLINE).unwrap();
        assert_eq!(line.d, "M61 16h0");
    }

    #[test]
    fn nothing_to_draw_is_none() {
        assert_eq!(draw(Vec::new(), 0, 120, 30, SPARKLINE), None);
        assert_eq!(draw(pts(&[(1, 1.0)]), 10, 10, 30, SPARKLINE), None);
    }

    #[test]
    fn many_points_collapse_into_pixel_columns() {
        let many: Vec<Point> = (0..10_000)
            .map(|i| Point {
                t: i,
                v: (i % 7) as f32,
            })
            .collect();
        let line = draw(many, 0, 10_000, 30, SPARKLINE).unwrap();
        assert!(line.d.len() < 60 * 8, "{} bytes", line.d.len());
    }

    /// The drawing as it was before it streamed (issue 16), to compare with.
    fn draw_before(points: &[Point], t0: u32, t1: u32, gap: u32, frame: Frame) -> Option<Line> {
        if points.is_empty() || t1 <= t0 || frame.columns == 0 {
            return None;
        }
        let span = u64::from(t1 - t0);
        let n = frame.columns;
        let mut columns: Vec<(u32, Column)> = Vec::with_capacity(n as usize);
        let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
        for p in points {
            min = min.min(p.v);
            max = max.max(p.v);
            let offset = u64::from(p.t.saturating_sub(t0)).min(span);
            let col = ((offset * u64::from(n)) / span).min(u64::from(n - 1)) as u32;
            match columns.last_mut() {
                Some((c, agg)) if *c == col => {
                    agg.sum += f64::from(p.v);
                    agg.n += 1;
                    agg.last = p.t;
                }
                _ => columns.push((
                    col,
                    Column {
                        sum: f64::from(p.v),
                        n: 1,
                        first: p.t,
                        last: p.t,
                    },
                )),
            }
        }
        if !min.is_finite() || !max.is_finite() {
            return None;
        }
        let step = frame.width / n;
        let pad = 2.0;
        let usable = f64::from(frame.height) - 2.0 * pad;
        let y_of = |v: f64| -> i64 {
            if max > min {
                (pad + (f64::from(max) - v) / f64::from(max - min) * usable).round() as i64
            } else {
                i64::from(frame.height / 2)
            }
        };
        let mut d = String::with_capacity(columns.len() * 5 + 16);
        let mut prev: Option<(i64, i64, u32)> = None;
        let mut run = 0;
        // The segment not yet written: collinear steps merge into it (flat stretches
        // are common and cost one segment instead of dozens).
        let mut pending: Option<(i64, i64)> = None;
        for (col, agg) in &columns {
            let x = i64::from(col * step + step / 2);
            let y = y_of(agg.sum / f64::from(agg.n));
            match prev {
                Some((px, py, plast)) if agg.first.saturating_sub(plast) <= gap => {
                    let (dx, dy) = (x - px, y - py);
                    pending = match pending {
                        Some((pdx, pdy)) if pdx * dy == pdy * dx => Some((pdx + dx, pdy + dy)),
                        Some(seg) => {
                            push_segment_before(&mut d, seg, run == 1);
                            run += 1;
                            Some((dx, dy))
                        }
                        None => Some((dx, dy)),
                    };
                }
                _ => {
                    end_subpath_before(&mut d, &mut pending, run);
                    let _ = write!(d, "M{x} {y}");
                    run = 1;
                }
            }
            prev = Some((x, y, agg.last));
        }
        end_subpath_before(&mut d, &mut pending, run);
        Some(Line { d, min, max })
    }

    fn push_segment_before(d: &mut String, (dx, dy): (i64, i64), first: bool) {
        if first {
            d.push('l');
        }
        push_num_before(d, dx);
        push_num_before(d, dy);
    }

    /// Writes the last segment of a subpath, or a dot for a lone point (a
    /// zero-length line shows as a dot thanks to round line caps).
    fn end_subpath_before(d: &mut String, pending: &mut Option<(i64, i64)>, run: usize) {
        match pending.take() {
            Some(seg) => push_segment_before(d, seg, run == 1),
            None if run == 1 => d.push_str("h0"),
            None => {}
        }
    }

    /// Appends a number to path data with the fewest separators SVG allows.
    fn push_num_before(d: &mut String, v: i64) {
        if v >= 0 && !d.ends_with('l') {
            d.push(' ');
        }
        let _ = write!(d, "{v}");
    }

    #[test]
    fn rounding_is_half_away_from_zero_like_f64_round() {
        for x in [
            0.0,
            0.49999999999999994,
            0.5,
            1.5,
            2.5,
            29.5,
            29.499,
            -0.5,
            -1.5,
            -2.4,
            157.50000001,
        ] {
            assert_eq!(round(x), x.round() as i64, "{x}");
        }
    }

    #[test]
    fn streaming_draws_the_same_path_as_collecting_columns_first() {
        let mut r = crate::modbus::Rng::new(5);
        for case in 0..2000 {
            let frame = if case % 3 == 0 { CHART } else { SPARKLINE };
            let t0 = 1_000_000 + (r.next_u64() % 1000) as u32;
            let t1 = t0 + 1 + (r.next_u64() % 90_000) as u32;
            let gap = [0, 10, 30, 600, 100_000][(r.next_u64() % 5) as usize];
            let mut t = t0.saturating_sub((r.next_u64() % 2000) as u32);
            let mut points = Vec::new();
            let flat = r.next_u64().is_multiple_of(4);
            for _ in 0..r.next_u64() % 400 {
                t += 1 + (r.next_u64() % if r.next_u64().is_multiple_of(20) { 5000 } else { 120 }) as u32;
                let v = if flat {
                    7.5
                } else {
                    (r.next_f64() * 100.0 - 30.0) as f32
                };
                points.push(Point { t, v });
            }
            if r.next_u64().is_multiple_of(50) {
                points.push(Point {
                    t: t + 1,
                    v: f32::INFINITY,
                });
            }
            if r.next_u64().is_multiple_of(10) && points.len() > 2 {
                let last = points.len() - 1;
                points.swap(0, last); // out of order: the column is computed afresh
            }
            let ours = draw(points.iter().copied(), t0, t1, gap, frame);
            assert_eq!(ours, draw_before(&points, t0, t1, gap, frame), "case {case}");
        }
    }
}
