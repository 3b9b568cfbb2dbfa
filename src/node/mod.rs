//! The node server: wires the runtime, the framework and the DSF application together.

pub mod agent;
pub mod app;
pub mod health;

use crate::config::Config;
use crate::framework::middleware::{AccessLog, Auth};
use crate::framework::Router;
use crate::runtime::{self, Runtime, Server, ServerOptions, Shutdown};
use std::net::SocketAddr;
use std::sync::Arc;

/// A node's name when `node.id` is empty: `<hostname>-<port>`.
pub fn default_id(addr: SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "node".into());
    format!("{host}-{}", addr.port())
}

/// Builds the router with every operation this node serves (`node.ops`).
pub fn router(cfg: &Config, node_id: Arc<str>, app: &Arc<app::App>) -> Router {
    let mut router = Router::new(cfg.limits.request_timeout);
    router.layer(AccessLog::new(cfg.limits.slow_request));
    router.layer(Auth::new(Arc::new(app.verifier())));
    app::sys::register(&mut router, node_id, cfg.node.debug_ops);
    app::register(&mut router, &cfg.node.ops, app);
    router
}

/// What a running node reports once it is bound.
#[derive(Debug, Clone)]
pub struct Started {
    /// The node's id.
    pub id: String,
    /// The bound protocol address.
    pub addr: SocketAddr,
    /// The admin HTTP address, if enabled.
    pub admin: Option<SocketAddr>,
}

/// Runs a node until `shutdown`, then drains. `on_ready` is called once it accepts work.
pub fn run(cfg: Config, shutdown: Shutdown, on_ready: impl FnOnce(&Started)) -> anyhow::Result<()> {
    runtime::executors::set_blocking_limit(cfg.runtime.blocking_threads);
    crate::metrics::install();
    let rt = Runtime::new("dsf-loop", cfg.runtime.loop_threads())?;
    let opts = ServerOptions {
        name: "node",
        limits: cfg.limits.clone(),
        reuse_port: cfg.runtime.reuse_port,
    };
    let server = Server::bind(&cfg.node.listen, &rt, opts)?;
    let addr = server.local_addr();
    let id = if cfg.node.id.is_empty() {
        default_id(addr)
    } else {
        cfg.node.id.clone()
    };
    let app = smol::block_on(app::App::open(&cfg))?;
    let router = router(&cfg, Arc::from(id.as_str()), &app);
    // With `node.register` set, the server stops only after the balancer let go of it.
    let (server_shutdown, agent) =
        agent::attach(&cfg, &id, addr, server.registry(), &rt, shutdown.clone())?;
    let admin = crate::admin::bind(&cfg.admin.listen)?;
    let admin_addr = admin.as_ref().and_then(crate::admin::local_addr);
    if let Some(listener) = admin {
        let registered = agent.as_ref().map(|a| a.registered());
        let checks = health::admin_app(&id, &app, server.registry(), registered);
        crate::admin::spawn(&rt, listener, Arc::new(checks), shutdown.clone());
    }
    tracing::info!(node = %id, %addr, admin = ?admin_addr, threads = rt.threads(), "node listening");
    on_ready(&Started {
        id,
        addr,
        admin: admin_addr,
    });
    crate::admin::notify_ready();
    let stopping = shutdown.clone();
    rt.spawn(async move {
        stopping.wait().await;
        crate::admin::notify_stopping();
    })
    .detach();
    smol::block_on(server.run(&rt, Arc::new(router), server_shutdown))?;
    if let Some(agent) = agent {
        agent.finish();
    }
    tracing::info!("node stopped");
    Ok(())
}
