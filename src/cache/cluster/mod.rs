//! A Redis Cluster as the cache (`cache.cluster = true`, `cache.redis` = seed nodes):
//! the guarded-fill and fence protocol of [`super::redis`] on the slot that owns each
//! entry, with every fence confirmed by a replica before the write it guards starts.
//!
//! # Routing
//!
//! The four Redis keys of an entry share the hash tag `{K}` ([`super::script`]), so
//! each script touches one slot and the cluster client routes it to that slot's
//! master; `MOVED`, `ASK` and `TRYAGAIN` (a slot being resharded) are followed by the
//! client within `cache.op_timeout`. Reads go to masters only: a replica may lag, and
//! a lagging replica could hand out a value a fence already deleted.
//!
//! # Replication
//!
//! A master answers before its replicas have the write. A fence applied by a master
//! that then dies, before its replica got it, is gone after the failover: another node
//! could fill the pre-write value while the write commits, and if the release were
//! lost too, serve it until `cache.ttl`. So a fence (and a release or invalidation) is
//! one pipeline `EVAL …; WAIT n t` to the master of the entry's slot on one
//! connection: `WAIT` answers how many replicas hold everything that connection wrote,
//! the fence included. A fence that fewer than `cache.wait_replicas` replicas
//! confirmed counts as not set: the write is not attempted and the client gets
//! `unavailable`. Fences and invalidations use connections of their own (`WAIT`
//! blocks the connection it runs on), so reads never queue behind them.
//!
//! # Outages
//!
//! A read or fill that cannot reach the master of its slot (refused, dropped, no
//! answer within `cache.op_timeout`, cluster down) marks that slot down for
//! [`super::redis::RETRY_AFTER`]: reads of it go to the store at once, fences of it fail at once.
//! The other slots are untouched, so a master failing over cools only its own slots.
//! An invalidation that could not be delivered is kept and delivered before this node
//! uses that entry again.

mod health;
mod ready;

use super::redis::redact;
use super::script::{
    cache_slot, fill, generation_key, lock_key, value_key, write_keys_and_args, FENCE_LUA,
    INVALIDATE_LUA, RELEASE_LUA,
};
use super::{Cache, CacheError, CacheStats, Fence, Guard, Lookup};
use crate::runtime::BoxFuture;
use async_lock::OnceCell;
use health::SlotHealth;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{RedisError, RedisResult, Value};
use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Retries of one command inside the client (redirections, `TRYAGAIN`, reconnects);
/// `cache.op_timeout` bounds them all.
const CLIENT_RETRIES: u32 = 8;

/// Connections for fences, releases and invalidations. Each write waits on its
/// connection for a replica's confirmation, and the writes queued behind it on that
/// connection wait too; several connections let concurrent writes wait side by side.
const WRITE_LANES: usize = 4;

/// At most this many other undelivered invalidations ride along with one delivery.
const PENDING_BATCH: usize = 16;

/// A Redis Cluster.
pub struct RedisCluster {
    /// The seed URLs without credentials, for logs.
    label: String,
    /// Builds connections from the seeds.
    client: ClusterClient,
    /// The seed URLs and `cache.tls_ca`, for the readiness check's own connections.
    seeds: (Vec<String>, std::path::PathBuf),
    /// Reads and fills (connected on first use, so a node starts while the cluster is
    /// down).
    reads: OnceCell<ClusterConnection>,
    /// Fences, releases and invalidations, in turn: `WAIT` blocks the connection it
    /// runs on, so concurrent writes spread over [`WRITE_LANES`] connections.
    writes: Box<[OnceCell<ClusterConnection>]>,
    /// The write lane the next write uses.
    next_write: AtomicUsize,
    /// Deadline of one command (`cache.op_timeout`).
    op_timeout: Duration,
    /// Replicas that must confirm a fence (`cache.wait_replicas`).
    wait_replicas: u32,
    /// Which slots recently failed.
    health: SlotHealth,
    /// Undelivered invalidations: cache keys.
    pending: Mutex<HashSet<String>>,
    /// Fast check for `pending` being non-empty.
    has_pending: AtomicBool,
    /// Hits, misses, refused fills, errors.
    stats: CacheStats,
}

/// Which connection a call uses.
#[derive(Clone, Copy)]
enum Lane {
    Reads,
    Writes,
}

impl RedisCluster {
    /// A cluster reached through the seed nodes `urls`; connects lazily. `rediss://`
    /// seeds are verified against `tls_ca` when one is given.
    pub fn open(
        urls: &[String],
        op_timeout: Duration,
        tls_ca: &Path,
        wait_replicas: u32,
    ) -> Result<RedisCluster, CacheError> {
        if urls.is_empty() {
            return Err(CacheError::Other("no Redis Cluster seed given".into()));
        }
        let label = match urls.len() {
            1 => format!("redis cluster {}", redact(&urls[0])),
            n => format!("redis cluster {} (+{} seeds)", redact(&urls[0]), n - 1),
        };
        let mut builder = ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(op_timeout)
            .response_timeout(op_timeout)
            .retries(CLIENT_RETRIES)
            .min_retry_wait(5)
            .max_retry_wait(100)
            .retry_wait_formula(10, 2);
        if urls.iter().any(|u| u.starts_with("rediss://")) && !tls_ca.as_os_str().is_empty() {
            let root = std::fs::read(tls_ca).map_err(|e| {
                CacheError::Other(format!(
                    "{label}: cache.tls_ca: cannot read {}: {e}",
                    tls_ca.display()
                ))
            })?;
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root),
            });
        }
        let client = builder
            .build()
            .map_err(|e| CacheError::Other(format!("{label}: {e}")))?;
        Ok(RedisCluster {
            label,
            client,
            seeds: (urls.to_vec(), tls_ca.to_owned()),
            reads: OnceCell::new(),
            writes: (0..WRITE_LANES).map(|_| OnceCell::new()).collect(),
            next_write: AtomicUsize::new(0),
            op_timeout,
            wait_replicas,
            health: SlotHealth::new(),
            pending: Mutex::new(HashSet::new()),
            has_pending: AtomicBool::new(false),
            stats: CacheStats::default(),
        })
    }

    /// The seeds without credentials.
    pub fn label(&self) -> &str {
        &self.label
    }

    async fn connection(&self, lane: Lane) -> RedisResult<ClusterConnection> {
        let cell = match lane {
            Lane::Reads => &self.reads,
            Lane::Writes => {
                &self.writes[self.next_write.fetch_add(1, Ordering::Relaxed) % WRITE_LANES]
            }
        };
        cell.get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }

    /// Runs one call for `slot` on `lane`, bounded by `op_timeout`. An outage marks
    /// the slot down when `mark` is set (reads: the next ones go straight to the
    /// store).
    async fn call<T, Fut>(
        &self,
        slot: u16,
        lane: Lane,
        mark: bool,
        f: impl FnOnce(ClusterConnection) -> Fut,
    ) -> Result<T, CacheError>
    where
        Fut: Future<Output = RedisResult<T>>,
    {
        let deadline = crate::runtime::deadline::at(std::time::Instant::now() + self.op_timeout);
        let r = futures_lite::future::or(
            async {
                match self.connection(lane).await {
                    Ok(conn) => f(conn).await.map(Some),
                    Err(e) => Err(e),
                }
            },
            async move {
                deadline.await;
                Ok::<_, RedisError>(None)
            },
        )
        .await;
        match r {
            Ok(Some(v)) => {
                self.health.succeeded(&self.label);
                Ok(v)
            }
            Err(e) if !is_outage(&e) => Err(CacheError::Other(format!(
                "{} (slot {slot}): {e}",
                self.label
            ))),
            Err(e) => Err(self.health.failed(&self.label, slot, mark, &e.to_string())),
            Ok(None) => Err(self.health.failed(&self.label, slot, mark, "timed out")),
        }
    }

    /// Runs `lua` (fence, release or invalidation) on `key`'s four keys with a fresh
    /// generation and its TTL, then `extra` arguments, followed on the same connection
    /// by `WAIT` for the configured replicas. Fails unless enough replicas confirmed.
    async fn replicated(&self, key: &str, lua: &str, extra: &[&str]) -> Result<(), CacheError> {
        let slot = cache_slot(key);
        let (keys, args) = write_keys_and_args(key);
        let mut pipe = redis::pipe();
        pipe.cmd("EVAL")
            .arg(lua)
            .arg(keys.len())
            .arg(&keys[..])
            .arg(&args[..]);
        for a in extra {
            pipe.arg(*a);
        }
        let count = if self.wait_replicas == 0 {
            1
        } else {
            // Half the deadline, so that a missing replica is told apart from an
            // unreachable master (which the whole deadline catches).
            let wait_ms = (self.op_timeout.as_millis() as u64 / 2).max(1);
            pipe.cmd("WAIT").arg(self.wait_replicas).arg(wait_ms);
            2
        };
        let route = SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
        let values = self
            .call(slot, Lane::Writes, false, |mut c| async move {
                c.route_pipeline(pipe, 0, count, route).await
            })
            .await?;
        let mut values = values.into_iter();
        if let Some(v) = values.next() {
            v.extract_error()
                .map_err(|e| CacheError::Other(format!("{} (slot {slot}): {e}", self.label)))?;
        }
        if self.wait_replicas > 0 {
            let acked = match values.next() {
                Some(Value::Int(n)) => n,
                other => {
                    return Err(CacheError::Other(format!(
                        "{} (slot {slot}): unexpected answer to WAIT: {other:?}",
                        self.label
                    )))
                }
            };
            if acked < i64::from(self.wait_replicas) {
                return Err(CacheError::Unavailable(format!(
                    "{} (slot {slot}): {acked} of {} replicas confirmed the write of key {key}",
                    self.label, self.wait_replicas
                )));
            }
        }
        Ok(())
    }

    /// An invalidation (`lua` [`INVALIDATE_LUA`] or [`RELEASE_LUA`]); kept for later
    /// delivery when it did not arrive. Attempted even while the slot is marked down:
    /// its master may be back already, holding a value filled before the write.
    async fn invalidate_with(
        &self,
        key: &str,
        lua: &str,
        extra: &[&str],
    ) -> Result<(), CacheError> {
        let r = self.replicated(key, lua, extra).await;
        if r.is_err() {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.insert(key.to_owned());
            self.has_pending.store(true, Ordering::Release);
        }
        r
    }

    /// Delivers a kept invalidation of `key` before `key` is used again (an error if
    /// that fails), and a few others along with it.
    async fn deliver_pending(&self, key: &str) -> Result<(), CacheError> {
        if !self.has_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        let (mine, others): (bool, Vec<String>) = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let mine = p.remove(key);
            let others: Vec<String> = p
                .iter()
                .filter(|k| !self.health.is_down(cache_slot(k)))
                .take(PENDING_BATCH)
                .cloned()
                .collect();
            for k in &others {
                p.remove(k);
            }
            self.has_pending.store(!p.is_empty(), Ordering::Release);
            (mine, others)
        };
        let mut delivered = 0;
        for k in &others {
            if self.invalidate_with(k, INVALIDATE_LUA, &[]).await.is_ok() {
                delivered += 1;
            }
        }
        if mine {
            self.invalidate_with(key, INVALIDATE_LUA, &[]).await?;
            delivered += 1;
        }
        if delivered > 0 {
            tracing::info!(redis = %self.label, keys = delivered, "delivered pending invalidations");
        }
        Ok(())
    }

    fn fail_fast(&self, slot: u16) -> Result<(), CacheError> {
        if self.health.is_down(slot) {
            return Err(CacheError::Unavailable(format!(
                "{} (slot {slot}) recently failed",
                self.label
            )));
        }
        Ok(())
    }

    async fn get_guarded(
        &self,
        key: &str,
    ) -> Result<(Option<String>, Option<String>, bool), CacheError> {
        let slot = cache_slot(key);
        self.fail_fast(slot)?;
        self.deliver_pending(key).await?;
        let (v, g, w) = (value_key(key), generation_key(key), lock_key(key));
        let (value, generation, lock): (Option<String>, Option<String>, Option<String>) = self
            .call(slot, Lane::Reads, true, |mut c| async move {
                redis::cmd("MGET")
                    .arg(&v)
                    .arg(&g)
                    .arg(&w)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok((value, generation, lock.is_some()))
    }

    async fn fill_guarded(
        &self,
        key: &str,
        seen: Option<&str>,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let slot = cache_slot(key);
        self.fail_fast(slot)?;
        self.deliver_pending(key).await?;
        self.call(slot, Lane::Reads, true, |mut c| async move {
            fill(&mut c, key, seen, value, ttl).await
        })
        .await
    }

    async fn fence_key(&self, key: &str, token: &str, hold: Duration) -> Result<(), CacheError> {
        self.fail_fast(cache_slot(key))?;
        self.deliver_pending(key).await?;
        let hold_ms = (hold.as_millis().max(1) as u64).to_string();
        self.replicated(key, FENCE_LUA, &[hold_ms.as_str(), token])
            .await
    }
}

impl Cache for RedisCluster {
    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.check_ready())
    }

    fn kind(&self) -> &'static str {
        "redis-cluster"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Lookup, CacheError>> {
        Box::pin(self.stats.guarded_get(self.get_guarded(key)))
    }

    fn fill<'a>(
        &'a self,
        key: &'a str,
        guard: Guard,
        value: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, CacheError>> {
        Box::pin(self.stats.guarded_fill(guard, move |seen| async move {
            self.fill_guarded(key, seen.as_deref(), value, ttl).await
        }))
    }

    fn invalidate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async move {
            self.stats
                .count(self.invalidate_with(key, INVALIDATE_LUA, &[]).await)
        })
    }

    fn fence<'a>(
        &'a self,
        key: &'a str,
        hold: Duration,
    ) -> BoxFuture<'a, Result<Fence, CacheError>> {
        Box::pin(async move {
            let fence = Fence::random();
            self.stats
                .count(self.fence_key(key, fence.token(), hold).await)?;
            Ok(fence)
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        fence: &'a Fence,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async move {
            self.stats.count(
                self.invalidate_with(key, RELEASE_LUA, &[fence.token()])
                    .await,
            )
        })
    }

    fn stats(&self) -> &CacheStats {
        &self.stats
    }
}

/// Whether an error means the slot's master cannot be reached right now (rather than
/// a bad command).
fn is_outage(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(e.kind(), redis::ErrorKind::ClusterConnectionNotFound)
}
