//! Probes of ejected nodes: when a node's ejection time is up, one `sys.ping` over a
//! fresh connection decides whether it takes traffic again.
//!
//! A probe speaks the protocol rather than only connecting, because a path that drops
//! packets past a middlebox (or a relay that accepts and forwards nothing) still
//! completes a TCP handshake. Every node serves `sys.ping`; any answer counts, an
//! error answer included: the node is reachable.

use crate::balancer::membership::Membership;
use crate::protocol::{FrameDecoder, Request};
use crate::runtime::Shutdown;
use crate::tls::{ClientStream, Connector};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often due probes are looked for: an ejection ends at most this late.
const PROBE_TICK: Duration = Duration::from_millis(100);

/// Largest answer frame a probe reads (a `sys.ping` answer is tiny).
const PROBE_MAX_FRAME: usize = 64 * 1024;

/// How probes connect.
#[derive(Clone)]
pub struct ProbeOptions {
    /// Bound on opening the probe's connection.
    pub connect_timeout: Duration,
    /// TLS to the nodes, as the proxy's own connections use.
    pub tls: Option<Connector>,
}

/// Probes every ejected node whose time is up, until `shutdown`.
pub async fn run(membership: Arc<Membership>, opts: ProbeOptions, shutdown: Shutdown) {
    crate::runtime::shutdown::every(PROBE_TICK, &shutdown, || {
        for p in membership.due_probes(Instant::now()) {
            let membership = membership.clone();
            let opts = opts.clone();
            crate::runtime::spawn_local(async move {
                let result = ping(&p.addr, &opts, p.timeout).await;
                membership.probe_done(&p.node, result);
            })
            .detach();
        }
    })
    .await;
}

/// One `sys.ping` to `addr` on a fresh connection, answered within `timeout`.
pub async fn ping(addr: &str, opts: &ProbeOptions, timeout: Duration) -> Result<(), String> {
    let stream = ClientStream::connect(addr, opts.tls.as_ref(), opts.connect_timeout)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let (mut reader, mut writer) = stream.split();
    let mut frame = Vec::new();
    Request::new(1, "sys.ping", serde_json::json!({})).encode(&mut frame);
    let exchange = async {
        writer.write_all(&frame).await?;
        writer.flush().await?;
        let mut dec = FrameDecoder::new(PROBE_MAX_FRAME);
        loop {
            let buf = dec.read_buf();
            let offered = buf.len();
            let n = reader.read(buf).await?;
            dec.advance(n, offered);
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before answering",
                ));
            }
            let got = dec
                .next_frame()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if got.is_some() {
                return Ok(());
            }
        }
    };
    let timed_out = async {
        async_io::Timer::after(timeout).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {} ms", timeout.as_millis()),
        ))
    };
    future::or(exchange, timed_out)
        .await
        .map_err(|e| format!("sys.ping to {addr}: {e}"))
}
