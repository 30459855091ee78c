//! A pump's efficiency page: the daily figures of the `efficiency` transform
//! (read from the telemetry registry's board) as plain data for the template,
//! with the charts already laid out in SVG user units: energy per day as
//! stacked bars, daily COP against the outdoor temperature, compressor starts
//! per day, and the seasonal COP of the last 365 days. Only numbers and text
//! are produced; the template escapes the text.

use std::collections::BTreeMap;
use std::time::SystemTime;

use jiff::civil::Date;
use jiff::ToSpan;
use serde::Serialize;

use super::pages::pump_href;
use crate::sinks::dashboard::app::App;
use crate::telemetry::{cop, Day};

/// Days the bar charts show, today included.
pub const BAR_DAYS: usize = 30;
/// Days the seasonal COP and the scatter cover, today included.
pub const SCOP_DAYS: i32 = 365;

/// Width of every chart's `viewBox`; small enough that its labels stay
/// readable on a phone, where the chart is drawn about this wide.
const W: f64 = 400.0;
const LEFT: f64 = 38.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 22.0;

/// What the `efficiency` section of a pipeline looks like; the empty page shows it.
pub const SETUP: &str = "[transforms.efficiency]\ntype = \"efficiency\"\ninputs = [\"scaled\"]\n\n\
                         [transforms.states]\ntype = \"state_diff\"\ninputs = [\"efficiency\"]";

#[derive(Debug, Serialize)]
pub struct EfficiencyPage {
    pub id: String,
    pub name: String,
    pub pump_href: String,
    /// No days published for this pump: the page explains how to get them.
    pub empty: bool,
    pub setup: &'static str,
    /// "16 May – 14 Jun 2025".
    pub period: String,
    pub scop: Vec<Scop>,
    pub heat: BarChart,
    pub electricity: BarChart,
    pub cycles: BarChart,
    /// Mean compressor run time per start over the bar days, if any started.
    pub mean_run: Option<String>,
    pub scatter: Scatter,
    pub rows: Vec<DayRow>,
}

/// A seasonal COP over the last 365 days: of all heat, of heating, of hot water.
#[derive(Debug, Serialize)]
pub struct Scop {
    pub label: &'static str,
    /// Two decimals; `None` when no day had both figures (or no electricity).
    pub value: Option<String>,
    /// Days with both heat and electricity known, the ones summed.
    pub days: usize,
    pub heat: String,
    pub electricity: String,
}

#[derive(Debug, Serialize)]
pub struct BarChart {
    pub id: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub height: f64,
    /// The plot area: its left and right edges and its baseline.
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub base: f64,
    pub days: Vec<BarDay>,
    pub yticks: Vec<Tick>,
    pub xticks: Vec<Tick>,
    pub legend: Vec<Legend>,
    /// What the chart shows, in words, for screen readers.
    pub description: String,
}

/// One day's stack of bars.
#[derive(Debug, Serialize)]
pub struct BarDay {
    pub date: String,
    pub title: String,
    pub bars: Vec<Bar>,
}

#[derive(Debug, Serialize)]
pub struct Bar {
    pub class: &'static str,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

#[derive(Debug, Serialize)]
pub struct Tick {
    pub at: f64,
    pub label: String,
}

#[derive(Debug, Serialize)]
pub struct Legend {
    pub class: &'static str,
    pub label: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Scatter {
    pub height: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub base: f64,
    pub points: Vec<Point>,
    pub xticks: Vec<Tick>,
    pub yticks: Vec<Tick>,
    pub description: String,
}

#[derive(Debug, Serialize)]
pub struct Point {
    pub date: String,
    /// The newest 30 days are drawn stronger.
    pub recent: bool,
    pub x: f64,
    pub y: f64,
    pub title: String,
}

/// A row of the table under the charts (the same figures, as text).
#[derive(Debug, Serialize)]
pub struct DayRow {
    pub date: String,
    pub heat: String,
    pub electricity: String,
    pub cop: String,
    pub outdoor: String,
    pub starts: String,
}

/// A figure worth drawing: known, finite, not negative.
fn known(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite() && *x >= 0.0)
}

fn kwh(v: Option<f64>) -> String {
    known(v).map_or_else(|| "–".to_string(), |x| format!("{x:.1}"))
}

fn cop_text(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{x:.2}"))
}

/// One decimal is plenty for coordinates in a 400-unit-wide box.
fn r1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn short_date(d: Date) -> String {
    d.strftime("%-d %b").to_string()
}

/// A step of 1, 2, 2.5 or 5 × 10ⁿ giving about `n` intervals up to `max`.
fn nice_step(max: f64, n: f64) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 1.0;
    }
    let raw = max / n;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 2.5 {
        2.5
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

fn tick_label(v: f64, step: f64) -> String {
    if step.fract() == 0.0 {
        format!("{v:.0}")
    } else if (step * 10.0).fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Ticks from 0 to the first multiple of a round step at or above `max`, and that
/// top; `whole`: the step is a whole number (counts).
fn y_ticks(max: f64, intervals: f64, whole: bool) -> (Vec<f64>, f64) {
    let mut step = nice_step(max, intervals);
    if whole {
        step = step.ceil().max(1.0);
    }
    let top = ((max / step).ceil() * step).max(step);
    let n = (top / step).round() as usize;
    ((0..=n).map(|i| i as f64 * step).collect(), top)
}

/// The stacked parts of one day's bar: class and value.
type Stack = [(&'static str, Option<f64>); 3];
type Parts = fn(&Day) -> Stack;

fn heat_parts(d: &Day) -> Stack {
    [
        ("heating", d.heat_heating),
        ("dhw", d.heat_dhw),
        ("booster", crate::telemetry::sum([d.booster_heating, d.booster_dhw])),
    ]
}

fn electricity_parts(d: &Day) -> Stack {
    [
        ("heating", d.electricity_heating),
        ("dhw", d.electricity_dhw),
        ("booster", crate::telemetry::sum([d.booster_heating, d.booster_dhw])),
    ]
}

const ENERGY_LEGEND: [Legend; 3] = [
    Legend {
        class: "heating",
        label: "Heating (compressor)",
    },
    Legend {
        class: "dhw",
        label: "Hot water (compressor)",
    },
    Legend {
        class: "booster",
        label: "Booster heater (heating and hot water)",
    },
];

/// The x position of each of the bar days' slots: left edge and width.
fn slots(count: usize) -> (f64, f64) {
    let width = (W - LEFT - RIGHT) / count.max(1) as f64;
    (LEFT, width)
}

/// Date labels under the bars: the last day and every seventh before it.
fn date_ticks(dates: &[Date]) -> Vec<Tick> {
    let (left, slot) = slots(dates.len());
    dates
        .iter()
        .enumerate()
        .rev()
        .step_by(7)
        .map(|(i, d)| Tick {
            at: r1(left + (i as f64 + 0.5) * slot),
            label: short_date(*d),
        })
        .collect()
}

fn energy_chart(
    id: &'static str,
    title: &'static str,
    dates: &[Date],
    by_date: &BTreeMap<Date, &Day>,
    parts: Parts,
) -> BarChart {
    let height = 200.0;
    let base = height - BOTTOM;
    let stacks: Vec<Option<Stack>> = dates.iter().map(|d| by_date.get(d).map(|day| parts(day))).collect();
    let max = stacks
        .iter()
        .flatten()
        .map(|p| p.iter().filter_map(|(_, v)| known(*v)).sum::<f64>())
        .fold(0.0, f64::max);
    let (ticks, top) = y_ticks(max, 4.0, false);
    let scale = (base - TOP) / top;
    let (left, slot) = slots(dates.len());
    let w = r1(slot * 0.72);
    let mut days = Vec::new();
    for (i, (date, stack)) in dates.iter().zip(&stacks).enumerate() {
        let Some(stack) = stack else { continue };
        if stack.iter().all(|(_, v)| known(*v).is_none()) {
            continue; // unknown: a gap
        }
        let x = r1(left + i as f64 * slot + (slot - w) / 2.0);
        let mut y = base;
        let mut bars = Vec::new();
        let mut words = Vec::new();
        for ((class, v), legend) in stack.iter().zip(&ENERGY_LEGEND) {
            let label = legend.label.split(" (").next().unwrap_or(legend.label).to_lowercase();
            let Some(v) = known(*v) else {
                words.push(format!("{label} unknown"));
                continue;
            };
            words.push(format!("{label} {v:.1}"));
            let h = v * scale;
            if h > 0.0 {
                bars.push(Bar {
                    class,
                    x,
                    y: r1(y - h),
                    w,
                    h: r1(h).max(0.1),
                });
            }
            y -= h;
        }
        days.push(BarDay {
            date: date.to_string(),
            title: format!("{}: {} kWh", short_date(*date), words.join(", ")),
            bars,
        });
    }
    let known_days = days.len();
    BarChart {
        id,
        title,
        unit: "kWh",
        height,
        left: LEFT,
        right: W - RIGHT,
        top: TOP,
        base,
        yticks: ticks
            .iter()
            .map(|v| Tick {
                at: r1(base - v * scale),
                label: tick_label(*v, ticks.get(1).copied().unwrap_or(1.0)),
            })
            .collect(),
        xticks: date_ticks(dates),
        legend: ENERGY_LEGEND.into(),
        description: format!(
            "{title} in kWh over the last {} days, heating, hot water and booster stacked; {known_days} days known.",
            dates.len()
        ),
        days,
    }
}

fn cycles_chart(dates: &[Date], by_date: &BTreeMap<Date, &Day>) -> BarChart {
    let height = 150.0;
    let base = height - BOTTOM;
    let max = dates
        .iter()
        .filter_map(|d| by_date.get(d))
        .map(|d| f64::from(d.compressor_starts))
        .fold(0.0, f64::max);
    let (ticks, top) = y_ticks(max, 3.0, true);
    let scale = (base - TOP) / top;
    let (left, slot) = slots(dates.len());
    let w = r1(slot * 0.72);
    let days: Vec<BarDay> = dates
        .iter()
        .enumerate()
        .filter_map(|(i, date)| {
            let day = by_date.get(date)?;
            let starts = day.compressor_starts;
            let h = f64::from(starts) * scale;
            let run = if starts > 0 && day.compressor_run_seconds.is_finite() {
                format!(
                    ", {} per start",
                    minutes(day.compressor_run_seconds / f64::from(starts))
                )
            } else {
                String::new()
            };
            let defrosts = match day.defrosts {
                0 => String::new(),
                1 => ", 1 defrost".to_string(),
                n => format!(", {n} defrosts"),
            };
            Some(BarDay {
                date: date.to_string(),
                title: format!("{}: {starts} starts{run}{defrosts}", short_date(*date)),
                bars: (h > 0.0)
                    .then(|| Bar {
                        class: "starts",
                        x: r1(left + i as f64 * slot + (slot - w) / 2.0),
                        y: r1(base - h),
                        w,
                        h: r1(h),
                    })
                    .into_iter()
                    .collect(),
            })
        })
        .collect();
    BarChart {
        id: "cycles",
        title: "Compressor starts per day",
        unit: "starts",
        height,
        left: LEFT,
        right: W - RIGHT,
        top: TOP,
        base,
        yticks: ticks
            .iter()
            .map(|v| Tick {
                at: r1(base - v * scale),
                label: format!("{v:.0}"),
            })
            .collect(),
        xticks: date_ticks(dates),
        legend: Vec::new(),
        description: format!(
            "Compressor starts per day over the last {} days; {} days known.",
            dates.len(),
            days.len()
        ),
        days,
    }
}

/// "12 min", "1 h 5 min", "40 s".
fn minutes(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", (s + 30) / 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

fn scatter(days: &[&Day], recent_from: Date) -> Scatter {
    let height = 230.0;
    let bottom = BOTTOM + 18.0;
    let base = height - bottom;
    let pairs: Vec<(&Day, f64, f64)> = days
        .iter()
        .filter_map(|d| Some((*d, d.outdoor_mean.filter(|t| t.is_finite())?, d.cop()?)))
        .filter(|(_, _, c)| c.is_finite())
        .collect();
    let (lo, hi) = pairs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, t, _)| {
            (lo.min(*t), hi.max(*t))
        });
    let (mut lo, mut hi) = if lo.is_finite() {
        ((lo / 5.0).floor() * 5.0, (hi / 5.0).ceil() * 5.0)
    } else {
        (-10.0, 15.0)
    };
    if hi - lo < 10.0 {
        hi = lo + 10.0;
    }
    let span = hi - lo;
    let xstep = if span > 30.0 { 10.0 } else { 5.0 };
    lo = (lo / xstep).floor() * xstep;
    hi = (hi / xstep).ceil() * xstep;
    let max_cop = pairs.iter().map(|(_, _, c)| *c).fold(4.0, f64::max);
    let (ticks, top) = y_ticks(max_cop, 4.0, false);
    let ystep = ticks.get(1).copied().unwrap_or(1.0);
    let right = W - RIGHT;
    let xs = |t: f64| r1(LEFT + (t - lo) / (hi - lo) * (right - LEFT));
    let ys = |c: f64| r1(base - c / top * (base - TOP));
    let points = pairs
        .iter()
        .map(|(d, t, c)| Point {
            date: d.date.to_string(),
            recent: d.date >= recent_from,
            x: xs(*t),
            y: ys(*c),
            title: format!("{}: COP {c:.2} at {t:.1} °C", short_date(d.date)),
        })
        .collect::<Vec<_>>();
    let mut xticks = Vec::new();
    let mut t = lo;
    while t <= hi + 1e-9 {
        xticks.push(Tick {
            at: xs(t),
            label: format!("{t:.0}"),
        });
        t += xstep;
    }
    Scatter {
        height,
        left: LEFT,
        right,
        top: TOP,
        base,
        description: format!(
            "Daily COP against the day's mean outdoor temperature, one point per day of the last {SCOP_DAYS} days with both known: {} points.",
            points.len()
        ),
        points,
        xticks,
        yticks: ticks
            .iter()
            .map(|v| Tick {
                at: ys(*v),
                label: tick_label(*v, ystep),
            })
            .collect(),
    }
}

/// Σ heat ÷ Σ electricity over the days where both are known.
fn scop(label: &'static str, days: &[&Day], part: fn(&Day) -> (Option<f64>, Option<f64>)) -> Scop {
    let (mut heat, mut el, mut n) = (0.0, 0.0, 0);
    for d in days {
        let (h, e) = part(d);
        if let (Some(h), Some(e)) = (known(h), known(e)) {
            heat += h;
            el += e;
            n += 1;
        }
    }
    let value = if n == 0 { None } else { cop(Some(heat), Some(el)) };
    Scop {
        label,
        value: value.map(|v| format!("{v:.2}")),
        days: n,
        heat: format!("{heat:.0}"),
        electricity: format!("{el:.0}"),
    }
}

impl App {
    /// The efficiency page of a pump, or `None` when the pump is unknown here
    /// (neither polled into this dashboard nor on the efficiency board).
    pub fn efficiency_page(&self, id: &str, now: SystemTime) -> Option<EfficiencyPage> {
        let board = self.telemetry.efficiency().days(id);
        let name = {
            let store = self.read_store();
            store
                .devices
                .get(id)
                .map(|d| d.metric.tags.get("name").cloned().unwrap_or_else(|| id.to_string()))
        };
        let name = match (name, &board) {
            (Some(n), _) => n,
            (None, Some(_)) => id.to_string(),
            (None, None) => return None,
        };
        let all: &[Day] = board.as_deref().unwrap_or(&[]);
        let today = jiff::Timestamp::try_from(now)
            .map(|t| t.to_zoned_datetime(self.tz.clone()).date())
            .unwrap_or(jiff::civil::date(1970, 1, 1));
        let last = all.iter().map(|d| d.date).max().map_or(today, |d| d.max(today));
        let mut dates = Vec::with_capacity(BAR_DAYS);
        let mut d = last;
        for _ in 0..BAR_DAYS {
            dates.push(d);
            d = d.yesterday().unwrap_or(d);
        }
        dates.reverse();
        let by_date: BTreeMap<Date, &Day> = all.iter().map(|d| (d.date, d)).collect();
        let year_from = last.checked_sub((SCOP_DAYS - 1).days()).unwrap_or(last);
        let year: Vec<&Day> = all.iter().filter(|d| d.date >= year_from && d.date <= last).collect();
        let scop = vec![
            scop("All heat", &year, |d| (d.heat(), d.electricity())),
            scop("Heating", &year, |d| {
                (d.heat_for_heating(), d.electricity_for_heating())
            }),
            scop("Hot water", &year, |d| (d.heat_for_dhw(), d.electricity_for_dhw())),
        ];
        let mean_run = {
            let (starts, run) = dates
                .iter()
                .filter_map(|d| by_date.get(d))
                .filter(|d| d.compressor_run_seconds.is_finite())
                .fold((0u64, 0.0), |(s, r), d| {
                    (s + u64::from(d.compressor_starts), r + d.compressor_run_seconds)
                });
            (starts > 0).then(|| minutes(run / starts as f64))
        };
        let rows = dates
            .iter()
            .rev()
            .filter_map(|d| by_date.get(d))
            .map(|d| DayRow {
                date: d.date.to_string(),
                heat: kwh(d.heat()),
                electricity: kwh(d.electricity()),
                cop: cop_text(d.cop()),
                outdoor: d
                    .outdoor_mean
                    .filter(|t| t.is_finite())
                    .map_or_else(|| "–".to_string(), |t| format!("{t:.1}")),
                starts: d.compressor_starts.to_string(),
            })
            .collect();
        Some(EfficiencyPage {
            id: id.to_string(),
            name,
            pump_href: pump_href(id),
            empty: all.is_empty(),
            setup: SETUP,
            period: format!("{} – {}", short_date(dates[0]), last.strftime("%-d %b %Y")),
            scop,
            heat: energy_chart("heat", "Heat per day", &dates, &by_date, heat_parts),
            electricity: energy_chart(
                "electricity",
                "Electricity per day",
                &dates,
                &by_date,
                electricity_parts,
            ),
            cycles: cycles_chart(&dates, &by_date),
            mean_run,
            scatter: scatter(&year, dates[0]),
            rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round_and_cover_the_maximum() {
        assert_eq!(nice_step(37.0, 4.0), 10.0);
        assert_eq!(nice_step(4.2, 4.0), 2.0);
        assert_eq!(y_ticks(37.0, 4.0, false), (vec![0.0, 10.0, 20.0, 30.0, 40.0], 40.0));
        assert_eq!(y_ticks(0.0, 4.0, false).1, 1.0, "an empty chart still has an axis");
        assert_eq!(
            y_ticks(7.0, 3.0, true),
            (vec![0.0, 3.0, 6.0, 9.0], 9.0),
            "counts: whole steps"
        );
        assert_eq!(y_ticks(0.0, 3.0, true).1, 1.0);
        assert_eq!(minutes(754.0), "13 min");
        assert_eq!(minutes(3900.0), "1 h 5 min");
    }
}
