//! Fuzzes the frame decoder: arbitrary bytes, fed in arbitrary chunk sizes, must never
//! panic, never return a frame over the bound, and agree with a one-shot decode.
#![no_main]

use dsf::protocol::frame::{FrameDecoder, FrameError};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

fn decode_all(data: &[u8], chunk: usize) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut dec = FrameDecoder::new(MAX);
    let mut frames = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        let mut rest = piece;
        while !rest.is_empty() {
            let buf = dec.read_buf();
            let offered = buf.len();
            let n = offered.min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            dec.advance(n, offered);
            rest = &rest[n..];
        }
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => {
                    assert!(!f.is_empty() && f.len() <= MAX);
                    frames.push(f.to_vec());
                }
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
        dec.shrink_if_idle();
    }
    (frames, None)
}

fuzz_target!(|input: &[u8]| {
    let Some((&chunk, data)) = input.split_first() else {
        return;
    };
    let whole = decode_all(data, data.len());
    let pieces = decode_all(data, chunk as usize);
    assert_eq!(whole, pieces, "chunking changed the decoded frames");
});
