//! Request deadlines that cost no reactor timer each.
//!
//! An `async-io` timer registers with the reactor and wakes it on every insert (a
//! write to its eventfd, and the reactor thread returning from `epoll_wait`), then
//! queues a removal when the request finishes first, which is nearly always. With a
//! timer per waiting request that was a system call and a wake-up per request
//! (BENCHMARKS.md, "Round 2"). Here a deadline is an entry in one ordered map, and
//! one thread sleeps until the earliest entry and wakes the futures whose deadline
//! passed. Every request of a router has the same timeout, so a new deadline is
//! almost never the earliest: registering is a lock and an insert, finishing a lock
//! and a remove, and the sleeping thread is only woken by a deadline earlier than
//! the one it sleeps towards.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;
use std::time::Instant;

/// A future ready at `when`.
pub fn at(when: Instant) -> Deadline {
    Deadline { when, id: None }
}

/// Ready once its instant has passed; see [`at`].
#[derive(Debug)]
pub struct Deadline {
    when: Instant,
    /// Its entry in the map, once it has waited.
    id: Option<u64>,
}

/// The waiting deadlines and the thread that fires them.
struct Queue {
    waiting: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
    /// When the firing thread wakes next on its own (`None`: only when woken).
    armed: Option<Instant>,
}

struct Shared {
    queue: Mutex<Queue>,
    firer: Thread,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let firer = std::thread::Builder::new()
            .name("dsf-deadlines".into())
            .spawn(fire)
            .expect("spawn the deadline thread")
            .thread()
            .clone();
        Shared {
            queue: Mutex::new(Queue {
                waiting: BTreeMap::new(),
                next_id: 0,
                armed: None,
            }),
            firer,
        }
    })
}

fn lock(s: &Shared) -> MutexGuard<'_, Queue> {
    s.queue.lock().unwrap_or_else(|e| e.into_inner())
}

/// The firing thread: wakes what is due, then sleeps until the next deadline or
/// until an earlier one is registered.
fn fire() {
    let mut due = Vec::new();
    loop {
        let s = shared();
        let mut q = lock(s);
        let now = Instant::now();
        while let Some(entry) = q.waiting.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        let next = q.waiting.first_key_value().map(|(k, _)| k.0);
        q.armed = next;
        drop(q);
        for w in due.drain(..) {
            w.wake();
        }
        match next {
            Some(t) => std::thread::park_timeout(t.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.when {
            this.forget();
            return Poll::Ready(());
        }
        let s = shared();
        let mut q = lock(s);
        if let Some(id) = this.id {
            if let Some(w) = q.waiting.get_mut(&(this.when, id)) {
                if !w.will_wake(cx.waker()) {
                    *w = cx.waker().clone();
                }
                return Poll::Pending;
            }
        }
        let id = q.next_id;
        q.next_id += 1;
        q.waiting.insert((this.when, id), cx.waker().clone());
        this.id = Some(id);
        if q.armed.is_none_or(|a| this.when < a) {
            q.armed = Some(this.when);
            drop(q);
            s.firer.unpark();
        }
        Poll::Pending
    }
}

impl Deadline {
    /// Removes its entry, if it has one.
    fn forget(&mut self) {
        if let Some(id) = self.id.take() {
            lock(shared()).waiting.remove(&(self.when, id));
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deadlines_fire_in_order_and_dropped_ones_never_do() {
        let start = Instant::now();
        let ms = move |n| start + Duration::from_millis(n);
        smol::block_on(async {
            // A later deadline first, then an earlier one that must wake the thread.
            let late = smol::spawn(async move {
                at(ms(120)).await;
                start.elapsed()
            });
            async_io::Timer::after(Duration::from_millis(10)).await;
            let early = smol::spawn(async move {
                at(ms(40)).await;
                start.elapsed()
            });
            // Dropped before its time: its entry is gone.
            let dropped = futures_lite::future::poll_once(at(ms(60))).await;
            assert!(dropped.is_none());
            let early = early.await;
            let late = late.await;
            assert!(early >= Duration::from_millis(40) && early < Duration::from_millis(100));
            assert!(late >= Duration::from_millis(120), "{late:?}");
        });
    }

    #[test]
    fn a_past_deadline_is_ready_at_once() {
        let past = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        assert!(
            futures_lite::future::block_on(futures_lite::future::poll_once(at(past))).is_some()
        );
    }
}
