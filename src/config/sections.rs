//! The sections of [`Config`](super::Config), each with its named defaults.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Default node protocol listener.
pub const DEFAULT_NODE_LISTEN: &str = "127.0.0.1:7001";

/// `[node]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Name in the cluster; empty = `<hostname>-<port>`.
    pub id: String,
    /// Protocol listener address.
    pub listen: String,
    /// Address others reach this node at; empty = derived from `listen`.
    pub advertise: String,
    /// Balancer registration address (several sharing membership: comma-separated,
    /// tried in turn); empty = standalone.
    pub register: String,
    /// Service name announced to the balancer.
    pub service: String,
    /// Operation prefixes served; empty = all.
    pub ops: Vec<String>,
    /// Selection weight.
    pub weight: u32,
    /// Folder for embedded stores.
    pub data_dir: PathBuf,
    /// Serve `sys.sleep` (drain and deadline tests); off in production.
    pub debug_ops: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: String::new(),
            listen: DEFAULT_NODE_LISTEN.into(),
            advertise: String::new(),
            register: String::new(),
            service: "dsf".into(),
            ops: Vec::new(),
            weight: 1,
            data_dir: PathBuf::from("./data"),
            debug_ops: false,
        }
    }
}

/// Default bound on concurrently running blocking jobs.
pub const DEFAULT_BLOCKING_THREADS: usize = 16;

/// `[runtime]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Event-loop threads; 0 = number of cores.
    pub threads: usize,
    /// Bound on concurrently running blocking jobs.
    pub blocking_threads: usize,
    /// One SO_REUSEPORT listener per loop (true) or one dispatching acceptor (false).
    pub reuse_port: bool,
    /// Unix socket an in-place upgrade (`--upgrade`) takes the listeners over from;
    /// empty = `$XDG_RUNTIME_DIR/dsf-<role>-<port>.sock`, else in `node.data_dir`.
    pub upgrade_socket: PathBuf,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            threads: 0,
            blocking_threads: DEFAULT_BLOCKING_THREADS,
            reuse_port: true,
            upgrade_socket: PathBuf::new(),
        }
    }
}

impl RuntimeConfig {
    /// The loop thread count with 0 resolved to the number of cores.
    pub fn loop_threads(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.threads
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest frame payload in bytes.
    pub max_frame: usize,
    /// Open connections per listener.
    pub max_connections: usize,
    /// Requests in flight per connection before reading pauses.
    pub max_inflight_per_connection: usize,
    /// Requests in flight per process before `overloaded`.
    pub max_inflight: usize,
    /// Close a connection that completes no frame for this long.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Deadline of one request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long a drain (SIGTERM, hand-over) may take; then connections are closed.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// At a drain, how long each connection still takes requests after its `goaway`
    /// notice (PROTOCOL §7), within `drain_timeout`.
    #[serde(with = "humantime_serde")]
    pub goaway_grace: Duration,
    /// Requests slower than this are logged at warn level.
    #[serde(with = "humantime_serde")]
    pub slow_request: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_frame: crate::protocol::DEFAULT_MAX_FRAME,
            max_connections: 10_000,
            max_inflight_per_connection: 128,
            max_inflight: 10_000,
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            goaway_grace: Duration::from_secs(1),
            slow_request: Duration::from_millis(500),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured on a terminal.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// File log rotation period.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    /// A new file every minute.
    Minutely,
    /// A new file every hour.
    Hourly,
    /// A new file every day.
    #[default]
    Daily,
    /// One file forever.
    Never,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `EnvFilter` directives; `RUST_LOG` wins when set.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
    /// Folder for the rotating file log; empty = terminal only.
    pub dir: PathBuf,
    /// Rotation period of the file log.
    pub rotation: Rotation,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Pretty,
            dir: PathBuf::new(),
            rotation: Rotation::Daily,
        }
    }
}

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Empty = embedded SQLite; or `mysql://user@host:port/db`.
    pub url: String,
    /// File holding the database password (preferred over `password`).
    pub password_file: PathBuf,
    /// The database password (for `DSF__STORE__PASSWORD`; prefer `password_file`).
    pub password: String,
    /// Connections the MySQL pool keeps open.
    pub pool_min: usize,
    /// Connections the MySQL pool may open.
    pub pool_max: usize,
    /// Longest wait for a pooled connection.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Idle connections above `pool_min` are closed after this.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections are recycled after this.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// Deadline of one store operation.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// How long a starting node waits for the database before it exits; zero = as
    /// long as it takes.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// PEM bundle that verifies the MySQL server; set = TLS required (a server that
    /// does not offer TLS is refused), empty = plain TCP.
    pub tls_ca: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: String::new(),
            password_file: PathBuf::new(),
            password: String::new(),
            pool_min: 1,
            pool_max: 16,
            acquire_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(30 * 60),
            query_timeout: Duration::from_secs(3),
            startup_timeout: Duration::ZERO,
            tls_ca: PathBuf::new(),
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Session token lifetime.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Failed logins per name within `login_window` before `rate_limited`.
    pub max_failed_logins: u32,
    /// Window of the failed-login counter.
    #[serde(with = "humantime_serde")]
    pub login_window: Duration,
    /// argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// argon2id iterations.
    pub argon2_iterations: u32,
    /// argon2id lanes.
    pub argon2_parallelism: u32,
    /// argon2 hashes running at once; each holds `argon2_memory_kib` of working
    /// memory, kept for reuse, so this times the memory cost bounds what hashing uses.
    pub concurrent_hashes: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_ttl: Duration::from_secs(3600),
            max_failed_logins: 5,
            login_window: Duration::from_secs(300),
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            concurrent_hashes: 2,
        }
    }
}

/// `[cluster]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Shared secret for `lb.register`.
    pub secret: String,
    /// File holding the shared secret (preferred over `secret`).
    pub secret_file: PathBuf,
}

impl ClusterConfig {
    /// The cluster secret; `None` when none is configured. A `secret_file` has been
    /// read into `secret` by the pipeline ([`Loader::load`]) by the time this is asked.
    pub fn secret(&self) -> Option<&str> {
        (!self.secret.is_empty()).then_some(self.secret.as_str())
    }
}

/// `[admin]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// HTTP listener; empty (the default) = off, so that a balancer and nodes started
    /// on one host never contend for one admin port. `dsf up` serves its balancer's
    /// on [`UP_ADMIN_LISTEN`].
    pub listen: String,
    /// Serve the admin listener over HTTPS with `tls.cert` (off by default: metrics
    /// scrapers and health probes usually stay on a private interface).
    pub tls: bool,
}

/// URL schemes of a Redis server: TCP, TLS, or a unix socket.
pub const REDIS_SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];

/// Where `dsf up` serves its balancer's admin listener unless told otherwise.
pub const UP_ADMIN_LISTEN: &str = "127.0.0.1:9100";

/// A listener that may require client certificates (`tls.client_auth`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Listener {
    /// The balancer's registration port (nodes).
    Registration,
    /// A node's protocol port.
    Node,
    /// The balancer's directory port.
    Directory,
    /// The balancer's proxy port.
    Proxy,
    /// The admin HTTP listener (with `admin.tls`).
    Admin,
}

impl Listener {
    /// The listener's name, as in configuration and logs.
    pub fn name(self) -> &'static str {
        match self {
            Listener::Registration => "registration",
            Listener::Node => "node",
            Listener::Directory => "directory",
            Listener::Proxy => "proxy",
            Listener::Admin => "admin",
        }
    }
}

/// `tls.client_auth` when `tls.client_ca` is set and the key is not: nodes prove who
/// they are to the balancer, while ordinary clients need no certificate.
pub const DEFAULT_CLIENT_AUTH: [Listener; 1] = [Listener::Registration];

/// `[tls]` (PROTOCOL §8): one section for the process's listeners and its outgoing
/// connections. Files are read when the process starts and again on `SIGHUP`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain this process presents, as a server and as a client;
    /// set (with `key`) = every protocol listener speaks TLS.
    pub cert: PathBuf,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM bundle that verifies the servers this process connects to; set = outgoing
    /// protocol connections (registration, proxy pool, directory client) use TLS.
    pub ca: PathBuf,
    /// PEM bundle that verifies client certificates.
    pub client_ca: PathBuf,
    /// Listeners that require a client certificate chaining to `client_ca`; absent =
    /// [`DEFAULT_CLIENT_AUTH`] when `client_ca` is set, none otherwise.
    pub client_auth: Option<Vec<Listener>>,
}

impl TlsConfig {
    /// Whether this process's listeners speak TLS.
    pub fn serves(&self) -> bool {
        !self.cert.as_os_str().is_empty()
    }

    /// Whether outgoing protocol connections use TLS.
    pub fn connects(&self) -> bool {
        !self.ca.as_os_str().is_empty()
    }

    /// The listeners that require a client certificate, defaults resolved.
    pub fn client_auth(&self) -> &[Listener] {
        match &self.client_auth {
            Some(l) => l,
            None if !self.client_ca.as_os_str().is_empty() => &DEFAULT_CLIENT_AUTH,
            None => &[],
        }
    }

    /// Whether `listener` requires a client certificate.
    pub fn requires_client_cert(&self, listener: Listener) -> bool {
        self.client_auth().contains(&listener)
    }
}
