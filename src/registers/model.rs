//! The compiled form of a register map: what a model's registers are and how
//! each one turns into fields. Built only by the loader (`map.rs`), so every
//! invariant the loader checks (spans inside the address space, bits inside
//! the word, parts of a value no wider than one request) holds here.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::event::{FieldKind, FieldMeta, Schema, ValueType};

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Coils,
    DiscreteInputs,
    InputRegisters,
    HoldingRegisters,
}

impl Table {
    /// The function code that reads this table.
    pub fn function_code(self) -> u8 {
        match self {
            Table::Coils => 1,
            Table::DiscreteInputs => 2,
            Table::HoldingRegisters => 3,
            Table::InputRegisters => 4,
        }
    }

    /// True for the single-bit tables (coils, discrete inputs).
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coils | Table::DiscreteInputs)
    }

    /// The most addresses one read of this table may ask for (Modbus spec).
    pub fn protocol_max(self) -> u16 {
        if self.is_bits() {
            2000
        } else {
            125
        }
    }

    /// The short name used in the map and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Table::Coils => "coil",
            Table::DiscreteInputs => "discrete",
            Table::InputRegisters => "input",
            Table::HoldingRegisters => "holding",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Table> {
        Some(match s.to_ascii_lowercase().as_str() {
            "input" | "input_register" | "input_registers" => Table::InputRegisters,
            "holding" | "holding_register" | "holding_registers" => Table::HoldingRegisters,
            "coil" | "coils" => Table::Coils,
            "discrete" | "discrete_input" | "discrete_inputs" => Table::DiscreteInputs,
            _ => return None,
        })
    }

    pub(crate) const NAMES: &'static str = "input, holding, coil, discrete (or discrete_input)";
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the raw words (or bit) of a register are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// A coil or discrete input, or a register that is true when non-zero.
    Bool,
    Int8High,
    Int8Low,
    Uint8High,
    Uint8Low,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Uint64,
    Float32,
    Float64,
    /// `length` registers of bytes, NULs and spaces trimmed.
    String,
}

impl DataType {
    pub const ALL: [DataType; 14] = [
        DataType::Bool,
        DataType::Int8High,
        DataType::Int8Low,
        DataType::Uint8High,
        DataType::Uint8Low,
        DataType::Int16,
        DataType::Uint16,
        DataType::Int32,
        DataType::Uint32,
        DataType::Int64,
        DataType::Uint64,
        DataType::Float32,
        DataType::Float64,
        DataType::String,
    ];

    pub(crate) const NAMES: &'static str = "bool, int8_high, int8_low, uint8_high, uint8_low (or uint8), \
        int16, uint16, int32, uint32, int64, uint64, float32, float64, string";

    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::Int8High => "int8_high",
            DataType::Int8Low => "int8_low",
            DataType::Uint8High => "uint8_high",
            DataType::Uint8Low => "uint8_low",
            DataType::Int16 => "int16",
            DataType::Uint16 => "uint16",
            DataType::Int32 => "int32",
            DataType::Uint32 => "uint32",
            DataType::Int64 => "int64",
            DataType::Uint64 => "uint64",
            DataType::Float32 => "float32",
            DataType::Float64 => "float64",
            DataType::String => "string",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<DataType> {
        let s = s.to_ascii_lowercase();
        // Stiebel's "type 8" is documented as uint8: an unsigned value in the low byte.
        if s == "uint8" {
            return Some(DataType::Uint8Low);
        }
        DataType::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Registers one value occupies; `None` for strings, whose width is their `length`.
    pub fn words(self) -> Option<u16> {
        match self {
            DataType::String => None,
            DataType::Int32 | DataType::Uint32 | DataType::Float32 => Some(2),
            DataType::Int64 | DataType::Uint64 | DataType::Float64 => Some(4),
            _ => Some(1),
        }
    }

    /// The type of the decoded (unscaled) value.
    pub fn value_type(self) -> ValueType {
        match self {
            DataType::Bool => ValueType::Bool,
            DataType::Float32 | DataType::Float64 => ValueType::Float,
            DataType::String => ValueType::Text,
            _ => ValueType::Int,
        }
    }

    pub fn is_integer(self) -> bool {
        self.value_type() == ValueType::Int
    }

    pub fn is_signed(self) -> bool {
        matches!(
            self,
            DataType::Int8High | DataType::Int8Low | DataType::Int16 | DataType::Int32 | DataType::Int64
        )
    }

    /// Width in bits of the raw unsigned value that sentinels and bitmap bits
    /// are taken from: the whole word(s) read, so a uint8 half still sees
    /// Stiebel's 0x8000 in its word.
    pub(crate) fn raw_bits(self) -> u32 {
        u32::from(self.words().unwrap_or(1)) * 16
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Byte and word order of a value, named by where the most significant byte
/// `A` of a 32-bit value ends up on the wire.
///
/// `ABCD` big-endian (Modbus' own order), `DCBA` fully little-endian,
/// `BADC` bytes swapped in each word, `CDAB` words swapped. Each generalises to
/// 16 bits (ABCD = CDAB, DCBA = BADC) and 64 bits (whole reversal, per-word swap,
/// word reversal). Strings only take the byte swap of `BADC`/`DCBA`; their
/// words always stay in address order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ByteOrder {
    #[default]
    Abcd,
    Dcba,
    Badc,
    Cdab,
}

impl ByteOrder {
    pub const ALL: [ByteOrder; 4] = [ByteOrder::Abcd, ByteOrder::Dcba, ByteOrder::Badc, ByteOrder::Cdab];

    pub fn name(self) -> &'static str {
        match self {
            ByteOrder::Abcd => "ABCD",
            ByteOrder::Dcba => "DCBA",
            ByteOrder::Badc => "BADC",
            ByteOrder::Cdab => "CDAB",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<ByteOrder> {
        let s = s.to_ascii_uppercase();
        ByteOrder::ALL.into_iter().find(|o| o.name() == s)
    }

    /// True when the two bytes of each word are swapped.
    pub fn swaps_bytes(self) -> bool {
        matches!(self, ByteOrder::Dcba | ByteOrder::Badc)
    }
}

impl fmt::Display for ByteOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One register of a value built from several (Stiebel: kWh low word + MWh high word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub address: u16,
    /// The part's value is multiplied by this before the parts are summed.
    pub factor: i64,
}

/// One named bit of a bitmap register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitField {
    pub bit: u8,
    pub name: Arc<str>,
}

/// A named group of registers planned into requests of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub name: Arc<str>,
    /// An optional block may be missing on a device: refused reads drop it for a while.
    pub optional: bool,
    pub description: Option<String>,
}

/// One entry of a model's `registers` list, compiled.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Register {
    pub name: Arc<str>,
    pub table: Table,
    /// First address of the value (the lowest part of a composite value).
    pub address: u16,
    /// Addresses from `address` that one request must cover to decode the value.
    pub count: u16,
    pub data_type: DataType,
    pub byte_order: ByteOrder,
    /// Non-empty for a value summed from several registers; each part is one
    /// word of `data_type` (int16 or uint16).
    pub parts: Vec<Part>,
    /// Raw values meaning "not available", compared with the unsigned raw
    /// value before sign extension and scaling (each part's word for a
    /// composite value, the whole word for uint8 halves).
    pub not_available: Vec<u64>,
    /// Enum labels by raw code.
    pub labels: Option<BTreeMap<i64, String>>,
    /// Named bits of a bitmap register.
    pub bits: Vec<BitField>,
    /// False when one of `bits` carries the register's own name: that bit
    /// replaces the raw word, as HPManager did for `evu_release`.
    pub emits_raw: bool,
    pub scale: f64,
    pub offset: f64,
    pub decimals: Option<u8>,
    pub unit: Option<String>,
    pub description: Option<String>,
    pub kind: FieldKind,
    /// The block the register is planned in (`None`: the model's main block).
    pub block: Option<Arc<str>>,
    pub optional: bool,
}

impl Register {
    /// One past the last address of the value.
    pub fn end(&self) -> u32 {
        u32::from(self.address) + u32::from(self.count)
    }

    /// The addresses that hold the value, in the order they are combined.
    pub fn addresses(&self) -> Vec<u16> {
        if self.parts.is_empty() {
            (0..self.count).map(|i| self.address.wrapping_add(i)).collect()
        } else {
            self.parts.iter().map(|p| p.address).collect()
        }
    }

    pub fn is_bitmap(&self) -> bool {
        !self.bits.is_empty()
    }

    pub fn is_enum(&self) -> bool {
        self.labels.is_some()
    }

    /// Where the value comes from, for documentation: "input 506",
    /// "input 3501+3502", "holding 100-101".
    pub fn source(&self) -> String {
        if !self.parts.is_empty() {
            let list: Vec<String> = self.parts.iter().map(|p| p.address.to_string()).collect();
            format!("{} {}", self.table, list.join("+"))
        } else if self.count > 1 {
            format!("{} {}-{}", self.table, self.address, self.end() - 1)
        } else {
            format!("{} {}", self.table, self.address)
        }
    }

    /// The type of the register's own decoded value.
    pub fn value_type(&self) -> ValueType {
        if self.parts.is_empty() {
            self.data_type.value_type()
        } else {
            ValueType::Int
        }
    }

    /// The fields this register yields: its own value (unless a bit replaces
    /// it) and one Bool per named bit.
    pub fn fields(&self) -> Vec<FieldMeta> {
        let mut out = Vec::with_capacity(1 + self.bits.len());
        if self.emits_raw {
            out.push(FieldMeta {
                name: self.name.clone(),
                unit: self.unit.clone(),
                description: self.description.clone(),
                kind: self.kind,
                value_type: self.value_type(),
                scale: self.scale,
                offset: self.offset,
                decimals: self.decimals,
                labels: self.labels.clone(),
                source: Some(self.source()),
            });
        }
        for b in &self.bits {
            let description = match &self.description {
                Some(d) => format!("{d}: bit {}", b.bit),
                None => format!("bit {} of {}", b.bit, self.name),
            };
            out.push(FieldMeta {
                name: b.name.clone(),
                unit: None,
                description: Some(description),
                kind: FieldKind::State,
                value_type: ValueType::Bool,
                scale: 1.0,
                offset: 0.0,
                decimals: None,
                labels: None,
                source: Some(format!("{} bit {}", self.source(), b.bit)),
            });
        }
        out
    }
}

/// One model of a register map: its registers, blocks and the schema of the
/// fields its devices produce.
#[derive(Debug)]
pub struct Model {
    name: Arc<str>,
    description: Option<String>,
    registers: Vec<Register>,
    blocks: Vec<Block>,
    index: HashMap<Arc<str>, usize>,
    schema: Arc<Schema>,
    /// Per register, where its values sit in the schema's fields: its own
    /// value first, then each bit field's (see [`codec::Put`]).
    ranks: Box<[Box<[Option<usize>]>]>,
}

/// Two models are the same when their definitions are: what is derived from
/// them (the index, the schema) follows.
impl PartialEq for Model {
    fn eq(&self, other: &Model) -> bool {
        self.name == other.name
            && self.description == other.description
            && self.manufacturer() == other.manufacturer()
            && self.registers == other.registers
            && self.blocks == other.blocks
    }
}

impl Model {
    pub(crate) fn new(name: &str, description: Option<String>, registers: Vec<Register>, blocks: Vec<Block>) -> Model {
        let fields = registers.iter().flat_map(Register::fields).collect();
        let schema = Arc::new(Schema::new(name, fields));
        let index = registers.iter().enumerate().map(|(i, r)| (r.name.clone(), i)).collect();
        let slots = schema.new_fields::<()>();
        let ranks = (registers.iter())
            .map(|r| {
                let own = r.emits_raw.then(|| slots.rank_of(&r.name)).flatten();
                std::iter::once(own)
                    .chain(r.bits.iter().map(|b| slots.rank_of(&b.name)))
                    .collect()
            })
            .collect();
        Model {
            name: name.into(),
            description,
            registers,
            blocks,
            index,
            schema,
            ranks,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Who makes the model's devices (`manufacturer` in the map), if the map says.
    pub fn manufacturer(&self) -> Option<&str> {
        self.schema.manufacturer.as_deref()
    }

    /// Sets the maker, carried by the model's schema to the sinks.
    pub(crate) fn set_manufacturer(&mut self, manufacturer: String) {
        Arc::make_mut(&mut self.schema).manufacturer = Some(manufacturer);
    }

    /// Every register in map order: what a simulator serves.
    pub fn registers(&self) -> &[Register] {
        &self.registers
    }

    pub fn register(&self, name: &str) -> Option<&Register> {
        self.index.get(name).map(|&i| &self.registers[i])
    }

    /// The declared blocks (implicit one-register optional blocks not included).
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The fields every device of this model produces, shared by its events.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Where register `i`'s values sit in fields made by the schema.
    pub(crate) fn ranks(&self, i: usize) -> &[Option<usize>] {
        &self.ranks[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_codes_follow_the_modbus_spec() {
        assert_eq!(Table::Coils.function_code(), 1);
        assert_eq!(Table::DiscreteInputs.function_code(), 2);
        assert_eq!(Table::HoldingRegisters.function_code(), 3);
        assert_eq!(Table::InputRegisters.function_code(), 4);
    }

    #[test]
    fn data_type_names_round_trip_and_uint8_means_the_low_byte() {
        for t in DataType::ALL {
            assert_eq!(DataType::parse(t.name()), Some(t));
        }
        assert_eq!(DataType::parse("uint8"), Some(DataType::Uint8Low));
        assert_eq!(DataType::parse("INT16"), Some(DataType::Int16));
        assert_eq!(DataType::parse("int17"), None);
    }

    #[test]
    fn byte_orders_parse_in_any_case() {
        for o in ByteOrder::ALL {
            assert_eq!(ByteOrder::parse(&o.name().to_lowercase()), Some(o));
        }
        assert_eq!(ByteOrder::parse("ABDC"), None);
    }

    #[test]
    fn table_aliases_are_accepted() {
        assert_eq!(Table::parse("discrete_input"), Some(Table::DiscreteInputs));
        assert_eq!(Table::parse("coils"), Some(Table::Coils));
        assert_eq!(Table::parse("Input"), Some(Table::InputRegisters));
        assert_eq!(Table::parse("register"), None);
    }
}
