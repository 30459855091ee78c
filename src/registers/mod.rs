//! Register maps (`registers.yml`) and read plans: everything about a Modbus
//! device that needs no network. Used by the Modbus sources and the simulator,
//! so neither owns it.
//!
//! # The map format
//!
//! HPManager's schema, read as it is, plus extensions. Unknown keys are errors.
//!
//! ```yaml
//! models:
//!   stiebel_eltron_wpm:                  # the name devices refer to
//!     description: "…"
//!     manufacturer: "Stiebel Eltron"     # who makes the devices (shown by Home Assistant)
//!     byte_order: ABCD                   # default for every register (ABCD if absent)
//!     not_available: [0x8000]            # raw values meaning "no value", for every register
//!     blocks:                            # named groups planned into requests of their own
//!       ventilation: {optional: true, description: "…"}
//!     registers:
//!       - name: outside_temperature      # the field name
//!         address: 506                   # wire address, 0-based
//!         register_type: input           # input | holding (default) | coil | discrete (discrete_input)
//!         data_type: int16               # see below; default int16 (bool for coil/discrete)
//!         unit: celsius                  # free text; `enum` and `bitmap` are markers, not units
//!         scale: 0.1                     # engineering = raw × scale + offset
//!         offset: 0
//!         decimals: 1                    # decimals of the engineering value (default: none given)
//!         kind: gauge                    # gauge | counter | state
//!         description: "Outside temperature"
//! ```
//!
//! HPManager's keys: `name`, `address`, `register_type`, `data_type`, `unit`,
//! `scale`, `description`, `enum_values` (`code: label`; with `unit: enum` the
//! field is an Int of kind state with labels) and `bitmap_fields`
//! (`bit: field_name`; with `unit: bitmap` the raw word is an Int field and each
//! named bit a Bool field of kind state; a bit named like its register replaces
//! the raw word, as HPManager's `evu_release` does).
//!
//! hpflow's additions:
//! - `manufacturer` on a model: who makes its devices, carried on the model's
//!   schema to the sinks (the `mqtt` sink's Home Assistant device shows it; a
//!   device's `manufacturer` tag overrides it).
//! - `data_type`: `int16`, `uint16`, `int32`, `uint32`, `int64`, `uint64`,
//!   `float32`, `float64`, `uint8_high`, `uint8_low` (`uint8` = `uint8_low`),
//!   `int8_high`, `int8_low`, `bool` (a register is true when non-zero), and
//!   `string` with `length` in registers (NULs and spaces trimmed).
//! - `byte_order`: `ABCD` (big-endian, the default), `DCBA` (little-endian),
//!   `BADC` (bytes swapped in each word), `CDAB` (words swapped); per register
//!   or per model.
//! - `offset`, `decimals`, `kind` (default: state for enums, bitmaps and bools,
//!   gauge otherwise; counters are always explicit).
//! - `not_available: [..]` on a register replaces the model's list (`[]` turns
//!   it off), `also_not_available: [..]` adds to it. Sentinels are compared
//!   with the raw unsigned value before sign extension and scaling: the word of
//!   a 16-bit or 8-bit-half type, the assembled 32/64-bit value of wider types,
//!   each word of a composite value; negative sentinels are two's complement
//!   (-32768 = 0x8000). A model sentinel too wide for a register is ignored.
//! - `parts: [{address: 3501, factor: 1}, {address: 3502, factor: 1000}]`
//!   instead of `address`: a value summed from several int16/uint16 registers
//!   (Stiebel's kWh + MWh counters), always read in one request, absent when
//!   any part is a sentinel.
//! - `block: name` puts a register in a block declared under the model's
//!   `blocks:`; `optional: true` on a register makes it an optional block of
//!   its own. Blocks are never merged with other requests; a refused optional
//!   block is dropped and re-probed later (see [`PlanState`]).
//!
//! Every error of a file is reported at once as a [`Diagnostic`](crate::diagnostic::Diagnostic)
//! with the line of the register (or key) at fault and the register's name.

mod adaptive;
mod codec;
mod locate;
mod map;
mod model;
mod plan;
mod yaml;

pub use adaptive::{Change, Outcome, PlanState};
pub use codec::{Cells, EncodeError, Sample};
pub use map::RegisterMap;
pub use model::{BitField, Block, ByteOrder, DataType, Model, Part, Register, Table};
pub use plan::{Answer, PlanOptions, RawData, ReadPlan, ReadRequest};
