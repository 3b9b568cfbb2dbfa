//! Membership shared with other balancers through etcd ([`EtcdShared`], PROTOCOL §10),
//! over `http://` or, with [`tls_settings`], `https://` (and a client certificate).
//!
//! Each balancer holds one etcd lease of `lease_ttl` (rounded up to whole seconds)
//! and keeps it alive; every registration it holds is the key
//! `<prefix>nodes/<service>/<node>`, a JSON [`Registration`], attached to that lease.
//! A key is written when the registration changes shape or state (join, drain,
//! weight, unhealthy, recovered), never on a plain heartbeat, and deleted when the
//! lease ends here, only if it is still attached to this balancer's lease (the node
//! may have moved to another balancer meanwhile). If the lease is lost (etcd expired
//! it while this balancer could not reach a quorum), a new one is granted and every
//! registration written again.
//!
//! Every balancer reads the prefix and then watches it from the next revision,
//! feeding other balancers' registrations to [`Membership::set_remote_leased`]. A
//! compaction, a lost stream or an endpoint without a leader starts over with a
//! fresh read; so does a watched endpoint that stops answering the quorum probe (a
//! frozen or cut-off member keeps its connections open but sends nothing). A remote
//! registration is alive while its key exists: etcd expires it
//! with its holder's lease, so no wall clock is compared across hosts.
//!
//! etcd out of reach never stops a balancer: it serves the leases it holds and the
//! last view it read, and its `/readyz` fails ([`EtcdShared::check`]) while no call
//! that needs a quorum has succeeded for `lease_ttl`.

mod client;
mod transport;
mod worker;

use super::{Discovery, Membership, NodeRecord};
use crate::admin::Check;
use crate::runtime::{BoxFuture, Shutdown};
use client::Client;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Bound on one call to etcd (per endpoint tried).
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// One registration as stored in etcd (PROTOCOL §10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Node id.
    pub node: String,
    /// Service name.
    pub service: String,
    /// Address the node is reached at.
    pub addr: String,
    /// Selection weight.
    pub weight: u32,
    /// Operation prefixes served; empty = all.
    #[serde(default)]
    pub ops: Vec<String>,
    /// Operations the node declared safe to send twice.
    #[serde(default)]
    pub idempotent: Vec<String>,
    /// `up`, `draining` or `unhealthy`, as the holding balancer sees the node.
    pub state: String,
    /// The balancer holding the registration (`<host>/<registration address>/<pid>`).
    pub balancer: String,
}

impl Registration {
    fn new(r: &NodeRecord, unhealthy: bool, balancer: &str) -> Registration {
        let state = if r.draining {
            "draining"
        } else if unhealthy {
            "unhealthy"
        } else {
            "up"
        };
        Registration {
            node: r.node.clone(),
            service: r.service.clone(),
            addr: r.addr.clone(),
            weight: r.weight,
            ops: r.ops.clone(),
            idempotent: r.idempotent.clone(),
            state: state.into(),
            balancer: balancer.into(),
        }
    }

    /// The node record it stands for, and whether its holder sees it unhealthy.
    fn record(self) -> (NodeRecord, bool) {
        let unhealthy = self.state == "unhealthy";
        let record = NodeRecord {
            draining: self.state == "draining",
            node: self.node,
            service: self.service,
            addr: self.addr,
            weight: self.weight,
            ops: self.ops,
            idempotent: self.idempotent,
            conns: 0,
            inflight: 0,
            heartbeat_unix_ms: 0,
        };
        (record, unhealthy)
    }
}

/// A registration held here, as the writer should store it.
#[derive(Debug, Clone)]
struct Held {
    /// The node's record.
    record: NodeRecord,
    /// Missing heartbeats.
    unhealthy: bool,
}

/// Whether etcd answered calls that need a quorum, for `/readyz`.
#[derive(Debug)]
struct Health {
    /// Last success of such a call.
    last_ok: Instant,
    /// Last failure, if any since.
    last_error: Option<String>,
}

/// Membership shared through etcd. The membership lock is never held across network
/// I/O: changes are noted here and written by [`EtcdShared::run`]'s writer.
pub struct EtcdShared {
    /// The cluster's endpoints.
    client: Client,
    /// Key prefix (`balancer.etcd_prefix`).
    prefix: String,
    /// Lease lifetime asked of etcd.
    ttl: Duration,
    /// This balancer's name in the records it writes; set when it starts serving.
    id: OnceLock<String>,
    /// Registrations held here, by node id: what etcd should hold for this balancer.
    desired: Mutex<HashMap<String, Held>>,
    /// Rung when `desired` changes; the writer waits on it.
    bell: async_channel::Sender<()>,
    /// The writer's end of the bell.
    woken: async_channel::Receiver<()>,
    /// Quorum reachability.
    health: Mutex<Health>,
    /// The endpoint the watch is open on (`usize::MAX`: none), which the probe checks.
    watching: AtomicUsize,
    /// Rung by the probe when that endpoint stops answering (frozen, cut off, or
    /// without a leader): the watch would stay open and silent, so it starts over.
    stale_watch: (async_channel::Sender<()>, async_channel::Receiver<()>),
}

impl EtcdShared {
    /// A handle for the cluster at `endpoints` (no connection is made yet);
    /// `https://` endpoints are reached under `tls` ([`tls_settings`]).
    pub fn new(
        endpoints: &[String],
        tls: Option<Arc<rustls::ClientConfig>>,
        prefix: &str,
        ttl: Duration,
    ) -> Arc<EtcdShared> {
        let (bell, woken) = async_channel::bounded(1);
        Arc::new(EtcdShared {
            client: Client::new(endpoints, tls, CALL_TIMEOUT),
            prefix: prefix.to_owned(),
            ttl,
            id: OnceLock::new(),
            desired: Mutex::default(),
            bell,
            woken,
            health: Mutex::new(Health {
                last_ok: Instant::now(),
                last_error: None,
            }),
            watching: AtomicUsize::new(usize::MAX),
            stale_watch: async_channel::bounded(1),
        })
    }

    /// Writes the registrations held here and follows the others' into `membership`,
    /// as balancer `id`, until `shutdown`. `probe` is how often quorum is checked.
    pub async fn run(
        self: Arc<Self>,
        membership: Arc<Membership>,
        id: String,
        probe: Duration,
        shutdown: Shutdown,
    ) {
        let _ = self.id.set(id);
        tracing::info!(
            endpoints = %self.client.endpoints(),
            prefix = %self.prefix,
            balancer = %self.id(),
            "shared membership: etcd"
        );
        let writer = crate::runtime::spawn_local(self.clone().write_loop(shutdown.clone()));
        let prober = crate::runtime::spawn_local(self.clone().probe_loop(probe, shutdown.clone()));
        self.watch_loop(membership, shutdown).await;
        writer.await;
        prober.await;
    }

    /// The `/readyz` check: fails while etcd has not answered a call that needs a
    /// quorum for `lease_ttl`.
    pub fn check(self: &Arc<Self>) -> Arc<dyn Check> {
        Arc::new(QuorumCheck(self.clone()))
    }

    fn id(&self) -> &str {
        self.id.get().map(String::as_str).unwrap_or("")
    }

    fn key(&self, r: &NodeRecord) -> String {
        format!("{}nodes/{}/{}", self.prefix, r.service, r.node)
    }

    fn desired(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        self.desired.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ring(&self) {
        // Full means the writer has a wake-up coming already.
        let _ = self.bell.try_send(());
    }

    /// Notes a call that needed a quorum, and keeps `dsf_readiness_check{check="etcd"}`
    /// current without waiting for a `/readyz` (its alert fires from scrapes alone).
    fn quorum(&self, result: Result<(), &crate::balancer::BalancerError>) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                h.last_ok = Instant::now();
                h.last_error = None;
            }
            Err(e) => h.last_error = Some(e.to_string()),
        }
        let reachable = h.last_ok.elapsed() <= self.ttl;
        drop(h);
        crate::metrics::set_readiness_check("etcd", reachable);
    }

    /// Why etcd counts as out of reach, if it does.
    fn unreachable(&self) -> Option<String> {
        let h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let silent = h.last_ok.elapsed();
        (silent > self.ttl).then(|| {
            format!(
                "etcd: no quorum reachable at {} for {} ms{}",
                self.client.endpoints(),
                silent.as_millis(),
                h.last_error
                    .as_ref()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            )
        })
    }
}

impl Discovery for EtcdShared {
    fn announce(&self, record: &NodeRecord) {
        self.desired().insert(
            record.node.clone(),
            Held {
                record: record.clone(),
                unhealthy: false,
            },
        );
        self.ring();
    }

    fn renew(&self, record: &NodeRecord) {
        // Heartbeats change nothing etcd holds; only a registration missing here
        // (taken over from a predecessor) is written.
        let mut d = self.desired();
        if !d.contains_key(&record.node) {
            d.insert(
                record.node.clone(),
                Held {
                    record: record.clone(),
                    unhealthy: false,
                },
            );
            drop(d);
            self.ring();
        }
    }

    fn withdraw(&self, node: &str) {
        self.desired().remove(node);
        self.ring();
    }

    fn health(&self, record: &NodeRecord, healthy: bool) {
        if let Some(h) = self.desired().get_mut(&record.node) {
            h.unhealthy = !healthy;
        }
        self.ring();
    }
}

/// The TLS settings for the `https://` endpoints of `balancer.etcd`, from
/// `balancer.etcd_tls_ca` (empty: the system's roots) and the client certificate
/// `balancer.etcd_tls_cert` / `etcd_tls_key`; `None` when every endpoint is `http://`.
pub fn tls_settings(
    b: &crate::config::BalancerConfig,
) -> Result<Option<Arc<rustls::ClientConfig>>, crate::tls::TlsError> {
    if !b.etcd.iter().any(|e| e.starts_with("https://")) {
        return Ok(None);
    }
    crate::tls::client_config(crate::tls::ClientFiles {
        ca: ("balancer.etcd_tls_ca", &b.etcd_tls_ca),
        cert: ("balancer.etcd_tls_cert", &b.etcd_tls_cert),
        key: ("balancer.etcd_tls_key", &b.etcd_tls_key),
    })
    .map(Some)
}

/// `/readyz`: etcd's quorum within reach.
struct QuorumCheck(Arc<EtcdShared>);

impl Check for QuorumCheck {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn check(&self) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(std::future::ready(match self.0.unreachable() {
            Some(why) => Err(why),
            None => Ok(()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_carries_the_state_its_holder_sees() {
        let mut r = NodeRecord::for_test("n1", "127.0.0.1:1");
        let up = Registration::new(&r, false, "lb-a");
        assert_eq!(up.state, "up");
        assert_eq!(Registration::new(&r, true, "lb-a").state, "unhealthy");
        r.draining = true;
        let draining = Registration::new(&r, true, "lb-a");
        assert_eq!(draining.state, "draining");
        let json = serde_json::to_value(&draining).unwrap();
        for field in [
            "node", "service", "addr", "weight", "ops", "state", "balancer",
        ] {
            assert!(json.get(field).is_some(), "{field} missing from {json}");
        }
        let (back, unhealthy) = draining.record();
        assert!(back.draining && !unhealthy);
        assert_eq!(
            up.record(),
            (NodeRecord::for_test("n1", "127.0.0.1:1"), false)
        );
    }
}
