//! What each page shows, as plain data for the templates: cards, status rows,
//! tiles with sparklines, grouped fields, charts. Built under the store's read
//! lock, rendered after it is released.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::card::write_card;
use super::format::{
    clock_text, duration_text, field_label, is_chartable, is_on, is_state, number_text, path_segment, since_text,
    unit_symbol, value_text, window_label, Group,
};
use super::sparkline::{draw, Frame, CHART, SPARKLINE};
use crate::event::{FieldMeta, Metric, Value};
use crate::sinks::dashboard::app::App;
use crate::sinks::dashboard::card_cache::CardKey;
use crate::sinks::dashboard::history::secs;
use crate::sinks::dashboard::store::Device;

/// The status rows of a card: label and the state field behind it (Stiebel
/// Eltron's `operating_status` bits). Rows whose field the model lacks are left out.
pub const STATUS_ROWS: &[(&str, &str)] = &[
    ("Compressor", "compressor_running"),
    ("Heating circuit 1 pump", "hc1_pump"),
    ("Heating circuit 2 pump", "hc2_pump"),
    ("Heating", "hp_heating_mode"),
    ("Hot water", "hp_dhw_mode"),
    ("Defrost", "defrost_mode"),
    ("Summer mode", "summer_mode"),
    ("Cooling", "cooling_mode"),
    ("Booster heater", "nhz_stages_running"),
    ("Heat-up program", "heatup_program"),
];

/// Tiles of a pump without configured ones: HPManager's default list, where
/// the model has the field.
pub const DEFAULT_TILES: &[&str] = &[
    "outside_temperature",
    "actual_temperature_hk1",
    "set_temperature_hk1",
    "actual_return_temperature",
    "actual_buffer_temperature",
    "set_buffer_temperature",
    "actual_dhw_temperature",
    "set_dhw_temperature",
    "hot_gas_temperature",
    "wp_water_flow_rate",
    "inverter_power",
    "operating_status",
    "fault_status",
];

/// The window selector of the pump page, in minutes.
pub const WINDOWS: &[u32] = &[5, 15, 30, 60, 180, 360, 720, 1440];

#[derive(Debug, Serialize)]
pub struct Card {
    pub id: String,
    pub href: String,
    pub name: String,
    pub location: Option<String>,
    pub model: String,
    pub online: bool,
    /// "polled 4 s ago", "last poll 3 h ago".
    pub age: String,
    pub last_poll: String,
    pub mode: Option<String>,
    pub fault: Option<String>,
    pub states: Vec<StateRow>,
    pub tiles: Vec<Tile>,
    pub window: String,
    /// Today's COP and energy from the `efficiency` transform, where the last
    /// poll had them (nothing, not 0, without it).
    pub today: Vec<Figure>,
}

/// One of the card's figures of the day.
#[derive(Debug, Serialize)]
pub struct Figure {
    pub field: &'static str,
    pub label: &'static str,
    pub value: String,
    pub unit: &'static str,
}

/// The card's figures of the day: field, label, decimals, unit.
pub const TODAY: &[(&str, &str, usize, &str)] = &[
    ("cop_today", "COP", 2, ""),
    ("heat_today_kwh", "Heat", 1, "kWh"),
    ("electricity_today_kwh", "Electricity", 1, "kWh"),
];

#[derive(Debug, Serialize)]
pub struct StateRow {
    pub field: String,
    pub label: String,
    /// `on`, `off`, or `unknown` when the last poll lacked the field.
    pub class: &'static str,
    pub value: String,
    pub since: String,
}

#[derive(Debug, Serialize)]
pub struct Tile {
    pub field: String,
    pub label: String,
    pub value: String,
    pub unit: String,
    /// Words rather than a number (labels, bitmap bits): set smaller.
    pub text: bool,
    pub spark: Option<Spark>,
}

#[derive(Debug, Serialize)]
pub struct Spark {
    pub d: String,
    pub min: String,
    pub max: String,
}

#[derive(Debug, Serialize)]
pub struct PumpPage {
    pub card: Card,
    pub window: u32,
    pub windows: Vec<WindowLink>,
    pub charts: Vec<Chart>,
    pub groups: Vec<GroupView>,
    /// Fields of the model the last poll did not bring (not answered, or a failed read).
    pub absent: Vec<String>,
    pub changes: Vec<ChangeRow>,
}

#[derive(Debug, Serialize)]
pub struct WindowLink {
    pub label: String,
    pub href: String,
    pub current: bool,
}

#[derive(Debug, Serialize)]
pub struct Chart {
    pub field: String,
    pub label: String,
    pub title: String,
    pub unit: String,
    pub value: String,
    pub spark: Option<Spark>,
    pub from: String,
}

#[derive(Debug, Serialize)]
pub struct GroupView {
    pub title: &'static str,
    pub rows: Vec<Row>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub field: String,
    pub label: String,
    pub value: String,
    pub unit: String,
    pub since: Option<String>,
    pub chart_href: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ChangeRow {
    pub at: String,
    pub label: String,
    pub from: String,
    pub to: String,
    pub held: Option<String>,
}

/// Compares with runs of digits as numbers, so `hp2` sorts before `hp10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        let (ca, cb) = match (a.chars().next(), b.chars().next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, _) => return std::cmp::Ordering::Less,
            (_, None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => (x, y),
        };
        if ca.is_ascii_digit() && cb.is_ascii_digit() {
            let da = a.len() - a.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let db = b.len() - b.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let (na, nb) = (a[..da].trim_start_matches('0'), b[..db].trim_start_matches('0'));
            let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if ord != std::cmp::Ordering::Equal {
                return ord;
            }
            (a, b) = (&a[da..], &b[db..]);
        } else {
            if ca != cb {
                return ca.cmp(&cb);
            }
            (a, b) = (&a[ca.len_utf8()..], &b[cb.len_utf8()..]);
        }
    }
}

pub fn pump_href(id: &str) -> String {
    format!("/pump/{}", path_segment(id))
}

impl App {
    /// Every pump's card as HTML, in natural id order (hp2 before hp10).
    ///
    /// A card changes only with its pump's data, the settings or the second
    /// on the clock (ages, sparkline x axis), so each is rendered at most once
    /// per second and pump and then served from the `CardCache`: what makes the
    /// overview cheap enough for thousands of requests a second. A card that
    /// must be rendered is written by `card::write_card`, not the template
    /// engine, so that a new second on the clock stays cheap too.
    pub fn overview_html(&self, now: SystemTime) -> Vec<Arc<str>> {
        self.overview_cards(now, true, |card| {
            let mut html = String::with_capacity(6 * 1024);
            write_card(&mut html, card, true);
            html
        })
    }

    /// The overview's cards through the template engine, as it rendered them
    /// before `card::write_card`, past the cache: what the tests compare the
    /// page with.
    #[cfg(test)]
    pub(crate) fn overview_via_template(&self, now: SystemTime) -> Vec<Arc<str>> {
        self.overview_cards(now, false, |card| {
            self.templates
                .render_str(
                    "{% import \"macros.html\" as m %}{{ m.card(c, true) }}",
                    minijinja::context! { c => minijinja::Value::from(minijinja::value::Serde(card)) },
                )
                .expect("the card macro renders")
        })
    }

    fn overview_cards(&self, now: SystemTime, cached: bool, render: impl Fn(&Card) -> String) -> Vec<Arc<str>> {
        let settings = self.settings();
        let store = self.read_store();
        let mut devices: Vec<&Device> = store.devices.values().collect();
        devices.sort_by(|a, b| natural_cmp(&a.metric.device, &b.metric.device));
        let offline = self.offline_after();
        let mut out = Vec::with_capacity(devices.len());
        for d in devices {
            let key = CardKey {
                generation: d.generation,
                settings: settings.version,
                second: secs(now),
                offline: offline.as_secs(),
            };
            if let Some(html) = self.cards.get(&d.metric.device, &key).filter(|_| cached) {
                out.push(html);
                continue;
            }
            let window = settings.window_minutes(&d.metric.device);
            let fields = self.tile_fields(&d.metric, settings.visible_fields(&d.metric.device));
            let card = self.card(d, now, offline, window, &fields, SPARKLINE);
            let html: Arc<str> = render(&card).into();
            if cached {
                self.cards.put(&d.metric.device, key, html.clone());
            }
            out.push(html);
        }
        out
    }

    /// The page of one pump over `window` minutes, with an extra chart of `chart`.
    pub fn pump_page(&self, id: &str, window: u32, chart: Option<&str>, now: SystemTime) -> Option<PumpPage> {
        let settings = self.settings();
        let store = self.read_store();
        let d = store.devices.get(id)?;
        let m = &d.metric;
        let visible = self.tile_fields(m, settings.visible_fields(id));
        let offline = self.offline_after();
        let card = self.card(d, now, offline, window, &visible, SPARKLINE);
        let href = pump_href(id);
        let windows = WINDOWS
            .iter()
            .map(|&w| WindowLink {
                label: window_label(w),
                href: format!("{href}?window={w}"),
                current: w == window,
            })
            .collect();
        let mut chart_fields: Vec<&str> = Vec::new();
        if let Some(c) = chart.filter(|c| m.meta(c).is_some_and(|meta| is_chartable(meta))) {
            chart_fields.push(c);
        }
        for f in &visible {
            if !chart_fields.contains(&f.as_str()) && m.meta(f).is_some_and(|meta| is_chartable(meta)) {
                chart_fields.push(f);
            }
        }
        let charts = chart_fields
            .iter()
            .map(|f| {
                let meta = m.meta(f).map(|a| &**a);
                Chart {
                    field: f.to_string(),
                    label: field_label(f),
                    title: meta.and_then(|x| x.description.clone()).unwrap_or_default(),
                    unit: unit_symbol(meta.and_then(|x| x.unit.as_deref())).to_string(),
                    value: m.fields.get(f).map_or_else(|| "–".into(), |v| value_text(meta, v)),
                    spark: self.spark(d, f, now, offline, window, CHART),
                    from: format!("−{}", window_label(window)),
                }
            })
            .collect();

        let mut groups: Vec<GroupView> = Group::ALL
            .iter()
            .map(|g| GroupView {
                title: g.title(),
                rows: Vec::new(),
            })
            .collect();
        let mut absent = Vec::new();
        for meta in &m.schema.fields {
            let name = &*meta.name;
            let Some(v) = m.fields.get(name) else {
                absent.push(name.to_string());
                continue;
            };
            let row = Row {
                field: name.to_string(),
                label: field_label(name),
                value: display_value(m, Some(meta), v),
                unit: unit_symbol(meta.unit.as_deref()).to_string(),
                since: m.since.get(name).map(|s| since_text(*s, now, &self.tz)),
                // Relative to the page: short, and the same on every row.
                chart_href: is_chartable(meta).then(|| format!("?window={window}&chart={}#c", path_segment(name))),
            };
            let i = Group::ALL
                .iter()
                .position(|g| *g == Group::of(meta))
                .unwrap_or(Group::ALL.len() - 1);
            groups[i].rows.push(row);
        }
        // Fields the schema does not describe (a model that changed) still show.
        for (name, v) in &m.fields {
            if m.schema.field(name).is_none() {
                if let Some(g) = groups.last_mut() {
                    g.rows.push(Row {
                        field: name.to_string(),
                        label: field_label(name),
                        value: value_text(None, v),
                        unit: String::new(),
                        since: None,
                        chart_href: None,
                    });
                }
            }
        }
        groups.retain(|g| !g.rows.is_empty());

        let changes = d
            .changes
            .iter()
            .rev()
            .map(|c| {
                let meta = c.meta.as_deref().or_else(|| m.meta(&c.field).map(|a| &**a));
                ChangeRow {
                    at: clock_text(c.at, now, &self.tz),
                    label: field_label(&c.field),
                    from: c.from.as_ref().map_or_else(|| "?".into(), |v| value_text(meta, v)),
                    to: value_text(meta, &c.to),
                    held: c
                        .from_since
                        .and_then(|s| c.at.duration_since(s).ok())
                        .map(duration_text),
                }
            })
            .collect();
        Some(PumpPage {
            card,
            window,
            windows,
            charts,
            groups,
            absent,
            changes,
        })
    }

    fn card(
        &self,
        d: &Device,
        now: SystemTime,
        offline: Duration,
        window: u32,
        tiles: &[String],
        frame: Frame,
    ) -> Card {
        let m = &d.metric;
        let age = now.duration_since(m.time).unwrap_or_default();
        let online = d.live && age <= offline;
        let age_text = duration_text(age);
        let age = match (d.live, online) {
            (true, true) => format!("polled {age_text} ago"),
            (true, false) => format!("last poll {age_text} ago"),
            (false, _) => format!("last poll {age_text} ago, before a restart"),
        };
        let mode = m
            .fields
            .get(self.mode_field.as_str())
            .map(|v| value_text(m.meta(&self.mode_field).map(|a| &**a), v));
        let fault = m.fields.get(self.fault_field.as_str()).filter(|v| is_on(v)).map(|v| {
            let meta = m.meta(&self.fault_field).map(|a| &**a);
            let mut text = format!("{}: {}", field_label(&self.fault_field), value_text(meta, v));
            if let Some(Some(since)) = m.since.get(self.fault_field.as_str()) {
                text.push_str(&format!(", {}", since_text(Some(*since), now, &self.tz)));
            }
            text
        });
        let states = STATUS_ROWS
            .iter()
            .filter(|(_, f)| m.meta(f).is_some() || m.fields.contains_key(f))
            .map(|(label, f)| {
                let v = m.fields.get(f);
                StateRow {
                    field: f.to_string(),
                    label: label.to_string(),
                    class: v.map_or("unknown", |v| if is_on(v) { "on" } else { "off" }),
                    value: v.map_or("unknown", |v| if is_on(v) { "on" } else { "off" }).to_string(),
                    since: match m.since.get(f) {
                        Some(s) => since_text(*s, now, &self.tz),
                        None => String::new(),
                    },
                }
            })
            .collect();
        let tiles = tiles
            .iter()
            .map(|f| self.tile(d, f, now, offline, window, frame))
            .collect();
        Card {
            id: m.device.to_string(),
            href: pump_href(&m.device),
            name: m.tags.get("name").cloned().unwrap_or_else(|| m.device.to_string()),
            location: m.tags.get("location").cloned().filter(|l| !l.is_empty()),
            model: m.schema.model.clone(),
            online,
            age,
            last_poll: crate::event::rfc3339(m.time),
            mode,
            fault,
            states,
            tiles,
            window: window_label(window),
            today: TODAY
                .iter()
                .filter_map(|&(field, label, decimals, unit)| {
                    let v = m.fields.get(field)?.as_f64().filter(|v| v.is_finite())?;
                    Some(Figure {
                        field,
                        label,
                        value: format!("{v:.decimals$}"),
                        unit,
                    })
                })
                .collect(),
        }
    }

    fn tile(&self, d: &Device, field: &str, now: SystemTime, offline: Duration, window: u32, frame: Frame) -> Tile {
        let m = &d.metric;
        let meta = m.meta(field).map(|a| &**a);
        let value = m
            .fields
            .get(field)
            .map_or_else(|| "–".to_string(), |v| display_value(m, meta, v));
        Tile {
            field: field.to_string(),
            label: field_label(field),
            text: value.len() > 10 && value.parse::<f64>().is_err(),
            value,
            unit: unit_symbol(meta.and_then(|x| x.unit.as_deref())).to_string(),
            spark: meta
                .filter(|x| is_chartable(x))
                .and_then(|_| self.spark(d, field, now, offline, window, frame)),
        }
    }

    fn spark(
        &self,
        d: &Device,
        field: &str,
        now: SystemTime,
        offline: Duration,
        window: u32,
        frame: Frame,
    ) -> Option<Spark> {
        let series = d.series.get(field)?;
        let t1 = secs(now);
        let t0 = t1.saturating_sub(window.saturating_mul(60));
        let (points, resolution) = series.points_since(t0);
        // A silence longer than the offline threshold (or two buckets) is a gap.
        let gap = (offline.as_secs() as u32).max(resolution * 2);
        let line = draw(points, t0, t1, gap, frame)?;
        let meta = d.metric.meta(field).map(|a| &**a);
        Some(Spark {
            d: line.d,
            min: number_text(meta, f64::from(line.min)),
            max: number_text(meta, f64::from(line.max)),
        })
    }

    /// Ids of every pump the page should offer settings for: seen or configured.
    pub fn pump_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.read_store().devices.keys().map(|k| k.to_string()).collect();
        for k in self.settings().pumps.keys() {
            if !ids.contains(k) {
                ids.push(k.clone());
            }
        }
        ids.sort_by(|a, b| natural_cmp(a, b));
        ids
    }

    /// The configured tiles of a pump, else the default list (or, for a model
    /// without those fields, its first dozen numbers).
    pub fn tile_fields(&self, m: &Metric, configured: Option<&[String]>) -> Vec<String> {
        if let Some(c) = configured {
            return c.to_vec();
        }
        let defaults: Vec<String> = DEFAULT_TILES
            .iter()
            .filter(|f| m.meta(f).is_some())
            .map(|f| f.to_string())
            .collect();
        if !defaults.is_empty() {
            return defaults;
        }
        m.schema
            .fields
            .iter()
            .filter(|f| is_chartable(f))
            .take(12)
            .map(|f| f.name.to_string())
            .collect()
    }
}

/// The named bits of a bitmap word (fields whose `source` is the word's plus
/// ` bit N`); empty for any other field.
fn bits_of<'a>(m: &'a Metric, meta: &FieldMeta) -> Vec<&'a FieldMeta> {
    let Some(source) = meta.source.as_deref() else {
        return Vec::new();
    };
    if !is_state(meta) || meta.labels.is_some() || meta.value_type == crate::event::ValueType::Bool {
        return Vec::new();
    }
    m.schema
        .fields
        .iter()
        .filter(|f| {
            f.source
                .as_deref()
                .and_then(|s| s.strip_prefix(source))
                .is_some_and(|rest| rest.starts_with(" bit "))
        })
        .map(|f| &**f)
        .collect()
}

/// A value as a page shows it; a bitmap word reads as the names of its bits
/// that are on ("Compressor, Heating"), or "idle".
fn display_value(m: &Metric, meta: Option<&FieldMeta>, v: &Value) -> String {
    let bits = meta.map(|x| bits_of(m, x)).unwrap_or_default();
    if bits.is_empty() {
        return value_text(meta, v);
    }
    let on: Vec<String> = bits
        .iter()
        .filter(|b| m.fields.get(&b.name).is_some_and(is_on))
        .map(|b| match STATUS_ROWS.iter().find(|(_, f)| *f == &*b.name) {
            Some((label, _)) => label.to_string(),
            None => field_label(&b.name),
        })
        .collect();
    if on.is_empty() {
        "idle".to_string()
    } else {
        on.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;

    #[test]
    fn pumps_sort_with_numbers_as_numbers() {
        let mut ids = vec!["hp10", "hp2", "hp1", "garage", "hp02b", "hp2a"];
        ids.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(ids, ["garage", "hp1", "hp2", "hp2a", "hp02b", "hp10"]);
    }
}
