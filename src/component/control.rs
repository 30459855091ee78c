//! Runtime knobs that one component turns and another obeys, without a restart:
//! the dashboard's settings page changes the poll interval of running sources,
//! and a reload hands a running component what its check read anew (a source's
//! changed device inventory).
//!
//! Control keeps each source's own interval and the override, if any, so the
//! order in which components are built does not matter: a source registered
//! after the override was set starts at the override, and clearing the
//! override gives every source its own interval back.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::Prepared;

/// Shared by every component of one running pipeline.
#[derive(Debug, Default)]
pub struct Control {
    intervals: Mutex<Intervals>,
    /// Per component that follows reloads: the latest of what its check read.
    prepared: Mutex<BTreeMap<String, watch::Sender<Prepared>>>,
}

#[derive(Debug, Default)]
struct Intervals {
    /// Per polling source: its own interval (from its config) and the channel
    /// it watches.
    sources: BTreeMap<String, (Duration, watch::Sender<Duration>)>,
    /// Replaces every source's own interval while set.
    all: Option<Duration>,
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, Intervals> {
        self.intervals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by a polling source when it is built: registers its own interval
    /// and returns the receiver it must watch for changes (holding the override
    /// when one is set).
    pub fn poll_interval(&self, source: &str, own: Duration) -> watch::Receiver<Duration> {
        let mut i = self.lock();
        let current = i.all.unwrap_or(own);
        let entry = i
            .sources
            .entry(source.to_string())
            .or_insert_with(|| (own, watch::channel(current).0));
        entry.0 = own;
        entry.1.send_replace(current);
        entry.1.subscribe()
    }

    /// Sets the poll interval of one source; false when no such source polls.
    pub fn set_source_poll_interval(&self, source: &str, interval: Duration) -> bool {
        let i = self.lock();
        match i.sources.get(source) {
            Some((_, tx)) => {
                tx.send_replace(interval);
                true
            }
            None => false,
        }
    }

    /// Sets every polling source, now and later registered, to `interval`, or
    /// back to its own when `None`; returns how many sources poll now.
    pub fn set_poll_interval_override(&self, interval: Option<Duration>) -> usize {
        let mut i = self.lock();
        i.all = interval;
        for (own, tx) in i.sources.values() {
            tx.send_replace(interval.unwrap_or(*own));
        }
        i.sources.len()
    }

    /// Called by a component that applies reloads itself when it is built:
    /// returns the receiver on which each reload's check result arrives.
    pub fn follow_reloads(&self, component: &str, current: Prepared) -> watch::Receiver<Prepared> {
        let mut map = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        let tx = map
            .entry(component.to_string())
            .or_insert_with(|| watch::channel(current.clone()).0);
        tx.send_replace(current);
        tx.subscribe()
    }

    /// Hands a running component what a reload's check read; false when the
    /// component does not follow reloads (it must be rebuilt to change).
    pub fn reload(&self, component: &str, prepared: Prepared) -> bool {
        let map = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(component) {
            Some(tx) if tx.receiver_count() > 0 => {
                tx.send_replace(prepared);
                true
            }
            _ => false,
        }
    }

    /// The current interval of every polling source.
    pub fn poll_intervals(&self) -> Vec<(String, Duration)> {
        let i = self.lock();
        i.sources.iter().map(|(k, (_, tx))| (k.clone(), *tx.borrow())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_interval_reaches_the_source() {
        let c = Control::default();
        let mut rx = c.poll_interval("heatpumps", Duration::from_secs(10));
        assert!(c.set_source_poll_interval("heatpumps", Duration::from_secs(30)));
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), Duration::from_secs(30));
        assert!(!c.set_source_poll_interval("other", Duration::from_secs(5)));
        assert_eq!(c.set_poll_interval_override(Some(Duration::from_secs(5))), 1);
        assert_eq!(
            c.poll_intervals(),
            vec![("heatpumps".to_string(), Duration::from_secs(5))]
        );
    }

    #[test]
    fn the_override_reaches_sources_registered_later_and_clearing_it_restores_their_own() {
        let c = Control::default();
        let _a = c.poll_interval("a", Duration::from_secs(10));
        assert_eq!(c.set_poll_interval_override(Some(Duration::from_secs(60))), 1);
        let b = c.poll_interval("b", Duration::from_secs(20));
        assert_eq!(*b.borrow(), Duration::from_secs(60));
        assert_eq!(c.set_poll_interval_override(None), 2);
        assert_eq!(
            c.poll_intervals(),
            vec![
                ("a".to_string(), Duration::from_secs(10)),
                ("b".to_string(), Duration::from_secs(20))
            ]
        );
    }
}
