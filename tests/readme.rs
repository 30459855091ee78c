//! The README's configuration reference is checked against hpflow itself:
//! - every component type hpflow knows has a section, and every section's key
//!   table lists exactly the keys that component accepts (asked of the real
//!   binary: an unknown key is answered with the list of known ones), nested
//!   tables such as `buffer.*` included;
//! - every TOML example in the README, and every pipeline shipped in
//!   `pipelines/`, passes `hpflow validate`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use hpflow::component::ComponentConfig;
use support::{repo, shipped_pipelines};

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

fn validate(path: &Path, envs: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hpflow"));
    cmd.arg("validate").arg(path);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A scratch folder laid out like the repository (`pipelines/`, and `config/`
/// holding the shipped files), so examples with `../config/…` paths resolve.
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    for entry in std::fs::read_dir(repo().join("config")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.path().join("config").join(entry.file_name())).unwrap();
        }
    }
    let pipelines = dir.path().join("pipelines");
    (dir, pipelines)
}

/// The keys a component of `kind` and type `ty` accepts (or, with `nested`, the
/// keys of one of its tables), from hpflow's own unknown-key error.
fn accepted_keys(kind: &str, ty: &str, nested: Option<&str>) -> BTreeSet<String> {
    let (_dir, pipelines) = scratch();
    let inputs = if kind == "sources" { "" } else { "inputs = [\"src\"]\n" };
    let body = match nested {
        None => "zz_not_a_key = 1\n".to_string(),
        Some(prefix) => {
            // `fields.<name>` → `fields = { example = { zz_not_a_key = 1 } }`
            let mut value = "{ zz_not_a_key = 1 }".to_string();
            let parts: Vec<&str> = prefix.split('.').collect();
            for part in parts[1..].iter().rev() {
                let key = if part.starts_with('<') { "example" } else { part };
                value = format!("{{ {key} = {value} }}");
            }
            format!("{} = {value}\n", parts[0])
        }
    };
    let mut text = format!("[{kind}.c]\ntype = \"{ty}\"\n{inputs}{body}");
    if kind != "sources" {
        text.push_str(
            "\n[sources.src]\ntype = \"modbus_tcp\"\nregisters = \"../config/registers.yml\"\ndevices = []\n",
        );
    }
    let path = pipelines.join("keys.toml");
    std::fs::write(&path, &text).unwrap();
    let (_, out) = validate(&path, &[]);
    let line = out
        .lines()
        .find(|l| l.contains("unknown key `zz_not_a_key`"))
        .unwrap_or_else(|| panic!("no unknown-key error for {kind}.{ty} {nested:?}:\n{text}\n{out}"));
    // serde says "expected one of `a`, `b`", "expected `a` or `b`", "expected `a`"
    // or "there are no fields".
    match line.split_once("`zz_not_a_key`, expected") {
        Some((_, list)) => list.split('`').skip(1).step_by(2).map(str::to_string).collect(),
        None if line.contains("there are no fields") => BTreeSet::new(),
        None => panic!("cannot read the known keys from: {line}"),
    }
}

/// `#### \`name\`` sections and the first cell of each row of their first key table.
fn reference_sections(text: &str) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut sections = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_table = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#### `") {
            current = rest.split('`').next().map(str::to_string);
            in_table = false;
            if let Some(c) = &current {
                sections.insert(c.clone(), Vec::new());
            }
            continue;
        }
        if line.starts_with("#") {
            current = None;
            continue;
        }
        let Some(name) = &current else { continue };
        if line.starts_with("| key |") {
            in_table = true;
            continue;
        }
        if in_table && line.starts_with('|') {
            if line.starts_with("|---") {
                continue;
            }
            let first = line.split('|').nth(1).unwrap_or("");
            let keys: Vec<String> = first.split('`').skip(1).step_by(2).map(str::to_string).collect();
            sections.get_mut(name).unwrap().push(keys);
        } else if in_table {
            in_table = false;
            // Only the first table of a section is its key reference.
            current = None;
        }
    }
    sections
}

#[test]
fn every_component_is_documented_with_exactly_the_keys_it_accepts() {
    let text = readme();
    let sections = reference_sections(&text);
    let kinds: [(&str, &[&str]); 3] = [
        ("sources", hpflow::sources::SourceConfig::TYPES),
        ("transforms", hpflow::transforms::TransformConfig::TYPES),
        ("sinks", hpflow::sinks::SinkConfig::TYPES),
    ];
    let mut checked = 0;
    for (kind, types) in kinds {
        for ty in types.iter() {
            let rows = sections
                .get(*ty)
                .unwrap_or_else(|| panic!("README has no `#### \\`{ty}\\`` section"));
            assert!(!rows.is_empty(), "README's `{ty}` section has no key table");
            // Top-level keys, and nested ones grouped by their prefix.
            let mut top = BTreeSet::new();
            let mut nested: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for row in rows {
                let Some(first) = row.first() else { continue };
                match first.rsplit_once('.') {
                    Some((prefix, _)) => {
                        top.insert(prefix.split('.').next().unwrap().to_string());
                        for k in row {
                            let leaf = k.rsplit('.').next().unwrap().to_string();
                            nested.entry(prefix.to_string()).or_default().insert(leaf);
                        }
                    }
                    None => top.extend(row.iter().cloned()),
                }
            }
            let accepted = accepted_keys(kind, ty, None);
            assert_eq!(
                top, accepted,
                "README's key table of `{ty}` against the keys hpflow accepts"
            );
            for (prefix, keys) in nested {
                let accepted = accepted_keys(kind, ty, Some(&prefix));
                assert_eq!(keys, accepted, "README's `{prefix}.*` keys of `{ty}`");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 12, "every component type was checked");
}

/// The TOML examples of the README: whole pipelines as they are; a sink or
/// transform alone after a small source and `states` transform; anything
/// without a sink read by a console sink.
#[test]
fn every_toml_example_in_the_readme_validates() {
    let text = readme();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(
        blocks.len() >= 8,
        "README has its examples ({} TOML blocks)",
        blocks.len()
    );
    let (dir, pipelines) = scratch();
    std::fs::write(
        dir.path().join("config/display.yml"),
        "refresh_interval: 10\nsparkline_minutes: 60\n",
    )
    .unwrap();
    const PRELUDE: &str = "[sources.heatpumps]\ntype = \"modbus_tcp\"\nregisters = \"../config/registers.yml\"\ndevices = \"../config/heatpumps.yml\"\n\n[transforms.scaled]\ntype = \"scale\"\ninputs = [\"heatpumps\"]\n\n[transforms.states]\ntype = \"state_diff\"\ninputs = [\"scaled\"]\n\n";
    for (i, block) in blocks.iter().enumerate() {
        let mut body = block.clone();
        if !body.contains("[sources.") {
            let defines: Vec<&str> = ["scaled", "states"]
                .into_iter()
                .filter(|id| body.contains(&format!("[transforms.{id}]")))
                .collect();
            let mut prelude = PRELUDE.to_string();
            if defines.contains(&"scaled") {
                prelude = prelude.replace(
                    "[transforms.scaled]\ntype = \"scale\"\ninputs = [\"heatpumps\"]\n\n",
                    "",
                );
            }
            if defines.contains(&"states") {
                prelude = prelude.replace(
                    "[transforms.states]\ntype = \"state_diff\"\ninputs = [\"scaled\"]\n\n",
                    "",
                );
            }
            body = format!("{prelude}{body}");
        }
        if !body.contains("[sinks.") {
            // A source or transform alone: something must read it.
            body.push_str("\n[sinks.readme_check]\ntype = \"console\"\ninputs = [\"*\"]\n");
        }
        let path = pipelines.join(format!("example-{i}.toml"));
        std::fs::write(&path, &body).unwrap();
        let (ok, out) = validate(&path, &[("INFLUXDB_TOKEN", "example-token")]);
        assert!(ok, "README TOML example #{i} does not validate:\n{block}\n---\n{out}");
    }
}

#[test]
fn the_shipped_pipelines_validate_as_shipped() {
    let mut n = 0;
    for entry in std::fs::read_dir(shipped_pipelines()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        // As a user who set nothing yet would run it (no token, no overrides).
        let (ok, out) = validate(&path, &[]);
        assert!(ok, "{} does not validate as shipped:\n{out}", path.display());
        assert!(out.contains("valid:"), "{out}");
        n += 1;
    }
    assert!(n >= 2, "pipelines/ holds demo.toml and heatpump.toml");
    let (_, out) = validate(&shipped_pipelines().join("heatpump.toml"), &[]);
    assert!(
        out.contains("1 source, 3 transforms, 3 sinks"),
        "heatpump.toml: modbus → scale → efficiency → state_diff → influxdb + prometheus + dashboard: {out}"
    );
}
