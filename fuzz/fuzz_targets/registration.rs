//! Fuzzes the balancer's registration port: arbitrary frames from several connections
//! never panic, and without the cluster secret nobody becomes a member.
#![no_main]

use dsf::balancer::membership::{Membership, Settings};
use dsf::balancer::registration::Registration;
use dsf::balancer::membership::InMemory;
use dsf::config::BalancerConfig;
use dsf::protocol::frame::split_frame;
use dsf::protocol::{Request, RequestError};
use dsf::runtime::{ConnMeta, Registry, Service};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

const SECRET: &str = "fuzz-secret-that-the-input-will-not-guess";

fuzz_target!(|input: &[u8]| {
    let settings = Settings::from_config(&BalancerConfig::default()).expect("defaults are valid");
    let membership = Arc::new(Membership::new(settings, Arc::new(InMemory)));
    let registration = Registration::new(
        membership.clone(),
        Some(SECRET.to_owned()),
        Arc::new(Registry::new("registration")),
    );
    // The first byte of each frame picks one of four connections.
    let mut rest = input;
    while let Some((&conn, after)) = rest.split_first() {
        let Ok(Some(range)) = split_frame(after, 1 << 16) else {
            break;
        };
        let payload = &after[range.clone()];
        rest = &after[range.end..];
        let meta = ConnMeta {
            id: u64::from(conn % 4),
            peer: "127.0.0.1:9".parse().unwrap(),
        };
        match Request::parse(payload) {
            Ok(req) => {
                let resp = futures_lite::future::block_on(registration.call(meta, req));
                assert!(resp.id.is_some());
            }
            Err(RequestError::Exit) => registration.on_close(meta),
            Err(RequestError::Reply { .. }) => {}
        }
    }
    assert!(
        membership.snapshot().nodes.is_empty(),
        "a node joined without the cluster secret"
    );
});
