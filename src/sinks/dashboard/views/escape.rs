//! The dashboard's one HTML escaping: the templates' formatter
//! (`templates::html_formatter`) and the cards written without minijinja
//! ([`card`](super::card)) both go through it, so a text reads the same
//! however its page was made.

/// Writes `s` with `& < > " '` escaped.
pub fn write_escaped<W: std::fmt::Write>(out: &mut W, s: &str) -> std::fmt::Result {
    // Most texts need nothing escaped: one scan, one copy.
    if !s.bytes().any(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'')) {
        return out.write_str(s);
    }
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.write_str(&s[last..i])?;
        out.write_str(rep)?;
        last = i + 1;
    }
    out.write_str(&s[last..])
}

/// Appends `s` escaped as [`write_escaped`] does.
pub fn escape_into(out: &mut String, s: &str) {
    // Writing into a String cannot fail.
    let _ = write_escaped(out, s);
}
