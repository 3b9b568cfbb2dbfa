//! A Redis connection per loop thread for the guarded reads.
//!
//! The shared reconnecting connection runs its driver task on smol's global executor
//! thread, so every `MGET` crossed threads twice: the loop handed the command to the
//! driver's thread, and the driver woke the loop with the reply. Profiled under
//! pipelined load, that thread took 18 % of the node's CPU and the wake-ups between
//! threads much of the rest of its kernel time (BENCHMARKS.md, "Round 2"). Here each
//! loop thread opens its own multiplexed connection to the server, whose driver
//! task runs on that loop: a read is written, answered and handed back on one
//! thread.
//!
//! Only plain `redis://` servers get per-loop connections (a `rediss://` server keeps
//! the shared one), and only on loop threads. A connection whose driver ended (the
//! server closed it or failed) is replaced on the next read; failures are the
//! caller's to count and bound, as with the shared connection.

use crate::runtime::{on_loop, spawn_local};
use async_lock::OnceCell;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, FromRedisValue,
    RedisResult,
};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::ThreadId;

/// The per-loop connections to one server.
pub struct PerLoop {
    /// The server, when it is plain TCP.
    info: Option<ConnectionInfo>,
    slots: Mutex<HashMap<ThreadId, Arc<Slot>>>,
}

/// One loop's connection, made by its first read.
#[derive(Default)]
struct Slot {
    conn: OnceCell<MultiplexedConnection>,
    /// Set when its driver task ended: the next read makes a new one.
    dead: Arc<AtomicBool>,
}

impl PerLoop {
    /// Per-loop connections to `info`'s server (none for TLS or Unix sockets).
    pub fn new(info: &ConnectionInfo) -> PerLoop {
        let plain = matches!(info.addr(), ConnectionAddr::Tcp(..));
        PerLoop {
            info: plain.then(|| info.clone()),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `cmd` on this loop's connection; `None` off the loop threads and for
    /// TLS servers (use the shared connection then). A call that fails or is
    /// dropped unanswered (its deadline) retires the connection, so that a server
    /// gone silent is dialled again rather than waited on.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Option<RedisResult<T>> {
        let (mut conn, dead) = match self.connection().await? {
            Ok(c) => c,
            Err(e) => return Some(Err(e)),
        };
        let retire = Retire(Some(dead));
        let r = cmd.query_async(&mut conn).await;
        if r.as_ref()
            .map_or_else(|e| e.kind() != ErrorKind::Io, |_| true)
        {
            retire.disarm();
        }
        Some(r)
    }

    async fn connection(&self) -> Option<RedisResult<(MultiplexedConnection, Arc<AtomicBool>)>> {
        let info = self.info.as_ref()?;
        if !on_loop() {
            return None;
        }
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let slot = slots.entry(std::thread::current().id()).or_default();
            if slot.dead.load(Ordering::Acquire) {
                *slot = Arc::default();
            }
            slot.clone()
        };
        let conn = slot
            .conn
            .get_or_try_init(|| connect(info, slot.dead.clone()))
            .await;
        Some(conn.map(|c| (c.clone(), slot.dead.clone())))
    }
}

/// Marks a connection dead when dropped armed.
struct Retire(Option<Arc<AtomicBool>>);

impl Retire {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Retire {
    fn drop(&mut self) {
        if let Some(dead) = self.0.take() {
            dead.store(true, Ordering::Release);
        }
    }
}

/// Opens a connection whose driver runs on this loop; `dead` is set when it ends.
async fn connect(
    info: &ConnectionInfo,
    dead: Arc<AtomicBool>,
) -> RedisResult<MultiplexedConnection> {
    let ConnectionAddr::Tcp(host, port) = info.addr() else {
        unreachable!("per-loop connections are plain TCP");
    };
    let stream = async_net::TcpStream::connect((host.as_str(), *port)).await?;
    stream.set_nodelay(true)?;
    // Deadlines are the caller's (its own per-call bound), not a timer per command.
    let config = AsyncConnectionConfig::new().set_response_timeout(None);
    let (conn, driver) =
        MultiplexedConnection::new_with_config(info.redis_settings(), Tokio(stream), config)
            .await?;
    spawn_local(async move {
        driver.await;
        dead.store(true, Ordering::Release);
    })
    .detach();
    Ok(conn)
}

/// A smol stream under the tokio I/O traits the Redis connection is written against.
struct Tokio(async_net::TcpStream);

impl tokio::io::AsyncRead for Tokio {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = std::task::ready!(futures_lite::AsyncRead::poll_read(
            Pin::new(&mut self.0),
            cx,
            buf.initialize_unfilled()
        ))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Tokio {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        futures_lite::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        futures_lite::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        futures_lite::AsyncWrite::poll_close(Pin::new(&mut self.0), cx)
    }
}
