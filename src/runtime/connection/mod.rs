//! One connection's task: read frames, dispatch requests, write responses.
//!
//! Requests are polled once inline; one that completes at once (ping, echo, a cache
//! hit) is answered without a spawn or a queue hop, and one that has to wait is
//! spawned on this loop and answers through the connection's mailbox. Responses are
//! batched into one write. Backpressure: with `max_inflight_per_connection` requests
//! outstanding the task stops reading, so a client that never reads its responses
//! costs a bounded amount of memory.
//!
//! Idle footprint: reads go into the loop thread's scratch buffer, and only an
//! incomplete tail is copied into the connection's own decoder; the write buffer is
//! freed after each write. An idle connection therefore holds no buffers — just its
//! task, its registry entry and its mailbox (measured in BENCHMARKS.md).
//!
//! TLS: a connection accepted on a TLS listener carries its rustls session, and the
//! same loop feeds socket bytes through it (`read_tls` → decrypted bytes → frames;
//! responses → `write_tls`). A plain connection's session is `None`: it pays one
//! branch per read and write, not an adapter layer.

mod shared;
mod tls;
mod write;

pub use shared::{ConnShared, ServerMetrics};

use super::mailbox::{Mailbox, Outbound};
use super::{ConnMeta, Shutdown};
use crate::protocol::frame::split_frame;
use crate::protocol::{
    ApiError, ErrorCode, FrameDecoder, FrameError, Request, RequestError, Response,
};
use async_io::Async;
use std::cell::RefCell;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How long a connection closed for an unusable frame keeps draining its input.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// How much input such a connection drains at most before closing.
const LINGER_BYTES: usize = 8 << 20;

/// Size of each loop thread's read scratch buffer.
const SCRATCH_LEN: usize = 64 * 1024;

thread_local! {
    /// Shared by every connection of this loop thread; never held across an await.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_LEN]);
}

/// A TLS connection's session (TLS listeners only).
struct TlsSession {
    /// Decrypts what the socket delivers and encrypts what is written.
    session: rustls::ServerConnection,
    /// Decrypted bytes may still wait in the session (reading paused at the in-flight
    /// limit): read them before waiting for the socket, which may never wake again.
    plain_pending: bool,
}

/// What the read side should do next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Keep reading.
    No,
    /// Peer closed, legacy exit, or the drain after `goaway`: finish in-flight work,
    /// then close.
    Graceful,
    /// Idle or I/O error: close after flushing what is queued.
    Now,
    /// Untrustworthy frame: close after flushing the error answer, lingering so that
    /// the answer is not lost to a reset (see [`Conn::linger`]).
    Refused,
}

/// Runs one accepted connection to completion.
///
/// Not an `async fn`: the state is built here and moved into [`Conn::drive`] once, so
/// the task — most of an idle connection's memory — holds one copy of it.
pub fn run(
    shared: Arc<ConnShared>,
    stream: async_net::TcpStream,
    peer: SocketAddr,
    shutdown: Shutdown,
    tls: Option<(rustls::ServerConnection, Option<crate::tls::PeerIdentity>)>,
) -> impl std::future::Future<Output = ()> + Send {
    let mailbox = Arc::new(Mailbox::new());
    let (tls, identity) = match tls {
        None => (None, None),
        Some((mut session, identity)) => {
            // Responses are already in memory: let rustls take them whole, so that a
            // write never stops half-way for want of room in its buffer.
            session.set_buffer_limit(None);
            let tls = TlsSession {
                session,
                plain_pending: true,
            };
            (Some(Box::new(tls)), identity)
        }
    };
    // Unwrap async-net's Arc: the accept loop held the only other reference.
    let Ok(stream) = Arc::try_unwrap(Arc::<Async<TcpStream>>::from(stream)) else {
        return Conn::drive(None, shutdown);
    };
    // The accept loop checked the limit; this is the check that holds when several
    // loops accept at once (one over it is closed without a frame).
    let max = shared.limits.load().max_connections;
    let id = shared
        .registry
        .insert_with_identity(peer, mailbox.clone(), identity, max);
    if id.is_some() {
        shared.metrics.accepted.increment(1);
        shared.metrics.connections.increment(1.0);
    }
    let conn = id.map(|id| Conn {
        span: {
            let span = tracing::debug_span!("conn", listener = shared.name, conn = id, %peer);
            (!span.is_disabled()).then(|| Box::new(span))
        },
        dec: FrameDecoder::new(shared.limits.load().max_frame),
        shared,
        stream,
        tls,
        meta: ConnMeta { id, peer },
        mailbox,
        out: Vec::new(),
        inflight: 0,
        stop: Stop::No,
        goaway: false,
    });
    Conn::drive(conn, shutdown)
}

/// One connection's state while it is served.
struct Conn {
    /// Entered around the synchronous parts (an instrumented future would cost a
    /// second copy of the span in every idle task); boxed and absent unless debug
    /// logging is on, since a span is 40 bytes of every idle connection.
    span: Option<Box<tracing::Span>>,
    shared: Arc<ConnShared>,
    /// Owned, not shared: only this task uses the socket.
    stream: Async<TcpStream>,
    /// The TLS session on a TLS listener; `None` on a plain one.
    tls: Option<Box<TlsSession>>,
    meta: ConnMeta,
    mailbox: Arc<Mailbox>,
    /// Holds only an incomplete frame's bytes (or frames held back by backpressure).
    dec: FrameDecoder,
    /// Encoded responses waiting to be written.
    out: Vec<u8>,
    /// Spawned requests not yet answered.
    inflight: usize,
    stop: Stop,
    /// `goaway` was sent: the server drains; requests are still read until `Drain`.
    goaway: bool,
}

impl Conn {
    /// The connection's span, or a disabled one.
    fn span(&self) -> tracing::Span {
        self.span
            .as_deref()
            .cloned()
            .unwrap_or_else(tracing::Span::none)
    }

    /// Serves the connection, then unregisters it. The state is used in place through
    /// `&mut`, never moved, so the future stores it once.
    async fn drive(mut conn: Option<Conn>, shutdown: Shutdown) {
        if let Some(conn) = &mut conn {
            let result = conn.serve_loop(&shutdown).await;
            conn.finish(result);
        }
    }

    /// Unregisters the connection once its loop has ended.
    fn finish(&mut self, result: io::Result<()>) {
        let span = self.span();
        let _entered = span.enter();
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
        self.mailbox.close();
        self.shared.service.on_close(self.meta);
        self.shared.registry.remove(self.meta.id);
        self.shared.metrics.connections.decrement(1.0);
        if self.inflight > 0 {
            // Answers that will never be collected no longer count as in flight.
            self.shared
                .inflight_total
                .fetch_sub(self.inflight, Ordering::Relaxed);
            self.shared.metrics.inflight.decrement(self.inflight as f64);
        }
        tracing::debug!("closed");
    }

    async fn serve_loop(&mut self, shutdown: &Shutdown) -> io::Result<()> {
        self.span().in_scope(|| tracing::debug!("accepted"));
        let max_inflight = self.shared.limits.load().max_inflight_per_connection;
        if self.tls_wants_write() {
            // The end of the handshake (session tickets) may still be queued.
            Box::pin(self.write_out()).await?;
        }
        loop {
            if self.stop == Stop::No && !self.goaway && shutdown.is_triggered() {
                // Accepted after the server announced its drain: announce it here too.
                self.go_away();
                Box::pin(self.write_out()).await?;
            }
            if matches!(self.stop, Stop::Now | Stop::Refused)
                || (self.stop == Stop::Graceful && self.inflight == 0)
            {
                break;
            }
            let can_read = self.stop == Stop::No && self.inflight < max_inflight;
            // One hand-written poll for both sources: no allocation while waiting, and
            // the idle task stays small.
            let stream = &self.stream;
            let mailbox = &*self.mailbox;
            let tls_pending = self.tls.as_ref().is_some_and(|t| t.plain_pending);
            let readable = std::future::poll_fn(|cx| {
                if let Poll::Ready(m) = mailbox.poll_recv(cx) {
                    return Poll::Ready(Some(m));
                }
                if can_read && (tls_pending || stream.poll_readable(cx).is_ready()) {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            let mut frames = 0;
            match readable {
                None if self.tls.is_some() => frames = self.read_tls()?,
                None => frames = self.read()?,
                Some(m) => {
                    self.mail(m);
                    while let Some(m) = self.mailbox.try_pop() {
                        self.mail(m);
                    }
                    // Frames held back by the in-flight limit can go now.
                    if self.stop == Stop::No && self.dec.buffered() > 0 {
                        frames = self.take_buffered();
                    }
                }
            }
            if !self.out.is_empty() || self.tls_wants_write() {
                // Boxed so the idle task does not carry the write path's state.
                Box::pin(self.write_out()).await?;
                self.touch(true);
            } else if frames > 0 {
                // Only whole frames count as activity: a peer trickling bytes of a
                // frame it never finishes (slowloris) still times out.
                self.touch(true);
            } else {
                self.touch(false);
            }
        }
        if let Some(tls) = &mut self.tls {
            // Tell a TLS peer the end is deliberate; best effort, without waiting.
            tls.session.send_close_notify();
            while tls.session.wants_write() {
                if tls.session.write_tls(&mut self.stream.get_ref()).is_err() {
                    break;
                }
            }
        }
        // Half-close so the peer sees a clean end after the last response.
        let _ = self.stream.get_ref().shutdown(std::net::Shutdown::Write);
        if self.stop == Stop::Refused {
            Box::pin(self.linger()).await;
        }
        Ok(())
    }

    /// Reads once and dispatches the complete frames; returns how many there were.
    fn read(&mut self) -> io::Result<usize> {
        let span = self.span();
        let _entered = span.enter();
        let result = if self.dec.buffered() == 0 {
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let n = self.stream.get_ref().read(&mut scratch)?;
                self.count_in(n);
                if n == 0 {
                    self.stop = Stop::Graceful;
                    return Ok(0);
                }
                Ok(super::clock::with_reading(|| {
                    self.take_slice(&scratch[..n])
                }))
            })
        } else {
            let buf = self.dec.read_buf();
            let offered = buf.len();
            match self.stream.get_ref().read(buf) {
                Ok(n) => {
                    self.dec.advance(n, offered);
                    self.count_in(n);
                    if n == 0 {
                        self.stop = Stop::Graceful;
                        return Ok(0);
                    }
                    Ok(super::clock::with_reading(|| self.take_buffered()))
                }
                Err(e) => {
                    self.dec.advance(0, offered);
                    Err(e)
                }
            }
        };
        match result {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(0)
            }
            other => other,
        }
    }

    fn count_in(&self, n: usize) {
        self.shared.metrics.bytes_in.increment(n as u64);
        self.shared.registry.with(self.meta.id, |c| {
            c.bytes_in.fetch_add(n as u64, Ordering::Relaxed)
        });
    }

    /// Dispatches frames from a freshly read slice, stashing an incomplete tail.
    fn take_slice(&mut self, bytes: &[u8]) -> usize {
        let mut at = 0;
        let mut frames = 0;
        let max_inflight = self.shared.limits.load().max_inflight_per_connection;
        // The frame bound is the connection's own, fixed when it was accepted.
        let max_frame = self.dec.max_frame();
        while self.stop == Stop::No {
            if self.inflight >= max_inflight {
                break;
            }
            match split_frame(&bytes[at..], max_frame) {
                Ok(Some(range)) => {
                    let payload = &bytes[at + range.start..at + range.end];
                    at += range.end;
                    frames += 1;
                    self.dispatch(payload);
                }
                Ok(None) => break,
                Err(e) => {
                    self.frame_error(e);
                    return frames;
                }
            }
        }
        if self.stop == Stop::No && at < bytes.len() {
            self.dec.stash(&bytes[at..]);
        }
        frames
    }

    /// Dispatches frames already in the decoder.
    fn take_buffered(&mut self) -> usize {
        let mut frames = 0;
        while self.stop == Stop::No
            && self.inflight < self.shared.limits.load().max_inflight_per_connection
        {
            let payload = match self.dec.next_frame() {
                Ok(Some(p)) => p.to_vec(),
                Ok(None) => break,
                Err(e) => {
                    self.frame_error(e);
                    break;
                }
            };
            frames += 1;
            self.dispatch(&payload);
        }
        frames
    }

    /// Answers an untrustworthy frame length and stops reading.
    fn frame_error(&mut self, e: FrameError) {
        let code = match e {
            FrameError::Empty => ErrorCode::BadFrame,
            FrameError::TooLarge { .. } => ErrorCode::TooLarge,
        };
        tracing::debug!(error = %e, "unusable frame; closing");
        Response::err(None, ApiError::new(code, e.to_string())).encode(&mut self.out);
        self.stop = Stop::Refused;
    }

    /// Parses one payload and answers it inline or spawns it.
    fn dispatch(&mut self, payload: &[u8]) {
        let shared = &*self.shared;
        shared
            .registry
            .with(self.meta.id, |c| c.requests.fetch_add(1, Ordering::Relaxed));
        let under_limit =
            shared.inflight_total.load(Ordering::Relaxed) < shared.limits.load().max_inflight;
        if under_limit && shared.service.call_frame(self.meta, payload, &self.mailbox) {
            // Taken as bytes; its answer comes through the mailbox like a spawned one's.
            self.inflight += 1;
            shared.inflight_total.fetch_add(1, Ordering::Relaxed);
            shared.metrics.inflight.increment(1.0);
            return;
        }
        let req = match Request::parse(payload) {
            Ok(r) => r,
            Err(RequestError::Exit) => {
                self.stop = Stop::Graceful;
                return;
            }
            Err(RequestError::Reply { id, error }) => {
                Response::err(id, error).encode(&mut self.out);
                return;
            }
        };
        if shared.inflight_total.load(Ordering::Relaxed) >= shared.limits.load().max_inflight {
            shared.metrics.inflight_refused.increment(1);
            let busy = ApiError::overloaded("too many requests in flight");
            Response::err(Some(req.id), busy).encode(&mut self.out);
            return;
        }
        let mut fut = shared.service.call(self.meta, req);
        // A first poll with a no-op waker: if the handler must wait, the spawned task
        // polls it again with a real waker, so no wake-up is lost.
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(resp) => resp.encode(&mut self.out),
            Poll::Pending => {
                self.inflight += 1;
                shared.inflight_total.fetch_add(1, Ordering::Relaxed);
                shared.metrics.inflight.increment(1.0);
                let mailbox = self.mailbox.clone();
                super::spawn_local(async move {
                    let resp = fut.await;
                    let mut bytes = Vec::with_capacity(128);
                    resp.encode(&mut bytes);
                    // A closed mailbox means the client left; the answer has nowhere to go.
                    mailbox.push(Outbound::Response(bytes));
                })
                .detach();
            }
        }
    }

    /// Applies one mailbox message.
    fn mail(&mut self, m: Outbound) {
        match m {
            Outbound::Response(bytes) => {
                self.out.extend_from_slice(&bytes);
                self.inflight -= 1;
                self.shared.inflight_total.fetch_sub(1, Ordering::Relaxed);
                self.shared.metrics.inflight.decrement(1.0);
            }
            Outbound::Push(bytes) => self.out.extend_from_slice(&bytes),
            Outbound::GoAway => self.go_away(),
            Outbound::Drain => {
                if self.stop == Stop::No {
                    self.stop = Stop::Graceful;
                }
            }
            Outbound::Close(reason) => {
                tracing::debug!(reason, "closing");
                self.stop = Stop::Now;
            }
        }
    }

    /// Sends `goaway` once (PROTOCOL §7); reading goes on until the server's `Drain`.
    fn go_away(&mut self) {
        if !self.goaway {
            self.goaway = true;
            let grace = self.shared.limits.load().goaway_grace;
            crate::protocol::notice::encode_goaway(&mut self.out, grace);
        }
    }

    /// Publishes progress for the idle sweeper and admin views.
    fn touch(&self, active: bool) {
        let registry = &self.shared.registry;
        registry.with(self.meta.id, |c| {
            if active {
                c.last_active_ms.store(registry.now_ms(), Ordering::Relaxed);
            }
            c.inflight.store(self.inflight as u32, Ordering::Relaxed);
        });
    }
}
