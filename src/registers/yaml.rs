//! Reading typed values out of `serde_yaml::Value`s with messages a user can
//! act on. The loader walks the document by hand (rather than deriving
//! `Deserialize`) so that one pass reports every bad key of every register,
//! each at its own line.

use serde_yaml::Value as Yaml;

use crate::yaml::scalar;

/// What kind of YAML node `v` is, for "expected …, found …" messages.
pub(crate) fn kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "nothing",
        Yaml::Bool(_) => "true/false",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "text",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

/// Text, or a number or boolean written where text is expected (labels like `1: 2`).
pub(crate) fn text(v: &Yaml) -> Result<String, String> {
    scalar(v).ok_or_else(|| format!("expected text, found {}", kind(v)))
}

/// An integer written as a YAML number or as text (`"0x8000"`, `"-1"`): HPManager's
/// Python read `bitmap_fields` keys with `int()`, so quoted keys occur.
pub(crate) fn integer(v: &Yaml) -> Result<i128, String> {
    match v {
        Yaml::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .ok_or_else(|| format!("expected an integer, found {n}")),
        Yaml::String(s) => parse_int(s).ok_or_else(|| format!("expected an integer, found `{s}`")),
        other => Err(format!("expected an integer, found {}", kind(other))),
    }
}

pub(crate) fn parse_int(s: &str) -> Option<i128> {
    let s = s.trim();
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (radix, digits) = if let Some(d) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        (16, d)
    } else if let Some(d) = digits.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = digits.strip_prefix("0b") {
        (2, d)
    } else {
        (10, digits)
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let value = i128::from_str_radix(digits, radix).ok()?;
    Some(if negative { -value } else { value })
}

/// An integer that must lie in `lo..=hi`.
pub(crate) fn integer_in(v: &Yaml, lo: i128, hi: i128) -> Result<i128, String> {
    let i = integer(v)?;
    if i < lo || i > hi {
        return Err(format!("{i} is outside {lo}..={hi}"));
    }
    Ok(i)
}

/// A finite number.
pub(crate) fn number(v: &Yaml) -> Result<f64, String> {
    match v {
        Yaml::Number(n) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("expected a finite number, found {n}")),
        other => Err(format!("expected a number, found {}", kind(other))),
    }
}

pub(crate) fn boolean(v: &Yaml) -> Result<bool, String> {
    match v {
        Yaml::Bool(b) => Ok(*b),
        other => Err(format!("expected true or false, found {}", kind(other))),
    }
}

/// A list of integers; a single integer counts as a list of one.
pub(crate) fn integer_list(v: &Yaml) -> Result<Vec<i128>, String> {
    match v {
        Yaml::Sequence(items) => items.iter().map(integer).collect(),
        other => integer(other).map(|i| vec![i]),
    }
}

/// Field names end up as InfluxDB field keys, Prometheus series and Grafana
/// queries; keeping them to a plain alphabet spares every sink an escaping bug.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name may not be empty".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "name `{name}` may only contain ASCII letters, digits, `_`, `-` and `.`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_in_the_radixes_yaml_users_write() {
        assert_eq!(parse_int("0x8000"), Some(0x8000));
        assert_eq!(parse_int("-0x10"), Some(-16));
        assert_eq!(parse_int(" 42 "), Some(42));
        assert_eq!(parse_int("0b101"), Some(5));
        assert_eq!(parse_int("abc"), None);
        assert_eq!(parse_int("--1"), None);
        assert_eq!(parse_int("0x"), None);
        assert_eq!(parse_int(""), None);
    }

    #[test]
    fn yaml_numbers_and_quoted_integers_are_integers() {
        let v: Yaml = serde_yaml::from_str("[0x8000, '7', 1.5, x, -3]").unwrap();
        let Yaml::Sequence(items) = v else { unreachable!() };
        assert_eq!(integer(&items[0]), Ok(0x8000));
        assert_eq!(integer(&items[1]), Ok(7));
        assert!(integer(&items[2]).is_err());
        assert!(integer(&items[3]).is_err());
        assert_eq!(integer(&items[4]), Ok(-3));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("compressor_running").is_ok());
        assert!(check_name("a.b-c").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("tëmp").is_err());
    }
}
