//! Modbus TCP transport: a connection to a server or gateway.

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::TcpStream;
use tokio_modbus::client::{Client, Context};

use super::link::{Connection, Connector};
use super::tcp_client::TcpClient;

/// Connects to a Modbus TCP server or gateway.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    pub host: String,
    pub port: u16,
}

impl TcpConnector {
    async fn open(&self, timeout: Duration) -> io::Result<TcpClient> {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        // Requests are small and each is sent whole: do not wait to batch.
        let _ = stream.set_nodelay(true);
        Ok(TcpClient::new(stream, 1))
    }
}

#[async_trait]
impl Connector for TcpConnector {
    async fn connect(&mut self, timeout: Duration) -> io::Result<Context> {
        let client = self.open(timeout).await?;
        Ok(Context::from(Box::new(client) as Box<dyn Client>))
    }

    async fn connect_link(&mut self, timeout: Duration) -> io::Result<Connection> {
        self.open(timeout).await.map(|c| Connection::Tcp(Box::new(c)))
    }

    fn describe(&self) -> String {
        format!("tcp {}:{}", self.host, self.port)
    }
}
