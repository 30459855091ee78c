//! A link: one connection (or serial port) and the transport that opens it.

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::Slave;

use super::backoff::{later, Backoff};
use super::reply::{read_once, reply_of, Reply};
use super::tcp_client::TcpClient;
use crate::registers::ReadRequest;
use crate::telemetry::HealthHandle;

/// Opens the transport of a link.
#[async_trait]
pub trait Connector: Send + 'static {
    /// Connects, within `timeout`.
    async fn connect(&mut self, timeout: Duration) -> io::Result<Context>;
    /// Connects a link, within `timeout`: a transport that can send several
    /// requests at once says so by its [`Connection`].
    async fn connect_link(&mut self, timeout: Duration) -> io::Result<Connection> {
        self.connect(timeout).await.map(Connection::OneAtATime)
    }
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

/// An open connection.
pub enum Connection {
    /// Modbus TCP through hpflow's client, which can send several requests at once.
    Tcp(Box<TcpClient>),
    /// Any other client (RTU's): one request at a time.
    OneAtATime(Context),
}

impl Connection {
    fn client(&mut self) -> &mut dyn Client {
        match self {
            Connection::Tcp(c) => &mut **c,
            Connection::OneAtATime(c) => c,
        }
    }
}

/// One connection (or serial port) shared by the devices behind it.
pub struct Link {
    connector: Box<dyn Connector>,
    ctx: Option<Connection>,
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
        match self.connector.connect_link(timeout).await {
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

    /// Whether the open connection can take several requests at once.
    pub(super) fn sends_together(&self) -> bool {
        matches!(self.ctx, Some(Connection::Tcp(_)))
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
        let client = ctx.client();
        client.set_slave(Slave(unit));
        let reply = read_once(client, req.table, req.start, req.count, timeout).await;
        self.last_io = Some(Instant::now());
        self.after(&reply, timeout);
        reply
    }

    /// Sends `reqs` to `unit` together, in one write, and takes their replies
    /// in turn, each within `timeout` of the one before (of the sending, for
    /// the first); each with the time it took. Stops after the first timeout
    /// or broken link: the requests after it have no reply. A single request,
    /// or a connection that cannot send together, goes one at a time.
    pub(super) async fn read_together(
        &mut self,
        unit: u8,
        reqs: &[ReadRequest],
        timeout: Duration,
    ) -> Vec<(Reply, Duration)> {
        let mut replies = Vec::with_capacity(reqs.len());
        let client = match self.ctx.as_mut() {
            Some(Connection::Tcp(client)) if reqs.len() > 1 => client,
            _ => {
                for req in reqs {
                    let began = Instant::now();
                    let reply = self.read(unit, req, timeout).await;
                    let failed = !reply.link_ok();
                    replies.push((reply, began.elapsed()));
                    if failed {
                        break;
                    }
                }
                return replies;
            }
        };
        client.set_slave(Slave(unit));
        let reads: Vec<(u8, u16, u16)> = (reqs.iter()).map(|r| (r.function_code(), r.start, r.count)).collect();
        let mut last = Instant::now();
        let first = match client.send_reads(&reads).await {
            Ok(t) => t,
            Err(e) => {
                let reply = Reply::Broken(e.to_string());
                self.after(&reply, timeout);
                replies.push((reply, last.elapsed()));
                return replies;
            }
        };
        for (i, (req, &(function, ..))) in reqs.iter().zip(&reads).enumerate() {
            let t = first.wrapping_add(i as u16);
            let reply = reply_of(
                tokio::time::timeout(timeout, client.reply_to(t, function)).await,
                req.count,
            );
            let now = Instant::now();
            let failed = !reply.link_ok();
            replies.push((reply, now - last));
            last = now;
            if failed {
                break;
            }
        }
        self.last_io = Some(last);
        if let Some((reply, _)) = replies.last() {
            self.after(reply, timeout);
        }
        replies
    }

    /// What a reply says about the connection: a broken link or a timeout drops it.
    fn after(&mut self, reply: &Reply, timeout: Duration) {
        match reply {
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
    }
}
