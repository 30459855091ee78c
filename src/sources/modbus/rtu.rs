//! `modbus_rtu`: one task owns the serial port and polls every device on the
//! bus in turn, keeping the inter-frame gap between frames.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::inventory::{Errors, Inventory};
use super::{found, DeviceSpec, LinkGroup, ModbusRtuConfig, Polling};
use crate::component::{BoxError, BuildContext, Source, SourceContext};
use crate::modbus::{Link, RtuConnector};
use crate::registers::RegisterMap;
use crate::telemetry::Registry;

/// The running `modbus_rtu` source.
pub struct ModbusRtu {
    polling: Polling,
    connector: RtuConnector,
}

impl ModbusRtuConfig {
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, BoxError> {
        let checked = cx.prepared::<Inventory>().and_then(|c| Some((c, c.bus.clone()?)));
        let mut source = match checked {
            Some((checked, bus)) => self.source(checked.map.clone(), checked.devices.clone(), bus),
            None => self.build_source(cx.pipeline_dir)?,
        };
        source.polling.attach(cx);
        Ok(Box::new(source))
    }

    /// The source without the pipeline around it (for `hpflow read` and tests).
    pub fn build_source(&self, dir: &std::path::Path) -> Result<ModbusRtu, BoxError> {
        let mut errors = Errors::default();
        let checked = self.check_into(dir, &mut errors);
        let (map, devices, bus) = found(checked, errors, "register map or serial port missing")?;
        Ok(self.source(map, devices, bus))
    }

    fn source(&self, map: Arc<RegisterMap>, devices: Vec<DeviceSpec>, bus: PathBuf) -> ModbusRtu {
        ModbusRtu {
            polling: Polling::new(map, devices, self.poll(), self.timeout),
            connector: self.connector(bus),
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
            settle: None,
        }
    }
}

impl ModbusRtu {
    /// Where this source counts its devices' health (the pipeline's registry
    /// when built in one, else its own).
    pub fn telemetry(&self) -> Arc<Registry> {
        self.polling.telemetry.clone()
    }
}

#[async_trait]
impl Source for ModbusRtu {
    async fn run(self: Box<Self>, mut cx: SourceContext) -> Result<(), BoxError> {
        let this = *self;
        let connector = this.connector;
        // One link: the bus. A reload may move it to another port.
        let links = move |inventory: &Inventory| {
            let mut connector = connector.clone();
            if let Some(bus) = &inventory.bus {
                connector.path = bus.clone();
            }
            vec![LinkGroup {
                key: connector.path.display().to_string(),
                link: Link::new(Box::new(connector)),
                specs: inventory.devices.clone(),
            }]
        };
        this.polling.run(&mut cx, links).await;
        Ok(())
    }
}
