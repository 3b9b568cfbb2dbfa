//! Sessions and failed-login counters: kept in the store, which every node shares, and
//! read through the cache.
//!
//! The store is the truth, so a token issued by one node is valid on all of them and
//! survives a Redis restart; the cache (Redis, or in-process in embedded mode) spares
//! the store a read per authenticated request. A logout fences the cached copy,
//! deletes the row and releases the fence, the same protocol as blacklist writes
//! ([`crate::cache::write`]), so once `user.logout` is acknowledged no node accepts
//! the token, even if this node lost Redis after the fence. While Redis is down,
//! sessions are read from the store and a logout answers `unavailable`. Tokens are
//! stored only as their SHA-256, so a copy of the store or of Redis holds no usable
//! token.

use crate::cache::aside::CacheAside;
use crate::protocol::ApiError;
use crate::store::{now_ms, SessionRecord, Store, StoreError, StoreResult};
use std::sync::Arc;
use std::time::Duration;

/// Cached form of "no such session" (never stored: a zero TTL skips the fill).
const ABSENT: &str = "-";

/// Sessions and login throttling.
pub struct Sessions {
    store: Arc<dyn Store>,
    /// Read-through cache; its `cache.ttl` bounds how long a session stays cached.
    cache: Arc<CacheAside>,
}

fn cache_key(token_hash: &str) -> String {
    format!("s:{token_hash}")
}

impl Sessions {
    /// Sessions in `store`, read through `cache`.
    pub fn new(store: Arc<dyn Store>, cache: Arc<CacheAside>) -> Self {
        Sessions { store, cache }
    }

    /// Stores a new session.
    pub async fn create(&self, token_hash: &str, session: &SessionRecord) -> StoreResult<()> {
        self.store
            .session_create(token_hash, session.user_id, session.expires_at_ms)
            .await
    }

    /// The unexpired session under `token_hash`.
    pub async fn get(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let json = self
            .cache
            .get_or_load(&cache_key(token_hash), || async {
                Ok(match self.store.session_get(token_hash).await? {
                    Some(s) => {
                        let left = Duration::from_millis(s.expires_at_ms.saturating_sub(now_ms()));
                        let json = serde_json::to_string(&s)
                            .map_err(|e| StoreError::Other(e.to_string()))?;
                        (json, left.min(self.cache.ttl()))
                    }
                    None => (ABSENT.to_owned(), Duration::ZERO),
                })
            })
            .await?;
        if json == ABSENT {
            return Ok(None);
        }
        let s: SessionRecord =
            serde_json::from_str(&json).map_err(|e| StoreError::Other(format!("session: {e}")))?;
        Ok((s.expires_at_ms > now_ms()).then_some(s))
    }

    /// Ends the session on every node: the delete runs under the cache's fence
    /// ([`CacheAside::write`]), so once this returns `Ok` no node accepts the token.
    pub async fn revoke(&self, token_hash: &str) -> Result<(), ApiError> {
        let delete = self.store.session_delete(token_hash);
        self.cache.write(&cache_key(token_hash), delete).await
    }

    /// Counts a login attempt against `name` (forgotten again on success); returns the
    /// count in the window.
    pub async fn record_attempt(&self, name: &str, window: Duration) -> StoreResult<u32> {
        self.store.login_failure_record(name, window).await
    }

    /// Forgets the counted attempts of `name`.
    pub async fn clear_attempts(&self, name: &str) -> StoreResult<()> {
        self.store.login_failures_clear(name).await
    }
}
