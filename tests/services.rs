//! The node as a library: a second service (examples/kv.rs) beside the DSF business
//! in one cluster, and the failures a new user meets named with their address.

mod common;

use common::cluster::{free_port, Balancer, Node, Proc, SECRET};
use common::process::http_get;
use common::stores::{MariaDb, DB_PASSWORD};
use dsf::client::{CallOptions, Connection};
use dsf::protocol::{ErrorCode, Response};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The kv example's binary, built by `cargo test` beside the test binaries.
fn kv_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let target = deps.parent().unwrap().parent().unwrap();
    let kv = target.join("examples").join("kv");
    if !kv.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", "kv"])
            .status()
            .expect("cargo build --example kv");
        assert!(status.success(), "building the kv example failed");
    }
    kv
}

/// One request through `addr` with a token.
fn call(conn: &Connection, op: &str, body: Value, token: Option<&str>) -> Response {
    let opts = CallOptions {
        token: token.map(str::to_owned),
        key: None,
    };
    smol::block_on(conn.call_timeout(op, body, &opts, Duration::from_secs(10))).expect(op)
}

/// A balancer, a DSF node and a kv node on one MariaDB: a token from `user.login`
/// (served by the DSF node) works for `kv.put`/`kv.get` (served by the kv node,
/// routed by prefix through the proxy), and the kv node's /metrics counts them.
#[test]
fn a_second_service_shares_sessions_and_routes_by_prefix() {
    let db = MariaDb::shared();
    let url = db.fresh_database();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let pw = dir.path().join("db-password");
    std::fs::write(&pw, DB_PASSWORD).unwrap();
    let pw = pw.to_str().unwrap().to_owned();
    let store_env = [
        ("DSF__STORE__PASSWORD_FILE", pw.as_str()),
        ("DSF__AUTH__ARGON2_MEMORY_KIB", "1024"),
    ];
    let lb = Balancer::start(&[], &[]);
    let dsf_node = Node::start("dsf-1", &lb.registration, &["--mysql", &url], &store_env);
    let kv_admin = format!("127.0.0.1:{}", free_port());
    let mut env = vec![("DSF__CLUSTER__SECRET", SECRET)];
    env.extend_from_slice(&store_env);
    let kv = Proc::spawn_program(
        &kv_binary(),
        dir.clone(),
        "kv",
        &[
            "--id",
            "kv-1",
            "--listen",
            "127.0.0.1:0",
            "--register",
            &lb.registration,
            "--mysql",
            &url,
            "--admin",
            &kv_admin,
        ],
        &env,
    );
    kv.wait_line(|l| l == "ready", Duration::from_secs(30));
    lb.wait_healthy(&["dsf-1", "kv-1"], Duration::from_secs(10));
    // The kv node announced its prefix and which of its operations may be repeated.
    let nodes = common::cluster::call(&lb.directory, "lb.nodes", json!({}), None)
        .unwrap()
        .result
        .unwrap();
    let kv_entry = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "kv-1")
        .unwrap()
        .clone();
    assert_eq!(kv_entry["service"], "kv");
    assert_eq!(kv_entry["ops"], json!(["kv."]));
    let idempotent = kv_entry["idempotent"].as_array().unwrap();
    assert!(idempotent.contains(&json!("kv.get")), "{kv_entry}");

    let conn = smol::block_on(Connection::connect(&lb.proxy, Duration::from_secs(5))).unwrap();
    let creds = json!({"name": "kvuser", "password": "password123"});
    call(&conn, "user.register", creds.clone(), None)
        .result
        .unwrap();
    let login = call(&conn, "user.login", creds, None).result.unwrap();
    let token = login["token"].as_str().unwrap();

    let denied = call(&conn, "kv.put", json!({"k": "a", "v": "1"}), None);
    assert_eq!(denied.result.unwrap_err().code, ErrorCode::Unauthorized);
    call(&conn, "kv.put", json!({"k": "a", "v": "1"}), Some(token))
        .result
        .unwrap();
    call(&conn, "kv.put", json!({"k": "a", "v": "2"}), Some(token))
        .result
        .unwrap();
    let got = call(&conn, "kv.get", json!({"k": "a"}), Some(token));
    assert_eq!(got.result.unwrap(), json!({"v": "2"}));
    let missing = call(&conn, "kv.get", json!({"k": "nope"}), Some(token));
    assert_eq!(missing.result.unwrap_err().code, ErrorCode::NotFound);
    // The DSF business still answers through the same proxy.
    call(
        &conn,
        "blacklist.insert",
        json!({"id_card": "K1", "name": "Kay"}),
        Some(token),
    )
    .result
    .unwrap();
    // The rows are in the kv service's own table, created by its migration.
    let db_name = common::stores::db_name(&url);
    assert_eq!(
        db.sql(&format!("SELECT v FROM {db_name}.kv WHERE k = 'a'")),
        "2"
    );
    assert_eq!(
        db.sql(&format!(
            "SELECT COUNT(*) FROM {db_name}.app_migrations WHERE app = 'kv'"
        )),
        "1"
    );

    let (status, metrics) = http_get(&kv_admin, "/metrics");
    assert_eq!(status, 200);
    let count = |op: &str, code: &str| -> f64 {
        let prefix = format!("dsf_requests_total{{op=\"{op}\",code=\"{code}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(count("kv.put", "ok"), 2.0, "{metrics}");
    assert_eq!(count("kv.get", "ok"), 1.0, "{metrics}");
    assert_eq!(count("kv.get", "not_found"), 1.0, "{metrics}");
    drop(dsf_node);
}

/// The README's component commands on one host, with no `--admin` flags: a balancer
/// and three nodes all run; a node on a port already taken exits non-zero naming it.
#[test]
fn component_commands_run_side_by_side_and_a_taken_port_is_named() {
    let lb = Balancer::start(&[], &[("DSF__ADMIN__LISTEN", "")]);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let listen = format!("127.0.0.1:{port}");
        let id = format!("readme-{i}");
        let data = tempfile::tempdir().unwrap();
        let node = Proc::spawn(
            &id,
            &[
                "node",
                "--id",
                &id,
                "--listen",
                &listen,
                "--register",
                &lb.registration,
                "--data",
                data.path().to_str().unwrap(),
            ],
            &[("DSF__CLUSTER__SECRET", SECRET)],
        );
        node.wait_line(|l| l == "ready", Duration::from_secs(20));
        nodes.push((node, data));
    }
    lb.wait_healthy(
        &["readme-0", "readme-1", "readme-2"],
        Duration::from_secs(10),
    );
    let taken = format!("127.0.0.1:{}", ports[0]);
    let mut second = Proc::spawn(
        "taken",
        &["node", "--listen", &taken, "--data", "/nonexistent-unused"],
        &[],
    );
    let code = second.wait_exit(Duration::from_secs(10));
    assert_ne!(code, Some(0));
    let log = second.logs();
    assert!(
        log.contains(&format!("node listener {taken}")) && log.contains("in use"),
        "the error names the listener and the address: {log}"
    );
    assert_eq!(lb.healthy().len(), 3, "the running nodes are untouched");
}

/// A node waiting for an unreachable database names the address it tries, and one
/// SIGTERM ends it within a second, with a non-zero status (it never became ready).
#[test]
fn one_sigterm_ends_a_node_waiting_for_its_database() {
    let port = free_port();
    let url = format!("mysql://dsf:pw@127.0.0.1:{port}/dsf");
    let mut node = Proc::spawn(
        "waiting",
        &["node", "--listen", "127.0.0.1:0", "--mysql", &url],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.logs().contains("waiting for the database") {
        assert!(Instant::now() < deadline, "no wait logged: {}", node.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = node.logs();
    assert!(
        log.contains(&format!("mysql 127.0.0.1:{port}")),
        "the log names the database it tries: {log}"
    );
    assert!(
        !log.contains("Input/output error: Input/output error"),
        "each layer named once: {log}"
    );
    node.signal("TERM");
    let stopped = Instant::now();
    let code = node.wait_exit(Duration::from_secs(5));
    assert!(
        stopped.elapsed() < Duration::from_secs(1),
        "took {:?}",
        stopped.elapsed()
    );
    assert_eq!(code, Some(1), "{}", node.logs());
    assert!(node.logs().contains("stopped before it was ready"));
}

/// `dsf up` is a local cluster: balancer listeners configured on every interface
/// bind loopback unless `--bind` asks otherwise.
#[test]
fn dsf_up_listens_only_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = Proc::spawn(
        "up",
        &[
            "up",
            "--nodes",
            "1",
            "--data",
            data.to_str().unwrap(),
            "--admin",
            "",
        ],
        &[
            ("DSF__BALANCER__REGISTRATION", "0.0.0.0:0"),
            ("DSF__BALANCER__DIRECTORY", "0.0.0.0:0"),
            ("DSF__BALANCER__PROXY", "0.0.0.0:0"),
            ("DSF__NODE__LISTEN", "127.0.0.1:0"),
        ],
    );
    up.wait_line(|l| l.contains("ready"), Duration::from_secs(30));
    for listener in ["registration", "directory", "proxy"] {
        let addr = up.addr(&format!("balancer {listener} listening on"));
        assert!(addr.starts_with("127.0.0.1:"), "{listener} on {addr}");
    }
}
