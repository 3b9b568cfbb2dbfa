//! Monitoring as operators get it: a balancer and nodes on MariaDB and Redis, after
//! real traffic (proxied calls, store and cache work, a retry, a lease expiry), serve
//! `/metrics` that `promtool check metrics` finds clean, and every metric the alert
//! rules and the dashboard in `monitoring/` name is in those scrapes.
//!
//! `DSF_KEEP_SCRAPES=DIR` keeps the scrapes (to look at, or to run
//! `monitoring/check.py names DIR/*.prom` by hand).

mod common;

use common::cluster::{bench, bench_report, bench_spawn, call, Balancer, Node, LEASE_TTL};
use common::process::{http_get, metric};
use common::stores::{Client, MariaDb, Redis, DB_PASSWORD};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `promtool` runs; installs Debian's `prometheus` package (which has it) when
/// it is missing and apt can be used, as `scripts/test` does. `Err` says why not.
fn promtool_available() -> Result<(), String> {
    let runs = || {
        Command::new("promtool")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if runs() {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root || Command::new("apt-get").arg("--version").output().is_err() {
        return Err(
            "promtool is not installed and apt-get cannot install it here \
                    (apt-get install prometheus)"
                .into(),
        );
    }
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", "prometheus"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed && runs() {
        Ok(())
    } else {
        Err("promtool is not installed and `apt-get install prometheus` failed".into())
    }
}

/// Runs `promtool check metrics` on `text`: (success, everything it printed).
fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// The repository's root (where `monitoring/` is).
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `GET /metrics` from an admin listener.
fn scrape(admin: &str) -> String {
    let (status, body) = http_get(admin, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// A whole cluster with stores behind it and traffic through it: every exposition
/// is clean for promtool and every metric named in monitoring/ exists.
#[test]
fn metrics_pass_promtool_and_cover_the_alerts_and_dashboard() {
    if let Err(why) = promtool_available() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let db = MariaDb::shared().fresh_database();
    let redis = Redis::start();
    let secrets = tempfile::tempdir().unwrap();
    let pw = secrets.path().join("db-password");
    std::fs::write(&pw, DB_PASSWORD).unwrap();
    let pw = pw.to_str().unwrap().to_owned();
    let redis_url = redis.url();

    let lb = Balancer::start(&["--admin", "127.0.0.1:0"], &[]);
    let lb_admin = lb.proc.addr("admin listening on");
    let node_args = [
        "--mysql",
        &db,
        "--redis",
        &redis_url,
        "--admin",
        "127.0.0.1:0",
    ];
    let node_env = [
        ("DSF__STORE__PASSWORD_FILE", pw.as_str()),
        ("DSF__AUTH__ARGON2_MEMORY_KIB", "1024"),
        ("DSF__AUTH__ARGON2_ITERATIONS", "1"),
        ("DSF__NODE__DEBUG_OPS", "true"),
    ];
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| Node::start(id, &lb.registration, &node_args, &node_env))
        .collect();
    lb.wait_healthy(&["n1", "n2", "n3"], Duration::from_secs(30));

    // Store and cache work through the proxy, answered by every node in turn.
    let mut c = Client::connect(&lb.proxy);
    c.login_new("monitoring");
    for i in 0..6 {
        let id = format!("M-{i}");
        c.call("blacklist.insert", json!({"id_card": id, "name": "X"}))
            .unwrap();
        for _ in 0..3 {
            c.call("blacklist.query", json!({"id_card": id})).unwrap();
        }
    }
    // Errors: a client error, and an unknown operation on a node.
    assert!(c
        .call("blacklist.insert", json!({"id_card": "M-0", "name": "X"}))
        .is_err());
    let unknown = call(&nodes[0].addr, "nope.nope", json!({}), None).unwrap();
    assert!(unknown.result.is_err(), "{unknown:?}");
    for k in 0..20 {
        lb.assign(&format!("key-{k}"));
    }
    let load = bench_spawn(bench(&lb.proxy, "sys.echo", 4, 2, "1s"));
    let report = bench_report(load);
    assert_eq!(report["errors"], json!(0), "{report}");

    // A retry: a read in flight on n3 when it dies is repeated on another node.
    let key = (0..)
        .map(|k| format!("r{k}"))
        .find(|k| lb.assign(k) == "n3")
        .unwrap();
    let proxy = lb.proxy.clone();
    let slow =
        std::thread::spawn(move || call(&proxy, "sys.sleep", json!({"ms": 1000}), Some(&key)));
    std::thread::sleep(Duration::from_millis(300));
    let n3 = nodes.pop().unwrap();
    n3.proc.signal("KILL");
    let slow = slow.join().unwrap().unwrap();
    assert!(slow.result.is_ok(), "retried on another node: {slow:?}");
    drop(n3);

    // A lease expiry: n2 frozen past its lease, then thawed, registers again.
    nodes[1].proc.signal("STOP");
    let t0 = Instant::now();
    while lb.nodes().iter().any(|(n, _)| n == "n2") {
        assert!(
            t0.elapsed() < LEASE_TTL * 4,
            "n2 never left: {:?}",
            lb.nodes()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nodes[1].proc.signal("CONT");
    lb.wait_healthy(&["n1", "n2"], Duration::from_secs(10));
    for i in 0..6 {
        c.call("blacklist.query", json!({"id_card": format!("M-{i}")}))
            .unwrap();
    }

    let keep = std::env::var_os("DSF_KEEP_SCRAPES").map(PathBuf::from);
    let dir = tempfile::tempdir().unwrap();
    let out = keep.unwrap_or_else(|| dir.path().to_owned());
    std::fs::create_dir_all(&out).unwrap();
    let mut files = Vec::new();
    let mut targets = vec![("balancer".to_owned(), lb_admin)];
    for n in &nodes {
        targets.push((n.id.clone(), n.proc.addr("admin listening on")));
    }
    for (name, admin) in &targets {
        let text = scrape(admin);
        let (ok, printed) = promtool_check_metrics(&text);
        assert!(
            ok && printed.is_empty(),
            "promtool check metrics on the {name}'s /metrics: {printed}\n{text}"
        );
        // Every listener that answered something counts the bytes it wrote.
        let listener = if name == "balancer" { "proxy" } else { "node" };
        assert!(
            metric(&text, "dsf_bytes_sent_total", &[("listener", listener)]) > 0.0,
            "the {name} answered requests but counted no bytes sent:\n{text}"
        );
        let file = out.join(format!("{name}.prom"));
        std::fs::write(&file, &text).unwrap();
        files.push(file);
    }

    let names = Command::new("python3")
        .arg(root().join("monitoring/check.py"))
        .arg("names")
        .args(&files)
        .output()
        .expect("python3 monitoring/check.py");
    assert!(
        names.status.success(),
        "metrics named in monitoring/ but not scraped:\n{}{}",
        String::from_utf8_lossy(&names.stdout),
        String::from_utf8_lossy(&names.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&names.stdout).trim());
}
