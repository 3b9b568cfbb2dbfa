//! The node's side of registration: register, heartbeat with load, re-register, drain.
//!
//! `node.register` set → the node keeps one connection to that balancer's
//! registration port. It registers (with the cluster secret), sends a heartbeat with
//! its connection and in-flight counts every `heartbeat_ms` the balancer asked for,
//! and when the connection fails (a balancer restart) reconnects with capped
//! exponential backoff and registers again. A heartbeat answered `not_found` (the
//! lease expired while the node was frozen) also re-registers. `node.register` may
//! list several balancers sharing membership (comma-separated): a node that loses
//! its balancer registers with the next one.
//!
//! Shutdown (SIGTERM) drains: `lb.drain` first, so the balancer sends no new work;
//! a short grace for requests already on their way; then the node's server stops
//! reading and finishes what is in flight; then `lb.deregister`.

use crate::client::{CallOptions, ClientError, Connection};
use crate::config::Config;
use crate::protocol::{ApiError, ErrorCode};
use crate::runtime::{shutdown, Registry, Runtime, Shutdown, ShutdownTrigger};
use crate::tls::Connector;
use futures_lite::future;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Between `lb.drain` being acknowledged and the server refusing new requests: time
/// for requests the balancer routed just before the drain to arrive.
pub const DRAIN_GRACE: Duration = Duration::from_millis(300);
/// First reconnection delay; doubles up to the heartbeat interval.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Bound on connecting and on each registration call.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// After a hand-over, how long the old process holds the lease for its successor.
const SUCCESSOR_WAIT: Duration = Duration::from_secs(5);

/// Who the node says it is, and what it serves (the body of `lb.register`).
#[derive(Debug, Clone)]
pub struct Registration {
    /// The balancers' registration addresses, comma-separated; the node holds its
    /// lease at one of them and moves to the next when that one fails.
    pub register: String,
    /// Node id.
    pub node: String,
    /// Service name.
    pub service: String,
    /// Address announced to clients.
    pub addr: String,
    /// Selection weight; a reload changes it and the next heartbeat carries it.
    pub weight: Arc<AtomicU32>,
    /// Operation prefixes served.
    pub ops: Vec<String>,
    /// Operations safe to send twice.
    pub idempotent: Vec<String>,
    /// Cluster secret, if configured.
    pub secret: Option<String>,
    /// TLS to the balancer (verified against `tls.ca`, presenting the node's
    /// certificate); `None` = plain TCP.
    pub tls: Option<Connector>,
    /// Set when the node handed its listeners to a new process (in-place upgrade):
    /// the successor registers the same id, so this one neither drains nor
    /// deregisters it, and keeps its lease until the successor holds it.
    pub handed_over: Arc<AtomicBool>,
}

impl Registration {
    /// The registration of node `node` bound at `bound`, as `cfg` describes it.
    pub fn new(
        cfg: &Config,
        node: &str,
        bound: SocketAddr,
        ops: Vec<String>,
        idempotent: Vec<String>,
    ) -> Registration {
        Registration {
            register: cfg.node.register.clone(),
            node: node.to_owned(),
            service: cfg.node.service.clone(),
            addr: advertise(cfg, bound),
            weight: Arc::new(AtomicU32::new(cfg.node.weight)),
            ops,
            idempotent,
            secret: cfg.cluster.secret().map(str::to_owned),
            tls: None,
            handed_over: Arc::default(),
        }
    }
}

/// A running agent; [`finish`](Agent::finish) it after the node's server stopped.
pub struct Agent {
    /// Whether the node currently holds a lease (readiness).
    registered: Arc<AtomicBool>,
    /// Tells the agent the server has drained.
    server_done: ShutdownTrigger,
    /// The agent task.
    task: smol::Task<()>,
}

/// The address to announce: `node.advertise`, else the bound address, with an
/// unspecified IP (0.0.0.0) replaced by the host name so others can reach it.
pub fn advertise(cfg: &Config, bound: SocketAddr) -> String {
    if !cfg.node.advertise.is_empty() {
        return cfg.node.advertise.clone();
    }
    if bound.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        return format!("{host}:{}", bound.port());
    }
    bound.to_string()
}

/// Starts registering if `node.register` is set. Returns the shutdown the node's
/// server must use (it fires only once the balancer stopped sending work) and the agent.
pub fn attach(
    identity: Registration,
    registry: Arc<Registry>,
    rt: &Runtime,
    shutdown: Shutdown,
) -> (Shutdown, Option<Agent>) {
    if identity.register.is_empty() {
        return (shutdown, None);
    }
    let (stop_server, server_shutdown) = shutdown::channel();
    let (server_done, done) = shutdown::channel();
    let load = move || {
        let conns = registry.list();
        let inflight: u64 = conns.iter().map(|c| u64::from(c.inflight)).sum();
        (conns.len() as u64, inflight)
    };
    let registered = Arc::new(AtomicBool::new(false));
    let task = rt.spawn(run(
        identity,
        load,
        shutdown,
        stop_server,
        done,
        registered.clone(),
    ));
    (
        server_shutdown,
        Some(Agent {
            registered,
            server_done,
            task,
        }),
    )
}

impl Agent {
    /// A flag that is true while the node holds a lease at the balancer.
    pub fn registered(&self) -> Arc<AtomicBool> {
        self.registered.clone()
    }

    /// Deregisters (the server has stopped) and waits for the agent, briefly.
    pub fn finish(self) {
        self.server_done.trigger();
        smol::block_on(future::or(self.task, async {
            async_io::Timer::after(CALL_TIMEOUT * 2).await;
        }));
    }
}

/// How a registration session ended.
enum Ended {
    /// Shutdown was requested; the connection is still usable.
    Shutdown(Connection),
    /// The connection or registration failed.
    Lost(String),
    /// The balancer sent `goaway` (it drains or hands its listeners to a successor):
    /// connect and register again at once.
    Moved,
}

async fn run(
    id: Registration,
    load: impl Fn() -> (u64, u64),
    shutdown: Shutdown,
    stop_server: ShutdownTrigger,
    server_done: Shutdown,
    registered: Arc<AtomicBool>,
) {
    let mut heartbeat = Duration::from_secs(1);
    let mut backoff = FIRST_BACKOFF;
    let mut conn = None;
    let balancers: Vec<&str> = id
        .register
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    let mut at = 0;
    while !shutdown.is_triggered() {
        let balancer = balancers.get(at).copied().unwrap_or_default();
        match session(
            &id,
            balancer,
            &load,
            &shutdown,
            &mut heartbeat,
            &mut backoff,
            &registered,
        )
        .await
        {
            Ended::Shutdown(c) => {
                conn = Some(c);
                break;
            }
            Ended::Moved => {
                registered.store(false, Ordering::Relaxed);
                tracing::info!(balancer, "balancer sent goaway; registering again");
                backoff = FIRST_BACKOFF;
            }
            Ended::Lost(why) => {
                registered.store(false, Ordering::Relaxed);
                tracing::warn!(balancer, reason = %why, retry_in_ms = backoff.as_millis() as u64, "not registered");
                // Another balancer sharing membership takes the lease at once.
                // Once every one failed, back off as with a single balancer.
                if balancers.len() > 1 {
                    at = (at + 1) % balancers.len();
                    if at != 0 {
                        continue;
                    }
                }
                shutdown.sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(heartbeat);
            }
        }
    }
    let node = json!({ "node": id.node });
    if id.handed_over.load(Ordering::SeqCst) {
        stop_server.trigger();
        if let Some(c) = &conn {
            await_successor(c, &id.node).await;
        }
        server_done.wait().await;
        return;
    }
    if let Some(c) = &conn {
        match call(c, "lb.drain", node.clone()).await {
            Ok(_) => {
                tracing::info!(node = %id.node, "draining: the balancer sends no new work");
                async_io::Timer::after(DRAIN_GRACE).await;
            }
            Err(e) => tracing::warn!(error = %e, "lb.drain failed; stopping anyway"),
        }
    }
    stop_server.trigger();
    server_done.wait().await;
    if let Some(c) = &conn {
        match call(c, "lb.deregister", node).await {
            Ok(_) => tracing::info!(node = %id.node, "deregistered"),
            Err(e) => tracing::warn!(error = %e, "lb.deregister failed"),
        }
    }
}

/// After a hand-over: keeps the lease (heartbeats) until the successor registered the
/// same node id, which the balancer tells by refusing this connection's heartbeat,
/// so the node never leaves the balancer's selection in between.
async fn await_successor(conn: &Connection, node: &str) {
    let until = std::time::Instant::now() + SUCCESSOR_WAIT;
    while std::time::Instant::now() < until {
        let body = json!({"node": node, "load": {"conns": 0, "inflight": 0}});
        match call(conn, "lb.heartbeat", body).await {
            Ok(_) => {
                async_io::Timer::after(Duration::from_millis(50)).await;
            }
            Err(CallError::Refused(_)) => {
                tracing::info!(node, "the new process holds the lease");
                return;
            }
            Err(e) => {
                tracing::debug!(node, error = %e, "registration connection ended after the hand-over");
                return;
            }
        }
    }
    tracing::warn!(
        node,
        wait_ms = SUCCESSOR_WAIT.as_millis() as u64,
        "the new process did not register in time; leaving the lease"
    );
}

/// Connects, registers, heartbeats until shutdown or failure.
async fn session(
    id: &Registration,
    balancer: &str,
    load: &impl Fn() -> (u64, u64),
    shutdown: &Shutdown,
    heartbeat: &mut Duration,
    backoff: &mut Duration,
    registered: &AtomicBool,
) -> Ended {
    let conn = match Connection::connect_with(balancer, CALL_TIMEOUT, id.tls.as_ref()).await {
        Ok(c) => c,
        Err(e) => return Ended::Lost(format!("connect: {e}")),
    };
    if let Err(e) = register(&conn, id, heartbeat).await {
        return Ended::Lost(e);
    }
    tracing::info!(node = %id.node, balancer, addr = %id.addr, service = %id.service, "registered");
    registered.store(true, Ordering::Relaxed);
    *backoff = FIRST_BACKOFF;
    loop {
        let woke = future::or(async { Some(shutdown.sleep(*heartbeat).await) }, async {
            conn.unusable().await;
            None
        })
        .await;
        match woke {
            Some(true) => return Ended::Shutdown(conn),
            Some(false) => {}
            None if conn.saw_goaway() => return Ended::Moved,
            None => return Ended::Lost("registration connection closed".into()),
        }
        let (conns, inflight) = load();
        let weight = id.weight.load(Ordering::Relaxed);
        let body = json!({
            "node": id.node,
            "load": {"conns": conns, "inflight": inflight},
            "weight": weight,
        });
        match call(&conn, "lb.heartbeat", body).await {
            Ok(_) => {}
            Err(CallError::Refused(e)) if e.code == ErrorCode::NotFound => {
                tracing::warn!(node = %id.node, "lease lost; registering again");
                if let Err(e) = register(&conn, id, heartbeat).await {
                    return Ended::Lost(e);
                }
                tracing::info!(node = %id.node, balancer, "registered again");
            }
            Err(e) => return Ended::Lost(format!("heartbeat: {e}")),
        }
    }
}

async fn register(
    conn: &Connection,
    id: &Registration,
    heartbeat: &mut Duration,
) -> Result<(), String> {
    let mut body = json!({
        "node": id.node,
        "service": id.service,
        "addr": id.addr,
        "weight": id.weight.load(Ordering::Relaxed),
        "ops": id.ops,
        "idempotent": id.idempotent,
    });
    if let Some(s) = &id.secret {
        body["secret"] = Value::String(s.clone());
    }
    let answer = call(conn, "lb.register", body)
        .await
        .map_err(|e| format!("lb.register: {e}"))?;
    if let Some(ms) = answer.get("heartbeat_ms").and_then(Value::as_u64) {
        *heartbeat = Duration::from_millis(ms.max(10));
    }
    Ok(())
}

/// Why a call to the balancer failed.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// The connection failed or timed out.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The balancer answered with an error.
    #[error("refused: {0}")]
    Refused(ApiError),
}

async fn call(conn: &Connection, op: &str, body: Value) -> Result<Value, CallError> {
    let resp = conn
        .call_timeout(op, body, &CallOptions::default(), CALL_TIMEOUT)
        .await?;
    resp.result.map_err(CallError::Refused)
}

/// `d` ± 20 %, so that nodes restarted together do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let f = 0.8 + rand::random::<f64>() * 0.4;
    d.mul_f64(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertise_address() {
        let mut cfg = Config::default();
        let bound: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        assert_eq!(advertise(&cfg, bound), "127.0.0.1:7001");
        let any: SocketAddr = "0.0.0.0:7002".parse().unwrap();
        let host = advertise(&cfg, any);
        assert!(
            host.ends_with(":7002") && !host.starts_with("0.0.0.0"),
            "{host}"
        );
        cfg.node.advertise = "node-a.internal:7001".into();
        assert_eq!(advertise(&cfg, any), "node-a.internal:7001");
    }
}
