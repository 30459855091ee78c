//! `modbus_tcp`: one task per host:port. Several unit ids behind one gateway
//! share its connection and are polled in turn; every other device has a task
//! and a connection of its own.

use std::sync::Arc;

use async_trait::async_trait;
use indexmap::IndexMap;

use super::inventory::{Endpoint, Errors, Inventory};
use super::{found, DeviceSpec, LinkGroup, ModbusTcpConfig, Polling};
use crate::component::{BoxError, BuildContext, Source, SourceContext};
use crate::modbus::{Link, TcpConnector};
use crate::registers::RegisterMap;
use crate::telemetry::Registry;

/// The running `modbus_tcp` source.
pub struct ModbusTcp {
    polling: Polling,
}

impl ModbusTcpConfig {
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, BoxError> {
        let mut source = match cx.prepared::<Inventory>() {
            Some(checked) => self.source(checked.map.clone(), checked.devices.clone()),
            None => self.build_source(cx.pipeline_dir)?,
        };
        source.polling.attach(cx);
        Ok(Box::new(source))
    }

    /// The source without the pipeline around it (for `hpflow read` and tests).
    pub fn build_source(&self, dir: &std::path::Path) -> Result<ModbusTcp, BoxError> {
        let mut errors = Errors::default();
        let checked = self.check_into(dir, &mut errors);
        let (map, devices) = found(checked, errors, "register map could not be loaded")?;
        Ok(self.source(map, devices))
    }

    fn source(&self, map: Arc<RegisterMap>, devices: Vec<DeviceSpec>) -> ModbusTcp {
        ModbusTcp {
            polling: Polling::new(map, devices, self.poll(), self.timeout),
        }
    }
}

impl ModbusTcp {
    /// Where this source counts its devices' health (the pipeline's registry
    /// when built in one, else its own).
    pub fn telemetry(&self) -> Arc<Registry> {
        self.polling.telemetry.clone()
    }
}

/// The links of an inventory: one per host:port, its devices in inventory order.
fn links(inventory: &Inventory) -> Vec<LinkGroup> {
    let mut groups: IndexMap<(String, u16), Vec<DeviceSpec>> = IndexMap::new();
    for d in &inventory.devices {
        if let Endpoint::Tcp { host, port } = &d.endpoint {
            groups.entry((host.clone(), *port)).or_default().push(d.clone());
        }
    }
    (groups.into_iter())
        .map(|((host, port), specs)| LinkGroup {
            key: format!("{host}:{port}"),
            link: Link::new(Box::new(TcpConnector { host, port })),
            specs,
        })
        .collect()
}

#[async_trait]
impl Source for ModbusTcp {
    async fn run(self: Box<Self>, mut cx: SourceContext) -> Result<(), BoxError> {
        self.polling.run(&mut cx, links).await;
        Ok(())
    }
}
