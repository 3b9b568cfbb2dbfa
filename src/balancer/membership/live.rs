//! Changes a reload brings to a running membership: new selection settings, and a
//! node's new weight carried on its heartbeat.

use super::{owned, Membership, Settings};
use crate::balancer::error::BalancerError;
use std::sync::Arc;
use std::time::Instant;

impl Membership {
    /// Replaces the settings (algorithms, ring points, load factor, lease timing) and
    /// publishes a snapshot whose selectors are built with them over the same members.
    /// Nothing else changes: leases, loads and open connections stay.
    pub fn reconfigure(&self, settings: Settings) {
        let mut t = self.lock();
        self.settings.store(Arc::new(settings));
        // An empty shape never equals the current one: the next refresh rebuilds.
        t.shape.clear();
        self.refresh(&mut t, Instant::now());
    }

    /// Records a new weight for `node` (its configuration was reloaded), if `conn`
    /// holds its lease; the snapshot is rebuilt only when the weight differs.
    pub fn set_weight(&self, conn: u64, node: &str, weight: u32) -> Result<(), BalancerError> {
        let mut t = self.lock();
        let lease = owned(&mut t, conn, node)?;
        if lease.record.weight == weight {
            return Ok(());
        }
        let before = lease.record.weight;
        lease.record.weight = weight;
        self.discovery.announce(&lease.record);
        self.event(
            node,
            "reweighted",
            format!("weight {before} -> {weight} (node configuration reloaded)"),
        );
        self.refresh(&mut t, Instant::now());
        Ok(())
    }
}
