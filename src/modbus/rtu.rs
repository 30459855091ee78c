//! Modbus RTU transport: a serial port, its line settings and the silence
//! kept between frames.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio_modbus::client::Context;
use tokio_modbus::Slave;
use tokio_serial::SerialPortBuilderExt;

use super::link::Connector;

/// A serial line's parity bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
}

/// Modbus RTU's inter-frame gap: 3.5 characters at `baud` (start bit + data +
/// parity + stop bits), at least 2 ms.
pub fn inter_frame_gap(baud: u32, data_bits: u8, parity: Parity, stop_bits: u8) -> Duration {
    let bits = 1 + u32::from(data_bits) + u32::from(parity != Parity::None) + u32::from(stop_bits);
    let secs = 3.5 * f64::from(bits) / f64::from(baud.max(1));
    Duration::from_secs_f64(secs).max(Duration::from_millis(2))
}

/// Opens a serial port for Modbus RTU.
#[derive(Debug, Clone)]
pub struct RtuConnector {
    pub path: PathBuf,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
    pub gap: Duration,
}

impl RtuConnector {
    /// Opens the port with these settings.
    pub fn open(&self) -> io::Result<tokio_serial::SerialStream> {
        let parity = match self.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        };
        let data_bits = if self.data_bits == 7 {
            tokio_serial::DataBits::Seven
        } else {
            tokio_serial::DataBits::Eight
        };
        let stop_bits = if self.stop_bits == 2 {
            tokio_serial::StopBits::Two
        } else {
            tokio_serial::StopBits::One
        };
        tokio_serial::new(self.path.to_string_lossy(), self.baud)
            .parity(parity)
            .data_bits(data_bits)
            .stop_bits(stop_bits)
            .open_native_async()
            .map_err(io::Error::from)
    }
}

#[async_trait]
impl Connector for RtuConnector {
    async fn connect(&mut self, _timeout: Duration) -> io::Result<Context> {
        let port = self.open()?;
        Ok(tokio_modbus::client::rtu::attach_slave(port, Slave(1)))
    }

    fn describe(&self) -> String {
        format!("rtu {} {} baud", self.path.display(), self.baud)
    }

    fn drop_on_timeout(&self) -> bool {
        false
    }

    fn frame_gap(&self) -> Duration {
        self.gap
    }
}
