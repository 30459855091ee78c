//! `hpflow scan`: which addresses of a device answer. Reads one address at a
//! time, at a limited rate (embedded gateways are easily overwhelmed), and
//! prints the answering ranges.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{TargetArgs, EXIT_UNAVAILABLE};
use crate::modbus::{read_once, Reply};
use crate::registers::{RawData, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableArg {
    Input,
    Holding,
    Coil,
    Discrete,
}

impl From<TableArg> for Table {
    fn from(t: TableArg) -> Table {
        match t {
            TableArg::Input => Table::InputRegisters,
            TableArg::Holding => Table::HoldingRegisters,
            TableArg::Coil => Table::Coils,
            TableArg::Discrete => Table::DiscreteInputs,
        }
    }
}

/// `hpflow scan`: find which addresses of a device answer.
#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The table to scan.
    #[arg(long = "type", value_enum, default_value = "input")]
    pub table: TableArg,
    /// Addresses to try, inclusive: `500-3800`, or one address.
    #[arg(long, default_value = "0-9999", value_parser = parse_range)]
    pub range: (u16, u16),
    /// Most requests per time unit: `20/s`, `300/min` or a plain number per second.
    #[arg(long, default_value = "20/s", value_parser = parse_rate)]
    pub rate: Duration,
    /// Also print each answering address and its raw value.
    #[arg(long)]
    pub values: bool,
}

/// `500-3800` → (500, 3800).
pub fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("`{s}` is not an address range; write FIRST-LAST, e.g. 500-3800 (0-65535)");
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.trim(), s.trim()),
    };
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a > b {
        return Err(format!("range `{s}` ends before it starts"));
    }
    Ok((a, b))
}

/// `20/s` → 50 ms between requests.
pub fn parse_rate(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a rate; write e.g. 20/s or 300/min");
    let (n, unit) = s.split_once('/').unwrap_or((s, "s"));
    let n: f64 = n.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return Err(bad()),
    };
    if !(n.is_finite() && n > 0.0) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(per / n))
}

/// Consecutive addresses as `a-b` ranges.
pub fn ranges(addresses: &[u16]) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for &a in addresses {
        match out.last_mut() {
            Some((_, end)) if u32::from(*end) + 1 == u32::from(a) => *end = a,
            _ => out.push((a, a)),
        }
    }
    out
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Addresses that answered with data, and the raw value (first word, or the bit as 0/1).
    pub answering: Vec<(u16, u16)>,
    /// Addresses refused with an exception.
    pub refused: u32,
    /// Addresses that got no answer in time.
    pub silent: u32,
}

impl ScanReport {
    /// The answering addresses as inclusive ranges.
    pub fn ranges(&self) -> Vec<(u16, u16)> {
        ranges(&self.answering.iter().map(|(a, _)| *a).collect::<Vec<_>>())
    }
}

/// Scans the range; `Err` when the device cannot be reached at all.
pub async fn scan(args: &ScanArgs) -> anyhow::Result<ScanReport> {
    let table: Table = args.table.into();
    let mut connector = args.target.connector();
    let mut ctx = None;
    let mut report = ScanReport::default();
    let mut tick = tokio::time::interval(args.rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (first, last) = args.range;
    for a in first..=last {
        tick.tick().await;
        if ctx.is_none() {
            let mut c = connector
                .connect(args.target.timeout)
                .await
                .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", connector.describe()))?;
            tokio_modbus::prelude::SlaveContext::set_slave(&mut c, tokio_modbus::Slave(args.target.unit_id));
            ctx = Some(c);
        }
        let Some(c) = ctx.as_mut() else { continue };
        match read_once(c, table, a, 1, args.target.timeout).await {
            Reply::Data(RawData::Words(w)) => report.answering.push((a, w.first().copied().unwrap_or(0))),
            Reply::Data(RawData::Bits(b)) => report
                .answering
                .push((a, u16::from(b.first().copied().unwrap_or(false)))),
            Reply::Timeout => {
                report.silent += 1;
                if connector.drop_on_timeout() {
                    ctx = None;
                }
            }
            Reply::Broken(e) => {
                eprintln!("{table} {a}: {e}; reconnecting");
                ctx = None;
            }
            _ => report.refused += 1,
        }
    }
    Ok(report)
}

pub async fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    super::stdout_closed_is_fine(print(args).await)
}

async fn print(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let table: Table = args.table.into();
    let report = match scan(&args).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_UNAVAILABLE));
        }
    };
    let mut out = std::io::stdout().lock();
    if args.values {
        for (a, v) in &report.answering {
            writeln!(out, "{table} {a}: {v} (0x{v:04X})")?;
        }
    }
    let found = report.ranges();
    for (a, b) in &found {
        if a == b {
            writeln!(out, "{table} {a}")?;
        } else {
            writeln!(out, "{table} {a}-{b} ({} registers)", b - a + 1)?;
        }
    }
    let (first, last) = args.range;
    writeln!(
        out,
        "{} of {} addresses answer in {} range{}; {} refused, {} timed out",
        report.answering.len(),
        u32::from(last) - u32::from(first) + 1,
        found.len(),
        if found.len() == 1 { "" } else { "s" },
        report.refused,
        report.silent
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_rates_parse_as_written() {
        assert_eq!(parse_range("500-3800"), Ok((500, 3800)));
        assert_eq!(parse_range("506"), Ok((506, 506)));
        assert!(parse_range("9-1").is_err());
        assert!(parse_range("1-70000").is_err());
        assert_eq!(parse_rate("20/s"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_rate("60/min"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_rate("4"), Ok(Duration::from_millis(250)));
        assert!(parse_rate("0/s").is_err());
    }

    #[test]
    fn consecutive_addresses_form_ranges() {
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10]), vec![(1, 3), (7, 7), (9, 10)]);
        assert_eq!(ranges(&[65535]), vec![(65535, 65535)]);
    }
}
