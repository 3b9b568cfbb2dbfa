//! `dsf up`: a whole local cluster in one process — a balancer and N nodes.
//!
//! Everything runs on the embedded defaults (no MySQL or Redis). The balancer and
//! every node run on their own threads exactly as `dsf balancer` and `dsf node` would,
//! and the nodes register over the real registration port with a cluster secret made
//! up for this run. Node `i` (from 1) is `node-i` on the port of `node.listen` plus
//! `i - 1` (or a free port when that port is 0); all nodes share `node.data_dir`, so
//! they see one embedded store. Shutdown drains the nodes first (each deregisters),
//! then stops the balancer.
//!
//! With `--tls`, a private CA is kept in `<data>/tls/` (made on the first run, reused
//! after, so a client keeps trusting it) and a certificate is issued for the balancer
//! and for each node at every start: every listener speaks TLS, and the nodes register
//! over mutual TLS with certificates naming their ids.

use anyhow::Context as _;
use dsf::balancer::Balancer;
use dsf::config::{Config, TlsConfig, UP_ADMIN_LISTEN};
use dsf::runtime::{shutdown, ShutdownTrigger};
use dsf::tls::issue;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The configuration of a local cluster: balancer listeners configured on every
/// interface bind `host` instead, and the balancer's admin listener is on
/// [`UP_ADMIN_LISTEN`] unless `admin_given`, or the configuration names one.
pub fn local(mut cfg: Config, host: IpAddr, admin_given: bool) -> Config {
    for addr in [
        &mut cfg.balancer.registration,
        &mut cfg.balancer.directory,
        &mut cfg.balancer.proxy,
    ] {
        if let Ok(a) = addr.parse::<SocketAddr>() {
            if a.ip().is_unspecified() {
                *addr = SocketAddr::new(host, a.port()).to_string();
            }
        }
    }
    if !admin_given && cfg.admin.listen.is_empty() {
        cfg.admin.listen = UP_ADMIN_LISTEN.to_owned();
    }
    cfg
}

/// How long `dsf up` waits for its nodes to register before giving up.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the cluster until `stop` fires, reporting each listener and then a line
/// containing `ready` through `say`. A failure to start fires `stop` itself.
pub fn run(
    mut cfg: Config,
    nodes: usize,
    tls_dir: Option<PathBuf>,
    stop: ShutdownTrigger,
    mut say: impl FnMut(String),
) -> anyhow::Result<()> {
    anyhow::ensure!(nodes >= 1, "--nodes must be at least 1");
    let shutdown = stop.subscribe();
    if cfg.cluster.secret().is_none() {
        cfg.cluster.secret = hex::encode(rand::random::<[u8; 32]>());
    }
    let pki = match &tls_dir {
        Some(dir) => {
            let pki = LocalPki::open(dir)?;
            cfg.tls = pki.tls("balancer", &cfg)?;
            Some(pki)
        }
        None => None,
    };
    let balancer = Balancer::bind(cfg.clone())?;
    let started = balancer.started();
    let membership = balancer.membership();
    say(format!(
        "balancer registration listening on {}",
        started.registration
    ));
    say(format!(
        "balancer directory listening on {}",
        started.directory
    ));
    say(format!("balancer proxy listening on {}", started.proxy));
    if let Some(admin) = started.admin {
        say(format!("admin listening on {admin}"));
    }
    let (stop_balancer, balancer_shutdown) = shutdown::channel();
    let balancer_thread = std::thread::Builder::new()
        .name("dsf-up-balancer".into())
        .spawn(move || balancer.run(balancer_shutdown))?;

    let register = reachable(started.registration);
    let listen: SocketAddr = cfg.node.listen.parse().with_context(|| {
        format!(
            "node.listen `{}` must be ip:port for dsf up",
            cfg.node.listen
        )
    })?;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut node_threads = Vec::new();
    for i in 1..=nodes {
        let mut node_cfg = cfg.clone();
        node_cfg.node.id = if cfg.node.id.is_empty() {
            format!("node-{i}")
        } else {
            format!("{}-{i}", cfg.node.id)
        };
        let port = if listen.port() == 0 {
            0
        } else {
            listen.port() + (i as u16 - 1)
        };
        node_cfg.node.listen = SocketAddr::new(listen.ip(), port).to_string();
        node_cfg.node.register = register.to_string();
        node_cfg.runtime.threads = 1;
        if let Some(pki) = &pki {
            node_cfg.tls = pki.tls(&node_cfg.node.id, &cfg)?;
        }
        // One admin listener per process: the balancer's.
        node_cfg.admin.listen = String::new();
        let tx = tx.clone();
        let shutdown = shutdown.clone();
        node_threads.push(
            std::thread::Builder::new()
                .name(format!("dsf-up-node-{i}"))
                .spawn(move || {
                    let failed = tx.clone();
                    let r = dsf::app::builder(node_cfg).run(shutdown, move |s| {
                        let _ = tx.send(Ok((s.id.clone(), s.addr)));
                    });
                    if let Err(e) = &r {
                        let _ = failed.send(Err(format!("{e:#}")));
                    }
                    r
                })?,
        );
    }
    drop(tx);

    let outcome = (|| -> anyhow::Result<()> {
        for _ in 0..nodes {
            match rx.recv_timeout(READY_TIMEOUT) {
                Ok(Ok((id, addr))) => say(format!("node {id} listening on {addr}")),
                Ok(Err(e)) => anyhow::bail!("a node failed to start: {e}"),
                Err(_) => anyhow::bail!("nodes did not start within {READY_TIMEOUT:?}"),
            }
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        while membership.snapshot().healthy() < nodes {
            anyhow::ensure!(
                Instant::now() < deadline && !shutdown.is_triggered(),
                "nodes did not register within {READY_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let tls_flag = match &pki {
            Some(p) => format!(" --tls-ca {}", p.ca_file().display()),
            None => String::new(),
        };
        say(format!(
            "ready: {nodes} nodes registered; try `dsf client --proxy {}{tls_flag} call sys.ping`",
            reachable(started.proxy)
        ));
        Ok(())
    })();
    if outcome.is_err() {
        // The nodes that did start share the process: bring them down too.
        stop.trigger();
    }
    for t in node_threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "node stopped with an error"),
            Err(_) => tracing::error!("a node thread panicked"),
        }
    }
    stop_balancer.trigger();
    let balanced = balancer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the balancer thread panicked"))?;
    outcome?;
    Ok(balanced?)
}

/// The local cluster's CA, and the certificates it issues at start.
struct LocalPki {
    /// Where ca.pem, ca.key and the issued certificates are.
    dir: PathBuf,
    /// The CA.
    ca: issue::Pem,
}

impl LocalPki {
    /// The CA in `dir`, made there if missing.
    fn open(dir: &Path) -> anyhow::Result<LocalPki> {
        if !dir.join("ca.pem").exists() {
            let ca = issue::make_ca("dsf up local CA", 3650)?;
            super::cert::write(dir, "ca", &ca)?;
        }
        Ok(LocalPki {
            dir: dir.to_owned(),
            ca: super::cert::read_ca(dir)?,
        })
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a certificate for `name`, valid for loopback and the configured hosts,
    /// and returns the `[tls]` section that uses it.
    fn tls(&self, name: &str, cfg: &Config) -> anyhow::Result<TlsConfig> {
        let mut sans = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        for addr in [&cfg.balancer.proxy, &cfg.node.listen, &cfg.node.advertise] {
            if let Some((host, _)) = addr.rsplit_once(':') {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let unspecified = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
                if !host.is_empty() && !unspecified && !sans.iter().any(|s| s == host) {
                    sans.push(host.to_owned());
                }
            }
        }
        let pem = issue::issue(&self.ca, name, &sans, 30)?;
        let (cert, key) = super::cert::write(&self.dir, name, &pem)?;
        Ok(TlsConfig {
            cert,
            key,
            ca: self.ca_file(),
            client_ca: self.ca_file(),
            client_auth: None,
        })
    }
}

/// An address to dial for one bound to `addr` (0.0.0.0 becomes 127.0.0.1).
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}
