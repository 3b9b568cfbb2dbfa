//! Pooled, pipelined proxy connections to one node, relaying requests as bytes.
//!
//! Each node gets `proxy_conns_per_node` connections, opened on first use and reopened
//! after they fail. Requests of many clients share them: each request is written with
//! a wire id unique on its connection (spliced into its bytes where the client's id
//! was), so responses, which may come back in any order, find their job, which puts
//! the client's id back the same way. Nothing is decoded beyond the ids.
//!
//! Per connection, three tasks on the loop that opened it: a writer that sends every
//! request queued since its last write in one write, a reader that answers jobs
//! straight from its read buffer, and a sweeper that answers `timeout` for jobs past
//! their deadline. Submitting a request is synchronous: append its frame to the
//! connection's buffer and wake the writer if it sleeps. A node's `goaway` (PROTOCOL
//! §7) retires its connection: the next request opens a new one (or fails over).

use super::job::Job;
use crate::balancer::error::BalancerError;
use crate::balancer::membership::outlier::Failure;
use crate::balancer::snapshot::Member;
use crate::protocol::scan;
use crate::protocol::{FrameDecoder, Notice};
use crate::tls::{ClientStream, Connector, ReadHalf, WriteHalf};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// A write buffer that grew past this (a burst) is freed rather than kept.
const MAX_KEPT: usize = 256 * 1024;

/// Room offered to each read of a node connection: a whole batch of responses.
const READ_CHUNK: usize = 64 * 1024;

/// Hashes ids no client chooses (wire and connection ids, registered node ids) with
/// one multiplication instead of SipHash (a tenth of the proxy's time otherwise).
#[derive(Default)]
pub(super) struct WireIdHasher(u64);

impl Hasher for WireIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: consecutive ids spread over the high bits the table uses.
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Jobs by wire id.
type Pending = HashMap<u64, Job, BuildHasherDefault<WireIdHasher>>;

/// Where jobs go when their connection fails: the proxy decides whether and where
/// to try again.
pub trait Failover: Send + Sync + 'static {
    /// `job`'s connection failed; `sent` if the request may have reached the node.
    fn failed(&self, job: Job, sent: bool);

    /// Another node for `job`, which got no answer within its node's response
    /// timeout, if repeating it there is harmless (it is not moved yet).
    fn alternative(&self, job: &Job) -> Option<Arc<Member>>;

    /// Sends `job` to `to`, the [`alternative`](Self::alternative) found for it.
    fn resend(&self, job: Job, to: Arc<Member>);

    /// Traffic to `member` failed locally (counts towards ejecting it).
    fn node_failed(&self, member: &Member, failure: Failure);
}

/// How a pool's connections behave.
#[derive(Debug, Clone)]
pub struct ConnOptions {
    /// Bound on connecting.
    pub connect_timeout: Duration,
    /// Largest response frame accepted from the node.
    pub max_frame: usize,
    /// How often deadlines are checked; a timeout is answered at most this late.
    pub tick: Duration,
    /// TLS to the node; `None` = plain TCP.
    pub tls: Option<Connector>,
}

/// The connections to one node.
pub struct NodePool {
    /// The node's address.
    pub addr: Arc<str>,
    /// Connection slots, opened lazily.
    slots: Vec<Mutex<Option<NodeConn>>>,
    /// Round-robin cursor over the slots.
    next: AtomicUsize,
    /// Connection behaviour.
    opts: ConnOptions,
    /// Where failed jobs go (the proxy, which owns the pools; hence weak).
    failover: Weak<dyn Failover>,
}

impl NodePool {
    /// A pool of `size` connections to `addr` (none opened yet).
    pub fn new(
        addr: Arc<str>,
        size: usize,
        opts: ConnOptions,
        failover: Weak<dyn Failover>,
    ) -> Self {
        NodePool {
            addr,
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            opts,
            failover,
        }
    }

    /// Queues `job` on a connection; its answer or failure comes later.
    ///
    /// `affinity` (the client connection) chooses the slot: the requests one client
    /// pipelines arrive together and leave in one write, instead of being scattered
    /// over every slot in small writes. Without it, slots take turns.
    pub fn send(&self, job: Job, affinity: Option<u64>) {
        let i = match affinity {
            Some(a) => a as usize,
            None => self.next.fetch_add(1, Ordering::Relaxed),
        } % self.slots.len();
        let mut slot = self.slots[i].lock().expect("pool slot lock");
        let job = match &*slot {
            Some(conn) => match conn.submit(job) {
                Ok(()) => return,
                Err(job) => job,
            },
            None => job,
        };
        // No connection yet, or a failed one: a fresh connection takes the job; if
        // the node is gone, connecting fails and the job is offered to the failover.
        let conn = NodeConn::open(self.addr.clone(), self.opts.clone(), self.failover.clone());
        if let Err(job) = conn.submit(job) {
            // A connection that has not started cannot have failed; answer anyway.
            job.fail(&BalancerError::NodeFailed {
                node: self.addr.to_string(),
            });
        }
        *slot = Some(conn);
    }
}

/// A connection's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connecting; requests queue up.
    Connecting,
    /// Requests flow.
    Open,
    /// Failed or retired; accepts nothing more.
    Closed,
}

/// What the handle and the tasks of one connection share.
struct ConnState {
    /// Where the connection is in its life.
    phase: Phase,
    /// Request frames not yet handed to the writer.
    out: Vec<u8>,
    /// The next wire id.
    next_id: u64,
    /// Highest wire id handed to a write: requests above it never left.
    written: u64,
    /// Jobs awaiting their response, by wire id.
    pending: Pending,
    /// The writer, when it sleeps for want of requests.
    writer: Option<Waker>,
    /// The pool let go of the connection, or the node sent `goaway`: no new
    /// requests; close it once nothing is pending.
    retired: bool,
    /// The socket once connected, to shut it down from any task.
    stream: Option<async_net::TcpStream>,
    /// Responses received so far. A request overdue while this has not moved since
    /// it was sent met a silent connection, which is what counts against the node: a
    /// slow request on a connection that keeps answering others is not a lost path.
    answers: u32,
}

struct Shared {
    state: Mutex<ConnState>,
    failover: Weak<dyn Failover>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConnState> {
        self.state.lock().expect("node connection lock")
    }

    /// Marks the connection failed and hands every pending job to the failover;
    /// `cause`, when the node is to blame, counts once against it.
    fn fail(&self, cause: Option<Failure>) {
        let (pending, written, waker, stream) = {
            let mut s = self.lock();
            s.phase = Phase::Closed;
            s.out = Vec::new();
            (
                std::mem::take(&mut s.pending),
                s.written,
                s.writer.take(),
                s.stream.take(),
            )
        };
        if let Some(w) = waker {
            w.wake();
        }
        if let Some(stream) = stream {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        let failover = self.failover.upgrade();
        if let (Some(f), Some(cause)) = (&failover, cause) {
            if let Some(m) = pending.values().find_map(Job::member) {
                f.node_failed(m, cause);
            }
        }
        for (wire_id, job) in pending {
            let sent = wire_id <= written;
            match &failover {
                Some(f) => f.failed(job, sent),
                None => {
                    let node = job.node_id();
                    job.fail(&BalancerError::NodeFailed { node });
                }
            }
        }
    }

    /// Closes a retired connection once it has nothing pending (call with the lock
    /// released).
    fn close_if_done(&self) {
        let done = {
            let s = self.lock();
            s.retired && s.pending.is_empty() && s.phase != Phase::Closed
        };
        if done {
            self.fail(None);
        }
    }
}

/// The pool's handle on one pipelined connection; dropping it retires the
/// connection, which closes once its pending requests are answered.
struct NodeConn {
    shared: Arc<Shared>,
}

impl Drop for NodeConn {
    fn drop(&mut self) {
        self.shared.lock().retired = true;
        self.shared.close_if_done();
    }
}

impl NodeConn {
    /// Starts connecting to `addr` on the current loop; requests may be queued at once.
    fn open(addr: Arc<str>, opts: ConnOptions, failover: Weak<dyn Failover>) -> NodeConn {
        let shared = Arc::new(Shared {
            state: Mutex::new(ConnState {
                phase: Phase::Connecting,
                out: Vec::new(),
                next_id: 1,
                written: 0,
                pending: Pending::default(),
                writer: None,
                retired: false,
                stream: None,
                answers: 0,
            }),
            failover,
        });
        crate::runtime::spawn_local(run(shared.clone(), addr, opts.clone())).detach();
        crate::runtime::spawn_local(sweep(Arc::downgrade(&shared), opts.tick)).detach();
        NodeConn { shared }
    }

    /// Queues `job`'s frame for the writer; `Err(job)` if the connection has failed.
    fn submit(&self, mut job: Job) -> Result<(), Job> {
        let waker = {
            let mut s = self.shared.lock();
            if s.phase == Phase::Closed || s.retired {
                return Err(job);
            }
            job.answers_mark = s.answers;
            let id = s.next_id;
            s.next_id += 1;
            job.encode(&mut s.out, id);
            s.pending.insert(id, job);
            s.writer.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

/// Connects, then writes batches until the connection fails or closes.
async fn run(shared: Arc<Shared>, addr: Arc<str>, opts: ConnOptions) {
    let connected = ClientStream::connect(&addr, opts.tls.as_ref(), opts.connect_timeout).await;
    let stream = match connected {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(addr = %addr, error = %e, "proxy connection to node failed to open");
            shared.fail(Some(if e.kind() == io::ErrorKind::TimedOut {
                Failure::ConnectTimeout
            } else {
                Failure::ConnectFailed
            }));
            return;
        }
    };
    {
        let mut s = shared.lock();
        if s.phase == Phase::Closed {
            return;
        }
        s.phase = Phase::Open;
        s.stream = Some(stream.tcp().clone());
    }
    let (reader, writer) = stream.split();
    crate::runtime::spawn_local(read_loop(shared.clone(), reader, opts.max_frame)).detach();
    if let Err(e) = write_loop(&shared, writer).await {
        tracing::debug!(addr = %addr, error = %e, "proxy connection to node failed on write");
    }
    shared.fail(None);
}

async fn write_loop(shared: &Shared, mut stream: WriteHalf) -> io::Result<()> {
    let mut buf = Vec::new();
    let tls = matches!(stream, WriteHalf::Tls(_));
    loop {
        let more = std::future::poll_fn(|cx| {
            let mut s = shared.lock();
            if s.phase == Phase::Closed {
                Poll::Ready(false)
            } else if !s.out.is_empty() {
                Poll::Ready(true)
            } else {
                s.writer = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        if !more {
            return Ok(());
        }
        // One turn of the executor lets the other requests that arrived in the same
        // wake-up (other clients' reads) join this write.
        future::yield_now().await;
        {
            let mut s = shared.lock();
            // The emptied buffer goes back, so the two take turns without reallocating.
            std::mem::swap(&mut s.out, &mut buf);
            s.written = s.next_id - 1;
        }
        stream.write_all(&buf).await?;
        if tls {
            // TLS records wait in the session until flushed.
            stream.flush().await?;
        }
        buf.clear();
        if buf.capacity() > MAX_KEPT {
            buf = Vec::new();
        }
    }
}

async fn read_loop(shared: Arc<Shared>, mut stream: ReadHalf, max_frame: usize) {
    // The same decoder as the node's and the client's: bounds checked before anything
    // is allocated, many frames per read, frames split across reads.
    let mut dec = FrameDecoder::with_read_chunk(max_frame, READ_CHUNK);
    let result: io::Result<()> = async {
        loop {
            let buf = dec.read_buf();
            let offered = buf.len();
            let n = stream.read(buf).await?;
            dec.advance(n, offered);
            if n == 0 {
                return Ok(());
            }
            while let Some(payload) = dec
                .next_frame()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            {
                answer(&shared, payload);
            }
            shared.close_if_done();
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "proxy connection to node failed on read");
    }
    shared.fail(None);
}

/// Hands one response to its job.
fn answer(shared: &Shared, payload: &[u8]) {
    let Some((id, span)) = scan::response_id(payload) else {
        if Notice::parse(payload).is_some_and(|n| n.is_goaway()) {
            shared.lock().retired = true;
        } else {
            // An answer without an id is about the connection (e.g. overloaded); the
            // node closes it next, which fails the jobs.
            tracing::debug!("node sent a response without id");
        }
        return;
    };
    let job = {
        let mut s = shared.lock();
        s.answers = s.answers.wrapping_add(1);
        s.pending.remove(&id)
    };
    // None: the job timed out already.
    if let Some(job) = job {
        job.respond(payload, &span);
    }
}

/// Answers `timeout` for jobs past their deadline, every `tick` while the connection
/// lives; counts jobs past their response timeout against the node, and moves the
/// ones that may be repeated to another node.
async fn sweep(shared: Weak<Shared>, tick: Duration) {
    let mut expired = Vec::new();
    let mut moved = Vec::new();
    let mut blamed: Vec<Arc<Member>> = Vec::new();
    loop {
        async_io::Timer::after(tick).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let failover = shared.failover.upgrade();
        let now = Instant::now();
        {
            let mut s = shared.lock();
            if s.phase == Phase::Closed {
                return;
            }
            if s.pending.is_empty() {
                continue;
            }
            let mut late = Vec::new();
            let mut movable = Vec::new();
            let answers = s.answers;
            for (&id, j) in s.pending.iter_mut() {
                if j.deadline <= now {
                    late.push(id);
                }
                let overdue = j.answer_by.is_some_and(|a| a <= now || j.deadline <= now);
                if !overdue || j.overdue {
                    continue;
                }
                // Counted once, and only if the connection has stayed silent since
                // it was sent; a job that may be repeated moves on while its own
                // deadline leaves time, and is taken out of `pending` only once
                // another node is found, so an answer arriving meanwhile is not lost.
                j.overdue = true;
                if j.answers_mark == answers {
                    blamed.extend(j.member().cloned());
                }
                if j.deadline > now && !j.retried {
                    if let Some(to) = failover.as_ref().and_then(|f| f.alternative(j)) {
                        movable.push((id, to));
                    }
                }
            }
            expired.extend(late.into_iter().filter_map(|id| s.pending.remove(&id)));
            moved.extend(
                movable
                    .into_iter()
                    .filter_map(|(id, to)| s.pending.remove(&id).map(|j| (j, to))),
            );
        }
        for job in expired.drain(..) {
            let node = job.node_id();
            job.fail(&BalancerError::Timeout { node });
        }
        if let Some(failover) = &failover {
            for m in blamed.drain(..) {
                failover.node_failed(&m, Failure::ResponseTimeout);
            }
            for (job, to) in moved.drain(..) {
                failover.resend(job, to);
            }
        }
        blamed.clear();
        shared.close_if_done();
    }
}
