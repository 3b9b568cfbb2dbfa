//! The balancer: node membership, selection algorithms, the directory and the proxy.
//!
//! One role per module, in the order a request meets them:
//!
//! - [`registration`]: the port nodes hold their lease on (`lb.register`, heartbeats,
//!   drain, deregister), with the cluster secret checked in constant time;
//! - [`membership`]: leases, states, expiry and the change log; publishes an immutable
//!   [`snapshot::Snapshot`] through `ArcSwap`, rebuilt only when membership changes;
//! - [`shared`]: where membership is published beyond this process ([`shared::Discovery`]:
//!   in memory, or etcd or Redis so that several balancers agree);
//! - [`selection`]: one [`selection::Selector`] per strategy;
//! - [`directory`]: `lb.assign` / `lb.nodes` for clients that connect to nodes themselves;
//! - [`proxy`] and [`pool`]: forwarding requests over pooled, pipelined node connections,
//!   as bytes: [`scan`] reads only ids, `type` and `key`; a [`job`] carries one request;
//! - [`agent`]: the node's side of registration;
//! - [`up`]: `dsf up`, a balancer and N nodes in one process.

pub mod directory;
pub mod error;
mod live;
pub mod membership;
pub mod proxy;
pub mod registration;
pub mod selection;
pub mod snapshot;
pub mod status;

pub use error::BalancerError;
pub use membership::Membership;

use crate::config::{Config, Listener};
use crate::runtime::{self, Reload, Runtime, Server, ServerOptions, Shutdown};
use crate::tls::Tls;
use futures_lite::future;
use membership::etcd::EtcdShared;
use membership::redis::RedisShared;
use membership::{Discovery, InMemory};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Whether an operation may be sent twice without harm, so that a request lost with
/// a failed node can be repeated on another: reads and liveness checks.
pub fn retry_safe(op: &str) -> bool {
    op.starts_with("sys.")
        || matches!(
            op,
            "blacklist.query" | "blacklist.search" | "lb.assign" | "lb.nodes"
        )
}

/// Where membership is shared with other balancers.
#[derive(Clone)]
enum Shared {
    /// Through Redis keys and a channel (small setups).
    Redis(Arc<RedisShared>),
    /// Through etcd leases and a watch (PROTOCOL §10).
    Etcd(Arc<EtcdShared>),
}

/// Where a running balancer listens.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    /// Registration port (nodes).
    pub registration: SocketAddr,
    /// Directory port (clients asking which node).
    pub directory: SocketAddr,
    /// Proxy port (clients whose requests are forwarded).
    pub proxy: SocketAddr,
    /// Admin HTTP port (`/metrics`, `/healthz`, `/readyz`, `/status.json`), if enabled.
    pub admin: Option<SocketAddr>,
}

/// A bound balancer, not yet serving.
pub struct Balancer {
    /// Loop threads shared by the three listeners.
    rt: Runtime,
    /// The membership all three listeners read or write.
    membership: Arc<Membership>,
    /// etcd or Redis sharing, when configured.
    shared: Option<Shared>,
    /// The three listeners.
    registration: Server,
    directory: Server,
    proxy: Server,
    /// The admin HTTP listener, if enabled.
    admin: Option<std::net::TcpListener>,
    /// The upgrade socket: a predecessor to confirm to, a successor to hand over to.
    upgrade: runtime::handover::Upgrade,
    /// The cluster secret registrations must present.
    secret: Option<String>,
    /// TLS settings of the listeners and of the proxy's node connections.
    tls: Option<Arc<Tls>>,
    /// The configuration it was built from.
    cfg: Config,
}

impl Balancer {
    /// Binds the three listeners of `cfg.balancer`.
    pub fn bind(cfg: Config) -> Result<Balancer, BalancerError> {
        Balancer::bind_with(cfg, false)
    }

    /// Like [`bind`](Self::bind); with `take_over` (`--upgrade`), takes the listening
    /// sockets and the leases of the balancer serving `runtime.upgrade_socket`, which
    /// drains and exits once this one serves (PROTOCOL §9).
    pub fn bind_with(cfg: Config, take_over: bool) -> Result<Balancer, BalancerError> {
        let settings = membership::Settings::from_config(&cfg.balancer)?;
        let secret = cfg.cluster.secret().map(str::to_owned);
        if secret.is_none() {
            tracing::warn!(
                "no cluster secret configured: only nodes on this host may register \
                 (set cluster.secret_file to accept nodes from the network)"
            );
        }
        let b = &cfg.balancer;
        let (shared, discovery): (Option<Shared>, Arc<dyn Discovery>) = if !b.etcd.is_empty() {
            let tls = membership::etcd::tls_settings(b)?;
            let e = EtcdShared::new(&b.etcd, tls, &b.etcd_prefix, b.lease_ttl);
            (Some(Shared::Etcd(e.clone())), e)
        } else if !b.redis.is_empty() {
            let r = RedisShared::new(&b.redis, b.lease_ttl, &cfg.cache.tls_ca)?;
            (Some(Shared::Redis(r.clone())), r)
        } else {
            (None, Arc::new(InMemory))
        };
        let membership = Arc::new(Membership::new(settings, discovery));
        let rt = Runtime::new("dsf-lb", cfg.runtime.loop_threads())?;
        let tls = Tls::from_config(&cfg.tls)?;
        let upgrade_path = runtime::handover::socket_path(
            &cfg.runtime,
            "balancer",
            &cfg.balancer.registration,
            &cfg.node.data_dir,
        );
        let (upgrade, inherited, state) =
            runtime::handover::Upgrade::start(upgrade_path, take_over, "")?;
        let inherited = std::cell::RefCell::new(inherited);
        let take = |listener: &'static str, addr: &str| {
            inherited
                .borrow_mut()
                .take(listener)
                .map_err(|source| BalancerError::Bind {
                    listener,
                    addr: addr.to_owned(),
                    source,
                })
        };
        let bind = |listener: &'static str, addr: &str| {
            let kind = match listener {
                "registration" => Listener::Registration,
                "directory" => Listener::Directory,
                _ => Listener::Proxy,
            };
            let opts = ServerOptions {
                name: listener,
                limits: cfg.limits.clone(),
                reuse_port: cfg.runtime.reuse_port,
                tls: tls.as_ref().and_then(|t| t.acceptor(kind)),
            };
            let taken = take(listener, addr)?;
            Server::bind_or_inherit(addr, &rt, opts, taken).map_err(|source| BalancerError::Bind {
                listener,
                addr: addr.to_owned(),
                source,
            })
        };
        let registration = bind("registration", &cfg.balancer.registration)?;
        let directory = bind("directory", &cfg.balancer.directory)?;
        let proxy = bind("proxy", &cfg.balancer.proxy)?;
        let admin = match take("admin", &cfg.admin.listen)? {
            Some(mut sockets) => sockets.pop(),
            None => {
                crate::admin::bind(&cfg.admin.listen).map_err(|source| BalancerError::Bind {
                    listener: "admin",
                    addr: cfg.admin.listen.clone(),
                    source,
                })?
            }
        };
        if let Ok(records) = serde_json::from_value::<Vec<membership::NodeRecord>>(state) {
            tracing::info!(
                nodes = records.len(),
                "leases taken over from the running balancer"
            );
            membership.adopt(records);
        }
        Ok(Balancer {
            upgrade,
            admin,
            rt,
            membership,
            shared,
            registration,
            directory,
            proxy,
            secret,
            tls,
            cfg,
        })
    }

    /// The bound addresses.
    pub fn started(&self) -> Started {
        Started {
            registration: self.registration.local_addr(),
            directory: self.directory.local_addr(),
            proxy: self.proxy.local_addr(),
            admin: self.admin.as_ref().and_then(crate::admin::local_addr),
        }
    }

    /// The membership (status views, `dsf up` waiting for its nodes).
    pub fn membership(&self) -> Arc<Membership> {
        self.membership.clone()
    }

    /// Serves until `shutdown`, then drains all three listeners. A `SIGHUP` reads the
    /// certificates again.
    pub fn run(self, shutdown: Shutdown) -> Result<(), BalancerError> {
        let reload = Reload::fixed(self.cfg.clone());
        self.run_reloading(shutdown, reload)
    }

    /// Like [`run`](Self::run), taking new configurations from `reload` on `SIGHUP`
    /// (PROTOCOL §9): the selection settings, limits and certificates change live.
    pub fn run_reloading(self, shutdown: Shutdown, reload: Reload) -> Result<(), BalancerError> {
        let Balancer {
            upgrade,
            rt,
            membership,
            shared,
            registration,
            directory,
            proxy,
            admin,
            secret,
            tls,
            cfg,
        } = self;
        // A hand-over stops this process like a signal does.
        let (handover, shutdown) = runtime::shutdown::linked(&shutdown);
        let dup = |s: &Server| s.dup_listeners();
        let offer = runtime::handover::Offer {
            listeners: vec![
                ("registration", dup(&registration)?),
                ("directory", dup(&directory)?),
                ("proxy", dup(&proxy)?),
                (
                    "admin",
                    admin
                        .iter()
                        .map(std::net::TcpListener::try_clone)
                        .collect::<Result<_, _>>()?,
                ),
            ],
            state: {
                let m = membership.clone();
                Box::new(move || serde_json::to_value(m.handover_records()).unwrap_or_default())
            },
        };
        upgrade.serve(offer, move || handover.trigger(), shutdown.clone())?;
        // Draining: nodes leaving for a successor stay selectable for what is answered here.
        let draining = (shutdown.clone(), membership.clone());
        rt.spawn(async move {
            draining.0.wait().await;
            draining.1.freeze();
        })
        .detach();
        // SIGHUP: the whole configuration again, certificates included (PROTOCOL §9).
        live::attach(
            &reload,
            &membership,
            [&registration, &directory, &proxy],
            tls.clone(),
        );
        reload.set_ready();
        rt.spawn(reload.watch(shutdown.clone())).detach();
        if let Some(listener) = admin {
            let mut app = status::admin_app(
                &membership,
                format!("balancer {}", registration.local_addr()),
                std::time::Instant::now(),
            );
            if let Some(Shared::Etcd(e)) = &shared {
                app.checks.push(e.check());
            }
            crate::admin::spawn(
                &rt,
                listener,
                Arc::new(app),
                tls.as_ref()
                    .filter(|_| cfg.admin.tls)
                    .and_then(|t| t.acceptor(Listener::Admin)),
                shutdown.clone(),
            );
        }
        let b = &cfg.balancer;
        let sweeper = rt.spawn(sweep(
            membership.clone(),
            (b.heartbeat / 4)
                .min(b.lease_ttl / 10)
                .max(Duration::from_millis(10)),
            shutdown.clone(),
        ));
        let prober = rt.spawn(proxy::probe::run(
            membership.clone(),
            proxy::probe::ProbeOptions {
                connect_timeout: b.connect_timeout.min(cfg.limits.request_timeout),
                tls: tls.as_ref().and_then(|t| t.connector()),
            },
            shutdown.clone(),
        ));
        let watcher = shared.map(|s| match s {
            Shared::Redis(r) => rt.spawn(r.run(membership.clone(), b.heartbeat, shutdown.clone())),
            Shared::Etcd(e) => rt.spawn(e.run(
                membership.clone(),
                balancer_id(registration.local_addr()),
                b.heartbeat,
                shutdown.clone(),
            )),
        });
        // Under systemd (`Type=notify`), STOPPING=1 as soon as the drain begins.
        let stopping = shutdown.clone();
        rt.spawn(async move {
            stopping.wait().await;
            crate::admin::notify_stopping();
        })
        .detach();
        let mut reg_service =
            registration::Registration::new(membership.clone(), secret, registration.registry());
        if cfg.tls.requires_client_cert(Listener::Registration) {
            reg_service = reg_service.require_certificate();
        }
        let reg_service = Arc::new(reg_service);
        let dir_service = Arc::new(directory::Directory::new(membership.clone()));
        let proxy_service = Arc::new(proxy::Proxy::new(
            membership.clone(),
            proxy::ProxyOptions {
                conns_per_node: b.proxy_conns_per_node,
                request_timeout: cfg.limits.request_timeout,
                connect_timeout: b.connect_timeout.min(cfg.limits.request_timeout),
                max_frame: cfg.limits.max_frame,
                tls: tls.as_ref().and_then(|t| t.connector()),
            },
        ));
        tracing::info!(
            registration = %registration.local_addr(),
            directory = %directory.local_addr(),
            proxy = %proxy.local_addr(),
            algorithm = %b.algorithm,
            lease_ttl_ms = b.lease_ttl.as_millis() as u64,
            shared = if !b.etcd.is_empty() {
                "etcd"
            } else if !b.redis.is_empty() {
                "redis"
            } else {
                "none"
            },
            "balancer listening"
        );
        let served = smol::block_on(async {
            let (r, (d, p)) = future::zip(
                registration.run(&rt, reg_service, shutdown.clone()),
                future::zip(
                    directory.run(&rt, dir_service, shutdown.clone()),
                    proxy.run(&rt, proxy_service, shutdown.clone()),
                ),
            )
            .await;
            sweeper.await;
            prober.await;
            if let Some(w) = watcher {
                w.await;
            }
            r.and(d).and(p)
        });
        tracing::info!("balancer stopped");
        Ok(served?)
    }
}

/// Binds, reports the addresses to `on_ready`, and serves until `shutdown`.
/// With `take_over` (`--upgrade`), the listeners come from the running balancer.
pub fn run(
    cfg: Config,
    take_over: bool,
    shutdown: Shutdown,
    on_ready: impl FnOnce(&Started),
) -> Result<(), BalancerError> {
    let reload = Reload::fixed(cfg.clone());
    run_reloading(cfg, take_over, shutdown, reload, on_ready)
}

/// Like [`run`], taking new configurations from `reload` on `SIGHUP`.
pub fn run_reloading(
    cfg: Config,
    take_over: bool,
    shutdown: Shutdown,
    reload: Reload,
    on_ready: impl FnOnce(&Started),
) -> Result<(), BalancerError> {
    runtime::executors::set_blocking_limit(cfg.runtime.blocking_threads);
    let balancer = Balancer::bind_with(cfg, take_over)?;
    on_ready(&balancer.started());
    // Under systemd (`Type=notify`) the unit is started once the listeners are bound.
    crate::admin::notify_ready();
    balancer.run_reloading(shutdown, reload)
}

/// This balancer's name in shared records: host, registration address and process,
/// so that a restarted balancer never takes its predecessor's records for its own.
fn balancer_id(registration: SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}/{registration}/{}", std::process::id())
}

async fn sweep(membership: Arc<Membership>, every: Duration, shutdown: Shutdown) {
    runtime::shutdown::every(every, &shutdown, || membership.sweep()).await;
}
