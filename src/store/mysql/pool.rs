//! The pool's options from `[store]`, and replacing the pool when a reload changes
//! its size (PROTOCOL §9).

use super::MySqlStore;
use crate::config::StoreConfig;
use crate::store::{StoreError, StoreResult};
use async_compat::Compat;
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, SslOpts};
use std::sync::Arc;
use std::time::Duration;

/// Pool options from `[store]`, with `store.password` (read from `password_file` by
/// the configuration pipeline, or set through `DSF__STORE__PASSWORD`) when set.
pub(super) fn options(cfg: &StoreConfig) -> StoreResult<Opts> {
    let bad = |e: String| StoreError::Other(format!("store.url: {e}"));
    let url_opts = Opts::from_url(&cfg.url).map_err(|e| bad(e.to_string()))?;
    let constraints = PoolConstraints::new(cfg.pool_min, cfg.pool_max)
        .ok_or_else(|| bad("pool_min must not exceed pool_max".into()))?;
    let pool_opts = PoolOpts::default()
        .with_constraints(constraints)
        .with_inactive_connection_ttl(cfg.idle_timeout)
        .with_ttl_check_interval(cfg.idle_timeout.min(Duration::from_secs(30)))
        .with_abs_conn_ttl(Some(cfg.max_lifetime))
        .with_abs_conn_ttl_jitter(Some(cfg.max_lifetime / 10))
        // Resetting on every return would drop the prepared-statement cache and cost a
        // round trip; no code here changes session state.
        .with_reset_connection(false);
    let mut b = OptsBuilder::from_opts(url_opts)
        .pool_opts(pool_opts)
        .tcp_nodelay(true)
        // By default the driver reconnects over the server's Unix socket when it finds
        // one, briefly holding two connections per pool slot; keep the pool's bound
        // exact and use the address configured.
        .prefer_socket(false)
        .stmt_cache_size(64);
    if !cfg.password.is_empty() {
        b = b.pass(Some(cfg.password.clone()));
    }
    if !cfg.tls_ca.as_os_str().is_empty() {
        // TLS required: with SSL options set the driver refuses a server that does
        // not offer TLS, and verifies the server's certificate against this bundle
        // only (not the built-in web roots) for the host of store.url.
        let ca = std::fs::read(&cfg.tls_ca).map_err(|e| {
            StoreError::Other(format!(
                "store.tls_ca: cannot read {}: {e}",
                cfg.tls_ca.display()
            ))
        })?;
        let ssl = SslOpts::default()
            .with_root_certs(vec![ca.into()])
            .with_disable_built_in_roots(true);
        b = b.ssl_opts(ssl);
    }
    Ok(b.into())
}

impl MySqlStore {
    /// Puts a pool sized by `cfg` (`pool_min`, `pool_max`) in place of the running
    /// one. Operations started from now on take their connections from the new pool;
    /// the old one closes its connections as the operations holding them return them.
    pub(super) async fn replace_pool(&self, cfg: &StoreConfig) -> StoreResult<()> {
        let opts = options(cfg)?;
        // The pool spawns its housekeeping task on creation: do it in a tokio context.
        let pool = Compat::new(async move { Pool::new(opts) }).await;
        self.session_reads
            .set_limit(super::drains_for(cfg.pool_max));
        self.entry_reads.set_limit(super::drains_for(cfg.pool_max));
        let Some(old) = self.pool.swap(Some(Arc::new(pool))) else {
            return Ok(());
        };
        tracing::info!(
            database = %self.target,
            pool_min = cfg.pool_min,
            pool_max = cfg.pool_max,
            "mysql pool resized; the previous pool closes as its connections return"
        );
        let old = Pool::clone(&old);
        let target = self.target.clone();
        smol::spawn(Compat::new(async move {
            if let Err(e) = old.disconnect().await {
                tracing::warn!(database = %target, error = %e, "previous mysql pool did not close cleanly");
            }
        }))
        .detach();
        Ok(())
    }
}
