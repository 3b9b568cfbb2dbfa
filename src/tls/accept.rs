//! A listener's side of a handshake: refuse plaintext at the first byte, then verify.

use super::{PeerIdentity, Tls};
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// First byte of a TLS handshake record. A DSF frame starts with the high byte of
/// its length, which is 0 for every frame a server accepts.
const TLS_HANDSHAKE: u8 = 0x16;

/// The server side of one listener: the process's current certificate, and whether
/// this listener requires a client certificate.
#[derive(Clone)]
pub struct Acceptor {
    pub(super) tls: Arc<Tls>,
    pub(super) client_auth: bool,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// Whether clients of this listener must present a certificate.
    pub fn requires_client_cert(&self) -> bool {
        self.client_auth
    }
}

/// A connection whose handshake completed.
pub struct Accepted {
    /// The socket, handed back so the connection loop reads it directly.
    pub stream: async_net::TcpStream,
    /// The TLS session: records are decrypted and encrypted through it.
    pub session: rustls::ServerConnection,
    /// The verified client certificate's names, when the client presented one.
    pub identity: Option<PeerIdentity>,
}

/// Runs the server side of a handshake on `stream`, within `timeout`.
///
/// A client that starts with anything but a TLS handshake record (a plaintext DSF
/// client) is refused before any byte is written to it; so is one that fails
/// verification (rustls answers with a TLS alert, never a DSF frame).
pub async fn accept(
    acceptor: &Acceptor,
    stream: async_net::TcpStream,
    timeout: Duration,
) -> io::Result<Accepted> {
    let tls = accept_stream(acceptor, stream, timeout).await?;
    let (stream, session) = tls.into_inner();
    let identity = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(PeerIdentity::from_cert);
    Ok(Accepted {
        stream,
        session,
        identity,
    })
}

/// Like [`accept`], keeping the stream whole for code that wants `AsyncRead` and
/// `AsyncWrite` (the admin HTTP server).
pub async fn accept_stream(
    acceptor: &Acceptor,
    stream: async_net::TcpStream,
    timeout: Duration,
) -> io::Result<futures_rustls::server::TlsStream<async_net::TcpStream>> {
    let handshake = async {
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the TLS handshake",
            ));
        }
        if first[0] != TLS_HANDSHAKE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "not a TLS handshake (first byte {:#04x}): a plaintext client?",
                    first[0]
                ),
            ));
        }
        let config = acceptor
            .tls
            .server_config(acceptor.client_auth)
            .ok_or_else(|| io::Error::other("no server certificate configured"))?;
        futures_rustls::TlsAcceptor::from(config)
            .accept(stream)
            .await
    };
    futures_lite::future::or(handshake, async {
        async_io::Timer::after(timeout).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake not finished in time",
        ))
    })
    .await
}
