//! Runtime knobs that one component turns and another obeys, without a restart:
//! the dashboard's settings page changes the poll interval of running sources.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// Shared by every component of one running pipeline.
#[derive(Debug, Default)]
pub struct Control {
    intervals: Mutex<BTreeMap<String, watch::Sender<Duration>>>,
}

impl Control {
    /// Called by a polling source when it is built: registers its interval and
    /// returns the receiver it must watch for changes.
    pub fn poll_interval(&self, source: &str, initial: Duration) -> watch::Receiver<Duration> {
        let mut map = self.intervals.lock().unwrap_or_else(|p| p.into_inner());
        let tx = map
            .entry(source.to_string())
            .or_insert_with(|| watch::channel(initial).0);
        tx.send_replace(initial);
        tx.subscribe()
    }

    /// Sets the poll interval of one source; false when no such source polls.
    pub fn set_source_poll_interval(&self, source: &str, interval: Duration) -> bool {
        let map = self.intervals.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(source) {
            Some(tx) => {
                tx.send_replace(interval);
                true
            }
            None => false,
        }
    }

    /// Sets the poll interval of every polling source; returns how many.
    pub fn set_poll_interval(&self, interval: Duration) -> usize {
        let map = self.intervals.lock().unwrap_or_else(|p| p.into_inner());
        for tx in map.values() {
            tx.send_replace(interval);
        }
        map.len()
    }

    /// The current interval of every polling source.
    pub fn poll_intervals(&self) -> Vec<(String, Duration)> {
        let map = self.intervals.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, tx)| (k.clone(), *tx.borrow())).collect()
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
        assert_eq!(c.set_poll_interval(Duration::from_secs(5)), 1);
        assert_eq!(
            c.poll_intervals(),
            vec![("heatpumps".to_string(), Duration::from_secs(5))]
        );
    }
}
