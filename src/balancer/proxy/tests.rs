//! The proxy in one process against a scripted node: ids, shapes and deadlines.

use super::*;
use crate::balancer::membership::InMemory;
use crate::balancer::membership::{NodeRecord, Settings};
use crate::balancer::selection::{self, Algorithm};
use crate::balancer::snapshot::BuildOptions;
use crate::config::LimitsConfig;
use crate::protocol::{frame, FrameDecoder};
use crate::runtime::{Runtime, Server, ServerOptions};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

const TIMEOUT: Duration = Duration::from_millis(300);

/// A node that echoes `{"op", "body"}`, answering each read's requests in reverse
/// order, and never answers `sys.hang`.
fn scripted_node() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            std::thread::spawn(move || {
                let mut dec = FrameDecoder::new(frame::DEFAULT_MAX_FRAME);
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    dec.extend(&buf[..n]);
                    let mut answers = Vec::new();
                    while let Ok(Some(p)) = dec.next_frame() {
                        let req = Request::parse(p).unwrap();
                        if req.op != "sys.hang" {
                            answers.push(Response::ok(
                                req.id,
                                json!({"op": req.op, "body": req.body}),
                            ));
                        }
                    }
                    let mut out = Vec::new();
                    answers.iter().rev().for_each(|r| r.encode(&mut out));
                    if stream.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A proxy over one scripted node; returns its address.
fn proxy(rt: &Runtime) -> String {
    proxy_over(rt, &[scripted_node()])
}

/// A proxy over nodes `n1`, `n2`, … at `addrs`; returns its address.
fn proxy_over(rt: &Runtime, addrs: &[String]) -> String {
    proxy_with(rt, addrs, TIMEOUT).0
}

/// A proxy over nodes `n1`, `n2`, … at `addrs` with request deadline `timeout`;
/// returns its address and membership.
fn proxy_with(rt: &Runtime, addrs: &[String], timeout: Duration) -> (String, Arc<Membership>) {
    let build = BuildOptions {
        default_algorithm: Algorithm::ConsistentHash,
        service_algorithms: BTreeMap::new(),
        selection: selection::Options::default(),
    };
    let settings = Settings {
        lease_ttl: Duration::from_secs(60),
        heartbeat: Duration::from_secs(20),
        build,
        outlier: Default::default(),
        service_outliers: BTreeMap::new(),
    };
    let membership = Arc::new(Membership::new(settings, Arc::new(InMemory)));
    for (i, addr) in addrs.iter().enumerate() {
        let record = NodeRecord {
            idempotent: ["sys.ping", "sys.echo", "sys.sleep", "blacklist.query"]
                .map(String::from)
                .to_vec(),
            ..NodeRecord::for_test(&format!("n{}", i + 1), addr)
        };
        membership.register(i as u64 + 1, record).unwrap();
    }
    let limits = LimitsConfig {
        request_timeout: timeout,
        ..LimitsConfig::default()
    };
    let server = Server::bind("127.0.0.1:0", rt, ServerOptions::new("proxy", limits)).unwrap();
    let addr = server.local_addr().to_string();
    let opts = ProxyOptions {
        conns_per_node: 2,
        request_timeout: timeout,
        connect_timeout: timeout,
        max_frame: frame::DEFAULT_MAX_FRAME,
        tls: None,
    };
    let service = Arc::new(Proxy::new(membership.clone(), opts));
    let (trigger, shutdown) = crate::runtime::shutdown::channel();
    std::mem::forget(trigger);
    let rt2 = rt.clone();
    rt.spawn(async move { server.run(&rt2, service, shutdown).await })
        .detach();
    (addr, membership)
}

/// Reads `n` response frames as JSON values.
fn responses(stream: &mut TcpStream, n: usize) -> Vec<Value> {
    let mut dec = FrameDecoder::new(frame::DEFAULT_MAX_FRAME);
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while out.len() < n {
        let got = stream.read(&mut buf).unwrap();
        assert!(got > 0, "proxy closed after {} responses", out.len());
        dec.extend(&buf[..got]);
        while let Ok(Some(p)) = dec.next_frame() {
            out.push(serde_json::from_slice(p).unwrap());
        }
    }
    out
}

/// Pipelined requests of every shape come back with the client's own ids, bodies
/// untouched, answered out of order by the node; a malformed one gets `bad_request`,
/// a legacy code is forwarded by name, and one the node never answers gets `timeout`
/// within its deadline.
#[test]
fn relays_ids_shapes_and_deadlines() {
    let rt = Runtime::new("proxy-test", 1).unwrap();
    let addr = proxy(&rt);
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut out = Vec::new();
    let mut expected = BTreeMap::new();
    for i in 0..40u64 {
        let id = u64::MAX - i;
        let payload = match i % 4 {
            0 => json!({"id": id, "type": "sys.echo", "body": {"i": i, "s": "é\"}"}}),
            1 => json!({"body": {"i": i}, "key": format!("k{i}"), "type": "sys.echo", "id": id}),
            2 => {
                json!({"id": id, "type": "sys.echo", "token": "t", "body": {"i": i}, "x": [1, {"id": 3}]})
            }
            _ => json!({"id": id, "type": 9, "body": {"i": i}}),
        };
        frame::encode(&mut out, payload.to_string().as_bytes());
        let op = if i % 4 == 3 {
            "blacklist.query"
        } else {
            "sys.echo"
        };
        expected.insert(id, json!({"op": op, "body": payload["body"]}));
    }
    frame::encode(&mut out, br#"{"id":5,"type":"sys.echo""#);
    frame::encode(&mut out, br#"{"id":6,"type":"sys.hang"}"#);
    let sent = Instant::now();
    stream.write_all(&out).unwrap();
    let mut got = responses(&mut stream, expected.len() + 2);
    let hung = got.pop().unwrap();
    let elapsed = sent.elapsed();
    assert_eq!(
        (&hung["id"], &hung["error"]["code"]),
        (&json!(6), &json!("timeout"))
    );
    assert!(
        elapsed >= TIMEOUT && elapsed < TIMEOUT * 3,
        "timeout after {elapsed:?}"
    );
    let bad = got
        .iter()
        .position(|r| r["id"].is_null())
        .map(|i| got.remove(i))
        .expect("an answer to the malformed request");
    assert_eq!(bad["error"]["code"], json!("bad_request"));
    let answers: BTreeMap<u64, Value> = got
        .into_iter()
        .map(|r| {
            assert_eq!(r["ok"], json!(true), "{r}");
            (r["id"].as_u64().unwrap(), r["body"].clone())
        })
        .collect();
    assert_eq!(answers, expected);
}

/// A request that reached no node (both refused the connection) is answered
/// `unavailable` saying so, not as if a node had failed with it in flight, also for
/// an operation that may not be repeated.
#[test]
fn a_request_no_node_could_take_is_unreachable_not_in_flight() {
    let closed = || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let rt = Runtime::new("proxy-test", 1).unwrap();
    let addr = proxy_over(&rt, &[closed(), closed()]);
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut out = Vec::new();
    let req = json!({"id": 1, "type": "blacklist.insert", "body": {"id_card": "X"}});
    frame::encode(&mut out, req.to_string().as_bytes());
    stream.write_all(&out).unwrap();
    let r = responses(&mut stream, 1).remove(0);
    assert_eq!(r["error"]["code"], json!("unavailable"), "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(message.ends_with("could not be reached"), "{message}");
}

/// A node that completes connections but never answers (a listener nobody accepts
/// from): requests that may be repeated move to the other node once the response
/// timeout (1 s) passes, and three of them in a row eject the silent node.
#[test]
fn a_silent_node_is_ejected_and_its_repeatable_requests_move() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let rt = Runtime::new("proxy-test", 1).unwrap();
    let addrs = [silent.local_addr().unwrap().to_string(), scripted_node()];
    let (addr, membership) = proxy_with(&rt, &addrs, Duration::from_secs(4));
    let snap = membership.snapshot();
    let group = snap.service("dsf").unwrap();
    let keys: Vec<String> = (0..)
        .map(|k| format!("k{k}"))
        .filter(|k| &*group.members[group.pick(Some(k.as_bytes())).unwrap()].id == "n1")
        .take(3)
        .collect();
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut out = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let req = json!({"id": i, "type": "sys.echo", "key": key, "body": {"i": i}});
        frame::encode(&mut out, req.to_string().as_bytes());
    }
    let sent = Instant::now();
    stream.write_all(&out).unwrap();
    let got = responses(&mut stream, 3);
    let elapsed = sent.elapsed();
    for r in &got {
        assert_eq!(r["ok"], json!(true), "{r}");
    }
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3),
        "answered after {elapsed:?}"
    );
    let state = membership
        .snapshot()
        .nodes
        .iter()
        .map(|n| (n.id.to_string(), n.state))
        .collect::<Vec<_>>();
    assert_eq!(
        state,
        [
            ("n1".into(), NodeState::Ejected),
            ("n2".into(), NodeState::Healthy)
        ]
    );
    drop(silent);
}

/// Requests a node is slow to answer do not eject it while its connection keeps
/// answering others: that is a slow operation, not a lost path.
#[test]
fn slow_requests_on_an_answering_connection_do_not_eject() {
    let rt = Runtime::new("proxy-test", 1).unwrap();
    let addrs = [scripted_node(), scripted_node()];
    let (addr, membership) = proxy_with(&rt, &addrs, Duration::from_secs(2));
    let snap = membership.snapshot();
    let group = snap.service("dsf").unwrap();
    let key = (0..)
        .map(|k| format!("k{k}"))
        .find(|k| &*group.members[group.pick(Some(k.as_bytes())).unwrap()].id == "n1")
        .unwrap();
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut out = Vec::new();
    for i in 0..3 {
        let req = json!({"id": i, "type": "sys.hang", "key": key, "body": {}});
        frame::encode(&mut out, req.to_string().as_bytes());
    }
    stream.write_all(&out).unwrap();
    for i in 10..20 {
        let mut out = Vec::new();
        let req = json!({"id": i, "type": "sys.echo", "key": key, "body": {}});
        frame::encode(&mut out, req.to_string().as_bytes());
        stream.write_all(&out).unwrap();
        assert_eq!(responses(&mut stream, 1)[0]["ok"], json!(true));
        std::thread::sleep(Duration::from_millis(150));
    }
    let hung = responses(&mut stream, 3);
    assert!(
        hung.iter().all(|r| r["error"]["code"] == "timeout"),
        "{hung:?}"
    );
    assert!(membership
        .snapshot()
        .nodes
        .iter()
        .all(|n| n.state == NodeState::Healthy));
}
