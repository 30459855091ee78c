//! The Modbus client: transports, the two error layers, and one poll of one
//! device's adaptive read plan. Used by the `modbus_tcp`/`modbus_rtu` sources,
//! `hpflow read` and `hpflow scan`; the simulator draws its injected faults
//! from [`Rng`]. It knows nothing of pipelines, schedules or events.
//!
//! A [`Link`] is one connection (a TCP host:port, or a serial bus) opened by
//! its [`Connector`] ([`TcpConnector`], [`RtuConnector`]) and shared by the
//! devices behind it. One poll of one device ([`poll_device`]) sends the
//! requests of its adaptive read plan, each wrapped in a timeout (tokio-modbus
//! has none), and maps what comes back in one place ([`classify`]):
//! - data → decoded; exception 06 (busy) → retried after a short wait, twice;
//! - exception 02 → fed to the plan, which splits the request or skips the
//!   value (the halves are sent in the same poll);
//! - exceptions 0A/0B (gateway path/target) → the device is unreachable this poll;
//! - any other exception → that request's fields are absent;
//! - timeout or broken link → the connection is dropped; a link that broke is
//!   reconnected at once, once per request (gateways close idle
//!   connections); after that the device's capped, jittered [`Backoff`] decides
//!   when the next attempt may happen.
//!
//! Over TCP, a device that has answered a whole poll gets its requests sent
//! together (up to its `in_flight`) and the replies taken in turn, handled as
//! above in request order; requests sent together and left unanswered are sent
//! again one at a time at once, which tells a device that cannot take them
//! together ([`Together::No`]) from one that stopped answering.

mod backoff;
mod link;
mod poll;
mod reply;
mod rtu;
mod tcp;
mod tcp_client;

pub(crate) use backoff::{fnv1a, later};
pub use backoff::{Backoff, Rng};
pub use link::{Connection, Connector, Link};
pub use poll::{
    one_off_device, plan_options, poll_device, read_device_once, Device, Failure, FailureKind, PollOutcome, Together,
};
pub use reply::{classify, exception_meaning, read_once, Reply};
pub use rtu::{inter_frame_gap, Parity, RtuConnector};
pub use tcp::TcpConnector;
pub use tcp_client::{TcpClient, MAX_IN_FLIGHT};
