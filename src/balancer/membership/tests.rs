//! Leases, states, routing and rebuilds, with time supplied by the test.

use super::*;
use crate::balancer::membership::InMemory;
use crate::balancer::selection::{self, Algorithm};
use crate::balancer::snapshot::BuildOptions;
use std::sync::Mutex as StdMutex;

const TTL: Duration = Duration::from_millis(3000);
const HEARTBEAT: Duration = Duration::from_millis(1000);

fn settings(alg: Algorithm) -> Settings {
    Settings {
        lease_ttl: TTL,
        heartbeat: HEARTBEAT,
        build: BuildOptions {
            default_algorithm: alg,
            service_algorithms: BTreeMap::new(),
            selection: selection::Options::default(),
        },
        outlier: Default::default(),
        service_outliers: BTreeMap::new(),
    }
}

fn membership() -> Membership {
    Membership::new(settings(Algorithm::ConsistentHash), Arc::new(InMemory))
}

fn record(node: &str, service: &str, ops: &[&str]) -> NodeRecord {
    NodeRecord {
        service: service.into(),
        ops: ops.iter().map(|s| s.to_string()).collect(),
        ..NodeRecord::for_test(node, &format!("127.0.0.1:{}", 7000 + node.len()))
    }
}

fn ids(m: &Membership) -> Vec<String> {
    m.snapshot()
        .nodes
        .iter()
        .map(|n| n.id.to_string())
        .collect()
}

fn state_of(m: &Membership, node: &str) -> Option<NodeState> {
    m.snapshot()
        .nodes
        .iter()
        .find(|n| &*n.id == node)
        .map(|n| n.state)
}

/// A heartbeat within the TTL keeps a lease; silence past the TTL ends it, with the reason logged.
#[test]
fn lease_expires_without_heartbeats() {
    let m = membership();
    let t0 = Instant::now();
    m.register_at(1, record("a", "dsf", &[]), t0).unwrap();
    m.register_at(2, record("b", "dsf", &[]), t0).unwrap();
    m.heartbeat_at(1, "a", 3, 1, t0 + Duration::from_millis(2500))
        .unwrap();
    m.sweep_at(t0 + Duration::from_millis(3200));
    assert_eq!(ids(&m), ["a"], "b was silent for 3.2 s > 3 s");
    assert!(m
        .events()
        .iter()
        .any(|e| e.node == "b" && e.change == "left" && e.reason.contains("lease expired")));
    m.sweep_at(t0 + Duration::from_millis(5600));
    assert!(ids(&m).is_empty());
}

/// Two missed heartbeats make a node unhealthy (no new work); a heartbeat brings it back.
#[test]
fn missed_heartbeats_mark_unhealthy_then_recover() {
    let m = membership();
    let t0 = Instant::now();
    m.register_at(1, record("a", "dsf", &[]), t0).unwrap();
    m.register_at(2, record("b", "dsf", &[]), t0).unwrap();
    m.heartbeat_at(1, "a", 0, 0, t0 + Duration::from_millis(2000))
        .unwrap();
    m.sweep_at(t0 + Duration::from_millis(2100));
    assert_eq!(state_of(&m, "a"), Some(NodeState::Healthy));
    assert_eq!(state_of(&m, "b"), Some(NodeState::Unhealthy));
    let group = m.snapshot().service("dsf").unwrap().clone();
    for k in 0..200 {
        let i = group.pick(Some(format!("k{k}").as_bytes())).unwrap();
        assert_eq!(&*group.members[i].id, "a", "unhealthy b takes no new work");
    }
    m.heartbeat_at(2, "b", 0, 0, t0 + Duration::from_millis(2200))
        .unwrap();
    assert_eq!(state_of(&m, "b"), Some(NodeState::Healthy));
    let changes: Vec<_> = m
        .events()
        .into_iter()
        .filter(|e| e.node == "b")
        .map(|e| e.change)
        .collect();
    assert_eq!(changes, ["joined", "unhealthy", "recovered"]);
}

/// When every node of a service is unhealthy they still take work: better late than `no_backend`.
#[test]
fn unhealthy_nodes_are_a_last_resort() {
    let m = membership();
    let t0 = Instant::now();
    m.register_at(1, record("a", "dsf", &[]), t0).unwrap();
    m.sweep_at(t0 + Duration::from_millis(2500));
    assert_eq!(state_of(&m, "a"), Some(NodeState::Unhealthy));
    assert!(m.snapshot().service("dsf").unwrap().pick(None).is_some());
}

/// A drained node keeps its lease but gets nothing new; deregister ends the lease.
#[test]
fn drain_then_deregister() {
    let m = membership();
    m.register(1, record("a", "dsf", &[])).unwrap();
    m.register(2, record("b", "dsf", &[])).unwrap();
    m.drain(1, "a").unwrap();
    assert_eq!(state_of(&m, "a"), Some(NodeState::Draining));
    let group = m.snapshot().service("dsf").unwrap().clone();
    for k in 0..200 {
        let i = group.pick(Some(format!("k{k}").as_bytes())).unwrap();
        assert_eq!(&*group.members[i].id, "b");
    }
    m.deregister(1, "a").unwrap();
    assert_eq!(ids(&m), ["b"]);
    assert!(matches!(
        m.heartbeat(1, "a", 0, 0),
        Err(BalancerError::UnknownNode(_))
    ));
}

/// Closing a registration connection ends its leases at once, and only its own.
#[test]
fn connection_close_removes_only_its_leases() {
    let m = membership();
    m.register(1, record("a", "dsf", &[])).unwrap();
    m.register(2, record("b", "dsf", &[])).unwrap();
    m.connection_closed(1);
    assert_eq!(ids(&m), ["b"]);
    // A node that re-registered over a new connection outlives its old connection.
    m.register(3, record("b", "dsf", &[])).unwrap();
    m.connection_closed(2);
    assert_eq!(ids(&m), ["b"]);
    assert!(m
        .events()
        .iter()
        .any(|e| e.node == "a" && e.reason == "registration connection closed"));
}

/// Only the connection holding a lease may renew, drain or end it.
#[test]
fn leases_belong_to_their_connection() {
    let m = membership();
    m.register(1, record("a", "dsf", &[])).unwrap();
    assert!(matches!(m.drain(2, "a"), Err(BalancerError::NotOwner(_))));
    assert!(matches!(
        m.deregister(2, "a"),
        Err(BalancerError::NotOwner(_))
    ));
    assert_eq!(state_of(&m, "a"), Some(NodeState::Healthy));
}

/// Heartbeats update load without rebuilding the snapshot; joins and leaves rebuild it.
#[test]
fn rebuild_only_on_membership_change() {
    let m = membership();
    m.register(1, record("a", "dsf", &[])).unwrap();
    let g1 = m.snapshot().generation;
    for i in 0..10 {
        m.heartbeat(1, "a", i, i * 2).unwrap();
    }
    let snap = m.snapshot();
    assert_eq!(snap.generation, g1, "heartbeats must not rebuild");
    assert_eq!(
        snap.nodes[0].load.inflight.get(),
        18,
        "but their load shows"
    );
    m.register(2, record("b", "dsf", &[])).unwrap();
    assert_eq!(m.snapshot().generation, g1 + 1);
    m.sweep();
    assert_eq!(
        m.snapshot().generation,
        g1 + 1,
        "a sweep with no change is free"
    );
}

/// The proxy's own in-flight count and the node's reported one are combined, never doubled.
#[test]
fn load_counters_combine_own_and_reported() {
    let m = membership();
    m.register(1, record("a", "dsf", &[])).unwrap();
    let load = m.snapshot().nodes[0].load.clone();
    load.inflight.add();
    load.inflight.add();
    m.heartbeat(1, "a", 0, 5).unwrap();
    assert_eq!(load.inflight.get(), 5, "2 own + 3 more the node reported");
    load.inflight.sub();
    load.inflight.sub();
    assert_eq!(load.inflight.get(), 3);
    m.heartbeat(1, "a", 0, 0).unwrap();
    assert_eq!(load.inflight.get(), 0);
}

/// Requests go to the service with the longest matching `ops` prefix; "" serves the rest.
#[test]
fn longest_prefix_routing() {
    let m = membership();
    m.register(1, record("u1", "user", &["user.", "sys.ping"]))
        .unwrap();
    m.register(2, record("b1", "blacklist", &["blacklist.", "sys."]))
        .unwrap();
    m.register(3, record("d1", "dsf", &[])).unwrap();
    let snap = m.snapshot();
    let svc = |op: &str| snap.route(op).map(|g| g.name.to_string());
    assert_eq!(svc("user.login").as_deref(), Some("user"));
    assert_eq!(svc("sys.ping").as_deref(), Some("user"));
    assert_eq!(svc("sys.echo").as_deref(), Some("blacklist"));
    assert_eq!(svc("blacklist.query").as_deref(), Some("blacklist"));
    assert_eq!(svc("collector.report").as_deref(), Some("dsf"));
    m.connection_closed(3);
    assert_eq!(
        m.snapshot()
            .route("collector.report")
            .map(|g| g.name.to_string()),
        None
    );
}

/// A service's algorithm override applies to that service only.
#[test]
fn per_service_algorithm() {
    let mut s = settings(Algorithm::ConsistentHash);
    s.build
        .service_algorithms
        .insert("user".into(), Algorithm::RoundRobin);
    let m = Membership::new(s, Arc::new(InMemory));
    m.register(1, record("u1", "user", &["user."])).unwrap();
    m.register(2, record("u2", "user", &["user."])).unwrap();
    m.register(3, record("d1", "dsf", &[])).unwrap();
    let snap = m.snapshot();
    assert_eq!(
        snap.service("user").unwrap().algorithm,
        Algorithm::RoundRobin
    );
    assert_eq!(
        snap.service("dsf").unwrap().algorithm,
        Algorithm::ConsistentHash
    );
    let g = snap.service("user").unwrap();
    let picks: Vec<_> = (0..4).map(|_| g.pick(Some(b"same")).unwrap()).collect();
    assert_eq!(picks, [0, 1, 0, 1], "round robin ignores the key");
}

/// Records other balancers announced join the view; local leases win on conflict,
/// and a lease that just ended here is not revived by a stale shared copy.
#[test]
fn remote_records_merge() {
    let m = membership();
    let now = unix_ms_at(Instant::now());
    let mut r = record("r1", "dsf", &[]);
    r.heartbeat_unix_ms = now;
    m.register(1, record("a", "dsf", &[])).unwrap();
    let mut stale_a = record("a", "dsf", &[]);
    stale_a.addr = "10.0.0.1:1".into();
    stale_a.heartbeat_unix_ms = now;
    m.set_remote(vec![r.clone(), stale_a.clone()]);
    assert_eq!(ids(&m), ["a", "r1"]);
    let a = m.snapshot().nodes[0].addr.to_string();
    assert_ne!(a, "10.0.0.1:1", "the local lease wins");
    m.connection_closed(1);
    m.set_remote(vec![r.clone(), stale_a]);
    assert_eq!(ids(&m), ["r1"], "the ended lease stays ended");
    m.set_remote(vec![]);
    assert!(ids(&m).is_empty());
}

/// A shared record whose lease has run out is not a member, so it neither joins nor
/// leaves: no flap when Redis hands out a key it has not expired yet.
#[test]
fn expired_remote_records_are_ignored() {
    let m = membership();
    let now = unix_ms_at(Instant::now());
    let mut old = record("old", "dsf", &[]);
    old.heartbeat_unix_ms = now - TTL.as_millis() as u64 - 500;
    let mut live = record("live", "dsf", &[]);
    live.heartbeat_unix_ms = now - TTL.as_millis() as u64 + 500;
    m.set_remote(vec![old, live]);
    assert_eq!(ids(&m), ["live"]);
    m.sweep();
    let changes: Vec<_> = m
        .events()
        .iter()
        .map(|e| format!("{} {}", e.node, e.change))
        .collect();
    assert_eq!(changes, ["live joined"]);
}

/// A copy read late from the shared store is not a missed heartbeat: another
/// balancer's node is unhealthy only after its heartbeat stops advancing here.
#[test]
fn late_remote_copies_are_not_missed_heartbeats() {
    let m = membership();
    let t0 = Instant::now();
    let hb0 = unix_ms_at(t0);
    let mut r = record("r", "dsf", &[]);
    // Written 2.5 s ago: past the 2 s of two missed heartbeats, within the 3 s lease.
    r.heartbeat_unix_ms = hb0 - 2500;
    m.set_remote_at(vec![r.clone()], t0);
    assert_eq!(state_of(&m, "r"), Some(NodeState::Healthy));
    // The next renewal, read half a second later, is fresh.
    r.heartbeat_unix_ms = hb0;
    m.set_remote_at(vec![r.clone()], t0 + Duration::from_millis(500));
    // Then it stops: unhealthy two heartbeats after it last advanced here (not
    // after it was written), gone with the lease.
    m.set_remote_at(vec![r.clone()], t0 + Duration::from_millis(1500));
    m.sweep_at(t0 + Duration::from_millis(2400));
    assert_eq!(state_of(&m, "r"), Some(NodeState::Healthy));
    m.sweep_at(t0 + Duration::from_millis(2600));
    assert_eq!(state_of(&m, "r"), Some(NodeState::Unhealthy));
    m.sweep_at(t0 + Duration::from_millis(3400));
    assert_eq!(state_of(&m, "r"), Some(NodeState::Unhealthy));
    m.sweep_at(t0 + Duration::from_millis(3600));
    assert_eq!(state_of(&m, "r"), None);
    let changes: Vec<_> = m.events().into_iter().map(|e| e.change).collect();
    assert_eq!(changes, ["joined", "unhealthy", "left"]);
}

/// Local lease changes are published for other balancers.
#[test]
fn local_changes_are_published() {
    #[derive(Default)]
    struct Log(StdMutex<Vec<String>>);
    impl Discovery for Log {
        fn announce(&self, r: &NodeRecord) {
            self.0
                .lock()
                .unwrap()
                .push(format!("announce {} {}", r.node, r.draining));
        }
        fn renew(&self, r: &NodeRecord) {
            self.0.lock().unwrap().push(format!("renew {}", r.node));
        }
        fn withdraw(&self, node: &str) {
            self.0.lock().unwrap().push(format!("withdraw {node}"));
        }
    }
    let log = Arc::new(Log::default());
    let m = Membership::new(settings(Algorithm::ConsistentHash), log.clone());
    m.register(1, record("a", "dsf", &[])).unwrap();
    m.heartbeat(1, "a", 1, 1).unwrap();
    m.drain(1, "a").unwrap();
    m.deregister(1, "a").unwrap();
    assert_eq!(
        *log.0.lock().unwrap(),
        [
            "announce a false",
            "renew a",
            "announce a true",
            "withdraw a"
        ]
    );
}

/// The keyed pick is a pure function of the member set: two memberships that learned
/// the same nodes in a different order (two balancers) answer every key identically.
#[test]
fn same_members_same_answers() {
    let a = membership();
    let b = membership();
    for (i, n) in ["n1", "n2", "n3", "n4"].iter().enumerate() {
        a.register(i as u64, record(n, "dsf", &[])).unwrap();
    }
    for (i, n) in ["n4", "n2", "n1", "n3"].iter().enumerate() {
        b.register(i as u64, record(n, "dsf", &[])).unwrap();
    }
    let (sa, sb) = (a.snapshot(), b.snapshot());
    let (ga, gb) = (sa.service("dsf").unwrap(), sb.service("dsf").unwrap());
    for k in 0..1000 {
        let key = format!("key-{k}");
        let pa = ga
            .pick(Some(key.as_bytes()))
            .map(|i| ga.members[i].id.clone());
        let pb = gb
            .pick(Some(key.as_bytes()))
            .map(|i| gb.members[i].id.clone());
        assert_eq!(pa, pb, "{key}");
    }
}

/// A record the shared store keeps alive (etcd) is never aged by this balancer's
/// clock, whatever its heartbeat time says; its state is what its holder wrote, and
/// it leaves only when the store no longer has it.
#[test]
fn leased_remote_records_live_while_the_store_holds_them() {
    let m = membership();
    let t0 = Instant::now();
    // Written by a balancer whose clock is a minute behind this one's.
    let mut r = record("r", "dsf", &[]);
    r.heartbeat_unix_ms = unix_ms_at(t0) - 60_000;
    m.set_remote_leased(vec![(r.clone(), false)]);
    assert_eq!(state_of(&m, "r"), Some(NodeState::Healthy));
    m.sweep_at(t0 + TTL * 10);
    assert_eq!(
        state_of(&m, "r"),
        Some(NodeState::Healthy),
        "never aged here"
    );
    m.set_remote_leased(vec![(r.clone(), true)]);
    assert_eq!(state_of(&m, "r"), Some(NodeState::Unhealthy));
    r.draining = true;
    m.set_remote_leased(vec![(r, true)]);
    assert_eq!(state_of(&m, "r"), Some(NodeState::Draining));
    m.set_remote_leased(vec![]);
    assert_eq!(state_of(&m, "r"), None);
    let changes: Vec<_> = m.events().into_iter().map(|e| e.change).collect();
    assert_eq!(changes, ["joined", "unhealthy", "left"]);
}

/// A node held here tells the store when it stops and resumes heartbeats.
#[test]
fn local_health_changes_reach_the_shared_store() {
    #[derive(Default)]
    struct Seen(StdMutex<Vec<(String, bool)>>);
    impl Discovery for Seen {
        fn announce(&self, _: &NodeRecord) {}
        fn renew(&self, _: &NodeRecord) {}
        fn withdraw(&self, _: &str) {}
        fn health(&self, r: &NodeRecord, healthy: bool) {
            self.0.lock().unwrap().push((r.node.clone(), healthy));
        }
    }
    let seen = Arc::new(Seen::default());
    let m = Membership::new(settings(Algorithm::ConsistentHash), seen.clone());
    let t0 = Instant::now();
    m.register_at(1, record("a", "dsf", &[]), t0).unwrap();
    m.sweep_at(t0 + HEARTBEAT * 2 + Duration::from_millis(100));
    m.heartbeat_at(
        1,
        "a",
        0,
        0,
        t0 + HEARTBEAT * 2 + Duration::from_millis(200),
    )
    .unwrap();
    assert_eq!(
        *seen.0.lock().unwrap(),
        [("a".to_owned(), false), ("a".to_owned(), true)]
    );
}
