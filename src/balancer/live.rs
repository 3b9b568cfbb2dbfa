//! What a balancer takes from a reloaded configuration (PROTOCOL §9): the selection
//! settings (algorithms, per-service settings, ring points, load factor), the
//! listeners' limits and its certificates. Nothing is closed: members, leases and
//! client connections stay, and the next request is placed by the new selectors.

use super::membership::{Membership, Settings};
use crate::runtime::{Reload, Server};
use crate::tls::Tls;
use std::sync::Arc;

/// Registers the balancer's parts with `reload`: a check that refuses an unknown
/// algorithm (naming its key), and the part that applies what changed.
pub fn attach(
    reload: &Reload,
    membership: &Arc<Membership>,
    servers: [&Server; 3],
    tls: Option<Arc<Tls>>,
) {
    reload.check(|cfg| {
        Settings::from_config(&cfg.balancer)
            .map(drop)
            .map_err(|e| match e {
                super::BalancerError::Algorithm { key, source } => {
                    (format!("balancer.{key}"), source.to_string())
                }
                other => ("balancer".into(), other.to_string()),
            })
    });
    let limits: Vec<_> = servers.iter().map(|s| s.limits()).collect();
    let membership = membership.clone();
    reload.on_reload(move |old, new| {
        if old.balancer != new.balancer {
            // Checked above, before any part ran.
            if let Ok(settings) = Settings::from_config(&new.balancer) {
                membership.reconfigure(settings);
                tracing::info!(
                    algorithm = %new.balancer.algorithm,
                    services = new.balancer.services.len(),
                    "selection settings reloaded; selectors rebuilt over the same members"
                );
            }
        }
        if old.limits != new.limits {
            for l in &limits {
                l.store(new.limits.clone());
            }
        }
        if let Some(tls) = &tls {
            crate::runtime::reload::reload_tls(tls);
        }
    });
}
