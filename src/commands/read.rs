//! `hpflow read`: one poll of one device, printed for a person (commissioning)
//! or as JSON. The poll runs through the same code as the `modbus_*` sources,
//! and the values are scaled by the same code as the `scale` transform.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Args;

use super::{find_model, load_map, TargetArgs, EXIT_UNAVAILABLE};
use crate::display::{engineering_json, engineering_value, scale_metric};
use crate::event::{Metric, Tags};
use crate::modbus::{one_off_device, plan_options, read_device_once, Device, PollOutcome, Reply};

/// `hpflow read`: poll a device once and print its decoded values.
#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Model of the register map to read with.
    #[arg(long, default_value = "stiebel_eltron_wpm")]
    pub model: String,
    /// Register map file (default: the map built into hpflow).
    #[arg(long)]
    pub registers: Option<PathBuf>,
    /// The device's id in messages and the plan.
    #[arg(long, default_value = "hp1")]
    pub id: String,
    /// Print one JSON object, field → engineering value (absent fields left out).
    #[arg(long, conflicts_with = "plan")]
    pub json: bool,
    /// Print the read plan (requests, start, count) without contacting the device.
    #[arg(long)]
    pub plan: bool,
    /// Most registers in one request.
    #[arg(long)]
    pub max_registers: Option<u16>,
    /// Most unused registers one request may span.
    #[arg(long)]
    pub max_gap: Option<u16>,
}

pub async fn run(args: ReadArgs) -> anyhow::Result<ExitCode> {
    super::stdout_closed_is_fine(print(args).await)
}

async fn print(args: ReadArgs) -> anyhow::Result<ExitCode> {
    let (model, mut device) = match prepare(&args) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let mut stdout = std::io::stdout().lock();
    if args.plan {
        write!(stdout, "{}", plan_text(&args.id, &device))?;
        return Ok(ExitCode::SUCCESS);
    }
    let (m, outcome) = poll(&args, &model, &mut device).await;
    for (req, reply) in &outcome.requests {
        match (reply, &req.block) {
            (Reply::Data(_), _) => {}
            (Reply::IllegalAddress, Some(block)) if req.optional => {
                eprintln!("{}: optional block {block} not served ({req}: exception 02)", args.id)
            }
            _ => eprintln!("{}: {req}: {reply}", args.id),
        }
    }
    if let Some(e) = &outcome.error {
        eprintln!("{}: {e}", args.id);
    }
    let decoded = m.fields.len();
    if args.json {
        let j = engineering_json(m);
        writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Object(j))?
        )?;
    } else {
        if decoded > 0 {
            write!(stdout, "{}", table(&scale_metric(m)))?;
        }
        writeln!(
            stdout,
            "{decoded} of {} fields read from {}",
            model.schema().fields.len(),
            args.target.describe()
        )?;
    }
    Ok(if decoded > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_UNAVAILABLE)
    })
}

/// What `hpflow read --json` prints, as a value: one poll, field → engineering value.
pub async fn json(args: &ReadArgs) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let (model, mut device) = prepare(args).map_err(|_| anyhow::anyhow!("register map or model unusable"))?;
    let (m, outcome) = poll(args, &model, &mut device).await;
    if m.fields.is_empty() {
        anyhow::bail!(
            "nothing read from {}: {}",
            args.target.describe(),
            outcome.first_error().unwrap_or_default()
        );
    }
    Ok(engineering_json(m))
}

/// What `hpflow read --plan` prints.
pub fn plan(args: &ReadArgs) -> anyhow::Result<String> {
    let (_, device) = prepare(args).map_err(|_| anyhow::anyhow!("register map or model unusable"))?;
    Ok(plan_text(&args.id, &device))
}

fn prepare(args: &ReadArgs) -> Result<(Arc<crate::registers::Model>, Device), ExitCode> {
    let map = load_map(args.registers.as_ref())?;
    let model = find_model(&map, &args.model)?;
    let device = device(args, &model);
    Ok((model, device))
}

/// One poll; the metric carries the raw values decoded.
async fn poll(args: &ReadArgs, model: &Arc<crate::registers::Model>, device: &mut Device) -> (Metric, PollOutcome) {
    let started = SystemTime::now();
    let outcome = read_device_once(args.target.connector(), device).await;
    let mut m = Metric::new(&args.id, Arc::new(Tags::new()), started, model.schema().clone());
    m.fields.clone_from(&outcome.fields);
    (m, outcome)
}

fn device(args: &ReadArgs, model: &Arc<crate::registers::Model>) -> Device {
    let hour = Duration::from_secs(3600);
    let options = plan_options(args.max_registers, args.max_gap, hour);
    one_off_device(&args.id, args.target.unit_id, model.plan(&options), args.target.timeout)
}

/// "device hp1: 5 requests touching 70 registers for 29 fields" and one line per request.
pub fn plan_text(id: &str, device: &Device) -> String {
    let plan = device.plan.plan();
    let mut s = format!("device {id}: {}\n", plan.summary());
    for r in plan.requests() {
        let block = match (&r.block, r.optional) {
            (Some(b), true) => format!("  (optional block {b})"),
            (Some(b), false) => format!("  (block {b})"),
            _ => String::new(),
        };
        s += &format!(
            "  function {:02} {:<8} start {:>5} count {:>3}{block}\n",
            r.function_code(),
            r.table.name(),
            r.start,
            r.count
        );
    }
    s
}

/// Units as people write them.
fn unit_symbol(unit: &str) -> &str {
    match unit {
        "celsius" => "°C",
        "kelvin" => "K",
        "percent" => "%",
        "kwh" => "kWh",
        "wh" => "Wh",
        "kw" => "kW",
        "w" => "W",
        "hours" => "h",
        "enum" | "bitmap" | "dimensionless" => "",
        other => other,
    }
}

/// The fields of a scaled poll as an aligned table: name, value with unit, unit, description.
pub fn table(m: &Metric) -> String {
    let mut rows: Vec<[String; 4]> = vec![["NAME".into(), "VALUE".into(), "UNIT".into(), "DESCRIPTION".into()]];
    for meta in &m.schema.fields {
        let Some(v) = m.fields.get(&meta.name) else { continue };
        let value = match engineering_value(Some(meta), v) {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        let unit = meta.unit.as_deref().unwrap_or("");
        let sym = unit_symbol(unit);
        let shown = if sym.is_empty() || meta.label(v).is_some() {
            value
        } else {
            format!("{value} {sym}")
        };
        rows.push([
            meta.name.to_string(),
            shown,
            unit.to_string(),
            meta.description.clone().unwrap_or_default(),
        ]);
    }
    let widths: Vec<usize> = (0..3)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in rows {
        for (c, w) in widths.iter().enumerate() {
            s += &r[c];
            s += &" ".repeat(w - r[c].chars().count() + 2);
        }
        s += r[3].trim_end();
        s = s.trim_end().to_string();
        s.push('\n');
    }
    s
}
