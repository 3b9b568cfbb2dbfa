//! Membership shared with other balancers through Redis ([`RedisShared`]).
//!
//! With Redis, each balancer writes the leases it holds as expiring keys
//! (`dsf:lb:node:<id>`, JSON [`NodeRecord`], `PX = lease_ttl`, refreshed by every
//! heartbeat) and announces shape changes (join, drain, leave) on the channel
//! `dsf:lb:changes`. Every balancer re-reads all keys when an announcement arrives and
//! once per heartbeat interval (which also notices keys that expired), and feeds them
//! to [`Membership::set_remote`]. Since the ring is a pure function of the member set,
//! two balancers with the same members answer `lb.assign` for a key identically.
//!
//! Redis being down never stops a balancer: it keeps serving the leases it holds and
//! drops remote ones as they age past the TTL.
//!
//! Writes wait in [`Pending`], at most one per node: a newer write for a node replaces
//! the one still waiting (a renewal carries the latest record, a withdrawal beats a
//! renewal). While Redis cannot be reached the writer keeps them and reconnects with
//! capped backoff; once it can, one pipeline writes the current state of every node
//! that changed meanwhile. So an outage never leaves a queue of old records behind
//! it, whose replay would make other balancers see leases expire and come back.

use super::{Discovery, Membership, NodeRecord};
use crate::balancer::error::BalancerError;
use crate::runtime::Shutdown;
use futures_lite::{future, StreamExt};
use redis::aio::MultiplexedConnection;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Key prefix of lease records.
pub const KEY_PREFIX: &str = "dsf:lb:node:";
/// Channel on which shape changes are announced.
pub const CHANNEL: &str = "dsf:lb:changes";
/// First delay before trying Redis again; doubles up to the resync interval.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// At most one warning this often while writes fail.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// One write to Redis about one node.
#[derive(Debug, Clone, PartialEq)]
enum Write {
    /// Store a lease record, and announce it if its shape changed.
    Put { record: NodeRecord, announce: bool },
    /// Delete a lease record and announce it.
    Remove(String),
}

impl Write {
    fn node(&self) -> &str {
        match self {
            Write::Put { record, .. } => &record.node,
            Write::Remove(node) => node,
        }
    }

    /// What is left to do when `self` still waits and `newer` comes for the same node.
    fn then(self, newer: Write) -> Write {
        match (self, newer) {
            // The latest record wins; an announcement still owed is kept.
            (
                Write::Put { announce: a, .. },
                Write::Put {
                    record,
                    announce: b,
                },
            ) => Write::Put {
                record,
                announce: a || b,
            },
            // Back after a withdrawal that never reached Redis: announce it anyway.
            (Write::Remove(_), Write::Put { record, .. }) => Write::Put {
                record,
                announce: true,
            },
            (_, remove @ Write::Remove(_)) => remove,
        }
    }
}

/// Writes not yet in Redis: at most one per node, oldest node first.
#[derive(Debug, Default)]
struct Pending {
    /// Nodes with a write waiting, in the order their first one came.
    order: VecDeque<String>,
    /// The write waiting for each.
    writes: HashMap<String, Write>,
}

impl Pending {
    /// Adds `w`, folding it into the write already waiting for its node.
    fn push(&mut self, w: Write) {
        match self.writes.remove(w.node()) {
            Some(older) => {
                let merged = older.then(w);
                self.writes.insert(merged.node().to_owned(), merged);
            }
            None => {
                self.order.push_back(w.node().to_owned());
                self.writes.insert(w.node().to_owned(), w);
            }
        }
    }

    /// Puts back writes that failed, ahead of the rest, under any newer write that
    /// came for the same node meanwhile.
    fn restore(&mut self, failed: Vec<Write>) {
        for w in failed.into_iter().rev() {
            let node = w.node().to_owned();
            let w = match self.writes.remove(&node) {
                Some(newer) => {
                    self.order.retain(|n| n != &node);
                    w.then(newer)
                }
                None => w,
            };
            self.order.push_front(node.clone());
            self.writes.insert(node, w);
        }
    }

    /// Everything waiting, in order.
    fn take(&mut self) -> Vec<Write> {
        let mut writes = std::mem::take(&mut self.writes);
        self.order
            .drain(..)
            .filter_map(|n| writes.remove(&n))
            .collect()
    }

    fn len(&self) -> usize {
        self.writes.len()
    }
}

/// Membership shared through Redis. Writes are queued, so the membership lock is never
/// held across network I/O; [`RedisShared::run`] performs them and watches the others.
pub struct RedisShared {
    /// Writes waiting for the worker.
    pending: Mutex<Pending>,
    /// Rung when a write is added; the worker waits on it.
    bell: async_channel::Sender<()>,
    /// The worker's end of the bell.
    woken: async_channel::Receiver<()>,
    /// The Redis client (cheap handle; connections are made by the worker).
    client: redis::Client,
    /// Lease lifetime, used as the keys' expiry.
    ttl: Duration,
}

impl RedisShared {
    /// A handle for `url` (no connection is made yet).
    /// A `rediss://` server is verified against `tls_ca` (`cache.tls_ca`) when set,
    /// else against the system's roots.
    pub fn new(
        url: &str,
        ttl: Duration,
        tls_ca: &std::path::Path,
    ) -> Result<Arc<RedisShared>, BalancerError> {
        let client =
            crate::cache::redis::client(url, tls_ca).map_err(BalancerError::RedisSettings)?;
        let (bell, woken) = async_channel::bounded(1);
        Ok(Arc::new(RedisShared {
            pending: Mutex::default(),
            bell,
            woken,
            client,
            ttl,
        }))
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, w: Write) {
        self.pending().push(w);
        // Full means the worker has a wake-up coming already.
        let _ = self.bell.try_send(());
    }

    async fn connect(&self) -> Result<MultiplexedConnection, BalancerError> {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?)
    }

    /// Performs queued writes and keeps `membership`'s remote part in step with Redis,
    /// re-reading on every announcement and at least every `resync`. Until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        membership: Arc<Membership>,
        resync: Duration,
        shutdown: Shutdown,
    ) {
        let max_backoff = resync.max(FIRST_BACKOFF);
        let writer =
            crate::runtime::spawn_local(self.clone().write_loop(max_backoff, shutdown.clone()));
        self.watch_loop(membership, resync, shutdown).await;
        writer.await;
    }

    /// Writes what is pending, all of it in one pipeline, whenever there is some;
    /// while Redis fails, keeps it and tries again after a capped backoff.
    async fn write_loop(self: Arc<Self>, max_backoff: Duration, shutdown: Shutdown) {
        let mut conn: Option<MultiplexedConnection> = None;
        let mut backoff = FIRST_BACKOFF;
        let mut failures: u64 = 0;
        let mut last_warning: Option<Instant> = None;
        loop {
            if self.pending().len() == 0 {
                let woken = future::or(async { self.woken.recv().await.is_ok() }, async {
                    shutdown.wait().await;
                    false
                })
                .await;
                if !woken {
                    return;
                }
                continue;
            }
            let result = async {
                if conn.is_none() {
                    conn = Some(self.connect().await?);
                }
                let c = conn.as_mut().expect("connected above");
                let writes = self.pending().take();
                let r = self.apply(c, &writes).await;
                if r.is_err() {
                    self.pending().restore(writes);
                    conn = None;
                }
                r
            }
            .await;
            match result {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(failures, "shared membership: writing to redis again");
                    }
                    failures = 0;
                    last_warning = None;
                    backoff = FIRST_BACKOFF;
                }
                Err(e) => {
                    failures += 1;
                    if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                        last_warning = Some(Instant::now());
                        tracing::warn!(
                            error = %e,
                            failures,
                            pending = self.pending().len(),
                            "shared membership: cannot write to redis; keeping the latest record of each node"
                        );
                    }
                    if shutdown.sleep(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(max_backoff);
                }
            }
        }
    }

    async fn apply(
        &self,
        c: &mut MultiplexedConnection,
        writes: &[Write],
    ) -> Result<(), BalancerError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for w in writes {
            match w {
                Write::Put { record, announce } => {
                    let json = serde_json::to_string(record).expect("a record is always JSON");
                    pipe.cmd("SET")
                        .arg(format!("{KEY_PREFIX}{}", record.node))
                        .arg(json)
                        .arg("PX")
                        .arg(self.ttl.as_millis() as u64)
                        .ignore();
                    if *announce {
                        pipe.cmd("PUBLISH").arg(CHANNEL).arg(&record.node).ignore();
                    }
                }
                Write::Remove(node) => {
                    pipe.cmd("DEL")
                        .arg(format!("{KEY_PREFIX}{node}"))
                        .ignore()
                        .cmd("PUBLISH")
                        .arg(CHANNEL)
                        .arg(node)
                        .ignore();
                }
            }
        }
        pipe.query_async::<()>(c).await?;
        Ok(())
    }

    async fn watch_loop(&self, membership: Arc<Membership>, resync: Duration, shutdown: Shutdown) {
        let mut backoff = FIRST_BACKOFF;
        while !shutdown.is_triggered() {
            if let Err(e) = self.watch(&membership, resync, &shutdown).await {
                tracing::warn!(error = %e, "shared membership: watching redis failed; retrying");
                shutdown.sleep(backoff).await;
                backoff = (backoff * 2).min(resync.max(FIRST_BACKOFF));
            } else {
                return;
            }
        }
    }

    async fn watch(
        &self,
        membership: &Membership,
        resync: Duration,
        shutdown: &Shutdown,
    ) -> Result<(), BalancerError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        let mut data = self.connect().await?;
        let mut messages = pubsub.into_on_message();
        tracing::info!("shared membership: following redis");
        loop {
            membership.set_remote(read_all(&mut data).await?);
            enum Wake {
                Message,
                Tick,
                Stop,
                Lost,
            }
            let wake = future::or(
                future::or(
                    async {
                        match messages.next().await {
                            Some(_) => Wake::Message,
                            None => Wake::Lost,
                        }
                    },
                    async {
                        async_io::Timer::after(resync).await;
                        Wake::Tick
                    },
                ),
                async {
                    shutdown.wait().await;
                    Wake::Stop
                },
            )
            .await;
            match wake {
                Wake::Message | Wake::Tick => {}
                Wake::Stop => return Ok(()),
                Wake::Lost => {
                    return Err(BalancerError::Io(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "subscription closed",
                    )))
                }
            }
        }
    }
}

impl Discovery for RedisShared {
    fn announce(&self, record: &NodeRecord) {
        self.push(Write::Put {
            record: record.clone(),
            announce: true,
        });
    }

    fn renew(&self, record: &NodeRecord) {
        self.push(Write::Put {
            record: record.clone(),
            announce: false,
        });
    }

    fn withdraw(&self, node: &str) {
        self.push(Write::Remove(node.to_owned()));
    }
}

/// Every lease record in Redis (SCAN + MGET; records that fail to parse are skipped).
async fn read_all(c: &mut MultiplexedConnection) -> Result<Vec<NodeRecord>, BalancerError> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{KEY_PREFIX}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(c)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(c).await?;
    Ok(values
        .into_iter()
        .flatten()
        .filter_map(|v| match serde_json::from_str::<NodeRecord>(&v) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "shared membership: unreadable record skipped");
                None
            }
        })
        .collect())
}

#[cfg(test)]
mod tests;
