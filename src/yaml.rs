//! YAML helpers for the register map and HPManager's files: scalars as
//! text, syntax errors at their line, and the line of a key.
//!
//! serde_yaml keeps no spans for values, so `locate` finds the line of a key
//! path in block-style YAML: `collector.yml:17:3` for `logging.file`,
//! `heatpumps.yml:10:5` for `heatpumps[1].modbus.port`. Used by the device
//! inventory's checks and by `hpflow import`. Flow style (`{a: 1}`) and other
//! rarities are not followed; the caller then names the file alone.

use std::path::Path;

use serde_yaml::Value;

use crate::diagnostic::Diagnostic;

mod block;

/// The value of a YAML document. Block-style YAML as these files are written
/// is read by [`block`], in one pass; anything else, and every error (with its
/// line and column), by serde_yaml. Both give the same value for the same text.
pub(crate) fn parse(text: &str) -> Result<Value, serde_yaml::Error> {
    match block::parse(text) {
        Some(value) => Ok(value),
        None => serde_yaml::from_str(text),
    }
}

/// A YAML syntax error at its line and column: `invalid YAML: …`.
pub(crate) fn syntax_error(path: &Path, e: &serde_yaml::Error) -> Diagnostic {
    let text = e.to_string();
    match e.location() {
        Some(l) => {
            // The location is reported as line/column; don't say it twice.
            let place = format!(" at line {} column {}", l.line(), l.column());
            let message = text.replacen(&place, "", 1);
            Diagnostic::at(path, l.line(), l.column(), format!("invalid YAML: {message}"))
        }
        None => Diagnostic::file_error(path, format!("invalid YAML: {text}")),
    }
}

/// A scalar as text: strings as they are, numbers and bools as YAML writes them.
pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A mapping key as text, for messages.
pub(crate) fn key_text(k: &Value) -> String {
    scalar(k).unwrap_or_else(|| format!("{k:?}"))
}

/// One step of a key path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A mapping key as a path step.
pub(crate) fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

/// `path` and one more step.
pub(crate) fn with(path: &[Seg], seg: Seg) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

/// `a.b[2].c` for messages.
pub(crate) fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A line that holds YAML: not blank, not a comment, not a document marker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    /// 0-based line number in the text.
    pub(crate) number: usize,
    /// Byte offset of the first non-blank character.
    pub(crate) at: usize,
    pub(crate) indent: usize,
    /// The text after the indentation.
    pub(crate) content: &'a str,
}

/// The lines of `text` that hold YAML, with their indentation.
pub(crate) fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut offset = 0;
    for (number, raw) in text.split_inclusive('\n').enumerate() {
        let line = raw.trim_end_matches(['\n', '\r']);
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        let blank = content.trim().is_empty();
        let marker = indent == 0 && (content.starts_with("---") || content.starts_with("..."));
        if !blank && !content.starts_with('#') && !marker {
            out.push(Line {
                number,
                at: offset + indent,
                indent,
                content,
            });
        }
        offset += raw.len();
    }
    out
}

/// The key of a `key: value` or `key:` line, unquoted.
pub(crate) fn key_of(content: &str) -> Option<String> {
    let (key, rest) = if let Some(q) = content.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let end = content[1..].find(q)? + 1;
        (&content[1..end], &content[end + 1..])
    } else {
        let colon = content
            .char_indices()
            .find(|&(i, c)| c == ':' && content[i + 1..].chars().next().is_none_or(|n| n == ' ' || n == '\t'))?
            .0;
        (content[..colon].trim_end(), &content[colon..])
    };
    rest.trim_start().starts_with(':').then(|| key.to_string())
}

/// 1-based line and column of the last key of `path`, or `None` when it
/// cannot be followed.
pub(crate) fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let lines = lines(text);
    let mut range = 0..lines.len();
    let mut found = None;
    for seg in path {
        let (at, col, next) = match seg {
            Seg::Key(k) => find_key(&lines, range.clone(), k)?,
            Seg::Index(i) => find_item(&lines, range.clone(), *i)?,
        };
        found = Some((lines[at].number + 1, col + 1));
        range = next;
    }
    found
}

/// Column and name of the key a line starts with, after any `- ` item markers.
fn item_key(line: &Line<'_>) -> Option<(usize, String)> {
    let mut col = line.indent;
    let mut body = line.content;
    while let Some(rest) = body.strip_prefix("- ") {
        let rest_trim = rest.trim_start_matches(' ');
        col += body.len() - rest_trim.len();
        body = rest_trim;
    }
    Some((col, key_of(body)?))
}

/// The key's line, its column and the range of its value's lines.
fn find_key(
    lines: &[Line<'_>],
    range: std::ops::Range<usize>,
    key: &str,
) -> Option<(usize, usize, std::ops::Range<usize>)> {
    let keys: Vec<(usize, usize, String)> = range
        .clone()
        .filter_map(|i| item_key(&lines[i]).map(|(c, k)| (i, c, k)))
        .collect();
    let level = keys.iter().map(|(_, c, _)| *c).min()?;
    let (at, col, _) = keys.into_iter().find(|(_, c, k)| *c == level && k == key)?;
    let end = (at + 1..range.end)
        .find(|&i| {
            let l = &lines[i];
            // A sequence may sit at its key's own indentation.
            l.indent < col || (l.indent == col && !l.content.starts_with('-'))
        })
        .unwrap_or(range.end);
    Some((at, col, at + 1..end))
}

/// The `index`th item of the sequence in `range`: its line, column and lines.
fn find_item(
    lines: &[Line<'_>],
    range: std::ops::Range<usize>,
    index: usize,
) -> Option<(usize, usize, std::ops::Range<usize>)> {
    let is_item = |l: &Line<'_>| l.content == "-" || l.content.starts_with("- ");
    let level = range
        .clone()
        .map(|i| &lines[i])
        .filter(|l| is_item(l))
        .map(|l| l.indent)
        .min()?;
    let items: Vec<usize> = range
        .clone()
        .filter(|&i| is_item(&lines[i]) && lines[i].indent == level)
        .collect();
    let at = *items.get(index)?;
    let end = items
        .get(index + 1)
        .copied()
        .or_else(|| (at + 1..range.end).find(|&i| lines[i].indent < level))
        .unwrap_or(range.end);
    Some((at, level, at..end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Vec<Seg> {
        p.iter()
            .map(|s| match s.parse::<usize>() {
                Ok(i) => Seg::Index(i),
                Err(_) => Seg::Key(s.to_string()),
            })
            .collect()
    }

    const HEATPUMPS: &str = "\
heatpumps:
- id: hp1
  modbus:
    type: tcp
    port: 502
- id: hp2
  # a comment
  colour: red
  modbus:
    port: 503
";

    #[test]
    fn keys_inside_sequence_items_are_found_by_index() {
        assert_eq!(
            locate(HEATPUMPS, &path(&["heatpumps", "1", "modbus", "port"])),
            Some((10, 5))
        );
        assert_eq!(
            locate(HEATPUMPS, &path(&["heatpumps", "0", "modbus", "port"])),
            Some((5, 5))
        );
        assert_eq!(locate(HEATPUMPS, &path(&["heatpumps", "1", "colour"])), Some((8, 3)));
        assert_eq!(locate(HEATPUMPS, &path(&["heatpumps", "0", "id"])), Some((2, 3)));
        assert_eq!(locate(HEATPUMPS, &path(&["heatpumps", "2"])), None);
        assert_eq!(locate(HEATPUMPS, &path(&["heatpumps", "0", "colour"])), None);
    }

    #[test]
    fn nested_mapping_keys_are_found_at_their_own_level_only() {
        let text = "influxdb:\n  url: x\n  timeout: 10\nlogging:\n  level: INFO\n  file: /var/log/x.log\ntimeout: 3\n";
        assert_eq!(locate(text, &path(&["logging", "file"])), Some((6, 3)));
        assert_eq!(locate(text, &path(&["timeout"])), Some((7, 1)));
        assert_eq!(locate(text, &path(&["influxdb", "timeout"])), Some((3, 3)));
        assert_eq!(dotted(&path(&["heatpumps", "1", "modbus"])), "heatpumps[1].modbus");
    }

    #[test]
    fn indented_sequences_and_quoted_keys_are_followed() {
        let text = "visible_fields:\n  hp1:\n    - a\n    - b\n  \"hp2\":\n    - c\n";
        assert_eq!(locate(text, &path(&["visible_fields", "hp2"])), Some((5, 3)));
        assert_eq!(locate(text, &path(&["visible_fields", "hp1", "1"])), Some((4, 5)));
    }
}
