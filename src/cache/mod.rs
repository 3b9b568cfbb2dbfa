//! The cache layer between nodes and the store: Redis (one instance or several on the
//! consistent-hash ring), a Redis Cluster, or an in-process cache, behind one [`Cache`]
//! trait.
//!
//! The cache never decides what is true; the store does. Reads go through
//! [`aside::CacheAside`] (cache-aside with single-flight), writes invalidate after the
//! store has committed. What makes that safe against the classic race — a slow reader
//! putting back a value read before a write, after that write invalidated it — is the
//! [`Guard`] a miss hands out: a fill is only kept if no invalidation of the key
//! happened since the guard was taken, which was *before* the store read. The backends
//! explain how they keep that promise ([`redis`], [`local`]). With Redis, a write also
//! *fences* its key before it touches the store ([`Cache::fence`]), so that a writer
//! cut off from Redis after the fence cannot leave an older value servable anywhere.

pub mod aside;
pub mod cluster;
pub mod local;
pub mod mget;
pub mod outage;
pub mod per_loop;
pub mod redis;
pub mod script;
pub mod sharded;
pub mod write;

use crate::runtime::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use thiserror::Error;

/// Why a cache operation failed. Callers fall back to the store; clients never see it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CacheError {
    /// The cache cannot be reached (down, timed out, or skipped while recently down).
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// The cache answered something unexpected.
    #[error("cache: {0}")]
    Other(String),
}

/// The result of a cache read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The cached value.
    Hit(String),
    /// Not cached; pass the guard to [`Cache::fill`] after reading the store.
    Miss(Guard),
}

/// What a miss saw of the key's invalidation state, taken before the store read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Guard(pub(crate) GuardState);

/// Backend-specific guard contents.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum GuardState {
    /// The in-process cache's generation.
    Local(u64),
    /// The Redis generation key's value (`None`: absent), and whether a write held
    /// the key's lock (then the miss must not fill).
    Redis(Option<String>, bool),
}

/// One write's hold on a fenced key: a random token that only this write's release
/// removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence(pub(crate) String);

impl Fence {
    /// A fresh random token.
    pub fn random() -> Fence {
        use rand::RngCore;
        let mut b = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut b);
        Fence(hex::encode(b))
    }

    /// The token.
    pub fn token(&self) -> &str {
        &self.0
    }
}

/// Added to the computed hold of a fence, for the difference between the node's and
/// the Redis server's clock rates and scheduling delays.
pub const HOLD_MARGIN: Duration = Duration::from_secs(1);

/// The deadlines a fenced write is bounded by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteDeadlines {
    /// `store.query_timeout`: the longest a store call is waited for.
    pub store: Duration,
    /// `cache.op_timeout`: the longest a cache command (the fence too) is waited for.
    pub cache: Duration,
}

impl Default for WriteDeadlines {
    fn default() -> Self {
        WriteDeadlines {
            store: Duration::from_secs(3),
            cache: Duration::from_millis(250),
        }
    }
}

impl WriteDeadlines {
    /// How long a fence must keep fills out: from the moment Redis applies it, the
    /// fence's answer may take up to `cache`; the store write then runs up to `store`
    /// on this node's clock, and a write that timed out here may go on in the database
    /// for up to `store` again (the same bound the delayed re-invalidation assumes);
    /// plus [`HOLD_MARGIN`]. With the defaults: 2 × 3 s + 0.25 s + 1 s = 7.25 s.
    pub fn hold(&self) -> Duration {
        self.store * 2 + self.cache + HOLD_MARGIN
    }
}

/// Counters every cache keeps (for tests, logs and metrics).
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Reads answered from the cache.
    pub hits: AtomicU64,
    /// Reads that found nothing.
    pub misses: AtomicU64,
    /// Fills dropped because the key was invalidated since the guard was taken.
    pub stale_fills: AtomicU64,
    /// Operations that failed or were skipped because the cache was down.
    pub errors: AtomicU64,
}

impl CacheStats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `r` in `errors` when it failed, and passes it on.
    pub(crate) fn count<T>(&self, r: Result<T, CacheError>) -> Result<T, CacheError> {
        if r.is_err() {
            CacheStats::bump(&self.errors);
        }
        r
    }

    /// Answers a Redis read from its guarded `read` (value, generation, locked),
    /// counted as a hit, a miss or an error.
    pub(crate) async fn guarded_get(
        &self,
        read: impl std::future::Future<
            Output = Result<(Option<String>, Option<String>, bool), CacheError>,
        >,
    ) -> Result<Lookup, CacheError> {
        let (value, generation, locked) = self.count(read.await)?;
        Ok(match value {
            Some(v) => {
                CacheStats::bump(&self.hits);
                Lookup::Hit(v)
            }
            None => {
                CacheStats::bump(&self.misses);
                Lookup::Miss(Guard(GuardState::Redis(generation, locked)))
            }
        })
    }

    /// Runs a Redis miss's `fill` with the generation its `guard` saw, and counts a
    /// refusal as a stale fill and a failure as an error. A write held the key when
    /// the miss was seen: its store read may be older than that write, so nothing is
    /// sent and the fill is not kept.
    pub(crate) async fn guarded_fill<Fut>(
        &self,
        guard: Guard,
        fill: impl FnOnce(Option<String>) -> Fut,
    ) -> Result<bool, CacheError>
    where
        Fut: std::future::Future<Output = Result<bool, CacheError>>,
    {
        let GuardState::Redis(seen, false) = guard.0 else {
            CacheStats::bump(&self.stale_fills);
            return Ok(false);
        };
        let stored = self.count(fill(seen).await)?;
        if !stored {
            CacheStats::bump(&self.stale_fills);
        }
        Ok(stored)
    }
}

/// A cache of string values under string keys, with guarded fills.
pub trait Cache: Send + Sync + 'static {
    /// Which backend (`"redis"`, `"redis-cluster"`, `"local"`), for logs.
    fn kind(&self) -> &'static str;

    /// Reads `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Lookup, CacheError>>;

    /// Whether the cache can serve, for `/readyz`; `Err` is the text the probe shows.
    /// By default one read, which reaches every server of a one-server cache (its
    /// detail, host names included, goes to the log only); a cache spread over several
    /// servers checks them all.
    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.get("dsf:readyz").await.map(drop).map_err(|e| {
                tracing::warn!(error = %e, "readiness: cache check failed");
                format!("{} cache unreachable", self.kind())
            })
        })
    }

    /// Stores `value` for `ttl` unless `key` was invalidated since `guard` was taken.
    /// Returns whether it was stored.
    fn fill<'a>(
        &'a self,
        key: &'a str,
        guard: Guard,
        value: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, CacheError>>;

    /// Drops `key` and makes every outstanding guard for it stale. Call after the
    /// store commits. A backend that cannot reach its server keeps the invalidation
    /// and applies it before it serves anything again.
    fn invalidate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), CacheError>>;

    /// Fences `key` before a store write that will change it: drops the value, makes
    /// every outstanding guard stale and refuses fills for at least `hold` or until
    /// [`Cache::release`] with the returned fence. An error means the write must not
    /// be attempted. A cache that is one process (or one host) needs no fence: its
    /// invalidation after the write cannot be lost on the way, so the default does
    /// nothing.
    fn fence<'a>(
        &'a self,
        key: &'a str,
        hold: Duration,
    ) -> BoxFuture<'a, Result<Fence, CacheError>> {
        let _ = (key, hold);
        Box::pin(async { Ok(Fence(String::new())) })
    }

    /// Ends a fenced write that is no longer running: invalidates `key` as
    /// [`Cache::invalidate`] does and lifts `fence`. If this fails the fence stays
    /// until its hold ran out.
    fn release<'a>(
        &'a self,
        key: &'a str,
        fence: &'a Fence,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        let _ = fence;
        self.invalidate(key)
    }

    /// The cache's counters.
    fn stats(&self) -> &CacheStats;
}
