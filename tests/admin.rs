//! The admin listener of a real node: metrics move by exactly what was done; health.

mod common;

use common::cluster::Balancer;
use common::process::{metric, Dsf};
use common::wire::Wire;
use serde_json::json;
use std::time::Duration;

/// After a known sequence of requests, /metrics counters moved by exactly those amounts.
#[test]
fn metrics_count_exactly_what_happened() {
    let node = Dsf::node(&["--admin", "127.0.0.1:0"], &[]);
    let (status, before) = node.admin_get("/metrics");
    assert_eq!(status, 200);
    let count = |text: &str, op: &str, code: &str| {
        metric(text, "dsf_requests_total", &[("op", op), ("code", code)])
    };
    let mut w = Wire::connect(node.addr("node"));
    for i in 0..3 {
        w.call(i, "sys.ping", json!({}));
    }
    for i in 0..2 {
        w.call(10 + i, "sys.echo", json!({"x": i}));
    }
    w.call(20, "nope.nope", json!({}));
    w.call(21, "sys.echo", json!({"x": 1}));
    let (_, after) = node.admin_get("/metrics");
    assert_eq!(
        count(&after, "sys.ping", "ok") - count(&before, "sys.ping", "ok"),
        3.0
    );
    assert_eq!(
        count(&after, "sys.echo", "ok") - count(&before, "sys.echo", "ok"),
        3.0
    );
    assert_eq!(
        count(&after, "unknown", "unknown_type") - count(&before, "unknown", "unknown_type"),
        1.0
    );
    let latency = |t: &str| {
        metric(
            t,
            "dsf_request_duration_seconds_count",
            &[("op", "sys.ping")],
        )
    };
    assert_eq!(latency(&after) - latency(&before), 3.0);
    assert_eq!(
        metric(&after, "dsf_connections_open", &[("listener", "node")]),
        1.0,
        "{after}"
    );
    assert!(metric(&after, "dsf_bytes_received_total", &[("listener", "node")]) > 0.0);
    drop(w);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (_, closed) = node.admin_get("/metrics");
    assert_eq!(
        metric(&closed, "dsf_connections_open", &[("listener", "node")]),
        0.0
    );
}

/// /healthz answers, /readyz says ready with its checks, unknown paths are 404.
#[test]
fn health_endpoints() {
    let node = Dsf::node(&["--admin", "127.0.0.1:0"], &[]);
    let (status, body) = node.admin_get("/healthz");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = node.admin_get("/readyz");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], true);
    assert_eq!(node.admin_get("/nope").0, 404);
}

/// Under systemd's `Type=notify`: READY=1 once serving, STOPPING=1 when SIGTERM starts
/// the drain, from a node and from a balancer alike.
#[test]
fn systemd_notify_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let listen = |name: &str| {
        let path = dir.path().join(name);
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        (sock, path.to_str().unwrap().to_owned())
    };
    let expect = |sock: &UnixDatagram, what: &str, line: &str| {
        let mut buf = [0u8; 256];
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{what}: no {line} within 20 s: {e}"));
        let msg = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(msg.lines().any(|l| l == line), "{what}: {msg:?}");
    };

    let (sock, path) = listen("node");
    let mut node = Dsf::node(&[], &[("NOTIFY_SOCKET", &path)]);
    expect(&sock, "node", "READY=1");
    node.signal("TERM");
    expect(&sock, "node", "STOPPING=1");
    assert_eq!(node.wait_exit(Duration::from_secs(20)), Some(0));

    let (sock, path) = listen("balancer");
    let mut lb = Balancer::start(&[], &[("NOTIFY_SOCKET", &path)]);
    expect(&sock, "balancer", "READY=1");
    lb.proc.signal("TERM");
    expect(&sock, "balancer", "STOPPING=1");
    assert_eq!(lb.proc.wait_exit(Duration::from_secs(20)), Some(0));
}
