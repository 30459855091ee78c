//! From the plant's state to the registers a device serves, and to the truth:
//! the raw values a correct poll must decode from them.
//!
//! Registers the plant knows (temperatures, pressures, status bits, energy)
//! are named here; the rest of the map gets a plausible constant, or the
//! "not available" sentinel for sensors and circuits a single heat pump with
//! one heating circuit does not have.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tokio_modbus::ExceptionCode;

use super::physics::{unit, State};
use crate::event::{Value, ValueType};
use crate::registers::{Cells, DataType, Model, Register, Sample, Table};

/// What a register serves at one instant.
#[derive(Debug, Clone, PartialEq)]
enum Served {
    Raw(Value),
    /// An engineering value; quantised to the register's raw resolution.
    Eng(f64),
    /// The sensor or function is not fitted: the sentinel (absent when decoded).
    NotFitted,
}

/// Which addresses answer at all; fixed for a device.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layout {
    /// Addresses the map documents, per table: the only accepted read starts.
    starts: HashSet<(Table, u16)>,
    /// Documented starts a real controller refuses anyway (a WPMsystem refuses
    /// a read starting at input 608 yet answers spans across it).
    refused_starts: HashSet<(Table, u16)>,
    /// Addresses of optional blocks this device does not have.
    refused: HashSet<(Table, u16)>,
    /// Registers served (not in a refused block), in map order.
    registers: Vec<usize>,
}

impl Layout {
    pub(crate) fn new(model: &Model, refused_blocks: &HashSet<String>) -> Layout {
        let mut l = Layout::default();
        l.refused_starts.insert((Table::InputRegisters, 608));
        for (i, r) in model.registers().iter().enumerate() {
            let refused = r.block.as_deref().is_some_and(|b| refused_blocks.contains(b));
            for a in address_span(r) {
                l.starts.insert((r.table, a));
                if refused {
                    l.refused.insert((r.table, a));
                }
            }
            if !refused {
                l.registers.push(i);
            }
        }
        l
    }
}

/// Every address a register occupies.
fn address_span(r: &Register) -> Vec<u16> {
    if r.parts.is_empty() {
        (0..r.count).filter_map(|i| r.address.checked_add(i)).collect()
    } else {
        r.addresses()
    }
}

/// The registers of one device at one instant.
#[derive(Debug, Clone, Default)]
pub(crate) struct Image {
    words: HashMap<(Table, u16), u16>,
    bits: HashMap<(Table, u16), bool>,
    /// Field → raw value, as a correct poll decodes it (sentinels left out).
    pub(crate) truth: BTreeMap<Arc<str>, Value>,
}

/// Per-device constants the image needs beside the plant's state.
#[derive(Debug, Clone)]
pub(crate) struct Fixed {
    pub seed: u64,
    pub controller: u16,
    /// Counter readings at the simulator's origin, kWh.
    pub heat_heating: f64,
    pub heat_dhw: f64,
    pub el_heating: f64,
    pub el_dhw: f64,
}

impl Fixed {
    pub(crate) fn new(seed: u64, controller: u16) -> Fixed {
        let heat_heating = (15_000.0 + 20_000.0 * unit(seed, 11)).floor();
        let heat_dhw = (3_000.0 + 4_000.0 * unit(seed, 12)).floor();
        Fixed {
            seed,
            controller,
            heat_heating,
            heat_dhw,
            el_heating: (heat_heating / 3.4).floor(),
            el_dhw: (heat_dhw / 2.7).floor(),
        }
    }
}

/// A split counter the way the controller keeps it: the cumulative register
/// takes the whole kWh of the day counter at (local) midnight; the fraction
/// stays. `now` and `at_midnight` are the energy since the origin now and at
/// the last local midnight after it (0 before the first). Both registers are
/// whole kWh of the cumulative readings (`initial` + energy), the same sums
/// `Simulator::energy_at` gives, so a reading that lands on a whole kWh at
/// midnight floors the same way in both.
fn counter(initial: f64, now: f64, at_midnight: f64) -> (i64, i64) {
    let total = (initial + at_midnight).floor();
    let day = ((initial + now).floor() - total).max(0.0);
    (total as i64, day as i64)
}

/// Input registers of sensors and circuits the simulated plant does not have.
fn not_fitted(name: &str) -> bool {
    const PATTERNS: &[&str] = &[
        "fe7",
        "fek",
        "hk2",
        "hk3",
        "_hc2",
        "_hc3",
        "_hc4",
        "_hc5",
        "_hp2",
        "_hp3",
        "_hp4",
        "_hp5",
        "_hp6",
        "_cc2",
        "_cc3",
        "_cc4",
        "_cc5",
        "_fan",
        "_area",
        "collector",
        "cylinder",
        "solar",
        "external",
        "source_temperature",
        "source_pressure",
        "wpm3i",
        "_nhz",
        "set_fixed",
        "application_limit",
        "status_wpm3",
        "_iws",
        "vd2",
        "vd1_2",
    ];
    PATTERNS.iter().any(|p| name.contains(p))
}

fn signal(name: &str, s: &State, f: &Fixed) -> Option<Served> {
    use Served::{Eng, Raw};
    let int = |i: i64| Raw(Value::Int(i));
    let flag = |b: bool| Raw(Value::Bool(b));
    let (heat_heating_total, heat_heating_day) = counter(f.heat_heating, s.heat_heating, s.heat_heating_midnight);
    let (heat_dhw_total, heat_dhw_day) = counter(f.heat_dhw, s.heat_dhw, s.heat_dhw_midnight);
    let (el_heating_total, el_heating_day) = counter(f.el_heating, s.el_heating, s.el_heating_midnight);
    let (el_dhw_total, el_dhw_day) = counter(f.el_dhw, s.el_dhw, s.el_dhw_midnight);
    // Per-heat-pump registers of HP 1 show the system's values: there is one.
    let base = name.strip_suffix("_hp1").unwrap_or(name);
    Some(match base {
        "outside_temperature" => Eng(s.outdoor),
        "actual_temperature_hk1" => Eng(s.hc1),
        "set_temperature_hk1" => Eng(s.hc1_set),
        "actual_flow_temperature_wp" | "actual_flow_temperature" | "hp_flow_temperature" => Eng(s.flow),
        "actual_return_temperature" | "return_temperature" => Eng(s.ret),
        "actual_buffer_temperature" => Eng(s.buffer),
        "set_buffer_temperature" => Eng(s.buffer_set),
        "flow_rate" | "wp_water_flow_rate" | "water_flow_rate" => Eng(s.water_flow),
        "actual_dhw_temperature" => Eng(s.dhw),
        "set_dhw_temperature" => Eng(s.dhw_set),
        "compressor_inlet_temperature" => Eng(s.inlet),
        "hot_gas_temperature" => Eng(s.hot_gas),
        "low_pressure" => Eng(s.low_pressure),
        "mean_pressure" => Eng(s.mean_pressure),
        "high_pressure" => Eng(s.high_pressure),
        // A sealed heating circuit: 1.5 bar filled cold, about 0.01 bar per kelvin warmer.
        "heating_pressure" => Eng(1.5 + 0.01 * ((s.flow + s.ret) / 2.0 - 20.0)),
        "room_actual_temperature_hc1" => Eng(21.0 + 0.4 * (s.t / 5400.0).sin()),
        "room_set_temperature_hc1" => Eng(21.5),
        "room_relative_humidity_hc1" => Eng(45.0 + 3.0 * (s.t / 7200.0).sin()),
        "room_dew_point_hc1" => Eng(8.8),
        "operating_mode" => int(2),
        "comfort_temperature_hk1" => Eng(22.0),
        "eco_temperature_hk1" => Eng(19.0),
        "heating_curve_rise_hk1" => Eng(0.6),
        "comfort_temperature_dhw" => Eng(50.0),
        "eco_temperature_dhw" => Eng(45.0),
        "dhw_stages" => int(2),
        "hc1_pump" | "heating_circuit_pump_1" => flag(s.hc1_pump),
        "hp_heating_mode" => flag(s.heating),
        "hp_dhw_mode" | "dhw_charging_pump" => flag(s.dhw_mode),
        "compressor_running" | "compressor_1" | "source_pump" => flag(s.compressor),
        "summer_mode" => flag(s.summer),
        "defrost_mode" | "defrost_initiated" => flag(s.defrost),
        "evu_release" => flag(false),
        "fault_status" | "bus_status" | "message_number" | "reset" | "sg_ready_on_off" => int(0),
        "sg_ready_operating_state" => int(2),
        // Stiebel's "no active fault" is 0x8000 in this register (not a sentinel here).
        "active_error" => int(0x8000),
        "controller_identification" => int(i64::from(f.controller)),
        "heat_meter_heating_day" => int(heat_heating_day),
        "heat_meter_heating_total" => int(heat_heating_total),
        "heat_meter_dhw_day" => int(heat_dhw_day),
        "heat_meter_dhw_total" => int(heat_dhw_total),
        "power_consumption_heating_day" => int(el_heating_day),
        "power_consumption_heating_total" => int(el_heating_total),
        "power_consumption_dhw_day" => int(el_dhw_day),
        "power_consumption_dhw_total" => int(el_dhw_total),
        "heat_meter_nhz_heating_total" => int(100 + (200.0 * unit(f.seed, 13)) as i64),
        "heat_meter_nhz_dhw_total" => int(20 + (50.0 * unit(f.seed, 14)) as i64),
        "runtime_vd_heating" | "runtime_vd1_heating" | "runtime_heating" => {
            int((f.el_heating / 1.8 + s.el_heating / 1.8).floor() as i64)
        }
        "runtime_vd_dhw" | "runtime_vd1_dhw" | "runtime_dhw" => int((f.el_dhw / 2.0 + s.el_dhw / 2.0).floor() as i64),
        "inverter_power" => Eng(s.power_kw),
        _ => return None,
    })
}

fn is_half(t: DataType) -> bool {
    matches!(
        t,
        DataType::Uint8High | DataType::Uint8Low | DataType::Int8High | DataType::Int8Low
    )
}

/// A plausible constant for a register the plant does not model.
fn default_for(r: &Register) -> Served {
    if r.table == Table::InputRegisters && !r.optional && not_fitted(&r.name) {
        return Served::NotFitted;
    }
    generic_default(r)
}

fn generic_default(r: &Register) -> Served {
    if r.data_type == DataType::Bool || r.value_type() == ValueType::Bool {
        return Served::Raw(Value::Bool(false));
    }
    if let Some(code) = r
        .labels
        .as_ref()
        .and_then(|l| l.keys().find(|k| !r.not_available.contains(&(**k as u64))))
    {
        return Served::Raw(Value::Int(*code));
    }
    if r.data_type == DataType::String {
        return Served::Raw(Value::Text("hpflow-sim".into()));
    }
    if r.value_type() == ValueType::Float {
        return Served::Eng(0.0);
    }
    match r.unit.as_deref().unwrap_or("") {
        "celsius" => Served::Eng(20.0),
        "kelvin" => Served::Eng(5.0),
        "bar" => Served::Eng(1.5),
        "percent" => Served::Eng(50.0),
        "dimensionless" if r.name.contains("efficiency") => Served::Eng(3.2),
        "dimensionless" => Served::Eng(0.6),
        "hours" => Served::Raw(Value::Int(120)),
        "kwh" | "wh" => Served::Raw(Value::Int(1234)),
        _ => Served::Raw(Value::Int(0)),
    }
}

/// The raw value decoding yields for an engineering value.
fn raw_of(r: &Register, x: f64) -> Value {
    let raw = (x - r.offset) / r.scale;
    match r.value_type() {
        ValueType::Float if r.data_type == DataType::Float32 => Value::Float(f64::from(raw as f32)),
        ValueType::Float => Value::Float(raw),
        ValueType::Bool => Value::Bool(raw != 0.0),
        _ => Value::Int(raw.round() as i64),
    }
}

/// The fields a raw value decodes to: the register's own, and its named bits.
fn expand(r: &Register, raw: &Value, out: &mut BTreeMap<Arc<str>, Value>) {
    if r.emits_raw {
        out.insert(r.name.clone(), raw.clone());
    }
    if let Value::Int(word) = raw {
        for b in &r.bits {
            out.insert(b.name.clone(), Value::Bool((word >> b.bit) & 1 == 1));
        }
    }
}

impl Image {
    pub(crate) fn build(model: &Model, layout: &Layout, s: &State, f: &Fixed) -> Image {
        let mut img = Image::default();
        let mut encoded: Vec<(usize, Cells)> = Vec::new();
        for &i in &layout.registers {
            let r = &model.registers()[i];
            let served = if r.is_bitmap() {
                let mut word: i64 = 0;
                for b in &r.bits {
                    if let Some(Served::Raw(Value::Bool(true))) = signal(&b.name, s, f) {
                        word |= 1 << b.bit;
                    }
                }
                Served::Raw(Value::Int(word))
            } else {
                signal(&r.name, s, f).unwrap_or_else(|| default_for(r))
            };
            // A register without a sentinel cannot say "not fitted": serve a value.
            let served = match served {
                Served::NotFitted if r.not_available.is_empty() => generic_default(r),
                other => other,
            };
            let (cells, raw) = match &served {
                Served::NotFitted => (r.encode_not_available(), None),
                Served::Eng(x) => {
                    let raw = raw_of(r, *x);
                    (r.encode(&Sample::Raw(raw.clone())).ok(), Some(raw))
                }
                Served::Raw(v) => {
                    let v = match (v, r.value_type()) {
                        (Value::Bool(b), ValueType::Int) => Value::Int(i64::from(*b)),
                        (Value::Int(i), ValueType::Bool) => Value::Bool(*i != 0),
                        _ => v.clone(),
                    };
                    (r.encode(&Sample::Raw(v.clone())).ok(), Some(v))
                }
            };
            // A value the register cannot hold is served as "not available":
            // never a wrong number, in the simulator either.
            let (cells, raw) = match cells {
                Some(c) => (c, raw),
                None => match r.encode_not_available() {
                    Some(c) => (c, None),
                    None => continue,
                },
            };
            if let Some(raw) = &raw {
                expand(r, raw, &mut img.truth);
            }
            match &cells {
                Cells::Words(ws) => {
                    for (a, w) in ws {
                        // Two halves of one word (uint8_high / uint8_low) share it.
                        let slot = img.words.entry((r.table, *a)).or_insert(0);
                        *slot = if is_half(r.data_type) { *slot | *w } else { *w };
                    }
                }
                Cells::Bits(bs) => {
                    for (a, b) in bs {
                        img.bits.insert((r.table, *a), *b);
                    }
                }
            }
            encoded.push((i, cells));
        }
        // A register whose words another register overwrote (two names on one
        // address with different meanings) decodes to whatever is served now.
        for (i, cells) in encoded {
            let r = &model.registers()[i];
            let intact = match &cells {
                Cells::Words(ws) => ws.iter().all(|(a, w)| img.words.get(&(r.table, *a)) == Some(w)),
                Cells::Bits(bs) => bs.iter().all(|(a, b)| img.bits.get(&(r.table, *a)) == Some(b)),
            };
            if !intact && !is_half(r.data_type) {
                let fields: Vec<Arc<str>> = r.fields().into_iter().map(|m| m.name).collect();
                for name in &fields {
                    img.truth.remove(name);
                }
                let words: Vec<u16> = (0..r.count)
                    .map(|k| {
                        img.words
                            .get(&(r.table, r.address.wrapping_add(k)))
                            .copied()
                            .unwrap_or(0x8000)
                    })
                    .collect();
                let req = crate::registers::ReadRequest {
                    table: r.table,
                    start: r.address,
                    count: r.count,
                    optional: r.optional,
                    block: r.block.clone(),
                };
                let data = if r.table.is_bits() {
                    crate::registers::RawData::Bits(
                        (0..r.count)
                            .map(|k| {
                                img.bits
                                    .get(&(r.table, r.address.wrapping_add(k)))
                                    .copied()
                                    .unwrap_or(false)
                            })
                            .collect(),
                    )
                } else {
                    crate::registers::RawData::Words(words)
                };
                let decoded = model.decode([(&req, Some(data.answer()))]);
                for name in fields {
                    if let Some(v) = decoded.get(&name) {
                        img.truth.insert(name, v.clone());
                    }
                }
            }
        }
        img
    }

    /// Answers a register read the way an ISG does.
    pub(crate) fn read_words(
        &self,
        layout: &Layout,
        table: Table,
        start: u16,
        count: u16,
    ) -> Result<Vec<u16>, ExceptionCode> {
        if count == 0 || count > 125 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        if u32::from(start) + u32::from(count) > 0x1_0000 {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let key = (table, start);
        if !layout.starts.contains(&key) || layout.refused_starts.contains(&key) || layout.refused.contains(&key) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        Ok((0..count)
            .map(|k| {
                let a = (table, start.wrapping_add(k));
                if layout.refused.contains(&a) {
                    0x8000
                } else {
                    self.words.get(&a).copied().unwrap_or(0x8000)
                }
            })
            .collect())
    }

    pub(crate) fn read_bits(
        &self,
        layout: &Layout,
        table: Table,
        start: u16,
        count: u16,
    ) -> Result<Vec<bool>, ExceptionCode> {
        if count == 0 || count > 2000 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        if u32::from(start) + u32::from(count) > 0x1_0000 {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let key = (table, start);
        if !layout.starts.contains(&key) || layout.refused.contains(&key) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        Ok((0..count)
            .map(|k| self.bits.get(&(table, start.wrapping_add(k))).copied().unwrap_or(false))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cumulative_counter_takes_whole_kwh_at_midnight_and_the_fraction_stays() {
        // 3.8 kWh by midnight: total +3, the day counter keeps 0.8 (shows 0).
        assert_eq!(counter(1000.0, 3.8, 3.8), (1003, 0));
        // 1.5 kWh later the day shows 2 (0.8 + 1.5).
        assert_eq!(counter(1000.0, 5.3, 3.8), (1003, 2));
        // Before the first midnight everything is in the day counter.
        assert_eq!(counter(1000.0, 2.5, 0.0), (1000, 2));
    }
}
