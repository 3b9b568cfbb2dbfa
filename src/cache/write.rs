//! The write path of cached keys: fence, store write, release (docs/stores.md, "The
//! cache and why it is never stale").
//!
//! 1. The key is fenced in the cache ([`Cache::fence`]): fresh generation, no value,
//!    fills refused for [`super::WriteDeadlines::hold`]. If the fence is not acknowledged
//!    within the cache's own deadline (`cache.op_timeout`), the store write is not
//!    attempted and the client gets `unavailable`: nothing was applied.
//! 2. The store write, bounded by `store.query_timeout`.
//! 3. The fence is released with a last invalidation ([`Cache::release`]). If that is
//!    lost, the write is acknowledged all the same: the fence keeps every node off the
//!    cached copy until the hold runs out, and by then the write has finished.
//!
//! A store write that timed out may still be running on the database, so its fence is
//! not released (it expires), and the answer is `outcome_unknown`.

use super::aside::CacheAside;
#[cfg(test)]
use super::WriteDeadlines;
use crate::protocol::{ApiError, ErrorCode};
use crate::store::{StoreError, StoreResult};
use std::future::Future;
use std::sync::Arc;

impl CacheAside {
    /// Runs `write`, a store write that changes what `key` caches, under the fence
    /// protocol; the error is what the client sees.
    ///
    /// - The fence could not be set: `unavailable`, and `write` is never polled.
    /// - The store write timed out: `outcome_unknown` (it may yet commit).
    /// - Any other store error: that error's usual answer.
    pub async fn write<T, Fut>(self: &Arc<Self>, key: &str, write: Fut) -> Result<T, ApiError>
    where
        Fut: Future<Output = StoreResult<T>>,
    {
        let fence = match self.cache() {
            None => None,
            Some(cache) => match cache.fence(key, self.deadlines.hold()).await {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!(key, error = %e, "write refused: the cache fence was not set");
                    return Err(ApiError::unavailable(format!(
                        "the cache could not be fenced for key {key}; nothing was applied; \
                         try again"
                    )));
                }
            },
        };
        let r = write.await;
        match &r {
            Ok(_) | Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {
                if let (Some(cache), Some(fence)) = (self.cache(), &fence) {
                    if let Err(e) = cache.release(key, fence).await {
                        tracing::debug!(key, error = %e, "fence not released; it expires by itself");
                    }
                }
            }
            Err(StoreError::Timeout(_)) => {
                // The fence expires by itself after the hold; the in-process cache has
                // none, so it is invalidated once more when the write cannot be
                // running any longer.
                self.invalidate(key).await;
                let (aside, key) = (self.clone(), key.to_owned());
                let later = self.deadlines.store;
                crate::runtime::spawn_local(async move {
                    async_io::Timer::after(later).await;
                    aside.invalidate(&key).await;
                })
                .detach();
            }
            // The write may have been cut off in the middle of its commit: the
            // fence stays until its hold ran out.
            Err(_) => self.invalidate(key).await,
        }
        r.map_err(|e| match e {
            StoreError::Timeout(what) => {
                tracing::warn!(key, op = what, "store write timed out; outcome unknown");
                ApiError::new(
                    ErrorCode::OutcomeUnknown,
                    format!(
                        "the store did not confirm the write of key {key} in time; it may \
                         or may not be applied"
                    ),
                )
            }
            e => e.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_hold_outlasts_a_write_that_timed_out_and_kept_running() {
        let d = WriteDeadlines::default();
        assert_eq!(d.hold(), Duration::from_millis(7250));
        assert!(d.hold() > d.store * 2 + d.cache);
    }
}
