//! The TLS half of a connection's loop: socket bytes through the rustls session to
//! frames, and responses through it to the socket.

use super::{Conn, Stop, TlsSession, SCRATCH};
use futures_lite::future;
use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;

impl Conn {
    /// Whether the TLS session has records to send (handshake end, alerts).
    pub(super) fn tls_wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.session.wants_write())
    }

    /// [`read`](Self::read) for a TLS connection: reads records once, then turns
    /// every decrypted byte into frames until the session has none or the in-flight
    /// limit pauses reading.
    pub(super) fn read_tls(&mut self) -> io::Result<usize> {
        let span = self.span();
        let _entered = span.enter();
        // Taken out for the duration, so the frame code can borrow the connection.
        let mut tls = self.tls.take().expect("a TLS connection");
        let result = self.read_tls_with(&mut tls);
        self.tls = Some(tls);
        result
    }

    fn read_tls_with(&mut self, tls: &mut TlsSession) -> io::Result<usize> {
        let mut eof = false;
        if !tls.plain_pending {
            match tls.session.read_tls(&mut self.stream.get_ref()) {
                Ok(0) => eof = true,
                Ok(n) => self.count_in(n),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    return Ok(0)
                }
                Err(e) => return Err(e),
            }
            tls.session
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        let max_inflight = self.shared.limits.load().max_inflight_per_connection;
        let mut frames = 0;
        loop {
            if self.stop != Stop::No || self.inflight >= max_inflight {
                tls.plain_pending = true;
                break;
            }
            let got = if self.dec.buffered() == 0 {
                SCRATCH.with(|scratch| {
                    let mut scratch = scratch.borrow_mut();
                    let n = tls.session.reader().read(&mut scratch)?;
                    Ok::<_, io::Error>((n > 0).then(|| self.take_slice(&scratch[..n])))
                })
            } else {
                let buf = self.dec.read_buf();
                let offered = buf.len();
                match tls.session.reader().read(buf) {
                    Ok(n) => {
                        self.dec.advance(n, offered);
                        Ok((n > 0).then(|| self.take_buffered()))
                    }
                    Err(e) => {
                        self.dec.advance(0, offered);
                        Err(e)
                    }
                }
            };
            match got {
                Ok(Some(n)) => frames += n,
                Ok(None) => {
                    // close_notify: the peer is done sending.
                    eof = true;
                    tls.plain_pending = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tls.plain_pending = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    // The socket closed without close_notify: as a plain EOF.
                    eof = true;
                    tls.plain_pending = false;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if eof && self.stop == Stop::No {
            self.stop = Stop::Graceful;
        }
        Ok(frames)
    }

    /// [`write_out`](Self::write_out) for a TLS connection: the responses go through
    /// the session, whose records are written as the socket takes them.
    pub(super) async fn write_out_tls(&mut self) -> io::Result<()> {
        let n = self.out.len();
        let idle = self.shared.limits.load().idle_timeout;
        let stream = &self.stream;
        let tls = self.tls.as_mut().expect("a TLS connection");
        if n > 0 {
            tls.session.writer().write_all(&self.out)?;
        }
        while tls.session.wants_write() {
            match tls.session.write_tls(&mut stream.get_ref()) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let ready = future::or(async { Some(stream.writable().await) }, async {
                        async_io::Timer::after(idle).await;
                        None
                    })
                    .await;
                    match ready {
                        Some(r) => r?,
                        None => {
                            return Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "peer stopped reading responses",
                            ))
                        }
                    }
                }
                Err(e) => return Err(e),
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
