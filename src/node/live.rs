//! What a node takes from a reloaded configuration (PROTOCOL §9): the listener's
//! limits, its weight (carried to the balancer on the next heartbeat), the cache
//! TTLs, the store's pool sizes and its certificates.

use super::agent::Registration;
use super::NodeContext;
use crate::runtime::{Reload, Server};
use crate::tls::Tls;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Registers the node's parts with `reload`.
pub fn attach(
    reload: &Reload,
    node: &Arc<NodeContext>,
    server: &Server,
    tls: Option<Arc<Tls>>,
    registration: &Registration,
) {
    let limits = server.limits();
    let weight = registration.weight.clone();
    let cache = node.cache.clone();
    let store = node.store.clone();
    let id = node.id.clone();
    reload.on_reload(move |old, new| {
        if old.limits != new.limits {
            limits.store(new.limits.clone());
        }
        if old.node.weight != new.node.weight {
            weight.store(new.node.weight, Ordering::Relaxed);
            tracing::info!(node = %id, weight = new.node.weight, "weight changed; the next heartbeat carries it");
        }
        if (old.cache.ttl, old.cache.negative_ttl) != (new.cache.ttl, new.cache.negative_ttl) {
            cache.set_ttls(new.cache.ttl, new.cache.negative_ttl);
        }
        let pool = |c: &crate::config::Config| (c.store.pool_min, c.store.pool_max);
        if pool(old) != pool(new) {
            // Reloads run off the loop threads: waiting here blocks no connection.
            if let Err(e) = smol::block_on(store.resize(&new.store)) {
                tracing::error!(error = %e, "store pool not resized; the running pool stays");
            }
        }
        if let Some(tls) = &tls {
            crate::runtime::reload::reload_tls(tls);
        }
    });
}
