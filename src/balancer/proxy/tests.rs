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
            node: format!("n{}", i + 1),
            service: "dsf".into(),
            addr: addr.clone(),
            weight: 1,
            ops: Vec::new(),
            idempotent: ["sys.ping", "sys.echo", "sys.sleep", "blacklist.query"]
                .map(String::from)
                .to_vec(),
            draining: false,
            conns: 0,
            inflight: 0,
            heartbeat_unix_ms: 0,
        };
        membership.register(i as u64 + 1, record).unwrap();
    }
    let limits = LimitsConfig {
        request_timeout: TIMEOUT,
        ..LimitsConfig::default()
    };
    let server = Server::bind("127.0.0.1:0", rt, ServerOptions::new("proxy", limits)).unwrap();
    let addr = server.local_addr().to_string();
    let opts = ProxyOptions {
        conns_per_node: 2,
        request_timeout: TIMEOUT,
        connect_timeout: TIMEOUT,
        max_frame: frame::DEFAULT_MAX_FRAME,
        tls: None,
    };
    let service = Arc::new(Proxy::new(membership, opts));
    let (trigger, shutdown) = crate::runtime::shutdown::channel();
    std::mem::forget(trigger);
    let rt2 = rt.clone();
    rt.spawn(async move { server.run(&rt2, service, shutdown).await })
        .detach();
    addr
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
