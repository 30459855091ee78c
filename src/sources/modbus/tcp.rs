//! `modbus_tcp`: one task per host:port. Several unit ids behind one gateway
//! share its connection and are polled in turn; every other device has a task
//! and a connection of its own.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use indexmap::IndexMap;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::inventory::{Endpoint, Errors, Inventory};
use super::{forward, run_link, DeviceSpec, ModbusTcpConfig, PollConfig, Scheduled};
use crate::component::BuildContext;
use crate::component::{BoxError, Source, SourceContext};
use crate::modbus::{Link, TcpConnector};
use crate::registers::RegisterMap;
use crate::telemetry::Registry;

/// The running `modbus_tcp` source.
pub struct ModbusTcp {
    map: Arc<RegisterMap>,
    devices: Vec<DeviceSpec>,
    poll: PollConfig,
    timeout: Duration,
    /// Live poll interval changes (the dashboard's settings), when run in a pipeline.
    interval: Option<watch::Receiver<Duration>>,
    /// Where the devices' health is counted: the pipeline's, or the source's own.
    telemetry: Arc<Registry>,
}

impl ModbusTcpConfig {
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, BoxError> {
        let mut source = match cx.prepared::<Inventory>() {
            Some(checked) => self.source(checked.map.clone(), checked.devices.clone()),
            None => self.build_source(cx.pipeline_dir)?,
        };
        source.interval = Some(cx.control.poll_interval(cx.id, self.interval));
        source.telemetry = cx.registry.clone();
        Ok(Box::new(source))
    }

    /// The source without the pipeline around it (for `hpflow read` and tests).
    pub fn build_source(&self, dir: &std::path::Path) -> Result<ModbusTcp, BoxError> {
        let mut errors = Errors::default();
        let checked = self.check_into(dir, &mut errors);
        if !errors.0.is_empty() {
            return Err(errors.0.join("; ").into());
        }
        let (map, devices) = checked.ok_or("register map could not be loaded")?;
        Ok(self.source(map, devices))
    }

    fn source(&self, map: Arc<RegisterMap>, devices: Vec<DeviceSpec>) -> ModbusTcp {
        ModbusTcp {
            map,
            devices,
            poll: self.poll(),
            timeout: self.timeout,
            interval: None,
            telemetry: Arc::default(),
        }
    }
}

impl ModbusTcp {
    /// Where this source counts its devices' health (the pipeline's registry
    /// when built in one, else its own).
    pub fn telemetry(&self) -> Arc<Registry> {
        self.telemetry.clone()
    }
    /// Device groups by host:port, in inventory order.
    fn groups(&self) -> IndexMap<(String, u16), Vec<DeviceSpec>> {
        let mut groups: IndexMap<(String, u16), Vec<DeviceSpec>> = IndexMap::new();
        for d in &self.devices {
            if let Endpoint::Tcp { host, port } = &d.endpoint {
                groups.entry((host.clone(), *port)).or_default().push(d.clone());
            }
        }
        groups
    }
}

#[async_trait]
impl Source for ModbusTcp {
    async fn run(self: Box<Self>, mut cx: SourceContext) -> Result<(), BoxError> {
        let start = Instant::now();
        // The component's own token: a source with no downstream left stops
        // itself without touching the pipeline's shutdown.
        let stop = cx.shutdown.child_token();
        let (tx, rx) = mpsc::channel(256);
        let mut tasks = Vec::new();
        for ((host, port), specs) in self.groups() {
            let devices: Vec<Scheduled> = specs
                .into_iter()
                .filter_map(|spec| {
                    let model = self.map.model(&spec.model)?.clone();
                    Some(Scheduled::new(
                        &cx.id,
                        spec,
                        &model,
                        &self.poll,
                        self.timeout,
                        start,
                        self.telemetry.devices(),
                    ))
                })
                .collect();
            let link = Link::new(Box::new(TcpConnector { host, port }));
            tasks.push(tokio::spawn(run_link(
                link,
                devices,
                tx.clone(),
                stop.clone(),
                cx.metrics.clone(),
                self.interval.clone(),
            )));
        }
        drop(tx);
        forward(rx, &mut cx, stop, tasks, &self.telemetry).await;
        Ok(())
    }
}
