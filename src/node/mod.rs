//! The node: a library that any service is built on.
//!
//! [`Node::builder`] takes a [`Config`] and the application's parts — its service
//! name, its operation prefixes, its own tables and its handlers — and supplies the
//! rest: event loops and limits, the store and the cache, the cluster-wide session
//! check (a token from `user.login` on any node is valid here), `sys.*`, admin
//! (metrics, health, readiness), registration with a balancer and the drain at
//! shutdown. The DSF business ([`crate::app`]) is one application built this way;
//! `examples/kv.rs` is another.
//!
//! ```no_run
//! use dsf::framework::Access;
//! use dsf::node::Node;
//! use serde_json::{json, Value};
//!
//! let cfg = dsf::config::Config::default();
//! let (_stop, shutdown) = dsf::runtime::shutdown::channel();
//! Node::builder(cfg)
//!     .service("greet", &["greet."])
//!     .routes(|_node, routes| {
//!         routes
//!             .route("greet.hello", Access::Public, |_ctx, body: Value| async move {
//!                 Ok(json!({ "hello": body.get("name") }))
//!             })
//!             .idempotent(&["greet.hello"]);
//!         Ok(())
//!     })
//!     .run(shutdown, |started| println!("listening on {}", started.addr))
//!     .unwrap();
//! ```

pub mod agent;
pub mod context;
pub mod error;
pub mod health;
mod live;
pub mod routes;
pub mod sys;

pub use context::NodeContext;
pub use error::NodeError;
pub use routes::Routes;

use crate::config::Config;
use crate::config::Listener;
use crate::framework::middleware::{AccessLog, Auth};
use crate::framework::Router;
use crate::runtime::{self, Reload, Runtime, Server, ServerOptions, Shutdown};
use crate::store::Tables;
use crate::tls::Tls;
use futures_lite::future;
use std::net::SocketAddr;
use std::sync::Arc;

/// A node's name when `node.id` is empty: `<hostname>-<port>`.
pub fn default_id(addr: SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "node".into());
    format!("{host}-{}", addr.port())
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

/// A node opened but not yet serving: see [`NodeBuilder::open`].
pub struct Opened {
    /// What the services share.
    pub node: Arc<NodeContext>,
    /// Every operation, with the auth and access-log middleware.
    pub router: Router,
    /// The operation prefixes announced to the balancer.
    pub announced: Vec<String>,
    /// The operations declared safe to send twice.
    pub idempotent: Vec<String>,
}

/// Installs an application's operations once the store and cache are open.
type Install = Box<dyn FnOnce(&Arc<NodeContext>, &mut Routes<'_>) -> Result<(), String> + Send>;

/// Entry point of the node library: see the [module docs](self).
pub struct Node;

impl Node {
    /// A node that will run with `cfg` (see [`crate::config`] for how one is loaded).
    pub fn builder(cfg: Config) -> NodeBuilder {
        NodeBuilder {
            cfg,
            prefixes: Vec::new(),
            tables: Vec::new(),
            installs: Vec::new(),
            reload: None,
            upgrade: false,
        }
    }
}

/// Assembles a node: see [`Node::builder`].
pub struct NodeBuilder {
    /// The configuration; `node.service` is replaced by [`service`](Self::service).
    cfg: Config,
    /// Operation prefixes announced to the balancer, unless `node.ops` narrows them.
    prefixes: Vec<String>,
    /// The applications' own tables, migrated before they install their operations.
    tables: Vec<Tables>,
    /// The applications' operations.
    installs: Vec<Install>,
    /// Where new configurations come from on `SIGHUP`; `None` = certificates only.
    reload: Option<Reload>,
    /// Take the listeners over from the running node (`--upgrade`).
    upgrade: bool,
}

impl NodeBuilder {
    /// Names the service (the group of nodes a balancer routes `prefixes` to) and
    /// the operation prefixes it serves, e.g. `("kv", &["kv."])`.
    pub fn service(mut self, name: &str, prefixes: &[&str]) -> Self {
        name.clone_into(&mut self.cfg.node.service);
        self.prefixes
            .extend(prefixes.iter().map(|p| (*p).to_owned()));
        self
    }

    /// Declares the application's own tables: versioned migrations per backend,
    /// applied once across all nodes sharing the database.
    pub fn tables(mut self, tables: Tables) -> Self {
        self.tables.push(tables);
        self
    }

    /// Adds the application's operations. `install` runs once the store and the
    /// cache are open; an `Err` stops the node with that message.
    pub fn routes(
        mut self,
        install: impl FnOnce(&Arc<NodeContext>, &mut Routes<'_>) -> Result<(), String> + Send + 'static,
    ) -> Self {
        self.installs.push(Box::new(install));
        self
    }

    /// Takes new configurations from `reload` on `SIGHUP` (PROTOCOL §9): limits,
    /// `node.weight`, cache TTLs, store pool sizes and certificates change live.
    /// Without it a `SIGHUP` only reads the certificates again.
    pub fn reload(mut self, reload: Reload) -> Self {
        self.reload = Some(reload);
        self
    }

    /// Starts as an in-place upgrade (PROTOCOL §9): takes the listening sockets of
    /// the node serving `runtime.upgrade_socket`, which drains and exits once this
    /// one serves.
    pub fn upgrade(mut self, take_over: bool) -> Self {
        self.upgrade = take_over;
        self
    }

    /// The configuration the node will run with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Opens the store, the cache and the applications' tables, and builds the
    /// router with every operation installed, without binding anything: what
    /// [`run`](Self::run) serves, for embedding the node's logic in a process of
    /// one's own (tests, benchmarks). `id` is the node id `sys.ping` answers.
    pub async fn open(self, id: Arc<str>) -> Result<Opened, NodeError> {
        let cfg = self.cfg;
        let node = NodeContext::open(cfg.clone(), id.clone()).await?;
        for t in &self.tables {
            node.store.migrate_tables(t).await?;
        }
        let node = Arc::new(node);
        let mut router = Router::new(cfg.limits.request_timeout);
        router.layer(AccessLog::new(cfg.limits.slow_request));
        router.layer(Auth::new(Arc::new(node.verifier())));
        let mut idempotent = Vec::new();
        sys::register(&mut router, id, cfg.node.debug_ops);
        idempotent.extend(sys::IDEMPOTENT.iter().map(|op| (*op).to_owned()));
        for install in self.installs {
            let mut routes = Routes::new(&mut router, &cfg.node.ops, &mut idempotent);
            install(&node, &mut routes).map_err(|problem| NodeError::Setup {
                service: cfg.node.service.clone(),
                problem,
            })?;
        }
        let announced = if cfg.node.ops.is_empty() {
            self.prefixes
        } else {
            cfg.node.ops.clone()
        };
        Ok(Opened {
            node,
            router,
            announced,
            idempotent,
        })
    }

    /// Binds every listener, opens the store (waiting for it as `store.startup_timeout`
    /// allows, or until `shutdown`), installs the operations, registers with the
    /// balancer when `node.register` is set, and serves until `shutdown`; then drains.
    /// `on_ready` is called once it accepts work.
    pub fn run(self, shutdown: Shutdown, on_ready: impl FnOnce(&Started)) -> Result<(), NodeError> {
        let cfg = self.cfg.clone();
        let reload = self
            .reload
            .clone()
            .unwrap_or_else(|| Reload::fixed(cfg.clone()));
        runtime::executors::set_blocking_limit(cfg.runtime.blocking_threads);
        crate::metrics::install();
        let rt =
            Runtime::new("dsf-loop", cfg.runtime.loop_threads()).map_err(NodeError::Runtime)?;
        let tls = Tls::from_config(&cfg.tls)?;
        let opts = ServerOptions {
            name: "node",
            limits: cfg.limits.clone(),
            reuse_port: cfg.runtime.reuse_port,
            tls: tls.as_ref().and_then(|t| t.acceptor(Listener::Node)),
        };
        let bind_err = |listener, addr: &str| {
            let addr = addr.to_owned();
            move |source| NodeError::Bind {
                listener,
                addr,
                source,
            }
        };
        let upgrade_path = runtime::handover::socket_path(
            &cfg.runtime,
            "node",
            &cfg.node.listen,
            &cfg.node.data_dir,
        );
        let (upgrade, mut inherited, _) =
            runtime::handover::Upgrade::start(upgrade_path, self.upgrade, "node")
                .map_err(NodeError::Upgrade)?;
        let taken = inherited
            .take("node")
            .map_err(bind_err("node", &cfg.node.listen))?;
        let server = Server::bind_or_inherit(&cfg.node.listen, &rt, opts, taken)
            .map_err(bind_err("node", &cfg.node.listen))?;
        let admin = match inherited
            .take("admin")
            .map_err(bind_err("admin", &cfg.admin.listen))?
        {
            Some(mut sockets) => sockets.pop(),
            None => crate::admin::bind(&cfg.admin.listen)
                .map_err(bind_err("admin", &cfg.admin.listen))?,
        };
        if !inherited.is_empty() {
            tracing::warn!(listeners = ?inherited.names(), "passed listeners a node does not use; ignored");
        }
        let addr = server.local_addr();
        let admin_addr = admin.as_ref().and_then(crate::admin::local_addr);
        let id: Arc<str> = if cfg.node.id.is_empty() {
            Arc::from(default_id(addr))
        } else {
            Arc::from(cfg.node.id.as_str())
        };
        // Waiting for the database ends with the first stop signal.
        let opened = smol::block_on(future::or(self.open(id.clone()), async {
            shutdown.wait().await;
            Err(NodeError::StoppedBeforeReady)
        }))?;
        let Opened {
            node,
            router,
            announced,
            idempotent,
        } = opened;
        // Ready to serve: a predecessor may stop accepting now (the kernel queues
        // connections on the shared sockets until this process's loops accept them).
        let (handover, shutdown) = runtime::shutdown::linked(&shutdown);
        let mut registration = agent::Registration::new(&cfg, &id, addr, announced, idempotent);
        let offer = runtime::handover::Offer {
            listeners: vec![
                ("node", server.dup_listeners().map_err(NodeError::Upgrade)?),
                (
                    "admin",
                    admin
                        .iter()
                        .map(std::net::TcpListener::try_clone)
                        .collect::<Result<_, _>>()
                        .map_err(NodeError::Upgrade)?,
                ),
            ],
            state: Box::new(|| serde_json::Value::Null),
        };
        let handed_over = registration.handed_over.clone();
        upgrade
            .serve(
                offer,
                move || {
                    handed_over.store(true, std::sync::atomic::Ordering::SeqCst);
                    handover.trigger();
                },
                shutdown.clone(),
            )
            .map_err(NodeError::Upgrade)?;
        // Every listener is bound: only now may the balancer send work.
        registration.tls = tls.as_ref().and_then(|t| t.connector());
        live::attach(&reload, &node, &server, tls.clone(), &registration);
        reload.set_ready();
        rt.spawn(reload.watch(shutdown.clone())).detach();
        let (server_shutdown, agent) =
            agent::attach(registration, server.registry(), &rt, shutdown.clone());
        if let Some(listener) = admin {
            let registered = agent.as_ref().map(agent::Agent::registered);
            let checks = health::admin_app(&node, server.registry(), registered);
            let admin_tls = tls
                .as_ref()
                .filter(|_| cfg.admin.tls)
                .and_then(|t| t.acceptor(Listener::Admin));
            crate::admin::spawn(&rt, listener, Arc::new(checks), admin_tls, shutdown.clone());
        }
        tracing::info!(node = %id, %addr, admin = ?admin_addr, service = %cfg.node.service, threads = rt.threads(), "node listening");
        on_ready(&Started {
            id: id.to_string(),
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
        smol::block_on(server.run(&rt, Arc::new(router), server_shutdown))
            .map_err(NodeError::Runtime)?;
        if let Some(agent) = agent {
            agent.finish();
        }
        tracing::info!("node stopped");
        Ok(())
    }
}
