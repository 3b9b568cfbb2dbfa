//! Zero-downtime operations (PROTOCOL §7, §9): `goaway` on drain, socket activation,
//! and in-place upgrades of nodes and balancers under continuous load, counting
//! every request.

mod common;

use common::cluster::*;
use dsf::client::{CallOptions, Reconnecting};
use serde_json::{json, Value};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the client-library load saw.
#[derive(Default)]
struct Counts {
    /// Answered `ok`.
    ok: AtomicU64,
    /// Anything else: an error answer, a failed connection, a timeout.
    failed: AtomicU64,
    /// New connections after a `goaway` or a close.
    reconnects: AtomicU64,
}

/// Client-library load: `workers` threads, each with its own [`Reconnecting`] client
/// to `addr`, calling `sys.echo` with a key until `stop`; every request is counted.
struct Load {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addr: &str, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let workers = (0..workers)
            .map(|w| {
                let (addr, stop, counts) = (addr.to_owned(), stop.clone(), counts.clone());
                std::thread::spawn(move || {
                    smol::block_on(async {
                        let client = Reconnecting::new(addr, Duration::from_secs(5));
                        let mut i = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            i += 1;
                            let opts = CallOptions {
                                token: None,
                                key: Some(format!("k{w}-{i}")),
                            };
                            match client.call("sys.echo", json!({ "i": i }), &opts).await {
                                Ok(r) if r.result.as_ref().is_ok_and(|b| b["i"] == i) => {
                                    counts.ok.fetch_add(1, Ordering::Relaxed)
                                }
                                Ok(r) => {
                                    eprintln!("load: error answer {:?}", r.result);
                                    counts.failed.fetch_add(1, Ordering::Relaxed)
                                }
                                Err(e) => {
                                    eprintln!("load: call failed: {e}");
                                    counts.failed.fetch_add(1, Ordering::Relaxed)
                                }
                            };
                            async_io::Timer::after(Duration::from_millis(2)).await;
                        }
                        counts
                            .reconnects
                            .fetch_add(client.reconnects(), Ordering::Relaxed);
                    })
                })
            })
            .collect();
        Load {
            stop,
            counts,
            workers,
        }
    }

    /// Stops the workers; returns (ok, failed, reconnects).
    fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.join().unwrap();
        }
        let c = &self.counts;
        (
            c.ok.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
            c.reconnects.load(Ordering::Relaxed),
        )
    }
}

/// `dsf bench` through `target` for `secs`, in the background.
fn bench_for(target: &str, secs: u64) -> std::process::Child {
    bench_spawn(bench(target, "sys.echo", 8, 2, &format!("{secs}s")))
}

/// Asserts a bench report counted no failure of any kind.
fn assert_clean(report: &Value, what: &str) {
    eprintln!("{what}: bench {report}");
    for field in ["errors", "lost", "refused_conns", "failed_conns"] {
        assert_eq!(report[field], 0, "{what}: bench {field}: {report}");
    }
    assert!(report["rps"].as_f64().unwrap() > 0.0, "{what}: {report}");
}

/// Nodes for the proxy to use.
fn nodes(reg: &str, ids: &[&str]) -> Vec<Node> {
    ids.iter()
        .map(|id| Node::start(id, reg, &[], &[]))
        .collect()
}

/// A node drained (SIGTERM) under load through the proxy: its `goaway` moves the
/// proxy's pooled connections and no client request fails.
#[test]
fn node_drained_under_load_through_the_proxy_fails_nothing() {
    let lb = Balancer::start(&[], &[]);
    let mut ns = nodes(&lb.registration, &["d1", "d2", "d3"]);
    lb.wait_healthy(&["d1", "d2", "d3"], Duration::from_secs(20));
    let load = Load::start(&lb.proxy, 4);
    let bench = bench_for(&lb.proxy, 4);
    std::thread::sleep(Duration::from_millis(1200));
    ns[0].proc.signal("TERM");
    assert_eq!(ns[0].proc.wait_exit(Duration::from_secs(15)), Some(0));
    std::thread::sleep(Duration::from_millis(800));
    ns[1].proc.signal("TERM");
    assert_eq!(ns[1].proc.wait_exit(Duration::from_secs(15)), Some(0));
    let report = bench_report(bench);
    let (ok, failed, _) = load.finish();
    eprintln!("node drain: client library ok={ok} failed={failed}");
    assert_eq!(
        failed,
        0,
        "client library: {failed} failed of {}",
        ok + failed
    );
    assert!(ok > 100, "client library: only {ok} requests");
    assert_clean(&report, "node drain");
    assert_eq!(lb.healthy(), ["d3"]);
}

/// A client library connection that receives `goaway` sends its next request on a
/// new connection; requests in flight on the old one are answered.
#[test]
fn client_connection_moves_on_after_goaway() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("node.sock");
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let env = [("DSF__RUNTIME__UPGRADE_SOCKET", sock.to_str().unwrap())];
    let args = ["node", "--id", "n1", "--listen", &listen, "--threads", "1"];
    let data = dir.path().join("data");
    let data_args = ["--data", data.to_str().unwrap()];
    let all: Vec<&str> = args.iter().chain(&data_args).copied().collect();
    let old = Proc::spawn("old", &all, &env);
    old.wait_line(|l| l == "ready", Duration::from_secs(20));
    let client = Reconnecting::new(listen.clone(), Duration::from_secs(5));
    let first = smol::block_on(client.connection()).unwrap();
    smol::block_on(client.call("sys.ping", json!({}), &CallOptions::default())).unwrap();
    let mut with_upgrade = all.clone();
    with_upgrade.push("--upgrade");
    let mut old = old;
    let new = Proc::spawn("new", &with_upgrade, &env);
    new.wait_line(|l| l == "ready", Duration::from_secs(20));
    // The old process announced goaway on the client's connection.
    let t0 = Instant::now();
    while first.is_usable() {
        assert!(t0.elapsed() < Duration::from_secs(5), "no goaway seen");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(first.saw_goaway());
    let r = smol::block_on(client.call("sys.ping", json!({}), &CallOptions::default())).unwrap();
    assert_eq!(r.result.unwrap()["node"], "n1");
    assert_eq!(client.reconnects(), 1);
    drop(first);
    assert_eq!(old.wait_exit(Duration::from_secs(15)), Some(0));
    let _ = new;
}

/// A node started by `systemd-socket-activate --fdname=node` serves on the passed
/// descriptor, not on its configured address.
#[test]
fn socket_activated_node_serves_on_the_passed_descriptor() {
    if Command::new("systemd-socket-activate")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!("systemd-socket-activate missing (package systemd); skipped");
        return;
    }
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let passed = format!("127.0.0.1:{}", free_port());
    let configured = format!("127.0.0.1:{}", free_port());
    let data = dir.path().join("data");
    let p = Proc::spawn_program(
        std::path::Path::new("systemd-socket-activate"),
        dir.clone(),
        "activated",
        &[
            "-l",
            &passed,
            "--fdname=node",
            dsf(),
            "node",
            "--id",
            "sa1",
            "--listen",
            &configured,
            "--data",
            data.to_str().unwrap(),
        ],
        &[],
    );
    // systemd-socket-activate starts the node on the first connection.
    std::thread::sleep(Duration::from_millis(300));
    let r = call(&passed, "sys.ping", json!({}), None).expect("ping on the passed socket");
    assert_eq!(r.result.unwrap()["node"], "sa1");
    let line = p.wait_line(
        |l| l.starts_with("node sa1 listening on"),
        Duration::from_secs(20),
    );
    assert!(line.ends_with(&passed), "{line}");
    assert!(call(&configured, "sys.ping", json!({}), None).is_err());
}

/// Five in-place upgrades of the balancer under load from the client library and
/// `dsf bench` through the proxy: no refused connection, no failed request, and the
/// nodes stay selectable throughout.
#[test]
fn five_balancer_upgrades_under_load_refuse_and_fail_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("lb.sock");
    let ports = [free_port(), free_port(), free_port()];
    let env = [("DSF__RUNTIME__UPGRADE_SOCKET", sock.to_str().unwrap())];
    let mut lb = Balancer::start_on(ports, &[], &env);
    let _ns = nodes(&lb.registration, &["u1", "u2"]);
    lb.wait_healthy(&["u1", "u2"], Duration::from_secs(20));
    let load = Load::start(&lb.proxy, 4);
    let bench = bench_for(&lb.proxy, 9);
    std::thread::sleep(Duration::from_millis(700));
    for round in 0..5 {
        let next = Balancer::start_on(ports, &["--upgrade"], &env);
        assert_eq!(
            lb.proc.wait_exit(Duration::from_secs(15)),
            Some(0),
            "round {round}: old balancer log:\n{}",
            lb.proc.logs()
        );
        lb = next;
        assert_eq!(lb.healthy().len(), 2, "round {round}: {:?}", lb.nodes());
        std::thread::sleep(Duration::from_millis(600));
    }
    let report = bench_report(bench);
    let (ok, failed, reconnects) = load.finish();
    eprintln!("balancer upgrades: client library ok={ok} failed={failed} reconnects={reconnects}");
    assert_eq!(
        failed,
        0,
        "client library: {failed} failed of {}",
        ok + failed
    );
    assert!(
        reconnects >= 5,
        "client library moved only {reconnects} times"
    );
    assert_clean(&report, "balancer upgrades");
    assert!(report["goaways"].as_u64().unwrap() >= 5, "{report}");
    lb.wait_healthy(&["u1", "u2"], Duration::from_secs(5));
}

/// `dsf node` on a fixed address with an upgrade socket, registered at `reg`;
/// `--upgrade` when `upgrade`. Returns once it printed `ready`.
fn upgradable_node(dir: &std::path::Path, reg: &str, listen: &str, upgrade: bool) -> Proc {
    let sock = dir.join("node.sock");
    let data = dir.join("data");
    let mut args = vec![
        "node",
        "--id",
        "v1",
        "--listen",
        listen,
        "--register",
        reg,
        "--threads",
        "1",
        "--data",
        data.to_str().unwrap(),
    ];
    if upgrade {
        args.push("--upgrade");
    }
    let env = [
        ("DSF__RUNTIME__UPGRADE_SOCKET", sock.to_str().unwrap()),
        ("DSF__CLUSTER__SECRET", SECRET),
    ];
    let p = Proc::spawn("v1", &args, &env);
    p.wait_line(|l| l == "ready", Duration::from_secs(20));
    p
}

/// Five in-place upgrades of a node under load through the proxy: no failed request,
/// and the node keeps its place in the balancer's selection.
#[test]
fn five_node_upgrades_under_load_fail_nothing() {
    let lb = Balancer::start(&[], &[]);
    let _other = Node::start("v2", &lb.registration, &[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut node = upgradable_node(dir.path(), &lb.registration, &listen, false);
    lb.wait_healthy(&["v1", "v2"], Duration::from_secs(20));
    let load = Load::start(&lb.proxy, 4);
    let bench = bench_for(&lb.proxy, 9);
    std::thread::sleep(Duration::from_millis(700));
    for round in 0..5 {
        let next = upgradable_node(dir.path(), &lb.registration, &listen, true);
        assert_eq!(
            node.wait_exit(Duration::from_secs(15)),
            Some(0),
            "round {round}: old node log:\n{}",
            node.logs()
        );
        node = next;
        assert_eq!(lb.healthy().len(), 2, "round {round}: {:?}", lb.nodes());
        std::thread::sleep(Duration::from_millis(600));
    }
    let report = bench_report(bench);
    let (ok, failed, reconnects) = load.finish();
    eprintln!("node upgrades: client library ok={ok} failed={failed} reconnects={reconnects}");
    assert_eq!(
        failed,
        0,
        "client library: {failed} failed of {}",
        ok + failed
    );
    assert_clean(&report, "node upgrades");
    lb.wait_healthy(&["v1", "v2"], Duration::from_secs(5));
}
