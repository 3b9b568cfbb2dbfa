//! A connection's mailbox: a small multi-producer, single-consumer queue.
//!
//! It replaces a general-purpose channel because it is part of every idle connection's
//! footprint: a mutex-guarded `VecDeque` and one waker slot cost a few dozen bytes and
//! no allocation while the connection waits, where an unbounded channel with
//! cache-padded cursors and a boxed listener per wait costs several hundred.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// A message for a connection's task.
#[derive(Debug)]
pub enum Outbound {
    /// Encoded frame(s) answering a request that was in flight.
    Response(Vec<u8>),
    /// Encoded frame(s) the server pushes on its own.
    Push(Vec<u8>),
    /// Send `goaway` (PROTOCOL §7) and keep answering until `Drain` (shutdown).
    GoAway,
    /// Stop reading new requests, answer those in flight, then close (shutdown).
    Drain,
    /// Close now (idle timeout, drain deadline, admin).
    Close(&'static str),
}

#[derive(Debug, Default)]
struct Inner {
    /// Pending messages.
    queue: VecDeque<Outbound>,
    /// False once the connection has closed: pushes are refused.
    closed: bool,
    /// The connection task, when it waits.
    waker: Option<Waker>,
}

/// Queue + wake-up for one connection. Only the connection task receives.
#[derive(Debug, Default)]
pub struct Mailbox {
    inner: Mutex<Inner>,
}

impl Mailbox {
    /// An open, empty mailbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a message and wakes the receiver; false if the connection is gone.
    pub fn push(&self, msg: Outbound) -> bool {
        let waker = {
            let mut inner = self.inner.lock().expect("mailbox lock");
            if inner.closed {
                return false;
            }
            inner.queue.push_back(msg);
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Takes one message without waiting.
    pub fn try_pop(&self) -> Option<Outbound> {
        self.inner.lock().expect("mailbox lock").queue.pop_front()
    }

    /// Takes one message, or registers `cx`'s waker to be woken by the next push.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Outbound> {
        let mut inner = self.inner.lock().expect("mailbox lock");
        if let Some(m) = inner.queue.pop_front() {
            return Poll::Ready(m);
        }
        match &mut inner.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Waits for and takes one message.
    pub async fn recv(&self) -> Outbound {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Refuses further messages and drops queued ones (the connection has closed).
    pub fn close(&self) {
        let mut inner = self.inner.lock().expect("mailbox lock");
        inner.closed = true;
        inner.queue.clear();
        inner.waker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_recv_close() {
        let m = std::sync::Arc::new(Mailbox::new());
        let m2 = m.clone();
        let t = std::thread::spawn(move || smol::block_on(m2.recv()));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(m.push(Outbound::Push(vec![7])));
        assert!(matches!(t.join().unwrap(), Outbound::Push(v) if v == [7]));
        m.close();
        assert!(!m.push(Outbound::Drain));
        assert!(m.try_pop().is_none());
    }
}
