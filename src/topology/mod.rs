//! Runs a checked pipeline: one task per component, bounded channels, fan-out by
//! cloning, and an orderly shutdown that travels down the graph.
//!
//! Queue policy: a transform's input waits for room (transforms never wait on
//! I/O, so this is short); a sink's input drops the newest event when full and
//! counts it, so a slow or dead sink never stalls a source or another sink.
//! Shutdown: cancelling the sources makes them return; dropping their outputs
//! closes the transforms' inputs, which drain, flush and close theirs, until
//! every sink has seen its input close, flushed, and returned.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::component::{
    BoxError, BuildContext, ComponentConfig, Control, Input, Kind, Output, Sink, SinkContext, Source, SourceContext,
    Transform, WhenFull,
};
use crate::config::CheckedPipeline;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::event::Event;
use crate::telemetry::{ComponentMetrics, Registry};

/// Capacity of a transform's input queue.
const TRANSFORM_QUEUE: usize = 256;

type Node = (Kind, usize);

/// One built component with its id, type name and (for sinks) queue capacity.
struct Slot<C> {
    id: Arc<str>,
    ty: &'static str,
    component: C,
    queue: usize,
}

impl<C> Slot<C> {
    fn new(id: &str, ty: &'static str, component: C, queue: usize) -> Self {
        Slot {
            id: Arc::from(id),
            ty,
            component,
            queue,
        }
    }
}

/// The sending end of a consumer's queue, with what fan-out needs to charge drops.
struct QueueEnd {
    tx: mpsc::Sender<Event>,
    metrics: Arc<ComponentMetrics>,
    id: Arc<str>,
}

/// Built components, not yet running. Tests may swap a component before start.
pub struct Pieces {
    sources: Vec<Slot<Box<dyn Source>>>,
    transforms: Vec<Slot<Box<dyn Transform>>>,
    sinks: Vec<Slot<Box<dyn Sink>>>,
    edges: Vec<(Node, Node)>,
    registry: Arc<Registry>,
    control: Arc<Control>,
    shutdown_timeout: Duration,
}

/// Builds every component of a checked pipeline. Errors here are problems the
/// compile pass cannot see (a data folder that cannot be created, a state file
/// that cannot be read); all are reported at once.
pub fn build<'a>(p: &'a CheckedPipeline, registry: Arc<Registry>) -> Result<Pieces, Diagnostics> {
    let mut diags = Diagnostics::default();
    let file = &p.file;
    let control = Arc::new(Control::default());
    if let Err(e) = std::fs::create_dir_all(&file.data_dir) {
        diags.push(Diagnostic::file_error(
            &file.data_dir,
            format!("cannot create the data directory: {e} (set `data_dir` or HPFLOW_DATA_DIR)"),
        ));
        return Err(diags);
    }
    let empty = Vec::new();
    let mut fail = |kind: Kind, id: &str, e: BoxError| {
        diags.push(
            Diagnostic::file_error(&file.source.path, e.to_string()).in_component(format!("{}.{id}", kind.table())),
        );
    };
    // What every component is built with; `node` finds its inputs and what its
    // check kept.
    let context = |node: Node, id: &'a str| BuildContext {
        id,
        pipeline_dir: &file.dir,
        data_dir: &file.data_dir,
        input_schemas: p.input_schemas.get(&node).unwrap_or(&empty),
        registry: &registry,
        control: &control,
        prepared: p.prepared.get(&node),
    };
    let mut sources = Vec::new();
    for (i, c) in file.sources.iter().enumerate() {
        match c.config.build(&context((Kind::Source, i), &c.id)) {
            Ok(s) => sources.push(Slot::new(&c.id, c.config.type_name(), s, 0)),
            Err(e) => fail(Kind::Source, &c.id, e),
        }
    }
    let mut transforms = Vec::new();
    for (i, c) in file.transforms.iter().enumerate() {
        match c.config.build(&context((Kind::Transform, i), &c.id)) {
            Ok(t) => transforms.push(Slot::new(&c.id, c.config.type_name(), t, TRANSFORM_QUEUE)),
            Err(e) => fail(Kind::Transform, &c.id, e),
        }
    }
    let mut sinks = Vec::new();
    for (i, c) in file.sinks.iter().enumerate() {
        match c.config.build(&context((Kind::Sink, i), &c.id)) {
            Ok(s) => sinks.push(Slot::new(&c.id, c.config.type_name(), s, c.queue_size)),
            Err(e) => fail(Kind::Sink, &c.id, e),
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(Pieces {
        sources,
        transforms,
        sinks,
        edges: p.edges.iter().map(|e| (e.from, e.to)).collect(),
        registry,
        control,
        shutdown_timeout: file.shutdown_timeout,
    })
}

impl Pieces {
    /// Replaces a built source (tests feed pipelines from their own sources).
    pub fn replace_source(&mut self, id: &str, source: Box<dyn Source>) -> bool {
        match self.sources.iter_mut().find(|s| &*s.id == id) {
            Some(slot) => {
                slot.component = source;
                true
            }
            None => false,
        }
    }

    /// Replaces a built sink.
    pub fn replace_sink(&mut self, id: &str, sink: Box<dyn Sink>) -> bool {
        match self.sinks.iter_mut().find(|s| &*s.id == id) {
            Some(slot) => {
                slot.component = sink;
                true
            }
            None => false,
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Wires the channels and spawns one task per component.
    pub fn start(self) -> RunningTopology {
        let registry = self.registry.clone();
        let shutdown = CancellationToken::new();
        let metrics = |id: &str, kind: Kind, ty: &'static str| registry.component(id, kind.noun(), ty);

        // One queue per consumer.
        let mut senders: HashMap<Node, QueueEnd> = HashMap::new();
        let mut queue = |node: Node, slot_id: &Arc<str>, ty: &'static str, capacity: usize| {
            let (tx, rx) = mpsc::channel(capacity);
            let m = metrics(slot_id, node.0, ty);
            let end = QueueEnd {
                tx,
                metrics: m.clone(),
                id: slot_id.clone(),
            };
            senders.insert(node, end);
            Input::new(rx, m)
        };
        let transform_inputs: Vec<Input> = (self.transforms.iter().enumerate())
            .map(|(i, s)| queue((Kind::Transform, i), &s.id, s.ty, s.queue))
            .collect();
        let sink_inputs: Vec<Input> = (self.sinks.iter().enumerate())
            .map(|(i, s)| queue((Kind::Sink, i), &s.id, s.ty, s.queue))
            .collect();
        let edges = self.edges;
        let output_of = |node: Node, own: Arc<ComponentMetrics>| {
            let mut out = Output::new(own);
            for (_, to) in edges.iter().filter(|(from, _)| *from == node) {
                if let Some(q) = senders.get(to) {
                    let policy = if to.0 == Kind::Sink {
                        WhenFull::DropNewest
                    } else {
                        WhenFull::Block
                    };
                    out.add(q.id.clone(), q.tx.clone(), policy, q.metrics.clone());
                }
            }
            out
        };

        let mut tasks: Vec<(Arc<str>, JoinHandle<()>)> = Vec::new();
        for (
            Slot {
                id,
                ty,
                component: sink,
                ..
            },
            input,
        ) in self.sinks.into_iter().zip(sink_inputs)
        {
            let cx = SinkContext {
                id: id.clone(),
                metrics: metrics(&id, Kind::Sink, ty),
            };
            let name = id.clone();
            tasks.push((
                id,
                tokio::spawn(async move {
                    if let Err(e) = sink.run(input, cx).await {
                        error!(component = %name, error = %e, "Sink stopped with an error");
                    }
                }),
            ));
        }
        for (
            i,
            (
                Slot {
                    id,
                    ty,
                    component: transform,
                    ..
                },
                input,
            ),
        ) in self.transforms.into_iter().zip(transform_inputs).enumerate()
        {
            let m = metrics(&id, Kind::Transform, ty);
            let out = output_of((Kind::Transform, i), m);
            tasks.push((id.clone(), tokio::spawn(run_transform(id, transform, input, out))));
        }
        for (
            i,
            Slot {
                id,
                ty,
                component: source,
                ..
            },
        ) in self.sources.into_iter().enumerate()
        {
            let m = metrics(&id, Kind::Source, ty);
            let cx = SourceContext {
                id: id.clone(),
                out: output_of((Kind::Source, i), m.clone()),
                shutdown: shutdown.child_token(),
                metrics: m,
            };
            let name = id.clone();
            tasks.push((
                id,
                tokio::spawn(async move {
                    if let Err(e) = source.run(cx).await {
                        error!(component = %name, error = %e, "Source stopped with an error");
                    }
                }),
            ));
        }
        // Only the outputs hold senders now; when they drop, queues close.
        drop(senders);

        RunningTopology {
            tasks,
            shutdown,
            registry,
            shutdown_timeout: self.shutdown_timeout,
        }
    }
}

async fn run_transform(id: Arc<str>, mut t: Box<dyn Transform>, mut input: Input, mut out: Output) {
    let mut buf = Vec::new();
    let mut ticker = t.tick_interval().map(|p| {
        let mut i = tokio::time::interval(p);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    loop {
        tokio::select! {
            ev = input.recv() => match ev {
                Some(e) => t.transform(e, &mut buf),
                None => break,
            },
            _ = next_tick(&mut ticker) => {
                t.tick(SystemTime::now(), &mut buf);
            }
        }
        if !buf.is_empty() {
            out.send_all(buf.drain(..)).await;
        }
    }
    t.shutdown(&mut buf);
    out.send_all(buf.drain(..)).await;
    tracing::debug!(component = %id, "Transform finished");
}

/// Completes at the next tick, or never for a transform without ticks.
async fn next_tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A running pipeline.
pub struct RunningTopology {
    tasks: Vec<(Arc<str>, JoinHandle<()>)>,
    shutdown: CancellationToken,
    registry: Arc<Registry>,
    shutdown_timeout: Duration,
}

impl RunningTopology {
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// A token that stops the sources when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops the sources and waits for everything downstream to drain and flush,
    /// at most the pipeline's `shutdown_timeout`; whatever is still running then
    /// is aborted and named. Returns true on a clean stop.
    pub async fn stop(self) -> bool {
        self.shutdown.cancel();
        let timeout = self.shutdown_timeout;
        self.wait_with_timeout(timeout).await
    }

    /// Waits until every component has finished (sources that end on their own).
    pub async fn wait(self) {
        for (id, t) in self.tasks {
            if let Err(e) = t.await {
                error!(component = %id, error = %e, "Component task failed");
            }
        }
    }

    async fn wait_with_timeout(self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut clean = true;
        for (id, mut t) in self.tasks {
            match tokio::time::timeout_at(deadline, &mut t).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    clean = false;
                    error!(component = %id, error = %e, "Component task failed");
                }
                Err(_) => {
                    clean = false;
                    warn!(component = %id, timeout = ?timeout, "Component did not finish within the shutdown timeout; aborting it");
                    t.abort();
                }
            }
        }
        if clean {
            info!("Pipeline stopped cleanly");
        }
        clean
    }
}

#[cfg(test)]
mod tests;
