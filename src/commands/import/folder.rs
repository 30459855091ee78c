//! HPManager's config folder as import takes it: the four files, read by
//! [`crate::hpmanager`]'s readers, with hpflow's built-in register map where
//! the folder has no `registers.yml`, and every problem with its file, line
//! and column.
//!
//! Everything import itself interprets is checked here, before anything is
//! written; what hpflow reads as it is (`heatpumps.yml` port ranges, the
//! register map's details) is left to hpflow's own check afterwards.

use std::path::{Path, PathBuf};

use crate::diagnostic::Diagnostic;
use crate::hpmanager::collector::Collector;
use crate::hpmanager::display::Display;
use crate::hpmanager::heatpumps::Pump;
use crate::hpmanager::{read_optional, Dropped, Reader, Text, HEATPUMPS, REGISTERS};
use crate::registers::RegisterMap;
pub(super) struct Registers {
    pub text: String,
    /// The HPManager file, or `None` for hpflow's built-in map.
    pub from: Option<PathBuf>,
    pub map: RegisterMap,
}

/// HPManager's folder, read and checked.
pub(super) struct Folder {
    pub dir: PathBuf,
    pub heatpumps: Text,
    pub pumps: Vec<Pump>,
    pub registers: Registers,
    pub collector: Collector,
    pub display: Option<Display>,
    /// Unknown keys and other things worth a look; the import goes on.
    pub warnings: Vec<Diagnostic>,
    pub dropped: Vec<Dropped>,
}

/// Reads `dir`; every problem found is returned at once.
pub(super) fn read(dir: &Path) -> Result<Folder, Vec<Diagnostic>> {
    let mut r = Reader::default();
    let heatpumps = match read_optional(&dir.join(HEATPUMPS)) {
        Ok(Some(t)) => Some(t),
        Ok(None) => {
            r.errors.push(Diagnostic::file_error(
                &dir.join(HEATPUMPS),
                format!(
                    "not found: an HPManager config folder has {HEATPUMPS} (the heat pumps to poll); \
                     is {} the right folder?",
                    dir.display()
                ),
            ));
            None
        }
        Err(d) => {
            r.errors.push(d);
            None
        }
    };
    let registers = read_registers(&mut r, dir);
    let collector = r.collector(dir);
    let display = r.display(dir);
    let hp_doc = heatpumps.as_ref().and_then(|t| r.yaml(t));
    let pumps = match (&heatpumps, &hp_doc, &registers) {
        (Some(t), Some(doc), Some(reg)) => r.pumps(t, doc, &reg.map),
        _ => Vec::new(),
    };
    if let (Some(d), Some(reg)) = (&display, &registers) {
        r.display_pumps(d, &pumps, &reg.map);
    }
    match (heatpumps, registers) {
        (Some(heatpumps), Some(registers)) if r.errors.is_empty() => Ok(Folder {
            dir: dir.to_path_buf(),
            heatpumps,
            pumps,
            registers,
            collector: collector.unwrap_or_default(),
            display,
            warnings: r.warnings,
            dropped: r.dropped,
        }),
        _ => Err(r.errors),
    }
}

/// `registers.yml`, else hpflow's built-in map.
fn read_registers(r: &mut Reader, dir: &Path) -> Option<Registers> {
    let path = dir.join(REGISTERS);
    let (text, from) = match read_optional(&path) {
        Ok(Some(t)) => (t.text, Some(path)),
        Ok(None) => (super::super::BUILTIN_REGISTERS.to_string(), None),
        Err(d) => {
            r.errors.push(d);
            return None;
        }
    };
    let shown = from
        .clone()
        .unwrap_or_else(|| PathBuf::from("config/registers.yml (built into hpflow)"));
    match RegisterMap::parse(&shown, &text) {
        Ok(map) => Some(Registers { text, from, map }),
        Err(diags) => {
            r.errors.extend(diags);
            None
        }
    }
}
