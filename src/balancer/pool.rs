//! Pooled, pipelined proxy connections to one node, with request-id rewriting.
//!
//! Each node gets `proxy_conns_per_node` connections, opened on first use and reopened
//! after they fail. Requests of many clients share them: each request gets a wire id
//! unique on its connection, so responses (which may come back in any order) find
//! their caller, who restores the client's own id. A writer task batches whatever
//! requests are queued into one write; a reader task hands responses out by id.

use crate::protocol::frame::{self, FrameDecoder};
use crate::protocol::Request;
use futures_lite::{future, AsyncWriteExt};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest batch of requests written in one go.
const MAX_BATCH: usize = 256 * 1024;

/// Why a request got no response from the node.
#[derive(Debug)]
pub enum SendError {
    /// The request never reached the node (connect failed, connection already dead):
    /// any request may be tried elsewhere.
    NotSent(io::Error),
    /// The connection failed after the request was handed to it: the node may or may
    /// not have acted on it.
    Lost,
}

/// The connections to one node.
pub struct NodePool {
    /// The node's address.
    pub addr: Arc<str>,
    /// Connection slots, opened lazily.
    slots: Vec<async_lock::Mutex<Option<Arc<NodeConn>>>>,
    /// Round-robin cursor over the slots.
    next: AtomicUsize,
    /// Bound on connecting.
    connect_timeout: Duration,
    /// Largest response frame accepted from the node.
    max_frame: usize,
}

impl NodePool {
    /// A pool of `size` connections to `addr` (none opened yet).
    pub fn new(addr: Arc<str>, size: usize, connect_timeout: Duration, max_frame: usize) -> Self {
        NodePool {
            addr,
            slots: (0..size.max(1))
                .map(|_| async_lock::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
            connect_timeout,
            max_frame,
        }
    }

    /// Sends `req` (its id is replaced by a wire id) and returns the response payload.
    ///
    /// `affinity` (the client connection) chooses the slot: the requests one client
    /// pipelines arrive together and leave in one write, instead of being scattered
    /// over every slot in small writes. Without it, slots take turns.
    pub async fn send(
        &self,
        req: &mut Request,
        affinity: Option<u64>,
    ) -> Result<Vec<u8>, SendError> {
        let slot = match affinity {
            Some(a) => a as usize,
            None => self.next.fetch_add(1, Ordering::Relaxed),
        } % self.slots.len();
        let conn = self.conn(slot).await.map_err(SendError::NotSent)?;
        conn.send(req).await
    }

    /// A live connection in slot `i`, opening one if needed.
    async fn conn(&self, i: usize) -> io::Result<Arc<NodeConn>> {
        let mut slot = self.slots[i].lock().await;
        if let Some(c) = &*slot {
            if c.is_alive() {
                return Ok(c.clone());
            }
        }
        *slot = None;
        let c = NodeConn::connect(&self.addr, self.connect_timeout, self.max_frame).await?;
        *slot = Some(c.clone());
        Ok(c)
    }
}

/// Callers waiting on one connection.
#[derive(Default)]
struct Waiters {
    /// False once the connection failed; no new request is accepted.
    alive: bool,
    /// Wire id → where its response goes.
    pending: HashMap<u64, async_channel::Sender<Vec<u8>>>,
}

/// State shared by a connection's handle and its tasks.
struct ConnState {
    waiters: Mutex<Waiters>,
    next_id: AtomicU64,
}

impl ConnState {
    fn fail_all(&self) {
        let mut w = self.waiters.lock().expect("waiters lock");
        w.alive = false;
        // Dropping the senders wakes every waiter with an error.
        w.pending.clear();
    }
}

/// One pipelined connection to a node.
pub struct NodeConn {
    /// Encoded requests for the writer task; dropping the handle stops the tasks.
    tx: async_channel::Sender<Vec<u8>>,
    /// Waiters and wire ids.
    state: Arc<ConnState>,
}

/// Removes a waiter whose caller gave up (deadline), so nothing leaks.
struct PendingGuard<'a> {
    state: &'a ConnState,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.state
            .waiters
            .lock()
            .expect("waiters lock")
            .pending
            .remove(&self.id);
    }
}

impl NodeConn {
    async fn connect(addr: &str, timeout: Duration, max_frame: usize) -> io::Result<Arc<NodeConn>> {
        let stream = future::or(async_net::TcpStream::connect(addr), async {
            async_io::Timer::after(timeout).await;
            Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
        })
        .await?;
        stream.set_nodelay(true)?;
        let (tx, rx) = async_channel::unbounded();
        let state = Arc::new(ConnState {
            waiters: Mutex::new(Waiters {
                alive: true,
                pending: HashMap::new(),
            }),
            next_id: AtomicU64::new(1),
        });
        crate::runtime::spawn_local(write_loop(stream.clone(), rx, state.clone())).detach();
        crate::runtime::spawn_local(read_loop(stream, state.clone(), max_frame)).detach();
        Ok(Arc::new(NodeConn { tx, state }))
    }

    fn is_alive(&self) -> bool {
        self.state.waiters.lock().expect("waiters lock").alive
    }

    async fn send(&self, req: &mut Request) -> Result<Vec<u8>, SendError> {
        let id = self.state.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = async_channel::bounded(1);
        {
            let mut w = self.state.waiters.lock().expect("waiters lock");
            if !w.alive {
                return Err(SendError::NotSent(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "connection to node closed",
                )));
            }
            w.pending.insert(id, tx);
        }
        let _guard = PendingGuard {
            state: &self.state,
            id,
        };
        req.id = id;
        let mut bytes = Vec::with_capacity(128);
        req.encode(&mut bytes);
        if self.tx.send(bytes).await.is_err() {
            return Err(SendError::NotSent(io::Error::new(
                io::ErrorKind::NotConnected,
                "connection to node closed",
            )));
        }
        rx.recv().await.map_err(|_| SendError::Lost)
    }
}

async fn write_loop(
    mut stream: async_net::TcpStream,
    rx: async_channel::Receiver<Vec<u8>>,
    state: Arc<ConnState>,
) {
    let mut buf = Vec::new();
    while let Ok(first) = rx.recv().await {
        // One turn of the executor lets the other requests that arrived in the same
        // wake-up (other clients' reads) join this write.
        future::yield_now().await;
        buf.extend_from_slice(&first);
        while buf.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if let Err(e) = stream.write_all(&buf).await {
            tracing::debug!(error = %e, "proxy connection to node failed on write");
            break;
        }
        buf.clear();
    }
    state.fail_all();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

async fn read_loop(mut stream: async_net::TcpStream, state: Arc<ConnState>, max_frame: usize) {
    let mut dec = FrameDecoder::new(max_frame);
    loop {
        match frame::read_frame(&mut stream, &mut dec).await {
            Ok(Some(payload)) => {
                let Some(id) = response_id(&payload) else {
                    // An answer without an id is about the connection (e.g. overloaded);
                    // the node closes it next, which fails the waiters.
                    tracing::debug!("node sent a response without id");
                    continue;
                };
                let tx = state
                    .waiters
                    .lock()
                    .expect("waiters lock")
                    .pending
                    .remove(&id);
                if let Some(tx) = tx {
                    let _ = tx.try_send(payload);
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "proxy connection to node failed on read");
                break;
            }
        }
    }
    state.fail_all();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// The `id` of a response payload. Nodes write `{"id":N,…}` first, which is read
/// without parsing the rest; anything else takes the full JSON parse.
pub fn response_id(payload: &[u8]) -> Option<u64> {
    if let Some(rest) = payload.strip_prefix(br#"{"id":"#) {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 && rest.get(digits) == Some(&b',') {
            return std::str::from_utf8(&rest[..digits]).ok()?.parse().ok();
        }
    }
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.get("id")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::response_id;

    #[test]
    fn response_ids() {
        assert_eq!(response_id(br#"{"id":42,"ok":true,"body":{}}"#), Some(42));
        assert_eq!(response_id(br#"{"ok":true,"id":7}"#), Some(7));
        assert_eq!(response_id(br#"{"id":null,"ok":false}"#), None);
        assert_eq!(response_id(br#"{"id": 9 ,"ok":true}"#), Some(9));
        assert_eq!(response_id(b"garbage"), None);
    }
}
