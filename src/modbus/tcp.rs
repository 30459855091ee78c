//! Modbus TCP transport: a connection to a server or gateway.

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::TcpStream;
use tokio_modbus::client::Context;
use tokio_modbus::Slave;

use super::link::Connector;

/// Connects to a Modbus TCP server or gateway.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    pub host: String,
    pub port: u16,
}

#[async_trait]
impl Connector for TcpConnector {
    async fn connect(&mut self, timeout: Duration) -> io::Result<Context> {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        // Requests are small and answered one at a time: do not wait to batch.
        let _ = stream.set_nodelay(true);
        Ok(tokio_modbus::client::tcp::attach_slave(stream, Slave(1)))
    }

    fn describe(&self) -> String {
        format!("tcp {}:{}", self.host, self.port)
    }
}
