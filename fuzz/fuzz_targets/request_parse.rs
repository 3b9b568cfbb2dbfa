//! Fuzzes request parsing: any payload yields a request or a protocol error, never a
//! panic, and a parsed request survives an encode/parse round trip.
#![no_main]

use dsf::protocol::{Request, RequestError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    match Request::parse(payload) {
        Ok(req) => {
            let mut out = Vec::new();
            req.encode(&mut out);
            assert_eq!(Request::parse(&out[4..]).expect("re-parse"), req);
        }
        Err(RequestError::Exit) => {}
        Err(RequestError::Reply { error, .. }) => assert!(!error.message.is_empty()),
    }
});
