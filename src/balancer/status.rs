//! What the balancer's admin listener shows: readiness, the status page and its data,
//! and membership metrics derived from the live snapshot.

use super::membership::Membership;
use super::snapshot::{NodeState, Snapshot};
use crate::admin::{Check, Checks};
use crate::metrics as m;
use crate::ring::Ring;
use crate::runtime::BoxFuture;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The status page, served from the binary (no external assets).
const PAGE: &str = include_str!("../admin/status.html");

/// Traffic shares are computed over at least this window.
const TRAFFIC_WINDOW: Duration = Duration::from_secs(2);

/// Ready while at least one node is healthy.
struct HealthyNodes(Arc<Membership>);

impl Check for HealthyNodes {
    fn name(&self) -> &'static str {
        "nodes"
    }

    fn check(&self) -> BoxFuture<'static, Result<(), String>> {
        let healthy = self.0.snapshot().healthy();
        Box::pin(std::future::ready(if healthy > 0 {
            Ok(())
        } else {
            Err("no healthy node registered".to_owned())
        }))
    }
}

/// Recent-traffic bookkeeping: request totals per node at the start of the window.
struct Traffic {
    /// When `base` was taken.
    since: Instant,
    /// Totals (proxied + assigned) per node at `since`.
    base: HashMap<String, u64>,
    /// Shares and rate computed at the end of the last full window.
    last: (HashMap<String, f64>, f64),
}

/// Ring shares cached per snapshot generation (building a ring is not free).
struct RingShares {
    generation: u64,
    shares: HashMap<String, f64>,
}

/// The admin application of a balancer.
pub fn admin_app(membership: &Arc<Membership>, name: String, started: Instant) -> Checks {
    let metrics_view = membership.clone();
    m::add_collector(move || publish_metrics(&metrics_view.snapshot()));
    let view = membership.clone();
    let traffic = Mutex::new(Traffic {
        since: Instant::now(),
        base: HashMap::new(),
        last: (HashMap::new(), 0.0),
    });
    let rings = Mutex::new(RingShares {
        generation: u64::MAX,
        shares: HashMap::new(),
    });
    Checks {
        checks: vec![Arc::new(HealthyNodes(membership.clone()))],
        status: Some(Box::new(move || {
            let snap = view.snapshot();
            let ring = ring_shares(&snap, &view, &rings);
            let (shares, rps) = traffic_shares(&snap, &traffic);
            let nodes: Vec<Value> = snap
                .nodes
                .iter()
                .map(|n| {
                    json!({
                        "node": &*n.id, "addr": &*n.addr, "service": &*n.service,
                        "weight": n.weight, "state": n.state.as_str(),
                        "inflight": n.load.inflight.get(), "conns": n.load.conns.get(),
                        "proxied": n.load.proxied.load(Ordering::Relaxed),
                        "assigned": n.load.assigned.load(Ordering::Relaxed),
                        "ring_share": ring.get(&*n.id).copied().unwrap_or(0.0),
                        "traffic_share": shares.get(&*n.id).copied().unwrap_or(0.0),
                    })
                })
                .collect();
            let events: Vec<Value> = view
                .events()
                .into_iter()
                .map(|e| json!({"at_ms": e.unix_ms, "node": e.node, "event": e.change, "reason": e.reason}))
                .collect();
            json!({
                "balancer": name,
                "algorithm": view.settings().build.default_algorithm.as_str(),
                "uptime_s": started.elapsed().as_secs_f64(),
                "generation": snap.generation,
                "requests_per_s": rps,
                "nodes": nodes,
                "events": events,
            })
        })),
        page: Some(PAGE),
    }
}

/// Share of its service's hash ring each node owns (healthy and draining alike: the
/// ring is what a key maps to before load decides).
fn ring_shares(
    snap: &Snapshot,
    membership: &Membership,
    cache: &Mutex<RingShares>,
) -> HashMap<String, f64> {
    let mut cache = cache.lock().expect("ring share lock");
    if cache.generation != snap.generation {
        let vnodes = membership.settings().build.selection.vnodes;
        let mut shares = HashMap::new();
        for service in snap.service_names() {
            let Some(group) = snap.service(service) else {
                continue;
            };
            let ring = Ring::new(
                group
                    .members
                    .iter()
                    .filter(|m| !matches!(m.state, NodeState::Unhealthy | NodeState::Ejected))
                    .map(|m| (m.id.to_string(), m.weight.max(1))),
                vnodes,
            );
            for (id, share) in ring.shares() {
                shares.insert(id.clone(), share);
            }
        }
        cache.generation = snap.generation;
        cache.shares = shares;
    }
    cache.shares.clone()
}

/// Each node's share of the requests sent or assigned over the last window, and the
/// balancer's total rate over it.
fn traffic_shares(snap: &Snapshot, traffic: &Mutex<Traffic>) -> (HashMap<String, f64>, f64) {
    let mut t = traffic.lock().expect("traffic lock");
    let elapsed = t.since.elapsed();
    if elapsed < TRAFFIC_WINDOW {
        return t.last.clone();
    }
    let totals: HashMap<String, u64> = snap
        .nodes
        .iter()
        .map(|n| {
            let total =
                n.load.proxied.load(Ordering::Relaxed) + n.load.assigned.load(Ordering::Relaxed);
            (n.id.to_string(), total)
        })
        .collect();
    let deltas: HashMap<&String, u64> = totals
        .iter()
        .map(|(id, total)| {
            (
                id,
                total.saturating_sub(t.base.get(id).copied().unwrap_or(0)),
            )
        })
        .collect();
    let sum: u64 = deltas.values().sum();
    let shares = deltas
        .into_iter()
        .map(|(id, d)| {
            (
                id.clone(),
                if sum == 0 { 0.0 } else { d as f64 / sum as f64 },
            )
        })
        .collect();
    t.last = (shares, sum as f64 / elapsed.as_secs_f64());
    t.base = totals;
    t.since = Instant::now();
    t.last.clone()
}

/// Sets the gauges and per-node totals from the snapshot (run before each render).
fn publish_metrics(snap: &Snapshot) {
    for state in NodeState::ALL {
        let n = snap.nodes.iter().filter(|n| n.state == state).count();
        metrics::gauge!(m::BALANCER_NODES, "state" => state.as_str()).set(n as f64);
    }
    // Every service seen since start keeps its series, at 0 once it has emptied, so
    // that an alert on "no healthy node" sees the drop instead of a vanished series.
    static SERVICES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SERVICES.lock().unwrap_or_else(|p| p.into_inner());
    for n in &snap.nodes {
        if !seen.iter().any(|s| **s == *n.service) {
            seen.push(n.service.to_string());
        }
    }
    for service in seen.iter() {
        for state in NodeState::ALL {
            let count = snap
                .nodes
                .iter()
                .filter(|n| *n.service == **service && n.state == state)
                .count();
            metrics::gauge!(m::BALANCER_SERVICE_NODES, "service" => service.clone(), "state" => state.as_str())
                .set(count as f64);
        }
    }
    drop(seen);
    for n in &snap.nodes {
        let node = n.id.to_string();
        // Every member has its ejection series from the start (at 0), so that an
        // increase is seen from the first ejection on.
        metrics::counter!(m::BALANCER_EJECTIONS, "service" => n.service.to_string(), "node" => node.clone())
            .increment(0);
        metrics::counter!(m::BALANCER_PROXIED, "node" => node.clone())
            .absolute(n.load.proxied.load(Ordering::Relaxed));
        metrics::counter!(m::BALANCER_ASSIGNMENTS, "node" => node)
            .absolute(n.load.assigned.load(Ordering::Relaxed));
    }
}
