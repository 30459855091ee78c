//! The `modbus_tcp` and `modbus_rtu` source configs, and the device inventory
//! they read (inline tables or an HPManager `heatpumps.yml`).
//!
//! ```toml
//! [sources.heatpumps]
//! type = "modbus_tcp"
//! registers = "../config/registers.yml"   # register map; relative to the pipeline file
//! interval = "10s"                        # fixed-rate schedule, never drifts
//! timeout = "5s"                          # per request (and per connection attempt)
//! # in_flight = 16                        # requests sent together (1: one at a time)
//! # max_registers = 125                   # plan options
//! # max_gap = 32
//! # reprobe_interval = "1h"               # refused blocks are tried again after this
//! # phase_spread = true                   # spread first polls over the interval
//! # reconnect_min = "1s"                  # backoff after failures (default: min(1s, interval/2))
//! # reconnect_max = "5s"                  # (default: interval/2)
//!
//! [[sources.heatpumps.devices]]
//! id = "hp1"                              # heat_pump_id tag
//! name = "Heat Pump 1"
//! location = "Garage"
//! model = "stiebel_eltron_wpm"            # a model of the register map
//! host = "192.168.8.74"
//! port = 502
//! unit_id = 1
//! tags = { site = "home" }
//!
//! # Or HPManager's inventory as it is: devices = "../config/heatpumps.yml"
//!
//! [sources.bus]
//! type = "modbus_rtu"
//! port = "/dev/ttyUSB0"
//! baud = 19200
//! parity = "even"                         # none | even | odd
//! data_bits = 8
//! stop_bits = 1
//! # inter_frame_gap = "2ms"               # default: 3.5 characters, at least 2 ms
//! registers = "../config/registers.yml"
//! timeout = "1s"
//!
//! [[sources.bus.devices]]
//! id = "pool"
//! model = "stiebel_eltron_wpm"
//! unit_id = 2
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::inventory::{
    default_true, load_map, resolve_devices, DeviceSpec, Devices, Endpoint, Inventory, Report, Transport,
};
use crate::component::{Check, Claim};
use crate::modbus::{inter_frame_gap, Parity};
use crate::registers::{Model, RegisterMap};

/// The Modbus spec's limit on registers in one read.
pub const MAX_REGISTERS: u16 = 125;

/// `type = "modbus_tcp"`: polls devices over Modbus TCP, one task per device, or
/// per gateway when several unit ids sit behind one host:port.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusTcpConfig {
    /// The register map file (`registers.yml`); each device names one of its models.
    pub registers: PathBuf,
    /// The devices: an array of tables, or the path of an HPManager `heatpumps.yml`
    /// (its `type: rtu` entries are left to a `modbus_rtu` source).
    pub devices: Devices,
    /// Time between polls of a device; polls run on a fixed grid that never drifts.
    #[serde(default = "default_interval", with = "crate::component::duration")]
    pub interval: Duration,
    /// Most registers in one request (1-125).
    #[serde(default)]
    pub max_registers: Option<u16>,
    /// Unmapped registers a request may read across to save a request.
    #[serde(default)]
    pub max_gap: Option<u16>,
    /// How long a block the device refused stays skipped before it is tried again.
    #[serde(default = "default_reprobe", with = "crate::component::duration")]
    pub reprobe_interval: Duration,
    /// Spread the devices' first polls over the interval by a stable hash of their
    /// ids, so many devices do not all poll at the same instant.
    #[serde(default = "default_true")]
    pub phase_spread: bool,
    /// First wait after a failed connection attempt (or a request that timed
    /// out); doubles, with jitter, up to `reconnect_max`. Default: 1s, or half
    /// the interval if that is shorter.
    #[serde(default, with = "crate::component::duration")]
    pub reconnect_min: Option<Duration>,
    /// Longest wait between connection attempts. Default: half the interval, so
    /// a device that comes back is polled again within one interval. Attempts
    /// are only made when a poll is due.
    #[serde(default, with = "crate::component::duration")]
    pub reconnect_max: Option<Duration>,
    /// Time allowed for each request (and for connecting); a device may override it.
    #[serde(default = "default_tcp_timeout", with = "crate::component::duration")]
    pub timeout: Duration,
    /// Most requests sent to a device together, before its replies come back
    /// (1 to 16; 1 sends one at a time). A device is sent requests together
    /// only once a whole poll of it went through one at a time, and goes back
    /// to one at a time if it leaves requests sent together unanswered.
    #[serde(default = "default_in_flight")]
    pub in_flight: u8,
}

/// `type = "modbus_rtu"`: polls the devices on one serial bus, in turn, from the
/// single task that owns the port.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusRtuConfig {
    /// The serial device (`/dev/ttyUSB0`). May be left out when `devices` is a
    /// `heatpumps.yml` whose `rtu` entries all name the same port.
    #[serde(default)]
    pub port: Option<PathBuf>,
    /// Line speed in baud.
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default)]
    pub parity: Parity,
    /// 7 or 8.
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// 1 or 2.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// Silence kept between frames; default 3.5 character times at `baud`, at least 2 ms.
    #[serde(default, with = "crate::component::duration")]
    pub inter_frame_gap: Option<Duration>,
    /// The register map file (`registers.yml`).
    pub registers: PathBuf,
    /// The devices on this bus (`unit_id`, no `host`), or an HPManager `heatpumps.yml`
    /// (its `type: rtu` entries on this port are read, the rest skipped).
    pub devices: Devices,
    /// Time between polls of a device; polls run on a fixed grid that never drifts.
    #[serde(default = "default_interval", with = "crate::component::duration")]
    pub interval: Duration,
    /// Most registers in one request (1-125).
    #[serde(default)]
    pub max_registers: Option<u16>,
    /// Unmapped registers a request may read across to save a request.
    #[serde(default)]
    pub max_gap: Option<u16>,
    /// How long a block the device refused stays skipped before it is tried again.
    #[serde(default = "default_reprobe", with = "crate::component::duration")]
    pub reprobe_interval: Duration,
    /// Spread the devices' first polls over the interval by a stable hash of their
    /// ids, so many devices do not all poll at the same instant.
    #[serde(default = "default_true")]
    pub phase_spread: bool,
    /// First wait after a failed connection attempt (or a request that timed
    /// out); doubles, with jitter, up to `reconnect_max`. Default: 1s, or half
    /// the interval if that is shorter.
    #[serde(default, with = "crate::component::duration")]
    pub reconnect_min: Option<Duration>,
    /// Longest wait between connection attempts. Default: half the interval, so
    /// a device that comes back is polled again within one interval. Attempts
    /// are only made when a poll is due.
    #[serde(default, with = "crate::component::duration")]
    pub reconnect_max: Option<Duration>,
    /// Time allowed for each request. Shorter than TCP's: a silent unit holds the whole bus.
    #[serde(default = "default_rtu_timeout", with = "crate::component::duration")]
    pub timeout: Duration,
}

/// The scheduling keys both sources share (each config has them as its own
/// keys: serde's `flatten` would lose the keys' locations and `deny_unknown_fields`).
#[derive(Debug, Clone)]
pub struct PollConfig {
    pub interval: Duration,
    pub max_registers: Option<u16>,
    pub max_gap: Option<u16>,
    pub reprobe_interval: Duration,
    pub phase_spread: bool,
    pub reconnect_min: Option<Duration>,
    pub reconnect_max: Option<Duration>,
    /// Most requests sent to a device together (1 for a serial bus).
    pub in_flight: u8,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_tcp_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_rtu_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_in_flight() -> u8 {
    16
}
fn default_reprobe() -> Duration {
    Duration::from_secs(3600)
}
fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
/// Common checks of the poll keys.
pub(crate) fn check_poll(p: &PollConfig, timeout: Duration, r: &mut impl Report) {
    if p.interval.is_zero() {
        r.error(Some("interval"), "`interval` must be longer than 0s".into());
    }
    if timeout.is_zero() {
        r.error(Some("timeout"), "`timeout` must be longer than 0s".into());
    }
    if let Some(m) = p.max_registers {
        if !(1..=MAX_REGISTERS).contains(&m) {
            r.error(
                Some("max_registers"),
                format!("`max_registers` must be 1-{MAX_REGISTERS} (the Modbus limit), not {m}"),
            );
        }
    }
    if let (Some(g), m) = (p.max_gap, p.max_registers.unwrap_or(MAX_REGISTERS)) {
        if g >= m {
            r.error(
                Some("max_gap"),
                format!("`max_gap` ({g}) must be smaller than `max_registers` ({m})"),
            );
        }
    }
    if !(1..=crate::modbus::MAX_IN_FLIGHT).contains(&usize::from(p.in_flight)) {
        r.error(
            Some("in_flight"),
            format!(
                "`in_flight` must be 1-{} (1 sends one request at a time), not {}",
                crate::modbus::MAX_IN_FLIGHT,
                p.in_flight
            ),
        );
    }
    if p.reprobe_interval.is_zero() {
        r.error(
            Some("reprobe_interval"),
            "`reprobe_interval` must be longer than 0s".into(),
        );
    }
    if p.reconnect_min.is_some_and(|m| m.is_zero()) {
        r.error(Some("reconnect_min"), "`reconnect_min` must be longer than 0s".into());
    }
    if let (Some(min), Some(max)) = (p.reconnect_min, p.reconnect_max) {
        if max < min {
            r.error(
                Some("reconnect_max"),
                format!(
                    "`reconnect_max` ({}) is shorter than `reconnect_min` ({})",
                    humantime::format_duration(max),
                    humantime::format_duration(min)
                ),
            );
        }
    }
}

impl PollConfig {
    /// The backoff's first and longest wait, defaults applied.
    pub fn reconnect_bounds(&self) -> (Duration, Duration) {
        let half = self.interval / 2;
        let min = self.reconnect_min.unwrap_or_else(|| Duration::from_secs(1).min(half));
        let max = self.reconnect_max.unwrap_or(half).max(min);
        (min, max)
    }
}

macro_rules! poll_config {
    ($c:expr, $in_flight:expr) => {
        PollConfig {
            in_flight: $in_flight,
            interval: $c.interval,
            max_registers: $c.max_registers,
            max_gap: $c.max_gap,
            reprobe_interval: $c.reprobe_interval,
            phase_spread: $c.phase_spread,
            reconnect_min: $c.reconnect_min,
            reconnect_max: $c.reconnect_max,
        }
    };
}

impl ModbusTcpConfig {
    /// The scheduling keys.
    pub fn poll(&self) -> PollConfig {
        poll_config!(self, self.in_flight)
    }

    pub(crate) fn check_into(&self, dir: &Path, r: &mut impl Report) -> Option<(Arc<RegisterMap>, Vec<DeviceSpec>)> {
        check_poll(&self.poll(), self.timeout, r);
        let map = load_map(&crate::component::resolve(dir, &self.registers), r);
        let devices = resolve_devices(&self.devices, Transport::Tcp, None, dir, map.as_deref(), r);
        Some((map?, devices))
    }

    pub fn check(&self, cx: &mut Check<'_>) {
        let dir = cx.pipeline_dir.to_path_buf();
        if let Some((map, devices)) = self.check_into(&dir, cx) {
            declare_outputs(&map, &devices, cx);
            cx.keep(Inventory {
                map,
                devices,
                bus: None,
            });
        }
    }
}

impl ModbusRtuConfig {
    /// The scheduling keys; a serial bus carries one request at a time.
    pub fn poll(&self) -> PollConfig {
        poll_config!(self, 1)
    }

    /// The inter-frame gap: the configured one, else 3.5 characters at the baud
    /// rate (start bit + data + parity + stop bits), at least 2 ms.
    pub fn frame_gap(&self) -> Duration {
        if let Some(g) = self.inter_frame_gap {
            return g;
        }
        inter_frame_gap(self.baud, self.data_bits, self.parity, self.stop_bits)
    }

    pub(crate) fn check_into(
        &self,
        dir: &Path,
        r: &mut impl Report,
    ) -> Option<(Arc<RegisterMap>, Vec<DeviceSpec>, PathBuf)> {
        check_poll(&self.poll(), self.timeout, r);
        if !(300..=4_000_000).contains(&self.baud) {
            r.error(
                Some("baud"),
                format!("`baud` {} is not a serial line speed (e.g. 9600 or 19200)", self.baud),
            );
        }
        if !matches!(self.data_bits, 7 | 8) {
            r.error(
                Some("data_bits"),
                format!("`data_bits` must be 7 or 8, not {}", self.data_bits),
            );
        }
        if !matches!(self.stop_bits, 1 | 2) {
            r.error(
                Some("stop_bits"),
                format!("`stop_bits` must be 1 or 2, not {}", self.stop_bits),
            );
        }
        if self.inter_frame_gap.is_some_and(|g| g.is_zero()) {
            r.error(
                Some("inter_frame_gap"),
                "`inter_frame_gap` must be longer than 0s".into(),
            );
        }
        let bus = self.port.as_ref().map(|p| crate::component::resolve(dir, p));
        if let Some(p) = &self.port {
            if p.as_os_str().is_empty() {
                r.error(
                    Some("port"),
                    "`port` is empty; name the serial device, e.g. /dev/ttyUSB0".into(),
                );
            }
        } else if matches!(self.devices, Devices::Inline(_)) {
            r.error(
                None,
                "missing `port`: the serial device of the bus, e.g. port = \"/dev/ttyUSB0\"".into(),
            );
        }
        let map = load_map(&crate::component::resolve(dir, &self.registers), r);
        let mut devices = resolve_devices(&self.devices, Transport::Rtu, bus.as_deref(), dir, map.as_deref(), r);
        let bus = bus.or_else(|| {
            devices.iter().find_map(|d| match &d.endpoint {
                Endpoint::Rtu { path } => Some(path.clone()),
                Endpoint::Tcp { .. } => None,
            })
        });
        let mut units = HashSet::new();
        for d in &devices {
            if !units.insert(d.unit_id) {
                r.error(
                    Some("devices"),
                    format!("unit id {} is used by two devices on one bus (`{}`)", d.unit_id, d.id),
                );
            }
        }
        let bus = bus?;
        for d in &mut devices {
            d.endpoint = Endpoint::Rtu { path: bus.clone() };
        }
        Some((map?, devices, bus))
    }

    pub fn check(&self, cx: &mut Check<'_>) {
        let dir = cx.pipeline_dir.to_path_buf();
        if let Some((map, devices, bus)) = self.check_into(&dir, cx) {
            let key = self.port.as_ref().map(|_| "port");
            cx.claim(key, Claim::SerialPort(bus.clone()));
            declare_outputs(&map, &devices, cx);
            cx.keep(Inventory {
                map,
                devices,
                bus: Some(bus),
            });
        }
    }
}

fn declare_outputs(map: &RegisterMap, devices: &[DeviceSpec], cx: &mut Check<'_>) {
    let mut done = HashSet::new();
    for d in devices {
        if done.insert(d.model.clone()) {
            if let Some(m) = map.model(&d.model) {
                cx.output(model_schema(m));
            }
        }
    }
}

fn model_schema(m: &Model) -> Arc<crate::event::Schema> {
    m.schema().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example at the top of this file, as the loader would hand it over.
    fn example() -> toml::Table {
        let doc: String = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
            .collect::<Vec<_>>()
            .join("\n");
        toml::from_str(&doc).expect("the documented example is TOML")
    }

    fn component<T: serde::de::DeserializeOwned>(t: &toml::Table, id: &str) -> T {
        let mut c = t["sources"][id].as_table().expect("a component table").clone();
        c.remove("type");
        toml::Value::Table(c)
            .try_into()
            .expect("the documented example deserialises")
    }

    #[test]
    fn the_documented_example_parses() {
        let t = example();
        let tcp: ModbusTcpConfig = component(&t, "heatpumps");
        assert_eq!(tcp.interval, Duration::from_secs(10));
        match &tcp.devices {
            Devices::Inline(d) => {
                assert_eq!(d[0].id, "hp1");
                assert_eq!(d[0].tags.get("site").map(String::as_str), Some("home"));
            }
            Devices::File(_) => panic!("inline devices expected"),
        }
        let rtu: ModbusRtuConfig = component(&t, "bus");
        assert_eq!(rtu.parity, Parity::Even);
        assert_eq!(rtu.timeout, Duration::from_secs(1));
        // 11 bits a character at 19200 baud: 3.5 characters are 2.005 ms.
        assert!(rtu.frame_gap() >= Duration::from_millis(2) && rtu.frame_gap() < Duration::from_millis(3));
    }

    #[test]
    fn reconnect_defaults_keep_a_returning_device_within_one_interval() {
        let t = example();
        let mut tcp: ModbusTcpConfig = component(&t, "heatpumps");
        assert_eq!(
            tcp.poll().reconnect_bounds(),
            (Duration::from_secs(1), Duration::from_secs(5))
        );
        tcp.interval = Duration::from_millis(200);
        assert_eq!(
            tcp.poll().reconnect_bounds(),
            (Duration::from_millis(100), Duration::from_millis(100))
        );
    }

    #[test]
    fn a_device_file_path_or_an_array_is_accepted_for_devices() {
        let f: ModbusTcpConfig = toml::from_str("registers = \"r.yml\"\ndevices = \"heatpumps.yml\"").unwrap();
        assert!(matches!(f.devices, Devices::File(p) if p == Path::new("heatpumps.yml")));
        let e = toml::from_str::<ModbusTcpConfig>(
            "registers = \"r.yml\"\ndevices = [{id = \"a\", model = \"m\", porrt = 1}]",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `porrt`"), "{e}");
    }
}
