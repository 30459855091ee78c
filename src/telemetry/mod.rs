//! hpflow's own telemetry: what its components count about themselves and about
//! what they talk to. One [`Registry`] per running pipeline is handed to every
//! component through `BuildContext`; components count into it and the Prometheus
//! sink reads it at scrape time. No component reaches into another for these.

mod components;
pub mod cpu;
mod delivery;
mod devices;
mod efficiency;
mod reloads;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub use components::{ComponentCounts, ComponentMetrics};
pub use delivery::{DeliverySnapshot, DeliveryStats};
pub use devices::{
    on_time, DeviceHealth, HealthHandle, HealthRegistry, Histogram, RequestResult, Transition, DURATION_BUCKETS,
};
pub use efficiency::{cop, sum, Day, EfficiencyBoard};
pub use reloads::{ReloadSnapshot, ReloadStats};

/// Everything one pipeline counts: per-component event counters, per-device
/// health, per-sink delivery counters and its configuration reloads.
#[derive(Debug, Default)]
pub struct Registry {
    components: Mutex<BTreeMap<String, Arc<ComponentMetrics>>>,
    devices: HealthRegistry,
    deliveries: Mutex<BTreeMap<String, Arc<DeliveryStats>>>,
    reloads: ReloadStats,
    efficiency: EfficiencyBoard,
}

impl Registry {
    /// The counters of a component, created on first use.
    pub fn component(&self, id: &str, kind: &'static str, component_type: &'static str) -> Arc<ComponentMetrics> {
        let mut map = self.components.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_string())
            .or_insert_with(|| Arc::new(ComponentMetrics::new(kind, component_type)))
            .clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<ComponentMetrics>> {
        let map = self.components.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).cloned()
    }

    pub fn snapshot(&self) -> Vec<(String, &'static str, &'static str, ComponentCounts)> {
        let map = self.components.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(id, m)| (id.clone(), m.kind, m.component_type, m.counts()))
            .collect()
    }

    /// The health of every device the pipeline's sources poll.
    pub fn devices(&self) -> &HealthRegistry {
        &self.devices
    }

    /// The configuration reloads of the running pipeline.
    pub fn reloads(&self) -> &ReloadStats {
        &self.reloads
    }

    /// The daily energy and cycle figures of the `efficiency` transform.
    pub fn efficiency(&self) -> &EfficiencyBoard {
        &self.efficiency
    }

    /// Fresh delivery counters for the sink with this id (replacing those of an
    /// earlier sink with the same id).
    pub fn register_delivery(&self, id: &str) -> Arc<DeliveryStats> {
        let stats = Arc::new(DeliveryStats::default());
        let mut map = self.deliveries.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(id.to_string(), stats.clone());
        stats
    }

    /// The delivery counters of the sink with this id, if one was built.
    pub fn delivery(&self, id: &str) -> Option<Arc<DeliveryStats>> {
        let map = self.deliveries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).cloned()
    }

    /// Every delivering sink's counters, by component id.
    pub fn deliveries(&self) -> Vec<(String, Arc<DeliveryStats>)> {
        let map = self.deliveries.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
