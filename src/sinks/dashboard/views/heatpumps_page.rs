//! The heat pump inventory as the pages show it: the list with its actions,
//! the form to add a pump and the form to edit one, filled from the file's
//! entry (or from what was typed, when it was refused) with each message next
//! to its input.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_yaml::Value as Yaml;

use super::format::{path_segment, Group};
use super::settings_page::may_edit;
use super::templates::{layout, render};
use crate::hpmanager::edit::{id_of, FieldError};
use crate::sinks::dashboard::app::App;
use crate::sinks::dashboard::connection::ConnectionTest;
use crate::yaml::scalar;

/// The inputs of the pump form, named as the form sends them.
pub const INPUTS: [&str; 8] = ["id", "name", "location", "model", "host", "port", "unit_id", "enabled"];

/// What the pump form shows and sends: text as typed, `enabled` as a checkbox.
#[derive(Serialize, Default, Clone)]
pub struct PumpForm {
    pub id: String,
    pub name: String,
    pub location: String,
    pub model: String,
    pub host: String,
    pub port: String,
    pub unit_id: String,
    pub enabled: bool,
}

impl PumpForm {
    /// An entry of the file as the form shows it.
    pub fn of(entry: &Yaml) -> PumpForm {
        let text = |v: Option<&Yaml>| v.and_then(scalar).unwrap_or_default();
        let mb = entry.get("modbus");
        PumpForm {
            id: id_of(entry).unwrap_or_default(),
            name: text(entry.get("name")),
            location: text(entry.get("location")),
            model: text(entry.get("model")),
            host: text(mb.and_then(|m| m.get("host"))),
            port: text(mb.and_then(|m| m.get("port"))),
            unit_id: text(mb.and_then(|m| m.get("unit_id"))),
            enabled: entry.get("enabled").and_then(Yaml::as_bool).unwrap_or(true),
        }
    }

    /// What was posted (inputs not in [`INPUTS`] are ignored).
    pub fn posted(pairs: &[(String, String)]) -> PumpForm {
        let mut f = PumpForm::default();
        for (k, v) in pairs {
            match k.as_str() {
                "id" => f.id = v.clone(),
                "name" => f.name = v.clone(),
                "location" => f.location = v.clone(),
                "model" => f.model = v.clone(),
                "host" => f.host = v.clone(),
                "port" => f.port = v.clone(),
                "unit_id" => f.unit_id = v.clone(),
                "enabled" => f.enabled = true,
                _ => {}
            }
        }
        f
    }

    /// The entry the inventory checks: empty inputs left out (their defaults
    /// apply), numbers as numbers, anything else as typed so the check names it.
    pub fn entry(&self) -> Yaml {
        let text = |s: &str| match s.trim() {
            "" => Yaml::Null,
            t => Yaml::String(t.to_string()),
        };
        let number = |s: &str| match s.trim().parse::<i64>() {
            Ok(n) => Yaml::Number(n.into()),
            Err(_) => text(s),
        };
        let mut modbus = serde_yaml::Mapping::new();
        modbus.insert("host".into(), text(&self.host));
        modbus.insert("port".into(), number(&self.port));
        modbus.insert("unit_id".into(), number(&self.unit_id));
        let mut m = serde_yaml::Mapping::new();
        m.insert("id".into(), self.id.clone().into());
        m.insert("name".into(), text(&self.name));
        m.insert("location".into(), text(&self.location));
        m.insert("model".into(), self.model.clone().into());
        m.insert("enabled".into(), self.enabled.into());
        m.insert("modbus".into(), Yaml::Mapping(modbus));
        Yaml::Mapping(m)
    }
}

#[derive(Serialize)]
struct Row {
    id: String,
    /// `/heatpumps/{id}`; the actions are below it.
    href: String,
    name: String,
    location: String,
    model: String,
    address: String,
    unit_id: String,
    enabled: bool,
}

/// One field of the pump's model in the displayed-fields checklist.
#[derive(Serialize)]
struct FieldCheck {
    name: String,
    description: String,
    checked: bool,
}

/// The fields of one category, as the pump page groups them.
#[derive(Serialize)]
struct FieldGroup {
    title: &'static str,
    fields: Vec<FieldCheck>,
}

#[derive(Serialize)]
struct ModelOption {
    name: String,
    description: String,
}

#[derive(Serialize, Default)]
pub struct View {
    /// The file's version, sent back with every change.
    pub version: String,
    rows: Vec<Row>,
    models: Vec<ModelOption>,
    /// The add form, or the edit form on the edit page.
    pub form: PumpForm,
    /// Where the form posts.
    action: String,
    /// The id of the pump being edited (the edit page only).
    editing: Option<String>,
    /// Messages by input name (`port`), shown next to the input.
    errors: BTreeMap<String, Vec<String>>,
    /// All messages, for the summary at the top.
    pub all_errors: Vec<String>,
    pub notice: Option<String>,
    /// What the "Test connection" button read.
    pub test: Option<ConnectionTest>,
    /// The edit page's checklist of the model's fields shown on the pump's
    /// card, by category, and the settings version it was read at.
    field_groups: Vec<FieldGroup>,
    settings_version: u64,
    can_edit: bool,
    read_only: Option<String>,
}

fn href(id: &str) -> String {
    format!("/heatpumps/{}", path_segment(id))
}

/// The list of `entries` with the add form (empty: `enabled` ticked).
pub fn view(app: &App, headers: &HeaderMap, entries: &[Yaml], version: String) -> View {
    let (can_edit, read_only) = may_edit(app, headers, "the heat pumps");
    let rows = entries
        .iter()
        .map(|e| {
            let f = PumpForm::of(e);
            let mb = e.get("modbus");
            let kind = mb.and_then(|m| m.get("type")).and_then(scalar);
            let address = match (kind.as_deref(), f.host.as_str()) {
                (Some(k), _) if !k.eq_ignore_ascii_case("tcp") => k.to_string(),
                (_, "") => String::new(),
                (_, host) => format!("{host}:{}", if f.port.is_empty() { "502" } else { &f.port }),
            };
            Row {
                name: if f.name.is_empty() { f.id.clone() } else { f.name },
                address,
                href: href(&f.id),
                id: f.id,
                location: f.location,
                model: f.model,
                unit_id: f.unit_id,
                enabled: f.enabled,
            }
        })
        .collect();
    let models = app
        .registers
        .map
        .iter()
        .flat_map(|m| m.models())
        .map(|m| ModelOption {
            name: m.name().to_string(),
            description: m.description().unwrap_or_default().to_string(),
        })
        .collect();
    View {
        version,
        rows,
        models,
        form: PumpForm {
            enabled: true,
            ..PumpForm::default()
        },
        action: "/heatpumps".into(),
        can_edit,
        read_only,
        ..View::default()
    }
}

impl View {
    /// The edit page of pump `id`, its form filled with `form`.
    pub fn editing(mut self, id: &str, form: PumpForm) -> View {
        self.action = href(id);
        self.editing = Some(id.to_string());
        self.form = form;
        self
    }

    /// `errors` next to their inputs (`modbus.port` at `port`) and in the summary.
    pub fn with_errors(mut self, text: String, errors: &[FieldError]) -> View {
        for e in errors {
            let input = e.field.strip_prefix("modbus.").unwrap_or(&e.field);
            if INPUTS.contains(&input) {
                self.errors
                    .entry(input.to_string())
                    .or_default()
                    .push(e.message.clone());
            }
        }
        if errors.is_empty() {
            self.all_errors.push(text);
        } else {
            self.all_errors.extend(errors.iter().map(|e| e.message.clone()));
        }
        self
    }
}

/// The checklist of the fields of `model` shown for pump `id`, ticked as the
/// dashboard settings' `visible_fields` say (none ticked: the default tiles).
fn field_groups(app: &App, id: &str, model: &str) -> (Vec<FieldGroup>, u64) {
    let settings = app.settings();
    let visible = settings.visible_fields(id).unwrap_or_default();
    let Some(model) = app.registers.map.as_ref().and_then(|m| m.model(model)) else {
        return (Vec::new(), settings.version);
    };
    let groups = Group::ALL
        .iter()
        .map(|&g| FieldGroup {
            title: g.title(),
            fields: (model.schema().fields.iter())
                .filter(|f| Group::of(f) == g)
                .map(|f| FieldCheck {
                    name: f.name.to_string(),
                    description: f.description.clone().unwrap_or_else(|| f.name.to_string()),
                    checked: visible.iter().any(|v| **v == *f.name),
                })
                .collect(),
        })
        .filter(|g| !g.fields.is_empty())
        .collect();
    (groups, settings.version)
}

/// The list page (or the edit page, when the view is [`View::editing`]).
pub fn page(app: &App, headers: &HeaderMap, status: StatusCode, mut v: View) -> Response {
    if let Some(id) = &v.editing {
        (v.field_groups, v.settings_version) = field_groups(app, id, &v.form.model);
    }
    let (heading, main) = match &v.editing {
        Some(id) => (format!("Edit heat pump {id}"), "heatpump_edit.html"),
        None => ("Heat pumps".to_string(), "heatpumps.html"),
    };
    let l = layout(app, headers, heading, "heatpumps", false);
    (status, render(app, l, main, &v, false)).into_response()
}
