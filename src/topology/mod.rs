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
    BoxError, BuildContext, ComponentConfig, Control, Handover, Input, Kind, Output, Sink, SinkContext, Source,
    SourceContext, Transform, WhenFull,
};
use crate::config::CheckedPipeline;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::event::Event;
use crate::telemetry::{cpu, ComponentMetrics, Registry};

/// Capacity of a transform's input queue.
const TRANSFORM_QUEUE: usize = 256;

/// A component by kind and place in the pipeline file.
pub type Node = (Kind, usize);

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

/// What every component is built with; `node` finds its inputs and what its
/// check kept.
fn context<'a>(
    p: &'a CheckedPipeline,
    node: Node,
    id: &'a str,
    registry: &'a Arc<Registry>,
    control: &'a Arc<Control>,
) -> BuildContext<'a> {
    BuildContext {
        id,
        pipeline_dir: &p.file.dir,
        data_dir: &p.file.data_dir,
        input_schemas: p.input_schemas.get(&node).map_or(&[], Vec::as_slice),
        registry,
        control,
        prepared: p.prepared.get(&node),
    }
}

/// Builds the component at `node` of a checked pipeline alone (a reload's
/// replacement), with the running pipeline's telemetry and knobs; returns it
/// with its type name.
pub fn build_one(
    p: &CheckedPipeline,
    node: Node,
    registry: &Arc<Registry>,
    control: &Arc<Control>,
) -> Result<(Built, &'static str), BoxError> {
    let f = &p.file;
    let missing = || -> BoxError { format!("no {} at place {} of the pipeline", node.0.noun(), node.1).into() };
    match node.0 {
        Kind::Source => {
            let c = f.sources.get(node.1).ok_or_else(missing)?;
            let built = c.config.build(&context(p, node, &c.id, registry, control))?;
            Ok((Built::Source(built), c.config.type_name()))
        }
        Kind::Transform => {
            let c = f.transforms.get(node.1).ok_or_else(missing)?;
            let built = c.config.build(&context(p, node, &c.id, registry, control))?;
            Ok((Built::Transform(built), c.config.type_name()))
        }
        Kind::Sink => {
            let c = f.sinks.get(node.1).ok_or_else(missing)?;
            let built = c.config.build(&context(p, node, &c.id, registry, control))?;
            Ok((Built::Sink(built), c.config.type_name()))
        }
    }
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
    let mut fail = |kind: Kind, id: &str, e: BoxError| {
        diags.push(
            Diagnostic::file_error(&file.source.path, e.to_string()).in_component(format!("{}.{id}", kind.table())),
        );
    };
    let context = |node: Node, id: &'a str| context(p, node, id, &registry, &control);
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
        let mut wiring = Wiring {
            senders: HashMap::new(),
            edges: self.edges,
            registry: registry.clone(),
        };
        // One queue per consumer.
        let mut queue = |node: Node, slot_id: &Arc<str>, ty: &'static str, capacity: usize| {
            let (tx, rx) = mpsc::channel(capacity);
            let m = wiring.metrics(slot_id, node.0, ty);
            let end = QueueEnd {
                tx,
                metrics: m.clone(),
                id: slot_id.clone(),
            };
            wiring.senders.insert(node, end);
            rx
        };
        let transform_queues: Vec<_> = (self.transforms.iter().enumerate())
            .map(|(i, s)| queue((Kind::Transform, i), &s.id, s.ty, s.queue))
            .collect();
        let sink_queues: Vec<_> = (self.sinks.iter().enumerate())
            .map(|(i, s)| queue((Kind::Sink, i), &s.id, s.ty, s.queue))
            .collect();

        let mut tasks = Vec::new();
        for (i, (slot, rx)) in self.sinks.into_iter().zip(sink_queues).enumerate() {
            tasks.push(wiring.spawn(
                (Kind::Sink, i),
                slot.id,
                slot.ty,
                Built::Sink(slot.component),
                Some(rx),
                &shutdown,
            ));
        }
        for (i, (slot, rx)) in self.transforms.into_iter().zip(transform_queues).enumerate() {
            tasks.push(wiring.spawn(
                (Kind::Transform, i),
                slot.id,
                slot.ty,
                Built::Transform(slot.component),
                Some(rx),
                &shutdown,
            ));
        }
        for (i, slot) in self.sources.into_iter().enumerate() {
            tasks.push(wiring.spawn(
                (Kind::Source, i),
                slot.id,
                slot.ty,
                Built::Source(slot.component),
                None,
                &shutdown,
            ));
        }

        RunningTopology {
            tasks,
            shutdown,
            registry,
            wiring: Some(wiring),
            shutdown_timeout: self.shutdown_timeout,
        }
    }
}

/// A built component of any kind.
pub enum Built {
    Source(Box<dyn Source>),
    Transform(Box<dyn Transform>),
    Sink(Box<dyn Sink>),
}

/// What a running pipeline keeps to start a component again: the sending end
/// of every queue and the edges. Dropped at shutdown, so the queues close when
/// the components' own outputs do.
struct Wiring {
    senders: HashMap<Node, QueueEnd>,
    edges: Vec<(Node, Node)>,
    registry: Arc<Registry>,
}

/// One running component.
struct Task {
    node: Node,
    id: Arc<str>,
    handle: JoinHandle<()>,
    /// Stops this source alone.
    stop: Option<CancellationToken>,
    /// Takes this consumer's queue back.
    handover: Option<Handover>,
}

impl Wiring {
    fn metrics(&self, id: &str, kind: Kind, ty: &'static str) -> Arc<ComponentMetrics> {
        self.registry.component(id, kind.noun(), ty)
    }

    /// The output of `node`: a sender into each downstream queue, with the
    /// edge's policy.
    fn output_of(&self, node: Node, own: Arc<ComponentMetrics>) -> Output {
        let mut out = Output::new(own);
        for (_, to) in self.edges.iter().filter(|(from, _)| *from == node) {
            if let Some(q) = self.senders.get(to) {
                let policy = if to.0 == Kind::Sink {
                    WhenFull::DropNewest
                } else {
                    WhenFull::Block
                };
                out.add(q.id.clone(), q.tx.clone(), policy, q.metrics.clone());
            }
        }
        out
    }

    /// Spawns a component at `node`; a transform or sink reads `queue`.
    fn spawn(
        &self,
        node: Node,
        id: Arc<str>,
        ty: &'static str,
        built: Built,
        queue: Option<mpsc::Receiver<Event>>,
        shutdown: &CancellationToken,
    ) -> Task {
        let m = self.metrics(&id, node.0, ty);
        let meter = m.clone();
        let name = id.clone();
        let (handle, stop, handover) = match (built, queue) {
            (Built::Source(source), _) => {
                let stop = shutdown.child_token();
                let cx = SourceContext {
                    id: id.clone(),
                    out: self.output_of(node, m.clone()),
                    shutdown: stop.clone(),
                    metrics: m,
                };
                let handle = tokio::spawn(cpu::charged_to(&meter, async move {
                    if let Err(e) = source.run(cx).await {
                        error!(component = %name, error = %e, "Source stopped with an error");
                    }
                }));
                (handle, Some(stop), None)
            }
            (Built::Transform(transform), Some(rx)) => {
                let (input, handover) = Input::with_handover(rx, m.clone());
                let out = self.output_of(node, m);
                (
                    tokio::spawn(cpu::charged_to(&meter, run_transform(name, transform, input, out))),
                    None,
                    Some(handover),
                )
            }
            (Built::Sink(sink), Some(rx)) => {
                let (input, handover) = Input::with_handover(rx, m.clone());
                let cx = SinkContext {
                    id: id.clone(),
                    metrics: m,
                };
                let handle = tokio::spawn(cpu::charged_to(&meter, async move {
                    if let Err(e) = sink.run(input, cx).await {
                        error!(component = %name, error = %e, "Sink stopped with an error");
                    }
                }));
                (handle, None, Some(handover))
            }
            (_, None) => unreachable!("the topology gives every transform and sink its queue"),
        };
        Task {
            node,
            id,
            handle,
            stop,
            handover,
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
    tasks: Vec<Task>,
    shutdown: CancellationToken,
    registry: Arc<Registry>,
    /// `None` once stopping: then only the components' own outputs hold senders.
    wiring: Option<Wiring>,
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

    /// Replaces the component at `node` while the rest runs on: a source is
    /// stopped, a transform or sink has its queue taken back once it has
    /// flushed and returned; then `build` makes the replacement (the old one is
    /// gone by then, so it may bind the same address or open the same files),
    /// which takes over the queue with what waited in it. When `build` fails,
    /// `fallback` (the component as it was) is started instead, and the error
    /// is returned.
    pub async fn rebuild(
        &mut self,
        node: Node,
        ty: &'static str,
        build: impl FnOnce() -> Result<Built, BoxError>,
        fallback: impl FnOnce() -> Result<(Built, &'static str), BoxError>,
    ) -> Result<(), BoxError> {
        let Some(wiring) = &self.wiring else {
            return Err("the pipeline is stopping".into());
        };
        let Some(at) = self.tasks.iter().position(|t| t.node == node) else {
            return Err("no such component is running".into());
        };
        let task = self.tasks.swap_remove(at);
        let queue = match (task.stop, task.handover) {
            (Some(stop), _) => {
                stop.cancel();
                let _ = task.handle.await;
                None
            }
            (None, Some(handover)) => {
                let queue = handover.take().await;
                let _ = task.handle.await;
                match queue {
                    Some(q) => Some(q),
                    None => return Err(format!("{} ended without handing back its queue", task.id).into()),
                }
            }
            (None, None) => None,
        };
        let (built, ty, result) = match build() {
            Ok(b) => (b, ty, Ok(())),
            Err(e) => match fallback() {
                Ok((b, old_ty)) => (b, old_ty, Err(e)),
                // Neither starts: the component is gone until the next reload
                // or restart, and its queue closes (its upstreams see it gone).
                Err(f) => {
                    return Err(format!("{e}; and its previous configuration cannot start again either: {f}").into())
                }
            },
        };
        self.tasks
            .push(wiring.spawn(node, task.id, ty, built, queue, &self.shutdown));
        result
    }

    /// Stops the sources and waits for everything downstream to drain and flush,
    /// at most the pipeline's `shutdown_timeout`; whatever is still running then
    /// is aborted and named. Returns true on a clean stop.
    pub async fn stop(mut self) -> bool {
        self.wiring = None;
        self.shutdown.cancel();
        let timeout = self.shutdown_timeout;
        self.wait_with_timeout(timeout).await
    }

    /// Waits until every component has finished (sources that end on their own).
    pub async fn wait(mut self) {
        self.wiring = None;
        for t in self.tasks {
            if let Err(e) = t.handle.await {
                error!(component = %t.id, error = %e, "Component task failed");
            }
        }
    }

    async fn wait_with_timeout(self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut clean = true;
        for Task { id, mut handle, .. } in self.tasks {
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    clean = false;
                    error!(component = %id, error = %e, "Component task failed");
                }
                Err(_) => {
                    clean = false;
                    warn!(component = %id, timeout = ?timeout, "Component did not finish within the shutdown timeout; aborting it");
                    handle.abort();
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
