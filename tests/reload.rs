//! Live reload (PROTOCOL §9) on real processes: `SIGHUP` changes the balancer's
//! algorithm and a node's weight while the clients' connections stay open, and a
//! broken file is refused with the key named while the running configuration stays.

mod common;

use common::cluster::{bench, bench_report, bench_spawn, Balancer, Node};
use common::process::http_get;
use common::wire::Wire;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// `lb.nodes` through an open directory connection: node id → weight.
fn weights(dir: &mut Wire, id: u64) -> Vec<(String, u64)> {
    let resp = dir.call(id, "lb.nodes", json!({}));
    assert_eq!(resp["ok"], true, "lb.nodes: {resp}");
    resp["body"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_owned(),
                n["weight"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Nodes `lb.assign` names for one key asked `n` times over an open connection.
fn assigned(dir: &mut Wire, first_id: u64, key: &str, n: u64) -> BTreeSet<String> {
    (0..n)
        .map(|i| {
            let resp = dir.call(first_id + i, "lb.assign", json!({ "key": key }));
            assert_eq!(resp["ok"], true, "lb.assign: {resp}");
            resp["body"]["node"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn status(admin: &str) -> Value {
    let (code, body) = http_get(admin, "/status.json");
    assert_eq!(code, 200, "status.json: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until `cond` holds, or fails naming `what` with the log of `logs()`.
fn wait_for(
    what: &str,
    timeout: Duration,
    logs: impl Fn() -> String,
    mut cond: impl FnMut() -> bool,
) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < timeout,
            "{what}: not within {timeout:?}; log:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The ping answer on an open proxy connection.
fn ping(proxy: &mut Wire, id: u64) {
    let resp = proxy.call(id, "sys.ping", json!({}));
    assert_eq!(
        resp["ok"], true,
        "sys.ping on the open proxy connection: {resp}"
    );
    assert_eq!(resp["id"], id);
}

struct Files {
    _dir: tempfile::TempDir,
    balancer: PathBuf,
    node_a: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let balancer = dir.path().join("balancer.toml");
    let node_a = dir.path().join("node-a.toml");
    write(&balancer, "[balancer]\nalgorithm = \"consistent_hash\"\n");
    write(&node_a, "[node]\nweight = 1\n");
    Files {
        _dir: dir,
        balancer,
        node_a,
    }
}

/// A balancer on `f.balancer` with an admin listener (its address returned) and node
/// `a` on `f.node_a`, registered with it: what the SIGHUP tests reload.
fn balancer_and_node_a(f: &Files) -> (Balancer, String, Node) {
    let lb_cfg = f.balancer.to_str().unwrap();
    let lb = Balancer::start(&["--config", lb_cfg, "--admin", "127.0.0.1:0"], &[]);
    let admin = lb.proc.addr("admin listening on");
    let a = Node::start(
        "a",
        &lb.registration,
        &["--config", f.node_a.to_str().unwrap()],
        &[],
    );
    (lb, admin, a)
}

#[test]
fn sighup_changes_algorithm_and_weight_and_connections_stay_open() {
    let f = files();
    let (lb, admin, a) = balancer_and_node_a(&f);
    let b = Node::start("b", &lb.registration, &[], &[]);
    lb.wait_healthy(&["a", "b"], Duration::from_secs(10));

    // Connections opened before the reload, used before and after it.
    let mut proxy = Wire::connect(&lb.proxy);
    let mut dir = Wire::connect(&lb.directory);
    let mut node_conn = Wire::connect(&a.addr);
    ping(&mut proxy, 1);
    assert_eq!(node_conn.call(1, "sys.ping", json!({}))["ok"], true);
    assert_eq!(status(&admin)["algorithm"], "consistent_hash");
    assert_eq!(weights(&mut dir, 1), [("a".into(), 1), ("b".into(), 1)]);
    assert_eq!(
        assigned(&mut dir, 10, "user-42", 10).len(),
        1,
        "consistent hashing puts one key on one node"
    );

    // Load across the reload: `dsf bench` through the proxy, and the client library
    // on one connection, each request counted.
    let load = bench_spawn(bench(&lb.proxy, "sys.echo", 8, 4, "3s"));
    let client = library_load(&lb.proxy);
    std::thread::sleep(Duration::from_millis(1000));

    write(&f.balancer, "[balancer]\nalgorithm = \"round_robin\"\n");
    write(&f.node_a, "[node]\nweight = 7\n");
    lb.proc.signal("HUP");
    a.proc.signal("HUP");

    let mut id = 100;
    wait_for(
        "lb.nodes shows node a at weight 7",
        Duration::from_secs(10),
        || lb.proc.logs() + &a.proc.logs(),
        || {
            id += 1;
            weights(&mut dir, id) == [("a".into(), 7), ("b".into(), 1)]
        },
    );
    let s = status(&admin);
    assert_eq!(
        s["algorithm"], "round_robin",
        "status.json after the reload: {s}"
    );
    let page_weights: Vec<(String, u64)> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_owned(),
                n["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(page_weights, [("a".into(), 7), ("b".into(), 1)]);
    assert_eq!(
        assigned(&mut dir, 200, "user-42", 16),
        ["a".to_string(), "b".to_string()].into(),
        "round robin spreads one key over both nodes"
    );
    // The same connections still answer: nothing was closed by the reload.
    for i in 0..5 {
        ping(&mut proxy, 300 + i);
    }
    assert_eq!(node_conn.call(2, "sys.ping", json!({}))["ok"], true);
    assert!(lb.proc.logs().contains("reload: configuration taken live"));
    assert!(
        a.proc
            .logs()
            .contains("weight changed; the next heartbeat carries it"),
        "node log:\n{}",
        a.proc.logs()
    );
    assert!(lb.proc.logs().contains("reweighted"), "{}", lb.proc.logs());
    let report = bench_report(load);
    let (ok, failed) = client.finish();
    eprintln!("across the reload: bench {report}; client library {ok} ok, {failed} failed");
    assert_eq!(report["errors"], json!(0), "{report}");
    assert_eq!(report["failed_conns"], json!(0), "{report}");
    assert!(
        ok > 0 && failed == 0,
        "client library: {ok} ok, {failed} failed"
    );
    drop(b);
}

/// Requests sent one after another over one client-library connection until
/// [`LibraryLoad::finish`].
struct LibraryLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl LibraryLoad {
    /// Stops the load; `(succeeded, failed)`.
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn library_load(addr: &str) -> LibraryLoad {
    use dsf::client::{CallOptions, Connection};
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flag, addr) = (stop.clone(), addr.to_owned());
    let thread = std::thread::spawn(move || {
        smol::block_on(async move {
            let conn = Connection::connect(&addr, Duration::from_secs(2))
                .await
                .expect("connect to the proxy");
            let (mut ok, mut failed) = (0, 0);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let r = conn
                    .call_timeout(
                        "sys.ping",
                        json!({}),
                        &CallOptions::default(),
                        Duration::from_secs(2),
                    )
                    .await;
                match r {
                    Ok(resp) if resp.result.is_ok() => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        })
    });
    LibraryLoad { stop, thread }
}

#[test]
fn sighup_with_an_invalid_file_keeps_the_running_config_and_names_the_key() {
    let f = files();
    let (lb, admin, a) = balancer_and_node_a(&f);
    lb.wait_healthy(&["a"], Duration::from_secs(10));
    let mut proxy = Wire::connect(&lb.proxy);
    let mut dir = Wire::connect(&lb.directory);
    ping(&mut proxy, 1);

    // An algorithm nobody knows: the balancer refuses the file and names the key.
    write(&f.balancer, "[balancer]\nalgorithm = \"fastest\"\n");
    lb.proc.signal("HUP");
    wait_for(
        "the balancer refuses the file",
        Duration::from_secs(10),
        || lb.proc.logs(),
        || lb.proc.logs().contains("reload refused"),
    );
    let log = lb.proc.logs();
    let line = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(line.contains("balancer.algorithm"), "names the key: {line}");
    let lb_cfg = f.balancer.to_str().unwrap();
    assert!(line.contains(lb_cfg), "names the file: {line}");
    assert_eq!(status(&admin)["algorithm"], "consistent_hash");

    // A value out of range in the node's file: refused, the weight in force stays.
    write(&f.node_a, "[node]\nweight = 0\n");
    a.proc.signal("HUP");
    wait_for(
        "the node refuses the file",
        Duration::from_secs(10),
        || a.proc.logs(),
        || a.proc.logs().contains("reload refused"),
    );
    let log = a.proc.logs();
    let line = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(line.contains("node.weight"), "names the key: {line}");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(weights(&mut dir, 2), [("a".into(), 1)]);

    // A key that needs a restart is named in one warning; what is live is taken.
    write(
        &f.balancer,
        "[balancer]\nalgorithm = \"least_inflight\"\nproxy_conns_per_node = 2\n[limits]\nrequest_timeout = \"4s\"\n",
    );
    lb.proc.signal("HUP");
    wait_for(
        "the balancer takes the live part",
        Duration::from_secs(10),
        || lb.proc.logs(),
        || status(&admin)["algorithm"] == "least_inflight",
    );
    let log = lb.proc.logs();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("need a restart"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {warnings:?}");
    assert!(
        warnings[0].contains("balancer.proxy_conns_per_node")
            && warnings[0].contains("limits.request_timeout"),
        "names both keys: {}",
        warnings[0]
    );
    for i in 0..3 {
        ping(&mut proxy, 10 + i);
    }
}

/// Runs `n` statements that each hold a connection for 400 ms, at once; how many
/// got a connection.
fn concurrent_sleeps(store: &std::sync::Arc<dyn dsf::store::Store>, n: usize) -> usize {
    smol::block_on(async {
        let runs: Vec<_> = (0..n)
            .map(|_| {
                let store = store.clone();
                smol::spawn(async move { store.execute("DO SLEEP(0.4)", Vec::new()).await })
            })
            .collect();
        let mut ok = 0;
        for r in runs {
            if r.await.is_ok() {
                ok += 1;
            }
        }
        ok
    })
}

/// A reload of `store.pool_max` gives the running MySQL store a pool of the new size;
/// the old pool's connections close once returned.
#[test]
fn a_reload_resizes_the_mysql_pool() {
    use common::stores::{db_name, MariaDb, DB_PASSWORD};
    let db = MariaDb::shared();
    let url = db.fresh_database();
    let mut cfg = dsf::config::Config::default();
    cfg.store.url = url.clone();
    cfg.store.password = DB_PASSWORD.to_owned();
    cfg.store.pool_min = 1;
    cfg.store.pool_max = 1;
    cfg.store.acquire_timeout = Duration::from_millis(200);
    let store = smol::block_on(dsf::store::open(&cfg)).expect("open mysql store");
    assert_eq!(
        concurrent_sleeps(&store, 3),
        1,
        "pool_max = 1: one at a time"
    );

    cfg.store.pool_max = 3;
    smol::block_on(store.resize(&cfg.store)).expect("resize");
    assert_eq!(
        concurrent_sleeps(&store, 3),
        3,
        "pool_max = 3: three at once"
    );
    // The first pool is gone: at most the new pool's three connections remain.
    let name = db_name(&url).to_owned();
    let t0 = Instant::now();
    while db.connections_to(&name) > 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "old pool still open"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `log.level` changes on `SIGHUP`: a balancer started at `warn` logs nothing at info
/// level until its file says `debug`; then its info lines appear.
#[test]
fn sighup_changes_the_log_level() {
    let f = files();
    write(&f.balancer, "[log]\nlevel = \"warn\"\n");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("balancer.log");
    let mut child = std::process::Command::new(common::cluster::dsf())
        .args(["balancer", "--config", f.balancer.to_str().unwrap()])
        .args([
            "--registration",
            "127.0.0.1:0",
            "--directory",
            "127.0.0.1:0",
        ])
        .args(["--proxy", "127.0.0.1:0", "--admin", ""])
        .env_remove("RUST_LOG")
        .env_remove("DSF__LOG__LEVEL")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !read().contains(" INFO "),
        "warn level logs no info line:\n{}",
        read()
    );
    write(
        &f.balancer,
        "[log]\nlevel = \"debug\"\n[balancer]\nalgorithm = \"p2c\"\n",
    );
    common::process::signal(child.id(), "HUP");
    wait_for(
        "info lines after the reload",
        Duration::from_secs(10),
        read,
        || read().contains("reload: configuration taken live"),
    );
    assert!(read().contains("log level changed"), "{}", read());
    let _ = child.kill();
    let _ = child.wait();
}

/// A `SIGHUP` while a node still waits for its database neither ends it nor reloads
/// half-built parts: it is logged and ignored.
#[test]
fn sighup_while_starting_is_ignored() {
    let port = common::cluster::free_port();
    let url = format!("mysql://dsf@127.0.0.1:{port}/nothing_here");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut proc = common::cluster::Proc::spawn(
        "waiting",
        &[
            "node",
            "--listen",
            "127.0.0.1:0",
            "--mysql",
            &url,
            "--data",
            data,
        ],
        &[],
    );
    wait_for(
        "the node waits for its database",
        Duration::from_secs(10),
        || proc.logs(),
        || proc.logs().contains(&port.to_string()),
    );
    proc.signal("HUP");
    wait_for(
        "the SIGHUP is logged",
        Duration::from_secs(10),
        || proc.logs(),
        || proc.logs().contains("SIGHUP while starting: ignored"),
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        proc.child.try_wait().unwrap().is_none(),
        "still running:\n{}",
        proc.logs()
    );
    proc.signal("TERM");
    proc.wait_exit(Duration::from_secs(10));
}
