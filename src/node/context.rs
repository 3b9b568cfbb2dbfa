//! What every service on a node shares: the store, the cache, the sessions behind the
//! cluster-wide token check, and the configuration.

use super::NodeError;
use crate::auth::sessions::Sessions;
use crate::auth::Verifier;
use crate::cache::aside::CacheAside;
use crate::cache::cluster::RedisCluster;
use crate::cache::local::LocalCache;
use crate::cache::sharded::{RedisCache, RedisShards};
use crate::cache::{Cache, WriteDeadlines};
use crate::config::Config;
use crate::store::{self, Store};
use std::sync::Arc;

/// File in `node.data_dir` whose length is the in-process caches' shared generation.
pub const GENERATION_FILE: &str = "cache.generation";

/// The parts a node opens before its services install their operations.
pub struct NodeContext {
    /// The node's id (`node.id`, or `<hostname>-<port>`).
    pub id: Arc<str>,
    /// The configuration the node runs with.
    pub config: Config,
    /// The persistent store (MySQL or embedded), its own tables migrated.
    pub store: Arc<dyn Store>,
    /// Cache-aside reads over the configured cache (or none).
    pub cache: Arc<CacheAside>,
    /// Sessions: a token from `user.login` on any node is checked here.
    pub sessions: Arc<Sessions>,
    /// The Redis servers on the hash ring, when configured (`None` for a Redis
    /// Cluster, which [`NodeContext::cache`] reaches through its own client).
    pub redis: Option<Arc<RedisShards>>,
}

impl NodeContext {
    /// Opens the store (applying migrations), the cache and the session layer that
    /// `cfg` names.
    pub async fn open(cfg: Config, id: Arc<str>) -> Result<NodeContext, NodeError> {
        let store = store::open(&cfg).await?;
        // Every use of Redis on a node goes through the cache: blacklist answers and
        // sessions (rate limits and sessions themselves live in the store).
        let cluster = if cfg.cache.cluster && cfg.cache.enabled {
            Some(Arc::new(RedisCluster::open(
                &cfg.cache.redis,
                cfg.cache.op_timeout,
                &cfg.cache.tls_ca,
                cfg.cache.wait_replicas,
            )?))
        } else {
            None
        };
        let redis = if cfg.cache.redis.is_empty() || cfg.cache.cluster {
            None
        } else {
            Some(Arc::new(RedisShards::open(
                &cfg.cache.redis,
                cfg.cache.op_timeout,
                &cfg.cache.tls_ca,
            )?))
        };
        let embedded = cfg.store.url.is_empty();
        let cache: Option<Arc<dyn Cache>> = match (&redis, cfg.cache.enabled, embedded) {
            (_, false, _) => None,
            _ if cluster.is_some() => cluster.map(|c| c as Arc<dyn Cache>),
            (Some(shards), true, _) => Some(Arc::new(RedisCache::new(shards.clone()))),
            (None, true, true) => Some(Arc::new(
                LocalCache::shared(
                    cfg.cache.local_capacity,
                    &cfg.node.data_dir.join(GENERATION_FILE),
                )
                .map_err(|source| NodeError::File {
                    path: cfg.node.data_dir.join(GENERATION_FILE),
                    source,
                })?,
            )),
            (None, true, false) => {
                // Nodes on a shared MySQL could not see each other's invalidations in
                // process memory; caching there needs Redis.
                tracing::info!("cache off: a MySQL store is cached only through Redis");
                None
            }
        };
        tracing::info!(
            store = store.kind(),
            cache = cache.as_ref().map_or("off", |c| c.kind()),
            "store and cache open"
        );
        let deadlines = WriteDeadlines {
            store: cfg.store.query_timeout,
            cache: cfg.cache.op_timeout,
        };
        let cache = Arc::new(CacheAside::with_deadlines(cache, deadlines));
        cache.set_ttls(cfg.cache.ttl, cfg.cache.negative_ttl);
        let sessions = Arc::new(Sessions::new(store.clone(), cache.clone()));
        Ok(NodeContext {
            id,
            config: cfg,
            store,
            cache,
            sessions,
            redis,
        })
    }

    /// The token check every authenticated operation passes through.
    pub fn verifier(&self) -> Verifier {
        Verifier::new(self.sessions.clone())
    }
}
