//! Binding listeners and accepting connections onto the loop threads.
//!
//! Two accept strategies, chosen by `runtime.reuse_port`: one `SO_REUSEPORT` socket
//! per loop thread (the kernel spreads connections; no cross-thread hand-off), or one
//! acceptor that hands connections to the loops in turn. BENCHMARKS.md compares them.

use super::connection::{self, ConnShared, ServerMetrics};
use super::registry::Registry;
use super::{Runtime, Service, Shutdown};
use crate::config::LimitsConfig;
use crate::protocol::{ApiError, Response};
use crate::tls::Acceptor;
use arc_swap::ArcSwap;
use futures_lite::{future, AsyncWriteExt};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a TLS handshake may take (bounded further by `limits.idle_timeout`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a server behaves; built from `[limits]`, `[runtime]` and `[tls]`.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Listener name in logs and the registry ("node", "proxy", …).
    pub name: &'static str,
    /// Frame, connection, in-flight and time bounds.
    pub limits: LimitsConfig,
    /// One SO_REUSEPORT listener per loop thread, or a single dispatching acceptor.
    pub reuse_port: bool,
    /// TLS: every connection shakes hands before its first frame; `None` = plain TCP.
    pub tls: Option<Acceptor>,
}

impl ServerOptions {
    /// Options with the given name and limits, using SO_REUSEPORT.
    pub fn new(name: &'static str, limits: LimitsConfig) -> Self {
        ServerOptions {
            name,
            limits,
            reuse_port: true,
            tls: None,
        }
    }
}

/// The limits of one server, shared with its connections and replaced whole by a
/// reload: the connection count and in-flight bounds apply at once, a new frame
/// bound and idle timeout to connections accepted afterwards.
#[derive(Clone)]
pub struct LiveLimits {
    /// Listener name (metrics).
    name: &'static str,
    /// The bounds in force.
    current: Arc<ArcSwap<LimitsConfig>>,
}

impl LiveLimits {
    /// Limits `limits` for listener `name`.
    pub fn new(name: &'static str, limits: LimitsConfig) -> LiveLimits {
        LiveLimits {
            name,
            current: Arc::new(ArcSwap::from_pointee(limits)),
        }
    }

    /// The bounds in force (lock-free).
    pub fn load(&self) -> arc_swap::Guard<Arc<LimitsConfig>> {
        self.current.load()
    }

    /// Replaces the bounds; the exported limit gauges follow.
    pub fn store(&self, limits: LimitsConfig) {
        crate::metrics::set_limits(self.name, limits.max_connections, limits.max_inflight);
        self.current.store(Arc::new(limits));
    }
}

/// A bound, not yet running server.
pub struct Server {
    /// One listener per loop thread (reuse_port) or a single one.
    listeners: Vec<StdListener>,
    /// The address actually bound (port 0 resolved).
    local_addr: SocketAddr,
    /// Open connections; shared with admin views before and after `run`.
    registry: Arc<Registry>,
    /// Name, limits.
    opts: ServerOptions,
    /// The limits in force, replaced by a reload.
    limits: LiveLimits,
}

impl Server {
    /// Binds `addr` for `rt`'s loop threads.
    pub fn bind(addr: &str, rt: &Runtime, opts: ServerOptions) -> io::Result<Server> {
        let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "address resolves to nothing")
        })?;
        let count = if opts.reuse_port { rt.threads() } else { 1 };
        if opts.reuse_port && addr.port() != 0 {
            // SO_REUSEPORT would let this process share a port another process holds
            // (the kernel then splits connections between them): make sure nobody does.
            drop(bind_socket(addr, false)?);
        }
        let first = bind_socket(addr, opts.reuse_port)?;
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..count {
            listeners.push(bind_socket(local_addr, true)?);
        }
        Ok(Server {
            listeners,
            local_addr,
            registry: Arc::new(Registry::new(opts.name)),
            limits: LiveLimits::new(opts.name, opts.limits.clone()),
            opts,
        })
    }

    /// A server on listening sockets this process inherited (socket activation, or
    /// an upgrade's hand-over) instead of binding them: each socket gets an acceptor,
    /// on the loops in turn.
    pub fn from_listeners(listeners: Vec<StdListener>, opts: ServerOptions) -> io::Result<Server> {
        let first = listeners
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no inherited socket"))?;
        let local_addr = first.local_addr()?;
        for l in &listeners {
            l.set_nonblocking(true)?;
        }
        Ok(Server {
            listeners,
            local_addr,
            registry: Arc::new(Registry::new(opts.name)),
            limits: LiveLimits::new(opts.name, opts.limits.clone()),
            opts,
        })
    }

    /// Binds `addr`, or uses `inherited` sockets when there are some.
    pub fn bind_or_inherit(
        addr: &str,
        rt: &Runtime,
        opts: ServerOptions,
        inherited: Option<Vec<StdListener>>,
    ) -> io::Result<Server> {
        match inherited {
            Some(sockets) => Server::from_listeners(sockets, opts),
            None => Server::bind(addr, rt, opts),
        }
    }

    /// Copies of the listening sockets (same sockets, new descriptors), to hand to a
    /// successor process.
    pub fn dup_listeners(&self) -> io::Result<Vec<StdListener>> {
        self.listeners.iter().map(StdListener::try_clone).collect()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The limits in force, for a reload to replace.
    pub fn limits(&self) -> LiveLimits {
        self.limits.clone()
    }

    /// The connection registry (admin views, metrics).
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Accepts until `shutdown`, answering with `service`, then drains: sends `goaway`
    /// on every connection, takes requests for `limits.goaway_grace` more, then stops
    /// reading, lets in-flight ones finish within `limits.drain_timeout` (counted from
    /// the shutdown), and closes everything.
    pub async fn run(
        self,
        rt: &Runtime,
        service: Arc<dyn Service>,
        shutdown: Shutdown,
    ) -> io::Result<()> {
        let tls = self.opts.tls.clone();
        let shared = Arc::new(ConnShared {
            service,
            registry: self.registry.clone(),
            limits: self.limits.clone(),
            name: self.opts.name,
            inflight_total: AtomicUsize::new(0),
            metrics: ServerMetrics::new(self.opts.name),
        });
        self.limits.store(self.opts.limits.clone());
        let threads = rt.threads();
        let mut accepters = Vec::new();
        let dispatch = self.listeners.len() == 1 && threads > 1;
        for (i, std_listener) in self.listeners.into_iter().enumerate() {
            let shared = shared.clone();
            let shutdown = shutdown.clone();
            let rt2 = rt.clone();
            let tls = tls.clone();
            accepters.push(rt.spawn_on(i, async move {
                let listener = async_net::TcpListener::try_from(std_listener)?;
                let mut turn = i;
                loop {
                    let accepted = future::or(async { Some(listener.accept().await) }, async {
                        shutdown.wait().await;
                        None
                    })
                    .await;
                    let (stream, peer) = match accepted {
                        None => return Ok::<(), io::Error>(()),
                        Some(Ok(pair)) => pair,
                        Some(Err(e)) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(listener = shared.name, error = %e, "accept failed");
                            async_io::Timer::after(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let max_connections = shared.limits.load().max_connections;
                    if shared.registry.len() >= max_connections {
                        shared.metrics.refused.increment(1);
                        super::spawn_local(refuse(stream, max_connections)).detach();
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let Some(acceptor) = &tls else {
                        let conn =
                            connection::run(shared.clone(), stream, peer, shutdown.clone(), None);
                        if dispatch {
                            turn += 1;
                            rt2.spawn_on(turn, conn).detach();
                        } else {
                            super::spawn_local(conn).detach();
                        }
                        continue;
                    };
                    let handshake_timeout =
                        HANDSHAKE_TIMEOUT.min(shared.limits.load().idle_timeout);
                    let conn = handshake_then_run(
                        acceptor.clone(),
                        handshake_timeout,
                        shared.clone(),
                        stream,
                        peer,
                        shutdown.clone(),
                    );
                    if dispatch {
                        turn += 1;
                        rt2.spawn_on(turn, conn).detach();
                    } else {
                        super::spawn_local(conn).detach();
                    }
                }
            }));
        }
        // Idle sweeper: closes connections that completed no frame for idle_timeout.
        let sweeper = {
            let shared = shared.clone();
            let shutdown = shutdown.clone();
            rt.spawn(async move {
                let every = (shared.limits.load().idle_timeout / 4).max(Duration::from_millis(20));
                super::shutdown::every(every, &shutdown, || {
                    let n = shared
                        .registry
                        .close_idle(shared.limits.load().idle_timeout);
                    if n > 0 {
                        tracing::debug!(
                            listener = shared.name,
                            closed = n,
                            "idle connections closed"
                        );
                    }
                })
                .await;
            })
        };
        shutdown.wait().await;
        for a in accepters {
            a.await?;
        }
        sweeper.await;
        // Every connection announces the drain with `goaway` (PROTOCOL §7) and still
        // takes requests for the grace; connections that registered after this see
        // the trigger themselves before they wait for input. Clients that speak the
        // protocol close their side once answered, which ends the grace early.
        let limits = shared.limits.load();
        let started = Instant::now();
        let deadline = started + limits.drain_timeout;
        let grace_end = started + limits.goaway_grace.min(limits.drain_timeout);
        shared.registry.goaway_all();
        while !shared.registry.is_empty() && Instant::now() < grace_end {
            async_io::Timer::after(Duration::from_millis(10)).await;
        }
        // Then no new requests: answer those in flight and close.
        shared.registry.drain_all();
        while !shared.registry.is_empty() && Instant::now() < deadline {
            async_io::Timer::after(Duration::from_millis(10)).await;
        }
        if !shared.registry.is_empty() {
            tracing::warn!(
                listener = shared.name,
                open = shared.registry.len(),
                "drain deadline passed; closing remaining connections"
            );
            shared.registry.close_all("drain deadline");
        }
        Ok(())
    }
}

/// Shakes hands, then serves the connection; a failed handshake is logged with the
/// peer's address and the socket closed, without a DSF frame.
async fn handshake_then_run(
    acceptor: Acceptor,
    timeout: Duration,
    shared: Arc<ConnShared>,
    stream: async_net::TcpStream,
    peer: SocketAddr,
    shutdown: Shutdown,
) {
    let accepted = future::or(
        async { Some(crate::tls::accept(&acceptor, stream, timeout).await) },
        async {
            shutdown.wait().await;
            None
        },
    )
    .await;
    match accepted {
        None => {}
        Some(Ok(a)) => {
            let tls = Some((a.session, a.identity));
            connection::run(shared, a.stream, peer, shutdown, tls).await
        }
        Some(Err(e)) => {
            shared.metrics.tls_failed.increment(1);
            tracing::warn!(listener = shared.name, %peer, error = %e, "TLS handshake failed; connection closed");
        }
    }
}

/// Answers a connection over the limit with one `overloaded` frame and closes it.
async fn refuse(mut stream: async_net::TcpStream, max: usize) {
    let mut out = Vec::new();
    Response::err(
        None,
        ApiError::overloaded(format!("connection limit ({max}) reached")),
    )
    .encode(&mut out);
    let _ = future::or(async { stream.write_all(&out).await }, async {
        async_io::Timer::after(Duration::from_secs(1)).await;
        Ok(())
    })
    .await;
    let _ = stream.close().await;
}

fn bind_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<StdListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
