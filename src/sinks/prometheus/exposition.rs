//! The two exposition formats (Prometheus text 0.0.4 and OpenMetrics 1.0): content
//! negotiation and writing families and sample lines into a string.

use super::names::push_help;
use super::plan::{Family, Kind, Num};

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header prefers: OpenMetrics when it is offered with
    /// a quality at least that of the text format (as Prometheus asks), else text.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else { return Format::Text };
        let (mut om, mut text) = (0.0_f32, 0.0_f32);
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// Appends one sample line: `name{labels[,extra]} value`, or `name value`
/// without labels.
#[inline]
pub(super) fn write_line(buf: &mut String, name: &str, labels: &str, extra: Option<&str>, v: Num) {
    buf.push_str(name);
    if !labels.is_empty() || extra.is_some() {
        buf.push('{');
        buf.push_str(labels);
        if let Some(extra) = extra {
            if !labels.is_empty() {
                buf.push(',');
            }
            buf.push_str(extra);
        }
        buf.push('}');
    }
    buf.push(' ');
    push_num(buf, v);
    buf.push('\n');
}

/// A number as both formats spell it (`+Inf`, `-Inf`, `NaN`; the shortest
/// representation that reads back the same float).
fn push_num(out: &mut String, v: Num) {
    match v {
        Num::Int(i) => out.push_str(itoa::Buffer::new().format(i)),
        Num::Float(x) if x.is_nan() => out.push_str("NaN"),
        Num::Float(x) if x.is_infinite() => out.push_str(if x > 0.0 { "+Inf" } else { "-Inf" }),
        // Integral floats print as integers (`2`, not ryu's `2.0`), like Prometheus' own clients.
        Num::Float(x) if x.fract() == 0.0 && x.abs() < 1e15 => out.push_str(itoa::Buffer::new().format(x as i64)),
        Num::Float(x) => out.push_str(ryu::Buffer::new().format_finite(x)),
    }
}

/// `# HELP`, `# TYPE` (and in OpenMetrics `# UNIT`) of a family.
pub(super) fn header(out: &mut String, format: Format, f: &Family) {
    let om = format == Format::OpenMetrics;
    // The text format names the sample (`…_total`) in its comments; OpenMetrics the family.
    let name = if om { &f.name } else { &f.sample };
    let ty = match (f.kind, om) {
        (Kind::Counter, _) => "counter",
        (Kind::Info, true) => "info",
        (Kind::Gauge | Kind::StateSet | Kind::Info, _) => "gauge",
    };
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    push_help(out, &f.help, om);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(ty);
    out.push('\n');
    if let (true, Some(unit)) = (om, &f.unit) {
        out.push_str("# UNIT ");
        out.push_str(name);
        out.push(' ');
        out.push_str(unit);
        out.push('\n');
    }
}

/// Writes a whole family with pre-escaped label sets (the internal metrics);
/// nothing when it has no samples.
pub(super) fn family(out: &mut String, format: Format, family: &Family, rows: &[(String, Num)]) {
    if rows.is_empty() {
        return;
    }
    header(out, format, family);
    for (labels, v) in rows {
        write_line(out, &family.sample, labels, None, *v);
    }
}
