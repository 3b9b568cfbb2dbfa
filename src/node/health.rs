//! What a node's admin listener shows: readiness checks for its store, its cache and
//! its registration, store and cache metrics, and its connections.

use super::NodeContext;
use crate::admin::{Check, Checks};
use crate::cache::CacheStats;
use crate::metrics as m;
use crate::runtime::{BoxFuture, Registry};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The store answers a ping.
struct StoreReachable(Arc<NodeContext>);

impl Check for StoreReachable {
    fn name(&self) -> &'static str {
        "store"
    }

    fn check(&self) -> BoxFuture<'static, Result<(), String>> {
        let app = self.0.clone();
        Box::pin(async move {
            let store = app.store.clone();
            store.ping().await.map_err(|e| {
                // The detail (driver text, host names) goes to the log, not the probe.
                tracing::warn!(error = %e, "readiness: store check failed");
                let why = match e {
                    crate::store::StoreError::Timeout(_) => "timed out",
                    _ => "unreachable",
                };
                format!("{} store {why}", store.kind())
            })
        })
    }
}

/// The cache (when one is configured) can serve: one read, or for a Redis Cluster
/// every master (`Cache::ready`).
struct CacheReachable(Arc<NodeContext>);

impl Check for CacheReachable {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn check(&self) -> BoxFuture<'static, Result<(), String>> {
        let app = self.0.clone();
        Box::pin(async move {
            let Some(cache) = app.cache.cache() else {
                return Ok(());
            };
            cache.ready().await
        })
    }
}

/// The node holds a lease at its balancer.
struct Registered(Arc<AtomicBool>);

impl Check for Registered {
    fn name(&self) -> &'static str {
        "registration"
    }

    fn check(&self) -> BoxFuture<'static, Result<(), String>> {
        let ok = self.0.load(Ordering::Relaxed);
        Box::pin(std::future::ready(if ok {
            Ok(())
        } else {
            Err("not registered with the balancer".to_owned())
        }))
    }
}

/// The node's admin application.
pub fn admin_app(
    app: &Arc<NodeContext>,
    registry: Arc<Registry>,
    registered: Option<Arc<AtomicBool>>,
) -> Checks {
    let mut checks: Vec<Arc<dyn Check>> = vec![
        Arc::new(StoreReachable(app.clone())),
        Arc::new(CacheReachable(app.clone())),
    ];
    if let Some(flag) = registered {
        checks.push(Arc::new(Registered(flag)));
    }
    let (metrics_app, node_label) = (app.clone(), app.id.to_string());
    m::add_collector(move || publish(&node_label, &metrics_app));
    Checks {
        checks,
        status: Some(Box::new(
            move || serde_json::json!({ "connections": registry.list() }),
        )),
        page: None,
    }
}

/// Store and cache figures as metrics, labelled with the node (several nodes may share
/// one process under `dsf up`).
fn publish(node: &str, app: &NodeContext) {
    let node = node.to_owned();
    if let Some(p) = app.store.pool_usage() {
        metrics::gauge!(m::STORE_POOL, "node" => node.clone(), "state" => "in_use")
            .set(p.in_use as f64);
        metrics::gauge!(m::STORE_POOL, "node" => node.clone(), "state" => "idle")
            .set(p.idle as f64);
        metrics::gauge!(m::STORE_POOL_WAITING, "node" => node.clone()).set(p.waiting as f64);
    }
    let s = app.store.stats();
    metrics::counter!(m::STORE_FAILURES, "node" => node.clone())
        .absolute(s.failures.load(Ordering::Relaxed));
    metrics::counter!(m::STORE_BLACKLIST_READS, "node" => node.clone())
        .absolute(s.blacklist_reads());
    if let Some(cache) = app.cache.cache() {
        let c = cache.stats();
        metrics::counter!(m::CACHE_LOOKUPS, "node" => node.clone(), "result" => "hit")
            .absolute(CacheStats::get(&c.hits));
        metrics::counter!(m::CACHE_LOOKUPS, "node" => node.clone(), "result" => "miss")
            .absolute(CacheStats::get(&c.misses));
        metrics::counter!(m::CACHE_ERRORS, "node" => node.clone())
            .absolute(CacheStats::get(&c.errors));
        metrics::counter!(m::CACHE_STALE_FILLS, "node" => node)
            .absolute(CacheStats::get(&c.stale_fills));
    }
}
