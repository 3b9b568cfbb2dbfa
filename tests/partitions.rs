//! The partition suite (issue 13): the cluster in network namespaces, faults injected
//! under a concurrent workload, every operation recorded and checked for per-key
//! linearizability. See TESTING.md, "Partitions". Needs root (`DSF_SKIP_NETNS=1`
//! skips it where namespaces cannot be made).

#[path = "partitions/checker.rs"]
mod checker;
#[path = "partitions/faults.rs"]
mod faults;
#[path = "partitions/lab.rs"]
mod lab;
#[path = "partitions/run.rs"]
mod run;
#[path = "partitions/topology.rs"]
mod topology;
#[path = "partitions/workload.rs"]
mod workload;

use faults::{hold, Fault, Injected};
use rand::seq::SliceRandom;
use rand::Rng;
use run::{assert_clean, finish, routes};
use serde_json::json;
use std::time::{Duration, Instant};
use topology::Cluster;
use workload::{is_timeout, keys, Workload};

/// Namespaces, ports and the MariaDB server are per run, but two runs at once would
/// only compete for the two cores: one scenario at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A key prefix unique to this run (no `_` or `%`: it is matched with LIKE).
fn prefix(name: &str) -> String {
    format!(
        "{name}{}x{}",
        std::process::id(),
        rand::thread_rng().gen_range(0..1_000_000)
    )
}

/// Must-show 1: with n1 cut from Redis under load, no read is stale after an
/// acknowledged write, none goes new → old, and once n1 acknowledges a logout no node
/// accepts the token.
#[test]
fn writer_cut_from_redis_serves_no_stale_read_and_logout_holds() {
    if !lab::available("writer_cut_from_redis") {
        return;
    }
    let _one = serial();
    let mut c = Cluster::start(3);
    let n1 = c.node_addr(0);
    let token = c.login(&n1, "worker");
    let keys = keys(&prefix("redis"), 6);
    // Writers mostly on n1, readers on n2, n3 and through the proxy.
    let mut r = routes(&c, 1, 2);
    r.push(r[1].clone());
    let w = Workload::start(&c.lab.hub.ns, &r, &token, &keys, Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(2));
    let victim = c.login(&n1, "victim");
    for i in 0..3 {
        c.call(
            &c.node_addr(i),
            "blacklist.query",
            json!({"id_card": "x"}),
            Some(&victim),
        )
        .unwrap_or_else(|e| panic!("victim's token on n{}: {e}", i + 1));
    }
    let cut = Fault::RedisCut(0);
    let from = w.t0.elapsed().as_secs_f64();
    cut.inject(&mut c);
    std::thread::sleep(Duration::from_secs(1));
    let logout = c.call(&n1, "user.logout", json!({}), Some(&victim));
    let mut accepted = Vec::new();
    if logout.is_ok() {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(3) {
            for i in 0..3 {
                let q = c.call(
                    &c.node_addr(i),
                    "blacklist.query",
                    json!({"id_card": "x"}),
                    Some(&victim),
                );
                if q.is_ok() {
                    accepted.push(format!("n{} at +{:.1} s", i + 1, t.elapsed().as_secs_f64()));
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    std::thread::sleep(Duration::from_secs(4));
    cut.heal(&mut c);
    let faults = [Injected {
        fault: cut,
        from,
        to: w.t0.elapsed().as_secs_f64(),
    }];
    std::thread::sleep(Duration::from_secs(2));
    let report = finish("writer_redis_cut", &c, w, &token, &keys, &faults);
    println!(
        "   logout on the cut writer: {}; revoked token accepted afterwards: {accepted:?}",
        match &logout {
            Ok(_) => "acknowledged".to_owned(),
            Err(e) => format!("not acknowledged ({e})"),
        }
    );
    assert!(
        accepted.is_empty(),
        "n1 acknowledged user.logout while cut from Redis, then the token was accepted: {accepted:?}"
    );
    assert_clean("writer_redis_cut", &report);
}

/// Must-show 2: the proxy's path to n2 cut for 20 s under keyed load (heartbeats still
/// flowing): n2 is `ejected` within 3 s and no client sees more than 2 timeouts.
#[test]
fn proxy_path_cut_ejects_the_node_within_3_s() {
    if !lab::available("proxy_path_cut") {
        return;
    }
    let _one = serial();
    let mut c = Cluster::start(2);
    let token = c.login(&c.node_addr(0), "worker");
    let keys = keys(&prefix("eject"), 8);
    let r = routes(&c, 6, 0);
    let w = Workload::start(&c.lab.hub.ns, &r, &token, &keys, Duration::from_secs(6));
    std::thread::sleep(Duration::from_secs(2));
    let cut = Fault::ProxyPathCut(1);
    let from = w.t0.elapsed().as_secs_f64();
    let (t_from, t_cut) = (w.now(), Instant::now());
    cut.inject(&mut c);
    let mut ejected_after = None;
    while t_cut.elapsed() < Duration::from_secs(20) {
        let nodes = c.lb_nodes();
        if ejected_after.is_none() && nodes.iter().any(|(n, s)| n == "n2" && s == "ejected") {
            ejected_after = Some(t_cut.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let t_to = w.now();
    cut.heal(&mut c);
    let faults = [Injected {
        fault: cut,
        from,
        to: w.t0.elapsed().as_secs_f64(),
    }];
    std::thread::sleep(Duration::from_secs(3));
    let history = w.history.lock().expect("history").clone();
    let report = finish("proxy_path_cut", &c, w, &token, &keys, &faults);
    let mut timeouts = vec![0usize; r.len()];
    for op in history
        .iter()
        .filter(|o| o.invoke >= t_from && o.invoke < t_to && is_timeout(o))
    {
        timeouts[op.process] += 1;
    }
    println!(
        "   n2 ejected after {ejected_after:?}; timeouts per client in the 20 s: {timeouts:?}"
    );
    let ejected_after = ejected_after.unwrap_or_else(|| {
        panic!(
            "n2 never `ejected` in lb.nodes during the 20 s cut: {:?}",
            c.lb_nodes()
        )
    });
    assert!(
        ejected_after <= Duration::from_secs(3),
        "n2 ejected only after {ejected_after:?}"
    );
    let worst = timeouts.iter().max().copied().unwrap_or(0);
    assert!(
        worst <= 2,
        "a client saw {worst} timeouts in the 20 s cut: {timeouts:?}"
    );
    assert_clean("proxy_path_cut", &report);
}

/// Must-show 4: a bounded randomized run (≥ 10,000 operations, `DSF_PARTITIONS_OPS`
/// for more) with every kind of fault among its faults (so the writer↔Redis cut, a
/// node↔balancer cut and a pause): 0 anomalies, 0 lost acknowledged writes.
#[test]
fn randomized_faults_keep_every_key_linearizable() {
    if !lab::available("randomized") {
        return;
    }
    let _one = serial();
    let target: usize = std::env::var("DSF_PARTITIONS_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // CI's bound; a long run gets an hour per million operations.
    let limit = match target {
        0..=10_000 => Duration::from_secs(150),
        _ => Duration::from_secs((target as u64 / 1_000_000 + 1) * 3600),
    };
    let mut c = Cluster::start(3);
    let token = c.login(&c.node_addr(0), "worker");
    let keys = keys(&prefix("rand"), 8);
    let r = routes(&c, 4, 2);
    let w = Workload::start(&c.lab.hub.ns, &r, &token, &keys, Duration::from_secs(3));
    let mut rng = rand::thread_rng();
    let kinds = |n: usize| {
        [
            Fault::RedisCut(n),
            Fault::BalancerCut(n),
            Fault::ProxyPathCut(n),
            Fault::DbCut(n),
            Fault::Netem(n),
            Fault::Pause(n),
            Fault::Kill(n),
            Fault::ClockSkew,
            Fault::EtcdCut,
        ]
    };
    // Every kind once (on random nodes, in random order), then random ones until the
    // operation count is reached.
    let mut todo: Vec<Fault> = (0..9).map(|k| kinds(rng.gen_range(0..3))[k]).collect();
    todo.shuffle(&mut rng);
    let mut faults = Vec::new();
    let t = Instant::now();
    while (!todo.is_empty() || w.count.load(std::sync::atomic::Ordering::Relaxed) < target)
        && t.elapsed() < limit
    {
        std::thread::sleep(Duration::from_millis(rng.gen_range(500..1500)));
        let n = rng.gen_range(0..3);
        let fault = todo
            .pop()
            .unwrap_or_else(|| *kinds(n).choose(&mut rng).expect("a fault"));
        if fault == Fault::ClockSkew && c.skew_file.is_none() {
            continue;
        }
        let secs = Duration::from_millis(rng.gen_range(1500..4000));
        faults.push(hold(&mut c, fault, secs, w.t0));
    }
    std::thread::sleep(Duration::from_secs(2));
    let report = finish("randomized", &c, w, &token, &keys, &faults);
    assert!(
        report.ops >= target,
        "only {} operations in {limit:?}, {target} wanted",
        report.ops
    );
    assert_clean("randomized", &report);
}
