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
//! is harmless ([`retry_safe`](super::retry_safe)); otherwise the client gets
//! `unavailable`. Every request is bounded by `limits.request_timeout`.

use super::error::BalancerError;
use super::membership::Membership;
use super::pool::{NodePool, SendError};
use super::snapshot::{Group, Member, NodeLoad, Snapshot};
use crate::protocol::{ApiError, Request, Response};
use crate::runtime::{BoxFuture, ConnMeta, Service};
use arc_swap::ArcSwap;
use futures_lite::future;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

struct Inner {
    /// Whose snapshot routes.
    membership: Arc<Membership>,
    /// Node pools by node id; read lock-free, changed under `pools_lock`.
    pools: ArcSwap<HashMap<Arc<str>, Arc<NodePool>>>,
    /// Serializes pool changes; holds the generation pools were last pruned at.
    pools_lock: Mutex<u64>,
    /// Generation pools were last pruned at (fast check without the lock).
    pruned: AtomicU64,
    /// Keyless stickiness, by client connection id.
    sticky: Vec<Mutex<HashMap<u64, Vec<Sticky>>>>,
    /// Options.
    opts: ProxyOptions,
}

impl Proxy {
    /// A proxy over `membership`.
    pub fn new(membership: Arc<Membership>, opts: ProxyOptions) -> Proxy {
        Proxy {
            inner: Arc::new(Inner {
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
    fn call(&self, conn: ConnMeta, req: Request) -> BoxFuture<'static, Response> {
        let id = req.id;
        let snap = self.inner.membership.load();
        self.inner.prune_if_changed(&snap);
        let member = match self.inner.choose(conn.id, &snap, &req, None) {
            Ok(m) => m,
            Err(e) => return Box::pin(std::future::ready(Response::err(Some(id), e.to_api()))),
        };
        let inner = self.inner.clone();
        Box::pin(async move { inner.forward(conn.id, req, member).await })
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
        req: &Request,
        avoid: Option<&str>,
    ) -> Result<Arc<Member>, BalancerError> {
        let group = snap
            .route(&req.op)
            .ok_or_else(|| BalancerError::NoBackend(format!("operation `{}`", req.op)))?;
        let no_backend = || BalancerError::NoBackend(format!("service `{}`", group.name));
        let index = match (&req.key, avoid) {
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
        let slot = picks.iter().position(|p| p.service == group.name);
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
        let keep: HashMap<Arc<str>, Arc<NodePool>> = current
            .iter()
            .filter(|(id, pool)| {
                snap.nodes
                    .binary_search_by(|m| (*m.id).cmp(id))
                    .is_ok_and(|i| snap.nodes[i].addr == pool.addr)
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
        let pool = Arc::new(NodePool::new(
            m.addr.clone(),
            self.opts.conns_per_node,
            self.opts.connect_timeout,
            self.opts.max_frame,
        ));
        let mut next = (*current).clone();
        next.insert(m.id.clone(), pool.clone());
        self.pools.store(Arc::new(next));
        pool
    }

    async fn forward(self: Arc<Self>, conn: u64, mut req: Request, first: Arc<Member>) -> Response {
        let client_id = req.id;
        let deadline = Instant::now() + self.opts.request_timeout;
        let result = match self.attempt(conn, &mut req, &first, deadline).await {
            Ok(payload) => Ok(payload),
            Err(SendFailure::Timeout) => Err(BalancerError::Timeout {
                node: first.id.to_string(),
            }),
            Err(SendFailure::Send(e)) => {
                let sent = matches!(e, SendError::Lost);
                if sent && !super::retry_safe(&req.op) {
                    tracing::warn!(node = %first.id, op = %req.op, "node failed with the request in flight; not repeatable");
                    Err(BalancerError::NodeFailed {
                        node: first.id.to_string(),
                    })
                } else {
                    tracing::info!(node = %first.id, op = %req.op, sent, "node failed; request retried on another node");
                    metrics::counter!(crate::admin::metrics::BALANCER_RETRIES).increment(1);
                    self.retry(conn, &mut req, &first, deadline).await
                }
            }
        };
        match result {
            Ok(payload) => match Response::parse(&payload) {
                Ok(mut resp) => {
                    resp.id = Some(client_id);
                    resp
                }
                Err(e) => {
                    tracing::warn!(node = %first.id, error = %e, "node sent an unreadable response");
                    Response::err(Some(client_id), ApiError::internal())
                }
            },
            Err(e) => Response::err(Some(client_id), e.to_api()),
        }
    }

    async fn retry(
        &self,
        conn: u64,
        req: &mut Request,
        failed: &Member,
        deadline: Instant,
    ) -> Result<Vec<u8>, BalancerError> {
        let snap = self.membership.snapshot();
        let second = self.choose(conn, &snap, req, Some(&failed.id))?;
        match self.attempt(conn, req, &second, deadline).await {
            Ok(payload) => Ok(payload),
            Err(SendFailure::Timeout) => Err(BalancerError::Timeout {
                node: second.id.to_string(),
            }),
            Err(SendFailure::Send(_)) => Err(BalancerError::NodeFailed {
                node: second.id.to_string(),
            }),
        }
    }

    /// One try at one node, counted in its in-flight load, bounded by `deadline`.
    async fn attempt(
        &self,
        conn: u64,
        req: &mut Request,
        m: &Member,
        deadline: Instant,
    ) -> Result<Vec<u8>, SendFailure> {
        let pool = self.pool(m);
        m.load
            .proxied
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _inflight = Inflight::new(&m.load);
        future::or(
            async { pool.send(req, Some(conn)).await.map_err(SendFailure::Send) },
            async {
                async_io::Timer::at(deadline).await;
                Err(SendFailure::Timeout)
            },
        )
        .await
    }
}

/// How one attempt failed.
enum SendFailure {
    /// The node failed.
    Send(SendError),
    /// The deadline passed.
    Timeout,
}

/// Counts a request in a node's in-flight load for as long as it lives.
struct Inflight<'a>(&'a NodeLoad);

impl<'a> Inflight<'a> {
    fn new(load: &'a NodeLoad) -> Self {
        load.inflight.add();
        Inflight(load)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.inflight.sub();
    }
}
