//! The balancer as users meet it: real `dsf` processes on 127.0.0.1, never mocks.
//!
//! Tests run one at a time (they start several processes each and some drive load;
//! the machines have two cores). Leases are 1.5 s with 500 ms heartbeats.

mod common;

use common::cluster::*;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `sys.ping` through the proxy with `key`: the node that answered.
fn ping_node(proxy: &str, key: Option<&str>) -> Result<String, String> {
    let resp = call(proxy, "sys.ping", json!({}), key)?;
    match resp.result {
        Ok(body) => Ok(body["node"].as_str().unwrap().to_owned()),
        Err(e) => Err(e.code.to_string()),
    }
}

/// `dsf up --nodes 3` serves through the proxy and the directory, spreads keys over
/// all nodes with a stable key → node mapping, and stops cleanly on SIGTERM.
#[test]
fn up_serves_through_proxy_and_directory() {
    let _s = serial();
    let mut up = Up::start(3);
    let (code, v) = client(&[
        "--proxy",
        &up.proxy,
        "call",
        "sys.echo",
        r#"{"hello":"proxy"}"#,
    ]);
    assert_eq!((code, &v["body"]), (0, &json!({"hello":"proxy"})), "{v}");
    let (code, v) = client(&[
        "--balancer",
        &up.directory,
        "call",
        "sys.echo",
        r#"{"hello":"dir"}"#,
    ]);
    assert_eq!((code, &v["body"]), (0, &json!({"hello":"dir"})), "{v}");
    let (code, v) = client(&[
        "--balancer",
        &up.directory,
        "call",
        "sys.ping",
        "--key",
        "alice",
    ]);
    assert_eq!(code, 0, "{v}");
    let via_directory = v["body"]["node"].as_str().unwrap().to_owned();
    assert_eq!(
        ping_node(&up.proxy, Some("alice")).unwrap(),
        via_directory,
        "directory and proxy agree on a key's node"
    );

    let mut seen = BTreeSet::new();
    let mut first: HashMap<String, String> = HashMap::new();
    for round in 0..2 {
        for k in 0..30 {
            let key = format!("user-{k}");
            let node = ping_node(&up.proxy, Some(&key)).unwrap();
            if round == 0 {
                first.insert(key, node.clone());
            } else {
                assert_eq!(first[&key], node, "same key, same node");
            }
            seen.insert(node);
        }
    }
    assert_eq!(seen.len(), 3, "30 keys reach all 3 nodes: {seen:?}");
    let nodes = call(&up.directory, "lb.nodes", json!({}), None).unwrap();
    let nodes = nodes.result.unwrap();
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 3);

    up.proc.signal("TERM");
    assert_eq!(up.proc.wait_exit(Duration::from_secs(15)), Some(0));
    let logs = up.proc.logs();
    assert_eq!(logs.matches("deregistered").count(), 3, "{logs}");
}

/// The business flow through `dsf up`: register, login, insert, query — through the
/// directory and through the proxy.
#[test]
fn up_business_flow_through_balancer_and_proxy() {
    let _s = serial();
    let up = Up::start(3);
    for (flag, addr, who) in [
        ("--balancer", &up.directory, "dirclient"),
        ("--proxy", &up.proxy, "proxyclient"),
    ] {
        let creds = json!({"name": who, "password": "correct horse battery"}).to_string();
        let (code, v) = client(&[flag, addr, "call", "user.register", &creds]);
        assert_eq!(code, 0, "{v}");
        let (code, v) = client(&[flag, addr, "call", "user.login", &creds]);
        assert_eq!(code, 0, "{v}");
        let token = v["body"]["token"].as_str().unwrap().to_owned();
        let card = format!("ID-{who}");
        let entry = json!({"id_card": card, "name": "Mallory"}).to_string();
        let (code, v) = client(&[
            flag,
            addr,
            "call",
            "blacklist.insert",
            &entry,
            "--token",
            &token,
        ]);
        assert_eq!(code, 0, "{v}");
        // The query goes wherever its key sends it: another node must see the write.
        for k in ["a", "b", "c", "d"] {
            let q = json!({"id_card": card}).to_string();
            let (code, v) = client(&[
                flag,
                addr,
                "call",
                "blacklist.query",
                &q,
                "--token",
                &token,
                "--key",
                k,
            ]);
            assert_eq!(code, 0, "{v}");
            assert_eq!(v["body"]["listed"], json!(true), "{v}");
        }
    }
}

/// Three nodes behind a balancer, each its own process.
fn three_nodes() -> (Balancer, Vec<Node>) {
    let lb = Balancer::start(&[], &[]);
    let nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| Node::start(id, &lb.registration, &[], &[]))
        .collect();
    lb.wait_healthy(&["n1", "n2", "n3"], Duration::from_secs(10));
    (lb, nodes)
}

/// kill -9 of a node under load through the proxy: it leaves membership within the
/// lease TTL and the read requests in flight are retried, so the load sees no error.
#[test]
fn kill9_under_load_loses_no_reads() {
    let _s = serial();
    let (lb, mut nodes) = three_nodes();
    let load = bench_spawn(bench(&lb.proxy, "sys.echo", 12, 4, "4s"));
    std::thread::sleep(Duration::from_millis(1500));
    let victim = nodes.remove(1);
    let killed_at = Instant::now();
    victim.proc.signal("KILL");
    let left = lb.wait_healthy(&["n1", "n3"], LEASE_TTL * 2);
    let report = bench_report(load);
    let left_after = killed_at.elapsed().min(left);
    let retried = lb.proc.logs().matches("retried on another node").count();
    eprintln!(
        "kill -9: left membership after {left_after:?}; {retried} requests retried; {report}"
    );
    assert!(
        left_after <= LEASE_TTL,
        "node left after {left_after:?} > {LEASE_TTL:?}"
    );
    assert!(!lb.nodes().iter().any(|(n, _)| n == "n2"), "n2 is gone");
    assert_eq!(report["errors"], json!(0), "{report}");
    assert_eq!(report["failed_conns"], json!(0), "{report}");
    assert!(report["rps"].as_f64().unwrap() > 100.0, "{report}");
    drop(victim);
}

/// SIGTERM of a node under load: it drains (no new work, a slow request in flight
/// still answered, deregisters), exits 0, and the load sees zero failed requests —
/// without the proxy having to retry anything.
#[test]
fn sigterm_under_load_drains_with_zero_failures() {
    let _s = serial();
    let lb = Balancer::start(&[], &[]);
    let debug = [("DSF__NODE__DEBUG_OPS", "true")];
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| Node::start(id, &lb.registration, &[], &debug))
        .collect();
    lb.wait_healthy(&["n1", "n2", "n3"], Duration::from_secs(10));
    let load = bench_spawn(bench(&lb.proxy, "sys.echo", 12, 4, "4s"));
    std::thread::sleep(Duration::from_millis(1500));
    // A slow request in flight on the leaving node must still be answered.
    let key = (0..)
        .map(|k| format!("k{k}"))
        .find(|k| lb.assign(k) == "n1")
        .unwrap();
    let proxy = lb.proxy.clone();
    let slow =
        std::thread::spawn(move || call(&proxy, "sys.sleep", json!({"ms": 1000}), Some(&key)));
    std::thread::sleep(Duration::from_millis(200));
    let mut leaving = nodes.remove(0);
    leaving.proc.signal("TERM");
    assert_eq!(leaving.proc.wait_exit(Duration::from_secs(15)), Some(0));
    lb.wait_healthy(&["n2", "n3"], Duration::from_secs(2));
    let slow = slow.join().unwrap().unwrap();
    assert!(slow.result.is_ok(), "in-flight request finished: {slow:?}");
    let report = bench_report(load);
    eprintln!("SIGTERM drain: {report}");
    assert_eq!(report["errors"], json!(0), "{report}");
    assert_eq!(report["failed_conns"], json!(0), "{report}");
    let node_log = leaving.proc.logs();
    assert!(node_log.contains("draining"), "{node_log}");
    assert!(node_log.contains("deregistered"), "{node_log}");
    let lb_log = lb.proc.logs();
    assert!(
        !lb_log.contains("retried on another node"),
        "a clean drain needs no retries:\n{lb_log}"
    );
    assert!(lb_log.contains("reason=lb.deregister"), "{lb_log}");
}

/// A balancer restarted on the same ports gets its nodes back by themselves within
/// a few heartbeats.
#[test]
fn balancer_restart_nodes_reregister() {
    let _s = serial();
    let ports = [free_port(), free_port(), free_port()];
    let lb = Balancer::start_on(ports, &[], &[]);
    let _nodes: Vec<Node> = ["n1", "n2"]
        .iter()
        .map(|id| Node::start(id, &lb.registration, &[], &[]))
        .collect();
    lb.wait_healthy(&["n1", "n2"], Duration::from_secs(10));
    drop(lb); // kill -9
    let lb = Balancer::start_on(ports, &[], &[]);
    let took = lb.wait_healthy(&["n1", "n2"], Duration::from_secs(10));
    assert!(took <= HEARTBEAT * 4, "re-registered after {took:?}");
    assert_eq!(ping_node(&lb.proxy, Some("k")).map(|_| ()), Ok(()));
}

/// With no node registered, the proxy and the directory answer `no_backend` at once.
#[test]
fn no_nodes_is_no_backend_immediately() {
    let _s = serial();
    let lb = Balancer::start(&[], &[]);
    let t0 = Instant::now();
    assert_eq!(ping_node(&lb.proxy, None), Err("no_backend".into()));
    assert_eq!(ping_node(&lb.proxy, Some("k")), Err("no_backend".into()));
    let resp = call(&lb.directory, "lb.assign", json!({"key": "k"}), None).unwrap();
    assert_eq!(resp.result.unwrap_err().code.to_string(), "no_backend");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    let (code, v) = client(&["--balancer", &lb.directory, "call", "sys.ping"]);
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (1, Some("no_backend")),
        "{v}"
    );
    let (code, v) = client(&["--proxy", &lb.proxy, "call", "sys.ping"]);
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (1, Some("no_backend")),
        "{v}"
    );
}

/// A registration with a wrong or missing secret is refused and its connection
/// closed; a fake node never receives traffic, while a real one does.
#[test]
fn wrong_or_missing_secret_is_refused() {
    let _s = serial();
    let lb = Balancer::start(&[], &[]);
    let fake = Node::start(
        "fake",
        &lb.registration,
        &[],
        &[("DSF__CLUSTER__SECRET", "guess")],
    );
    let anonymous = Node::start(
        "anonymous",
        &lb.registration,
        &[],
        &[("DSF__CLUSTER__SECRET", "")],
    );
    smol::block_on(async {
        use dsf::client::{CallOptions, ClientError, Connection};
        let conn = Connection::connect(&lb.registration, Duration::from_secs(2))
            .await
            .unwrap();
        let body = json!({"node": "raw", "addr": "127.0.0.1:9", "secret": "nope"});
        let resp = conn
            .call("lb.register", body, &CallOptions::default())
            .await
            .unwrap();
        assert_eq!(resp.result.unwrap_err().code.to_string(), "unauthorized");
        let after = conn
            .call_timeout(
                "lb.heartbeat",
                json!({"node": "raw"}),
                &CallOptions::default(),
                Duration::from_secs(2),
            )
            .await;
        assert!(
            matches!(after, Err(ClientError::Closed | ClientError::Io(_))),
            "the refused connection is closed: {after:?}"
        );
        // Lease operations without registering are refused too.
        let conn = Connection::connect(&lb.registration, Duration::from_secs(2))
            .await
            .unwrap();
        let resp = conn
            .call("lb.drain", json!({"node": "fake"}), &CallOptions::default())
            .await
            .unwrap();
        assert_eq!(resp.result.unwrap_err().code.to_string(), "unauthorized");
    });
    std::thread::sleep(HEARTBEAT * 2);
    assert!(lb.nodes().is_empty(), "{:?}", lb.nodes());
    assert_eq!(ping_node(&lb.proxy, Some("k")), Err("no_backend".into()));
    let _real = Node::start("real", &lb.registration, &[], &[]);
    lb.wait_healthy(&["real"], Duration::from_secs(10));
    for k in 0..20 {
        assert_eq!(
            ping_node(&lb.proxy, Some(&format!("k{k}"))).unwrap(),
            "real"
        );
    }
    assert!(
        fake.proc.logs().contains("unauthorized"),
        "{}",
        fake.proc.logs()
    );
    assert!(anonymous.proc.logs().contains("unauthorized"));
    assert!(lb.proc.logs().contains("registration refused"));
}

/// A Redis server and two balancers sharing membership through it; `None` (after
/// saying so) where redis-server is not installed.
fn two_balancers_sharing_redis() -> Option<(Redis, Balancer, Balancer)> {
    let Some(redis) = Redis::start() else {
        eprintln!("redis-server is not installed; skipping (apt-get install redis-server)");
        return None;
    };
    let a = Balancer::start(&["--redis", &redis.url], &[]);
    let b = Balancer::start(&["--redis", &redis.url], &[]);
    Some((redis, a, b))
}

/// Two balancers sharing membership through Redis answer `lb.assign` identically,
/// also after a node leaves, although each node registered with only one of them.
#[test]
fn two_balancers_share_membership_through_redis() {
    let _s = serial();
    let Some((_redis, a, b)) = two_balancers_sharing_redis() else {
        return;
    };
    let _n1 = Node::start("n1", &a.registration, &[], &[]);
    let n2 = Node::start("n2", &b.registration, &[], &[]);
    let _n3 = Node::start("n3", &a.registration, &[], &[]);
    a.wait_healthy(&["n1", "n2", "n3"], Duration::from_secs(10));
    b.wait_healthy(&["n1", "n2", "n3"], Duration::from_secs(10));
    let keys: Vec<String> = (0..200).map(|k| format!("key-{k}")).collect();
    let on = |lb: &Balancer| keys.iter().map(|k| lb.assign(k)).collect::<Vec<_>>();
    let from_a = on(&a);
    assert_eq!(from_a, on(&b));
    assert_eq!(from_a.iter().collect::<BTreeSet<_>>().len(), 3);

    drop(n2);
    a.wait_healthy(&["n1", "n3"], LEASE_TTL * 2);
    b.wait_healthy(&["n1", "n3"], LEASE_TTL * 2);
    let from_a2 = on(&a);
    assert_eq!(from_a2, on(&b));
    for (before, after) in from_a.iter().zip(&from_a2) {
        if before != "n2" {
            assert_eq!(before, after, "only n2's keys move");
        }
    }
}

/// Redis frozen for three leases while nodes heartbeat and one more registers: the
/// writing balancer keeps the latest record of each node and, once Redis answers,
/// writes them all at once. The other balancer gets every node back within a second
/// and sees none leave again: no record older than a lease is replayed after the
/// outage (a queue of them, written one by one, made nodes leave and rejoin).
#[test]
fn shared_membership_recovers_from_a_frozen_redis_without_stale_records() {
    let _s = serial();
    let Some((redis, a, b)) = two_balancers_sharing_redis() else {
        return;
    };
    let _n1 = Node::start("n1", &a.registration, &[], &[]);
    let _n2 = Node::start("n2", &a.registration, &[], &[]);
    b.wait_healthy(&["n1", "n2"], Duration::from_secs(10));

    redis.signal("STOP");
    std::thread::sleep(LEASE_TTL);
    let _n3 = Node::start("n3", &a.registration, &[], &[]);
    std::thread::sleep(LEASE_TTL * 2);
    a.wait_healthy(&["n1", "n2", "n3"], Duration::from_secs(5));
    let seen = b.proc.logs().len();
    redis.signal("CONT");
    let took = b.wait_healthy(&["n1", "n2", "n3"], Duration::from_secs(5));
    assert!(
        took < Duration::from_secs(3),
        "the other balancer took {took:?} to see the nodes again"
    );
    let until = Instant::now() + LEASE_TTL * 2;
    while Instant::now() < until {
        assert_eq!(
            b.healthy(),
            ["n1", "n2", "n3"],
            "{}",
            &b.proc.logs()[seen..]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = &b.proc.logs()[seen..];
    assert!(!after.contains("change=\"left\""), "{after}");
    assert!(
        a.proc.logs().contains("writing to redis again"),
        "{}",
        a.proc.logs()
    );
}

/// A `user` service and a `blacklist` service on separate nodes: each request
/// reaches only nodes of the service owning its type (longest `ops` prefix).
///
/// On this branch the proof uses `sys.*`: the user nodes serve `sys.ping`, the
/// blacklist node serves the rest of `sys.`; `sys.ping` answers name their node.
#[test]
fn services_get_only_their_operations() {
    let _s = serial();
    let lb = Balancer::start(&[], &[]);
    let user_ops = ["--service", "user", "--ops", "user.,sys.ping"];
    let _u1 = Node::start("u1", &lb.registration, &user_ops, &[]);
    let _u2 = Node::start("u2", &lb.registration, &user_ops, &[]);
    let bl_ops = ["--service", "blacklist", "--ops", "blacklist.,sys."];
    let b1 = Node::start("b1", &lb.registration, &bl_ops, &[]);
    lb.wait_healthy(&["b1", "u1", "u2"], Duration::from_secs(10));

    let mut seen = BTreeSet::new();
    for k in 0..40 {
        seen.insert(ping_node(&lb.proxy, Some(&format!("k{k}"))).unwrap());
    }
    assert_eq!(seen, BTreeSet::from(["u1".to_string(), "u2".to_string()]));
    let assigned = |op: &str| {
        let r = call(
            &lb.directory,
            "lb.assign",
            json!({"op": op, "key": "x"}),
            None,
        )
        .unwrap();
        r.result.unwrap()["node"].as_str().unwrap().to_owned()
    };
    assert_eq!(assigned("sys.echo"), "b1");
    assert_eq!(assigned("blacklist.query"), "b1");
    assert!(assigned("user.login").starts_with('u'));
    let r = call(
        &lb.directory,
        "lb.assign",
        json!({"service": "blacklist"}),
        None,
    )
    .unwrap();
    assert_eq!(r.result.unwrap()["node"], json!("b1"));
    // user.* reaches a user node (which answers; it is not `no_backend`).
    let r = call(&lb.proxy, "user.login", json!({}), Some("k")).unwrap();
    assert_ne!(
        r.result.as_ref().err().map(|e| e.code.to_string()),
        Some("no_backend".into())
    );

    // Without the blacklist node, its operations have no backend: they never spill
    // over to the user nodes, which keep serving theirs.
    drop(b1);
    lb.wait_healthy(&["u1", "u2"], LEASE_TTL * 2);
    let r = call(&lb.proxy, "sys.echo", json!({"x": 1}), Some("k")).unwrap();
    assert_eq!(r.result.unwrap_err().code.to_string(), "no_backend");
    assert!(ping_node(&lb.proxy, Some("k")).unwrap().starts_with('u'));
}

/// With real business operations: `user.*` and `blacklist.*` on separate services.
#[test]
fn user_and_blacklist_services_are_separate() {
    let _s = serial();
    let lb = Balancer::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let u = Node::start(
        "u1",
        &lb.registration,
        &["--service", "user", "--ops", "user.", "--data", data],
        &[],
    );
    let b = Node::start(
        "b1",
        &lb.registration,
        &[
            "--service",
            "blacklist",
            "--ops",
            "blacklist.",
            "--data",
            data,
        ],
        &[],
    );
    lb.wait_healthy(&["b1", "u1"], Duration::from_secs(10));
    let creds = json!({"name": "svc", "password": "correct horse battery"});
    assert!(call(&lb.proxy, "user.register", creds.clone(), None)
        .unwrap()
        .result
        .is_ok());
    drop(b);
    lb.wait_healthy(&["u1"], LEASE_TTL * 2);
    let r = call(&lb.proxy, "blacklist.query", json!({"id_card": "x"}), None).unwrap();
    assert_eq!(r.result.unwrap_err().code.to_string(), "no_backend");
    assert!(call(&lb.proxy, "user.login", creds, None)
        .unwrap()
        .result
        .is_ok());
    drop(u);
}

/// A frozen (SIGSTOPped) node stops getting new work and leaves membership within
/// the lease TTL — the original balancer kept handing it out.
#[test]
fn sigstopped_node_leaves_within_ttl() {
    let _s = serial();
    let lb = Balancer::start(&[], &[]);
    let frozen = Node::start("frozen", &lb.registration, &[], &[]);
    let _alive = Node::start("alive", &lb.registration, &[], &[]);
    lb.wait_healthy(&["alive", "frozen"], Duration::from_secs(10));
    frozen.proc.signal("STOP");
    let t0 = Instant::now();
    loop {
        if !lb.nodes().iter().any(|(n, _)| n == "frozen") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(t0.elapsed() < LEASE_TTL * 3, "{:?}", lb.nodes());
    }
    let took = t0.elapsed();
    // The lease may have been renewed just before the stop: TTL plus one sweep.
    assert!(
        took <= LEASE_TTL + Duration::from_millis(300),
        "left after {took:?}"
    );
    for k in 0..20 {
        assert_eq!(
            ping_node(&lb.proxy, Some(&format!("k{k}"))).unwrap(),
            "alive"
        );
    }
    assert!(lb.proc.logs().contains("lease expired"));
    frozen.proc.signal("CONT");
    // Thawed, it notices its lease is gone and registers again.
    lb.wait_healthy(&["alive", "frozen"], Duration::from_secs(5));
}

/// `lb.assign` over connect-ask-close loops keeps the balancer's descriptor count
/// flat (the original ran out after ~20,000). 5 s by default, 60 s with DSF_HEAVY=1.
#[test]
fn directory_connect_ask_close_keeps_fds_flat() {
    let _s = serial();
    let lb = Balancer::start(&[], &[]);
    let _n = Node::start("n1", &lb.registration, &[], &[]);
    lb.wait_healthy(&["n1"], Duration::from_secs(10));
    let secs = if heavy() { 60 } else { 5 };
    let mut asked = 0u64;
    let run = |until: Instant, asked: &mut u64| {
        while Instant::now() < until {
            let key = format!("k{asked}");
            let r = call(&lb.directory, "lb.assign", json!({ "key": key }), None).unwrap();
            assert_eq!(r.result.unwrap()["node"], json!("n1"));
            *asked += 1;
        }
    };
    run(Instant::now() + Duration::from_millis(500), &mut asked);
    let before = lb.proc.fd_count();
    run(Instant::now() + Duration::from_secs(secs), &mut asked);
    std::thread::sleep(Duration::from_millis(200));
    let after = lb.proc.fd_count();
    eprintln!("{asked} assignments; balancer fds {before} -> {after}");
    assert!(asked > 500, "only {asked} assignments");
    assert!(after <= before + 4, "fds grew from {before} to {after}");
}
