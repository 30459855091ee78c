//! A link: one connection (or serial port) and the transport that opens it.

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_modbus::client::Context;
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::Slave;

use super::backoff::{later, Backoff};
use super::reply::{read_once, Reply};
use crate::registers::ReadRequest;
use crate::telemetry::HealthHandle;

/// Opens the transport of a link.
#[async_trait]
pub trait Connector: Send + 'static {
    /// Connects, within `timeout`.
    async fn connect(&mut self, timeout: Duration) -> io::Result<Context>;
    /// "tcp 10.0.0.5:502" or "rtu /dev/ttyUSB0", for logs.
    fn describe(&self) -> String;
    /// Whether a request timeout should drop the connection. True for TCP (a late
    /// answer would confuse the next request); false for a serial bus, where one
    /// silent unit says nothing about the others.
    fn drop_on_timeout(&self) -> bool {
        true
    }
    /// Told when a request timed out after `timeout`: a transport where a late
    /// answer could be read as the next one makes sure it cannot be.
    fn timed_out(&mut self, _timeout: Duration) {}
    /// Silence to keep between frames (RTU's inter-frame gap).
    fn frame_gap(&self) -> Duration {
        Duration::ZERO
    }
}

/// One connection (or serial port) shared by the devices behind it.
pub struct Link {
    connector: Box<dyn Connector>,
    ctx: Option<Context>,
    last_io: Option<Instant>,
    /// Why the last connection attempt failed, for messages while backing off.
    last_error: Option<String>,
}

impl Link {
    pub fn new(connector: Box<dyn Connector>) -> Self {
        Link {
            connector,
            ctx: None,
            last_io: None,
            last_error: None,
        }
    }

    pub fn describe(&self) -> String {
        self.connector.describe()
    }

    pub fn is_connected(&self) -> bool {
        self.ctx.is_some()
    }

    /// Drops the connection; the next request reconnects.
    pub fn disconnect(&mut self) {
        self.ctx = None;
    }

    /// The connection, opened if needed (when the device's backoff allows).
    /// Refused: why, and the kind of the connect error if one was tried.
    pub(super) async fn ensure(
        &mut self,
        backoff: &mut Backoff,
        timeout: Duration,
        health: &HealthHandle,
    ) -> Result<(), (String, Option<io::ErrorKind>)> {
        if self.ctx.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        if !backoff.ready(now) {
            let why = self.last_error.as_deref().unwrap_or("the last request failed");
            return Err((format!("waiting to reconnect ({why})"), None));
        }
        match self.connector.connect(timeout).await {
            Ok(ctx) => {
                self.ctx = Some(ctx);
                self.last_io = None;
                self.last_error = None;
                Ok(())
            }
            Err(e) => {
                health.connect_failed();
                let wait = backoff.failed(Instant::now());
                let msg = format!("cannot connect to {}: {e}", self.connector.describe());
                self.last_error = Some(msg.clone());
                let text = format!(
                    "{msg} (next attempt in {} at the earliest)",
                    humantime::format_duration(Duration::from_millis(wait.as_millis() as u64))
                );
                Err((text, Some(e.kind())))
            }
        }
    }

    /// Sends one request to `unit` over the open connection.
    pub(super) async fn read(&mut self, unit: u8, req: &ReadRequest, timeout: Duration) -> Reply {
        let gap = self.connector.frame_gap();
        if let (Some(last), false) = (self.last_io, gap.is_zero()) {
            tokio::time::sleep_until(later(last, gap)).await;
        }
        let Some(ctx) = self.ctx.as_mut() else {
            return Reply::Broken("not connected".into());
        };
        ctx.set_slave(Slave(unit));
        let reply = read_once(ctx, req.table, req.start, req.count, timeout).await;
        self.last_io = Some(Instant::now());
        match &reply {
            Reply::Broken(e) => {
                self.ctx = None;
                self.last_error = Some(format!("link broken: {e}"));
            }
            Reply::Timeout => {
                self.connector.timed_out(timeout);
                if self.connector.drop_on_timeout() {
                    self.ctx = None;
                }
                self.last_error = Some(format!("no answer within {}", humantime::format_duration(timeout)));
            }
            _ => {}
        }
        reply
    }
}
