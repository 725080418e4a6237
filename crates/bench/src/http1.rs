//! A minimal HTTP/1.1 keep-alive client: one request in flight per connection, bodies with
//! `Content-Length`. Its connections leave from a chosen source address, which is how a load
//! generator on loopback poses as many pods (every 127.0.0.0/8 address is local on Linux). It
//! costs little next to the servers measured, so the numbers are theirs.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// One answer: its status and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Connection {
    /// Connects to `server` from `source` (port chosen by the kernel).
    pub async fn open(source: IpAddr, server: SocketAddr) -> anyhow::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket
            .bind(SocketAddr::new(source, 0))
            .with_context(|| format!("binding {source}"))?;
        let stream = socket
            .connect(server)
            .await
            .with_context(|| format!("connecting to {server} from {source}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(4096),
        })
    }

    /// Sends a GET of `path_and_query` with `Metadata: true` (IMDS's and NMI's admission).
    pub async fn get(&mut self, host: &str, path_and_query: &str) -> anyhow::Result<Reply> {
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nMetadata: true\r\nAccept: */*\r\n\r\n"
        );
        self.stream.write_all(request.as_bytes()).await?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> anyhow::Result<Reply> {
        self.buffer.clear();
        let head_end = loop {
            if let Some(i) = find(&self.buffer, b"\r\n\r\n") {
                break i + 4;
            }
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                bail!("the server closed the connection");
            }
        };
        let head = std::str::from_utf8(&self.buffer[..head_end]).context("a non-UTF-8 head")?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status")?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .context("an answer without Content-Length")?;
        while self.buffer.len() < head_end + length {
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                bail!("the server closed the connection mid-body");
            }
        }
        Ok(Reply {
            status,
            body: self.buffer[head_end..head_end + length].to_vec(),
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
