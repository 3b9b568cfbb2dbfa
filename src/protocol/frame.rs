//! Length-prefixed framing (PROTOCOL §1): `u32` big-endian length, then that many bytes.
//!
//! The decoder never trusts a length before checking it against `max_frame`, and it
//! grows its buffer only as bytes actually arrive, so a peer that announces a large
//! frame and sends nothing costs at most one read chunk. An idle connection holds no
//! buffer at all: [`FrameDecoder::shrink_if_idle`] gives the memory back.

use std::io;
use thiserror::Error;

/// Default bound on a frame's payload, 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// How much the decoder asks the socket for when it knows nothing about the next frame.
const READ_CHUNK: usize = 8 * 1024;

/// Most the buffer grows in one step while a large frame trickles in.
const MAX_GROW_STEP: usize = 64 * 1024;

/// A frame that cannot be trusted; the connection must be closed after answering.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A zero length.
    #[error("frame length 0 is not allowed")]
    Empty,
    /// A length over the configured bound.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The configured bound.
        max: usize,
    },
}

/// Incremental decoder: feed it bytes with [`read_buf`](Self::read_buf) + [`advance`](Self::advance),
/// take frames with [`next_frame`](Self::next_frame).
#[derive(Debug)]
pub struct FrameDecoder {
    /// Largest payload accepted.
    max_frame: usize,
    /// Storage, initialised once as it grows (a read never zero-fills it again);
    /// `buf[start..end]` holds received bytes not yet returned as frames.
    buf: Vec<u8>,
    /// Offset of the first unconsumed byte, so consuming a frame is O(1).
    start: usize,
    /// End of the received bytes.
    end: usize,
    /// Least room offered to a read.
    read_chunk: usize,
}

impl FrameDecoder {
    /// A decoder with the given payload bound.
    pub fn new(max_frame: usize) -> Self {
        Self::with_read_chunk(max_frame, READ_CHUNK)
    }

    /// A decoder offering at least `read_chunk` bytes to each read: larger for a
    /// connection that receives many pipelined frames at once (the proxy's pooled
    /// connections), so that one read takes a whole burst.
    pub fn with_read_chunk(max_frame: usize, read_chunk: usize) -> Self {
        FrameDecoder {
            max_frame,
            buf: Vec::new(),
            start: 0,
            end: 0,
            read_chunk: read_chunk.clamp(HEADER_LEN, MAX_GROW_STEP),
        }
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Spare room to read into, sized by what is known about the next frame.
    ///
    /// Call [`advance`](Self::advance) with the number of bytes written into it.
    pub fn read_buf(&mut self) -> &mut [u8] {
        let pending = self.buffered();
        // Reclaim consumed space before growing.
        if self.start > 0 && (pending == 0 || self.start >= self.buf.len() / 2) {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = pending;
        }
        let want = match self.announced_len() {
            // The length was checked by `next_frame` before any growth beyond one chunk.
            Some(len) if len <= self.max_frame => {
                // Read at least a chunk so that frames pipelined behind this one come
                // in the same call.
                let missing = (HEADER_LEN + len).saturating_sub(pending);
                missing.clamp(self.read_chunk, MAX_GROW_STEP)
            }
            _ => self.read_chunk,
        };
        if self.buf.len() < self.end + want {
            self.buf.resize(self.end + want, 0);
        }
        &mut self.buf[self.end..self.end + want]
    }

    /// Records that `n` bytes were written at the start of the last
    /// [`read_buf`](Self::read_buf), which offered `offered` bytes.
    pub fn advance(&mut self, n: usize, offered: usize) {
        debug_assert!(n <= offered, "advanced past the offered room");
        self.end += n.min(offered);
    }

    /// Appends bytes directly (tests and clients that already hold data).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.truncate(self.end);
        self.buf.extend_from_slice(bytes);
        self.end = self.buf.len();
    }

    /// The next complete payload, `None` if more bytes are needed, or an error if the
    /// announced length is unusable.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let Some(range) = split_frame(&self.buf[self.start..self.end], self.max_frame)? else {
            return Ok(None);
        };
        let from = self.start + range.start;
        self.start += range.end;
        Ok(Some(&self.buf[from..self.start]))
    }

    /// Keeps `tail` (an incomplete frame read elsewhere, e.g. into a loop's scratch
    /// buffer) for the next read. Only valid while nothing else is buffered.
    pub fn stash(&mut self, tail: &[u8]) {
        debug_assert_eq!(self.buffered(), 0, "stash over pending bytes");
        self.start = 0;
        self.end = 0;
        self.extend(tail);
    }

    /// The payload bound.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Frees the buffer when nothing is pending, so idle connections hold no memory.
    pub fn shrink_if_idle(&mut self) {
        if self.buffered() == 0 {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
        }
    }

    /// The length in the next header, if the header is complete.
    fn announced_len(&self) -> Option<usize> {
        let b = self.buf[self.start..self.end].get(..HEADER_LEN)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}

/// Finds the first complete frame at the start of `bytes`: the payload's range, whose
/// end is also the frame's end. `None` if more bytes are needed.
pub fn split_frame(
    bytes: &[u8],
    max_frame: usize,
) -> Result<Option<std::ops::Range<usize>>, FrameError> {
    let Some(h) = bytes.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max_frame {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame,
        });
    }
    if bytes.len() < HEADER_LEN + len {
        return Ok(None);
    }
    Ok(Some(HEADER_LEN..HEADER_LEN + len))
}

/// Appends one frame to `out`, whose payload `write` produces.
pub fn encode_with<E>(
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let at = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    write(out)?;
    let len = (out.len() - at - HEADER_LEN) as u32;
    out[at..at + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Appends one frame holding `payload` to `out`.
pub fn encode(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Reads one frame from an async reader (clients and tests); `Ok(None)` at a clean end.
pub async fn read_frame<R>(reader: &mut R, dec: &mut FrameDecoder) -> io::Result<Option<Vec<u8>>>
where
    R: futures_lite::AsyncRead + Unpin,
{
    use futures_lite::AsyncReadExt;
    loop {
        match dec.next_frame() {
            Ok(Some(frame)) => return Ok(Some(frame.to_vec())),
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        let buf = dec.read_buf();
        let offered = buf.len();
        let n = reader.read(buf).await?;
        dec.advance(n, offered);
        if n == 0 {
            return if dec.buffered() == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode(&mut v, payload);
        v
    }

    fn feed(dec: &mut FrameDecoder, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let buf = dec.read_buf();
            let offered = buf.len();
            let n = offered.min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            dec.advance(n, offered);
            rest = &rest[n..];
        }
    }

    #[test]
    fn split_byte_by_byte() {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let bytes = frame(br#"{"id":1}"#);
        for (i, b) in bytes.iter().enumerate() {
            feed(&mut dec, &[*b]);
            let got = dec.next_frame().unwrap().map(<[u8]>::to_vec);
            if i + 1 < bytes.len() {
                assert_eq!(got, None, "frame surfaced early at byte {i}");
            } else {
                assert_eq!(got.as_deref(), Some(&br#"{"id":1}"#[..]));
            }
        }
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn coalesced_frames() {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut bytes = Vec::new();
        for i in 0..100 {
            bytes.extend(frame(format!("{{\"id\":{i}}}").as_bytes()));
        }
        feed(&mut dec, &bytes);
        for i in 0..100 {
            let f = dec.next_frame().unwrap().unwrap().to_vec();
            assert_eq!(f, format!("{{\"id\":{i}}}").into_bytes());
        }
        assert_eq!(dec.next_frame().unwrap(), None);
    }

    #[test]
    fn empty_frame_is_rejected() {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        feed(&mut dec, &[0, 0, 0, 0]);
        assert_eq!(dec.next_frame(), Err(FrameError::Empty));
    }

    #[test]
    fn oversized_frame_is_rejected_before_allocation() {
        let mut dec = FrameDecoder::new(16);
        feed(&mut dec, &u32::MAX.to_be_bytes());
        assert_eq!(
            dec.next_frame(),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: 16
            })
        );
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        feed(&mut dec, &(DEFAULT_MAX_FRAME as u32).to_be_bytes());
        assert_eq!(dec.next_frame().unwrap(), None);
        // Announcing the largest legal frame grows the buffer by one step, not by 1 MiB.
        assert!(dec.read_buf().len() <= MAX_GROW_STEP);
    }

    #[test]
    fn non_utf8_payload_is_returned_as_bytes() {
        // The frame layer is byte-oriented; UTF-8 and JSON are checked by `message`.
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        feed(&mut dec, &frame(&[0xff, 0xfe, 0x00]));
        assert_eq!(dec.next_frame().unwrap(), Some(&[0xff, 0xfe, 0x00][..]));
    }

    #[test]
    fn idle_decoder_releases_memory() {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        feed(&mut dec, &frame(b"{}"));
        assert!(dec.next_frame().unwrap().is_some());
        dec.shrink_if_idle();
        assert_eq!(dec.buf.capacity(), 0);
    }

    #[test]
    fn a_long_stream_in_uneven_reads_comes_out_whole_and_in_order() {
        // Frames of many sizes, delivered in reads that end anywhere, taken out while
        // the buffer compacts and grows: every payload comes out once, in order.
        let payloads: Vec<Vec<u8>> = (0..2000usize)
            .map(|i| vec![(i % 251) as u8; 1 + (i * 7919) % 20_000])
            .collect();
        let stream: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let (mut at, mut next, mut step) = (0, 0, 1usize);
        while at < stream.len() {
            let buf = dec.read_buf();
            let offered = buf.len();
            step = (step * 31 + 17) % 9_000 + 1;
            let n = offered.min(step).min(stream.len() - at);
            buf[..n].copy_from_slice(&stream[at..at + n]);
            dec.advance(n, offered);
            at += n;
            while let Some(p) = dec.next_frame().unwrap() {
                assert_eq!(p, &payloads[next][..], "frame {next}");
                next += 1;
            }
        }
        assert_eq!(next, payloads.len());
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn large_frame_arrives_in_steps() {
        let payload = vec![b'x'; 300_000];
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        feed(&mut dec, &frame(&payload));
        assert_eq!(dec.next_frame().unwrap().map(<[u8]>::len), Some(300_000));
    }
}
