//! Sources: protocol nouns that read devices and emit one event per poll.
//!
//! Adding one: write its module, add a variant here.

pub mod modbus;

use serde::Deserialize;

use crate::config::{BuildContext, Check, ComponentConfig, Kind};
use crate::topology::{BoxError, Source};

#[derive(Debug, Clone)]
pub enum SourceConfig {
    ModbusTcp(modbus::ModbusTcpConfig),
    ModbusRtu(modbus::ModbusRtuConfig),
}

impl ComponentConfig for SourceConfig {
    const KIND: Kind = Kind::Source;
    const TYPES: &'static [&'static str] = &["modbus_rtu", "modbus_tcp"];

    fn parse(ty: &str, de: toml::de::ValueDeserializer<'_>) -> Option<Result<Self, toml::de::Error>> {
        Some(match ty {
            "modbus_tcp" => modbus::ModbusTcpConfig::deserialize(de).map(Self::ModbusTcp),
            "modbus_rtu" => modbus::ModbusRtuConfig::deserialize(de).map(Self::ModbusRtu),
            _ => return None,
        })
    }

    fn type_name(&self) -> &'static str {
        match self {
            Self::ModbusTcp(_) => "modbus_tcp",
            Self::ModbusRtu(_) => "modbus_rtu",
        }
    }

    fn check(&self, cx: &mut Check<'_>) {
        match self {
            Self::ModbusTcp(c) => c.check(cx),
            Self::ModbusRtu(c) => c.check(cx),
        }
    }
}

impl SourceConfig {
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, BoxError> {
        match self {
            Self::ModbusTcp(c) => c.build(cx),
            Self::ModbusRtu(c) => c.build(cx),
        }
    }
}
