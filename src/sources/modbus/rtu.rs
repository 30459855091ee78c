//! `modbus_rtu`: one task owns the serial port and polls every device on the
//! bus in turn, keeping the inter-frame gap between frames.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::inventory::{Errors, Inventory};
use super::{forward, run_link, DeviceSpec, ModbusRtuConfig, PollConfig, Scheduled};
use crate::component::BuildContext;
use crate::component::{BoxError, Source, SourceContext};
use crate::modbus::{Link, RtuConnector};
use crate::registers::RegisterMap;
use crate::telemetry::Registry;

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
        let checked = cx.prepared::<Inventory>().and_then(|c| Some((c, c.bus.clone()?)));
        let mut source = match checked {
            Some((checked, bus)) => self.source(checked.map.clone(), checked.devices.clone(), bus),
            None => self.build_source(cx.pipeline_dir)?,
        };
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
        Ok(self.source(map, devices, bus))
    }

    fn source(&self, map: Arc<RegisterMap>, devices: Vec<DeviceSpec>, bus: PathBuf) -> ModbusRtu {
        ModbusRtu {
            map,
            devices,
            connector: self.connector(bus),
            poll: self.poll(),
            timeout: self.timeout,
            interval: None,
            telemetry: Arc::default(),
        }
    }

    /// The line settings of this config, for the port at `path`.
    fn connector(&self, path: PathBuf) -> RtuConnector {
        RtuConnector {
            path,
            baud: self.baud,
            parity: self.parity,
            data_bits: self.data_bits,
            stop_bits: self.stop_bits,
            gap: self.frame_gap(),
        }
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
        let devices: Vec<Scheduled> = self
            .devices
            .iter()
            .filter_map(|spec| {
                let model = self.map.model(&spec.model)?.clone();
                Some(Scheduled::new(
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
