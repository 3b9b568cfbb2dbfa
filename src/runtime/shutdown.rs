//! Shutdown as a value: a [`ShutdownTrigger`] fires once, every [`Shutdown`] clone sees it.
//!
//! Servers take a `Shutdown` instead of listening for signals themselves, so the binary
//! (SIGTERM/SIGINT) and tests (a call) stop them the same way.

use event_listener::Event;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
struct Inner {
    fired: AtomicBool,
    event: Event,
}

/// Observes a shutdown request.
#[derive(Debug, Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

/// Requests shutdown.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    inner: Arc<Inner>,
}

/// A connected trigger/observer pair.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let inner = Arc::new(Inner::default());
    (
        ShutdownTrigger {
            inner: inner.clone(),
        },
        Shutdown { inner },
    )
}

/// A trigger/observer pair that also fires when `parent` does: a process that may be
/// stopped by a signal or by something of its own (a hand-over) watches the child.
pub fn linked(parent: &Shutdown) -> (ShutdownTrigger, Shutdown) {
    let (trigger, child) = channel();
    let (forward, parent) = (trigger.clone(), parent.clone());
    smol::spawn(async move {
        parent.wait().await;
        forward.trigger();
    })
    .detach();
    (trigger, child)
}

impl ShutdownTrigger {
    /// Fires the shutdown; later calls do nothing.
    pub fn trigger(&self) {
        if !self.inner.fired.swap(true, Ordering::SeqCst) {
            self.inner.event.notify(usize::MAX);
        }
    }

    /// A new observer of this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            inner: self.inner.clone(),
        }
    }
}

impl Shutdown {
    /// An observer that never fires (for servers that run until the process ends).
    pub fn never() -> Shutdown {
        channel().1
    }

    /// Whether shutdown has been requested.
    pub fn is_triggered(&self) -> bool {
        self.inner.fired.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown has been requested.
    pub async fn wait(&self) {
        loop {
            if self.is_triggered() {
                return;
            }
            let listener = self.inner.event.listen();
            if self.is_triggered() {
                return;
            }
            listener.await;
        }
    }

    /// Sleeps for `d`, or less if shutdown is requested meanwhile; `true` if it was.
    pub async fn sleep(&self, d: std::time::Duration) -> bool {
        futures_lite::future::or(
            async {
                async_io::Timer::after(d).await;
                false
            },
            async {
                self.wait().await;
                true
            },
        )
        .await
    }
}

/// Runs `tick` every `period` until `shutdown` fires (sweepers of leases and idle
/// connections). A shutdown during the wait still runs one last tick.
pub async fn every(period: std::time::Duration, shutdown: &Shutdown, mut tick: impl FnMut()) {
    while !shutdown.is_triggered() {
        shutdown.sleep(period).await;
        tick();
    }
}

/// Fires `trigger` on the first SIGTERM or SIGINT; a second one exits at once.
pub fn on_signals(trigger: ShutdownTrigger) -> std::io::Result<()> {
    use async_signal::{Signal, Signals};
    use futures_lite::StreamExt;
    let mut signals = Signals::new([Signal::Term, Signal::Int])?;
    std::thread::Builder::new()
        .name("dsf-signals".into())
        .spawn(move || {
            smol::block_on(async {
                if let Some(Ok(sig)) = signals.next().await {
                    tracing::info!(signal = ?sig, "shutdown requested; draining");
                    trigger.trigger();
                }
                if let Some(Ok(sig)) = signals.next().await {
                    tracing::warn!(signal = ?sig, "second signal; exiting without drain");
                    std::process::exit(130);
                }
            })
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_observers_see_the_trigger() {
        let (t, s) = channel();
        let s2 = t.subscribe();
        assert!(!s.is_triggered());
        let waiter = std::thread::spawn(move || smol::block_on(s2.wait()));
        t.trigger();
        t.trigger();
        waiter.join().unwrap();
        smol::block_on(s.wait());
        assert!(s.is_triggered());
    }
}
