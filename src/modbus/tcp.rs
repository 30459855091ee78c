//! Modbus TCP transport: a connection to a server or gateway.

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::TcpStream;
use tokio_modbus::client::{Client, Context};

use super::link::Connector;
use super::tcp_client::TcpClient;

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
        Ok(Context::from(Box::new(TcpClient::new(stream, 1)) as Box<dyn Client>))
    }

    fn describe(&self) -> String {
        format!("tcp {}:{}", self.host, self.port)
    }
}
