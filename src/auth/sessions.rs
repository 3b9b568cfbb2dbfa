//! Where sessions and failed-login counters live: Redis when configured (shared by
//! every node, expiring by itself), otherwise the store.
//!
//! Both are cluster-wide, which is what makes a token from one node valid on all of
//! them and a logout effective on all of them. Tokens are stored only as their
//! SHA-256, so a copy of the store or of Redis holds no usable token.

use crate::cache::sharded::RedisShards;
use crate::cache::{Cache, CacheError, Lookup};
use crate::runtime::BoxFuture;
use crate::store::{now_ms, SessionRecord, Store, StoreError, StoreResult};
use std::sync::Arc;
use std::time::Duration;

/// Sessions and login throttling.
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a session for `ttl`.
    fn create<'a>(
        &'a self,
        token_hash: &'a str,
        session: &'a SessionRecord,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// The unexpired session under `token_hash`.
    fn get<'a>(&'a self, token_hash: &'a str) -> BoxFuture<'a, StoreResult<Option<SessionRecord>>>;

    /// Ends the session everywhere.
    fn revoke<'a>(&'a self, token_hash: &'a str) -> BoxFuture<'a, StoreResult<()>>;

    /// Counts a login attempt against `name` (forgotten again on success); returns the
    /// count in the window.
    fn record_failure<'a>(
        &'a self,
        name: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, StoreResult<u32>>;

    /// Forgets the failures of `name`.
    fn clear_failures<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<()>>;
}

/// A Redis outage means the session layer is down: the caller answers `unavailable`.
fn down(e: CacheError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Sessions in Redis (sharded with the cache's ring).
pub struct RedisSessions {
    shards: Arc<RedisShards>,
}

impl RedisSessions {
    /// Sessions on `shards`.
    pub fn new(shards: Arc<RedisShards>) -> RedisSessions {
        RedisSessions { shards }
    }
}

fn session_key(token_hash: &str) -> String {
    format!("dsf:s:{token_hash}")
}

fn failures_key(name: &str) -> String {
    format!("dsf:lf:{name}")
}

impl SessionStore for RedisSessions {
    fn create<'a>(
        &'a self,
        token_hash: &'a str,
        session: &'a SessionRecord,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let key = session_key(token_hash);
            let json =
                serde_json::to_string(session).map_err(|e| StoreError::Other(e.to_string()))?;
            self.shards
                .for_key(&key)
                .set_px(&key, &json, ttl)
                .await
                .map_err(down)
        })
    }

    fn get<'a>(&'a self, token_hash: &'a str) -> BoxFuture<'a, StoreResult<Option<SessionRecord>>> {
        Box::pin(async move {
            let key = session_key(token_hash);
            let Some(json) = self.shards.for_key(&key).get(&key).await.map_err(down)? else {
                return Ok(None);
            };
            let s: SessionRecord = serde_json::from_str(&json)
                .map_err(|e| StoreError::Other(format!("session: {e}")))?;
            Ok((s.expires_at_ms > now_ms()).then_some(s))
        })
    }

    fn revoke<'a>(&'a self, token_hash: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let key = session_key(token_hash);
            self.shards.for_key(&key).del(&key).await.map_err(down)
        })
    }

    fn record_failure<'a>(
        &'a self,
        name: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, StoreResult<u32>> {
        Box::pin(async move {
            let key = failures_key(name);
            self.shards
                .for_key(&key)
                .incr_window(&key, window)
                .await
                .map_err(down)
        })
    }

    fn clear_failures<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let key = failures_key(name);
            self.shards.for_key(&key).del(&key).await.map_err(down)
        })
    }
}

/// Sessions in the store, optionally read through the in-process cache (embedded
/// mode: an authenticated request then needs no trip to SQLite; a logout invalidates).
pub struct StoreSessions {
    store: Arc<dyn Store>,
    cache: Option<Arc<dyn Cache>>,
    /// Longest time a session stays cached.
    cache_ttl: Duration,
}

impl StoreSessions {
    /// Sessions in `store`, cached in `cache` (which must be coherent across nodes).
    pub fn new(store: Arc<dyn Store>, cache: Option<Arc<dyn Cache>>, cache_ttl: Duration) -> Self {
        StoreSessions {
            store,
            cache,
            cache_ttl,
        }
    }
}

fn cache_key(token_hash: &str) -> String {
    format!("s:{token_hash}")
}

impl SessionStore for StoreSessions {
    fn create<'a>(
        &'a self,
        token_hash: &'a str,
        session: &'a SessionRecord,
        _ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.store
            .session_create(token_hash, session.user_id, session.expires_at_ms)
    }

    fn get<'a>(&'a self, token_hash: &'a str) -> BoxFuture<'a, StoreResult<Option<SessionRecord>>> {
        Box::pin(async move {
            let key = cache_key(token_hash);
            let mut guard = None;
            if let Some(cache) = &self.cache {
                match cache.get(&key).await {
                    Ok(Lookup::Hit(json)) => {
                        if let Ok(s) = serde_json::from_str::<SessionRecord>(&json) {
                            if s.expires_at_ms > now_ms() {
                                return Ok(Some(s));
                            }
                        }
                    }
                    Ok(Lookup::Miss(g)) => guard = Some(g),
                    Err(_) => {}
                }
            }
            let found = self.store.session_get(token_hash).await?;
            if let (Some(cache), Some(g), Some(s)) = (&self.cache, guard, &found) {
                let left = Duration::from_millis(s.expires_at_ms.saturating_sub(now_ms()));
                if let Ok(json) = serde_json::to_string(s) {
                    let _ = cache.fill(&key, g, &json, left.min(self.cache_ttl)).await;
                }
            }
            Ok(found)
        })
    }

    fn revoke<'a>(&'a self, token_hash: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            self.store.session_delete(token_hash).await?;
            if let Some(cache) = &self.cache {
                cache
                    .invalidate(&cache_key(token_hash))
                    .await
                    .map_err(|e| StoreError::Other(e.to_string()))?;
            }
            Ok(())
        })
    }

    fn record_failure<'a>(
        &'a self,
        name: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, StoreResult<u32>> {
        self.store.login_failure_record(name, window)
    }

    fn clear_failures<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        self.store.login_failures_clear(name)
    }
}
