//! Modbus RTU transport: a serial port, its line settings and the silence
//! kept between frames.
//!
//! A unit that answers after the request timed out would have its answer read
//! as the answer to the next request (same unit and function code, same length:
//! nothing in an RTU frame tells them apart), and values would land in the
//! wrong fields. So after a timeout the port is closed, and opened again only
//! after discarding whatever arrives for one more timeout.

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
    /// After a timeout: how long to discard input before the next request.
    pub settle: Option<Duration>,
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
        let mut port = self.open()?;
        if let Some(settle) = self.settle.take() {
            discard_input(&mut port, settle).await?;
        }
        Ok(tokio_modbus::client::rtu::attach_slave(port, Slave(1)))
    }

    fn describe(&self) -> String {
        format!("rtu {} {} baud", self.path.display(), self.baud)
    }

    fn drop_on_timeout(&self) -> bool {
        true
    }

    fn timed_out(&mut self, timeout: Duration) {
        self.settle = Some(timeout + self.gap);
    }

    fn frame_gap(&self) -> Duration {
        self.gap
    }
}

/// Reads and drops what the line brings for `settle` (a late answer), then
/// clears what the driver still holds.
async fn discard_input(port: &mut tokio_serial::SerialStream, settle: Duration) -> io::Result<()> {
    use tokio::io::AsyncReadExt;
    use tokio_serial::SerialPort;
    let deadline = tokio::time::Instant::now() + settle;
    let mut buf = [0u8; 256];
    while let Ok(read) = tokio::time::timeout_at(deadline, port.read(&mut buf)).await {
        if read? == 0 {
            break;
        }
    }
    port.clear(tokio_serial::ClearBuffer::Input).map_err(io::Error::from)
}
