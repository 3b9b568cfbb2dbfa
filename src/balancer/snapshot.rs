//! One immutable view of the membership: services, their selectors, and the op routes.
//!
//! A [`Snapshot`] is built whenever the shape of the membership changes (a node joins,
//! leaves, drains, turns unhealthy or recovers) and is then shared read-only through
//! an `ArcSwap`; load changes do not rebuild it, they flow through the live counters
//! in [`NodeLoad`].

use super::selection::{self, Algorithm, Backend, Selector};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A node's place in the membership (PROTOCOL §5, `lb.nodes` field `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Heartbeats arrive; takes new work.
    Healthy,
    /// Asked to stop taking new work (`lb.drain`); existing work finishes.
    Draining,
    /// Missed heartbeats; takes new work only when its service has no healthy node.
    Unhealthy,
    /// Heartbeats arrive but the proxy cannot reach it (outlier ejection); takes new
    /// work only when its service has no healthy node, until a probe is answered.
    Ejected,
}

impl NodeState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Healthy => "healthy",
            NodeState::Draining => "draining",
            NodeState::Unhealthy => "unhealthy",
            NodeState::Ejected => "ejected",
        }
    }

    /// Every state, for metrics that list each.
    pub const ALL: [NodeState; 4] = [
        NodeState::Healthy,
        NodeState::Draining,
        NodeState::Unhealthy,
        NodeState::Ejected,
    ];
}

/// A load figure as the selectors see it: this balancer's own count plus whatever
/// more the node itself reported in its last heartbeat.
///
/// The proxy adds and subtracts its own requests live; a heartbeat replaces only the
/// part it knows about beyond them, so the two never double-count or go negative.
#[derive(Debug, Default)]
pub struct Counter {
    /// Requests or connections this balancer itself has open at the node.
    own: AtomicU64,
    /// What the node reported beyond `own` at its last heartbeat.
    external: AtomicU64,
    /// `own + external`, the value the selectors read (shared with [`Backend`]).
    total: Arc<AtomicU64>,
}

impl Counter {
    /// One more of this balancer's own.
    pub fn add(&self) {
        self.own.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// One fewer of this balancer's own; pairs with [`add`](Self::add).
    pub fn sub(&self) {
        self.own.fetch_sub(1, Ordering::Relaxed);
        self.total.fetch_sub(1, Ordering::Relaxed);
    }

    /// Takes a node-reported figure, which includes this balancer's own share.
    /// Callers serialize reports (the membership lock).
    pub fn report(&self, value: u64) {
        let external = value.saturating_sub(self.own.load(Ordering::Relaxed));
        let old = self.external.swap(external, Ordering::Relaxed);
        // Add before subtracting so that a concurrent reader never sees a wrapped value.
        self.total.fetch_add(external, Ordering::Relaxed);
        self.total.fetch_sub(old, Ordering::Relaxed);
    }

    /// The combined figure.
    pub fn get(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// This balancer's own part.
    pub fn own(&self) -> u64 {
        self.own.load(Ordering::Relaxed)
    }
}

/// Live load of one node; survives snapshot rebuilds for as long as the node is a member.
#[derive(Debug, Default)]
pub struct NodeLoad {
    /// Requests in flight at the node.
    pub inflight: Counter,
    /// Client connections at the node.
    pub conns: Counter,
    /// `conns` exactly as last reported, for `lb.nodes`.
    pub reported_conns: AtomicU64,
    /// `inflight` exactly as last reported, for `lb.nodes`.
    pub reported_inflight: AtomicU64,
    /// Requests the proxy sent to this node (metrics, the status page's traffic share).
    pub proxied: AtomicU64,
    /// Times the directory assigned this node to a client.
    pub assigned: AtomicU64,
    /// The proxy's local-origin failures on this node since its last answer.
    pub failures: AtomicU32,
}

impl NodeLoad {
    /// The node answered: its run of failures ends. Called on every response, so it
    /// writes the shared counter only when there is something to reset.
    pub fn answered(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// One more failure in a row; returns how many now.
    pub fn failed(&self) -> u32 {
        self.failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    /// Applies a heartbeat's figures.
    pub fn report(&self, conns: u64, inflight: u64) {
        self.reported_conns.store(conns, Ordering::Relaxed);
        self.reported_inflight.store(inflight, Ordering::Relaxed);
        self.conns.report(conns);
        self.inflight.report(inflight);
    }
}

/// One node as a snapshot sees it.
#[derive(Debug)]
pub struct Member {
    /// Node id, unique in the cluster.
    pub id: Arc<str>,
    /// Where clients and the proxy reach it.
    pub addr: Arc<str>,
    /// The service it belongs to.
    pub service: Arc<str>,
    /// Selection weight as registered.
    pub weight: u32,
    /// Operation prefixes it serves; empty = all.
    pub ops: Vec<String>,
    /// Operations it declared safe to repeat.
    pub idempotent: Vec<String>,
    /// Healthy, draining, unhealthy or ejected.
    pub state: NodeState,
    /// How long the proxy waits for an answer before counting a failure (outlier
    /// ejection); `None` when ejection is off for the node's service.
    pub response_timeout: Option<Duration>,
    /// Live load, shared with the membership table and the proxy.
    pub load: Arc<NodeLoad>,
}

/// The nodes of one service and the selector built over them.
pub struct Group {
    /// Service name.
    pub name: Arc<str>,
    /// The strategy configured for the service.
    pub algorithm: Algorithm,
    /// Members sorted by id; selector indices point into this.
    pub members: Vec<Arc<Member>>,
    /// What the selector was built over; weight 0 marks members taking no new work.
    backends: Arc<[Backend]>,
    /// Built once per snapshot.
    selector: Box<dyn Selector>,
}

impl Member {
    /// Whether the node declared `op` safe to send twice.
    pub fn idempotent(&self, op: &str) -> bool {
        self.idempotent.iter().any(|o| o == op)
    }
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("members", &self.members.len())
            .finish()
    }
}

impl Group {
    /// Picks a member index for `key` (or, without one, by the strategy alone).
    pub fn pick(&self, key: Option<&[u8]>) -> Option<usize> {
        self.selector.pick(key)
    }

    /// Whether member `i` may take new work in this snapshot.
    pub fn eligible(&self, i: usize) -> bool {
        self.backends.get(i).is_some_and(|b| b.weight > 0)
    }

    /// Picks for `key`, avoiding the node `avoid` (a retry after it failed): the
    /// strategy's choice if it differs, else the next eligible member in id order.
    pub fn pick_avoiding(&self, key: Option<&[u8]>, avoid: &str) -> Option<usize> {
        let first = self.pick(key)?;
        if &*self.members[first].id != avoid {
            return Some(first);
        }
        let n = self.members.len();
        (1..n)
            .map(|step| (first + step) % n)
            .find(|&i| self.eligible(i) && &*self.members[i].id != avoid)
    }

    /// Index of the member with this id.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.members.binary_search_by(|m| (*m.id).cmp(id)).ok()
    }
}

/// An immutable membership view; cheap to share between every connection.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with every rebuild; lets caches notice a change.
    pub generation: u64,
    /// Every member, sorted by id.
    pub nodes: Vec<Arc<Member>>,
    /// Groups by service name.
    services: BTreeMap<Arc<str>, Arc<Group>>,
    /// `(prefix, group)`, longest prefix first, so the first match wins.
    routes: Vec<(String, Arc<Group>)>,
}

/// How to build a snapshot's selectors.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Strategy for services without an override.
    pub default_algorithm: Algorithm,
    /// Per-service strategies.
    pub service_algorithms: BTreeMap<String, Algorithm>,
    /// Virtual nodes and bounded-load factor.
    pub selection: selection::Options,
}

impl Snapshot {
    /// Builds the view over `members` (any order).
    pub fn build(generation: u64, mut members: Vec<Arc<Member>>, opts: &BuildOptions) -> Self {
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let mut by_service: BTreeMap<Arc<str>, Vec<Arc<Member>>> = BTreeMap::new();
        for m in &members {
            by_service
                .entry(m.service.clone())
                .or_default()
                .push(m.clone());
        }
        let mut services = BTreeMap::new();
        let mut routes = Vec::new();
        for (name, group_members) in by_service {
            // Unhealthy and ejected nodes are a last resort: used only when nothing
            // healthy is left.
            let any_healthy = group_members.iter().any(|m| m.state == NodeState::Healthy);
            let backends: Arc<[Backend]> = group_members
                .iter()
                .map(|m| {
                    let weight = match m.state {
                        NodeState::Healthy => m.weight,
                        NodeState::Unhealthy | NodeState::Ejected if !any_healthy => m.weight,
                        _ => 0,
                    };
                    Backend {
                        id: m.id.clone(),
                        weight,
                        inflight: m.load.inflight.total.clone(),
                        conns: m.load.conns.total.clone(),
                    }
                })
                .collect();
            let algorithm = opts
                .service_algorithms
                .get(&*name)
                .copied()
                .unwrap_or(opts.default_algorithm);
            let selector = selection::build(algorithm, backends.clone(), &opts.selection);
            let mut prefixes: Vec<String> = group_members
                .iter()
                .flat_map(|m| {
                    if m.ops.is_empty() {
                        vec![String::new()]
                    } else {
                        m.ops.clone()
                    }
                })
                .collect();
            prefixes.sort();
            prefixes.dedup();
            let group = Arc::new(Group {
                name: name.clone(),
                algorithm,
                members: group_members,
                backends,
                selector,
            });
            routes.extend(prefixes.into_iter().map(|p| (p, group.clone())));
            services.insert(name, group);
        }
        // Longest prefix first; among equal prefixes the service name decides, so
        // every balancer resolves a conflict the same way.
        routes.sort_by(|a, b| {
            b.0.len()
                .cmp(&a.0.len())
                .then_with(|| a.0.cmp(&b.0))
                .then_with(|| a.1.name.cmp(&b.1.name))
        });
        Snapshot {
            generation,
            nodes: members,
            services,
            routes,
        }
    }

    /// The group serving operation `op`: the longest `ops` prefix that matches.
    pub fn route(&self, op: &str) -> Option<&Arc<Group>> {
        self.routes
            .iter()
            .find(|(prefix, _)| op.starts_with(prefix.as_str()))
            .map(|(_, g)| g)
    }

    /// The group of service `name`.
    pub fn service(&self, name: &str) -> Option<&Arc<Group>> {
        self.services.get(name)
    }

    /// Service names, sorted.
    pub fn service_names(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(|k| &**k)
    }

    /// Members that may take new work.
    pub fn healthy(&self) -> usize {
        self.nodes
            .iter()
            .filter(|m| m.state == NodeState::Healthy)
            .count()
    }
}
