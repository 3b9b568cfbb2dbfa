//! Several Redis servers as one: each key lives on the server the consistent-hash
//! ring ([`crate::ring`], the same one the balancer uses) assigns it, so losing one
//! server cools only its share of keys. [`RedisCache`] is the [`Cache`] over them.

use super::redis::RedisInstance;
use super::{Cache, CacheError, CacheStats, Fence, Guard, Lookup};
use crate::ring::{Ring, DEFAULT_VNODES};
use crate::runtime::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Redis servers on a hash ring.
pub struct RedisShards {
    /// URL → server.
    instances: HashMap<String, RedisInstance>,
    /// Places keys on URLs.
    ring: Ring<String>,
}

impl RedisShards {
    /// One server per URL (duplicates collapse); connects lazily.
    pub fn open(
        urls: &[String],
        op_timeout: Duration,
        tls_ca: &std::path::Path,
    ) -> Result<RedisShards, CacheError> {
        if urls.is_empty() {
            return Err(CacheError::Other("no Redis URL given".into()));
        }
        let mut instances = HashMap::new();
        for url in urls {
            instances.insert(url.clone(), RedisInstance::new(url, op_timeout, tls_ca)?);
        }
        let ring = Ring::new(instances.keys().map(|u| (u.clone(), 1)), DEFAULT_VNODES);
        Ok(RedisShards { instances, ring })
    }

    /// The server that owns `key`.
    pub fn for_key(&self, key: &str) -> &RedisInstance {
        let url = self.ring.get(key.as_bytes());
        // The ring is built from the instance map's keys and is never empty.
        match url.and_then(|u| self.instances.get(u)) {
            Some(i) => i,
            None => self
                .instances
                .values()
                .next()
                .expect("at least one Redis instance"),
        }
    }

    /// Every server.
    pub fn instances(&self) -> impl Iterator<Item = &RedisInstance> {
        self.instances.values()
    }

    /// Failed or skipped calls over all servers.
    pub fn failures(&self) -> u64 {
        self.instances.values().map(RedisInstance::failures).sum()
    }
}

/// The cache over one or more Redis servers.
pub struct RedisCache {
    shards: Arc<RedisShards>,
    stats: CacheStats,
}

impl RedisCache {
    /// A cache on `shards` (shared with the session store).
    pub fn new(shards: Arc<RedisShards>) -> RedisCache {
        RedisCache {
            shards,
            stats: CacheStats::default(),
        }
    }
}

impl Cache for RedisCache {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Lookup, CacheError>> {
        Box::pin(
            self.stats
                .guarded_get(self.shards.for_key(key).get_guarded(key)),
        )
    }

    fn fill<'a>(
        &'a self,
        key: &'a str,
        guard: Guard,
        value: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, CacheError>> {
        Box::pin(self.stats.guarded_fill(guard, move |seen| async move {
            let inst = self.shards.for_key(key);
            inst.fill_guarded(key, seen.as_deref(), value, ttl).await
        }))
    }

    fn invalidate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async move {
            self.stats
                .count(self.shards.for_key(key).invalidate(key).await)
        })
    }

    fn fence<'a>(
        &'a self,
        key: &'a str,
        hold: Duration,
    ) -> BoxFuture<'a, Result<Fence, CacheError>> {
        Box::pin(async move {
            let fence = Fence::random();
            let inst = self.shards.for_key(key);
            self.stats
                .count(inst.fence(key, fence.token(), hold).await)?;
            Ok(fence)
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        fence: &'a Fence,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async move {
            let inst = self.shards.for_key(key);
            self.stats.count(inst.release(key, fence.token()).await)
        })
    }

    fn stats(&self) -> &CacheStats {
        &self.stats
    }
}
