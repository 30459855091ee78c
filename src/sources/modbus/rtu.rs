//! `modbus_rtu`: one task owns the serial port and polls every device on the
//! bus in turn, keeping the inter-frame gap between frames.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_modbus::client::Context;
use tokio_modbus::Slave;
use tokio_serial::SerialPortBuilderExt;

use super::inventory::Errors;
use super::{forward, run_link, Connector, Device, DeviceSpec, Link, ModbusRtuConfig, Parity, PollConfig};
use crate::component::BuildContext;
use crate::component::{BoxError, Source, SourceContext};
use crate::registers::RegisterMap;
use crate::telemetry::Registry;

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
    /// The line settings of a config, for `path`.
    pub fn from_config(c: &ModbusRtuConfig, path: PathBuf) -> Self {
        RtuConnector {
            path,
            baud: c.baud,
            parity: c.parity,
            data_bits: c.data_bits,
            stop_bits: c.stop_bits,
            gap: c.frame_gap(),
        }
    }

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

/// The running `modbus_rtu` source.
pub struct ModbusRtu {
    map: Arc<RegisterMap>,
    devices: Vec<DeviceSpec>,
    connector: RtuConnector,
    poll: PollConfig,
    timeout: Duration,
    /// Live poll interval changes (the dashboard's settings), when run in a pipeline.
    interval: Option<watch::Receiver<Duration>>,
    /// Where the devices' health is counted: the pipeline's, or the source's own.
    telemetry: Arc<Registry>,
}

impl ModbusRtuConfig {
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, BoxError> {
        let mut source = self.build_source(cx.pipeline_dir)?;
        source.interval = Some(cx.control.poll_interval(cx.id, self.interval));
        source.telemetry = cx.registry.clone();
        Ok(Box::new(source))
    }

    /// The source without the pipeline around it (for `hpflow read` and tests).
    pub fn build_source(&self, dir: &std::path::Path) -> Result<ModbusRtu, BoxError> {
        let mut errors = Errors::default();
        let checked = self.check_into(dir, &mut errors);
        if !errors.0.is_empty() {
            return Err(errors.0.join("; ").into());
        }
        let (map, devices, bus) = checked.ok_or("register map or serial port missing")?;
        Ok(ModbusRtu {
            map,
            devices,
            connector: RtuConnector::from_config(self, bus),
            poll: self.poll(),
            timeout: self.timeout,
            interval: None,
            telemetry: Arc::default(),
        })
    }
}

impl ModbusRtu {
    /// Where this source counts its devices' health (the pipeline's registry
    /// when built in one, else its own).
    pub fn telemetry(&self) -> Arc<Registry> {
        self.telemetry.clone()
    }
}

#[async_trait]
impl Source for ModbusRtu {
    async fn run(self: Box<Self>, mut cx: SourceContext) -> Result<(), BoxError> {
        let start = Instant::now();
        // The component's own token: a source with no downstream left stops
        // itself without touching the pipeline's shutdown.
        let stop = cx.shutdown.child_token();
        let (tx, rx) = mpsc::channel(256);
        let devices: Vec<Device> = self
            .devices
            .iter()
            .filter_map(|spec| {
                let model = self.map.model(&spec.model)?.clone();
                Some(Device::new(
                    &cx.id,
                    spec.clone(),
                    &model,
                    &self.poll,
                    self.timeout,
                    start,
                    self.telemetry.devices(),
                ))
            })
            .collect();
        let link = Link::new(Box::new(self.connector.clone()));
        let task = tokio::spawn(run_link(
            link,
            devices,
            tx,
            stop.clone(),
            cx.metrics.clone(),
            self.interval.clone(),
        ));
        forward(rx, &mut cx, stop, vec![task], &self.telemetry).await;
        Ok(())
    }
}
