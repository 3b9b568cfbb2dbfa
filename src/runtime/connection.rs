//! One connection's task: read frames, dispatch requests, write responses.
//!
//! Requests are polled once inline; one that completes at once (ping, echo, a cache
//! hit) is answered without a spawn or a channel hop, and one that has to wait is
//! spawned on this loop and answers through the connection's mailbox. Responses are
//! batched into one write. Backpressure: with `max_inflight_per_connection` requests
//! outstanding the task stops reading, so a client that never reads its responses
//! costs a bounded amount of memory. While idle the task holds no read or write buffer.

use super::registry::{Outbound, Registry};
use super::{ConnMeta, Service, Shutdown};
use crate::config::LimitsConfig;
use crate::protocol::{
    ApiError, ErrorCode, FrameDecoder, FrameError, Request, RequestError, Response,
};
use async_io::Async;
use futures_lite::{future, AsyncWriteExt};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tracing::Instrument;

/// State shared by all connections of one server.
pub struct ConnShared {
    /// What answers requests.
    pub service: Arc<dyn Service>,
    /// Open connections.
    pub registry: Arc<Registry>,
    /// Bounds.
    pub limits: LimitsConfig,
    /// Listener name for logs.
    pub name: &'static str,
    /// Requests in flight across the server, against `limits.max_inflight`.
    pub inflight_total: AtomicUsize,
}

/// Why the read side stopped.
enum Stop {
    /// Keep going.
    No,
    /// Peer closed, legacy exit, or shutdown: finish in-flight work, then close.
    Graceful,
    /// Untrustworthy frame or I/O error: close after flushing what is queued.
    Now,
}

/// Runs one accepted connection to completion.
pub async fn run(
    shared: Arc<ConnShared>,
    stream: async_net::TcpStream,
    peer: SocketAddr,
    shutdown: Shutdown,
) {
    let (tx, rx) = async_channel::unbounded();
    let Some(id) = shared.registry.insert(peer, shared.name, tx.clone()) else {
        return;
    };
    let span = tracing::debug_span!("conn", listener = shared.name, conn = id, %peer);
    let stream: Arc<Async<TcpStream>> = stream.into();
    let meta = ConnMeta { id, peer };
    async {
        tracing::debug!("accepted");
        if let Err(e) = serve(&shared, &stream, meta, tx, rx, shutdown).await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
        shared.service.on_close(meta);
        shared.registry.remove(id);
        tracing::debug!("closed");
    }
    .instrument(span)
    .await;
}

async fn serve(
    shared: &ConnShared,
    stream: &Async<TcpStream>,
    meta: ConnMeta,
    tx: async_channel::Sender<Outbound>,
    rx: async_channel::Receiver<Outbound>,
    shutdown: Shutdown,
) -> io::Result<()> {
    let limits = &shared.limits;
    let mut dec = FrameDecoder::new(limits.max_frame);
    let mut out: Vec<u8> = Vec::new();
    let mut inflight = 0usize;
    let mut stop = Stop::No;
    let mut closing = false;
    // Publishes progress for the idle sweeper and admin views.
    let touch = |inflight: usize| {
        shared.registry.with(meta.id, |c| {
            c.last_active_ms
                .store(shared.registry.now_ms(), Ordering::Relaxed);
            c.inflight.store(inflight as u32, Ordering::Relaxed);
        });
    };

    loop {
        // Decide what to wait for.
        let can_read = matches!(stop, Stop::No) && inflight < limits.max_inflight_per_connection;
        if !can_read && inflight == 0 && !matches!(stop, Stop::No) {
            break;
        }
        if can_read && shutdown.is_triggered() {
            stop = Stop::Graceful;
            continue;
        }
        if out.is_empty() {
            dec.shrink_if_idle();
            out = Vec::new();
        }
        enum Ev {
            Readable,
            Mail(Outbound),
            Shutdown,
        }
        let ev = if can_read {
            future::or(
                future::or(
                    async {
                        let _ = stream.readable().await;
                        Ev::Readable
                    },
                    async { rx.recv().await.map_or(Ev::Shutdown, Ev::Mail) },
                ),
                async {
                    shutdown.wait().await;
                    Ev::Shutdown
                },
            )
            .await
        } else {
            match rx.recv().await {
                Ok(m) => Ev::Mail(m),
                Err(_) => break,
            }
        };

        match ev {
            Ev::Shutdown => stop = Stop::Graceful,
            Ev::Mail(m) => {
                handle_mail(m, &mut out, &mut inflight, shared, &mut closing);
                // Batch whatever else is ready.
                while let Ok(m) = rx.try_recv() {
                    handle_mail(m, &mut out, &mut inflight, shared, &mut closing);
                }
                // Frames held back by the in-flight limit can go now.
                if matches!(stop, Stop::No) && dec.buffered() > 0 {
                    stop = take_frames(&mut dec, shared, meta, &tx, &mut out, &mut inflight);
                }
                touch(inflight);
            }
            Ev::Readable => {
                let buf = dec.read_buf();
                let offered = buf.len();
                let n = match (&*stream.get_ref()).read(buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        dec.advance(0, offered);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                        dec.advance(0, offered);
                        continue;
                    }
                    Err(e) => {
                        dec.advance(0, offered);
                        return Err(e);
                    }
                };
                dec.advance(n, offered);
                shared.registry.with(meta.id, |c| {
                    c.bytes_in.fetch_add(n as u64, Ordering::Relaxed)
                });
                if n == 0 {
                    stop = Stop::Graceful;
                } else {
                    let before = dec.consumed();
                    stop = take_frames(&mut dec, shared, meta, &tx, &mut out, &mut inflight);
                    // Only whole frames count as activity: a peer trickling bytes of a
                    // frame it never finishes (slowloris) still times out.
                    if dec.consumed() != before {
                        touch(inflight);
                    }
                }
            }
        }

        if closing {
            stop = Stop::Now;
        }
        if !out.is_empty() {
            write_out(shared, stream, meta, &mut out).await?;
            touch(inflight);
        }
        if matches!(stop, Stop::Now) {
            break;
        }
    }
    // Half-close so the peer sees a clean end after the last response.
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Applies one mailbox message.
fn handle_mail(
    m: Outbound,
    out: &mut Vec<u8>,
    inflight: &mut usize,
    shared: &ConnShared,
    closing: &mut bool,
) {
    match m {
        Outbound::Response(bytes) => {
            out.extend_from_slice(&bytes);
            *inflight -= 1;
            shared.inflight_total.fetch_sub(1, Ordering::Relaxed);
        }
        Outbound::Push(bytes) => out.extend_from_slice(&bytes),
        Outbound::Close(reason) => {
            tracing::debug!(reason, "closing");
            *closing = true;
        }
    }
}

/// Decodes and dispatches every complete frame in the buffer.
fn take_frames(
    dec: &mut FrameDecoder,
    shared: &ConnShared,
    meta: ConnMeta,
    tx: &async_channel::Sender<Outbound>,
    out: &mut Vec<u8>,
    inflight: &mut usize,
) -> Stop {
    loop {
        if *inflight >= shared.limits.max_inflight_per_connection {
            // The rest stays buffered until responses drain.
            return Stop::No;
        }
        let payload = match dec.next_frame() {
            Ok(Some(p)) => p,
            Ok(None) => return Stop::No,
            Err(e) => {
                let code = match e {
                    FrameError::Empty => ErrorCode::BadFrame,
                    FrameError::TooLarge { .. } => ErrorCode::TooLarge,
                };
                tracing::debug!(error = %e, "unusable frame; closing");
                Response::err(None, ApiError::new(code, e.to_string())).encode(out);
                return Stop::Now;
            }
        };
        shared
            .registry
            .with(meta.id, |c| c.requests.fetch_add(1, Ordering::Relaxed));
        let req = match Request::parse(payload) {
            Ok(r) => r,
            Err(RequestError::Exit) => return Stop::Graceful,
            Err(RequestError::Reply { id, error }) => {
                Response::err(id, error).encode(out);
                continue;
            }
        };
        let id = req.id;
        if shared.inflight_total.load(Ordering::Relaxed) >= shared.limits.max_inflight {
            Response::err(
                Some(id),
                ApiError::overloaded("too many requests in flight"),
            )
            .encode(out);
            continue;
        }
        let mut fut = shared.service.call(meta, req);
        // A first poll with a no-op waker: if the handler must wait, the spawned task
        // polls it again with a real waker, so nothing is lost.
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(resp) => resp.encode(out),
            Poll::Pending => {
                *inflight += 1;
                shared.inflight_total.fetch_add(1, Ordering::Relaxed);
                let tx = tx.clone();
                super::spawn_local(async move {
                    let resp = fut.await;
                    let mut bytes = Vec::with_capacity(128);
                    resp.encode(&mut bytes);
                    // The connection may be gone; then the answer has nobody to go to.
                    let _ = tx.send(Outbound::Response(bytes)).await;
                })
                .detach();
            }
        }
    }
}

/// Writes `out` fully, bounded by the idle timeout (a peer that stops reading is dropped).
async fn write_out(
    shared: &ConnShared,
    stream: &Async<TcpStream>,
    meta: ConnMeta,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let n = out.len();
    let mut w = stream;
    let done = future::or(async { Some(w.write_all(out).await) }, async {
        async_io::Timer::after(shared.limits.idle_timeout).await;
        None
    })
    .await;
    match done {
        Some(r) => r?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "peer stopped reading responses",
            ))
        }
    }
    shared.registry.with(meta.id, |c| {
        c.bytes_out.fetch_add(n as u64, Ordering::Relaxed)
    });
    out.clear();
    Ok(())
}
