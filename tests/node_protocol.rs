//! Whole-node protocol tests: a real `dsf node` process, raw sockets, PROTOCOL §1–§4.

mod common;

use common::process::Dsf;
use common::wire::{code, frame, request, Wire};
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};

/// `sys.ping` answers the node id and `sys.echo` its body, with the request's id.
#[test]
fn ping_and_echo() {
    let node = Dsf::node(&["--id", "n1"], &[]);
    let mut w = Wire::connect(node.addr("node"));
    assert_eq!(
        w.call(7, "sys.ping", json!({})),
        json!({"id":7,"ok":true,"body":{"node":"n1"}})
    );
    let body = json!({"s":"héllo","n":[1,2,{"x":null}]});
    assert_eq!(w.call(8, "sys.echo", body.clone())["body"], body);
}

/// 10,000 pipelined `sys.echo` requests on one connection all come back, ids matching.
#[test]
fn ten_thousand_pipelined_echoes() {
    let node = Dsf::node(&[], &[]);
    let mut w = Wire::connect(node.addr("node"));
    let mut batch = Vec::new();
    for id in 0..10_000u64 {
        batch.extend(request(id, "sys.echo", json!({ "i": id })));
    }
    let mut writer = w.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&batch).unwrap());
    let mut seen = vec![false; 10_000];
    for _ in 0..10_000 {
        let r = w.recv().expect("response");
        let id = r["id"].as_u64().unwrap();
        assert_eq!(r["body"]["i"], id, "body matches id");
        assert!(!seen[id as usize], "duplicate id {id}");
        seen[id as usize] = true;
    }
    sender.join().unwrap();
    assert!(seen.iter().all(|s| *s));
}

/// A frame delivered one byte at a time is decoded as one request.
#[test]
fn frame_split_byte_by_byte() {
    let node = Dsf::node(&[], &[]);
    let mut w = Wire::connect(node.addr("node"));
    for b in request(1, "sys.echo", json!({"k":"v"})) {
        w.send(&[b]);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(w.recv().unwrap()["body"], json!({"k":"v"}));
}

/// 100 frames in one write get 100 answers.
#[test]
fn hundred_frames_in_one_write() {
    let node = Dsf::node(&[], &[]);
    let mut w = Wire::connect(node.addr("node"));
    let bytes: Vec<u8> = (0..100)
        .flat_map(|i| request(i, "sys.ping", json!({})))
        .collect();
    w.send(&bytes);
    let mut ids: Vec<u64> = (0..100)
        .map(|_| w.recv().unwrap()["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..100).collect::<Vec<_>>());
}

/// A length over max_frame gets `too_large` with a null id, then the connection closes.
#[test]
fn oversized_frame_is_refused_and_closed() {
    let node = Dsf::node(&[], &[("DSF__LIMITS__MAX_FRAME", "1024")]);
    let mut w = Wire::connect(node.addr("node"));
    w.send(&4_000_000_000u32.to_be_bytes());
    let r = w.recv().unwrap();
    assert_eq!(code(&r), "too_large");
    assert_eq!(r["id"], Value::Null);
    assert!(w.closed());
    // A frame just over the limit, sent in full, is refused the same way.
    let mut w = Wire::connect(node.addr("node"));
    w.send(&frame(&vec![b' '; 1025]));
    assert_eq!(code(&w.recv().unwrap()), "too_large");
    assert!(w.closed());
    // And the node still serves others.
    assert_eq!(
        Wire::connect(node.addr("node")).call(1, "sys.ping", json!({}))["ok"],
        true
    );
}

/// A zero length gets `bad_frame` and a close.
#[test]
fn zero_length_frame_is_bad_frame() {
    let node = Dsf::node(&[], &[]);
    let mut w = Wire::connect(node.addr("node"));
    w.send(&[0, 0, 0, 0]);
    assert_eq!(code(&w.recv().unwrap()), "bad_frame");
    assert!(w.closed());
}

/// Invalid JSON, non-objects and non-UTF-8 get `bad_request`, and the connection keeps working.
#[test]
fn malformed_payloads_keep_the_connection() {
    let node = Dsf::node(&[], &[]);
    let mut w = Wire::connect(node.addr("node"));
    for bad in [
        &b"{not json"[..],
        b"[1,2,3]",
        b"\"str\"",
        &[0xff, 0xfe, 0xfd],
        b"{\"id\":1",
    ] {
        w.send(&frame(bad));
        let r = w.recv().unwrap();
        assert_eq!(code(&r), "bad_request", "payload {bad:?}");
        assert_eq!(r["id"], Value::Null);
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    w.send(&frame(deep.as_bytes()));
    assert_eq!(code(&w.recv().unwrap()), "bad_request");
    assert_eq!(w.call(5, "sys.ping", json!({}))["ok"], true);
}

/// The original crashed on these; each gets an error frame and the node keeps serving.
#[test]
fn bad_types_and_long_fields() {
    let node = Dsf::node(&[], &[]);
    let mut w = Wire::connect(node.addr("node"));
    let cases = [
        (json!({"id":1,"type":"nope.nope"}), "unknown_type"),
        (json!({"id":2}), "bad_request"),
        (json!({"id":3,"type":{"a":1}}), "bad_request"),
        (json!({"id":4,"type":[1]}), "bad_request"),
        (json!({"id":5,"type":true}), "bad_request"),
        (json!({"id":6,"type":99}), "unknown_type"),
        (json!({"id":7,"type":"sys.echo","body":"x"}), "bad_request"),
        (json!({"id":8,"type":"x".repeat(500_000)}), "unknown_type"),
        (
            json!({"id":9,"type":"sys.echo","token":"t".repeat(500_000)}),
            "__ok",
        ),
        (json!({"id":"ten","type":"sys.ping"}), "bad_request"),
    ];
    for (req, want) in cases {
        w.send(&frame(req.to_string().as_bytes()));
        let r = w.recv().unwrap();
        if want == "__ok" {
            assert_eq!(r["ok"], true, "{r}");
        } else {
            assert_eq!(
                code(&r),
                want,
                "request {}",
                &req.to_string()[..60.min(req.to_string().len())]
            );
        }
    }
    assert_eq!(w.call(11, "sys.ping", json!({}))["ok"], true);
}

/// Legacy `{"type": 3}` closes the connection cleanly, after answering what came before.
#[test]
fn legacy_exit_closes_cleanly() {
    let node = Dsf::node(&[], &[]);
    let mut w = Wire::connect(node.addr("node"));
    let mut bytes = request(1, "sys.ping", json!({}));
    bytes.extend(frame(br#"{"id":2,"type":3}"#));
    w.send(&bytes);
    assert_eq!(w.recv().unwrap()["id"], 1);
    assert!(w.recv().is_none(), "clean EOF after exit");
    // Legacy integer codes dispatch by name: 9 is blacklist.query.
    let mut w = Wire::connect(node.addr("node"));
    w.send(&frame(br#"{"id":3,"type":9,"body":{"id_card":"x"}}"#));
    let r = w.recv().unwrap();
    assert_eq!(r["id"], 3);
    let routed_by_name = r["ok"] == true
        || r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("blacklist.query")
        || code(&r) == "unauthorized";
    assert!(routed_by_name, "{r}");
}

/// A connection that completes no frame within the idle timeout is closed (slowloris too).
#[test]
fn idle_and_slowloris_connections_are_closed() {
    let node = Dsf::node(&[], &[("DSF__LIMITS__IDLE_TIMEOUT", "600ms")]);
    let mut idle = Wire::connect(node.addr("node"));
    let mut slow = Wire::connect(node.addr("node"));
    let started = Instant::now();
    // The slowloris sends one byte every 100 ms of a frame it never finishes.
    let req = request(1, "sys.ping", json!({}));
    let mut writer = slow.stream.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for b in req.iter().take(req.len() - 1) {
            if writer.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert!(idle.closed());
    assert!(slow.closed());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    trickle.join().unwrap();
    // An active connection is not closed.
    let mut busy = Wire::connect(node.addr("node"));
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(busy.call(i, "sys.ping", json!({}))["ok"], true);
    }
}

/// Connections beyond max_connections get `overloaded` and are closed; others keep working.
#[test]
fn connection_limit_gives_overloaded() {
    let node = Dsf::node(&[], &[("DSF__LIMITS__MAX_CONNECTIONS", "5")]);
    let mut open: Vec<Wire> = (0..5).map(|_| Wire::connect(node.addr("node"))).collect();
    for (i, w) in open.iter_mut().enumerate() {
        assert_eq!(w.call(i as u64, "sys.ping", json!({}))["ok"], true);
    }
    let mut extra = Wire::connect(node.addr("node"));
    let r = extra.recv().expect("an overloaded frame");
    assert_eq!(code(&r), "overloaded");
    assert!(extra.closed());
    drop(open.pop());
    std::thread::sleep(Duration::from_millis(200));
    let mut again = Wire::connect(node.addr("node"));
    assert_eq!(again.call(9, "sys.ping", json!({}))["ok"], true);
}

/// A request past its deadline gets `timeout`.
#[test]
fn request_deadline_gives_timeout() {
    let node = Dsf::node(
        &[],
        &[
            ("DSF__NODE__DEBUG_OPS", "true"),
            ("DSF__LIMITS__REQUEST_TIMEOUT", "200ms"),
        ],
    );
    let mut w = Wire::connect(node.addr("node"));
    let started = Instant::now();
    assert_eq!(
        code(&w.call(1, "sys.sleep", json!({"ms": 5000}))),
        "timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// SIGTERM with requests in flight: each connection is told `goaway`, every request
/// is answered, then the node exits 0.
#[test]
fn sigterm_drains_in_flight_requests() {
    let mut node = Dsf::node(&[], &[("DSF__NODE__DEBUG_OPS", "true")]);
    let mut conns: Vec<Wire> = (0..4).map(|_| Wire::connect(node.addr("node"))).collect();
    for (c, w) in conns.iter_mut().enumerate() {
        let bytes: Vec<u8> = (0..25)
            .flat_map(|i| request(c as u64 * 100 + i, "sys.sleep", json!({"ms": 300 + i * 10})))
            .collect();
        w.send(&bytes);
    }
    std::thread::sleep(Duration::from_millis(100));
    node.signal("TERM");
    for w in &mut conns {
        let (mut answered, mut goaway) = (0, 0);
        while let Some(r) = w.recv() {
            // The drain is announced (PROTOCOL §7) before the connection closes.
            if r["notice"] == "goaway" {
                goaway += 1;
                continue;
            }
            assert_eq!(r["ok"], true, "{r}");
            answered += 1;
        }
        assert_eq!((answered, goaway), (25, 1));
    }
    assert_eq!(node.wait_exit(Duration::from_secs(10)), Some(0));
}

/// A client that never reads its responses does not make the node buffer without bound.
#[test]
fn client_that_never_reads_is_bounded() {
    let node = Dsf::node(&[], &[("DSF__LIMITS__IDLE_TIMEOUT", "2s")]);
    let rss_before = node.rss_kib();
    let mut w = Wire::connect(node.addr("node"));
    w.stream
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let body = json!({"pad": "x".repeat(4000)});
    let frame = request(1, "sys.echo", body);
    let mut sent = 0usize;
    // Write until the node stops reading (socket buffers full) or 200 MB went out.
    while sent < 200 << 20 {
        if w.stream.write_all(&frame).is_err() {
            break;
        }
        sent += frame.len();
    }
    assert!(
        sent < 200 << 20,
        "node kept reading {sent} bytes without the client reading"
    );
    let grown = node.rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "node grew by {grown} KiB");
    // The stuck connection is dropped and the node still serves.
    assert_eq!(
        Wire::connect(node.addr("node")).call(1, "sys.ping", json!({}))["ok"],
        true
    );
}
