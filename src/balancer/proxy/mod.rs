//! The proxy port (PROTOCOL §5): clients speak the node protocol, the balancer forwards.
//!
//! For each request: the snapshot's routes give the service owning its `type`
//! (longest `ops` prefix); that service's selector picks a node by the request's
//! `key`, or, without a key, once per client connection (the pick sticks until the
//! node leaves, drains or turns unhealthy); a pooled connection carries it.
//!
//! Failures: no service or no healthy node is `no_backend` at once. A request that
//! never reached its node (connect refused, connection already closed) is tried once
//! more on another node. A request lost in flight is tried again only if repeating it
//! is harmless (the node declared the operation idempotent when it registered);
//! otherwise the client gets
//! `unavailable`. Every request is bounded by `limits.request_timeout`.
//!
//! Passive health checking: connect failures, connect timeouts and requests left
//! unanswered for the service's `outlier.response_timeout` are reported to the
//! membership, which ejects a node after enough of them in a row; an unanswered
//! request the node declared idempotent moves to the next node at that point.
//! [`probe`] brings ejected nodes back.
//!
//! Requests are relayed as bytes: [`scan`](crate::protocol::scan) reads `id`, `type` and `key`
//! (checking that the payload is valid JSON), and [`pool`] swaps ids in
//! place. No JSON value is built and no task is spawned per request. Payloads of an
//! unusual shape (legacy integer types, malformed JSON) take the server's decoding
//! path instead, which answers them exactly as before.

use crate::balancer::error::BalancerError;
use crate::tls::Connector;
pub mod job;
pub mod pool;
pub mod probe;

use crate::balancer::membership::outlier::Failure;
use crate::balancer::membership::Membership;
use crate::balancer::snapshot::{Group, Member, NodeLoad, NodeState, Snapshot};
use crate::protocol::scan;
use crate::protocol::{ApiError, Request, Response};
use crate::runtime::{mailbox::Mailbox, BoxFuture, ConnMeta, Service};
use arc_swap::ArcSwap;
use job::{Job, Reply};
use pool::{ConnOptions, Failover, NodePool};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Shards of the per-connection stickiness table (fewer lock collisions between loops).
const STICKY_SHARDS: usize = 16;

/// How the proxy behaves.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Pooled connections per node.
    pub conns_per_node: usize,
    /// Deadline of one request, retries included.
    pub request_timeout: Duration,
    /// Bound on opening a node connection.
    pub connect_timeout: Duration,
    /// Largest response frame accepted from a node.
    pub max_frame: usize,
    /// TLS to the nodes (verified against `tls.ca`, presenting the balancer's own
    /// certificate); `None` = plain TCP.
    pub tls: Option<Connector>,
}

/// A keyless connection's node for one service.
struct Sticky {
    /// Which service.
    service: Arc<str>,
    /// The node picked.
    node: Arc<str>,
    /// Its index in the group of `generation`.
    index: usize,
    /// The snapshot the index is valid for.
    generation: u64,
    /// The node's load, whose connection count this pick holds one of.
    load: Arc<NodeLoad>,
}

/// The proxy service.
pub struct Proxy {
    inner: Arc<Inner>,
}

/// The node pools by node id, looked up for every request. Node ids come from
/// registrations, which need the cluster secret, so the cheap hasher serves.
type Pools = HashMap<Arc<str>, Arc<NodePool>, BuildHasherDefault<pool::WireIdHasher>>;

/// One shard of the sticky picks, by connection id (ids this process assigns, so the
/// cheap hasher of wire ids serves).
type StickyPicks = HashMap<u64, Vec<Sticky>, BuildHasherDefault<pool::WireIdHasher>>;

struct Inner {
    /// This proxy, for the pools to hand failed jobs back to without owning it.
    me: Weak<Inner>,
    /// Whose snapshot routes.
    membership: Arc<Membership>,
    /// Node pools by node id; read lock-free, changed under `pools_lock`.
    pools: ArcSwap<Pools>,
    /// Serializes pool changes; holds the generation pools were last pruned at.
    pools_lock: Mutex<u64>,
    /// Generation pools were last pruned at (fast check without the lock).
    pruned: AtomicU64,
    /// Keyless stickiness, by client connection id.
    sticky: Vec<Mutex<StickyPicks>>,
    /// Options.
    opts: ProxyOptions,
}

impl Proxy {
    /// A proxy over `membership`.
    pub fn new(membership: Arc<Membership>, opts: ProxyOptions) -> Proxy {
        Proxy {
            inner: Arc::new_cyclic(|me| Inner {
                me: me.clone(),
                membership,
                pools: ArcSwap::default(),
                pools_lock: Mutex::new(0),
                pruned: AtomicU64::new(0),
                sticky: (0..STICKY_SHARDS).map(|_| Mutex::default()).collect(),
                opts,
            }),
        }
    }
}

impl Service for Proxy {
    fn call_frame(&self, conn: ConnMeta, payload: &[u8], mailbox: &Arc<Mailbox>) -> bool {
        let Some(head) = scan::request_head(payload) else {
            return false;
        };
        let snap = self.inner.membership.load();
        self.inner.prune_if_changed(&snap);
        // Without a node the decoding path answers `no_backend`; not worth a fast path.
        let Ok(member) = self.inner.choose(conn.id, &snap, head.op, head.key, None) else {
            return false;
        };
        // One clock reading per read from the client serves the deadline and the
        // node's response timeout of every request in it.
        let now = crate::runtime::clock::now();
        let deadline = now + self.inner.opts.request_timeout;
        let reply = Reply::Mailbox(mailbox.clone());
        let job = Job::new(payload.to_vec(), &head, conn.id, deadline, reply);
        self.inner.send_at(job, member, now);
        true
    }

    fn call(&self, conn: ConnMeta, req: Request) -> BoxFuture<'static, Response> {
        let id = req.id;
        let answer =
            |e: BalancerError| Box::pin(std::future::ready(Response::err(Some(id), e.to_api())));
        let snap = self.inner.membership.load();
        self.inner.prune_if_changed(&snap);
        let member = match self
            .inner
            .choose(conn.id, &snap, &req.op, req.key.as_deref(), None)
        {
            Ok(m) => m,
            Err(e) => return answer(e),
        };
        // Re-encoded in the common shape (legacy codes become names), then relayed
        // like any other request.
        let mut frame = Vec::new();
        req.encode(&mut frame);
        let payload = frame.split_off(crate::protocol::frame::HEADER_LEN);
        let Some(head) = scan::request_head(&payload) else {
            tracing::warn!(op = %req.op, "re-encoded request unreadable");
            return Box::pin(std::future::ready(Response::err(
                Some(id),
                ApiError::internal(),
            )));
        };
        let (tx, rx) = async_channel::bounded(1);
        let deadline = Instant::now() + self.inner.opts.request_timeout;
        let job = Job::new(
            payload.clone(),
            &head,
            conn.id,
            deadline,
            Reply::Channel(tx),
        );
        self.inner.send(job, member);
        Box::pin(async move {
            let frame = rx.recv().await.unwrap_or_default();
            match frame
                .get(crate::protocol::frame::HEADER_LEN..)
                .map(Response::parse)
            {
                Some(Ok(resp)) => resp,
                _ => {
                    tracing::warn!("node sent an unreadable response");
                    Response::err(Some(id), ApiError::internal())
                }
            }
        })
    }

    fn on_close(&self, conn: ConnMeta) {
        let shard = &self.inner.sticky[conn.id as usize % STICKY_SHARDS];
        if let Some(picks) = shard.lock().expect("sticky lock").remove(&conn.id) {
            for p in picks {
                p.load.conns.sub();
            }
        }
    }
}

impl Inner {
    /// The node for `req`: by key, or by the connection's sticky pick; `avoid` excludes
    /// a node that just failed.
    fn choose(
        &self,
        conn: u64,
        snap: &Snapshot,
        op: &str,
        key: Option<&str>,
        avoid: Option<&str>,
    ) -> Result<Arc<Member>, BalancerError> {
        let group = snap
            .route(op)
            .ok_or_else(|| BalancerError::NoBackend(format!("operation `{op}`")))?;
        let no_backend = || BalancerError::NoBackend(format!("service `{}`", group.name));
        let index = match (key, avoid) {
            (Some(key), None) => group.pick(Some(key.as_bytes())),
            (Some(key), Some(avoid)) => group.pick_avoiding(Some(key.as_bytes()), avoid),
            (None, avoid) => self.sticky_pick(conn, snap.generation, group, avoid),
        }
        .ok_or_else(no_backend)?;
        Ok(group.members[index].clone())
    }

    /// The connection's node for `group`, kept while it stays eligible.
    fn sticky_pick(
        &self,
        conn: u64,
        generation: u64,
        group: &Arc<Group>,
        avoid: Option<&str>,
    ) -> Option<usize> {
        let mut shard = self.sticky[conn as usize % STICKY_SHARDS]
            .lock()
            .expect("sticky lock");
        let picks = shard.entry(conn).or_default();
        let slot = picks
            .iter()
            .position(|p| Arc::ptr_eq(&p.service, &group.name) || p.service == group.name);
        if let Some(p) = slot.map(|i| &mut picks[i]) {
            let keep = avoid != Some(&*p.node);
            if keep && p.generation == generation {
                return Some(p.index);
            }
            if keep {
                if let Some(i) = group.position(&p.node).filter(|&i| group.eligible(i)) {
                    p.index = i;
                    p.generation = generation;
                    return Some(i);
                }
            }
        }
        let index = match avoid {
            Some(avoid) => group.pick_avoiding(None, avoid)?,
            None => group.pick(None)?,
        };
        let member = &group.members[index];
        member.load.conns.add();
        let pick = Sticky {
            service: group.name.clone(),
            node: member.id.clone(),
            index,
            generation,
            load: member.load.clone(),
        };
        match slot {
            Some(i) => std::mem::replace(&mut picks[i], pick).load.conns.sub(),
            None => picks.push(pick),
        }
        Some(index)
    }

    /// Drops pools of nodes that left (their connections close with them).
    fn prune_if_changed(&self, snap: &Snapshot) {
        if self.pruned.load(Ordering::Relaxed) == snap.generation {
            return;
        }
        let mut pruned = self.pools_lock.lock().expect("pools lock");
        if *pruned == snap.generation {
            return;
        }
        let current = self.pools.load_full();
        let keep: Pools = current
            .iter()
            .filter(|(id, pool)| {
                // An ejected node's connections go too: when it is readmitted, fresh
                // ones are opened rather than reusing ones that may be dead.
                snap.nodes
                    .binary_search_by(|m| (*m.id).cmp(id))
                    .is_ok_and(|i| {
                        snap.nodes[i].addr == pool.addr && snap.nodes[i].state != NodeState::Ejected
                    })
            })
            .map(|(id, pool)| (id.clone(), pool.clone()))
            .collect();
        if keep.len() != current.len() {
            self.pools.store(Arc::new(keep));
        }
        *pruned = snap.generation;
        self.pruned.store(snap.generation, Ordering::Relaxed);
    }

    /// The pool for `m`, created on first use.
    fn pool(&self, m: &Member) -> Arc<NodePool> {
        if let Some(p) = self.pools.load().get(&m.id) {
            if p.addr == m.addr {
                return p.clone();
            }
        }
        let _guard = self.pools_lock.lock().expect("pools lock");
        let current = self.pools.load_full();
        if let Some(p) = current.get(&m.id).filter(|p| p.addr == m.addr) {
            return p.clone();
        }
        let failover: Weak<dyn Failover> = self.me.clone();
        let pool = Arc::new(NodePool::new(
            m.addr.clone(),
            self.opts.conns_per_node,
            ConnOptions {
                connect_timeout: self.opts.connect_timeout,
                max_frame: self.opts.max_frame,
                tls: self.opts.tls.clone(),
                tick: (self.opts.request_timeout / 20)
                    .clamp(Duration::from_millis(5), Duration::from_millis(100)),
            },
            failover,
        ));
        let mut next = (*current).clone();
        next.insert(m.id.clone(), pool.clone());
        self.pools.store(Arc::new(next));
        pool
    }

    /// Hands `job` to a pooled connection to `member`.
    fn send(&self, job: Job, member: Arc<Member>) {
        self.send_at(job, member, Instant::now());
    }

    /// [`send`](Self::send) at `now`, a clock reading the caller already has.
    fn send_at(&self, mut job: Job, member: Arc<Member>, now: Instant) {
        let pool = self.pool(&member);
        member.load.proxied.fetch_add(1, Ordering::Relaxed);
        job.place(member, now);
        let affinity = Some(job.conn);
        pool.send(job, affinity);
    }
}

impl Failover for Inner {
    /// A request lost with its node connection: tried once more on another node if
    /// it never left, or if repeating it is harmless; `unavailable` otherwise.
    fn failed(&self, mut job: Job, sent: bool) {
        let Some(node) = job.unplace() else {
            return job.fail(&BalancerError::NodeFailed {
                node: String::new(),
            });
        };
        let failed = || {
            let node = node.id.to_string();
            if sent {
                BalancerError::NodeFailed { node }
            } else {
                BalancerError::NodeUnreachable { node }
            }
        };
        let Some((op, key)) = job
            .head()
            .map(|h| (h.op.to_owned(), h.key.map(str::to_owned)))
        else {
            return job.fail(&failed());
        };
        if job.retried {
            return job.fail(&failed());
        }
        if sent && !node.idempotent(&op) {
            tracing::warn!(node = %node.id, op = %op, "node failed with the request in flight; not repeatable");
            return job.fail(&failed());
        }
        if Instant::now() >= job.deadline {
            return job.fail(&BalancerError::Timeout {
                node: node.id.to_string(),
            });
        }
        tracing::info!(node = %node.id, op = %op, sent, "node failed; request retried on another node");
        metrics::counter!(crate::metrics::BALANCER_RETRIES).increment(1);
        job.retried = true;
        let snap = self.membership.snapshot();
        match self.choose(job.conn, &snap, &op, key.as_deref(), Some(&node.id)) {
            Ok(second) => self.send(job, second),
            Err(e) => job.fail(&e),
        }
    }

    /// An unanswered request moves to another node only if it is harmless to repeat
    /// and another node can take it; otherwise it keeps waiting for its node until
    /// the request deadline.
    fn alternative(&self, job: &Job) -> Option<Arc<Member>> {
        let node = job.member()?;
        let head = job.head()?;
        if !node.idempotent(head.op) {
            return None;
        }
        let snap = self.membership.snapshot();
        self.choose(job.conn, &snap, head.op, head.key, Some(&node.id))
            .ok()
            .filter(|second| second.id != node.id)
    }

    fn resend(&self, mut job: Job, to: Arc<Member>) {
        if let Some(node) = job.unplace() {
            tracing::debug!(node = %node.id, to = %to.id, "no answer within the response timeout; request repeated on another node");
        }
        metrics::counter!(crate::metrics::BALANCER_RETRIES).increment(1);
        job.retried = true;
        self.send(job, to);
    }

    fn node_failed(&self, member: &Member, failure: Failure) {
        self.membership.failed(member, failure);
    }
}

#[cfg(test)]
mod tests;
