//! Fan-out from one component to its downstreams, with the queue policy of each edge.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::warn;

use crate::event::Event;
use crate::telemetry::ComponentMetrics;

/// What happens when a downstream queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room (edges into transforms: they are fast and never wait on I/O).
    Block,
    /// Drop the new event, count it and log it (edges into sinks: a slow or dead
    /// sink must never stall a source or the other sinks).
    DropNewest,
}

struct Target {
    id: Arc<str>,
    tx: mpsc::Sender<Event>,
    when_full: WhenFull,
    /// The receiving component's counters, where drops are charged.
    metrics: Arc<ComponentMetrics>,
}

/// The sending side a component writes to; cloning an event per downstream is an
/// `Arc` increment.
pub struct Output {
    targets: Vec<Target>,
    metrics: Arc<ComponentMetrics>,
}

impl Output {
    pub(crate) fn new(metrics: Arc<ComponentMetrics>) -> Self {
        Output {
            targets: Vec::new(),
            metrics,
        }
    }

    pub(crate) fn add(
        &mut self,
        id: Arc<str>,
        tx: mpsc::Sender<Event>,
        when_full: WhenFull,
        metrics: Arc<ComponentMetrics>,
    ) {
        self.targets.push(Target {
            id,
            tx,
            when_full,
            metrics,
        });
    }

    /// An output that goes nowhere, for tests and tools that run a component alone.
    pub fn detached(metrics: Arc<ComponentMetrics>) -> (Self, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(1024);
        let mut out = Output::new(metrics.clone());
        out.add("detached".into(), tx, WhenFull::Block, metrics);
        (out, rx)
    }

    /// Sends one event to every downstream. Returns false once every downstream
    /// has gone away, so a producer can stop early.
    pub async fn send(&mut self, event: Event) -> bool {
        self.metrics.sent(1);
        let mut alive = false;
        for t in &self.targets {
            let e = event.clone();
            match t.when_full {
                WhenFull::Block => {
                    if t.tx.send(e).await.is_ok() {
                        alive = true;
                    }
                }
                WhenFull::DropNewest => match t.tx.try_send(e) {
                    Ok(()) => alive = true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        alive = true;
                        let dropped = t.metrics.dropped(1);
                        // Log the first drop and then every 1000th, so a stuck sink
                        // is visible without flooding the log.
                        if dropped == 1 || dropped % 1000 == 0 {
                            warn!(component = %t.id, dropped_total = dropped, "Queue full, dropping newest event");
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                },
            }
        }
        alive
    }

    pub async fn send_all(&mut self, events: impl IntoIterator<Item = Event>) -> bool {
        let mut alive = !self.targets.is_empty();
        for e in events {
            alive = self.send(e).await;
        }
        alive
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}
