//! Node membership: leases renewed by heartbeats, drain, removal, and the live snapshot.
//!
//! The table below the lock is the source of truth for leases held by *this* balancer
//! (`local`) and, with shared membership, for what other balancers announced
//! (`remote`). Readers never take the lock: they load the current [`Snapshot`] from an
//! `ArcSwap`. The snapshot, and with it every selector, is rebuilt only when the
//! membership's shape changes — who is a member, where, with which weight, ops and
//! state — never on a plain heartbeat.
//!
//! A lease ends when its node deregisters, when the registration connection that
//! holds it closes, or when `lease_ttl` passes without a heartbeat. A node that has
//! missed two heartbeats (but still holds its lease) is `unhealthy` and takes new work
//! only if its service has nothing healthy left. A node the proxy cannot reach is
//! `ejected` for a while even though it heartbeats ([`outlier`], `eject.rs`). Every
//! change is logged with the node and the reason, and the last [`EVENT_LOG_LEN`] are
//! kept for status views.
//!
//! A node announced by another balancer reaches this one a little late (its renewal
//! is written after its heartbeat, and read here once per heartbeat interval), so its
//! silence is counted from the later of its last heartbeat and the moment this
//! balancer last saw that heartbeat advance: a late copy is not a missed heartbeat.
//! A node announced through etcd ([`Membership::set_remote_leased`]) is not aged here
//! at all: etcd's lease decides its lifetime, so no clocks are compared across hosts.

pub mod discovery;
mod eject;
pub mod etcd;
mod handover;
mod live;
pub mod outlier;
mod publish;
pub mod record;
pub mod redis;
mod settings;

pub use settings::{Event, Settings};

pub use discovery::{Discovery, InMemory};
pub use record::NodeRecord;

use super::error::BalancerError;
use super::snapshot::{NodeLoad, NodeState, Snapshot};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many membership events are kept for status views.
pub const EVENT_LOG_LEN: usize = 256;

/// What makes a member's place in the snapshot: id, service, address, weight, op
/// prefixes, idempotent operations and state. A change of any rebuilds the snapshot.
type Shape = (
    String,
    String,
    String,
    u32,
    Vec<String>,
    Vec<String>,
    NodeState,
);

/// A lease held by this balancer.
#[derive(Debug)]
struct Lease {
    /// The node as registered, with its latest load.
    record: NodeRecord,
    /// The registration connection holding it; closing that connection ends it.
    conn: u64,
    /// Last registration or heartbeat.
    renewed: Instant,
}

/// Everything behind the lock.
#[derive(Default)]
struct Table {
    /// Leases held here, by node id.
    local: BTreeMap<String, Lease>,
    /// Nodes announced by other balancers, by node id.
    remote: BTreeMap<String, Remote>,
    /// Nodes whose lease ended here, with when, so that a late copy in the shared
    /// store does not bring them back.
    withdrawn: HashMap<String, u64>,
    /// Live load per member, kept across rebuilds.
    loads: HashMap<String, Arc<NodeLoad>>,
    /// Ejection history of members the proxy has ejected at least once.
    outliers: HashMap<String, outlier::Ejection>,
    /// The shape the current snapshot was built from.
    shape: Vec<Shape>,
    /// Rebuilds so far.
    generation: u64,
}

/// A node announced by another balancer.
#[derive(Debug)]
struct Remote {
    /// The latest record read.
    record: NodeRecord,
    /// When this balancer first read the record's current heartbeat.
    advanced: Instant,
    /// What keeps the record alive.
    held: Held,
}

/// What keeps a remote record alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// Heartbeats written into the record (Redis): aged by `heartbeat_unix_ms`.
    Heartbeat,
    /// A lease in the shared store (etcd): alive while its key exists, in the health
    /// its holder wrote (`unhealthy`), never aged by this balancer's clock.
    Server {
        /// The holder saw the node miss heartbeats.
        unhealthy: bool,
    },
}

impl Remote {
    /// Time without a heartbeat, as far as this balancer can tell at `at`; none for a
    /// record the shared store keeps alive.
    fn silent(&self, at: Instant) -> Duration {
        if let Held::Server { .. } = self.held {
            return Duration::ZERO;
        }
        since_heartbeat(&self.record, at).min(at.saturating_duration_since(self.advanced))
    }
}

/// Time from `r`'s heartbeat (the writing balancer's clock) to `at` (this one's).
fn since_heartbeat(r: &NodeRecord, at: Instant) -> Duration {
    Duration::from_millis(unix_ms_at(at).saturating_sub(r.heartbeat_unix_ms))
}

/// The membership of one balancer.
pub struct Membership {
    /// Timing and selector options; a reload replaces them ([`Membership::reconfigure`]).
    settings: ArcSwap<Settings>,
    /// Leases and announcements; writers only.
    table: Mutex<Table>,
    /// What readers use.
    current: ArcSwap<Snapshot>,
    /// Recent changes.
    events: Mutex<VecDeque<Event>>,
    /// Where local lease changes are published (Redis, or nowhere).
    discovery: Arc<dyn Discovery>,
    /// Set when this balancer drains or hands over: leases no longer end (see
    /// [`Membership::freeze`]).
    frozen: std::sync::atomic::AtomicBool,
}

impl Membership {
    /// An empty membership publishing local changes to `discovery`.
    pub fn new(settings: Settings, discovery: Arc<dyn Discovery>) -> Membership {
        Membership {
            settings: ArcSwap::from_pointee(settings),
            table: Mutex::default(),
            current: ArcSwap::from_pointee(Snapshot::default()),
            events: Mutex::default(),
            discovery,
            frozen: Default::default(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// The current view (lock-free).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A cheap guard on the current view, for the hot path.
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Recent membership changes, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .expect("events lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Takes (or retakes) a lease for `record` on registration connection `conn`.
    pub fn register(&self, conn: u64, record: NodeRecord) -> Result<(), BalancerError> {
        self.register_at(conn, record, Instant::now())
    }

    fn register_at(
        &self,
        conn: u64,
        mut record: NodeRecord,
        at: Instant,
    ) -> Result<(), BalancerError> {
        record.heartbeat_unix_ms = unix_ms_at(at);
        let mut t = self.lock();
        t.withdrawn.remove(&record.node);
        let change = if t.local.contains_key(&record.node) || t.remote.contains_key(&record.node) {
            "rejoined"
        } else {
            "joined"
        };
        let reason = format!(
            "registered: service {} at {} weight {}",
            record.service, record.addr, record.weight
        );
        self.discovery.announce(&record);
        let node = record.node.clone();
        t.local.insert(
            node.clone(),
            Lease {
                record,
                conn,
                renewed: at,
            },
        );
        self.event(&node, change, reason);
        self.refresh(&mut t, at);
        Ok(())
    }

    /// Renews `node`'s lease and records its load.
    pub fn heartbeat(
        &self,
        conn: u64,
        node: &str,
        conns: u64,
        inflight: u64,
    ) -> Result<(), BalancerError> {
        self.heartbeat_at(conn, node, conns, inflight, Instant::now())
    }

    fn heartbeat_at(
        &self,
        conn: u64,
        node: &str,
        conns: u64,
        inflight: u64,
        at: Instant,
    ) -> Result<(), BalancerError> {
        let mut t = self.lock();
        let lease = owned(&mut t, conn, node)?;
        lease.renewed = at;
        lease.record.conns = conns;
        lease.record.inflight = inflight;
        lease.record.heartbeat_unix_ms = unix_ms_at(at);
        self.discovery.renew(&lease.record);
        if let Some(load) = t.loads.get(node) {
            load.report(conns, inflight);
        }
        // An unhealthy node that speaks again recovers; otherwise nothing changes shape,
        // so the common heartbeat costs no rebuild and no scan.
        let was_unhealthy = t
            .shape
            .binary_search_by(|s| s.0.as_str().cmp(node))
            .is_ok_and(|i| t.shape[i].6 == NodeState::Unhealthy);
        if was_unhealthy {
            self.refresh(&mut t, at);
        }
        Ok(())
    }

    /// Stops new work going to `node`; its lease stays until it deregisters.
    pub fn drain(&self, conn: u64, node: &str) -> Result<(), BalancerError> {
        let at = Instant::now();
        let mut t = self.lock();
        let lease = owned(&mut t, conn, node)?;
        if !lease.record.draining {
            lease.record.draining = true;
            lease.renewed = at;
            self.discovery.announce(&lease.record);
            self.event(node, "draining", "lb.drain".into());
            self.refresh(&mut t, at);
        }
        Ok(())
    }

    /// Ends `node`'s lease at its own request.
    pub fn deregister(&self, conn: u64, node: &str) -> Result<(), BalancerError> {
        let mut t = self.lock();
        owned(&mut t, conn, node)?;
        self.remove_local(&mut t, node, "lb.deregister".into());
        self.refresh(&mut t, Instant::now());
        Ok(())
    }

    /// Ends every lease held by registration connection `conn` (it closed).
    pub fn connection_closed(&self, conn: u64) {
        if self.is_frozen() {
            return;
        }
        let mut t = self.lock();
        let gone: Vec<String> = t
            .local
            .iter()
            .filter(|(_, l)| l.conn == conn)
            .map(|(id, _)| id.clone())
            .collect();
        if gone.is_empty() {
            return;
        }
        for node in gone {
            self.remove_local(&mut t, &node, "registration connection closed".into());
        }
        self.refresh(&mut t, Instant::now());
    }

    /// Ends expired leases and updates health; run every fraction of a TTL.
    pub fn sweep(&self) {
        self.sweep_at(Instant::now());
    }

    fn sweep_at(&self, at: Instant) {
        if self.is_frozen() {
            return;
        }
        let ttl = self.settings.load().lease_ttl;
        let mut t = self.lock();
        let expired: Vec<(String, Duration)> = t
            .local
            .iter()
            .map(|(id, l)| (id.clone(), at.saturating_duration_since(l.renewed)))
            .filter(|(_, silent)| *silent > ttl)
            .collect();
        for (node, silent) in expired {
            metrics::counter!(crate::metrics::LEASE_EXPIRIES).increment(1);
            let reason = format!("lease expired: no heartbeat for {} ms", silent.as_millis());
            self.remove_local(&mut t, &node, reason);
        }
        let now_ms = unix_ms_at(at);
        let stale: Vec<String> = t
            .remote
            .values()
            .filter(|r| r.silent(at) > ttl)
            .map(|r| r.record.node.clone())
            .collect();
        for node in stale {
            t.remote.remove(&node);
            if !t.local.contains_key(&node) {
                self.event(&node, "left", "lease expired at another balancer".into());
            }
        }
        let keep = ttl.as_millis() as u64 * 2;
        t.withdrawn
            .retain(|_, when| now_ms.saturating_sub(*when) < keep);
        self.refresh(&mut t, at);
    }

    /// Replaces what other balancers announced (a full read of the shared store).
    pub fn set_remote(&self, records: Vec<NodeRecord>) {
        self.set_remote_at(records, Instant::now());
    }

    fn set_remote_at(&self, records: Vec<NodeRecord>, at: Instant) {
        let records = records.into_iter().map(|r| (r, Held::Heartbeat)).collect();
        self.replace_remote(records, at);
    }

    /// Replaces what other balancers announced with records whose lifetime the shared
    /// store keeps (etcd: a record exists while its holder's lease does), each with
    /// whether its holder sees it unhealthy. They are never aged here, so no clock of
    /// another host is compared with this one's.
    pub fn set_remote_leased(&self, records: Vec<(NodeRecord, bool)>) {
        let records = records
            .into_iter()
            .map(|(r, unhealthy)| (r, Held::Server { unhealthy }))
            .collect();
        self.replace_remote(records, Instant::now());
    }

    fn replace_remote(&self, records: Vec<(NodeRecord, Held)>, at: Instant) {
        let mut t = self.lock();
        let mut fresh: BTreeMap<String, Remote> = BTreeMap::new();
        for (r, held) in records {
            // A lease already past its TTL is over, even if its key is still there
            // (Redis has not expired it yet, as right after Redis was paused): taking
            // it would make the node join here and leave at the next sweep.
            if held == Held::Heartbeat && since_heartbeat(&r, at) > self.settings.load().lease_ttl {
                continue;
            }
            // A copy older than a lease ending here is the lease that just ended.
            if held == Held::Heartbeat
                && t.withdrawn
                    .get(&r.node)
                    .is_some_and(|&when| r.heartbeat_unix_ms <= when)
            {
                continue;
            }
            let advanced = match t.remote.get(&r.node) {
                Some(known) if known.record.heartbeat_unix_ms == r.heartbeat_unix_ms => {
                    known.advanced
                }
                _ => at,
            };
            fresh.insert(
                r.node.clone(),
                Remote {
                    record: r,
                    advanced,
                    held,
                },
            );
        }
        for id in t.remote.keys() {
            if !fresh.contains_key(id) && !t.local.contains_key(id) {
                self.event(id, "left", "withdrawn at another balancer".into());
            }
        }
        for (id, Remote { record: r, .. }) in &fresh {
            if !t.remote.contains_key(id) && !t.local.contains_key(id) {
                let reason = format!(
                    "announced by another balancer: service {} at {}",
                    r.service, r.addr
                );
                self.event(id, "joined", reason);
            }
        }
        t.remote = fresh;
        self.refresh(&mut t, at);
    }

    /// Node ids whose lease this balancer holds.
    pub fn local_nodes(&self) -> Vec<String> {
        self.lock().local.keys().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().expect("membership lock")
    }

    fn remove_local(&self, t: &mut Table, node: &str, reason: String) {
        if let Some(lease) = t.local.remove(node) {
            t.remote.remove(node);
            t.withdrawn
                .insert(node.to_owned(), unix_ms_at(Instant::now()));
            self.discovery.withdraw(&lease.record.node);
            self.event(node, "left", reason);
        }
    }

    fn event(&self, node: &str, change: &'static str, reason: String) {
        tracing::info!(node, change, reason = %reason, "membership changed");
        metrics::counter!(crate::metrics::MEMBERSHIP_CHANGES, "change" => change).increment(1);
        let mut events = self.events.lock().expect("events lock");
        if events.len() == EVENT_LOG_LEN {
            events.pop_front();
        }
        events.push_back(Event {
            unix_ms: unix_ms_at(Instant::now()),
            node: node.to_owned(),
            change,
            reason,
        });
    }
}

/// The lease of `node`, if `conn` holds it.
fn owned<'t>(t: &'t mut Table, conn: u64, node: &str) -> Result<&'t mut Lease, BalancerError> {
    match t.local.get_mut(node) {
        Some(l) if l.conn == conn => Ok(l),
        Some(_) => Err(BalancerError::NotOwner(node.to_owned())),
        None => Err(BalancerError::UnknownNode(node.to_owned())),
    }
}

/// Wall-clock milliseconds at monotonic instant `at` (which may lie in the future in tests).
pub fn unix_ms_at(at: Instant) -> u64 {
    let now = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let wall = if at >= now {
        wall + (at - now)
    } else {
        wall.saturating_sub(now - at)
    };
    wall.as_millis() as u64
}

#[cfg(test)]
mod tests;
