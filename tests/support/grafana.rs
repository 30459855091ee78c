//! The dashboards' queries as Grafana sends them: every query of every dashboard
//! in `grafana/dashboards/` (panel targets, rows' nested panels, template
//! variables), interpolated as Grafana's InfluxDB data source does, and the check
//! that an answer holds data.

use std::path::PathBuf;

use serde_json::Value as Json;

use super::repo;

/// What `$__interval` becomes here: the data source's minimum (`timeInterval`).
pub const INTERVAL: &str = "10s";
pub const INTERVAL_MS: u64 = 10_000;

/// One query of a dashboard, as written there.
#[derive(Debug)]
pub struct Query {
    pub dashboard: String,
    pub panel: String,
    /// The data source uid it names (the target's, else its panel's).
    pub datasource: Option<String>,
    pub text: String,
    pub template_variable: bool,
    /// The panel's value mappings (`fieldConfig.defaults.mappings`; null if none).
    pub mappings: Json,
}

pub fn dashboards() -> Vec<(String, Json)> {
    let dir = repo().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, json)
        })
        .collect()
}

/// Every panel, with the panels of rows (collapsed rows keep theirs inside).
pub fn panels(list: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for p in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        out.push(p);
        out.extend(panels(&p["panels"]));
    }
    out
}

pub fn uid(ds: &Json) -> Option<String> {
    ds["uid"].as_str().map(str::to_string)
}

pub fn queries() -> Vec<Query> {
    let mut out = Vec::new();
    for (name, dash) in dashboards() {
        for p in panels(&dash["panels"]) {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            for t in p["targets"].as_array().map(Vec::as_slice).unwrap_or_default() {
                assert_eq!(
                    t["rawQuery"], true,
                    "{name}: panel {title:?}: write queries as raw InfluxQL so this test can run them"
                );
                assert_ne!(t["hide"], true, "{name}: panel {title:?}: a hidden query");
                let text = t["query"].as_str().unwrap_or_default().to_string();
                assert!(!text.trim().is_empty(), "{name}: panel {title:?}: an empty query");
                out.push(Query {
                    dashboard: name.clone(),
                    panel: title.clone(),
                    datasource: uid(&t["datasource"]).or_else(|| uid(&p["datasource"])),
                    text,
                    template_variable: false,
                    mappings: p["fieldConfig"]["defaults"]["mappings"].clone(),
                });
            }
        }
        for v in dash["templating"]["list"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if v["type"] != "query" {
                continue;
            }
            // Grafana writes a variable's query as a string or as {"query": …}.
            let q = &v["query"];
            let text = q.as_str().or_else(|| q["query"].as_str()).unwrap_or_default();
            out.push(Query {
                dashboard: name.clone(),
                panel: format!("variable {}", v["name"]),
                datasource: uid(&v["datasource"]),
                text: text.to_string(),
                template_variable: true,
                mappings: Json::Null,
            });
        }
    }
    out
}

/// What Grafana substitutes before it sends a query.
pub struct Vars {
    pub from_ms: u128,
    pub to_ms: u128,
    /// The values selected in the `heat_pump_id` variable.
    pub pumps: Vec<String>,
    /// The value of the `time_zone` variable (an IANA name for InfluxQL's `tz()`).
    pub time_zone: String,
}

/// Replaces Grafana's variables as Grafana's InfluxDB data source does: the time
/// filter in epoch ms, a multi-value variable in a regex as `(a|b)`. Fails on any
/// variable left over.
pub fn interpolate(q: &Query, v: &Vars) -> String {
    let time_filter = format!("time >= {}ms and time <= {}ms", v.from_ms, v.to_ms);
    let pumps = format!("({})", v.pumps.join("|"));
    let range_ms = (v.to_ms - v.from_ms).to_string();
    let range_s = ((v.to_ms - v.from_ms) / 1000).to_string();
    let interval_ms = INTERVAL_MS.to_string();
    let (from, to) = (v.from_ms.to_string(), v.to_ms.to_string());
    // Longer names first, so `$__interval` does not eat `$__interval_ms`.
    let vars: [(&str, &str); 18] = [
        ("${__interval_ms}", &interval_ms),
        ("$__interval_ms", &interval_ms),
        ("${__interval}", INTERVAL),
        ("$__interval", INTERVAL),
        ("$__timeFilter", &time_filter),
        ("$timeFilter", &time_filter),
        ("${__range_ms}", &range_ms),
        ("$__range_ms", &range_ms),
        ("${__range_s}", &range_s),
        ("$__range_s", &range_s),
        ("${__from}", &from),
        ("$__from", &from),
        ("${__to}", &to),
        ("$__to", &to),
        ("${heat_pump_id}", &pumps),
        ("$heat_pump_id", &pumps),
        ("${time_zone}", &v.time_zone),
        ("$time_zone", &v.time_zone),
    ];
    let mut s = q.text.clone();
    for (name, value) in vars {
        s = s.replace(name, value);
    }
    // A `$` may stay only as a regex anchor (`/^(hp1|hp2)$/`).
    let b = s.as_bytes();
    let left = (0..b.len()).find(|&i| {
        (b[i] == b'$'
            && b.get(i + 1)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'{'))
            || b[i..].starts_with(b"[[")
    });
    if let Some(i) = left {
        panic!(
            "{} / {}: variable {:?} left after interpolation in: {s}",
            q.dashboard,
            q.panel,
            &s[i..(i + 20).min(s.len())]
        );
    }
    s
}

/// Checks one answer: no error, at least one series, and data in every column.
pub fn check_answer(q: &Query, sent: &str, j: &Json) {
    let at = format!("{} / {}:\n  {sent}\n  ", q.dashboard, q.panel);
    assert!(j.get("error").is_none(), "{at}{j}");
    let results = j["results"].as_array().unwrap_or_else(|| panic!("{at}no results: {j}"));
    assert_eq!(results.len(), 1, "{at}one statement per query: {j}");
    assert!(results[0].get("error").is_none(), "{at}{j}");
    let series = results[0]["series"].as_array().map(Vec::as_slice).unwrap_or_default();
    assert!(!series.is_empty(), "{at}no series: {j}");
    let columns: Vec<&str> = series[0]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for (i, col) in columns.iter().enumerate().filter(|(_, c)| **c != "time") {
        let has_data = series.iter().any(|s| {
            s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|row| !row[i].is_null())
        });
        assert!(has_data, "{at}column {col:?} holds no value: {j}");
    }
}

/// The (alias, field) pairs a query selects, as `fn("field") AS "alias"`, in
/// column order (an inner query's pairs come after the outer one's).
pub fn columns(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("\") AS \"") {
        let before = &rest[..i];
        let field = before.rfind("(\"").map(|j| before[j + 2..].to_string());
        let after = &rest[i + 7..];
        let alias = after.split('"').next().unwrap_or_default().to_string();
        if let Some(field) = field {
            out.push((alias, field));
        }
        rest = after;
    }
    out
}

/// Whether the panel's value mappings name this value (as Grafana compares it: as text).
pub fn maps_value(mappings: &Json, value: &Json) -> bool {
    let key = match value {
        Json::String(s) => s.clone(),
        Json::Number(n) => n.to_string(),
        Json::Bool(b) => b.to_string(),
        _ => return false,
    };
    mappings
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["type"] == "value")
        .any(|m| m["options"].get(&key).is_some())
}
