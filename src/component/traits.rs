//! What a running component is: the three traits and the context each gets.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
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
///
/// The topology can take the queue back to hand it to a replacement of the
/// component (a reload rebuilt it): [`Handover::take`] makes `recv` answer
/// `None` at once, as when every upstream finished, and once the component
/// has returned (dropping its `Input`) the queue, with what is still in it,
/// goes back to the topology.
pub struct Input {
    rx: Option<mpsc::Receiver<Event>>,
    metrics: Arc<ComponentMetrics>,
    handover: Option<(CancellationToken, oneshot::Sender<mpsc::Receiver<Event>>)>,
}

/// The topology's side of a component's queue: takes it back for a replacement.
pub struct Handover {
    take: CancellationToken,
    back: oneshot::Receiver<mpsc::Receiver<Event>>,
}

impl Handover {
    /// Ends the component's input; resolves with the queue once the component
    /// has returned, `None` if it is gone otherwise (its task panicked).
    pub async fn take(self) -> Option<mpsc::Receiver<Event>> {
        self.take.cancel();
        self.back.await.ok()
    }
}

impl Input {
    #[cfg(test)]
    pub(crate) fn new(rx: mpsc::Receiver<Event>, metrics: Arc<ComponentMetrics>) -> Self {
        Input {
            rx: Some(rx),
            metrics,
            handover: None,
        }
    }

    /// An input whose queue the topology can take back for a replacement.
    pub(crate) fn with_handover(rx: mpsc::Receiver<Event>, metrics: Arc<ComponentMetrics>) -> (Self, Handover) {
        let take = CancellationToken::new();
        let (tx, back) = oneshot::channel();
        let input = Input {
            rx: Some(rx),
            metrics,
            handover: Some((take.clone(), tx)),
        };
        (input, Handover { take, back })
    }

    fn taken(&self) -> bool {
        self.handover.as_ref().is_some_and(|(t, _)| t.is_cancelled())
    }

    /// The next event, or `None` once every upstream has finished (or the
    /// queue is being handed to a replacement).
    pub async fn recv(&mut self) -> Option<Event> {
        let rx = self.rx.as_mut()?;
        let event = match &self.handover {
            Some((take, _)) => tokio::select! {
                biased;
                _ = take.cancelled() => None,
                e = rx.recv() => e,
            },
            None => rx.recv().await,
        }?;
        self.metrics.received(1);
        Some(event)
    }

    /// Moves whatever is queued right now into `buf` (up to `max`), without waiting.
    pub fn drain_ready(&mut self, buf: &mut Vec<Event>, max: usize) {
        if self.taken() {
            return;
        }
        let Some(rx) = self.rx.as_mut() else { return };
        let mut n = 0;
        while n < max {
            match rx.try_recv() {
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

impl Drop for Input {
    fn drop(&mut self) {
        // Only a queue asked for goes back; otherwise it closes here, so the
        // upstreams see that this consumer is gone.
        if let (Some(rx), Some((take, back))) = (self.rx.take(), self.handover.take()) {
            if take.is_cancelled() {
                let _ = back.send(rx);
            }
        }
    }
}
