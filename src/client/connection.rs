//! A pipelined client connection: many calls in flight on one socket, matched by id.

use crate::protocol::frame::{self, FrameDecoder};
use crate::protocol::{ApiError, Notice, Request, Response, DEFAULT_MAX_FRAME};
use crate::tls::{ClientStream, Connector, ReadHalf, WriteHalf};
use futures_lite::AsyncWriteExt;
use serde_json::Value;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;

/// Why a call produced no response.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection before answering.
    #[error("connection closed by the server before the response")]
    Closed,
    /// The server answered something that is not a protocol response.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server answered an error not tied to any request (`id: null`), then closed.
    #[error("server error: {0}")]
    Server(ApiError),
    /// No response within the call's timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The server announced `goaway` (PROTOCOL §7) before this request was written:
    /// it never left, and may go on a new connection whatever the operation.
    #[error("the server announced goaway; the request was not sent")]
    GoneAway,
}

impl ClientError {
    /// Whether the request certainly never reached the server (safe to send again).
    pub fn never_sent(&self) -> bool {
        matches!(self, ClientError::GoneAway)
    }
}

/// Optional request fields.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Session token.
    pub token: Option<String>,
    /// Routing key.
    pub key: Option<String>,
}

type Pending = Arc<Mutex<HashMap<u64, async_channel::Sender<Result<Response, ClientError>>>>>;

/// One connection; cheap to share (`&self` methods), calls may run concurrently.
pub struct Connection {
    /// Write half, serialized by an async mutex so frames never interleave.
    writer: async_lock::Mutex<WriteHalf>,
    /// Calls waiting for their response, by wire id.
    pending: Pending,
    /// Next wire id.
    next_id: AtomicU64,
    /// The peer.
    peer: SocketAddr,
    /// Set once the reader has stopped; later calls fail at once instead of waiting.
    closed: Arc<std::sync::atomic::AtomicBool>,
    /// Set by the server's `goaway` (or by the end of the connection), and signalled.
    gone: Arc<Gone>,
    /// Reads responses and completes pending calls; dropped with the connection.
    _reader: smol::Task<()>,
}

impl Connection {
    /// Connects to `addr` (host:port) over plain TCP, giving up after `timeout`.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Connection, ClientError> {
        Connection::connect_with(addr, timeout, None).await
    }

    /// Connects to `addr`, with TLS when `tls` is given (verifying the server), giving
    /// up after `timeout` (handshake included).
    pub async fn connect_with(
        addr: &str,
        timeout: Duration,
        tls: Option<&Connector>,
    ) -> Result<Connection, ClientError> {
        let stream = ClientStream::connect(addr, tls, timeout)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::TimedOut => ClientError::Timeout(timeout),
                _ => ClientError::Io(e),
            })?;
        let peer = stream.tcp().peer_addr()?;
        let (read_half, write_half) = stream.split();
        let pending: Pending = Arc::default();
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gone = Arc::new(Gone::default());
        let reader = smol::spawn(read_loop(
            read_half,
            pending.clone(),
            closed.clone(),
            gone.clone(),
        ));
        Ok(Connection {
            writer: async_lock::Mutex::new(write_half),
            pending,
            closed,
            gone,
            next_id: AtomicU64::new(1),
            peer,
            _reader: reader,
        })
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the server closed the connection (or it failed); calls then fail at once.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether the server announced `goaway`: no new request goes on this connection
    /// (calls fail with [`ClientError::GoneAway`]); those already sent are answered.
    pub fn saw_goaway(&self) -> bool {
        self.gone.flag.load(Ordering::SeqCst)
    }

    /// Whether a new request may use this connection (open, no `goaway`).
    pub fn is_usable(&self) -> bool {
        !self.is_closed() && !self.saw_goaway()
    }

    /// Resolves once the connection is no longer usable: `goaway`, or closed.
    pub async fn unusable(&self) {
        loop {
            if !self.is_usable() {
                return;
            }
            let listener = self.gone.event.listen();
            if !self.is_usable() {
                return;
            }
            listener.await;
        }
    }

    /// Calls `op` with `body`; the response carries the wire id this call used.
    pub async fn call(
        &self,
        op: &str,
        body: Value,
        opts: &CallOptions,
    ) -> Result<Response, ClientError> {
        let mut req = Request::new(0, op, body);
        req.token = opts.token.clone();
        req.key = opts.key.clone();
        self.send(req).await
    }

    /// Sends a prepared request (its `id` is replaced by a fresh wire id).
    pub async fn send(&self, mut req: Request) -> Result<Response, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        req.id = id;
        let (tx, rx) = async_channel::bounded(1);
        self.pending.lock().expect("pending lock").insert(id, tx);
        // The reader sets `closed` before failing the pending calls, so either it
        // sees this call or this call sees the flag.
        if self.is_closed() {
            self.pending.lock().expect("pending lock").remove(&id);
            return Err(ClientError::Closed);
        }
        let mut bytes = Vec::with_capacity(64);
        req.encode(&mut bytes);
        let written = {
            let mut w = self.writer.lock().await;
            // Checked under the write lock: a request written after `goaway` was read
            // would still be answered within the grace, but the notice says not to.
            if self.saw_goaway() {
                self.pending.lock().expect("pending lock").remove(&id);
                return Err(ClientError::GoneAway);
            }
            // A TLS stream holds records until flushed; plain TCP's flush is a no-op.
            match w.write_all(&bytes).await {
                Ok(()) => w.flush().await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = written {
            self.pending.lock().expect("pending lock").remove(&id);
            return Err(e.into());
        }
        rx.recv().await.map_err(|_| ClientError::Closed)?
    }

    /// Like [`call`](Self::call), failing with `Timeout` after `timeout`.
    pub async fn call_timeout(
        &self,
        op: &str,
        body: Value,
        opts: &CallOptions,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        futures_lite::future::or(self.call(op, body, opts), async {
            async_io::Timer::after(timeout).await;
            Err(ClientError::Timeout(timeout))
        })
        .await
    }

    /// Writes raw bytes (tests of malformed input).
    pub async fn write_raw(&self, bytes: &[u8]) -> io::Result<()> {
        let mut w = self.writer.lock().await;
        w.write_all(bytes).await?;
        w.flush().await
    }
}

/// The "no longer usable" signal: a flag and the event that announces it.
#[derive(Default)]
struct Gone {
    /// `goaway` seen.
    flag: std::sync::atomic::AtomicBool,
    /// Notified when `flag` is set or the connection ends.
    event: event_listener::Event,
}

async fn read_loop(
    stream: ReadHalf,
    pending: Pending,
    closed: Arc<std::sync::atomic::AtomicBool>,
    gone: Arc<Gone>,
) {
    read_frames(stream, pending, closed, &gone).await;
    gone.event.notify(usize::MAX);
}

async fn read_frames(
    mut stream: ReadHalf,
    pending: Pending,
    closed: Arc<std::sync::atomic::AtomicBool>,
    gone: &Gone,
) {
    let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME * 64);
    let fail_all = |e: &dyn Fn() -> ClientError| {
        let waiting: Vec<_> = pending.lock().expect("pending lock").drain().collect();
        for (_, tx) in waiting {
            let _ = tx.try_send(Err(e()));
        }
    };
    loop {
        let payload = match frame::read_frame(&mut stream, &mut dec).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                closed.store(true, Ordering::SeqCst);
                return fail_all(&|| ClientError::Closed);
            }
            Err(e) => {
                closed.store(true, Ordering::SeqCst);
                let msg = e.to_string();
                return fail_all(&|| ClientError::Io(io::Error::other(msg.clone())));
            }
        };
        let resp = match Response::parse(&payload) {
            Ok(r) => r,
            Err(e) => {
                if let Some(notice) = Notice::parse(&payload) {
                    // Unknown notices are ignored; `goaway` stops new requests here.
                    if notice.is_goaway() {
                        tracing::debug!(?notice, "server announced goaway");
                        gone.flag.store(true, Ordering::SeqCst);
                        gone.event.notify(usize::MAX);
                    }
                    continue;
                }
                closed.store(true, Ordering::SeqCst);
                return fail_all(&|| ClientError::Protocol(e.clone()));
            }
        };
        match resp.id {
            Some(id) => {
                if let Some(tx) = pending.lock().expect("pending lock").remove(&id) {
                    let _ = tx.try_send(Ok(resp));
                }
            }
            None => {
                // An error without an id concerns the connection, e.g. `overloaded`
                // or `too_large`; every waiting call gets it.
                let err = resp.result.clone().err();
                match err {
                    Some(e) => fail_all(&|| ClientError::Server(e.clone())),
                    None => fail_all(&|| ClientError::Protocol("response without id".into())),
                }
            }
        }
    }
}
