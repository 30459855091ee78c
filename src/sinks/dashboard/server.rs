//! The running sink: serves the router on the claimed address and feeds the
//! store; at shutdown stops serving gracefully and saves the history.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::component::http::{self, HttpLimits};
use crate::component::{BoxError, Input, Sink, SinkContext};
use crate::telemetry::cpu;

use super::app::App;
use super::handlers::router;

/// How long open requests may take to finish once the input has closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The `dashboard` sink, bound and ready to serve.
pub struct Dashboard {
    listener: std::net::TcpListener,
    app: Arc<App>,
    persist_interval: Duration,
    limits: HttpLimits,
}

impl Dashboard {
    /// Binds now, so a port in use fails the start with the component named.
    pub fn bind(id: &str, address: SocketAddr, app: Arc<App>, persist_interval: Duration) -> Result<Self, BoxError> {
        let fail = |e: io::Error| -> BoxError {
            let hint = match e.kind() {
                io::ErrorKind::AddrInUse => {
                    " (another program, or another hpflow, holds that port; stop it or set another `address`)"
                }
                io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges; pick a higher one)",
                io::ErrorKind::AddrNotAvailable => " (no network interface of this machine has that address)",
                _ => "",
            };
            format!("dashboard sink `{id}` cannot listen on {address}: {e}{hint}").into()
        };
        let listener = std::net::TcpListener::bind(address).map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        Ok(Dashboard {
            listener,
            app,
            persist_interval,
            limits: HttpLimits::default(),
        })
    }

    /// Header timeout and connection cap of the server (defaults: 10 s, 256).
    pub fn with_limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }
}

async fn save_history(app: &Arc<App>, cx: &SinkContext) {
    let a = app.clone();
    match tokio::task::spawn_blocking(cpu::metered_blocking(move || a.save_history())).await {
        Ok(Ok(bytes)) => tracing::debug!(component = %cx.id, bytes, "Dashboard history saved"),
        Ok(Err(e)) => {
            cx.metrics.error();
            warn!(component = %cx.id, path = %app.history_path.display(), error = %e, "Saving the dashboard history failed");
        }
        Err(e) => {
            cx.metrics.error();
            warn!(component = %cx.id, error = %e, "Saving the dashboard history failed");
        }
    }
}

#[async_trait]
impl Sink for Dashboard {
    async fn run(self: Box<Self>, mut input: Input, cx: SinkContext) -> Result<(), BoxError> {
        let Dashboard {
            listener,
            app,
            persist_interval,
            limits,
        } = *self;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let address = listener.local_addr()?;
        info!(component = %cx.id, %address, "Serving the dashboard at http://{address}/");

        let stop = CancellationToken::new();
        let serve = http::serve(listener, router(app.clone()), limits, stop.clone());
        let mut server = tokio::spawn(cpu::metered(serve));

        let mut persist = tokio::time::interval(persist_interval);
        persist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        persist.tick().await; // the first tick is immediate; nothing to save yet
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                event = input.recv() => match event {
                    Some(first) => {
                        batch.push(first);
                        input.drain_ready(&mut batch, 255);
                        for e in batch.drain(..) {
                            app.ingest(&e);
                            cx.metrics.sent(1);
                        }
                    }
                    None => break,
                },
                _ = persist.tick() => save_history(&app, &cx).await,
                result = &mut server => {
                    cx.metrics.error();
                    save_history(&app, &cx).await;
                    let why = match result {
                        Ok(Ok(())) => "it stopped".to_string(),
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => e.to_string(),
                    };
                    return Err(format!("dashboard sink `{}`: the server on {address} failed: {why}", cx.id).into());
                }
            }
        }

        stop.cancel();
        save_history(&app, &cx).await;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err() {
            warn!(component = %cx.id, "Dashboard requests still open after {SHUTDOWN_GRACE:?}; closing them");
            server.abort();
        }
        info!(component = %cx.id, "Dashboard stopped; history saved");
        Ok(())
    }
}
