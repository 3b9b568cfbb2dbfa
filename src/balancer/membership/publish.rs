//! Publishing the membership: node states from lease silence, and a new snapshot
//! (with its selectors) whenever the shape changes.

use super::{Held, Membership, NodeRecord, Table};
use crate::balancer::snapshot::{Member, NodeLoad, NodeState, Snapshot};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Membership {
    /// Recomputes states and publishes a new snapshot if the shape changed.
    pub(super) fn refresh(&self, t: &mut Table, at: Instant) {
        let settings = self.settings.load_full();
        let unhealthy_after = settings.unhealthy_after();
        let mut view: Vec<(NodeRecord, NodeState)> = Vec::new();
        let ejected = |id: &str| t.outliers.get(id).is_some_and(|e| e.ejected());
        for lease in t.local.values() {
            let silent = at.saturating_duration_since(lease.renewed);
            let state = state(&lease.record, silent, unhealthy_after);
            view.push((
                lease.record.clone(),
                eject(state, ejected(&lease.record.node)),
            ));
        }
        for (id, r) in &t.remote {
            if !t.local.contains_key(id) {
                let state = match r.held {
                    Held::Server { unhealthy: true } if !r.record.draining => NodeState::Unhealthy,
                    _ => state(&r.record, r.silent(at), unhealthy_after),
                };
                view.push((r.record.clone(), eject(state, ejected(id))));
            }
        }
        view.sort_by(|a, b| a.0.node.cmp(&b.0.node));
        // Remote loads arrive with the records.
        for (r, _) in &view {
            if !t.local.contains_key(&r.node) {
                if let Some(load) = t.loads.get(&r.node) {
                    load.report(r.conns, r.inflight);
                }
            }
        }
        let shape: Vec<_> = view
            .iter()
            .map(|(r, s)| {
                (
                    r.node.clone(),
                    r.service.clone(),
                    r.addr.clone(),
                    r.weight,
                    r.ops.clone(),
                    r.idempotent.clone(),
                    *s,
                )
            })
            .collect();
        if shape == t.shape {
            return;
        }
        // Health transitions are changes too; joins and leaves were logged by their cause.
        let before: HashMap<&str, NodeState> =
            t.shape.iter().map(|s| (s.0.as_str(), s.6)).collect();
        for (r, s) in &view {
            if t.local.contains_key(&r.node) {
                match (before.get(r.node.as_str()), s) {
                    (Some(NodeState::Healthy | NodeState::Ejected), NodeState::Unhealthy) => {
                        self.discovery.health(r, false)
                    }
                    (Some(NodeState::Unhealthy), NodeState::Healthy | NodeState::Ejected) => {
                        self.discovery.health(r, true)
                    }
                    _ => {}
                }
            }
            match (before.get(r.node.as_str()), s) {
                (Some(NodeState::Healthy | NodeState::Ejected), NodeState::Unhealthy) => self
                    .event(
                        &r.node,
                        "unhealthy",
                        format!("no heartbeat for over {} ms", unhealthy_after.as_millis()),
                    ),
                (Some(NodeState::Unhealthy), NodeState::Healthy | NodeState::Ejected) => {
                    self.event(&r.node, "recovered", "heartbeat resumed".into())
                }
                _ => {}
            }
        }
        t.loads
            .retain(|id, _| view.iter().any(|(r, _)| &r.node == id));
        // A node that left starts afresh if it comes back (a restarted process).
        t.outliers
            .retain(|id, _| view.iter().any(|(r, _)| &r.node == id));
        let members: Vec<Arc<Member>> = view
            .iter()
            .map(|(r, s)| {
                let load = t
                    .loads
                    .entry(r.node.clone())
                    .or_insert_with(|| {
                        let load = Arc::new(NodeLoad::default());
                        load.report(r.conns, r.inflight);
                        load
                    })
                    .clone();
                Arc::new(Member {
                    id: Arc::from(r.node.as_str()),
                    addr: Arc::from(r.addr.as_str()),
                    service: Arc::from(r.service.as_str()),
                    weight: r.weight,
                    ops: r.ops.clone(),
                    idempotent: r.idempotent.clone(),
                    state: *s,
                    response_timeout: {
                        let o = settings.outlier(&r.service);
                        o.enabled.then_some(o.response_timeout)
                    },
                    load,
                })
            })
            .collect();
        t.generation += 1;
        t.shape = shape;
        let snapshot = Snapshot::build(t.generation, members, &settings.build);
        tracing::debug!(
            generation = snapshot.generation,
            nodes = snapshot.nodes.len(),
            healthy = snapshot.healthy(),
            "membership snapshot rebuilt"
        );
        self.current.store(Arc::new(snapshot));
    }
}

/// A node the proxy ejected shows `ejected` while its heartbeats say healthy; drain
/// and missed heartbeats say more and win.
fn eject(state: NodeState, ejected: bool) -> NodeState {
    if ejected && state == NodeState::Healthy {
        NodeState::Ejected
    } else {
        state
    }
}

/// A node's state: draining if it said so, unhealthy once silent past `unhealthy_after`.
fn state(r: &NodeRecord, silent: Duration, unhealthy_after: Duration) -> NodeState {
    if r.draining {
        NodeState::Draining
    } else if silent > unhealthy_after {
        NodeState::Unhealthy
    } else {
        NodeState::Healthy
    }
}
