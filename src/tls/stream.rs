//! A client's connection: plain TCP or TLS behind one type, so clients have one path.

use super::{PeerIdentity, Tls};
use futures_lite::{AsyncRead, AsyncWrite};
use rustls::pki_types::ServerName;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The client side: the process's CA bundle and client certificate.
#[derive(Clone)]
pub struct Connector {
    pub(super) tls: Arc<Tls>,
    /// Name the server's certificate must carry; `None` = the host of the address.
    pub(super) server_name: Option<String>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Verifies servers against `name` instead of the host of the address dialled
    /// (`dsf client --tls-server-name`, or a server reached by IP whose certificate
    /// carries only a DNS name).
    pub fn with_server_name(mut self, name: impl Into<String>) -> Connector {
        self.server_name = Some(name.into());
        self
    }

    /// Verifies servers against the host of the address dialled (drops any override).
    pub fn with_address_name(mut self) -> Connector {
        self.server_name = None;
        self
    }

    fn server_name(&self, addr: &str) -> io::Result<ServerName<'static>> {
        let host = match &self.server_name {
            Some(n) => n.as_str(),
            None => host_of(addr),
        };
        ServerName::try_from(host.to_owned()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{host}` is not a server name: {e}"),
            )
        })
    }
}

/// `host` of `host:port` or `[v6]:port`: the name a server's certificate is checked
/// against.
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A connected client stream.
pub enum ClientStream {
    /// Plain TCP.
    Plain(async_net::TcpStream),
    /// TLS over TCP, handshake done.
    Tls(Box<futures_rustls::client::TlsStream<async_net::TcpStream>>),
}

impl ClientStream {
    /// Connects to `addr` (host:port), with TLS when `connector` is given, all within
    /// `timeout`.
    pub async fn connect(
        addr: &str,
        connector: Option<&Connector>,
        timeout: Duration,
    ) -> io::Result<ClientStream> {
        let connect = async {
            let tcp = async_net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            match connector {
                None => Ok(ClientStream::Plain(tcp)),
                Some(c) => {
                    let name = c.server_name(addr)?;
                    let config = c
                        .tls
                        .client_config()
                        .ok_or_else(|| io::Error::other("no CA bundle configured (tls.ca)"))?;
                    let tls = futures_rustls::TlsConnector::from(config)
                        .connect(name, tcp)
                        .await
                        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
                    Ok(ClientStream::Tls(Box::new(tls)))
                }
            }
        };
        futures_lite::future::or(connect, async {
            async_io::Timer::after(timeout).await;
            Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
        })
        .await
    }

    /// The TCP socket underneath (addresses, shutdown from another task).
    pub fn tcp(&self) -> &async_net::TcpStream {
        match self {
            ClientStream::Plain(s) => s,
            ClientStream::Tls(s) => s.get_ref().0,
        }
    }

    /// The server certificate's names and serial (TLS only).
    pub fn server_identity(&self) -> Option<PeerIdentity> {
        match self {
            ClientStream::Plain(_) => None,
            ClientStream::Tls(s) => s
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(PeerIdentity::from_cert),
        }
    }

    /// Separates reading from writing, so a reader task and writers can share the
    /// connection. Plain TCP is cloned (no lock); TLS shares the session under a lock.
    pub fn split(self) -> (ReadHalf, WriteHalf) {
        match self {
            ClientStream::Plain(s) => (ReadHalf::Plain(s.clone()), WriteHalf::Plain(s)),
            ClientStream::Tls(s) => {
                let (r, w) = futures_lite::io::split(*s);
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }
}

type TlsClient = futures_rustls::client::TlsStream<async_net::TcpStream>;

/// The reading side of a [`ClientStream`].
pub enum ReadHalf {
    /// Plain TCP.
    Plain(async_net::TcpStream),
    /// TLS.
    Tls(futures_lite::io::ReadHalf<TlsClient>),
}

/// The writing side of a [`ClientStream`].
pub enum WriteHalf {
    /// Plain TCP.
    Plain(async_net::TcpStream),
    /// TLS.
    Tls(futures_lite::io::WriteHalf<TlsClient>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_close(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ReadHalf::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ReadHalf::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_write(cx, buf),
            WriteHalf::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_flush(cx),
            WriteHalf::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(s) => Pin::new(s).poll_close(cx),
            WriteHalf::Tls(s) => Pin::new(s).poll_close(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_of_addresses() {
        assert_eq!(super::host_of("127.0.0.1:6400"), "127.0.0.1");
        assert_eq!(super::host_of("[::1]:6400"), "::1");
        assert_eq!(super::host_of("lb.example:6200"), "lb.example");
    }
}
