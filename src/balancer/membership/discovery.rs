//! Where membership lives beyond one balancer: the [`Discovery`] role, and [`InMemory`] for a balancer that shares nothing.

use super::record::NodeRecord;

/// Publishes the leases this balancer holds (the "service discovery" role).
pub trait Discovery: Send + Sync + 'static {
    /// A lease was taken or changed shape (registration, drain): store and announce it.
    fn announce(&self, record: &NodeRecord);
    /// A lease was renewed by a heartbeat: store it, no announcement.
    fn renew(&self, record: &NodeRecord);
    /// A lease ended here.
    fn withdraw(&self, node: &str);
    /// A node holding a lease here stopped (`healthy = false`) or resumed heartbeats.
    /// Stores that age records by their heartbeat need nothing more than
    /// [`renew`](Self::renew); a store that keeps records alive by a lease of its own
    /// (etcd) writes the new state.
    fn health(&self, _record: &NodeRecord, _healthy: bool) {}
}

/// Membership private to this balancer.
#[derive(Debug, Default, Clone, Copy)]
pub struct InMemory;

impl Discovery for InMemory {
    fn announce(&self, _: &NodeRecord) {}
    fn renew(&self, _: &NodeRecord) {}
    fn withdraw(&self, _: &str) {}
}
