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

impl SourceConfig {
    /// Whether `next` differs from this config in its devices only: the running
    /// source then takes it live, from what the check read (`Control::reload`).
    pub fn differs_in_devices_only(&self, next: &SourceConfig) -> bool {
        match (self, next) {
            (Self::ModbusTcp(a), Self::ModbusTcp(b)) => {
                let mut a = a.clone();
                a.devices = b.devices.clone();
                a == *b
            }
            (Self::ModbusRtu(a), Self::ModbusRtu(b)) => {
                let mut a = a.clone();
                a.devices = b.devices.clone();
                a == *b
            }
            _ => false,
        }
    }
}
