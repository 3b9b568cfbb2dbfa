//! Point reads that arrive together share one statement.
//!
//! Every authenticated request on an uncached node reads its session and then its
//! entry, each a one-row `SELECT`. Sent one statement each, the rate stayed flat
//! from 16 connections up: each statement costs a send, a wake-up of the MariaDB
//! thread that owns the connection, a reply and a wake-up back, and those per-statement
//! costs in the kernel and the server, not the lookups, set the rate (BENCHMARKS.md,
//! "Round 2"). Here the reads of one kind queue up, and at most `limit` *drains* per
//! kind run on the driver's thread: a drain takes every read queued (up to
//! [`MAX_KEYS`]) and answers them all from one `SELECT … WHERE key IN (…)`. A lone
//! read leaves at once, in a batch of one; under load the batches grow by themselves.
//!
//! Coherence is unchanged: a read's statement starts after the read was queued, so
//! it sees every write acknowledged before the read began, exactly as its own
//! statement would have. The key lists are padded to a power of two (repeating a
//! key), so each kind uses at most seven prepared statements.

use super::classify;
use super::runner::take;
use crate::store::{StoreError, StoreResult, StoreStats};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, FromRowError, Pool, Row};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Most reads answered by one statement.
pub(super) const MAX_KEYS: usize = 64;

/// One kind of point read: its statement and how a row names its key.
pub(super) struct PointRead<V> {
    /// What the read is, for errors and logs (`session get`).
    pub what: &'static str,
    /// The statement's text up to its key list: `… WHERE k IN (` is appended with `n`
    /// placeholders, then [`PointRead::tail`].
    pub head: &'static str,
    /// What follows the key list (`)` or `) AND expires_at > ?`).
    pub tail: &'static str,
    /// Parameters bound after the keys (a clock reading, say).
    pub extra: fn() -> Vec<mysql_async::Value>,
    /// The key and value of one returned row.
    pub row: fn(Row) -> Result<(String, V), FromRowError>,
}

/// A queued read.
struct Waiting<V> {
    key: String,
    deadline: Instant,
    reply: oneshot::Sender<StoreResult<Option<V>>>,
}

/// The queue of one kind of point read and its drains.
pub(super) struct Batcher<V> {
    read: PointRead<V>,
    state: Mutex<State<V>>,
    /// Most drains at once (each holds a pooled connection while it runs).
    limit: AtomicUsize,
}

struct State<V> {
    queue: VecDeque<Waiting<V>>,
    running: usize,
}

/// Drains per kind for a pool of `pool_max`: a quarter of it, so that the two kinds
/// of batched reads leave half the pool to everything else.
pub(super) fn drains_for(pool_max: usize) -> usize {
    (pool_max / 4).max(1)
}

impl<V: Clone + Send + 'static> Batcher<V> {
    /// A batcher of `read` running at most `limit` statements at once.
    pub fn new(read: PointRead<V>, limit: usize) -> Batcher<V> {
        Batcher {
            read,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                running: 0,
            }),
            limit: AtomicUsize::new(limit.max(1)),
        }
    }

    /// Changes the number of drains (a pool resize).
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit.max(1), Ordering::Relaxed);
    }

    /// Reads `key` in the next statement of its kind, answered within `timeout`
    /// (plus at most one statement already running). `spawn` starts a drain on the
    /// driver's runtime when fewer than the limit run.
    pub async fn get(
        self: &Arc<Self>,
        key: String,
        timeout: Duration,
        drain: impl FnOnce(Arc<Self>),
    ) -> StoreResult<Option<V>> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.queue.push_back(Waiting {
                key,
                deadline: Instant::now() + timeout,
                reply,
            });
            let start = s.running < self.limit.load(Ordering::Relaxed);
            if start {
                s.running += 1;
            }
            start
        };
        if start {
            drain(self.clone());
        }
        let what = self.read.what;
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Other(format!("{what}: batch dropped"))))
    }

    /// The next reads to send; none (and one drain fewer) when the queue is empty.
    fn take(&self) -> Vec<Waiting<V>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.queue.is_empty() {
            s.running -= 1;
            return Vec::new();
        }
        let n = s.queue.len().min(MAX_KEYS);
        s.queue.drain(..n).collect()
    }

    /// Answers queued reads until the queue is empty; runs on the driver's runtime.
    /// One pooled connection is held from the first statement to the last.
    pub async fn drain(
        self: Arc<Self>,
        pool: Arc<Pool>,
        acquire: Duration,
        stats: Arc<StoreStats>,
    ) {
        let what = self.read.what;
        let mut conn: Option<Conn> = None;
        loop {
            let batch = self.take();
            if batch.is_empty() {
                return;
            }
            let now = Instant::now();
            let (batch, late): (Vec<_>, Vec<_>) = batch.into_iter().partition(|w| w.deadline > now);
            for w in late {
                let _ = w.reply.send(Err(StoreError::Timeout(what)));
            }
            let Some(deadline) = batch.iter().map(|w| w.deadline).min() else {
                continue;
            };
            let keys = distinct(&batch);
            stats.batched_statements.fetch_add(1, Ordering::Relaxed);
            stats
                .batched_reads
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let held = conn.take();
            let (pool, me) = (&pool, &*self);
            let run = async move {
                let mut c = match held {
                    Some(c) => c,
                    None => take(pool, acquire, what).await?,
                };
                let found = me.select(&mut c, &keys).await?;
                Ok((found, c))
            };
            let found = match tokio::time::timeout_at(deadline, run).await {
                Ok(Ok((found, c))) => {
                    conn = Some(c);
                    Ok(found)
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Timeout(what)),
            };
            for w in batch {
                let r = match &found {
                    Ok(map) => Ok(map.get(&w.key).cloned()),
                    Err(e) => Err(e.clone()),
                };
                // A caller that left (its request's deadline) is skipped.
                let _ = w.reply.send(r);
            }
        }
    }

    /// One `SELECT` for `keys`, padded to a power of two.
    async fn select(&self, c: &mut Conn, keys: &[&str]) -> StoreResult<HashMap<String, V>> {
        let r = &self.read;
        let n = keys.len().next_power_of_two();
        let mut sql = String::with_capacity(r.head.len() + r.tail.len() + 2 * n);
        sql.push_str(r.head);
        for i in 0..n {
            sql.push_str(if i == 0 { "?" } else { ",?" });
        }
        sql.push_str(r.tail);
        let mut params: Vec<mysql_async::Value> = Vec::with_capacity(n + 1);
        params.extend((0..n).map(|i| keys[i.min(keys.len() - 1)].into()));
        params.extend((r.extra)());
        let rows: Vec<Row> = c.exec(sql, params).await.map_err(|e| classify(e, r.what))?;
        rows.into_iter()
            .map(|row| {
                (r.row)(row)
                    .map_err(|e| StoreError::Other(format!("{}: unexpected row: {e}", r.what)))
            })
            .collect()
    }
}

/// The distinct keys of `batch`, in order.
fn distinct<V>(batch: &[Waiting<V>]) -> Vec<&str> {
    let mut keys: Vec<&str> = Vec::with_capacity(batch.len());
    for w in batch {
        if !keys.contains(&w.key.as_str()) {
            keys.push(&w.key);
        }
    }
    keys
}
