//! Words ⇄ values for one register: byte/word order, sign, sentinels,
//! composite values, bitmap bits, strings. Decoding never guesses: anything it
//! cannot represent exactly leaves the field absent.

use crate::event::{Fields, Value};

use super::model::{ByteOrder, DataType, Model, Register};

/// A value to encode: the raw value decoding yields, or the engineering value
/// (raw × scale + offset) that the `scale` transform would produce.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    Raw(Value),
    Engineering(f64),
}

/// What a device must hold for a register to decode to a value: words of a
/// register table or bits of a bit table, by address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cells {
    Words(Vec<(u16, u16)>),
    Bits(Vec<(u16, bool)>),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("no register named `{0}`")]
    UnknownRegister(String),
    #[error("register `{register}` ({data_type}) cannot hold {value}")]
    WrongType {
        register: String,
        data_type: &'static str,
        value: String,
    },
    #[error("{value} is out of range for register `{register}` ({data_type})")]
    OutOfRange {
        register: String,
        data_type: &'static str,
        value: String,
    },
    #[error("{value} encodes to a \"not available\" sentinel of register `{register}`")]
    Sentinel { register: String, value: String },
}

/// Reorders the bytes of a value between wire order and big-endian order.
/// Each of the four orders is its own inverse, so one function serves both ways.
fn reorder(bytes: &mut [u8], order: ByteOrder) {
    match order {
        ByteOrder::Abcd => {}
        ByteOrder::Dcba => bytes.reverse(),
        ByteOrder::Badc => bytes.chunks_exact_mut(2).for_each(|w| w.swap(0, 1)),
        ByteOrder::Cdab => {
            let words = bytes.len() / 2;
            for i in 0..words / 2 {
                let j = words - 1 - i;
                bytes.swap(2 * i, 2 * j);
                bytes.swap(2 * i + 1, 2 * j + 1);
            }
        }
    }
}

/// Up to four wire words → the unsigned big-endian value they carry.
fn assemble(words: &[u16], order: ByteOrder) -> u64 {
    let mut bytes = [0u8; 8];
    let n = words.len().min(4) * 2;
    for (i, w) in words.iter().take(4).enumerate() {
        bytes[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
    }
    reorder(&mut bytes[..n], order);
    bytes[..n].iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// The inverse of [`assemble`] for `words` words.
fn disassemble(raw: u64, words: usize, order: ByteOrder) -> Vec<u16> {
    let all = raw.to_be_bytes();
    let mut bytes = all[8 - words * 2..].to_vec();
    reorder(&mut bytes, order);
    bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

fn sign_extend(raw: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((raw << shift) as i64) >> shift
}

/// Where decoded values go: `which` is 0 for a register's own value and
/// `1 + i` for its bit field `i`.
pub(crate) trait Put {
    fn put(&mut self, reg: &Register, which: usize, value: Value);
}

/// By name.
impl Put for Fields {
    fn put(&mut self, reg: &Register, which: usize, value: Value) {
        let name = match which.checked_sub(1) {
            None => &reg.name,
            Some(i) => &reg.bits[i].name,
        };
        self.insert_ref(name, value);
    }
}

/// Decodes one register from the words starting at its address (`words.len()
/// >= reg.count`, checked by the caller) into `out`.
pub(crate) fn decode_words(reg: &Register, words: &[u16], out: &mut impl Put) {
    if words.len() < usize::from(reg.count) {
        return;
    }
    if !reg.parts.is_empty() {
        if let Some(total) = decode_parts(reg, words) {
            out.put(reg, 0, Value::Int(total));
        }
        return;
    }
    if reg.data_type == DataType::String {
        if let Some(text) = decode_string(reg, words) {
            out.put(reg, 0, Value::Text(text.into()));
        }
        return;
    }
    let n = usize::from(reg.data_type.words().unwrap_or(1));
    let raw = assemble(&words[..n], reg.byte_order);
    if reg.not_available.contains(&raw) {
        return;
    }
    if reg.emits_raw {
        if let Some(v) = raw_value(reg.data_type, raw) {
            out.put(reg, 0, v);
        }
    }
    for (i, b) in reg.bits.iter().enumerate() {
        out.put(reg, 1 + i, Value::Bool((raw >> b.bit) & 1 == 1));
    }
}

/// A coil or discrete input.
pub(crate) fn decode_bit(reg: &Register, bit: bool, out: &mut impl Put) {
    out.put(reg, 0, Value::Bool(bit));
}

fn raw_value(data_type: DataType, raw: u64) -> Option<Value> {
    Some(match data_type {
        DataType::Bool => Value::Bool(raw != 0),
        DataType::Uint8High => Value::Int(((raw >> 8) & 0xff) as i64),
        DataType::Uint8Low => Value::Int((raw & 0xff) as i64),
        DataType::Int8High => Value::Int(sign_extend((raw >> 8) & 0xff, 8)),
        DataType::Int8Low => Value::Int(sign_extend(raw & 0xff, 8)),
        DataType::Int16 => Value::Int(sign_extend(raw, 16)),
        DataType::Int32 => Value::Int(sign_extend(raw, 32)),
        DataType::Int64 => Value::Int(raw as i64),
        DataType::Uint16 | DataType::Uint32 => Value::Int(raw as i64),
        // Above i64::MAX an Int would be wrong; absent is the honest answer.
        DataType::Uint64 => Value::Int(i64::try_from(raw).ok()?),
        DataType::Float32 => Value::Float(finite(f64::from(f32::from_bits(raw as u32)))?),
        DataType::Float64 => Value::Float(finite(f64::from_bits(raw))?),
        DataType::String => return None,
    })
}

/// Sinks cannot store NaN or infinities; devices use them for "no value".
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn decode_parts(reg: &Register, words: &[u16]) -> Option<i64> {
    let mut total: i64 = 0;
    for p in &reg.parts {
        let w = *words.get(usize::from(p.address - reg.address))?;
        let raw = assemble(&[w], reg.byte_order);
        if reg.not_available.contains(&raw) {
            return None;
        }
        let v = if reg.data_type.is_signed() {
            sign_extend(raw, 16)
        } else {
            raw as i64
        };
        total = total.checked_add(v.checked_mul(p.factor)?)?;
    }
    Some(total)
}

fn decode_string(reg: &Register, words: &[u16]) -> Option<String> {
    let mut bytes = Vec::with_capacity(words.len() * 2);
    for w in &words[..usize::from(reg.count)] {
        let [hi, lo] = w.to_be_bytes();
        if reg.byte_order.swaps_bytes() {
            bytes.extend([lo, hi]);
        } else {
            bytes.extend([hi, lo]);
        }
    }
    let text = String::from_utf8(bytes).ok()?;
    Some(text.trim_matches(|c| c == '\0' || c == ' ').to_string())
}

impl Register {
    /// What the device must hold for this register to decode to `sample`.
    /// Uint8/int8 halves come back with the other byte 0; a simulator serving
    /// both halves of one word ORs them.
    pub fn encode(&self, sample: &Sample) -> Result<Cells, EncodeError> {
        let raw = match sample {
            Sample::Raw(v) => v.clone(),
            Sample::Engineering(x) => self.engineering_to_raw(*x)?,
        };
        if self.table.is_bits() {
            let bit = match raw {
                Value::Bool(b) => b,
                Value::Int(0) => false,
                Value::Int(1) => true,
                other => return Err(self.wrong_type(&other)),
            };
            return Ok(Cells::Bits(vec![(self.address, bit)]));
        }
        let words = if !self.parts.is_empty() {
            self.encode_parts(&raw)?
        } else if self.data_type == DataType::String {
            self.encode_string(&raw)?
        } else {
            let n = usize::from(self.data_type.words().unwrap_or(1));
            let bits = self.encode_scalar(&raw)?;
            if self.not_available.contains(&bits) {
                return Err(EncodeError::Sentinel {
                    register: self.name.to_string(),
                    value: raw.to_string(),
                });
            }
            disassemble(bits, n, self.byte_order)
        };
        Ok(Cells::Words(self.addresses().into_iter().zip(words).collect()))
    }

    /// The cells of this register's first "not available" sentinel, so a
    /// simulator can serve a missing sensor.
    pub fn encode_not_available(&self) -> Option<Cells> {
        let s = *self.not_available.first()?;
        if self.table.is_bits() || self.data_type == DataType::String {
            return None;
        }
        let words = if self.parts.is_empty() {
            disassemble(s, usize::from(self.data_type.words().unwrap_or(1)), self.byte_order)
        } else {
            vec![disassemble(s, 1, self.byte_order)[0]; self.parts.len()]
        };
        Some(Cells::Words(self.addresses().into_iter().zip(words).collect()))
    }

    fn engineering_to_raw(&self, x: f64) -> Result<Value, EncodeError> {
        let raw = (x - self.offset) / self.scale;
        if !raw.is_finite() {
            return Err(self.out_of_range(&x));
        }
        Ok(match self.value_type() {
            crate::event::ValueType::Float => Value::Float(raw),
            crate::event::ValueType::Bool => Value::Bool(raw != 0.0),
            crate::event::ValueType::Text => return Err(self.wrong_type(&x)),
            crate::event::ValueType::Int => {
                let r = raw.round();
                if r < i64::MIN as f64 || r >= i64::MAX as f64 {
                    return Err(self.out_of_range(&x));
                }
                Value::Int(r as i64)
            }
        })
    }

    /// The unsigned raw bits (as `assemble` yields them) of a scalar value.
    fn encode_scalar(&self, raw: &Value) -> Result<u64, EncodeError> {
        let t = self.data_type;
        match (t, raw) {
            (DataType::Bool, Value::Bool(b)) => Ok(u64::from(*b)),
            (DataType::Bool, Value::Int(i)) if *i == 0 || *i == 1 => Ok(*i as u64),
            (DataType::Float32, v) => match v.as_f64() {
                Some(x) if !matches!(v, Value::Bool(_)) => {
                    let f = x as f32;
                    if x.is_finite() && !f.is_finite() {
                        return Err(self.out_of_range(v));
                    }
                    Ok(u64::from(f.to_bits()))
                }
                _ => Err(self.wrong_type(v)),
            },
            (DataType::Float64, Value::Float(x)) => Ok(x.to_bits()),
            (DataType::Float64, Value::Int(i)) => Ok((*i as f64).to_bits()),
            (_, Value::Int(i)) if t.is_integer() => {
                let i = *i;
                let (lo, hi, bits): (i128, i128, u32) = match t {
                    DataType::Uint8High | DataType::Uint8Low => (0, 0xff, 8),
                    DataType::Int8High | DataType::Int8Low => (-0x80, 0x7f, 8),
                    DataType::Int16 => (i16::MIN.into(), i16::MAX.into(), 16),
                    DataType::Uint16 => (0, u16::MAX.into(), 16),
                    DataType::Int32 => (i32::MIN.into(), i32::MAX.into(), 32),
                    DataType::Uint32 => (0, u32::MAX.into(), 32),
                    DataType::Int64 => (i64::MIN.into(), i64::MAX.into(), 64),
                    _ => (0, i64::MAX.into(), 64),
                };
                if i128::from(i) < lo || i128::from(i) > hi {
                    return Err(self.out_of_range(raw));
                }
                let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
                let v = (i as u64) & mask;
                Ok(match t {
                    DataType::Uint8High | DataType::Int8High => v << 8,
                    _ => v,
                })
            }
            (_, v) => Err(self.wrong_type(v)),
        }
    }

    /// Splits a total over the parts, largest factor first, so Stiebel's
    /// 12345 kWh becomes 12 MWh and 345 kWh.
    fn encode_parts(&self, raw: &Value) -> Result<Vec<u16>, EncodeError> {
        let Value::Int(total) = raw else {
            return Err(self.wrong_type(raw));
        };
        let mut order: Vec<usize> = (0..self.parts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.parts[i].factor.unsigned_abs()));
        let mut rest = i128::from(*total);
        let mut values = vec![0i128; self.parts.len()];
        for i in order {
            let f = i128::from(self.parts[i].factor);
            values[i] = rest / f;
            rest -= values[i] * f;
        }
        let (lo, hi) = if self.data_type.is_signed() {
            (i128::from(i16::MIN), i128::from(i16::MAX))
        } else {
            (0, i128::from(u16::MAX))
        };
        if rest != 0 || values.iter().any(|v| *v < lo || *v > hi) {
            return Err(self.out_of_range(raw));
        }
        let words: Vec<u16> = values
            .iter()
            .map(|v| disassemble((*v as i64 as u64) & 0xffff, 1, self.byte_order)[0])
            .collect();
        let hits_sentinel = words
            .iter()
            .any(|w| self.not_available.contains(&assemble(&[*w], self.byte_order)));
        if hits_sentinel {
            return Err(EncodeError::Sentinel {
                register: self.name.to_string(),
                value: raw.to_string(),
            });
        }
        Ok(words)
    }

    fn encode_string(&self, raw: &Value) -> Result<Vec<u16>, EncodeError> {
        let Value::Text(s) = raw else {
            return Err(self.wrong_type(raw));
        };
        let capacity = usize::from(self.count) * 2;
        if s.len() > capacity {
            return Err(self.out_of_range(raw));
        }
        let mut bytes = s.as_bytes().to_vec();
        bytes.resize(capacity, 0);
        Ok(bytes
            .chunks_exact(2)
            .map(|c| {
                if self.byte_order.swaps_bytes() {
                    u16::from_be_bytes([c[1], c[0]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect())
    }

    fn wrong_type(&self, value: &dyn std::fmt::Display) -> EncodeError {
        EncodeError::WrongType {
            register: self.name.to_string(),
            data_type: self.data_type.name(),
            value: value.to_string(),
        }
    }

    fn out_of_range(&self, value: &dyn std::fmt::Display) -> EncodeError {
        EncodeError::OutOfRange {
            register: self.name.to_string(),
            data_type: self.data_type.name(),
            value: value.to_string(),
        }
    }
}

impl Model {
    /// Encodes a value for the register named `register` (see [`Register::encode`]).
    pub fn encode(&self, register: &str, sample: &Sample) -> Result<Cells, EncodeError> {
        self.register(register)
            .ok_or_else(|| EncodeError::UnknownRegister(register.to_string()))?
            .encode(sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FieldKind;
    use crate::registers::model::{BitField, Part, Table};

    fn reg(data_type: DataType, order: ByteOrder) -> Register {
        Register {
            name: "x".into(),
            table: Table::HoldingRegisters,
            address: 100,
            count: data_type.words().unwrap_or(4),
            data_type,
            byte_order: order,
            parts: vec![],
            not_available: vec![],
            labels: None,
            bits: vec![],
            emits_raw: true,
            scale: 1.0,
            offset: 0.0,
            decimals: None,
            unit: None,
            description: None,
            kind: FieldKind::Gauge,
            block: None,
            optional: false,
        }
    }

    fn words(cells: Cells) -> Vec<u16> {
        match cells {
            Cells::Words(w) => w.into_iter().map(|(_, w)| w).collect(),
            Cells::Bits(_) => panic!("bits"),
        }
    }

    fn decode(r: &Register, w: &[u16]) -> Option<Value> {
        let mut out = Fields::new();
        decode_words(r, w, &mut out);
        out.remove("x")
    }

    fn sample_values(t: DataType) -> Vec<Value> {
        match t {
            DataType::Bool => vec![Value::Bool(true), Value::Bool(false)],
            DataType::Int8High | DataType::Int8Low => vec![Value::Int(-128), Value::Int(-1), Value::Int(127)],
            DataType::Uint8High | DataType::Uint8Low => vec![Value::Int(0), Value::Int(0xab), Value::Int(255)],
            DataType::Int16 => vec![Value::Int(-32768), Value::Int(-2), Value::Int(0x1234)],
            DataType::Uint16 => vec![Value::Int(0xfffe), Value::Int(0x1234)],
            DataType::Int32 => vec![Value::Int(-123_456_789), Value::Int(0x1234_5678)],
            DataType::Uint32 => vec![Value::Int(0xdead_beef), Value::Int(7)],
            DataType::Int64 => vec![Value::Int(i64::MIN), Value::Int(0x0102_0304_0506_0708)],
            DataType::Uint64 => vec![Value::Int(i64::MAX), Value::Int(0x0102_0304_0506_0708)],
            DataType::Float32 => vec![Value::Float(-1.5), Value::Float(3.25e7)],
            DataType::Float64 => vec![Value::Float(std::f64::consts::PI), Value::Float(-2.0e-300)],
            DataType::String => vec![Value::Text("WPM 3i".into()), Value::Text("abcdefgh".into())],
        }
    }

    #[test]
    fn every_data_type_round_trips_in_every_byte_order() {
        for t in DataType::ALL {
            for o in ByteOrder::ALL {
                let r = reg(t, o);
                for v in sample_values(t) {
                    let w = words(r.encode(&Sample::Raw(v.clone())).unwrap());
                    assert_eq!(w.len(), usize::from(r.count), "{t} {o}");
                    assert_eq!(decode(&r, &w), Some(v.clone()), "{t} {o} {w:04x?}");
                }
            }
        }
    }

    #[test]
    fn byte_orders_place_bytes_as_named() {
        let v = Sample::Raw(Value::Int(0x0A0B_0C0D));
        let expect = [
            (ByteOrder::Abcd, [0x0A0B, 0x0C0D]),
            (ByteOrder::Dcba, [0x0D0C, 0x0B0A]),
            (ByteOrder::Badc, [0x0B0A, 0x0D0C]),
            (ByteOrder::Cdab, [0x0C0D, 0x0A0B]),
        ];
        for (o, w) in expect {
            assert_eq!(words(reg(DataType::Uint32, o).encode(&v).unwrap()), w, "{o}");
        }
        assert_eq!(
            words(
                reg(DataType::Uint16, ByteOrder::Badc)
                    .encode(&Sample::Raw(Value::Int(0x1234)))
                    .unwrap()
            ),
            [0x3412]
        );
    }

    #[test]
    fn uint8_halves_read_their_own_byte() {
        let hi = reg(DataType::Uint8High, ByteOrder::Abcd);
        let lo = reg(DataType::Uint8Low, ByteOrder::Abcd);
        assert_eq!(decode(&hi, &[0x12f0]), Some(Value::Int(0x12)));
        assert_eq!(decode(&lo, &[0x12f0]), Some(Value::Int(0xf0)));
        let lo_signed = reg(DataType::Int8Low, ByteOrder::Abcd);
        assert_eq!(decode(&lo_signed, &[0x12f0]), Some(Value::Int(-16)));
        // Swapped bytes: the high byte is the second one on the wire.
        assert_eq!(
            decode(&reg(DataType::Uint8High, ByteOrder::Badc), &[0x12f0]),
            Some(Value::Int(0xf0))
        );
    }

    #[test]
    fn sentinel_8000_makes_field_absent() {
        let mut r = reg(DataType::Int16, ByteOrder::Abcd);
        r.not_available = vec![0x8000];
        assert_eq!(decode(&r, &[0x8000]), None);
        assert_eq!(decode(&r, &[0x8001]), Some(Value::Int(-32767)));
        // A uint8 half sees the whole word, so Stiebel's 0x8000 still hides it.
        let mut half = reg(DataType::Uint8Low, ByteOrder::Abcd);
        half.not_available = vec![0x8000];
        assert_eq!(decode(&half, &[0x8000]), None);
        assert!(matches!(
            r.encode(&Sample::Raw(Value::Int(-32768))),
            Err(EncodeError::Sentinel { .. })
        ));
    }

    #[test]
    fn bitmap_bits_come_from_the_raw_word() {
        let mut r = reg(DataType::Uint16, ByteOrder::Abcd);
        r.bits = vec![
            BitField {
                bit: 0,
                name: "b0".into(),
            },
            BitField {
                bit: 6,
                name: "compressor_running".into(),
            },
            BitField {
                bit: 15,
                name: "top".into(),
            },
        ];
        let mut out = Fields::new();
        decode_words(&r, &[0x8041], &mut out);
        assert_eq!(out.get("x"), Some(&Value::Int(0x8041)));
        assert_eq!(out.get("b0"), Some(&Value::Bool(true)));
        assert_eq!(out.get("compressor_running"), Some(&Value::Bool(true)));
        assert_eq!(out.get("top"), Some(&Value::Bool(true)));
        r.emits_raw = false;
        let mut out = Fields::new();
        decode_words(&r, &[0x0000], &mut out);
        assert_eq!(out.get("x"), None);
        assert_eq!(out.get("compressor_running"), Some(&Value::Bool(false)));
    }

    fn energy() -> Register {
        let mut r = reg(DataType::Uint16, ByteOrder::Abcd);
        r.address = 3501;
        r.count = 2;
        r.parts = vec![
            Part {
                address: 3501,
                factor: 1,
            },
            Part {
                address: 3502,
                factor: 1000,
            },
        ];
        r.not_available = vec![0x8000];
        r
    }

    #[test]
    fn energy_total_is_mwh_times_1000_plus_kwh() {
        let r = energy();
        assert_eq!(decode(&r, &[345, 12]), Some(Value::Int(12_345)));
        assert_eq!(decode(&r, &[0x8000, 12]), None);
        assert_eq!(decode(&r, &[345, 0x8000]), None);
        assert_eq!(
            r.encode(&Sample::Raw(Value::Int(12_345))).unwrap(),
            Cells::Words(vec![(3501, 345), (3502, 12)])
        );
    }

    #[test]
    fn engineering_values_invert_scale_and_offset() {
        let mut r = reg(DataType::Int16, ByteOrder::Abcd);
        r.scale = 0.1;
        r.offset = -40.0;
        let w = words(r.encode(&Sample::Engineering(-17.3)).unwrap());
        assert_eq!(decode(&r, &w), Some(Value::Int(227)));
        assert!(r.encode(&Sample::Engineering(1e9)).is_err());
    }

    #[test]
    fn strings_trim_nuls_and_spaces_and_reject_bad_utf8() {
        let mut r = reg(DataType::String, ByteOrder::Abcd);
        r.count = 3;
        assert_eq!(decode(&r, &[0x2041, 0x4200, 0x0000]), Some(Value::Text("AB".into())));
        assert_eq!(decode(&r, &[0xfffe, 0x4200, 0x0000]), None);
        assert!(r.encode(&Sample::Raw(Value::Text("too long!".into()))).is_err());
    }

    #[test]
    fn floats_that_are_not_finite_are_absent_and_uint64_past_i64_is_absent() {
        let r = reg(DataType::Float32, ByteOrder::Abcd);
        assert_eq!(decode(&r, &[0x7fc0, 0x0000]), None);
        let r = reg(DataType::Uint64, ByteOrder::Abcd);
        assert_eq!(decode(&r, &[0xffff, 0, 0, 0]), None);
    }

    #[test]
    fn short_word_slices_decode_to_nothing() {
        let r = reg(DataType::Uint32, ByteOrder::Abcd);
        assert_eq!(decode(&r, &[1]), None);
    }
}
