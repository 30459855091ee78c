//! What a running component is: the three traits and the context each gets.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Output;
use crate::event::Event;
use crate::telemetry::ComponentMetrics;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Produces events until `shutdown` is cancelled, then returns (dropping its output
/// closes the downstream channels, which is how shutdown travels down the graph).
#[async_trait]
pub trait Source: Send + 'static {
    async fn run(self: Box<Self>, cx: SourceContext) -> Result<(), BoxError>;
}

pub struct SourceContext {
    pub id: Arc<str>,
    pub out: Output,
    pub shutdown: CancellationToken,
    pub metrics: Arc<ComponentMetrics>,
}

/// A synchronous step: one event in, zero or more out. The topology runs each
/// transform in its own task and owns the channels, so transforms stay plain
/// functions that tests can call directly.
pub trait Transform: Send + 'static {
    fn transform(&mut self, event: Event, out: &mut Vec<Event>);

    /// How often [`Transform::tick`] should run, if at all (heartbeats, persistence).
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    fn tick(&mut self, _now: SystemTime, _out: &mut Vec<Event>) {}

    /// Called once when the input has closed, before the output closes.
    fn shutdown(&mut self, _out: &mut Vec<Event>) {}
}

/// Consumes events until its input closes, then flushes and returns.
#[async_trait]
pub trait Sink: Send + 'static {
    async fn run(self: Box<Self>, input: Input, cx: SinkContext) -> Result<(), BoxError>;
}

pub struct SinkContext {
    pub id: Arc<str>,
    pub metrics: Arc<ComponentMetrics>,
}

/// The receiving end of a component's queue; counts what it hands out.
pub struct Input {
    rx: mpsc::Receiver<Event>,
    metrics: Arc<ComponentMetrics>,
}

impl Input {
    pub(crate) fn new(rx: mpsc::Receiver<Event>, metrics: Arc<ComponentMetrics>) -> Self {
        Input { rx, metrics }
    }

    /// The next event, or `None` once every upstream has finished.
    pub async fn recv(&mut self) -> Option<Event> {
        let event = self.rx.recv().await?;
        self.metrics.received(1);
        Some(event)
    }

    /// Moves whatever is queued right now into `buf` (up to `max`), without waiting.
    pub fn drain_ready(&mut self, buf: &mut Vec<Event>, max: usize) {
        let mut n = 0;
        while n < max {
            match self.rx.try_recv() {
                Ok(e) => {
                    buf.push(e);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        self.metrics.received(n as u64);
    }
}
