//! A fast reader for the YAML that register maps and HPManager's files are
//! written in: block mappings and sequences, one-line flow collections,
//! one-line plain and quoted scalars, comments.
//!
//! It builds exactly the `serde_yaml::Value` serde_yaml would (the same
//! scalar resolution: null, booleans, integers in four radixes, floats, text)
//! in one pass over the lines, about ten times faster than serde_yaml's event
//! parser on the shipped 113 KB map, which was most of hpflow's start-up.
//! Anything outside that subset (anchors, tags, block scalars, multi-line
//! scalars, escapes, tabs, duplicate keys, invalid YAML of any kind) makes it
//! answer `None`, and the caller parses the text with serde_yaml, which gives
//! the same value or the error at its line and column. So this reader never
//! has to report an error, and never decides one: see [`crate::yaml::parse`].

use serde_yaml::{Mapping, Number, Value};

/// The value of `text`, or `None` when it is not in the subset read here.
pub(crate) fn parse(text: &str) -> Option<Value> {
    let mut lines = Vec::with_capacity(text.len() / 24);
    for raw in text.split('\n') {
        check_chars(raw)?;
        let content = raw.trim_start_matches(' ');
        let indent = raw.len() - content.len();
        let content = content.trim_end_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        // Directives and document markers: serde_yaml's business.
        if indent == 0 && (content.starts_with("---") || content.starts_with("...") || content.starts_with('%')) {
            return None;
        }
        lines.push(Line { indent, content });
    }
    let first = lines.first()?;
    if first.indent != 0 {
        return None;
    }
    let mut p = Parser { lines, i: 0 };
    let value = p.node(0, None)?;
    (p.i == p.lines.len()).then_some(value)
}

/// Characters the subset allows: printable ASCII and the printable Unicode
/// libyaml accepts, minus its extra line breaks (U+0085, U+2028, U+2029).
/// Tabs, carriage returns, other control characters and a byte-order mark
/// are left to serde_yaml.
fn check_chars(line: &str) -> Option<()> {
    if line.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Some(());
    }
    line.chars()
        .all(|c| {
            matches!(c, ' '..='~' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
                && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}')
        })
        .then_some(())
}

/// A line holding YAML: its indentation and its text without it, trailing
/// spaces cut.
#[derive(Clone, Copy)]
struct Line<'a> {
    indent: usize,
    content: &'a str,
}

struct Parser<'a> {
    lines: Vec<Line<'a>>,
    /// The next line to read.
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Line<'a>> {
        self.lines.get(self.i).copied()
    }

    /// The node starting at the current line, whose text begins at column
    /// `indent`; `parent` is the column of the key or dash that holds it.
    fn node(&mut self, indent: usize, parent: Option<usize>) -> Option<Value> {
        let line = self.peek()?;
        if is_dash(line.content) {
            return self.sequence(indent);
        }
        if line.content.starts_with(['[', '{']) {
            let (value, rest) = flow(line.content, 0)?;
            end_of_line(rest)?;
            self.i += 1;
            self.after_scalar(parent)?;
            return Some(value);
        }
        match split_key(line.content)? {
            Some(_) => self.mapping(indent),
            None => {
                let value = scalar_value(line.content)?;
                self.i += 1;
                self.after_scalar(parent)?;
                Some(value)
            }
        }
    }

    /// After a value that ends on its line: a deeper line would continue it
    /// (a multi-line scalar) or be an error; either way not ours.
    fn after_scalar(&self, parent: Option<usize>) -> Option<()> {
        match (self.peek(), parent) {
            (Some(next), Some(p)) if next.indent > p => None,
            (Some(_), None) => None,
            _ => Some(()),
        }
    }

    fn mapping(&mut self, indent: usize) -> Option<Value> {
        let mut map = Mapping::new();
        while let Some(line) = self.peek() {
            if line.indent < indent {
                break;
            }
            if line.indent > indent || is_dash(line.content) {
                return None;
            }
            // libyaml takes a key on one line of at most 1024 characters.
            let (key, rest) = split_key(line.content)?.filter(|(k, _)| k.len() <= 1000)?;
            let key = key_value(key)?;
            self.i += 1;
            let value = if rest.is_empty() {
                match self.peek() {
                    Some(next) if next.indent > indent => self.node(next.indent, Some(indent))?,
                    // A sequence may sit at its key's own indentation.
                    Some(next) if next.indent == indent && is_dash(next.content) => self.sequence(indent)?,
                    _ => Value::Null,
                }
            } else {
                let value = inline_value(rest)?;
                self.after_scalar(Some(indent))?;
                value
            };
            if map.insert(key, value).is_some() {
                // serde_yaml refuses duplicate keys; let it say where.
                return None;
            }
        }
        Some(Value::Mapping(map))
    }

    fn sequence(&mut self, indent: usize) -> Option<Value> {
        let mut items = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent != indent || !is_dash(line.content) {
                if line.indent > indent {
                    return None;
                }
                break;
            }
            let rest = line.content[1..].trim_start_matches(' ');
            if rest.is_empty() || rest.starts_with('#') {
                if rest.starts_with('#') && !line.content[1..].starts_with(' ') {
                    return None;
                }
                self.i += 1;
                items.push(match self.peek() {
                    Some(next) if next.indent > indent => self.node(next.indent, Some(indent))?,
                    _ => Value::Null,
                });
                continue;
            }
            // The item's text becomes a line of its own at its column, so
            // `- name: x` followed by `  address: 1` is a mapping at that column.
            let column = indent + (line.content.len() - rest.len());
            self.lines[self.i] = Line {
                indent: column,
                content: rest,
            };
            items.push(self.node(column, Some(indent))?);
        }
        Some(Value::Sequence(items))
    }
}

fn is_dash(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// What may follow a value on its line: nothing, or a comment after a space.
fn end_of_line(rest: &str) -> Option<()> {
    let trimmed = rest.trim_start_matches(' ');
    (trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < rest.len())).then_some(())
}

/// `key: rest` (rest without its leading spaces; empty, comment included, for
/// a value on the lines below), `None` inside when the line is no key, or
/// `None` outside when it is not ours.
fn split_key(content: &str) -> Option<Option<(Key<'_>, &str)>> {
    let (key, after) = if content.starts_with(['"', '\'']) {
        let (key, after) = quoted(content)?;
        (Key::Quoted(key), after)
    } else {
        let bytes = content.as_bytes();
        let mut colon = None;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'#' && i > 0 && bytes[i - 1] == b' ' {
                break;
            }
            if b == b':' && bytes.get(i + 1).is_none_or(|&n| n == b' ') {
                colon = Some(i);
                break;
            }
        }
        let Some(colon) = colon else {
            return Some(None);
        };
        let key = content[..colon].trim_end_matches(' ');
        if !plain_start(key) {
            return None;
        }
        (Key::Plain(key), &content[colon..])
    };
    let after = after.trim_start_matches(' ');
    let Some(rest) = after.strip_prefix(':') else {
        return match key {
            // A quoted scalar alone on its line.
            Key::Quoted(_) => Some(None),
            Key::Plain(_) => None,
        };
    };
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    let rest = rest.trim_start_matches(' ');
    if rest.starts_with('#') {
        return Some(Some((key, "")));
    }
    Some(Some((key, rest)))
}

enum Key<'a> {
    Plain(&'a str),
    Quoted(String),
}

impl Key<'_> {
    fn len(&self) -> usize {
        match self {
            Key::Plain(s) => s.len(),
            Key::Quoted(s) => s.len(),
        }
    }
}

fn key_value(key: Key<'_>) -> Option<Value> {
    match key {
        Key::Plain(s) => resolve(s),
        Key::Quoted(s) => Some(Value::String(s)),
    }
}

/// A value written after its key, on the key's line.
fn inline_value(rest: &str) -> Option<Value> {
    if rest.starts_with(['[', '{']) {
        let (value, after) = flow(rest, 0)?;
        end_of_line(after)?;
        return Some(value);
    }
    scalar_value(rest)
}

/// A scalar that makes up the rest of a line in block context.
fn scalar_value(text: &str) -> Option<Value> {
    if text.starts_with(['"', '\'']) {
        let (s, after) = quoted(text)?;
        end_of_line(after)?;
        return Some(Value::String(s));
    }
    let end = text.find(" #").unwrap_or(text.len());
    let plain = text[..end].trim_end_matches(' ');
    if !plain_start(plain) || plain.contains(": ") || plain.ends_with(':') {
        return None;
    }
    resolve(plain)
}

/// Whether `s` may be a plain scalar as far as its first characters go: not
/// empty and not starting with an indicator (`- `, `? `, `: `, flow
/// brackets, anchors, tags, block scalars, quotes and the reserved ones).
fn plain_start(s: &str) -> bool {
    let Some(c) = s.bytes().next() else {
        return false;
    };
    match c {
        b'-' => s.len() > 1 && s.as_bytes()[1] != b' ',
        b'?' | b':' | b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\'' | b'"'
        | b'%' | b'@' | b'`' => false,
        _ => true,
    }
}

/// A one-line quoted scalar at the start of `text` and what follows it.
/// Double-quoted scalars with escapes other than the common ones are
/// serde_yaml's.
fn quoted(text: &str) -> Option<(String, &str)> {
    let q = text.as_bytes()[0];
    let body = &text[1..];
    if q == b'"' {
        let mut out = String::new();
        let mut rest = body;
        loop {
            let end = rest.find(['"', '\\'])?;
            out.push_str(&rest[..end]);
            if rest.as_bytes()[end] == b'"' {
                return Some((out, &rest[end + 1..]));
            }
            let (c, len) = match rest.as_bytes().get(end + 1)? {
                b'"' => ('"', 1),
                b'\\' => ('\\', 1),
                b'/' => ('/', 1),
                b'n' => ('\n', 1),
                b't' => ('\t', 1),
                b'r' => ('\r', 1),
                b'0' => ('\0', 1),
                b'u' => {
                    let hex = rest.get(end + 2..end + 6)?;
                    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return None;
                    }
                    (char::from_u32(u32::from_str_radix(hex, 16).ok()?)?, 5)
                }
                // Other escapes and line continuations: serde_yaml's.
                _ => return None,
            };
            out.push(c);
            rest = &rest[end + 1 + len..];
        }
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let end = rest.find('\'')?;
        out.push_str(&rest[..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix('\'') {
            Some(more) => {
                out.push('\'');
                rest = more;
            }
            None => return Some((out, rest)),
        }
    }
}

/// A flow collection or scalar starting at byte `at` of `text` (after any
/// spaces), and the text after it. One line only.
fn flow(text: &str, depth: usize) -> Option<(Value, &str)> {
    if depth > 32 {
        return None;
    }
    let text = text.trim_start_matches(' ');
    if let Some(mut rest) = text.strip_prefix('[') {
        let mut items = Vec::new();
        rest = rest.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix(']') {
            return Some((Value::Sequence(items), after));
        }
        loop {
            let (item, after) = flow(rest, depth + 1)?;
            items.push(item);
            let after = after.trim_start_matches(' ');
            if let Some(after) = after.strip_prefix(']') {
                return Some((Value::Sequence(items), after));
            }
            rest = after.strip_prefix(',')?.trim_start_matches(' ');
            if rest.starts_with([']', ',']) {
                return None;
            }
        }
    }
    if let Some(mut rest) = text.strip_prefix('{') {
        let mut map = Mapping::new();
        rest = rest.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((Value::Mapping(map), after));
        }
        loop {
            let (key, after) = flow_scalar(rest)?;
            let after = after.trim_start_matches(' ').strip_prefix(": ")?;
            let after = after.trim_start_matches(' ');
            if after.starts_with([',', '}']) {
                return None;
            }
            let (value, after) = flow(after, depth + 1)?;
            if map.insert(key, value).is_some() {
                return None;
            }
            let after = after.trim_start_matches(' ');
            if let Some(after) = after.strip_prefix('}') {
                return Some((Value::Mapping(map), after));
            }
            rest = after.strip_prefix(',')?.trim_start_matches(' ');
            if rest.starts_with(['}', ',']) {
                return None;
            }
        }
    }
    flow_scalar(text)
}

/// A scalar inside a flow collection: quoted, or plain up to a flow
/// indicator. A `:` other than a key's `: ` is left to serde_yaml.
fn flow_scalar(text: &str) -> Option<(Value, &str)> {
    if text.starts_with(['"', '\'']) {
        let (s, after) = quoted(text)?;
        return Some((Value::String(s), after));
    }
    let bytes = text.as_bytes();
    let mut end = bytes.len();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b',' | b'[' | b']' | b'{' | b'}' => {
                end = i;
                break;
            }
            b':' if bytes.get(i + 1) == Some(&b' ') => {
                end = i;
                break;
            }
            b':' => return None,
            b'#' if i > 0 && bytes[i - 1] == b' ' => return None,
            _ => {}
        }
    }
    let plain = text[..end].trim_end_matches(' ');
    if !plain_start(plain) {
        return None;
    }
    Some((resolve(plain)?, &text[end..]))
}

/// A plain scalar as serde_yaml resolves it (`visit_untagged_scalar`): null,
/// true/false, an integer in 64 bits, a finite float, else text. An integer
/// that only fits 128 bits is left to serde_yaml (which refuses it).
fn resolve(s: &str) -> Option<Value> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        _ => {}
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return Some(Value::String(s.to_string()));
    }
    if let Some(u) = unsigned(s, u64::from_str_radix) {
        return Some(Value::Number(Number::from(u)));
    }
    if let Some(i) = negative(s, i64::from_str_radix) {
        return Some(Value::Number(Number::from(i)));
    }
    if unsigned(s, u128::from_str_radix).is_some() || negative(s, i128::from_str_radix).is_some() {
        return None;
    }
    if !digits_but_not_number(s) {
        if let Some(f) = float(s) {
            return Some(Value::Number(Number::from(f)));
        }
    }
    Some(Value::String(s.to_string()))
}

type Radix<T> = fn(&str, u32) -> Result<T, std::num::ParseIntError>;

// The three functions below are serde_yaml 0.9's `parse_unsigned_int`,
// `parse_negative_int`, `digits_but_not_number` and `parse_f64`, so that a
// scalar means the same whichever reader read it.

fn unsigned<T>(scalar: &str, from_str_radix: Radix<T>) -> Option<T> {
    let unpositive = scalar.strip_prefix('+').unwrap_or(scalar);
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = unpositive.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(int) = from_str_radix(rest, radix) {
                return Some(int);
            }
        }
    }
    if unpositive.starts_with(['+', '-']) || digits_but_not_number(scalar) {
        return None;
    }
    from_str_radix(unpositive, 10).ok()
}

fn negative<T>(scalar: &str, from_str_radix: Radix<T>) -> Option<T> {
    for (prefix, radix) in [("-0x", 16), ("-0o", 8), ("-0b", 2)] {
        if let Some(rest) = scalar.strip_prefix(prefix) {
            if let Ok(int) = from_str_radix(&format!("-{rest}"), radix) {
                return Some(int);
            }
        }
    }
    if digits_but_not_number(scalar) {
        return None;
    }
    from_str_radix(scalar, 10).ok()
}

fn digits_but_not_number(scalar: &str) -> bool {
    let scalar = scalar.strip_prefix(['-', '+']).unwrap_or(scalar);
    scalar.len() > 1 && scalar.starts_with('0') && scalar[1..].bytes().all(|b| b.is_ascii_digit())
}

fn float(scalar: &str) -> Option<f64> {
    let unpositive = if let Some(unpositive) = scalar.strip_prefix('+') {
        if unpositive.starts_with(['+', '-']) {
            return None;
        }
        unpositive
    } else {
        scalar
    };
    if let ".inf" | ".Inf" | ".INF" = unpositive {
        return Some(f64::INFINITY);
    }
    if let "-.inf" | "-.Inf" | "-.INF" = scalar {
        return Some(f64::NEG_INFINITY);
    }
    if let ".nan" | ".NaN" | ".NAN" = scalar {
        return Some(f64::NAN.copysign(1.0));
    }
    unpositive.parse::<f64>().ok().filter(|f| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The property the reader keeps: it answers serde_yaml's value, or nothing.
    fn same_as_serde_yaml(text: &str) -> Result<(), String> {
        let Some(fast) = parse(text) else {
            return Ok(());
        };
        match serde_yaml::from_str::<Value>(text) {
            Ok(slow) if slow == fast => Ok(()),
            Ok(slow) => Err(format!("{text:?}: read {fast:?}, serde_yaml reads {slow:?}")),
            Err(e) => Err(format!("{text:?}: read {fast:?}, serde_yaml refuses it: {e}")),
        }
    }

    fn repo_file(path: &str) -> String {
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
    }

    #[test]
    fn the_shipped_maps_and_hpmanager_files_are_read_here_and_as_serde_yaml_reads_them() {
        for path in [
            "config/registers.yml",
            "config/heatpumps.yml",
            "tests/fixtures/hpmanager-config/registers.yml",
            "src/registers/testdata/hpmanager_registers.yml",
            "tests/fixtures/hpmanager-config/heatpumps.yml",
        ] {
            let text = repo_file(path);
            let fast = parse(&text).unwrap_or_else(|| panic!("{path} is in the fast reader's subset"));
            assert_eq!(fast, serde_yaml::from_str::<Value>(&text).unwrap(), "{path}");
        }
    }

    #[test]
    fn scalars_resolve_as_serde_yaml_resolves_them() {
        for s in [
            "0x8000",
            "-0x10",
            "+0x10",
            "0o17",
            "0b101",
            "-0b1",
            "42",
            "-42",
            "+42",
            "007",
            "-007",
            "0",
            "-0",
            "1.5",
            "-1.5",
            "1e3",
            ".5",
            "5.",
            ".inf",
            "-.inf",
            ".NaN",
            "inf",
            "nan",
            "1_000",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "0x",
            "0x+1",
            "~",
            "null",
            "Null",
            "NULL",
            "true",
            "False",
            "yes",
            "off",
            "on",
            "y",
            "celsius",
            "-",
            "-a",
            "a b",
            "a:b",
            "http://x/y",
            "a#b",
            "1:30",
            "2026-12-07",
            "12:30:00",
            "+",
            "+-1",
            "--1",
            ".",
            "..",
            "1e400",
            "0.30000000000000004",
        ] {
            for text in [
                format!("k: {s}\n"),
                format!("{s}: v\n"),
                format!("k: [{s}]\n"),
                format!("k: {{a: {s}}}\n"),
            ] {
                same_as_serde_yaml(&text).unwrap();
            }
        }
        assert_eq!(parse("k: 0x8000\n"), serde_yaml::from_str("k: 32768").ok());
        assert_eq!(parse("k: 007\n"), serde_yaml::from_str("k: '007'").ok());
    }

    #[test]
    fn structures_read_here_equal_serde_yaml_and_the_rest_is_left_to_it() {
        let read = [
            "a:\n  b: 1\n  c:\n  - x\n  - y\nd: e\n",
            "a:\n- b: 1\n  c: 2\n-   d: 3\n    e: 4\n- - 1\n  - 2\n-\n  f: 5\n- \n",
            "# c\nmodels:   # c\n  m:\n    blocks:\n      v: {optional: true, description: \"x, (y)\"}\n    \
             registers:\n\n      - name: a   # c\n        not_available: [0x8000, -1]\n        enum_values:\n          0: off\n          1: 'it''s on'\n",
            "k: []\nl: {}\nm: [[1, [2]], {a: [3]}]\nn: ''\no: \"\"\n",
            "\"quoted key\": 1\n'single': 2\n",
            "a: \"say \\\"x\\\" \\\\ \\/ \\n\\t\\u00e9 \\u2028\"\n",
            "a: b # c\nd: e#f\n",
            "k:\n  v\n",
            "- a\n- b\n",
        ];
        for text in read {
            assert!(parse(text).is_some(), "{text:?} is read here");
            same_as_serde_yaml(text).unwrap();
        }
        let left = [
            "",
            "# only\n",
            "---\na: 1\n",
            "a: &x 1\nb: *x\n",
            "a: !tag 1\n",
            "a: |\n  x\n",
            "a: >\n  x\n",
            "a: b\n  c\n",
            "a: \"x\\ay\"\n",
            "a: \"\\ud800\"\n",
            "a: \"x\n  y\"\n",
            "a:\tb\n",
            "a: b\r\n",
            "a: 1\na: 2\n",
            "a: {b: 1, b: 2}\n",
            "a: [1,\n  2]\n",
            "a: [1, 2,]\n",
            "? a\n: b\n",
            "a: b: c\n",
            "a:b\nc: d\n",
            "  a: 1\n",
            "a:\n  - 1\n - 2\n",
            "a: 1\n b: 2\n",
            "\u{feff}a: 1\n",
            "a: \u{85}\n",
            "a: {b}\n",
            "a: [b: c]\n",
            "a: {b:c}\n",
            "a: 99999999999999999999\n",
            "a: - b\n",
            "- a\nb: c\n",
        ];
        for text in left {
            assert!(parse(text).is_none(), "{text:?} is left to serde_yaml");
        }
    }

    /// Text near the subset: valid maps cut and edited at random, and strings
    /// over YAML's own alphabet.
    #[test]
    fn any_text_is_read_as_serde_yaml_reads_it_or_left_to_it() {
        const MAP: &str = "models:\n  m:\n    not_available: [0x8000]\n    blocks:\n      v: {optional: true, description: \"a, b\"}\n    \
            registers:\n      - name: t\n        address: 1\n        scale: 0.1\n        enum_values:\n          0: 'off'\n          1: on\n      \
            - {name: s, address: 2, data_type: string}\n      - name: x # c\n        parts:\n        - {address: 3, factor: 1}\n        - address: 4\n          factor: -1e3\n";
        let edited = (
            0..=MAP.len(),
            proptest::collection::vec((0..MAP.len(), any::<char>()), 0..4),
        )
            .prop_map(|(cut, edits)| {
                let mut chars: Vec<char> = MAP.chars().collect();
                for (at, c) in edits {
                    chars[at] = c;
                }
                chars.truncate(cut);
                chars.into_iter().collect::<String>()
            });
        let alphabet = "[a-c0-2 :#\\-\\[\\]{},'\"\\\\\\n.x+~nu]{0,60}";
        let mut runner = proptest::test_runner::TestRunner::new_with_rng(
            proptest::test_runner::Config {
                cases: 20_000,
                failure_persistence: None,
                ..Default::default()
            },
            proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
        );
        let read = std::cell::Cell::new(0);
        runner
            .run(&prop_oneof![edited, alphabet], |text| {
                read.set(read.get() + usize::from(parse(&text).is_some()));
                same_as_serde_yaml(&text).map_err(TestCaseError::fail)
            })
            .unwrap();
        let read = read.get();
        assert!(read > 2_000, "the reader read only {read} of the cases itself");
    }
}
