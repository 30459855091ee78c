//! hpflow's own Modbus TCP client for the four reads it sends.
//!
//! tokio-modbus' client frames a connection with two 8 KiB buffers and sends
//! each request as a `writev` and a flush. A poller keeps one connection per
//! device open, and a request is 12 bytes and a reply at most 260, so this
//! client holds one 260-byte buffer and sends each request with a single
//! `write`. It plugs in as a `tokio_modbus::client::Client`, so the poller,
//! the error mapping ([`super::classify`]) and the RTU path stay as they are.
//!
//! Several reads may be sent in one write, each with its own transaction id
//! (Modbus TCP lets a server take several transactions at once); the poller
//! does so for a device that has shown it answers them.
//!
//! A reply is ours only with our transaction id, unit and function code. A
//! reply with another transaction id is the late answer to a request given up
//! on: it is read past and never used. A reply that cannot be a Modbus TCP
//! frame (another protocol id, a length out of range, a byte count that does
//! not fit) is an error, and the poller then drops the connection.

use std::io;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_modbus::client::Client;
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Request, Response, Slave};

/// The MBAP header: transaction id, protocol id, length, unit id.
const HEADER: usize = 7;
/// The longest frame: the header and a 253-byte PDU.
const MAX_FRAME: usize = HEADER + 253;
/// Most requests [`TcpClient::send_reads`] sends at once.
pub const MAX_IN_FLIGHT: usize = 16;

/// A Modbus TCP client on one connection: one request at a time through
/// [`Client::call`], or several sent together ([`TcpClient::send_reads`]) and
/// their replies taken in turn ([`TcpClient::reply_to`]).
pub struct TcpClient {
    stream: TcpStream,
    unit: u8,
    transaction: u16,
    /// Bytes read and not yet used: at most one frame.
    buf: [u8; MAX_FRAME],
    filled: usize,
}

impl TcpClient {
    pub fn new(stream: TcpStream, unit: u8) -> Self {
        TcpClient {
            stream,
            unit,
            transaction: 0,
            buf: [0; MAX_FRAME],
            filled: 0,
        }
    }

    /// Sends `reads` (function code, address, quantity) to the current unit in
    /// one write, at most [`MAX_IN_FLIGHT`]; each gets the next transaction id.
    /// Returns the first one's; the others follow it (wrapping).
    pub async fn send_reads(&mut self, reads: &[(u8, u16, u16)]) -> io::Result<u16> {
        const REQUEST: usize = 12;
        let mut frames = [0u8; REQUEST * MAX_IN_FLIGHT];
        let reads = &reads[..reads.len().min(MAX_IN_FLIGHT)];
        let first = self.transaction.wrapping_add(1);
        // What is left of an exchange given up on belongs to no request now.
        self.filled = 0;
        for (i, &(function, address, quantity)) in reads.iter().enumerate() {
            self.transaction = self.transaction.wrapping_add(1);
            let t = self.transaction.to_be_bytes();
            let a = address.to_be_bytes();
            let q = quantity.to_be_bytes();
            frames[i * REQUEST..(i + 1) * REQUEST]
                .copy_from_slice(&[t[0], t[1], 0, 0, 0, 6, self.unit, function, a[0], a[1], q[0], q[1]]);
        }
        self.stream.write_all(&frames[..reads.len() * REQUEST]).await?;
        Ok(first)
    }

    /// Waits for the reply to transaction `transaction`, a read of function
    /// `function`, reading past replies to other transactions (late answers
    /// to requests given up on).
    pub async fn reply_to(&mut self, transaction: u16, function: u8) -> tokio_modbus::Result<Response> {
        let t = transaction.to_be_bytes();
        loop {
            let len = self.read_frame().await?;
            let frame = &self.buf[..len];
            if frame[..2] != t {
                // Not ours.
                self.consume(len);
                continue;
            }
            let (unit, got) = (frame[6], frame[7]);
            let result = if unit != self.unit {
                Err(garbled(format!(
                    "a reply from unit {unit} to a request to unit {}",
                    self.unit
                )))
            } else if got == function | 0x80 {
                match frame.get(8) {
                    Some(&code) if len == HEADER + 2 => Ok(Err(ExceptionCode::new(code))),
                    _ => Err(garbled("an exception reply of the wrong length".into())),
                }
            } else if got != function {
                Err(garbled(format!(
                    "a reply of function {got:#04x} to a request of function {function:#04x}"
                )))
            } else {
                decode(function, &frame[HEADER + 1..]).map(Ok)
            };
            self.consume(len);
            return result.map_err(Into::into);
        }
    }

    /// Reads until the buffer holds a whole frame; its length.
    async fn read_frame(&mut self) -> io::Result<usize> {
        loop {
            if self.filled >= HEADER {
                if self.buf[2..4] != [0, 0] {
                    return Err(garbled(format!(
                        "protocol id {} in a reply (Modbus is 0)",
                        u16::from_be_bytes([self.buf[2], self.buf[3]])
                    )));
                }
                // The length counts the unit id and the PDU (at least a function code).
                let length = usize::from(u16::from_be_bytes([self.buf[4], self.buf[5]]));
                if !(2..=MAX_FRAME - HEADER + 1).contains(&length) {
                    return Err(garbled(format!("a reply of length {length} (2 to 254 allowed)")));
                }
                let frame = HEADER - 1 + length;
                if self.filled >= frame {
                    return Ok(frame);
                }
            }
            let n = self.stream.read(&mut self.buf[self.filled..]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            self.filled += n;
        }
    }

    /// Drops the first `frame` bytes of the buffer.
    fn consume(&mut self, frame: usize) {
        self.buf.copy_within(frame..self.filled, 0);
        self.filled -= frame;
    }
}

fn garbled(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The function code, address and quantity of a read; `None` for any other request.
fn read_of(request: &Request<'_>) -> Option<(u8, u16, u16)> {
    match *request {
        Request::ReadCoils(a, n) => Some((0x01, a, n)),
        Request::ReadDiscreteInputs(a, n) => Some((0x02, a, n)),
        Request::ReadHoldingRegisters(a, n) => Some((0x03, a, n)),
        Request::ReadInputRegisters(a, n) => Some((0x04, a, n)),
        _ => None,
    }
}

/// The response to a read of function `function` from its PDU after the
/// function code: a byte count and the data.
fn decode(function: u8, pdu: &[u8]) -> io::Result<Response> {
    let Some((&count, data)) = pdu.split_first() else {
        return Err(garbled("a reply without its byte count".into()));
    };
    if data.len() != usize::from(count) {
        return Err(garbled(format!(
            "a byte count of {count} with {} bytes of data",
            data.len()
        )));
    }
    match function {
        0x03 | 0x04 => {
            if data.len() % 2 != 0 {
                return Err(garbled(format!("{count} bytes of registers (an odd number)")));
            }
            let words = data.chunks_exact(2).map(|w| u16::from_be_bytes([w[0], w[1]])).collect();
            Ok(if function == 0x03 {
                Response::ReadHoldingRegisters(words)
            } else {
                Response::ReadInputRegisters(words)
            })
        }
        _ => {
            // Bits come packed, the first in the lowest bit of the first byte.
            let bits = data
                .iter()
                .flat_map(|b| (0..8).map(move |i| b & (1 << i) != 0))
                .collect();
            Ok(if function == 0x01 {
                Response::ReadCoils(bits)
            } else {
                Response::ReadDiscreteInputs(bits)
            })
        }
    }
}

impl SlaveContext for TcpClient {
    fn set_slave(&mut self, slave: Slave) {
        self.unit = slave.0;
    }
}

#[async_trait]
impl Client for TcpClient {
    async fn call(&mut self, request: Request<'_>) -> tokio_modbus::Result<Response> {
        let Some(read) = read_of(&request) else {
            let e = io::Error::new(
                io::ErrorKind::Unsupported,
                format!("hpflow's Modbus TCP client only reads; {request:?} is not sent"),
            );
            return Err(e.into());
        };
        let t = self.send_reads(&[read]).await?;
        self.reply_to(t, read.0).await
    }

    async fn disconnect(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_modbus::client::{Client, Context};
    use tokio_modbus::prelude::SlaveContext;

    use super::*;
    use crate::registers::Table;

    fn describe(r: &tokio_modbus::Result<Response>) -> String {
        match r {
            Ok(Ok(resp)) => format!("{resp:?}"),
            Ok(Err(code)) => format!("exception {:#04x}", u8::from(*code)),
            Err(_) => "error".to_string(),
        }
    }

    /// Seeded random reads against the simulator: this client answers exactly
    /// what tokio-modbus' client answers (data, exceptions, units it does not
    /// simulate), request after request on one connection each.
    /// The shipped simulator served on loopback, our client's connection to
    /// it, and tokio-modbus' client on another.
    async fn both_clients() -> (crate::sim::Simulator, crate::sim::TcpServer, TcpClient, Context) {
        let sim = crate::sim::shipped_wpmsystem();
        let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let stream = TcpStream::connect(server.local_addr()).await.unwrap();
        let theirs = tokio_modbus::client::tcp::connect_slave(server.local_addr(), Slave(1))
            .await
            .unwrap();
        (sim, server, TcpClient::new(stream, 1), theirs)
    }

    #[tokio::test]
    async fn answers_every_read_as_tokio_modbus_does() {
        let (sim, _server, ours, mut theirs) = both_clients().await;
        let mut ours = Context::from(Box::new(ours) as Box<dyn Client>);
        // Half the reads are (parts of) the shipped plan's requests, which a
        // WPMsystem mostly answers; the rest anywhere, of any size and table.
        let plan = sim.model().plan(&crate::registers::PlanOptions::default());
        let mut rng = fastrand::Rng::with_seed(16);
        let (mut data, mut exceptions) = (0, 0);
        for i in 0..600 {
            let unit = if rng.u8(..10) == 0 { rng.u8(2..5) } else { 1 };
            let request = if rng.bool() {
                let r = &plan.requests()[rng.usize(..plan.requests().len())];
                let skip = rng.u16(..r.count);
                let (start, count) = (r.start + skip, rng.u16(1..=r.count - skip));
                match r.table {
                    Table::Coils => Request::ReadCoils(start, count),
                    Table::DiscreteInputs => Request::ReadDiscreteInputs(start, count),
                    Table::HoldingRegisters => Request::ReadHoldingRegisters(start, count),
                    Table::InputRegisters => Request::ReadInputRegisters(start, count),
                }
            } else {
                let start = rng.u16(..);
                let count = match rng.u8(..3) {
                    0 => rng.u16(1..=125),
                    1 => rng.u16(1..=2000),
                    _ => rng.u16(..),
                };
                match rng.u8(..4) {
                    0 => Request::ReadCoils(start, count),
                    1 => Request::ReadDiscreteInputs(start, count),
                    2 => Request::ReadHoldingRegisters(start, count),
                    _ => Request::ReadInputRegisters(start, count),
                }
            };
            ours.set_slave(Slave(unit));
            theirs.set_slave(Slave(unit));
            let a = ours.call(request.clone()).await;
            let b = theirs.call(request.clone()).await;
            assert_eq!(describe(&a), describe(&b), "read {i}: {request:?} to unit {unit}");
            assert!(a.is_ok(), "read {i}: {request:?} broke the link: {a:?}");
            match a {
                Ok(Ok(_)) => data += 1,
                _ => exceptions += 1,
            }
        }
        assert!(data > 100 && exceptions > 100, "{data} answered, {exceptions} refused");
    }

    /// Seeded random batches of up to [`MAX_IN_FLIGHT`] reads sent together:
    /// each reply is what tokio-modbus' client answers to that read sent alone,
    /// refusals and units the simulator does not serve included.
    #[tokio::test]
    async fn reads_sent_together_answer_as_each_sent_alone() {
        let (sim, _server, mut ours, mut theirs) = both_clients().await;
        let plan = sim.model().plan(&crate::registers::PlanOptions::default());
        let mut rng = fastrand::Rng::with_seed(61);
        let (mut sent, mut data) = (0, 0);
        for batch in 0..80 {
            let unit = if rng.u8(..8) == 0 { 7 } else { 1 };
            let tables = [
                Table::Coils,
                Table::DiscreteInputs,
                Table::HoldingRegisters,
                Table::InputRegisters,
            ];
            let requests: Vec<Request<'static>> = (0..rng.usize(1..=MAX_IN_FLIGHT))
                .map(|_| {
                    let (table, start, count) = if rng.u8(..4) > 0 {
                        let r = &plan.requests()[rng.usize(..plan.requests().len())];
                        (r.table, r.start, r.count)
                    } else {
                        (tables[rng.usize(..4)], rng.u16(..), rng.u16(1..=125))
                    };
                    super::super::reply::read_request(table, start, count)
                })
                .collect();
            let reads: Vec<(u8, u16, u16)> = requests.iter().filter_map(read_of).collect();
            ours.set_slave(Slave(unit));
            theirs.set_slave(Slave(unit));
            let first = ours.send_reads(&reads).await.unwrap();
            for (i, (request, &(function, ..))) in requests.iter().zip(&reads).enumerate() {
                let a = ours.reply_to(first.wrapping_add(i as u16), function).await;
                let b = theirs.call(request.clone()).await;
                assert_eq!(describe(&a), describe(&b), "batch {batch}, read {i}: {request:?}");
                assert!(a.is_ok(), "batch {batch}, read {i} broke the link: {a:?}");
                sent += 1;
                data += usize::from(matches!(a, Ok(Ok(_))));
            }
        }
        assert!(data > sent / 2 && data < sent, "{data} of {sent} answered with data");
    }

    /// A scripted server: reads one 12-byte request, then writes `reply(request)`
    /// in the pieces given, pausing between them.
    async fn scripted(replies: Vec<Vec<Vec<u8>>>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            for pieces in replies {
                let mut req = [0u8; 12];
                if s.read_exact(&mut req).await.is_err() {
                    return;
                }
                for mut piece in pieces {
                    // 0xEE 0xEE stands for the request's transaction id.
                    for i in 0..piece.len().saturating_sub(1) {
                        if piece[i..i + 2] == [0xEE, 0xEE] {
                            piece[i..i + 2].copy_from_slice(&req[..2]);
                        }
                    }
                    if s.write_all(&piece).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            // Then the connection closes.
        });
        addr
    }

    async fn client(addr: std::net::SocketAddr) -> TcpClient {
        TcpClient::new(TcpStream::connect(addr).await.unwrap(), 1)
    }

    #[tokio::test]
    async fn a_reply_in_pieces_or_after_a_stale_one_is_read_whole() {
        let addr = scripted(vec![
            // Three registers in three pieces.
            vec![
                vec![0xEE, 0xEE, 0, 0],
                vec![0, 9, 1, 4, 6, 0, 1],
                vec![0, 2, 0xFF, 0xFF],
            ],
            // A late answer to another transaction first, in the same segment.
            vec![vec![
                0x77, 0x77, 0, 0, 0, 5, 1, 4, 2, 0, 9, //
                0xEE, 0xEE, 0, 0, 0, 5, 1, 4, 2, 0x12, 0x34,
            ]],
            // Coils: 10 bits in two bytes.
            vec![vec![0xEE, 0xEE, 0, 0, 0, 5, 1, 1, 2, 0b0000_0101, 0b0000_0010]],
            // An exception.
            vec![vec![0xEE, 0xEE, 0, 0, 0, 3, 1, 0x83, 0x02]],
        ])
        .await;
        let mut c = client(addr).await;
        let r = c.call(Request::ReadInputRegisters(100, 3)).await.unwrap().unwrap();
        assert_eq!(r, Response::ReadInputRegisters(vec![1, 2, 0xFFFF]));
        let r = c.call(Request::ReadInputRegisters(100, 1)).await.unwrap().unwrap();
        assert_eq!(r, Response::ReadInputRegisters(vec![0x1234]));
        let Response::ReadCoils(bits) = c.call(Request::ReadCoils(0, 10)).await.unwrap().unwrap() else {
            panic!("not coils");
        };
        assert_eq!(
            bits[..10],
            [true, false, true, false, false, false, false, false, false, true]
        );
        let r = c.call(Request::ReadHoldingRegisters(7, 1)).await.unwrap();
        assert_eq!(r, Err(ExceptionCode::IllegalDataAddress));
        // The server has closed: an error, not a hang or a panic.
        let r = c.call(Request::ReadHoldingRegisters(7, 1)).await;
        assert!(r.is_err(), "{r:?}");
    }

    #[tokio::test]
    async fn a_reply_that_is_not_ours_or_not_modbus_is_an_error() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("unit", vec![0xEE, 0xEE, 0, 0, 0, 5, 2, 4, 2, 0, 1]),
            ("function", vec![0xEE, 0xEE, 0, 0, 0, 5, 1, 3, 2, 0, 1]),
            ("protocol", vec![0xEE, 0xEE, 0, 1, 0, 5, 1, 4, 2, 0, 1]),
            ("length", vec![0xEE, 0xEE, 0, 0, 1, 0, 1, 4, 2, 0, 1]),
            ("byte count", vec![0xEE, 0xEE, 0, 0, 0, 5, 1, 4, 4, 0, 1]),
            ("odd registers", vec![0xEE, 0xEE, 0, 0, 0, 4, 1, 4, 1, 0]),
            ("exception", vec![0xEE, 0xEE, 0, 0, 0, 4, 1, 0x84, 2, 0]),
            ("closed mid-frame", vec![0xEE, 0xEE, 0, 0, 0, 5, 1, 4]),
        ];
        for (what, reply) in cases {
            let addr = scripted(vec![vec![reply]]).await;
            let mut c = client(addr).await;
            let r = tokio::time::timeout(Duration::from_secs(5), c.call(Request::ReadInputRegisters(0, 1)))
                .await
                .unwrap_or_else(|_| panic!("{what}: no result"));
            assert!(r.is_err(), "{what}: {r:?}");
        }
        // Writes are not sent at all.
        let addr = scripted(vec![]).await;
        let r = client(addr).await.call(Request::WriteSingleRegister(1, 2)).await;
        assert!(r.is_err(), "{r:?}");
    }
}
