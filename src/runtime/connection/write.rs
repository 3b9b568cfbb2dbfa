//! The write half of a connection: responses to the socket, bounded by the idle
//! timeout, and the lingering close after a refused frame.

use super::{Conn, LINGER_BYTES, LINGER_TIME};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Conn {
    /// After refusing a frame: reads and discards what the peer is still sending, for
    /// at most [`LINGER_TIME`] and [`LINGER_BYTES`]. Closing a socket with unread input
    /// makes the kernel send a reset, which can destroy the error answer before the
    /// peer reads it — typically while the peer is still writing the oversized frame.
    pub(super) async fn linger(&self) {
        let deadline = Instant::now() + LINGER_TIME;
        let mut budget = LINGER_BYTES;
        let mut buf = vec![0u8; 16 * 1024];
        let mut stream = &self.stream;
        while budget > 0 {
            let read = future::or(async { Some(stream.read(&mut buf).await) }, async {
                async_io::Timer::at(deadline).await;
                None
            })
            .await;
            match read {
                Some(Ok(n)) if n > 0 => budget = budget.saturating_sub(n),
                _ => break,
            }
        }
    }

    /// Writes `out` fully, bounded by the idle timeout (a peer that stops reading is
    /// dropped), then frees the buffer.
    pub(super) async fn write_out(&mut self) -> io::Result<()> {
        if self.tls.is_some() {
            return self.write_out_tls().await;
        }
        let n = self.out.len();
        let mut w = &self.stream;
        let out = &self.out;
        let idle = self.shared.limits.load().idle_timeout;
        let done = future::or(async { Some(w.write_all(out).await) }, async {
            async_io::Timer::after(idle).await;
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
        self.shared.metrics.bytes_out.increment(n as u64);
        self.shared.registry.with(self.meta.id, |c| {
            c.bytes_out.fetch_add(n as u64, Ordering::Relaxed)
        });
        self.out = Vec::new();
        Ok(())
    }
}
