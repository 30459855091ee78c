//! One entry of a model's `registers` list: its keys read one by one (each bad
//! key its own diagnostic), then the checks that relate them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_yaml::{Mapping, Value as Yaml};

use crate::event::FieldKind;
use crate::registers::model::{BitField, ByteOrder, DataType, Part, Register, Table};
use crate::registers::yaml::{boolean, check_name, integer, integer_in, integer_list, kind, number, text};

use super::{byte_order, Compiler, Defaults, RegAt};

const REGISTER_KEYS: &str = "name, address, register_type, data_type, length, byte_order, unit, scale, \
    offset, decimals, description, kind, enum_values, bitmap_fields, not_available, also_not_available, \
    parts, block, optional";

/// A register's keys as written, before the checks that relate them.
#[derive(Default)]
struct RegisterConfig {
    name: Option<String>,
    address: Option<i128>,
    table: Option<Table>,
    data_type: Option<DataType>,
    length: Option<i128>,
    byte_order: Option<ByteOrder>,
    unit: Option<String>,
    scale: Option<f64>,
    offset: Option<f64>,
    decimals: Option<u8>,
    description: Option<String>,
    kind: Option<FieldKind>,
    enum_values: Option<BTreeMap<i64, String>>,
    bitmap_fields: Option<Vec<(i128, String)>>,
    not_available: Option<Vec<i128>>,
    also_not_available: Option<Vec<i128>>,
    parts: Option<Vec<(i128, i64)>>,
    block: Option<String>,
    optional: Option<bool>,
}

/// What the checks of one register share.
struct Ctx<'a> {
    at: RegAt<'a>,
    map: &'a Mapping,
    c: RegisterConfig,
    table: Table,
    data_type: DataType,
}

impl Ctx<'_> {
    fn present(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }
}

/// A raw sentinel as the unsigned value of a `bits`-wide register, if it fits
/// (negative sentinels are two's complement: -32768 is 0x8000 for 16 bits).
fn fit_sentinel(s: i128, bits: u32) -> Option<u64> {
    let span = 1i128 << bits;
    if (0..span).contains(&s) {
        u64::try_from(s).ok()
    } else if s < 0 && s >= -(span / 2) {
        u64::try_from(s + span).ok()
    } else {
        None
    }
}

impl Compiler<'_> {
    pub(super) fn register(&mut self, model: &str, index: usize, item: &Yaml, defaults: &Defaults) -> Option<Register> {
        let name = item.get("name").and_then(|v| text(v).ok());
        let label = match &name {
            Some(n) => format!("register `{n}`"),
            None => format!("register #{}", index + 1),
        };
        let at = RegAt { model, index, label };
        let Some(map) = item.as_mapping() else {
            let found = kind(item);
            self.reg_error(
                &at,
                None,
                format!("expected a mapping of keys (name, address, …), found {found}"),
            );
            return None;
        };
        let before = self.errors.len();
        let c = self.read_register(&at, map);
        let table = c.table.unwrap_or(Table::HoldingRegisters);
        // HPManager's defaults: holding registers of int16.
        let data_type = c.data_type.unwrap_or(if table.is_bits() {
            DataType::Bool
        } else if c.parts.is_some() {
            DataType::Uint16
        } else {
            DataType::Int16
        });
        let x = Ctx {
            at,
            map,
            c,
            table,
            data_type,
        };

        let name = self.name(&x);
        let unit_marker = x.c.unit.as_deref().map(str::to_ascii_lowercase);
        let is_enum = unit_marker.as_deref() == Some("enum") || x.c.enum_values.is_some();
        let is_bitmap = unit_marker.as_deref() == Some("bitmap") || x.c.bitmap_fields.is_some();
        if is_enum && is_bitmap {
            self.reg_error(&x.at, Some("unit"), "is both an enum and a bitmap; pick one");
        }
        self.check_shape(&x, is_enum, is_bitmap);
        let (address, count, parts) = self.span(&x);
        let bits = self.bits(&x);
        let not_available = self.sentinels(&x, defaults);
        let (block, optional) = self.placement(&x, &name, defaults);

        if self.errors.len() > before {
            return None;
        }
        let c = x.c;
        let kind = c
            .kind
            .unwrap_or(if is_enum || is_bitmap || data_type == DataType::Bool {
                FieldKind::State
            } else {
                FieldKind::Gauge
            });
        Some(Register {
            emits_raw: !bits.iter().any(|b| b.name == name),
            name,
            table,
            address,
            count,
            data_type,
            byte_order: c.byte_order.unwrap_or(defaults.byte_order),
            parts,
            not_available,
            labels: is_enum.then(|| c.enum_values.unwrap_or_default()),
            bits,
            scale: c.scale.unwrap_or(1.0),
            offset: c.offset.unwrap_or(0.0),
            decimals: c.decimals,
            unit: c.unit.filter(|u| !u.is_empty() && !is_enum && !is_bitmap),
            description: c.description,
            kind,
            block,
            optional,
        })
    }

    /// Reads every key of one register, reporting each bad one.
    fn read_register(&mut self, r: &RegAt<'_>, map: &Mapping) -> RegisterConfig {
        let mut c = RegisterConfig::default();
        for (k, v) in map {
            let Some(key) = k.as_str() else {
                self.reg_error(r, None, format!("keys must be text, found {}", kind(k)));
                continue;
            };
            let result = match key {
                "name" => text(v).map(|s| c.name = Some(s)),
                "address" => integer(v).map(|i| c.address = Some(i)),
                "register_type" => text(v)
                    .and_then(|s| {
                        Table::parse(&s)
                            .ok_or_else(|| format!("unknown register_type `{s}`; expected one of {}", Table::NAMES))
                    })
                    .map(|t| c.table = Some(t)),
                "data_type" => text(v)
                    .and_then(|s| {
                        DataType::parse(&s)
                            .ok_or_else(|| format!("unknown data_type `{s}`; expected one of {}", DataType::NAMES))
                    })
                    .map(|t| c.data_type = Some(t)),
                "length" => integer_in(v, 1, 125).map(|i| c.length = Some(i)),
                "byte_order" => byte_order(v).map(|o| c.byte_order = Some(o)),
                "unit" => text(v).map(|s| c.unit = Some(s)),
                "scale" => number(v).and_then(|x| {
                    if x == 0.0 {
                        Err("scale may not be 0".to_string())
                    } else {
                        c.scale = Some(x);
                        Ok(())
                    }
                }),
                "offset" => number(v).map(|x| c.offset = Some(x)),
                "decimals" => integer_in(v, 0, 15).map(|i| c.decimals = u8::try_from(i).ok()),
                "description" => text(v).map(|s| c.description = Some(s)),
                "kind" => text(v).and_then(|s| field_kind(&s)).map(|k| c.kind = Some(k)),
                "enum_values" => enum_values(v).map(|l| c.enum_values = Some(l)),
                "bitmap_fields" => bitmap_fields(v).map(|b| c.bitmap_fields = Some(b)),
                "not_available" => integer_list(v).map(|l| c.not_available = Some(l)),
                "also_not_available" => integer_list(v).map(|l| c.also_not_available = Some(l)),
                "parts" => parts(v).map(|p| c.parts = Some(p)),
                "block" => text(v).map(|s| c.block = Some(s)),
                "optional" => boolean(v).map(|b| c.optional = Some(b)),
                other => Err(format!("unknown key `{other}`; expected one of {REGISTER_KEYS}")),
            };
            if let Err(message) = result {
                self.reg_error(r, Some(key), message);
            }
        }
        c
    }

    fn name(&mut self, x: &Ctx<'_>) -> Arc<str> {
        match &x.c.name {
            Some(n) => {
                if let Err(message) = check_name(n) {
                    self.reg_error(&x.at, Some("name"), message);
                }
                n.as_str().into()
            }
            None => {
                if !x.present("name") {
                    self.reg_error(&x.at, None, "has no `name`");
                }
                "".into()
            }
        }
    }

    /// Keys that contradict the table or the data type.
    fn check_shape(&mut self, x: &Ctx<'_>, is_enum: bool, is_bitmap: bool) {
        let (table, data_type) = (x.table, x.data_type);
        if table.is_bits() {
            if data_type != DataType::Bool {
                let message = format!("a {table} holds one bit, so data_type must be bool, not {data_type}");
                self.reg_error(&x.at, Some("data_type"), message);
            }
            let keys = [
                "parts",
                "enum_values",
                "bitmap_fields",
                "byte_order",
                "length",
                "not_available",
            ];
            for key in keys.into_iter().chain(["also_not_available"]) {
                if x.present(key) {
                    self.reg_error(&x.at, Some(key), format!("`{key}` does not apply to a {table}"));
                }
            }
        } else if x.c.length.is_some() && data_type != DataType::String {
            let message = format!("`length` only applies to data_type string, not {data_type}");
            self.reg_error(&x.at, Some("length"), message);
        }
        let is_parts = x.c.parts.is_some();
        if is_enum && (is_parts || !data_type.is_integer()) {
            let message = format!("enum labels need a plain integer data_type, not {data_type}");
            self.reg_error(&x.at, Some("enum_values"), message);
        }
        let bitmap_ok = matches!(
            data_type,
            DataType::Int16
                | DataType::Uint16
                | DataType::Int32
                | DataType::Uint32
                | DataType::Int64
                | DataType::Uint64
        );
        if is_bitmap && (is_parts || !bitmap_ok) {
            let message = format!("a bitmap needs an int16..uint64 data_type, not {data_type}");
            self.reg_error(&x.at, Some("bitmap_fields"), message);
        }
        let plain = matches!(data_type, DataType::Bool | DataType::String);
        if plain && (x.c.scale.is_some_and(|s| s != 1.0) || x.c.offset.is_some_and(|o| o != 0.0)) {
            let key = if x.c.scale.is_some() { "scale" } else { "offset" };
            self.reg_error(&x.at, Some(key), format!("a {data_type} cannot be scaled"));
        }
    }

    /// Where the value lives: first address, addresses to read, parts.
    fn span(&mut self, x: &Ctx<'_>) -> (u16, u16, Vec<Part>) {
        let mut parts_out = Vec::new();
        let (address, count): (i128, i128) = if let Some(parts) = &x.c.parts {
            if x.present("address") {
                self.reg_error(&x.at, Some("address"), "give either `address` or `parts`, not both");
            }
            if !matches!(x.data_type, DataType::Int16 | DataType::Uint16) {
                let message = format!("the parts of a value are int16 or uint16 words, not {}", x.data_type);
                self.reg_error(&x.at, Some("data_type"), message);
            }
            for &(a, factor) in parts {
                match u16::try_from(a) {
                    Err(_) => self.reg_error(&x.at, Some("parts"), format!("part address {a} is outside 0..=65535")),
                    Ok(address) if parts_out.iter().any(|p: &Part| p.address == address) => {
                        self.reg_error(&x.at, Some("parts"), format!("part address {a} is listed twice"))
                    }
                    Ok(address) => parts_out.push(Part { address, factor }),
                }
            }
            let lo = parts_out.iter().map(|p| i128::from(p.address)).min().unwrap_or(0);
            let hi = parts_out.iter().map(|p| i128::from(p.address)).max().unwrap_or(0);
            if hi - lo >= 125 {
                let message = format!("parts span {lo}..={hi}, more than the 125 registers one request can read");
                self.reg_error(&x.at, Some("parts"), message);
            }
            (lo, hi - lo + 1)
        } else {
            let width = if x.table.is_bits() {
                1
            } else if x.data_type == DataType::String {
                x.c.length.unwrap_or_else(|| {
                    if !x.present("length") {
                        self.reg_error(
                            &x.at,
                            Some("data_type"),
                            "a string needs `length` (its size in registers)",
                        );
                    }
                    1
                })
            } else {
                i128::from(x.data_type.words().unwrap_or(1))
            };
            let address = x.c.address.unwrap_or_else(|| {
                if !x.present("address") {
                    self.reg_error(&x.at, None, "has no `address` (or `parts`)");
                }
                0
            });
            (address, width)
        };
        if !(0..=65535).contains(&address) {
            self.reg_error(
                &x.at,
                Some("address"),
                format!("address {address} is outside 0..=65535"),
            );
        } else if address + count > 65536 {
            let message = format!("address {address} with {count} registers runs past the last address 65535");
            self.reg_error(&x.at, Some("address"), message);
        }
        let address = u16::try_from(address).unwrap_or(0);
        let count = u16::try_from(count).unwrap_or(1);
        (address, count, parts_out)
    }

    fn bits(&mut self, x: &Ctx<'_>) -> Vec<BitField> {
        let mut bits = Vec::new();
        let top = x.data_type.raw_bits() - 1;
        for (bit, bit_name) in x.c.bitmap_fields.iter().flatten() {
            let Some(bit) = u8::try_from(*bit).ok().filter(|b| u32::from(*b) <= top) else {
                let message = format!("bit {bit} is past the top bit {top} of a {} register", x.data_type);
                self.reg_error(&x.at, Some("bitmap_fields"), message);
                continue;
            };
            if let Err(message) = check_name(bit_name) {
                self.reg_error(&x.at, Some("bitmap_fields"), format!("bit {bit}: {message}"));
                continue;
            }
            bits.push(BitField {
                bit,
                name: bit_name.as_str().into(),
            });
        }
        bits
    }

    fn sentinels(&mut self, x: &Ctx<'_>, defaults: &Defaults) -> Vec<u64> {
        let mut out = Vec::new();
        if x.table.is_bits() {
            return out;
        }
        if x.data_type == DataType::String {
            for key in ["not_available", "also_not_available"] {
                if x.present(key) {
                    self.reg_error(&x.at, Some(key), "\"not available\" sentinels do not apply to strings");
                }
            }
            return out;
        }
        let width = if x.c.parts.is_some() {
            16
        } else {
            x.data_type.raw_bits()
        };
        match &x.c.not_available {
            Some(list) => {
                for &s in list {
                    match fit_sentinel(s, width) {
                        Some(raw) => out.push(raw),
                        None => {
                            let message = format!("sentinel {s} does not fit {width} bits");
                            self.reg_error(&x.at, Some("not_available"), message);
                        }
                    }
                }
            }
            // A model-wide sentinel too wide for this register cannot occur in it.
            None => out.extend(defaults.not_available.iter().filter_map(|&s| fit_sentinel(s, width))),
        }
        for &s in x.c.also_not_available.iter().flatten() {
            match fit_sentinel(s, width) {
                Some(raw) if !out.contains(&raw) => out.push(raw),
                Some(_) => {}
                None => {
                    let message = format!("sentinel {s} does not fit {width} bits");
                    self.reg_error(&x.at, Some("also_not_available"), message);
                }
            }
        }
        out
    }

    /// The block the register is planned in, and whether it is optional.
    fn placement(&mut self, x: &Ctx<'_>, name: &Arc<str>, defaults: &Defaults) -> (Option<Arc<str>>, bool) {
        match (&x.c.block, x.c.optional) {
            (Some(b), opt) => match defaults.blocks.iter().find(|d| *d.name == **b) {
                Some(d) => {
                    if opt.is_some() {
                        let message = format!("`optional` is set on block `{b}`, not on its registers");
                        self.reg_error(&x.at, Some("optional"), message);
                    }
                    (Some(d.name.clone()), d.optional)
                }
                None => {
                    let declared: Vec<&str> = defaults.blocks.iter().map(|d| &*d.name).collect();
                    let known = if declared.is_empty() {
                        "the model declares no `blocks`".to_string()
                    } else {
                        format!("declared blocks: {}", declared.join(", "))
                    };
                    self.reg_error(&x.at, Some("block"), format!("unknown block `{b}`; {known}"));
                    (None, false)
                }
            },
            // An optional register on its own is its own block: one request, dropped alone.
            (None, Some(true)) => {
                if defaults.blocks.iter().any(|d| d.name == *name) {
                    let message =
                        format!("its implicit block would share the name of block `{name}`; use `block: {name}`");
                    self.reg_error(&x.at, Some("optional"), message);
                }
                (Some(name.clone()), true)
            }
            (None, _) => (None, false),
        }
    }
}

fn field_kind(s: &str) -> Result<FieldKind, String> {
    match s.to_ascii_lowercase().as_str() {
        "gauge" => Ok(FieldKind::Gauge),
        "counter" => Ok(FieldKind::Counter),
        "state" => Ok(FieldKind::State),
        _ => Err(format!("unknown kind `{s}`; expected gauge, counter or state")),
    }
}

fn key_text(k: &Yaml) -> String {
    text(k).unwrap_or_else(|_| kind(k).to_string())
}

fn enum_values(v: &Yaml) -> Result<BTreeMap<i64, String>, String> {
    let Yaml::Mapping(map) = v else {
        return Err(format!(
            "enum_values must map integer codes to labels, found {}",
            kind(v)
        ));
    };
    let mut out = BTreeMap::new();
    for (k, label) in map {
        let code = integer(k)
            .ok()
            .and_then(|i| i64::try_from(i).ok())
            .ok_or_else(|| format!("enum key `{}` is not an integer", key_text(k)))?;
        let label = text(label).map_err(|e| format!("label of {code}: {e}"))?;
        if out.insert(code, label).is_some() {
            return Err(format!("enum code {code} is listed twice"));
        }
    }
    Ok(out)
}

fn bitmap_fields(v: &Yaml) -> Result<Vec<(i128, String)>, String> {
    let Yaml::Mapping(map) = v else {
        return Err(format!(
            "bitmap_fields must map bit numbers to field names, found {}",
            kind(v)
        ));
    };
    let mut out: Vec<(i128, String)> = Vec::new();
    for (k, name) in map {
        let bit = integer(k).map_err(|_| format!("bitmap key `{}` is not an integer bit number", key_text(k)))?;
        let name = text(name).map_err(|e| format!("name of bit {bit}: {e}"))?;
        if out.iter().any(|(b, _)| *b == bit) {
            return Err(format!("bit {bit} is listed twice"));
        }
        out.push((bit, name));
    }
    Ok(out)
}

fn parts(v: &Yaml) -> Result<Vec<(i128, i64)>, String> {
    let Yaml::Sequence(items) = v else {
        return Err(format!(
            "parts must be a list of {{address, factor}}, found {}",
            kind(v)
        ));
    };
    if items.is_empty() {
        return Err("parts is empty".into());
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        let Yaml::Mapping(map) = item else {
            return Err(format!(
                "part {n} must be a mapping with address and factor, found {}",
                kind(item)
            ));
        };
        let mut address = None;
        let mut factor = 1i64;
        for (k, v) in map {
            match k.as_str().unwrap_or("") {
                "address" => address = Some(integer(v).map_err(|e| format!("part {n}: address: {e}"))?),
                "factor" => {
                    factor = integer(v)
                        .ok()
                        .and_then(|f| i64::try_from(f).ok())
                        .filter(|f| *f != 0)
                        .ok_or_else(|| format!("part {n}: factor must be a non-zero integer"))?
                }
                _ => {
                    let key = key_text(k);
                    return Err(format!("part {n}: unknown key `{key}`; expected address, factor"));
                }
            }
        }
        let address = address.ok_or_else(|| format!("part {n} has no address"))?;
        out.push((address, factor));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_fit_by_width_and_negative_ones_are_twos_complement() {
        assert_eq!(fit_sentinel(0x8000, 16), Some(0x8000));
        assert_eq!(fit_sentinel(-32768, 16), Some(0x8000));
        assert_eq!(fit_sentinel(-1, 32), Some(0xffff_ffff));
        assert_eq!(fit_sentinel(0x1_0000, 16), None);
        assert_eq!(fit_sentinel(-32769, 16), None);
        assert_eq!(fit_sentinel(-1, 64), Some(u64::MAX));
    }
}
