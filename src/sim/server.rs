//! Serving the simulator with tokio-modbus' server side, over TCP or a serial line.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

use super::{AnsweredRead, Inner, Simulator};
use crate::registers::{RawData, Table};

type Answer = Result<Option<Response>, ExceptionCode>;

/// The tokio-modbus service of one connection (or of the serial line).
#[derive(Clone)]
struct Svc {
    sim: Arc<Inner>,
    /// Set to make the connection close after this answer (TCP only).
    close: Option<Arc<AtomicBool>>,
}

impl Svc {
    /// What to answer, decided at once (so faults follow the request order).
    fn decide(&self, req: &SlaveRequest<'static>) -> (Answer, bool) {
        let n = self.sim.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let f = &self.sim.faults;
        if f.drop_every.is_some_and(|d| d > 0 && n.is_multiple_of(d)) {
            return (Ok(None), true);
        }
        let tcp = self.close.is_some();
        let Some(unit) = self.sim.resolve_unit(req.slave, tcp) else {
            // A TCP gateway reports the missing unit; on a serial bus it is silence.
            return if tcp {
                (Err(ExceptionCode::GatewayTargetDevice), false)
            } else {
                (Ok(None), false)
            };
        };
        if f.exception_rate > 0.0 {
            let mut rng = self.sim.rng.lock().unwrap_or_else(|p| p.into_inner());
            if rng.next_f64() < f.exception_rate {
                return (Err(ExceptionCode::new(f.exception_code)), false);
            }
        }
        let read = |table: Table, start: u16, count: u16| -> Answer {
            match self.sim.read(unit, table, start, count) {
                None => Err(ExceptionCode::GatewayTargetDevice),
                Some(Err(e)) => Err(e),
                Some(Ok(RawData::Words(w))) => Ok(Some(match table {
                    Table::InputRegisters => Response::ReadInputRegisters(w),
                    _ => Response::ReadHoldingRegisters(w),
                })),
                Some(Ok(RawData::Bits(b))) => Ok(Some(match table {
                    Table::Coils => Response::ReadCoils(b),
                    _ => Response::ReadDiscreteInputs(b),
                })),
            }
        };
        let answer = match &req.request {
            Request::ReadInputRegisters(a, n) => read(Table::InputRegisters, *a, *n),
            Request::ReadHoldingRegisters(a, n) => read(Table::HoldingRegisters, *a, *n),
            Request::ReadCoils(a, n) => read(Table::Coils, *a, *n),
            Request::ReadDiscreteInputs(a, n) => read(Table::DiscreteInputs, *a, *n),
            // A read-only heat pump: settings are not written through the simulator.
            _ => Err(ExceptionCode::IllegalFunction),
        };
        (answer, false)
    }
}

impl Service for Svc {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let (answer, drop) = self.decide(&req);
        let latency = self.sim.faults.latency;
        let close = self.close.clone();
        let unit = self.sim.resolve_unit(req.slave, close.is_some());
        let read = match &req.request {
            Request::ReadInputRegisters(a, n) => Some((Table::InputRegisters, *a, *n)),
            Request::ReadHoldingRegisters(a, n) => Some((Table::HoldingRegisters, *a, *n)),
            Request::ReadCoils(a, n) => Some((Table::Coils, *a, *n)),
            Request::ReadDiscreteInputs(a, n) => Some((Table::DiscreteInputs, *a, *n)),
            _ => None,
        };
        let sim = self.sim.clone();
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            if drop {
                if let Some(c) = close {
                    c.store(true, Ordering::Relaxed);
                }
            } else if let (Some(unit), Some((table, start, count))) = (unit, read) {
                // Logged as the answer leaves, after any latency: a poller killed
                // before this point never got it.
                sim.record(|| AnsweredRead {
                    unit,
                    table,
                    start,
                    count,
                    data: matches!(answer, Ok(Some(_))),
                    at: std::time::SystemTime::now(),
                });
            }
            answer
        })
    }
}

/// A TCP stream that reads as closed once its service asks for it, so the
/// server's loop ends and drops the connection without answering.
struct Closable {
    inner: TcpStream,
    closed: Arc<AtomicBool>,
    /// Keep only the first frame of each read (`Faults::one_request_at_a_time`).
    first_frame_only: bool,
}

impl AsyncRead for Closable {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.closed.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.first_frame_only && matches!(read, Poll::Ready(Ok(()))) {
            // The MBAP header's length counts the bytes after it.
            let got = &buf.filled()[before..];
            if let Some(len) = got.get(4..6).map(|l| 6 + usize::from(u16::from_be_bytes([l[0], l[1]]))) {
                if got.len() > len {
                    buf.set_filled(before + len);
                }
            }
        }
        read
    }
}

impl AsyncWrite for Closable {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A simulator listening on TCP. Dropping it (or [`stop`](Self::stop)) closes
/// the listener and every connection.
#[derive(Debug)]
pub struct TcpServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TcpServer {
    /// The address actually bound (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(self) {}

    /// Resolves when the server stops on its own (the listener failed).
    pub async fn join(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A simulator answering on a serial line. Dropping it stops it.
#[derive(Debug)]
pub struct RtuServer {
    task: JoinHandle<()>,
    /// The client end of a pseudo-terminal made by [`Simulator::serve_pty`].
    path: Option<PathBuf>,
    /// Held open so the pseudo-terminal lives while clients come and go.
    _peer: Option<tokio_serial::SerialStream>,
}

impl RtuServer {
    /// The path clients open (for a pseudo-terminal made by the simulator).
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    pub fn stop(self) {}

    pub async fn join(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for RtuServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Simulator {
    /// Binds `addr` (port 0 picks a free port) and serves on it.
    pub async fn serve_tcp(&self, addr: SocketAddr) -> io::Result<TcpServer> {
        self.serve_tcp_on(TcpListener::bind(addr).await?)
    }

    /// Serves on a bound listener.
    pub fn serve_tcp_on(&self, listener: TcpListener) -> io::Result<TcpServer> {
        let addr = listener.local_addr()?;
        let sim = self.inner().clone();
        let first_frame_only = sim.faults.one_request_at_a_time;
        let task = tokio::spawn(async move {
            let server = tokio_modbus::server::tcp::Server::new(listener);
            let on_connected = |stream: TcpStream, _peer: SocketAddr| {
                let sim = sim.clone();
                async move {
                    let _ = stream.set_nodelay(true);
                    let closed = Arc::new(AtomicBool::new(false));
                    let svc = Svc {
                        sim,
                        close: Some(closed.clone()),
                    };
                    Ok(Some((
                        svc,
                        Closable {
                            inner: stream,
                            closed,
                            first_frame_only,
                        },
                    )))
                }
            };
            if let Err(e) = server.serve(&on_connected, |_e| {}).await {
                tracing::warn!(error = %e, "Simulator stopped accepting connections");
            }
        });
        Ok(TcpServer { addr, task })
    }

    /// Serves Modbus RTU on an open serial port.
    pub fn serve_rtu(&self, port: tokio_serial::SerialStream) -> RtuServer {
        let svc = Svc {
            sim: self.inner().clone(),
            close: None,
        };
        let task = tokio::spawn(async move {
            let server = tokio_modbus::server::rtu::Server::new(port);
            if let Err(e) = server.serve_forever(svc).await {
                tracing::warn!(error = %e, "Simulator's serial line failed");
            }
        });
        RtuServer {
            task,
            path: None,
            _peer: None,
        }
    }

    /// Opens the serial device at `path` (e.g. one end of a socat pair) and serves on it.
    pub fn serve_serial(&self, path: &std::path::Path, baud: u32) -> io::Result<RtuServer> {
        use tokio_serial::SerialPortBuilderExt;
        let port = tokio_serial::new(path.to_string_lossy(), baud)
            .open_native_async()
            .map_err(io::Error::from)?;
        let mut s = self.serve_rtu(port);
        s.path = Some(path.to_path_buf());
        Ok(s)
    }

    /// Makes a pseudo-terminal pair (no socat needed), serves on one end and
    /// returns the other end's path in [`RtuServer::path`] for clients to open.
    pub fn serve_pty(&self) -> io::Result<RtuServer> {
        let (master, peer) = tokio_serial::SerialStream::pair().map_err(io::Error::from)?;
        let path = tokio_serial::SerialPort::name(&peer).map(PathBuf::from);
        let mut s = self.serve_rtu(master);
        s.path = path;
        s._peer = Some(peer);
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use tokio_modbus::prelude::{Reader, SlaveContext};

    use super::*;

    #[tokio::test]
    async fn the_request_log_records_each_answered_read_once_it_is_on() {
        let sim = crate::sim::shipped_wpmsystem();
        let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let mut ctx = tokio_modbus::client::tcp::connect_slave(server.local_addr(), tokio_modbus::Slave(1))
            .await
            .unwrap();
        // Before the log is on, nothing is kept.
        ctx.read_input_registers(500, 111).await.unwrap().unwrap();
        assert!(sim.request_log().is_empty());

        sim.log_requests();
        let before = SystemTime::now();
        ctx.read_input_registers(500, 111).await.unwrap().unwrap();
        ctx.read_input_registers(5000, 2).await.unwrap().unwrap();
        ctx.read_input_registers(5000, 2).await.unwrap().unwrap();
        // The ventilation block is not fitted on a WPMsystem: exception 02.
        let refused = ctx.read_input_registers(819, 16).await.unwrap();
        assert!(refused.is_err(), "{refused:?}");
        // A unit it does not simulate gets an exception from the gateway, not a log entry.
        ctx.set_slave(tokio_modbus::Slave(7));
        let _ = ctx.read_input_registers(500, 111).await.unwrap();

        let log = sim.request_log();
        let reads: Vec<_> = log
            .iter()
            .map(|a| (a.unit, a.table, a.start, a.count, a.data))
            .collect();
        assert_eq!(
            reads,
            vec![
                (1, Table::InputRegisters, 500, 111, true),
                (1, Table::InputRegisters, 5000, 2, true),
                (1, Table::InputRegisters, 5000, 2, true),
                (1, Table::InputRegisters, 819, 16, false),
            ]
        );
        assert!(log.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(log[0].at >= before && log[3].at <= SystemTime::now());
        assert_eq!(sim.answered_covering(1, Table::InputRegisters, 5001).len(), 2);
        assert_eq!(sim.answered_covering(1, Table::InputRegisters, 610).len(), 1);
        assert_eq!(sim.answered_covering(1, Table::InputRegisters, 611).len(), 0);
        assert_eq!(sim.answered_covering(1, Table::InputRegisters, 819).len(), 0);
        assert_eq!(sim.answered_covering(1, Table::HoldingRegisters, 500).len(), 0);

        // Turned on again: empty.
        sim.log_requests();
        assert!(sim.request_log().is_empty());
    }
}
