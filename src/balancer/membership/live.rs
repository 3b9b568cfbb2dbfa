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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::membership::{InMemory, NodeRecord};
    use crate::balancer::selection::Algorithm;
    use crate::config::BalancerConfig;

    fn record(node: &str) -> NodeRecord {
        NodeRecord::for_test(node, "127.0.0.1:7001")
    }

    #[test]
    fn new_settings_rebuild_the_selectors_over_the_same_members() {
        let cfg = BalancerConfig::default();
        let m = Membership::new(Settings::from_config(&cfg).unwrap(), Arc::new(InMemory));
        m.register(1, record("a")).unwrap();
        m.register(1, record("b")).unwrap();
        let before = m.snapshot();
        assert_eq!(
            before.service("dsf").unwrap().algorithm,
            Algorithm::ConsistentHash
        );
        let load = before.nodes[0].load.clone();
        let mut cfg = cfg;
        cfg.algorithm = "round_robin".into();
        m.reconfigure(Settings::from_config(&cfg).unwrap());
        let after = m.snapshot();
        assert!(after.generation > before.generation);
        assert_eq!(
            after.service("dsf").unwrap().algorithm,
            Algorithm::RoundRobin
        );
        assert_eq!(after.nodes.len(), 2, "the members stay");
        assert!(
            Arc::ptr_eq(&after.nodes[0].load, &load),
            "live load is kept"
        );
    }

    #[test]
    fn a_new_weight_rebuilds_only_when_it_differs_and_only_for_the_holder() {
        let cfg = BalancerConfig::default();
        let m = Membership::new(Settings::from_config(&cfg).unwrap(), Arc::new(InMemory));
        m.register(1, record("a")).unwrap();
        let g = m.snapshot().generation;
        m.set_weight(1, "a", 1).unwrap();
        assert_eq!(m.snapshot().generation, g, "same weight: no rebuild");
        assert!(
            m.set_weight(2, "a", 9).is_err(),
            "another connection may not"
        );
        m.set_weight(1, "a", 9).unwrap();
        assert_eq!(m.snapshot().nodes[0].weight, 9);
        assert!(m.events().iter().any(|e| e.change == "reweighted"));
    }
}
