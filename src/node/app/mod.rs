//! The DSF application: the operations a node serves, grouped by prefix, and the
//! state they share ([`App`]: store, cache, sessions, password hasher).

pub mod blacklist;
pub mod collector;
pub mod sys;
pub mod user;
pub mod validate;

use crate::auth::password::{HashError, Passwords};
use crate::auth::sessions::Sessions;
use crate::auth::Verifier;
use crate::cache::aside::CacheAside;
use crate::cache::local::LocalCache;
use crate::cache::sharded::{RedisCache, RedisShards};
use crate::cache::{Cache, CacheError};
use crate::config::Config;
use crate::framework::{Access, Ctx, Router};
use crate::protocol::ApiError;
use crate::store::{self, Store, StoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// File in `node.data_dir` whose length is the in-process caches' shared generation.
pub const GENERATION_FILE: &str = "cache.generation";

/// Why the application could not start.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The store could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The cache configuration is unusable.
    #[error("cache: {0}")]
    Cache(#[from] CacheError),
    /// The argon2 parameters are invalid.
    #[error("auth: {0}")]
    Hash(#[from] HashError),
    /// A local file could not be opened.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What the operations share.
pub struct App {
    /// The persistent store.
    pub store: Arc<dyn Store>,
    /// Cache-aside reads (`blacklist.query`, sessions).
    pub cache: Arc<CacheAside>,
    /// Sessions and login throttling.
    pub sessions: Arc<Sessions>,
    /// Password hashing.
    pub passwords: Passwords,
    /// The Redis servers, when configured.
    pub redis: Option<Arc<RedisShards>>,
    /// Session lifetime.
    pub session_ttl: Duration,
    /// Login attempts per name and window before `rate_limited`.
    pub max_failed_logins: u32,
    /// The login throttling window.
    pub login_window: Duration,
    /// TTL of a cached "listed" answer.
    pub ttl: Duration,
    /// TTL of a cached "not listed" answer.
    pub negative_ttl: Duration,
    /// Deadline of a store call (a timed-out write is invalidated again after it).
    pub query_timeout: Duration,
}

impl App {
    /// Opens the store (applying migrations), the cache and the session layer the
    /// configuration names.
    pub async fn open(cfg: &Config) -> Result<Arc<App>, OpenError> {
        let store = store::open(cfg).await?;
        let redis = if cfg.cache.redis.is_empty() {
            None
        } else {
            if cfg.cache.cluster {
                return Err(CacheError::Other(
                    "cache.cluster = true is not supported by this build; list the servers \
                     in cache.redis to shard over them with the hash ring"
                        .into(),
                )
                .into());
            }
            Some(Arc::new(RedisShards::open(
                &cfg.cache.redis,
                cfg.cache.op_timeout,
            )?))
        };
        let embedded = cfg.store.url.is_empty();
        let cache: Option<Arc<dyn Cache>> = match (&redis, cfg.cache.enabled, embedded) {
            (_, false, _) => None,
            (Some(shards), true, _) => Some(Arc::new(RedisCache::new(shards.clone()))),
            (None, true, true) => Some(Arc::new(LocalCache::shared(
                cfg.cache.local_capacity,
                &cfg.node.data_dir.join(GENERATION_FILE),
            )?)),
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
            "application ready"
        );
        let cache = Arc::new(CacheAside::new(cache));
        let sessions = Arc::new(Sessions::new(store.clone(), cache.clone(), cfg.cache.ttl));
        Ok(Arc::new(App {
            store,
            cache,
            sessions,
            passwords: Passwords::new(&cfg.auth)?,
            redis,
            session_ttl: cfg.auth.session_ttl,
            max_failed_logins: cfg.auth.max_failed_logins,
            login_window: cfg.auth.login_window,
            ttl: cfg.cache.ttl,
            negative_ttl: cfg.cache.negative_ttl,
            query_timeout: cfg.store.query_timeout,
        }))
    }

    /// The token verifier for the `Auth` middleware.
    pub fn verifier(&self) -> Verifier {
        Verifier::new(self.sessions.clone())
    }
}

/// Registers only the operations this node serves (`node.ops`; `sys.*` always).
pub struct Routes<'r> {
    router: &'r mut Router,
    ops: &'r [String],
}

impl<'r> Routes<'r> {
    /// Routes into `router`, filtered by the prefixes in `ops` (empty: all).
    pub fn new(router: &'r mut Router, ops: &'r [String]) -> Self {
        Routes { router, ops }
    }

    /// Whether operation `op` is served.
    pub fn serves(&self, op: &str) -> bool {
        serves(self.ops, op)
    }

    /// Like [`Router::route`], skipped when `op` is not served.
    pub fn route<In, Out, F, Fut>(&mut self, op: &str, access: Access, f: F) -> &mut Self
    where
        F: Fn(Ctx, In) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Out, ApiError>> + Send + 'static,
        In: DeserializeOwned + Send + 'static,
        Out: Serialize + 'static,
    {
        if self.serves(op) {
            self.router.route(op, access, f);
        }
        self
    }

    /// Like [`Router::route_with`], skipped when `op` is not served.
    pub fn route_with<S, In, Out, F, Fut>(
        &mut self,
        op: &str,
        access: Access,
        state: &Arc<S>,
        f: F,
    ) -> &mut Self
    where
        S: Send + Sync + 'static,
        F: Fn(Arc<S>, Ctx, In) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Out, ApiError>> + Send + 'static,
        In: DeserializeOwned + Send + 'static,
        Out: Serialize + 'static,
    {
        if self.serves(op) {
            self.router.route_with(op, access, state.clone(), f);
        }
        self
    }
}

/// Whether `op` matches one of `prefixes` (empty: everything; `sys.` always).
pub fn serves(prefixes: &[String], op: &str) -> bool {
    prefixes.is_empty() || op.starts_with("sys.") || prefixes.iter().any(|p| op.starts_with(p))
}

/// Registers every business operation group.
pub fn register(router: &mut Router, ops: &[String], app: &Arc<App>) {
    let mut routes = Routes::new(router, ops);
    user::register(&mut routes, app);
    blacklist::register(&mut routes, app);
    collector::register(&mut routes, app);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_filter_by_prefix_and_always_serve_sys() {
        let ops = vec!["user.".to_owned()];
        assert!(serves(&ops, "user.login"));
        assert!(serves(&ops, "sys.ping"));
        assert!(!serves(&ops, "blacklist.query"));
        assert!(serves(&[], "blacklist.query"));
    }
}
