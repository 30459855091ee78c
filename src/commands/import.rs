//! `hpflow import`: turns an HPManager config folder into an hpflow pipeline.
//!
//! HPManager's `heatpumps.yml`, `registers.yml` and `display.yml` are read by
//! hpflow as they are, so they are copied unchanged into a folder named after
//! the pipeline (`pipelines/imported/`); `collector.yml` becomes the pipeline
//! itself. The report says where each setting went and which did not carry
//! over, and why.
//!
//! What import interprets itself (YAML syntax, the shape of the files, the
//! values it translates, the serial lines of `rtu` pumps) is checked before
//! anything is written: a folder with errors leaves nothing behind. The
//! written pipeline is then checked as `hpflow validate` does; should that
//! fail, the files stay so the problems can be fixed where the messages point.

mod folder;
mod pipeline;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::Args;

use super::EXIT_CONFIG;
use crate::config::CheckedPipeline;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::hpmanager::heatpumps::{Link, FIX_BEFORE_ENABLING};
use crate::hpmanager::{DISPLAY, HEATPUMPS, REGISTERS};
use folder::Folder;
use pipeline::{EnvNeed, Names, Pipeline};

/// Exit code when the output exists and `--force` was not given (sysexits' EX_CANTCREAT).
pub const EXIT_CANTCREAT: u8 = 73;

/// `hpflow import HPMANAGER_CONFIG_DIR [-o pipelines/imported.toml]`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// HPManager's config folder (heatpumps.yml, registers.yml, collector.yml, display.yml).
    pub dir: PathBuf,
    /// The pipeline to write; the config files go beside it.
    #[arg(short, long, default_value = "pipelines/imported.toml")]
    pub output: PathBuf,
    /// Replace the pipeline and config files of an earlier import (else exit 73 and write nothing).
    #[arg(long)]
    pub force: bool,
}

pub async fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    super::stdout_closed_is_fine(import(&args))
}

/// The pipeline and the folder of config files beside it.
struct Output {
    pipeline: PathBuf,
    files_dir: PathBuf,
    /// `files_dir` as the pipeline names it (relative to the pipeline's folder).
    files_rel: String,
}

impl Output {
    fn new(pipeline: &Path) -> Result<Output, String> {
        let stem = pipeline.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if pipeline.extension().is_none_or(|e| e != "toml") || stem.is_empty() {
            return Err(format!(
                "the output `{}` must be a .toml file (its config files go into a folder named after it)",
                pipeline.display()
            ));
        }
        Ok(Output {
            pipeline: pipeline.to_path_buf(),
            files_dir: pipeline.with_extension(""),
            files_rel: stem.to_string(),
        })
    }
}

fn import(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let config_error = || Ok(ExitCode::from(EXIT_CONFIG));
    let dir = &args.dir;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            eprintln!(
                "error: {} is a file, not a folder: give HPManager's config folder (the one holding {HEATPUMPS})",
                dir.display()
            );
            return config_error();
        }
        Err(e) => {
            eprintln!("error: cannot open HPManager's config folder {}: {e}", dir.display());
            return config_error();
        }
    }
    let out = match Output::new(&args.output) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return config_error();
        }
    };
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(dir), std::fs::canonicalize(&out.files_dir)) {
        if a == b {
            eprintln!(
                "error: the config files would be written into HPManager's folder {} itself; choose another -o",
                dir.display()
            );
            return config_error();
        }
    }

    let folder = match folder::read(dir) {
        Ok(f) => f,
        Err(errors) => return nothing_written(dir, &errors),
    };
    let from = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let shown = out.pipeline.display().to_string();
    let from_shown = from.display().to_string();
    let names = Names {
        files_dir: &out.files_rel,
        pipeline: &shown,
        from: &from_shown,
        now: &now,
    };
    let pipeline = match pipeline::build(&folder, &names) {
        Ok(p) => p,
        Err(errors) => return nothing_written(dir, &errors),
    };

    // Config files first, the pipeline last: a pipeline never names a file not yet there.
    let mut files: Vec<(PathBuf, &[u8])> = vec![
        (out.files_dir.join(HEATPUMPS), folder.heatpumps.text.as_bytes()),
        (out.files_dir.join(REGISTERS), folder.registers.text.as_bytes()),
    ];
    if let Some(d) = &folder.display {
        files.push((out.files_dir.join(DISPLAY), d.text.as_bytes()));
    }
    files.push((out.pipeline.clone(), pipeline.text.as_bytes()));
    let existing: Vec<String> = files
        .iter()
        .filter(|(p, _)| p.symlink_metadata().is_ok())
        .map(|(p, _)| p.display().to_string())
        .collect();
    if !existing.is_empty() && !args.force {
        eprintln!(
            "error: {} already exist{}; nothing was written. Run again with --force to replace {}.",
            existing.join(", "),
            if existing.len() == 1 { "s" } else { "" },
            if existing.len() == 1 { "it" } else { "them" }
        );
        return Ok(ExitCode::from(EXIT_CANTCREAT));
    }
    for (path, bytes) in &files {
        crate::fsutil::write_atomically(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }

    let (check, stood_in) = check(&out.pipeline, &pipeline.text, &pipeline.env);
    let text = report(&folder, &pipeline, &out, &files, &check, &stood_in);
    std::io::stdout().lock().write_all(text.as_bytes())?;
    match check {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(diags) => {
            eprint!("{diags}");
            eprintln!(
                "error: the files were written, but hpflow's check of {} fails (above). The copies in {}/ keep the \
                 lines of HPManager's files: fix them there and run `hpflow validate {}`, or fix HPManager's \
                 folder and import again with --force.",
                out.pipeline.display(),
                out.files_dir.display(),
                out.pipeline.display()
            );
            config_error()
        }
    }
}

fn nothing_written(dir: &Path, errors: &[Diagnostic]) -> anyhow::Result<ExitCode> {
    let mut errors = Diagnostics(errors.to_vec());
    errors.sort();
    eprint!("{errors}");
    let n = errors.errors().count();
    eprintln!(
        "error: {n} problem{} in HPManager's folder {}; nothing was written",
        if n == 1 { "" } else { "s" },
        dir.display()
    );
    Ok(ExitCode::from(EXIT_CONFIG))
}

type Checked = Result<(CheckedPipeline, Diagnostics), Diagnostics>;

/// `hpflow validate`'s check of the written pipeline. Variables it needs but
/// this shell lacks (the InfluxDB token, typically) get a stand-in, so the
/// rest is checked; they are returned for the report.
fn check(path: &Path, text: &str, env: &[EnvNeed]) -> (Checked, Vec<String>) {
    let missing: Vec<&EnvNeed> = env.iter().filter(|e| std::env::var_os(&e.name).is_none()).collect();
    if missing.is_empty() {
        return (crate::config::load_pipeline(path), Vec::new());
    }
    let lookup = |name: &str| {
        missing
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.stand_in.clone())
            .or_else(|| std::env::var(name).ok())
    };
    let checked = crate::config::load_str(path, text, &lookup).and_then(|(f, d)| crate::config::compile(f, d));
    (checked, missing.iter().map(|e| e.name.clone()).collect())
}

fn report(
    folder: &Folder,
    pipeline: &Pipeline,
    out: &Output,
    files: &[(PathBuf, &[u8])],
    check: &Checked,
    stood_in: &[String],
) -> String {
    let mut r = String::new();
    let files_dir = out.files_dir.display();
    let _ = writeln!(
        r,
        "Imported HPManager's config from {} into {}.",
        folder.dir.display(),
        out.pipeline.display()
    );

    let _ = writeln!(r, "\nWritten:");
    let width = files
        .iter()
        .map(|(p, _)| p.display().to_string().len())
        .max()
        .unwrap_or(0);
    for (path, _) in files {
        let what = match path.file_name().and_then(|n| n.to_str()) {
            _ if path == &out.pipeline => "the pipeline".to_string(),
            Some(REGISTERS) if folder.registers.from.is_none() => {
                "hpflow's built-in register map (HPManager's folder has no registers.yml)".to_string()
            }
            Some(name) => format!("HPManager's {name}, unchanged"),
            None => String::new(),
        };
        let _ = writeln!(r, "  {:width$}  {what}", path.display().to_string());
    }

    let _ = writeln!(r, "\nHeat pumps ({files_dir}/{HEATPUMPS}):");
    if folder.pumps.is_empty() {
        let _ = writeln!(
            r,
            "  none: {HEATPUMPS} lists no heat pumps, so the pipeline polls nothing until you add one there."
        );
    }
    let id_width = folder.pumps.iter().map(|p| p.id.len()).max().unwrap_or(0);
    for p in &folder.pumps {
        let label = match (&p.name, &p.location) {
            (Some(n), Some(l)) => format!("{n}, {l}"),
            (Some(n), None) => n.clone(),
            (None, Some(l)) => l.clone(),
            (None, None) => String::new(),
        };
        let link = match &p.link {
            Link::Tcp { host, port } if host.is_empty() => format!("tcp (no host):{port}"),
            Link::Tcp { host, port } => format!("tcp {host}:{port}"),
            Link::Rtu { port, .. } => format!("rtu {port}"),
        };
        let model = if p.model.is_empty() { "no model" } else { &p.model };
        let source = pipeline
            .source_of
            .iter()
            .find(|(i, _)| *i == p.index)
            .map(|(_, s)| s.as_str())
            .unwrap_or("?");
        let state = if p.enabled {
            format!("polled by sources.{source}")
        } else {
            format!("DISABLED: kept in the file, not polled (`enabled: true` there and sources.{source} polls it)")
        };
        let _ = writeln!(
            r,
            "  {:id_width$}  {label} ({model}), {link} unit {}: {state}",
            p.id, p.unit_id
        );
    }
    if !folder.pumps.is_empty() && folder.pumps.iter().all(|p| !p.enabled) {
        let _ = writeln!(
            r,
            "  WARNING: no heat pump is enabled. The pipeline is valid but polls nothing until you set \
             `enabled: true` on one in {files_dir}/{HEATPUMPS}."
        );
    }

    let _ = writeln!(r, "\nCarried over:");
    for c in &pipeline.carried {
        let _ = writeln!(r, "  {}\n      → {}", c.from, c.to);
    }
    let _ = writeln!(
        r,
        "  per pump: id, name, location, model, enabled, modbus.type/host/port/unit_id/timeout\n      → read from \
         {files_dir}/{HEATPUMPS} as they are (tags heat_pump_id, name, location, model as in HPManager)"
    );

    let _ = writeln!(r, "\nNot carried over:");
    let dropped: Vec<_> = folder.dropped.iter().chain(&pipeline.dropped).collect();
    if dropped.is_empty() {
        let _ = writeln!(r, "  nothing");
    }
    for d in dropped {
        let _ = writeln!(r, "  {} ({})\n      {}", d.what, d.at, d.why);
    }

    let mut notes = Vec::new();
    if folder.registers.from.is_none() {
        let models: Vec<&str> = folder.registers.map.models().map(|m| m.name()).collect();
        notes.push(format!(
            "{REGISTERS} is missing: hpflow's built-in map was written instead (models: {})",
            models.join(", ")
        ));
    }
    if folder.collector.file.is_none() {
        notes.push(format!(
            "collector.yml is missing: HPManager's collector defaults are used (poll every {POLL}, batches of \
             100 points or 5s, InfluxDB from INFLUXDB_URL/ORG/BUCKET/TOKEN with HPManager's usual defaults)",
            POLL = "10s"
        ));
    }
    if folder.display.is_none() {
        notes.push(format!(
            "{DISPLAY} is missing: the dashboard gets no `display` key and starts with its own defaults \
             (every field shown, 10 s refresh, 60 min sparklines)"
        ));
    }
    let docker: Vec<&str> = folder
        .pumps
        .iter()
        .filter(|p| matches!(&p.link, Link::Tcp { host, .. } if host == "host.docker.internal"))
        .map(|p| p.id.as_str())
        .collect();
    if !docker.is_empty() {
        notes.push(format!(
            "{} reached through host.docker.internal (HPManager ran in Docker); if hpflow does not run in \
             Docker, set the pump's own address and port in {files_dir}/{HEATPUMPS}",
            docker.join(", ")
        ));
    }
    if pipeline.source_ids.len() > 1 {
        notes.push(format!(
            "each source reads its own entries of the one {HEATPUMPS}; hpflow's check says so for the others \
             (\"skipped (a `modbus_…` source reads it)\")"
        ));
    }
    if !notes.is_empty() {
        let _ = writeln!(r, "\nNotes:");
        for n in notes {
            let _ = writeln!(r, "  - {n}");
        }
    }

    // Disabled entries' problems are listed above from HPManager's file; the
    // check finds them again in the copy.
    let check_diags = match check {
        Ok((_, d)) | Err(d) => d,
    };
    let check_warnings: Vec<&Diagnostic> = check_diags
        .warnings()
        .filter(|w| !w.message.ends_with(FIX_BEFORE_ENABLING))
        .collect();
    if !folder.warnings.is_empty() || !check_warnings.is_empty() {
        let _ = writeln!(r, "\nWarnings:");
        for w in folder.warnings.iter().chain(check_warnings) {
            let _ = writeln!(r, "  {w}");
        }
    }

    let _ = writeln!(r, "\nCheck (as `hpflow validate`):");
    match check {
        Ok((p, _)) => {
            let _ = writeln!(r, "  {}: valid: {}", out.pipeline.display(), p.summary());
        }
        Err(d) => {
            let n = d.errors().count();
            let _ = writeln!(
                r,
                "  {}: {n} error{}, printed below",
                out.pipeline.display(),
                if n == 1 { "" } else { "s" }
            );
        }
    }
    if !stood_in.is_empty() {
        let _ = writeln!(
            r,
            "  checked with a stand-in for {} (not set here); `hpflow validate` and `hpflow run` refuse to \
             start until {} set",
            stood_in.join(", "),
            if stood_in.len() == 1 { "it is" } else { "they are" }
        );
    }

    let env: String = pipeline.env.iter().map(|e| format!("{}=… ", e.name)).collect();
    // collector.yml's logging, as hpflow's own flags.
    let flags: String = folder.collector.log_flags.iter().map(|f| format!("{f} ")).collect();
    let next = if check.is_ok() {
        "Next:"
    } else {
        "Next, once the errors below are fixed:"
    };
    let _ = writeln!(r, "\n{next}");
    let _ = writeln!(r, "  {env}hpflow validate {}", out.pipeline.display());
    let _ = writeln!(r, "  {env}hpflow {flags}run {}", out.pipeline.display());
    r
}
