//! One Redis server: a self-reconnecting multiplexed connection, health tracking and
//! the commands of the guarded cache protocol.
//!
//! # Guarded fills and fenced writes
//!
//! The keys and scripts are in [`super::script`]; docs/stores.md gives the whole
//! argument. In short:
//!
//! - A reader `MGET`s value, generation and write lock (one round trip). On a miss it
//!   keeps the generation it saw, reads the store, and fills with a script that sets
//!   the value only if the generation is unchanged and no write holds the lock. A
//!   reader that saw the lock does not fill at all.
//! - A writer first *fences* the key (fresh generation, no value, lock counted up with
//!   a TTL longer than the write can last), then writes the store, then *releases*
//!   (fresh generation, no value, lock counted down). The write is not attempted
//!   unless the fence was acknowledged.
//!
//! A reader whose store read missed a write W took its guard before W's commit. If
//! it took it before W's fence, the fence changed the generation: its fill is
//! refused. If after, it saw the lock (or the lock is still there when it fills):
//! no fill. The lock goes only when W released (with a new generation again) or
//! when its TTL ran out, after W can no longer be running. So once W is acknowledged
//! no cache on any node holds, or can later be given, a value older than W — even if
//! W's node lost Redis between fence and release. Generations are random, not
//! counters, so a generation that expired and came back cannot look unchanged; they
//! outlive any reader (a request lasts at most `limits.request_timeout`) by keeping
//! them [`GENERATION_TTL`].
//!
//! # Outages
//!
//! A failed command marks the server down for [`RETRY_AFTER`]; meanwhile calls fail
//! at once (callers go to the store) instead of each waiting for a timeout. The
//! connection manager reconnects by itself, so the first call after the pause uses
//! the server again if it is back. Warnings are rate-limited to one per
//! [`WARN_EVERY`] per server, with the number of failures since the last one.
//! An invalidation that cannot be delivered is kept and delivered before this node
//! sends that server anything else. A fence is never skipped silently: while the
//! server is down it fails at once, and the write it guards is not attempted.

use super::mget::{Batcher, Guarded};
use super::outage::Outages;
use super::per_loop::PerLoop;
use super::script::{fill, guard_key_args, write_keys_and_args, FENCE, INVALIDATE, RELEASE};
pub use super::script::{generation_key, holders_key, lock_key, value_key};
use super::CacheError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, RedisResult};
use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub use super::script::GENERATION_TTL;

/// How long a server that failed is skipped before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

pub use super::outage::WARN_EVERY;

/// One Redis server.
pub struct RedisInstance {
    /// The URL without credentials, for logs.
    label: String,
    /// Multiplexed, reconnecting connection (cheap to clone per call).
    conn: ConnectionManager,
    /// Deadline of one command.
    op_timeout: Duration,
    /// The clock, the recovery note and rate-limited warnings.
    outages: Outages,
    /// Calls fail fast until this time ([`Outages::now_ms`]).
    down_until_ms: AtomicU64,
    /// All failures.
    failures: AtomicU64,
    /// Undelivered invalidations: cache keys.
    pending: Mutex<HashSet<String>>,
    /// Fast check for `pending` being non-empty.
    has_pending: AtomicBool,
    /// Guarded reads starting together leave as one `MGET` ([`super::mget`]).
    reads: Batcher,
    /// The reads' connections, one per loop thread ([`super::per_loop`]).
    per_loop: PerLoop,
}

/// A client for `url`: a `rediss://` server is verified against the PEM bundle
/// `tls_ca` (`cache.tls_ca`) when one is given, else against the system's roots.
pub fn client(url: &str, tls_ca: &Path) -> Result<redis::Client, String> {
    if url.starts_with("rediss://") && !tls_ca.as_os_str().is_empty() {
        let root = std::fs::read(tls_ca)
            .map_err(|e| format!("cache.tls_ca: cannot read {}: {e}", tls_ca.display()))?;
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root),
        };
        return redis::Client::build_with_tls(url, certs)
            .map_err(|e| format!("TLS settings (cache.tls_ca {}): {e}", tls_ca.display()));
    }
    redis::Client::open(url).map_err(|e| format!("invalid URL: {e}"))
}

impl RedisInstance {
    /// A server at `url`; connects lazily, so a node starts even while Redis is down.
    pub fn new(
        url: &str,
        op_timeout: Duration,
        tls_ca: &Path,
    ) -> Result<RedisInstance, CacheError> {
        let label = redact(url);
        let client = client(url, tls_ca).map_err(|e| CacheError::Other(format!("{label}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(op_timeout))
            .set_response_timeout(Some(op_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200))
            .set_pipeline_buffer_size(1024);
        let per_loop = PerLoop::new(client.get_connection_info());
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| CacheError::Other(format!("{label}: {e}")))?;
        Ok(RedisInstance {
            label,
            conn,
            op_timeout,
            outages: Outages::new(),
            down_until_ms: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            pending: Mutex::new(HashSet::new()),
            has_pending: AtomicBool::new(false),
            reads: Batcher::default(),
            per_loop,
        })
    }

    /// The server's URL without credentials.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Failed or skipped calls so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.outages.now_ms()
    }

    /// Runs one call: skipped while marked down, bounded by `op_timeout`, with
    /// undelivered invalidations delivered first.
    async fn run<T, Fut>(&self, f: impl FnOnce(ConnectionManager) -> Fut) -> Result<T, CacheError>
    where
        Fut: Future<Output = RedisResult<T>>,
    {
        if self.now_ms() < self.down_until_ms.load(Ordering::Relaxed) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return Err(CacheError::Unavailable(format!(
                "{} recently failed",
                self.label
            )));
        }
        if self.has_pending.load(Ordering::Acquire) {
            self.deliver_pending().await?;
        }
        self.call(f).await
    }

    async fn call<T, Fut>(&self, f: impl FnOnce(ConnectionManager) -> Fut) -> Result<T, CacheError>
    where
        Fut: Future<Output = RedisResult<T>>,
    {
        let limit = self.op_timeout;
        let fut = f(self.conn.clone());
        let deadline = crate::runtime::deadline::at(std::time::Instant::now() + limit);
        let r = futures_lite::future::or(async { Some(fut.await) }, async move {
            deadline.await;
            None
        })
        .await;
        match r {
            Some(Ok(v)) => {
                if self.outages.recovered() {
                    tracing::info!(redis = %self.label, "redis reachable again");
                }
                Ok(v)
            }
            Some(Err(e)) if !is_outage(&e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(CacheError::Other(format!("{}: {e}", self.label)))
            }
            Some(Err(e)) => Err(self.mark_down(&e.to_string())),
            None => Err(self.mark_down("timed out")),
        }
    }

    fn mark_down(&self, why: &str) -> CacheError {
        let now = self.now_ms();
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.down_until_ms
            .store(now + RETRY_AFTER.as_millis() as u64, Ordering::Relaxed);
        if let Some(unwarned) = self.outages.failed(now) {
            tracing::warn!(
                redis = %self.label,
                error = why,
                failures = unwarned,
                "redis unavailable; answering from the store"
            );
        }
        CacheError::Unavailable(format!("{}: {why}", self.label))
    }

    async fn deliver_pending(&self) -> Result<(), CacheError> {
        let keys: Vec<String> = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            self.has_pending.store(false, Ordering::Release);
            p.drain().collect()
        };
        for (i, key) in keys.iter().enumerate() {
            if let Err(e) = self.call(|c| script_cmd(c, &INVALIDATE, key, &[])).await {
                self.keep_pending(keys[i..].iter().cloned());
                return Err(e);
            }
        }
        if !keys.is_empty() {
            tracing::info!(redis = %self.label, keys = keys.len(), "delivered pending invalidations");
        }
        Ok(())
    }

    fn keep_pending(&self, keys: impl IntoIterator<Item = String>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.extend(keys);
        self.has_pending.store(true, Ordering::Release);
    }

    /// A cache key's value, generation and write lock (whether a write holds it),
    /// read with one `MGET` together with the other reads starting at the same time
    /// ([`super::mget`]).
    pub async fn get_guarded(&self, key: &str) -> Result<Guarded, CacheError> {
        let ticket = self.reads.join(key);
        ticket
            .answer(&self.reads, |keys| {
                self.run(|mut shared| async move {
                    let mut mget = redis::cmd("MGET");
                    let mut buf = Vec::with_capacity(80);
                    for k in &keys {
                        guard_key_args(&mut mget, k, &mut buf);
                    }
                    match self.per_loop.query(&mget).await {
                        Some(r) => r,
                        None => mget.query_async(&mut shared).await,
                    }
                })
            })
            .await
    }

    /// Sets a cache key's value if its generation is still `seen` and no write holds
    /// its lock.
    pub async fn fill_guarded(
        &self,
        key: &str,
        seen: Option<&str>,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        self.run(|mut c| async move { fill(&mut c, key, seen, value, ttl).await })
            .await
    }

    /// Fences a cache key before a store write: a fresh generation, no value, and the
    /// write lock held by `token` for at least `hold`. An error means the fence may not
    /// be in place, so the write must not be attempted. Bounded by `cache.op_timeout`;
    /// fails at once while the server is marked down.
    pub async fn fence(&self, key: &str, token: &str, hold: Duration) -> Result<(), CacheError> {
        let hold_ms = (hold.as_millis().max(1) as u64).to_string();
        let extra = [hold_ms.as_str(), token];
        self.run(|c| script_cmd(c, &FENCE, key, &extra)).await
    }

    /// Ends a fenced write: invalidates the key and removes `token` from its lock. If
    /// the server cannot be reached, a plain invalidation is kept for later delivery
    /// and the lock is left to expire.
    pub async fn release(&self, key: &str, token: &str) -> Result<(), CacheError> {
        self.invalidate_with(key, &RELEASE, token).await
    }

    /// Invalidates a cache key; kept for later delivery if the server is unreachable.
    ///
    /// Unlike reads, an invalidation is attempted even while the server is marked
    /// down: it may have come back within the skip window already holding a value
    /// another node filled before this write committed, and skipping would leave that
    /// value in place after the write is acknowledged.
    pub async fn invalidate(&self, key: &str) -> Result<(), CacheError> {
        self.invalidate_with(key, &INVALIDATE, "").await
    }

    async fn invalidate_with(
        &self,
        key: &str,
        script: &redis::Script,
        token: &str,
    ) -> Result<(), CacheError> {
        let r = async {
            if self.has_pending.load(Ordering::Acquire) {
                self.deliver_pending().await?;
            }
            let extra: &[&str] = if token.is_empty() { &[] } else { &[token] };
            self.call(|c| script_cmd(c, script, key, extra)).await
        }
        .await;
        if let Err(CacheError::Unavailable(_)) = &r {
            self.keep_pending([key.to_owned()]);
        }
        r
    }
}

/// Runs `script` (one of [`FENCE`], [`RELEASE`], [`INVALIDATE`]) on `key`'s four keys
/// with a fresh generation and its TTL, then `extra` arguments.
async fn script_cmd(
    mut c: ConnectionManager,
    script: &redis::Script,
    key: &str,
    extra: &[&str],
) -> RedisResult<()> {
    let (keys, args) = write_keys_and_args(key);
    let mut inv = script.key(&keys[..]);
    inv.arg(&args[..]);
    for a in extra {
        inv.arg(*a);
    }
    let _: i64 = inv.invoke_async(&mut c).await?;
    Ok(())
}

/// Whether an error means the server is unreachable (rather than a bad command).
fn is_outage(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// `redis://user:secret@host:port/db` → `redis://host:port/db`.
pub fn redact(url: &str) -> String {
    // A unix-socket URL carries its password as a query parameter (`?pass=`).
    let url = url.split_once('?').map_or(url, |(base, _)| base);
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(redact("redis://u:p@h:1/0"), "redis://h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        assert_eq!(
            redact("redis+unix:///run/r.sock?db=0&pass=secret"),
            "redis+unix:///run/r.sock"
        );
    }
}
