//! Step 1: from text to typed component configs, every problem collected.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{ComponentEntry, PipelineFile, DEFAULT_QUEUE_SIZE, DEFAULT_SHUTDOWN_TIMEOUT};
use crate::component::{duration, resolve, ComponentConfig, Kind};
use crate::diagnostic::{Diagnostic, Diagnostics, SourceText};
use crate::interpolate::interpolate;

const TOP_LEVEL_KEYS: &[&str] = &["data_dir", "shutdown_timeout", "sources", "transforms", "sinks"];

/// Reads and parses a pipeline file with the process environment.
pub fn load(path: &Path) -> Result<(PipelineFile, Diagnostics), Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::file_error(
            path,
            format!("cannot read pipeline file: {e}"),
        )])
    })?;
    let env = |name: &str| std::env::var(name).ok();
    load_str(path, &text, &env)
}

/// Parses pipeline text; `env` answers `${VAR}` lookups (and `HPFLOW_DATA_DIR`).
pub fn load_str(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(PipelineFile, Diagnostics), Diagnostics> {
    let source = SourceText::new(path, text);
    let mut diags = Diagnostics::default();

    let (mut root, errors) = DeTable::parse_recoverable(text);
    for e in &errors {
        diags.push(Diagnostic::error(&source, e.span(), toml_message(e)));
    }
    if !errors.is_empty() {
        return Err(diags);
    }
    interpolate_document(root.get_mut(), env, &source, &mut diags);

    let dir = path
        .parent()
        .map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
        .unwrap_or(Path::new("."))
        .to_path_buf();

    let mut data_dir = dir.join("data");
    let mut shutdown_timeout = DEFAULT_SHUTDOWN_TIMEOUT;
    let mut sources = Vec::new();
    let mut transforms = Vec::new();
    let mut sinks = Vec::new();
    let mut broken = Vec::new();

    for (key, value) in root.get_ref().iter() {
        match key.get_ref().as_ref() {
            "data_dir" => match value.get_ref().as_str() {
                Some(s) if !s.is_empty() => data_dir = resolve(&dir, Path::new(s)),
                _ => diags.push(Diagnostic::error(
                    &source,
                    Some(value.span()),
                    "`data_dir` must be a non-empty path string",
                )),
            },
            "shutdown_timeout" => match value.get_ref().as_str().map(humantime::parse_duration) {
                Some(Ok(d)) if d > duration::MAX => diags.push(Diagnostic::error(
                    &source,
                    Some(value.span()),
                    "`shutdown_timeout` is longer than a year, the longest duration hpflow takes",
                )),
                Some(Ok(d)) if d > Duration::ZERO => shutdown_timeout = d,
                Some(Ok(_)) => diags.push(Diagnostic::error(
                    &source,
                    Some(value.span()),
                    "`shutdown_timeout` must be longer than 0s",
                )),
                Some(Err(_)) => diags.push(Diagnostic::error(
                    &source,
                    Some(value.span()),
                    format!(
                        "`shutdown_timeout`: {} is not a duration; write e.g. \"30s\" or \"1m\"",
                        value.get_ref().as_str().unwrap_or_default()
                    ),
                )),
                None => diags.push(Diagnostic::error(
                    &source,
                    Some(value.span()),
                    "`shutdown_timeout` must be a duration string such as \"30s\"",
                )),
            },
            "sources" => sources = components(value, &source, &mut diags, &mut broken),
            "transforms" => transforms = components(value, &source, &mut diags, &mut broken),
            "sinks" => sinks = components(value, &source, &mut diags, &mut broken),
            other => diags.push(Diagnostic::error(
                &source,
                Some(key.span()),
                format!(
                    "unknown top-level key `{other}`; expected one of: {}",
                    TOP_LEVEL_KEYS.join(", ")
                ),
            )),
        }
    }
    if let Some(d) = env("HPFLOW_DATA_DIR").filter(|d| !d.is_empty()) {
        data_dir = PathBuf::from(d);
    }

    // Errors so far do not stop here: the compile pass runs on what parsed, so
    // one `validate` shows the whole list.
    Ok((
        PipelineFile {
            source,
            dir,
            data_dir,
            shutdown_timeout,
            sources,
            transforms,
            sinks,
            broken,
        },
        diags,
    ))
}

fn components<C: ComponentConfig>(
    table: &Spanned<DeValue<'_>>,
    source: &SourceText,
    diags: &mut Diagnostics,
    broken: &mut Vec<(Kind, String)>,
) -> Vec<ComponentEntry<C>> {
    let kind = C::KIND;
    let Some(table) = table.get_ref().as_table() else {
        diags.push(Diagnostic::error(
            source,
            Some(table.span()),
            format!(
                "`{}` must be a table of components, e.g. [{}.my_id]",
                kind.table(),
                kind.table()
            ),
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (id, body) in table.iter() {
        let id_str = id.get_ref().to_string();
        // Marked broken until it parses, so the compile pass knows the id exists.
        broken.push((kind, id_str.clone()));
        let name = format!("{}.{}", kind.table(), id_str);
        let err =
            |span: Range<usize>, msg: String| Diagnostic::error(source, Some(span), msg).in_component(name.clone());
        if !valid_id(&id_str) {
            diags.push(err(
                id.span(),
                "component ids may only hold letters, digits, `_` and `-`".into(),
            ));
        }
        let Some(fields) = body.get_ref().as_table() else {
            diags.push(err(
                body.span(),
                format!("a {} must be a table with a `type`", kind.noun()),
            ));
            continue;
        };

        let mut rest = DeTable::new();
        let mut ty: Option<Spanned<String>> = None;
        let mut inputs = Vec::new();
        let mut inputs_seen = false;
        let mut queue_size = DEFAULT_QUEUE_SIZE;
        for (k, v) in fields.iter() {
            match (k.get_ref().as_ref(), kind) {
                ("type", _) => match v.get_ref().as_str() {
                    Some(s) => ty = Some(Spanned::new(v.span(), s.to_string())),
                    None => diags.push(err(v.span(), "`type` must be a string".into())),
                },
                ("inputs", Kind::Transform | Kind::Sink) => {
                    inputs_seen = true;
                    match v.get_ref().as_array() {
                        Some(items) => {
                            for item in items.iter() {
                                match item.get_ref().as_str() {
                                    Some(s) => inputs.push((s.to_string(), item.span())),
                                    None => {
                                        diags.push(err(item.span(), "each input must be a component id string".into()))
                                    }
                                }
                            }
                            if items.is_empty() {
                                diags.push(err(
                                    v.span(),
                                    "`inputs` is empty; name at least one upstream component".into(),
                                ));
                            }
                        }
                        None => diags.push(err(
                            v.span(),
                            "`inputs` must be an array of component ids, e.g. [\"heatpumps\"]".into(),
                        )),
                    }
                }
                ("inputs", Kind::Source) => {
                    diags.push(err(k.span(), "sources take no `inputs`; they read from devices".into()))
                }
                ("queue_size", Kind::Sink) => match v
                    .get_ref()
                    .as_integer()
                    .and_then(|i| i64::from_str_radix(i.as_str(), i.radix()).ok())
                {
                    Some(n) if (1..=1_000_000).contains(&n) => queue_size = n as usize,
                    _ => diags.push(err(
                        v.span(),
                        "`queue_size` must be an integer from 1 to 1000000".into(),
                    )),
                },
                _ => {
                    rest.insert(k.clone(), v.clone());
                }
            }
        }
        if matches!(kind, Kind::Transform | Kind::Sink) && !inputs_seen {
            diags.push(err(
                id.span(),
                format!(
                    "a {} needs `inputs = [...]` naming its upstream components",
                    kind.noun()
                ),
            ));
        }
        let Some(ty) = ty else {
            if fields.get("type").is_some() {
                continue; // present but not a string: already reported
            }
            diags.push(err(
                id.span(),
                format!("missing `type`; known {} types: {}", kind.noun(), C::TYPES.join(", ")),
            ));
            continue;
        };

        let mut key_spans = HashMap::new();
        collect_spans(&rest, "", &mut key_spans);
        let value = Spanned::new(body.span(), DeValue::Table(rest));
        let config = match C::parse(ty.get_ref(), toml::de::ValueDeserializer::from(value)) {
            None => {
                diags.push(err(
                    ty.span(),
                    format!(
                        "unknown {} type `{}`; known types: {}",
                        kind.noun(),
                        ty.get_ref(),
                        C::TYPES.join(", ")
                    ),
                ));
                continue;
            }
            Some(Err(e)) => {
                let span = e.span().unwrap_or_else(|| id.span());
                diags.push(err(span, toml_message(&e)));
                continue;
            }
            Some(Ok(c)) => c,
        };
        broken.pop();
        out.push(ComponentEntry {
            id: id_str,
            config,
            inputs,
            queue_size,
            span: id.span(),
            key_spans,
        });
    }
    out
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// toml's message without its rendered snippet (we print our own location).
fn toml_message(e: &toml::de::Error) -> String {
    let mut msg = e.message().trim().to_string();
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        msg = format!("unknown key {rest}");
    }
    msg
}

fn collect_spans(table: &DeTable<'_>, prefix: &str, out: &mut HashMap<String, Range<usize>>) {
    for (k, v) in table.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        out.insert(path.clone(), k.span());
        collect_value_spans(v, &path, out);
    }
}

fn collect_value_spans(v: &Spanned<DeValue<'_>>, path: &str, out: &mut HashMap<String, Range<usize>>) {
    match v.get_ref() {
        DeValue::Table(t) => collect_spans(t, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.insert(p.clone(), item.span());
                collect_value_spans(item, &p, out);
            }
        }
        _ => {}
    }
}

/// Interpolates every string; problems inside a component name it.
fn interpolate_document(
    root: &mut DeTable<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    source: &SourceText,
    diags: &mut Diagnostics,
) {
    for (key, value) in root.iter_mut() {
        let kind = key.get_ref().to_string();
        match value.get_mut() {
            DeValue::Table(components) if ["sources", "transforms", "sinks"].contains(&kind.as_str()) => {
                for (id, body) in components.iter_mut() {
                    let mut local = Diagnostics::default();
                    interpolate_value(body, env, source, &mut local);
                    let name = format!("{kind}.{}", id.get_ref());
                    diags.extend(local.0.into_iter().map(|d| d.in_component(name.clone())));
                }
            }
            _ => interpolate_value(value, env, source, diags),
        }
    }
}

fn interpolate_table(
    table: &mut DeTable<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    source: &SourceText,
    diags: &mut Diagnostics,
) {
    for (_, v) in table.iter_mut() {
        interpolate_value(v, env, source, diags);
    }
}

fn interpolate_value(
    v: &mut Spanned<DeValue<'_>>,
    env: &dyn Fn(&str) -> Option<String>,
    source: &SourceText,
    diags: &mut Diagnostics,
) {
    let span = v.span();
    match v.get_mut() {
        DeValue::String(s) => match interpolate(s, env) {
            Ok(new) => {
                if new != **s {
                    *s = new.into();
                }
            }
            Err(msg) => diags.push(Diagnostic::error(source, Some(span), msg)),
        },
        DeValue::Table(t) => interpolate_table(t, env, source, diags),
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                interpolate_value(item, env, source, diags);
            }
        }
        _ => {}
    }
}
