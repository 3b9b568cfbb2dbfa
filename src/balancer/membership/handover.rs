//! Membership across a balancer's drain and in-place upgrade.
//!
//! When a balancer hands its listeners to a successor, its nodes are registered here,
//! over connections the successor cannot take. So the leases travel too: the old
//! process sends its records with the sockets, the successor adopts them as leases
//! held by no connection (they end by `lease_ttl` like any other), and each node,
//! told `goaway` on its registration connection, registers again at once with the
//! successor, which replaces the adopted lease with a connection-held one. No node
//! leaves the successor's selection in between.
//!
//! The old process freezes its membership when it starts draining: nodes closing
//! their registration connections to move to the successor do not leave the
//! selection that the requests it still answers need.

use super::{Lease, Membership, NodeRecord};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The registration "connection" of an adopted lease: none (registry ids start at 1
/// and never reach it), so only a new registration or the TTL ends it.
pub const ADOPTED: u64 = u64::MAX;

impl Membership {
    /// Stops leases from ending: closed registration connections and silence no
    /// longer remove nodes. For a balancer that drains or hands over.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Whether [`freeze`](Self::freeze) was called.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// The leases this balancer holds, for its successor.
    pub fn handover_records(&self) -> Vec<NodeRecord> {
        self.lock()
            .local
            .values()
            .map(|l| l.record.clone())
            .collect()
    }

    /// Takes over leases a predecessor held, each renewed now and held by no
    /// connection until its node registers again. Existing leases are kept.
    pub fn adopt(&self, records: Vec<NodeRecord>) {
        let at = Instant::now();
        let mut t = self.lock();
        let mut adopted = 0;
        for record in records {
            if t.local.contains_key(&record.node) {
                continue;
            }
            let reason = format!(
                "adopted from the previous process: service {} at {}",
                record.service, record.addr
            );
            let node = record.node.clone();
            self.discovery.announce(&record);
            t.local.insert(
                node.clone(),
                Lease {
                    record,
                    conn: ADOPTED,
                    renewed: at,
                },
            );
            self.event(&node, "joined", reason);
            adopted += 1;
        }
        if adopted > 0 {
            self.refresh(&mut t, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::membership::{InMemory, Settings};
    use std::sync::Arc;

    fn record(node: &str) -> NodeRecord {
        NodeRecord::for_test(node, "127.0.0.1:1")
    }

    fn membership() -> Membership {
        let cfg = crate::config::Config::default();
        let settings = Settings::from_config(&cfg.balancer).unwrap();
        Membership::new(settings, Arc::new(InMemory))
    }

    #[test]
    fn adopted_leases_are_selected_until_the_node_registers_again() {
        let old = membership();
        old.register(7, record("a")).unwrap();
        let new = membership();
        new.adopt(old.handover_records());
        assert_eq!(new.local_nodes(), ["a"]);
        assert_eq!(new.snapshot().nodes.len(), 1);
        new.register(3, record("a")).unwrap();
        new.heartbeat(3, "a", 0, 0).unwrap();
        new.connection_closed(ADOPTED);
        assert_eq!(new.local_nodes(), ["a"]);
    }

    #[test]
    fn a_frozen_membership_keeps_nodes_whose_connection_closed() {
        let m = membership();
        m.register(7, record("a")).unwrap();
        m.freeze();
        m.connection_closed(7);
        m.sweep();
        assert_eq!(m.local_nodes(), ["a"]);
    }
}
