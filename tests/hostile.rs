//! Hostile clients against a real node: floods, garbage and oversized input each get a
//! clear answer and leave the node healthy for the next client.

mod common;

use common::process::Dsf;
use common::wire::{code, frame, Wire};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// 5,000 connections opened at once against a limit of 1,000: the excess are refused
/// with `overloaded`, none hangs, and the node serves normally afterwards.
#[test]
fn five_thousand_connections_beyond_the_limit() {
    let node = Dsf::node(&[], &[("DSF__LIMITS__MAX_CONNECTIONS", "1000")]);
    let addr = node.addr("node").to_owned();
    let mut conns = Vec::with_capacity(5000);
    for _ in 0..5000 {
        match TcpStream::connect(&addr) {
            Ok(s) => conns.push(s),
            Err(e) => panic!("connect failed: {e}"),
        }
    }
    // Every connection either answers a ping or was told `overloaded` and closed.
    let mut served = 0;
    let mut refused = 0;
    for s in &mut conns {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.write_all(&common::wire::request(1, "sys.ping", json!({})));
    }
    for s in &mut conns {
        let mut w = Wire {
            stream: s.try_clone().unwrap(),
        };
        match w.recv() {
            Some(r) if r["ok"] == true => served += 1,
            Some(r) => {
                assert_eq!(code(&r), "overloaded", "{r}");
                refused += 1;
            }
            None => refused += 1,
        }
    }
    assert_eq!(served + refused, 5000);
    assert!((900..=1000).contains(&served), "served {served}");
    assert!(refused >= 4000, "refused {refused}");
    drop(conns);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        Wire::connect(&addr).call(9, "sys.ping", json!({}))["ok"],
        true
    );
}

/// Random bytes from many clients: each gets an error frame or a close, never a crash.
#[test]
fn random_bytes_from_many_clients() {
    let node = Dsf::node(&[], &[("DSF__LIMITS__MAX_FRAME", "65536")]);
    let addr = node.addr("node").to_owned();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let len = rng.gen_range(1..4096);
        let junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(&junk);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        // The node answers what it can and closes; reading to the end must not hang.
        let _ = s.read_to_end(&mut sink);
    }
    // Valid frames wrapping random payloads get `bad_request` on a live connection.
    let mut w = Wire::connect(&addr);
    for _ in 0..200 {
        let len = rng.gen_range(1..512);
        let junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        w.send(&frame(&junk));
        let r = w.recv().expect("an error frame");
        assert_eq!(r["ok"], false);
    }
    assert_eq!(w.call(1, "sys.ping", json!({}))["ok"], true);
}

/// Huge strings in every request field are answered (or refused by size) without harm.
#[test]
fn huge_strings_in_every_field() {
    let node = Dsf::node(&[], &[]);
    let mut w = Wire::connect(node.addr("node"));
    let big = "x".repeat(900_000);
    for (i, req) in [
        json!({"id": 1, "type": big}),
        json!({"id": 2, "type": "sys.echo", "token": big}),
        json!({"id": 3, "type": "sys.echo", "key": big}),
        json!({"id": 4, "type": "sys.echo", "body": {"k": big}}),
        json!({"id": 5, "type": "sys.echo", big.clone(): 1}),
    ]
    .into_iter()
    .enumerate()
    {
        w.send(&frame(req.to_string().as_bytes()));
        let r = w.recv().expect("answer");
        assert_eq!(r["id"], i as u64 + 1, "answer to request {}", i + 1);
    }
    // Over the 1 MiB default: refused by size, connection closed, node fine.
    w.send(&frame(
        json!({"id": 6, "type": "x".repeat(2 << 20)})
            .to_string()
            .as_bytes(),
    ));
    assert_eq!(code(&w.recv().unwrap()), "too_large");
    assert_eq!(
        Wire::connect(node.addr("node")).call(7, "sys.ping", json!({}))["ok"],
        true
    );
}
