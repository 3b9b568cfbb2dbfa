//! Per-connection state in a `sharded-slab`, so any task can find a connection by id,
//! read its counters or push a frame to it, and an admin view can list them.

pub use super::mailbox::{Mailbox, Outbound};
use crate::tls::PeerIdentity;
use sharded_slab::Slab;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the registry knows about one open connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// When it was accepted, in seconds since the registry's epoch (4 bytes, not 16:
    /// every idle connection carries this struct).
    pub started_s: u32,
    /// Requests received.
    pub requests: AtomicU64,
    /// Bytes read.
    pub bytes_in: AtomicU64,
    /// Bytes written.
    pub bytes_out: AtomicU64,
    /// Requests currently being handled.
    pub inflight: AtomicU32,
    /// Milliseconds since the registry's epoch of the last complete frame or write,
    /// wrapping; the idle sweeper compares it against the idle timeout.
    pub last_active_ms: AtomicU32,
    /// The connection task's mailbox.
    pub tx: Arc<Mailbox>,
    /// The verified client certificate's names (TLS listeners that asked for one);
    /// boxed so that plain connections pay one pointer.
    pub identity: Option<Box<PeerIdentity>>,
}

/// A point-in-time copy of a connection's state (admin views, tests).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnSnapshot {
    /// Registry id.
    pub id: u64,
    /// Peer address.
    pub peer: SocketAddr,
    /// Listener name.
    pub listener: &'static str,
    /// Seconds since accept.
    pub age_s: f64,
    /// Requests received.
    pub requests: u64,
    /// Requests in flight.
    pub inflight: u32,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
}

/// The connection table of one server.
pub struct Registry {
    /// Connection state, addressed by slab key.
    slab: Slab<ConnInfo>,
    /// Live keys, for listing (the slab cannot be iterated through a shared reference).
    keys: Mutex<HashSet<usize>>,
    /// Origin of `last_active_ms` and `started_s`.
    epoch: Instant,
    /// Which listener this registry belongs to ("node", "proxy", …).
    listener: &'static str,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            slab: Slab::new(),
            keys: Mutex::new(HashSet::new()),
            epoch: Instant::now(),
            listener: "",
        }
    }
}

impl Registry {
    /// An empty registry for the listener named `listener`.
    pub fn new(listener: &'static str) -> Self {
        Registry {
            listener,
            ..Self::default()
        }
    }

    /// Milliseconds since the registry was created, wrapping (for `last_active_ms`).
    pub fn now_ms(&self) -> u32 {
        self.epoch.elapsed().as_millis() as u32
    }

    /// Adds a connection; `None` if the slab is full.
    pub fn insert(&self, peer: SocketAddr, tx: Arc<Mailbox>) -> Option<u64> {
        self.insert_with_identity(peer, tx, None, usize::MAX)
    }

    /// Adds a connection whose client presented a certificate; `None` if the table is
    /// full or already holds `max` connections. The count and the insert are one step
    /// under the lock, so loops accepting at the same time cannot pass `max` together.
    pub fn insert_with_identity(
        &self,
        peer: SocketAddr,
        tx: Arc<Mailbox>,
        identity: Option<PeerIdentity>,
        max: usize,
    ) -> Option<u64> {
        let mut keys = self.keys.lock().expect("registry lock");
        if keys.len() >= max {
            return None;
        }
        let key = self.slab.insert(ConnInfo {
            peer,
            started_s: self.epoch.elapsed().as_secs() as u32,
            requests: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            inflight: AtomicU32::new(0),
            last_active_ms: AtomicU32::new(self.now_ms()),
            tx,
            identity: identity.map(Box::new),
        })?;
        keys.insert(key);
        Some(key as u64)
    }

    /// Removes a connection.
    pub fn remove(&self, id: u64) {
        self.keys
            .lock()
            .expect("registry lock")
            .remove(&(id as usize));
        self.slab.remove(id as usize);
    }

    /// Runs `f` on a connection's state, if it is still open.
    pub fn with<T>(&self, id: u64, f: impl FnOnce(&ConnInfo) -> T) -> Option<T> {
        self.slab.get(id as usize).map(|e| f(&e))
    }

    /// The names of a connection's client certificate, if it presented one.
    pub fn identity(&self, id: u64) -> Option<PeerIdentity> {
        self.with(id, |c| c.identity.as_deref().cloned()).flatten()
    }

    /// Pushes a message to a connection; false if it is gone.
    pub fn send(&self, id: u64, msg: Outbound) -> bool {
        // Clone the sender out of the entry: a slab guard must not be held across await.
        match self.with(id, |c| c.tx.clone()) {
            Some(tx) => tx.push(msg),
            None => false,
        }
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.keys.lock().expect("registry lock").len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids of open connections.
    pub fn ids(&self) -> Vec<u64> {
        let keys = self.keys.lock().expect("registry lock");
        keys.iter().map(|k| *k as u64).collect()
    }

    /// Snapshots of every open connection.
    pub fn list(&self) -> Vec<ConnSnapshot> {
        self.ids()
            .into_iter()
            .filter_map(|id| {
                self.with(id, |c| ConnSnapshot {
                    id,
                    peer: c.peer,
                    listener: self.listener,
                    age_s: self.epoch.elapsed().as_secs_f64() - f64::from(c.started_s),
                    requests: c.requests.load(Ordering::Relaxed),
                    inflight: c.inflight.load(Ordering::Relaxed),
                    bytes_in: c.bytes_in.load(Ordering::Relaxed),
                    bytes_out: c.bytes_out.load(Ordering::Relaxed),
                })
            })
            .collect()
    }

    /// Tells every connection idle for longer than `idle` (and with nothing in flight)
    /// to close; returns how many were told.
    pub fn close_idle(&self, idle: Duration) -> usize {
        let now = self.now_ms();
        let limit = idle.as_millis().min(u128::from(u32::MAX / 2)) as u32;
        let mut closed = 0;
        for id in self.ids() {
            let stale = self.with(id, |c| {
                c.inflight.load(Ordering::Relaxed) == 0
                    && now.wrapping_sub(c.last_active_ms.load(Ordering::Relaxed)) > limit
            });
            if stale == Some(true) && self.send(id, Outbound::Close("idle timeout")) {
                closed += 1;
            }
        }
        closed
    }

    /// Tells every connection to close now.
    pub fn close_all(&self, reason: &'static str) {
        for id in self.ids() {
            self.send(id, Outbound::Close(reason));
        }
    }

    /// Tells every connection to send `goaway` and keep answering for the grace.
    pub fn goaway_all(&self) {
        for id in self.ids() {
            self.send(id, Outbound::GoAway);
        }
    }

    /// Tells every connection to finish what is in flight and close.
    pub fn drain_all(&self) {
        for id in self.ids() {
            self.send(id, Outbound::Drain);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_push_remove() {
        let reg = Registry::new("node");
        let tx = Arc::new(Mailbox::new());
        let rx = tx.clone();
        let id = reg.insert("127.0.0.1:9".parse().unwrap(), tx).unwrap();
        assert_eq!(reg.len(), 1);
        assert!(reg.send(id, Outbound::Push(vec![1])));
        assert!(matches!(rx.try_pop(), Some(Outbound::Push(v)) if v == [1]));
        assert_eq!(reg.list()[0].listener, "node");
        reg.remove(id);
        assert!(reg.is_empty());
        assert!(!reg.send(id, Outbound::Close("x")));
    }

    #[test]
    fn idle_sweep_spares_busy_connections() {
        let reg = Registry::new("node");
        let (tx1, tx2) = (Arc::new(Mailbox::new()), Arc::new(Mailbox::new()));
        let (rx1, rx2) = (tx1.clone(), tx2.clone());
        let a = reg.insert("127.0.0.1:1".parse().unwrap(), tx1).unwrap();
        let b = reg.insert("127.0.0.1:2".parse().unwrap(), tx2).unwrap();
        reg.with(b, |c| c.inflight.store(1, Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(reg.close_idle(Duration::from_millis(5)), 1);
        assert!(matches!(rx1.try_pop(), Some(Outbound::Close(_))));
        assert!(rx2.try_pop().is_none());
        let _ = a;
    }
}
