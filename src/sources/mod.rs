//! Sources: protocol nouns that read devices and emit one event per poll.
//!
//! Adding one: write its module, add a row to the table below.

pub mod modbus;

use crate::component::{components, Kind};

components! {
    /// Every source type, by its `type` in a pipeline file.
    pub enum SourceConfig: Kind::Source => dyn Source {
        "modbus_rtu" => ModbusRtu(modbus::ModbusRtuConfig),
        "modbus_tcp" => ModbusTcp(modbus::ModbusTcpConfig),
    }
}
