//! The running sink: an axum server on the claimed address, fed by the input.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::component::http::{self, HttpLimits};
use crate::component::{BoxError, Input, Sink, SinkContext};
use crate::event::Event;
use crate::telemetry::cpu;

use super::exposition::Format;
use super::render::Exporter;

/// How long open scrapes may take to finish once the input has closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Scrapes rendered at once, across the process; more wait their turn.
static RENDERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// Bytes of exposition per piece of a streamed scrape.
const CHUNK: usize = 128 << 10;
/// Pieces rendered ahead of what the client has taken.
const CHUNKS_AHEAD: usize = 2;

/// `/metrics` (text 0.0.4, or OpenMetrics 1.0 when `Accept` asks for it) and a
/// one-line index at `/`.
pub fn router(exporter: Arc<Exporter>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(index))
        .with_state(exporter)
}

async fn metrics(State(exporter): State<Arc<Exporter>>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
    // Thousands of devices take milliseconds to render: keep that off the
    // threads that serve connections, and render at most RENDERS at once so a
    // burst of scrapes queues instead of filling the blocking pool.
    let Ok(permit) = RENDERS.acquire().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    };
    // The text goes out in pieces as it is rendered, at most CHUNKS_AHEAD
    // ahead of the client: a scrape holds a few hundred KiB, not the whole
    // exposition (tens of MiB at a thousand devices).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(CHUNKS_AHEAD);
    let render = tokio::task::spawn_blocking(cpu::metered_blocking(move || {
        let _permit = permit;
        let mut gone = false;
        exporter.render_chunked(format, CHUNK, &mut |text| {
            // A client that left stops the sending, not the rendering.
            if !gone {
                gone = tx.blocking_send(text).is_err();
            }
        });
    }));
    tokio::spawn(cpu::metered(async move {
        if let Err(e) = render.await {
            warn!(error = %e, "Rendering metrics failed");
        }
    }));
    // An exposition that fits in one piece goes out whole, with its length
    // (as simple clients on kept-alive connections expect); a larger one is
    // streamed as it is rendered.
    let first = rx.recv().await.unwrap_or_default();
    let Some(second) = rx.recv().await else {
        return ([(CONTENT_TYPE, format.content_type())], first).into_response();
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|text| (text, rx)) });
    let body = futures::stream::iter([first, second])
        .chain(rest)
        .map(Ok::<_, std::convert::Infallible>);
    ([(CONTENT_TYPE, format.content_type())], Body::from_stream(body)).into_response()
}

async fn index() -> &'static str {
    "hpflow Prometheus endpoint: scrape /metrics\n"
}

/// A listen address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("prometheus sink `{id}` cannot listen on {address}: {source}{hint}")]
pub struct BindError {
    pub id: String,
    pub address: SocketAddr,
    #[source]
    pub source: io::Error,
    hint: &'static str,
}

/// The `prometheus` sink, bound and ready to serve.
pub struct Prometheus {
    id: Arc<str>,
    listener: std::net::TcpListener,
    exporter: Arc<Exporter>,
    limits: HttpLimits,
}

impl Prometheus {
    /// Binds `address` (port 0 picks a free one, see [`Prometheus::local_addr`]).
    pub fn bind(id: &str, address: SocketAddr, exporter: Arc<Exporter>) -> Result<Self, BindError> {
        let fail = |source: io::Error| {
            let hint = match source.kind() {
                io::ErrorKind::AddrInUse => {
                    " (another program, or another hpflow, holds that port; stop it or set another `address`)"
                }
                io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges; pick a higher one)",
                io::ErrorKind::AddrNotAvailable => " (no network interface of this machine has that address)",
                _ => "",
            };
            BindError {
                id: id.to_string(),
                address,
                source,
                hint,
            }
        };
        let listener = std::net::TcpListener::bind(address).map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        Ok(Prometheus {
            id: id.into(),
            listener,
            exporter,
            limits: HttpLimits::default(),
        })
    }

    /// Header timeout and connection cap of the server (defaults: 10 s, 256).
    pub fn with_limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn exporter(&self) -> &Arc<Exporter> {
        &self.exporter
    }
}

#[async_trait]
impl Sink for Prometheus {
    async fn run(self: Box<Self>, mut input: Input, cx: SinkContext) -> Result<(), BoxError> {
        let Prometheus {
            id,
            listener,
            exporter,
            limits,
        } = *self;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let address = listener.local_addr()?;
        info!(component = %id, %address, "Serving Prometheus metrics at /metrics");

        let stop = CancellationToken::new();
        let serve = http::serve(listener, router(exporter.clone()), limits, stop.clone());
        let mut server = tokio::spawn(cpu::metered(serve));

        let mut sweep = tokio::time::interval(exporter.sweep_interval());
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = input.recv() => match event {
                    Some(event) => {
                        if matches!(event, Event::Metric(_)) {
                            exporter.update(&event);
                            cx.metrics.sent(1);
                        }
                    }
                    None => break,
                },
                _ = sweep.tick() => exporter.sweep(),
                result = &mut server => {
                    cx.metrics.error();
                    let why = match result {
                        Ok(Ok(())) => "it stopped".to_string(),
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => e.to_string(),
                    };
                    return Err(format!("prometheus sink `{id}`: the server on {address} failed: {why}").into());
                }
            }
        }

        stop.cancel();
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err() {
            warn!(component = %id, "Scrapes still open after {SHUTDOWN_GRACE:?}; closing them");
            server.abort();
        }
        info!(component = %id, "Prometheus endpoint stopped");
        Ok(())
    }
}
