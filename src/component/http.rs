//! Serving HTTP on a network nobody vouches for, as the dashboard and the
//! Prometheus endpoint do.
//!
//! `axum::serve` runs hyper without a timer, so a client that sends its headers
//! one byte a second (slow loris), or opens a connection and says nothing, holds
//! a file descriptor for as long as it likes; a few hundred of them leave the
//! process unable to open a buffer segment or reconnect to a device. Here:
//! - each request's headers must arrive within `header_read_timeout`, and a
//!   kept-alive connection that sends no new request within it is closed;
//! - at most `max_connections` connections are open at once; past that a new
//!   connection is closed as soon as it is accepted, and those established keep
//!   working;
//! - each request sees its peer's address as `ConnectInfo<SocketAddr>`;
//! - when the process runs out of file descriptors, accepting pauses briefly
//!   instead of spinning.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::telemetry::cpu;

/// How long a request's headers may take, and how many connections may be open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HttpLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

pub fn default_header_read_timeout() -> Duration {
    DEFAULT_HEADER_READ_TIMEOUT
}

pub fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

/// Checks the two keys of a sink that serves HTTP.
pub fn check_limits(cx: &mut super::Check<'_>, limits: HttpLimits) {
    if limits.header_read_timeout.is_zero() {
        cx.error(
            Some("header_read_timeout"),
            "`header_read_timeout` must be longer than 0s",
        );
    }
    if limits.max_connections == 0 {
        cx.error(Some("max_connections"), "`max_connections` must be at least 1");
    }
}

/// Serves `router` on `listener` until `stop`; then lets each connection finish
/// the request it is answering and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    let mut told_full = false;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: give the others time to close.
                    warn!(error = %e, "Accepting an HTTP connection failed; pausing briefly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if !told_full {
                told_full = true;
                warn!(%peer, max_connections = limits.max_connections, "HTTP connection limit reached; closing new connections until some end");
            }
            drop(stream);
            continue;
        };
        told_full = false;
        let service = TowerToHyperService::new(router.clone().layer(Extension(ConnectInfo(peer))));
        let stop = stop.clone();
        connections.spawn(cpu::metered(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        }));
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}
