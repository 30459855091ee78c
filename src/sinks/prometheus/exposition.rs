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
        Num::Float(x) => {
            if !push_short_decimal(out, x) {
                out.push_str(ryu::Buffer::new().format_finite(x));
            }
        }
    }
}

/// Writes `x` as `[-]int.frac` when at most 4 decimals give it back exactly,
/// the way `ryu` would (most register values have one or two): false, and
/// nothing written, for anything else. A decimal `m / 10^d` that division
/// rounds to `x` is what parsing it gives; taking the fewest decimals that do
/// makes it the shortest such text, which is what `ryu` prints, and within
/// 1e-3 ≤ |x| < 1e11 `ryu` prints it without an exponent.
fn push_short_decimal(out: &mut String, x: f64) -> bool {
    const POW10: [u64; 5] = [1, 10, 100, 1_000, 10_000];
    let a = x.abs();
    if !(1e-3..1e11).contains(&a) {
        return false;
    }
    for (d, &p) in POW10.iter().enumerate().skip(1) {
        let scale = p as f64;
        // Truncating after adding a half rounds (a is positive); `f64::round`
        // is a libm call on the baseline target.
        let m = (a * scale + 0.5) as u64;
        if m as f64 / scale != a {
            continue;
        }
        if m.is_multiple_of(10) {
            // Fewer decimals would have matched first; never write a trailing zero.
            return false;
        }
        // The decimals, zero-padded to `d`.
        let mut frac = [b'0'; 4];
        let mut rest = m % p;
        for digit in frac[..d].iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        if x < 0.0 {
            out.push('-');
        }
        out.push_str(itoa::Buffer::new().format(m / p));
        out.push('.');
        // Only ASCII digits were written.
        out.push_str(std::str::from_utf8(&frac[..d]).unwrap_or_default());
        return true;
    }
    false
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

#[cfg(test)]
mod tests {
    use super::*;

    fn text(x: f64) -> String {
        let mut s = String::new();
        push_num(&mut s, Num::Float(x));
        s
    }

    /// What the exposition wrote before the short path: ryu, integral floats as integers.
    fn reference(x: f64) -> String {
        if x.is_nan() {
            "NaN".into()
        } else if x.is_infinite() {
            if x > 0.0 { "+Inf" } else { "-Inf" }.into()
        } else if x.fract() == 0.0 && x.abs() < 1e15 {
            (x as i64).to_string()
        } else {
            ryu::Buffer::new().format_finite(x).to_string()
        }
    }

    #[test]
    fn floats_are_written_exactly_as_ryu_writes_them() {
        let mut cases = vec![
            0.1,
            0.2,
            0.3,
            0.30000000000000004,
            1.5,
            -1.5,
            12.3,
            99.95,
            0.001,
            0.0011,
            0.00099,
            1e-4,
            1e-7,
            1.25e-3,
            123456.7,
            98765432.1,
            99999999999.9,
            1e11,
            1e11 + 0.5,
            1.0000001,
            2.675,
            1.005,
            -0.0,
            0.0,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e15,
            1e16,
            1234.5678,
            1234.56789,
            0.0005,
            4.35,
            4.345,
        ];
        // Register-like values (k / 10^d, scaled and offset), and random bit patterns.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..200_000i64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let d = [1.0, 10.0, 100.0, 1000.0, 10_000.0, 3.0, 7.0][i as usize % 7];
            let k = (seed % 2_000_000) as i64 - 1_000_000;
            cases.push(k as f64 / d);
            cases.push(k as f64 * 0.1 + 0.05);
            cases.push(k as f64 / d * 3.6e6);
            cases.push(f64::from_bits(seed));
        }
        for x in cases {
            assert_eq!(text(x), reference(x), "{x:e} ({:#x})", x.to_bits());
        }
    }
}
