//! Cache-aside reads with single-flight: the read path of `blacklist.query`.
//!
//! A read asks the cache; on a miss it joins (or starts) the *flight* for the key and
//! the guard the miss returned. One member of a flight reads the store and fills the
//! cache; the others wait for its answer. Flights are keyed by the guard, not only the
//! key, because joining a read that started before an acknowledged write would serve
//! data older than that write: equal guards mean no invalidation happened between the
//! flight's guard and the joiner's, hence the flight's store read already includes
//! every write acknowledged before the joiner arrived.
//!
//! Writes go through [`CacheAside::write`] (in [`super::write`]): fence, store write,
//! release.
//!
//! When the cache is disabled or unreachable there is no guard to compare, so reads go
//! straight to the store (that is the "uncached" baseline, and the fallback while
//! Redis is down).

use super::{Cache, Guard, Lookup, WriteDeadlines};
use crate::store::StoreResult;
use async_lock::OnceCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One in-progress store read and its shared result.
type Flight = Arc<OnceCell<StoreResult<String>>>;

/// Cache-aside over an optional cache.
pub struct CacheAside {
    /// `None` when caching is off.
    cache: Option<Arc<dyn Cache>>,
    /// Reads in progress, by key and guard.
    flights: Mutex<HashMap<(String, Guard), Flight>>,
    /// `cache.ttl` in milliseconds; a reload replaces it.
    ttl_ms: AtomicU64,
    /// `cache.negative_ttl` in milliseconds; a reload replaces it.
    negative_ttl_ms: AtomicU64,
    /// The deadlines fenced writes are measured against.
    pub(crate) deadlines: WriteDeadlines,
}

impl CacheAside {
    /// Reads through `cache` (`None`: always the store), with the default deadlines.
    pub fn new(cache: Option<Arc<dyn Cache>>) -> CacheAside {
        CacheAside::with_deadlines(cache, WriteDeadlines::default())
    }

    /// Reads through `cache`; writes fence for as long as `deadlines` require.
    pub fn with_deadlines(cache: Option<Arc<dyn Cache>>, deadlines: WriteDeadlines) -> CacheAside {
        let defaults = crate::config::CacheConfig::default();
        let aside = CacheAside {
            cache,
            flights: Mutex::new(HashMap::new()),
            ttl_ms: AtomicU64::new(0),
            negative_ttl_ms: AtomicU64::new(0),
            deadlines,
        };
        aside.set_ttls(defaults.ttl, defaults.negative_ttl);
        aside
    }

    /// Sets how long entries written from now on are cached (`cache.ttl` for a
    /// positive answer, `cache.negative_ttl` for a negative one).
    pub fn set_ttls(&self, ttl: Duration, negative_ttl: Duration) {
        self.ttl_ms.store(ttl.as_millis() as u64, Ordering::Relaxed);
        self.negative_ttl_ms
            .store(negative_ttl.as_millis() as u64, Ordering::Relaxed);
    }

    /// TTL of a positive entry (`cache.ttl`).
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed))
    }

    /// TTL of a negative entry (`cache.negative_ttl`).
    pub fn negative_ttl(&self) -> Duration {
        Duration::from_millis(self.negative_ttl_ms.load(Ordering::Relaxed))
    }

    /// The cache, if any.
    pub fn cache(&self) -> Option<&Arc<dyn Cache>> {
        self.cache.as_ref()
    }

    /// The value of `key`: from the cache, or from `load` (which returns the value and
    /// how long it may be cached; zero: not at all) with concurrent misses sharing one
    /// `load`.
    pub async fn get_or_load<F, Fut>(&self, key: &str, load: F) -> StoreResult<String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = StoreResult<(String, Duration)>>,
    {
        let Some(cache) = &self.cache else {
            return load().await.map(|(v, _)| v);
        };
        let guard = match cache.get(key).await {
            Ok(Lookup::Hit(v)) => return Ok(v),
            Ok(Lookup::Miss(g)) => g,
            Err(_) => return load().await.map(|(v, _)| v),
        };
        let id = (key.to_owned(), guard.clone());
        let flight: Flight = self
            .lock()
            .entry(id.clone())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let result = flight
            .get_or_init(|| async {
                // A flight that just finished may have filled the cache after our miss;
                // one more cache read is far cheaper than a second store read.
                if let Ok(Lookup::Hit(v)) = cache.get(key).await {
                    return Ok(v);
                }
                let (value, ttl) = load().await?;
                // A failed fill only costs a later miss.
                if !ttl.is_zero() {
                    let _ = cache.fill(key, guard, &value, ttl).await;
                }
                Ok(value)
            })
            .await
            .clone();
        let mut flights = self.lock();
        if flights.get(&id).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            flights.remove(&id);
        }
        result
    }

    /// Invalidates `key` after a committed write. Errors are logged by the cache and
    /// kept for redelivery; the write stands.
    pub async fn invalidate(&self, key: &str) {
        if let Some(cache) = &self.cache {
            if let Err(e) = cache.invalidate(key).await {
                tracing::debug!(key, error = %e, "invalidation deferred");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Guard), Flight>> {
        self.flights.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::local::LocalCache;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn concurrent_misses_share_one_load() {
        let aside = Arc::new(CacheAside::new(Some(Arc::new(LocalCache::new(100)))));
        let loads = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (aside, loads) = (aside.clone(), loads.clone());
                smol::spawn(async move {
                    aside
                        .get_or_load("k", || async {
                            loads.fetch_add(1, Ordering::SeqCst);
                            async_io::Timer::after(Duration::from_millis(50)).await;
                            Ok(("v".to_owned(), Duration::from_secs(60)))
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(smol::block_on(t).unwrap(), "v");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_read_after_an_invalidation_does_not_join_an_older_flight() {
        let cache: Arc<dyn Cache> = Arc::new(LocalCache::new(100));
        let aside = Arc::new(CacheAside::new(Some(cache.clone())));
        let (started_tx, started_rx) = async_channel::bounded::<()>(1);
        let slow = {
            let aside = aside.clone();
            smol::spawn(async move {
                aside
                    .get_or_load("k", || async move {
                        let _ = started_tx.send(()).await;
                        async_io::Timer::after(Duration::from_millis(100)).await;
                        Ok(("old".to_owned(), Duration::from_secs(60)))
                    })
                    .await
            })
        };
        smol::block_on(async {
            started_rx.recv().await.unwrap();
            cache.invalidate("k").await.unwrap(); // a write was acknowledged
            let fresh = aside
                .get_or_load("k", || async {
                    Ok(("new".to_owned(), Duration::from_secs(60)))
                })
                .await
                .unwrap();
            assert_eq!(fresh, "new");
            assert_eq!(slow.await.unwrap(), "old");
            // The slow reader's fill was refused: the cache holds nothing stale.
            let again = aside
                .get_or_load("k", || async {
                    Ok(("newer".to_owned(), Duration::from_secs(60)))
                })
                .await
                .unwrap();
            assert_ne!(again, "old");
        });
    }
}
