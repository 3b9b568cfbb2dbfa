//! Two balancers sharing membership through a real 3-member etcd cluster (PROTOCOL
//! §10): propagation, the records as etcdctl shows them, a killed balancer, a killed
//! etcd member under load, a lost quorum, skewed clocks, and propagation latency
//! against the Redis backend, TLS with client certificates, and a resync after a
//! compaction.
//!
//! Tests run one at a time. Leases are 2 s (etcd leases are whole seconds) with
//! 500 ms heartbeats.

mod common;

use common::cluster::*;
use common::etcd::Etcd;
use common::pki::Pki;
use common::process::{http_get, metric};
use common::relay::Relay;
use serde_json::{json, Value};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The lease TTL of these tests' balancers.
const TTL: Duration = Duration::from_secs(2);

/// A balancer sharing membership through `etcd`, with an admin listener.
fn balancer(etcd: &Etcd) -> (Balancer, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let endpoints = etcd.endpoints_csv();
    let b = Balancer::start(
        &[],
        &[
            ("DSF__BALANCER__ETCD", endpoints.as_str()),
            ("DSF__BALANCER__LEASE_TTL", "2s"),
            ("DSF__ADMIN__LISTEN", admin.as_str()),
        ],
    );
    (b, admin)
}

/// The registrations etcd holds, by node id.
fn registrations(etcd: &Etcd) -> Vec<(String, Value)> {
    etcd.get_prefix("/dsf/nodes/")
        .into_iter()
        .map(|(k, v)| (k, serde_json::from_str(&v).expect("a registration is JSON")))
        .collect()
}

/// Waits until `pred` holds, polling every 10 ms; how long it took.
fn wait_for(what: &str, timeout: Duration, pred: impl Fn() -> bool) -> Duration {
    let t0 = Instant::now();
    while !pred() {
        assert!(t0.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    t0.elapsed()
}

/// Membership changes the balancer logged (from `/status.json`).
fn changes(admin: &str) -> Vec<(String, String)> {
    let (_, body) = http_get(admin, "/status.json");
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    v["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["node"].as_str().unwrap_or("").to_owned(),
                        e["event"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A node registered at balancer A is assigned by balancer B within one heartbeat,
/// and `etcdctl get --prefix /dsf/` shows its registration as PROTOCOL §10 defines it.
#[test]
fn a_node_registered_at_one_balancer_is_assigned_by_the_other() {
    let _s = serial();
    let etcd = Etcd::start(3);
    let (a, _) = balancer(&etcd);
    let (b, _) = balancer(&etcd);
    let _n1 = Node::start("n1", &a.registration, &[], &[]);
    a.wait_healthy(&["n1"], Duration::from_secs(10));
    let late = b.wait_healthy(&["n1"], Duration::from_secs(5));
    eprintln!("registered at A, healthy at B {late:?} later");
    assert!(
        late <= HEARTBEAT,
        "B saw n1 {late:?} after A (> one heartbeat)"
    );
    assert_eq!(b.assign("some-key"), "n1");
    let regs = registrations(&etcd);
    assert_eq!(regs.len(), 1, "{regs:?}");
    let (key, r) = &regs[0];
    assert_eq!(key, "/dsf/nodes/dsf/n1");
    assert_eq!(r["node"], "n1");
    assert_eq!(r["service"], "dsf");
    assert_eq!(r["weight"], 1);
    assert_eq!(r["state"], "up");
    assert!(r["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{r}");
    assert!(r["ops"].is_array(), "{r}");
    assert!(
        r["balancer"].as_str().unwrap().contains(&a.registration),
        "held by A ({}): {r}",
        a.registration
    );
    // Each registration is attached to its balancer's lease.
    let lease = etcd.etcdctl(&["get", "/dsf/nodes/dsf/n1", "-w", "json"]);
    let lease: Value = serde_json::from_str(&lease).unwrap();
    assert!(
        lease["kvs"][0]["lease"].as_i64().unwrap_or(0) != 0,
        "{lease}"
    );
}

/// kill -9 of balancer A: a node that knows only A has its key expire through A's
/// lease within the lease TTL (plus etcd's expiry check, every 500 ms, its revocation
/// through Raft, and the polling with etcdctl), and a node that
/// lists both balancers registers again at B.
#[test]
fn a_killed_balancer_leases_expire_and_its_nodes_move() {
    let _s = serial();
    let etcd = Etcd::start(3);
    let (a, _) = balancer(&etcd);
    let (b, _) = balancer(&etcd);
    let both = format!("{},{}", a.registration, b.registration);
    let _n1 = Node::start("n1", &both, &[], &[]);
    let _n2 = Node::start("n2", &a.registration, &[], &[]);
    b.wait_healthy(&["n1", "n2"], Duration::from_secs(10));
    let held_by = |node: &str| {
        registrations(&etcd)
            .into_iter()
            .find(|(_, r)| r["node"] == node)
            .map(|(_, r)| r["balancer"].as_str().unwrap_or("").to_owned())
    };
    assert!(held_by("n1").unwrap().contains(&a.registration));
    a.proc.signal("KILL");
    let killed = Instant::now();
    let gone = wait_for("n2's key expires", TTL * 2, || held_by("n2").is_none());
    eprintln!("n2's key gone {gone:?} after kill -9 of its balancer");
    assert!(
        gone <= TTL + Duration::from_millis(1500),
        "n2's key lived {gone:?} past the lease TTL {TTL:?}"
    );
    wait_for("n1 held by B", Duration::from_secs(5), || {
        held_by("n1").is_some_and(|h| h.contains(&b.registration))
    });
    b.wait_healthy(&["n1"], Duration::from_secs(5));
    eprintln!("n1 moved to B {:?} after the kill", killed.elapsed());
    assert_eq!(b.assign("k"), "n1");
}

/// kill -9 of one etcd member under `dsf bench` load through both balancers: not one
/// request fails, and membership stays whole on both.
#[test]
fn a_killed_etcd_member_under_load_fails_no_request() {
    let _s = serial();
    let mut etcd = Etcd::start(3);
    let (a, _) = balancer(&etcd);
    let (b, _) = balancer(&etcd);
    let _n1 = Node::start("n1", &a.registration, &[], &[]);
    let _n2 = Node::start("n2", &b.registration, &[], &[]);
    a.wait_healthy(&["n1", "n2"], Duration::from_secs(10));
    b.wait_healthy(&["n1", "n2"], Duration::from_secs(10));
    let load_a = bench_spawn(bench(&a.proxy, "sys.echo", 6, 4, "3s"));
    let load_b = bench_spawn(bench(&b.proxy, "sys.echo", 6, 4, "3s"));
    std::thread::sleep(Duration::from_millis(1000));
    // The first endpoint is the one both balancers talk to.
    etcd.signal(0, "KILL");
    let (ra, rb) = (bench_report(load_a), bench_report(load_b));
    eprintln!("through A: {ra}\nthrough B: {rb}");
    for r in [&ra, &rb] {
        assert_eq!(r["errors"], json!(0), "{r}");
        assert_eq!(r["failed_conns"], json!(0), "{r}");
    }
    // Writes still reach etcd through the other members: a new node shows on both.
    let _n3 = Node::start("n3", &a.registration, &[], &[]);
    b.wait_healthy(&["n1", "n2", "n3"], Duration::from_secs(10));
    a.wait_healthy(&["n1", "n2", "n3"], Duration::from_secs(5));
}

/// Two of three members stopped: `/readyz` fails on both balancers naming etcd and
/// its endpoints, while both keep serving the assignments they had; the quorum back,
/// they are ready again.
#[test]
fn without_a_quorum_readyz_fails_and_assignments_are_served() {
    let _s = serial();
    let mut etcd = Etcd::start(3);
    let (a, admin_a) = balancer(&etcd);
    let (b, admin_b) = balancer(&etcd);
    let _n1 = Node::start("n1", &a.registration, &[], &[]);
    let _n2 = Node::start("n2", &b.registration, &[], &[]);
    a.wait_healthy(&["n1", "n2"], Duration::from_secs(10));
    b.wait_healthy(&["n1", "n2"], Duration::from_secs(10));
    for admin in [&admin_a, &admin_b] {
        assert_eq!(http_get(admin, "/readyz").0, 200);
    }
    let keys: Vec<String> = (0..20).map(|k| format!("k{k}")).collect();
    let before: Vec<String> = keys.iter().map(|k| b.assign(k)).collect();
    etcd.signal(1, "KILL");
    etcd.signal(2, "KILL");
    for admin in [&admin_a, &admin_b] {
        let took = wait_for("/readyz fails", TTL * 3, || {
            http_get(admin, "/readyz").0 == 503
        });
        let (_, body) = http_get(admin, "/readyz");
        eprintln!("/readyz failed {took:?} after the quorum was lost: {body}");
        assert!(
            body.contains("etcd") && body.contains(&etcd.endpoints()[0]),
            "{body}"
        );
    }
    // Past a lease TTL without etcd, both still serve the last view.
    std::thread::sleep(TTL);
    let scraped = http_get(&admin_a, "/metrics").1;
    let check = [("check", "etcd")];
    assert_eq!(metric(&scraped, "dsf_readiness_check", &check), 0.0);
    for (lb, name) in [(&a, "A"), (&b, "B")] {
        assert_eq!(lb.healthy(), ["n1", "n2"], "balancer {name}");
    }
    let after: Vec<String> = keys.iter().map(|k| b.assign(k)).collect();
    assert_eq!(before, after, "assignments kept");
    for key in &keys[..4] {
        let r = call(&a.proxy, "sys.ping", json!({}), Some(key)).unwrap();
        assert!(r.result.is_ok(), "proxied through A: {:?}", r.result);
    }
    etcd.restart(1);
    for admin in [&admin_a, &admin_b] {
        wait_for("/readyz passes again", Duration::from_secs(10), || {
            http_get(admin, "/readyz").0 == 200
        });
    }
    let scraped = http_get(&admin_a, "/metrics").1;
    assert_eq!(metric(&scraped, "dsf_readiness_check", &check), 1.0);
}

/// Balancer clocks 30 s ahead and 30 s behind: no node leaves or joins again on
/// either, since no wall clock is compared across balancers.
#[test]
fn skewed_balancer_clocks_cause_no_flaps() {
    const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "libfaketime is installed (apt-get install faketime)"
    );
    let _s = serial();
    let etcd = Etcd::start(3);
    let endpoints = etcd.endpoints_csv();
    let skewed = |offset: &str| {
        let admin = format!("127.0.0.1:{}", free_port());
        let b = Balancer::start(
            &[],
            &[
                ("DSF__BALANCER__ETCD", endpoints.as_str()),
                ("DSF__BALANCER__LEASE_TTL", "2s"),
                ("DSF__ADMIN__LISTEN", admin.as_str()),
                ("LD_PRELOAD", FAKETIME),
                ("FAKETIME", offset),
                ("DONT_FAKE_MONOTONIC", "1"),
            ],
        );
        (b, admin)
    };
    let (a, admin_a) = skewed("+30");
    let (b, admin_b) = skewed("-30");
    let _n1 = Node::start("n1", &a.registration, &[], &[]);
    let _n2 = Node::start("n2", &b.registration, &[], &[]);
    a.wait_healthy(&["n1", "n2"], Duration::from_secs(10));
    b.wait_healthy(&["n1", "n2"], Duration::from_secs(10));
    // The skew is real: each balancer stamps its events with its own wall clock.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (admin, sign) in [(&admin_a, 1), (&admin_b, -1)] {
        let (_, body) = http_get(admin, "/status.json");
        let v: Value = serde_json::from_str(&body).unwrap();
        let stamped = v["events"][0]["at_ms"].as_i64().unwrap();
        let skew = (stamped - now_ms) * sign;
        assert!(skew > 25_000, "clock skew {skew} ms at {admin}");
    }
    let settled = (changes(&admin_a).len(), changes(&admin_b).len());
    std::thread::sleep(TTL * 3);
    for (lb, admin, before) in [(&a, &admin_a, settled.0), (&b, &admin_b, settled.1)] {
        let later = changes(admin).split_off(before);
        assert!(later.is_empty(), "membership flapped: {later:?}");
        assert_eq!(lb.healthy(), ["n1", "n2"]);
    }
}

/// Membership-change propagation (registered at A → visible at B), etcd against the
/// Redis backend, side by side; the numbers go to BENCHMARKS.md.
#[test]
fn propagation_latency_etcd_against_redis() {
    let _s = serial();
    let etcd = Etcd::start(3);
    let redis = Redis::start().expect("redis-server is installed");
    let etcd_pair = (balancer(&etcd).0, balancer(&etcd).0);
    let redis_pair = (
        Balancer::start(&["--redis", &redis.url], &[]),
        Balancer::start(&["--redis", &redis.url], &[]),
    );
    for (name, (a, b)) in [("etcd", &etcd_pair), ("redis", &redis_pair)] {
        let mut samples: Vec<Duration> = Vec::new();
        let mut nodes = Vec::new();
        for i in 0..12 {
            let id = format!("{name}-{i}");
            nodes.push(Node::start(&id, &a.registration, &[], &[]));
            let seen = |lb: &Balancer| lb.nodes().iter().any(|(n, _)| *n == id);
            wait_for("registered at A", Duration::from_secs(10), || seen(a));
            // Polled every millisecond: wait_for's 10 ms would hide the difference.
            let at_a = Instant::now();
            while !seen(b) {
                assert!(at_a.elapsed() < Duration::from_secs(10), "{id} never at B");
                std::thread::sleep(Duration::from_millis(1));
            }
            samples.push(at_a.elapsed());
        }
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        eprintln!(
            "propagation {name}: median {:.1} ms, max {:.1} ms over {} registrations",
            ms(samples[samples.len() / 2]),
            ms(samples[samples.len() - 1]),
            samples.len()
        );
        assert!(samples[samples.len() - 1] <= HEARTBEAT * 2, "{samples:?}");
    }
}

/// The etcd member both balancers watch is frozen (SIGSTOP: its connections stay
/// open, nothing answers): the watch moves to another member, so a node registered
/// at A still shows at B, and `/readyz` stays ready since a quorum is left.
#[test]
fn a_frozen_etcd_member_does_not_freeze_membership() {
    let _s = serial();
    let mut etcd = Etcd::start(3);
    let (a, _) = balancer(&etcd);
    let (b, admin_b) = balancer(&etcd);
    let _n1 = Node::start("n1", &a.registration, &[], &[]);
    b.wait_healthy(&["n1"], Duration::from_secs(10));
    // The first endpoint is the one both balancers watch.
    etcd.signal(0, "STOP");
    let frozen = Instant::now();
    let _n2 = Node::start("n2", &a.registration, &[], &[]);
    b.wait_healthy(&["n1", "n2"], Duration::from_secs(10));
    eprintln!(
        "n2 registered at A shows at B {:?} after member 0 froze",
        frozen.elapsed()
    );
    assert_eq!(http_get(&admin_b, "/readyz").0, 200);
    etcd.signal(0, "CONT");
}

/// A balancer whose lease is lost (revoked here with etcdctl; in life, expired while
/// it could not reach a quorum) grants a new one and writes its registrations again.
#[test]
fn a_lost_lease_is_replaced_and_the_registrations_written_again() {
    let _s = serial();
    let etcd = Etcd::start(3);
    let (a, _) = balancer(&etcd);
    let (b, _) = balancer(&etcd);
    let _n1 = Node::start("n1", &a.registration, &[], &[]);
    b.wait_healthy(&["n1"], Duration::from_secs(10));
    let lease_of_n1 = || {
        let out = etcd.etcdctl(&["get", "/dsf/nodes/dsf/n1", "-w", "json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["kvs"][0]["lease"].as_i64()
    };
    let old = lease_of_n1().expect("n1 is in etcd");
    etcd.etcdctl(&["lease", "revoke", &format!("{old:x}")]);
    let back = wait_for("n1 written again", Duration::from_secs(5), || {
        lease_of_n1().is_some_and(|l| l != old)
    });
    eprintln!("registration back under a new lease {back:?} after the revocation");
    assert!(back <= TTL, "{back:?}");
    b.wait_healthy(&["n1"], Duration::from_secs(5));
    assert!(
        a.proc.logs().contains("etcd lease lost"),
        "{}",
        a.proc.logs()
    );
}

/// A node that stops heartbeating at A (SIGSTOP) shows `unhealthy` at B through the
/// state A writes, then leaves B when A ends its lease; nothing on B ages it.
#[test]
fn a_silent_node_is_unhealthy_then_gone_at_the_other_balancer() {
    let _s = serial();
    let etcd = Etcd::start(3);
    let (a, _) = balancer(&etcd);
    let (b, _) = balancer(&etcd);
    let _n1 = Node::start("n1", &a.registration, &[], &[]);
    let n2 = Node::start("n2", &a.registration, &[], &[]);
    b.wait_healthy(&["n1", "n2"], Duration::from_secs(10));
    n2.proc.signal("STOP");
    let state_at_b = || {
        b.nodes()
            .into_iter()
            .find(|(n, _)| n == "n2")
            .map(|(_, s)| s)
    };
    wait_for("n2 unhealthy at B", TTL * 2, || {
        state_at_b().as_deref() == Some("unhealthy")
    });
    let stored = registrations(&etcd);
    let n2_state = stored.iter().find(|(_, r)| r["node"] == "n2").unwrap();
    assert_eq!(n2_state.1["state"], "unhealthy", "{stored:?}");
    wait_for("n2 gone at B", TTL * 2, || state_at_b().is_none());
    assert!(registrations(&etcd).iter().all(|(_, r)| r["node"] != "n2"));
    assert_eq!(b.healthy(), ["n1"]);
    n2.proc.signal("CONT");
}

/// etcd serving clients only over TLS and requiring client certificates
/// (`--client-cert-auth`): balancers with `balancer.etcd_tls_ca` and a client
/// certificate share membership as over plain HTTP; a balancer without a client
/// certificate is refused, and its `/readyz` names the endpoint and why.
#[test]
fn over_tls_with_client_certificates_membership_is_shared() {
    let _s = serial();
    let pki = Pki::new("etcd-ca");
    let etcd = Etcd::start_tls(3, &pki);
    let tls = etcd.tls.as_ref().unwrap();
    let endpoints = etcd.endpoints_csv();
    assert!(endpoints.starts_with("https://"), "{endpoints}");
    let ca = tls.ca.to_str().unwrap();
    let with_cert = || {
        let admin = format!("127.0.0.1:{}", free_port());
        let b = Balancer::start(
            &[],
            &[
                ("DSF__BALANCER__ETCD", endpoints.as_str()),
                ("DSF__BALANCER__LEASE_TTL", "2s"),
                ("DSF__BALANCER__ETCD_TLS_CA", ca),
                ("DSF__BALANCER__ETCD_TLS_CERT", tls.client.cert()),
                ("DSF__BALANCER__ETCD_TLS_KEY", tls.client.key()),
                ("DSF__ADMIN__LISTEN", admin.as_str()),
            ],
        );
        (b, admin)
    };
    let (a, admin_a) = with_cert();
    let (b, admin_b) = with_cert();
    let _n1 = Node::start("n1", &a.registration, &[], &[]);
    a.wait_healthy(&["n1"], Duration::from_secs(10));
    b.wait_healthy(&["n1"], Duration::from_secs(5));
    assert_eq!(b.assign("some-key"), "n1");
    let regs = registrations(&etcd);
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert!(regs[0].1["balancer"]
        .as_str()
        .unwrap()
        .contains(&a.registration));
    for admin in [&admin_a, &admin_b] {
        assert_eq!(http_get(admin, "/readyz").0, 200, "{admin}");
    }
    // The CA but no client certificate: etcd refuses the handshake.
    let admin_c = format!("127.0.0.1:{}", free_port());
    let _c = Balancer::start(
        &[],
        &[
            ("DSF__BALANCER__ETCD", endpoints.as_str()),
            ("DSF__BALANCER__LEASE_TTL", "2s"),
            ("DSF__BALANCER__ETCD_TLS_CA", ca),
            ("DSF__ADMIN__LISTEN", admin_c.as_str()),
        ],
    );
    let etcd_check = || {
        let (_, body) = http_get(&admin_c, "/readyz");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        (v["checks"]["etcd"].as_str().unwrap_or("").to_owned(), body)
    };
    wait_for(
        "/readyz fails without a client certificate",
        TTL * 3,
        || etcd_check().0 != "ok",
    );
    let (_, body) = etcd_check();
    assert_eq!(http_get(&admin_c, "/readyz").0, 503);
    eprintln!("without a client certificate: {body}");
    let first = &etcd.endpoints()[0];
    assert!(
        body.contains("etcd") && body.contains(first.as_str()),
        "{body}"
    );
    assert!(body.to_lowercase().contains("certificate"), "{body}");
}

/// A registration as another balancer would write it, for etcdctl.
fn registration(node: &str) -> String {
    json!({
        "node": node, "service": "dsf", "addr": "127.0.0.1:9", "weight": 1,
        "ops": [], "state": "up", "balancer": "elsewhere/127.0.0.1:1/1",
    })
    .to_string()
}

/// Balancer B's watch held back (a relay between B and etcd pauses on the watch
/// request) while registrations are written and deleted and etcd's history is
/// compacted past the revision B asks for: etcd answers that the revision is
/// compacted, B reads the prefix afresh and converges on what etcd holds — the
/// registration deleted meanwhile is gone (no ghost), the new one is there.
#[test]
fn after_a_compaction_behind_the_watch_the_view_converges() {
    let _s = serial();
    let etcd = Etcd::start(1);
    let (a, _) = balancer(&etcd);
    let _n1 = Node::start("n1", &a.registration, &[], &[]);
    a.wait_healthy(&["n1"], Duration::from_secs(10));
    etcd.etcdctl(&["put", "/dsf/nodes/dsf/ghost", &registration("ghost")]);
    let upstream = etcd.endpoints()[0].trim_start_matches("http://").to_owned();
    let relay = Relay::start(&upstream);
    relay.pause_on(b"/v3/watch");
    let b = Balancer::start(
        &[],
        &[
            ("DSF__BALANCER__ETCD", &format!("http://{}", relay.addr)),
            ("DSF__BALANCER__LEASE_TTL", "2s"),
        ],
    );
    // B has read the prefix (n1, ghost) and its watch request is held in the relay.
    wait_for("B's watch held", Duration::from_secs(10), || {
        relay.is_paused()
    });
    let held = Instant::now();
    let asked = etcd.revision() + 1;
    etcd.etcdctl(&["del", "/dsf/nodes/dsf/ghost"]);
    for i in 0..5 {
        let key = format!("/dsf/nodes/dsf/churn{i}");
        etcd.etcdctl(&["put", &key, &registration(&format!("churn{i}"))]);
        etcd.etcdctl(&["del", &key]);
    }
    etcd.etcdctl(&["put", "/dsf/nodes/dsf/joiner", &registration("joiner")]);
    let compacted_at = etcd.revision();
    etcd.etcdctl(&["compact", &compacted_at.to_string()]);
    relay.resume();
    eprintln!(
        "watch from revision {asked} held {:?}; compacted at {compacted_at}",
        held.elapsed()
    );
    let names = || -> Vec<String> { b.nodes().into_iter().map(|(n, _)| n).collect() };
    let took = wait_for("B converges on joiner, n1", Duration::from_secs(10), || {
        names() == ["joiner", "n1"]
    });
    eprintln!("B converged {took:?} after the relay resumed");
    assert!(
        b.proc.logs().contains("revision compacted"),
        "B's watch never saw the compaction:\n{}",
        b.proc.logs()
    );
    // Stays converged: nothing later brings the ghost back.
    std::thread::sleep(TTL);
    assert_eq!(names(), ["joiner", "n1"]);
}
