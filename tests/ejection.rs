//! Passive health checking through real processes: a node whose data path from the
//! proxy is cut (an in-test relay turned black hole) while its heartbeats still reach
//! the balancer is ejected, its keys are served by the ring's next node, and it comes
//! back once the path heals; the share of ejected nodes stays bounded.

mod common;

use common::blackhole::Relay;
use common::cluster::{call, Balancer, Node};
use common::process::{http_get, metric};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One test at a time (several processes and client threads each).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shorter ejections than the defaults (5 s, 60 s), so that a probe fails and the
/// ejection grows within the test; failures in a row and the response timeout keep
/// their defaults (3, 1 s).
const OUTLIER_ENV: [(&str, &str); 2] = [
    ("DSF__BALANCER__OUTLIER__BASE_EJECTION", "2s"),
    ("DSF__BALANCER__OUTLIER__MAX_EJECTION", "10s"),
];

/// A node registered with `lb` whose advertised address is `relay`.
fn node_behind(id: &str, lb: &Balancer, relay: &Relay) -> Node {
    let node = Node::start(
        id,
        &lb.registration,
        &[],
        &[("DSF__NODE__ADVERTISE", relay.addr.as_str())],
    );
    relay.forward_to(&node.addr);
    node
}

/// The state of `node` in `lb.nodes`.
fn state(lb: &Balancer, node: &str) -> String {
    lb.nodes()
        .into_iter()
        .find(|(n, _)| n == node)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

/// `count` keys the ring gives to `node`.
fn keys_of(lb: &Balancer, node: &str, count: usize) -> Vec<String> {
    (0..1000)
        .map(|i| format!("key-{i}"))
        .filter(|k| lb.assign(k) == node)
        .take(count)
        .collect()
}

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    /// Answers by answering node (`sys.ping`) or `answered` (other operations).
    answers: BTreeMap<String, u64>,
    /// Error answers and transport failures, by code.
    errors: BTreeMap<String, u64>,
    /// Nodes that answered `sys.ping` after the moment given to [`client`].
    late_nodes: BTreeMap<String, u64>,
}

/// A client sending `op` with `key` through `proxy`, one request at a time, until
/// `stop`; nodes that answer after `after` are kept apart.
fn client(
    proxy: String,
    op: &'static str,
    key: String,
    stop: Arc<AtomicBool>,
    after: Arc<Mutex<Option<Instant>>>,
) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        while !stop.load(Ordering::SeqCst) {
            match call(&proxy, op, json!({}), Some(&key)) {
                Ok(r) => match r.result {
                    Ok(body) => {
                        let node = body["node"].as_str().unwrap_or("answered").to_owned();
                        if after.lock().unwrap().is_some_and(|t| Instant::now() > t) {
                            *seen.late_nodes.entry(node.clone()).or_default() += 1;
                        }
                        *seen.answers.entry(node).or_default() += 1;
                    }
                    // An answer from the node, just not a success (no session token).
                    Err(e) if e.code.to_string() == "unauthorized" => {
                        *seen.answers.entry("answered".into()).or_default() += 1;
                    }
                    Err(e) => *seen.errors.entry(e.code.to_string()).or_default() += 1,
                },
                Err(e) => *seen.errors.entry(format!("transport: {e}")).or_default() += 1,
            }
        }
        seen
    })
}

/// The proxy's path to one of two nodes is cut for 20 s under keyed load while its
/// heartbeats go on: it is `ejected` within 3 s, no client sees more than 2 timeouts,
/// its keys are answered by the other node, and once the path heals it is healthy
/// again and its keys come back to it.
#[test]
fn node_cut_from_the_proxy_is_ejected_and_comes_back() {
    let _s = serial();
    let lb = Balancer::start(&["--admin", "127.0.0.1:0"], &OUTLIER_ENV);
    let admin = lb.proc.addr("admin listening on");
    let (ra, rb) = (Relay::start(), Relay::start());
    let _a = node_behind("a", &lb, &ra);
    let _b = node_behind("b", &lb, &rb);
    lb.wait_healthy(&["a", "b"], Duration::from_secs(10));
    let b_keys = keys_of(&lb, "b", 6);
    let a_keys = keys_of(&lb, "a", 2);
    assert_eq!((b_keys.len(), a_keys.len()), (6, 2));
    for k in &b_keys {
        let r = call(&lb.proxy, "sys.ping", json!({}), Some(k)).unwrap();
        assert_eq!(
            r.result.unwrap()["node"],
            json!("b"),
            "key {k} before the cut"
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let ejected_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mut clients = Vec::new();
    // Idempotent reads and operations that may not be repeated, on both nodes' keys.
    for (i, k) in b_keys.iter().chain(&a_keys).enumerate() {
        let op = if i % 2 == 0 {
            "sys.ping"
        } else {
            "user.logout"
        };
        let t = client(
            lb.proxy.clone(),
            op,
            k.clone(),
            stop.clone(),
            ejected_at.clone(),
        );
        clients.push((k.clone(), op, t));
    }
    std::thread::sleep(Duration::from_millis(500));
    let cut = Instant::now();
    rb.set_blackhole(true);
    let mut states = Vec::new();
    let mut shown = None;
    while cut.elapsed() < Duration::from_secs(20) {
        let s = state(&lb, "b");
        if s == "ejected" && ejected_at.lock().unwrap().is_none() {
            *ejected_at.lock().unwrap() = Some(Instant::now() + Duration::from_millis(100));
            // The status page's data and the metrics show it too.
            let status: serde_json::Value =
                serde_json::from_str(&http_get(&admin, "/status.json").1).unwrap();
            shown = Some((status, http_get(&admin, "/metrics").1));
        }
        if states.last() != Some(&s) {
            states.push(s);
        }
        assert_eq!(state(&lb, "a"), "healthy", "the reachable node stays in");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ejected_after = ejected_at
        .lock()
        .unwrap()
        .map(|t| t - Duration::from_millis(100) - cut);
    stop.store(true, Ordering::SeqCst);
    let mut report = Vec::new();
    for (key, op, t) in clients {
        let seen = t.join().unwrap();
        report.push((key, op, seen));
    }
    let logs = lb.proc.logs();
    eprintln!("b's states during the cut: {states:?}; ejected after {ejected_after:?}");
    for (key, op, seen) in &report {
        eprintln!("{op:12} {key:8} {seen:?}");
    }
    let ejected_after = ejected_after.expect("b was never ejected");
    assert!(
        ejected_after <= Duration::from_secs(3),
        "ejected after {ejected_after:?}; log:\n{logs}"
    );
    for (key, op, seen) in &report {
        let timeouts = seen.errors.get("timeout").copied().unwrap_or(0);
        assert!(timeouts <= 2, "{op} {key}: {timeouts} timeouts: {seen:?}");
        let others: u64 = seen
            .errors
            .iter()
            .filter(|(c, _)| *c != "timeout")
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            others, 0,
            "{op} {key}: errors other than timeouts: {seen:?}"
        );
        assert!(
            seen.answers.values().sum::<u64>() > 10,
            "{op} {key}: too few answers: {seen:?}"
        );
        // Once b is out, its keys are answered by the ring's next node, a.
        assert!(
            seen.late_nodes.keys().all(|n| n == "a" || n == "answered"),
            "{op} {key}: {seen:?}"
        );
    }
    let (status, metrics) = shown.unwrap();
    let b = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "b")
        .unwrap();
    assert_eq!(b["state"], "ejected", "{status}");
    let ejections = [("service", "dsf"), ("node", "b")];
    assert_eq!(
        metric(&metrics, "dsf_balancer_node_ejections_total", &ejections),
        1.0
    );
    let gauge = [("service", "dsf"), ("state", "ejected")];
    assert_eq!(metric(&metrics, "dsf_balancer_service_nodes", &gauge), 1.0);
    assert!(
        logs.contains("node ejected") && logs.contains("probe failed"),
        "the ejection and the failed probes are logged:\n{logs}"
    );

    // The path heals: a probe gets through and b takes its keys again.
    rb.set_blackhole(false);
    let healed = Instant::now();
    while state(&lb, "b") != "healthy" {
        assert!(
            healed.elapsed() < Duration::from_secs(15),
            "b not readmitted; log:\n{}",
            lb.proc.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("b readmitted {:?} after the path healed", healed.elapsed());
    for k in &b_keys {
        let r = call(&lb.proxy, "sys.ping", json!({}), Some(k)).unwrap();
        assert_eq!(
            r.result.unwrap()["node"],
            json!("b"),
            "key {k} after healing"
        );
    }
    assert!(lb.proc.logs().contains("node readmitted"));
}

/// With both nodes of a service cut, at most one (50 % of two) is ejected: the
/// service never ejects itself empty.
#[test]
fn at_most_half_of_a_service_is_ejected() {
    let _s = serial();
    let lb = Balancer::start(&[], &OUTLIER_ENV);
    let (ra, rb) = (Relay::start(), Relay::start());
    let _a = node_behind("a", &lb, &ra);
    let _b = node_behind("b", &lb, &rb);
    lb.wait_healthy(&["a", "b"], Duration::from_secs(10));
    let keys: Vec<String> = keys_of(&lb, "a", 3)
        .into_iter()
        .chain(keys_of(&lb, "b", 3))
        .collect();
    ra.set_blackhole(true);
    rb.set_blackhole(true);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = keys
        .iter()
        .map(|k| {
            client(
                lb.proxy.clone(),
                "sys.ping",
                k.clone(),
                stop.clone(),
                Arc::default(),
            )
        })
        .collect();
    let t0 = Instant::now();
    let mut most = 0;
    while t0.elapsed() < Duration::from_secs(8) {
        let nodes = lb.nodes();
        let ejected = nodes.iter().filter(|(_, s)| s == "ejected").count();
        assert!(ejected <= 1, "both nodes ejected: {nodes:?}");
        most = most.max(ejected);
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let logs = lb.proc.logs();
    assert_eq!(most, 1, "one node ejected; log:\n{logs}");
    assert!(
        logs.contains("node not ejected"),
        "the refused ejection is logged:\n{logs}"
    );
}
