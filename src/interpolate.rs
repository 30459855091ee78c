//! `${VAR}` and `${VAR:-default}` in string values.
//!
//! Interpolation runs on parsed string values, not on the raw file: a variable
//! holding quotes or newlines cannot change the file's structure, and errors keep
//! pointing at the right line and column.

/// Replaces every `${NAME}` / `${NAME:-default}` using `lookup`; `$$` is a literal
/// `$`. Returns the first problem as a sentence naming the variable.
pub fn interpolate(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unclosed `${{` in {input:?}"))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`${{{expr}}}` is not a valid environment variable reference"));
            }
            match (lookup(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"
                    ))
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cr\"et".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn variables_defaults_and_escapes_are_replaced() {
        assert_eq!(interpolate("Token ${TOKEN}", &env).unwrap(), "Token s3cr\"et");
        assert_eq!(
            interpolate("${MISSING:-http://localhost:8086}", &env).unwrap(),
            "http://localhost:8086"
        );
        assert_eq!(interpolate("${EMPTY:-x}", &env).unwrap(), "x");
        assert_eq!(interpolate("cost $$5 and $x", &env).unwrap(), "cost $5 and $x");
    }

    #[test]
    fn unset_variable_without_default_is_named_in_the_error() {
        let e = interpolate("${INFLUXDB_TOKEN}", &env).unwrap_err();
        assert!(e.contains("`INFLUXDB_TOKEN` is not set"), "{e}");
        assert!(interpolate("${bad name}", &env).is_err());
        assert!(interpolate("${OPEN", &env).is_err());
    }
}
