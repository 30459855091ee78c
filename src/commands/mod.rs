//! The commands behind `hpflow demo`, `healthcheck`, `import`, `read`, `scan` and `simulate`.
//!
//! Each is a clap `Args` struct and `pub async fn run(args) -> anyhow::Result<ExitCode>`;
//! the binary only parses and dispatches.

pub mod demo;
pub mod healthcheck;
pub mod import;
pub mod read;
pub mod reload;
pub mod run;
pub mod scan;
pub mod simulate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::modbus::{inter_frame_gap, Connector, Parity, RtuConnector, TcpConnector};
use crate::registers::{Model, RegisterMap};

pub use demo::DemoArgs;
pub use healthcheck::HealthcheckArgs;
pub use import::ImportArgs;
pub use read::ReadArgs;
pub use scan::ScanArgs;
pub use simulate::SimulateArgs;

/// The register map shipped with hpflow, compiled in so `simulate`, `read` and
/// `demo` work from any folder (and `import` has a map when HPManager's folder
/// lacks one).
pub const BUILTIN_REGISTERS: &str = include_str!("../../config/registers.yml");

/// Exit code for a configuration problem (sysexits' EX_CONFIG), as `validate` uses.
pub const EXIT_CONFIG: u8 = 78;
/// Exit code when another hpflow holds the pipeline's data folder (sysexits'
/// EX_TEMPFAIL: it may work once the other one stops).
pub const EXIT_IN_USE: u8 = 75;
/// Exit code when the device could not be read (sysexits' EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;

/// A closed stdout (`hpflow read | head`) ends the output, not in an error.
pub(crate) fn stdout_closed_is_fine(r: anyhow::Result<ExitCode>) -> anyhow::Result<ExitCode> {
    match r {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}

/// Loads `path`, or the built-in map; prints every problem of the file.
pub fn load_map(path: Option<&PathBuf>) -> Result<RegisterMap, ExitCode> {
    let loaded = match path {
        Some(p) => RegisterMap::load(p),
        None => RegisterMap::parse("config/registers.yml (built in)", BUILTIN_REGISTERS),
    };
    loaded.map_err(|diags| {
        for d in diags {
            eprintln!("{d}");
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

/// The named model of a map, or a message listing the known ones.
pub fn find_model(map: &RegisterMap, name: &str) -> Result<Arc<Model>, ExitCode> {
    match map.model(name) {
        Some(m) => Ok(m.clone()),
        None => {
            let known: Vec<&str> = map.models().map(|m| m.name()).collect();
            eprintln!(
                "error: unknown model `{name}`; the register map has: {}",
                known.join(", ")
            );
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ParityArg {
    None,
    Even,
    Odd,
}

impl From<ParityArg> for Parity {
    fn from(p: ParityArg) -> Parity {
        match p {
            ParityArg::None => Parity::None,
            ParityArg::Even => Parity::Even,
            ParityArg::Odd => Parity::Odd,
        }
    }
}

/// Where a device is: a TCP host or a serial port.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Host name or IP address of the Modbus TCP device or gateway.
    #[arg(long, conflicts_with = "serial", required_unless_present = "serial")]
    pub host: Option<String>,
    /// TCP port.
    #[arg(long, default_value_t = 502)]
    pub port: u16,
    /// Serial device of a Modbus RTU bus (instead of --host).
    #[arg(long)]
    pub serial: Option<PathBuf>,
    /// Serial line speed.
    #[arg(long, default_value_t = 9600)]
    pub baud: u32,
    #[arg(long, value_enum, default_value = "none")]
    pub parity: ParityArg,
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(7..=8))]
    pub data_bits: u8,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub stop_bits: u8,
    /// Modbus unit (slave) id.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=247))]
    pub unit_id: u8,
    /// Time allowed for each request.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl TargetArgs {
    /// The connector for this target.
    pub fn connector(&self) -> Box<dyn Connector> {
        match (&self.serial, &self.host) {
            (Some(path), _) => Box::new(RtuConnector {
                path: path.clone(),
                baud: self.baud,
                parity: self.parity.into(),
                data_bits: self.data_bits,
                stop_bits: self.stop_bits,
                gap: inter_frame_gap(self.baud, self.data_bits, self.parity.into(), self.stop_bits),
                settle: None,
            }),
            (None, host) => Box::new(TcpConnector {
                host: host.clone().unwrap_or_default(),
                port: self.port,
            }),
        }
    }

    /// "tcp host:502 unit 1" for messages.
    pub fn describe(&self) -> String {
        format!("{} unit {}", self.connector().describe(), self.unit_id)
    }
}
