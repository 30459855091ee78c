//! The two error layers of a request: what one read came to ([`Reply`]) and
//! the one place that maps tokio-modbus' results onto it ([`classify`]).

use std::time::Duration;

use tokio_modbus::client::Client;
use tokio_modbus::ExceptionCode;
use tokio_modbus::{Request, Response};

use crate::registers::{RawData, Table};
use crate::telemetry::RequestResult;

/// What one request came to. [`classify`] is the only place that looks at
/// tokio-modbus' two error layers: the outer `Error` is a broken link
/// (reconnect), the inner `ExceptionCode` is the device refusing one request
/// (the link is fine).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Data(RawData),
    /// 06 server busy (or 05 acknowledge: "still working on it").
    Busy,
    /// 02 illegal data address.
    IllegalAddress,
    /// 0A gateway path unavailable / 0B gateway target failed to respond.
    Unreachable(u8),
    /// Any other exception code.
    Refused(u8),
    Timeout,
    /// I/O error, connection closed, garbled or mismatched reply.
    Broken(String),
    /// A well-formed reply with another number of registers (or too few bits)
    /// than the request asked for: its values cannot be placed, so none is used.
    WrongLength {
        expected: u16,
        got: usize,
    },
}

impl Reply {
    /// The label this reply is counted under.
    pub fn result(&self) -> RequestResult {
        match self {
            Reply::Data(_) => RequestResult::Ok,
            Reply::Busy => RequestResult::Busy,
            Reply::IllegalAddress => RequestResult::IllegalAddress,
            Reply::Unreachable(_) => RequestResult::GatewayFailed,
            Reply::Refused(_) => RequestResult::Exception,
            Reply::Timeout => RequestResult::Timeout,
            Reply::Broken(_) => RequestResult::Transport,
            Reply::WrongLength { .. } => RequestResult::WrongLength,
        }
    }

    /// The device (or its gateway) answered: the link works.
    pub fn link_ok(&self) -> bool {
        !matches!(self, Reply::Timeout | Reply::Broken(_))
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Data(RawData::Words(w)) => write!(f, "{} registers", w.len()),
            Reply::Data(RawData::Bits(b)) => write!(f, "{} bits", b.len()),
            Reply::Busy => f.write_str("exception 06 (server busy)"),
            Reply::IllegalAddress => f.write_str("exception 02 (illegal data address)"),
            Reply::Unreachable(c) => write!(f, "exception {c:02X} (gateway could not reach the device)"),
            Reply::Refused(c) => write!(f, "exception {c:02X}"),
            Reply::Timeout => f.write_str("no answer (timeout)"),
            Reply::Broken(e) => write!(f, "link broken: {e}"),
            Reply::WrongLength { expected, got } => {
                write!(f, "a reply of {got} values to a read of {expected}")
            }
        }
    }
}

/// What a Modbus exception code means, as the specification names it.
pub fn exception_meaning(code: u8) -> &'static str {
    match code {
        0x01 => "illegal function",
        0x02 => "illegal data address",
        0x03 => "illegal data value",
        0x04 => "server device failure",
        0x05 => "acknowledge",
        0x06 => "server device busy",
        0x08 => "memory parity error",
        0x0A => "gateway path unavailable",
        0x0B => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

/// Maps a request's result, through both of tokio-modbus' error layers and our
/// timeout, onto a [`Reply`].
pub fn classify(result: Result<tokio_modbus::Result<RawData>, tokio::time::error::Elapsed>) -> Reply {
    match result {
        Err(_) => Reply::Timeout,
        Ok(Err(e)) => Reply::Broken(e.to_string()),
        Ok(Ok(Ok(data))) => Reply::Data(data),
        Ok(Ok(Err(code))) => match code {
            ExceptionCode::ServerDeviceBusy | ExceptionCode::Acknowledge => Reply::Busy,
            ExceptionCode::IllegalDataAddress => Reply::IllegalAddress,
            ExceptionCode::GatewayPathUnavailable | ExceptionCode::GatewayTargetDevice => {
                Reply::Unreachable(u8::from(code))
            }
            other => Reply::Refused(u8::from(other)),
        },
    }
}

/// The request reading `count` values of `table` from `start`.
pub fn read_request(table: Table, start: u16, count: u16) -> Request<'static> {
    match table {
        Table::InputRegisters => Request::ReadInputRegisters(start, count),
        Table::HoldingRegisters => Request::ReadHoldingRegisters(start, count),
        Table::Coils => Request::ReadCoils(start, count),
        Table::DiscreteInputs => Request::ReadDiscreteInputs(start, count),
    }
}

/// What a read of `count` values came to: its response through both error
/// layers, or `Err` when it timed out.
pub fn reply_of(result: Result<tokio_modbus::Result<Response>, tokio::time::error::Elapsed>, count: u16) -> Reply {
    let data = |response| match response {
        Response::ReadInputRegisters(w) | Response::ReadHoldingRegisters(w) => RawData::Words(w),
        Response::ReadCoils(mut b) | Response::ReadDiscreteInputs(mut b) => {
            // Bits come packed in bytes: the last byte's padding is not data.
            b.truncate(usize::from(count));
            RawData::Bits(b)
        }
        // `call` only returns a response of the request's function.
        _ => RawData::Words(Vec::new()),
    };
    checked(count, classify(result.map(|r| r.map(|r| r.map(data)))))
}

/// Sends one read and waits at most `timeout` for its answer.
pub async fn read_once<C: Client + ?Sized>(
    ctx: &mut C,
    table: Table,
    start: u16,
    count: u16,
    timeout: Duration,
) -> Reply {
    // Through `call`, not the `Reader` methods: those assert the reply's length
    // (a panic in a debug build), and a device's wrong answer is data to count.
    let call = ctx.call(read_request(table, start, count));
    reply_of(tokio::time::timeout(timeout, call).await, count)
}

/// Data of another length than `count` asked for becomes [`Reply::WrongLength`].
/// Registers must match exactly; bits come packed in bytes, so more bits than
/// asked for is the padding of the last byte.
pub fn checked(count: u16, reply: Reply) -> Reply {
    let got = match &reply {
        Reply::Data(RawData::Words(w)) if w.len() != usize::from(count) => w.len(),
        Reply::Data(RawData::Bits(b)) if b.len() < usize::from(count) => b.len(),
        _ => return reply,
    };
    Reply::WrongLength { expected: count, got }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn exc(code: ExceptionCode) -> Reply {
        classify(Ok(Ok(Err(code))))
    }

    #[test]
    fn both_error_layers_map_in_one_place() {
        assert_eq!(exc(ExceptionCode::ServerDeviceBusy), Reply::Busy);
        assert_eq!(exc(ExceptionCode::IllegalDataAddress), Reply::IllegalAddress);
        assert_eq!(exc(ExceptionCode::GatewayPathUnavailable), Reply::Unreachable(0x0A));
        assert_eq!(exc(ExceptionCode::GatewayTargetDevice), Reply::Unreachable(0x0B));
        assert_eq!(exc(ExceptionCode::IllegalFunction), Reply::Refused(0x01));
        assert_eq!(exc(ExceptionCode::ServerDeviceFailure), Reply::Refused(0x04));
        let io = tokio_modbus::Error::Transport(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(matches!(classify(Ok(Err(io))), Reply::Broken(_)));
        assert_eq!(
            classify(Ok(Ok(Ok(RawData::Words(vec![1]))))),
            Reply::Data(RawData::Words(vec![1]))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_without_an_answer_is_a_timeout() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(Ok(RawData::Words(vec![])))
        };
        assert_eq!(
            classify(tokio::time::timeout(Duration::from_secs(1), slow).await),
            Reply::Timeout
        );
    }

    #[test]
    fn only_timeouts_and_broken_links_count_against_the_link() {
        assert!(Reply::IllegalAddress.link_ok());
        assert!(Reply::Unreachable(0x0B).link_ok());
        assert!(!Reply::Timeout.link_ok());
        assert!(!Reply::Broken("x".into()).link_ok());
    }
}
