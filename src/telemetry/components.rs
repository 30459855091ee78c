//! Events in/out/dropped and errors, per component: plain atomics the topology
//! counts into and the Prometheus sink reads at scrape time, so counting costs
//! nothing when nobody scrapes.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct ComponentMetrics {
    pub kind: &'static str,
    pub component_type: &'static str,
    events_in: AtomicU64,
    events_out: AtomicU64,
    events_dropped: AtomicU64,
    errors: AtomicU64,
    /// Thread CPU time charged by [`super::cpu`], in nanoseconds.
    pub(super) cpu_nanos: AtomicU64,
}

/// A point-in-time copy of one component's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ComponentCounts {
    pub events_in: u64,
    pub events_out: u64,
    pub events_dropped: u64,
    pub errors: u64,
    /// Thread CPU time charged to the component, in nanoseconds: 0 unless
    /// `HPFLOW_COMPONENT_CPU` turned metering on (see [`super::cpu`]).
    #[serde(skip)]
    pub cpu_nanos: u64,
}

impl ComponentMetrics {
    pub fn new(kind: &'static str, component_type: &'static str) -> Self {
        ComponentMetrics {
            kind,
            component_type,
            ..Default::default()
        }
    }

    pub fn received(&self, n: u64) {
        self.events_in.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sent(&self, n: u64) {
        self.events_out.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts dropped events and returns the new total.
    pub fn dropped(&self, n: u64) -> u64 {
        self.events_dropped.fetch_add(n, Ordering::Relaxed) + n
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> ComponentCounts {
        ComponentCounts {
            events_in: self.events_in.load(Ordering::Relaxed),
            events_out: self.events_out.load(Ordering::Relaxed),
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            cpu_nanos: self.cpu_nanos.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Registry;

    #[test]
    fn registry_returns_the_same_counters_for_an_id() {
        let r = Registry::default();
        r.component("a", "sink", "console").dropped(2);
        assert_eq!(r.component("a", "sink", "console").counts().events_dropped, 2);
        assert_eq!(r.snapshot().len(), 1);
    }
}
