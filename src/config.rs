//! Configuration: one pipeline, `defaults → TOML file → DSF__SECTION__KEY env → flags`.
//!
//! Each layer overrides the one before it. The `config` crate merges the file and the
//! environment; command-line flags are applied as overrides by the caller
//! ([`Loader::set`]). The merged tree is deserialized into [`Config`], whose structs
//! deny unknown keys so a typo is an error rather than a silently ignored setting.
//! `dsf check-config FILE` runs the same pipeline plus [`Config::validate`].
//!
//! Every default is a named constant or a `Default` impl below; `dsf.example.toml`
//! at the repository root lists every key with its default.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Everything that can go wrong while loading configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file or environment could not be read or merged, or a value has the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value parsed but is not acceptable.
    #[error("configuration: `{key}`: {problem}")]
    Invalid {
        /// Dotted key, e.g. `limits.max_frame`.
        key: &'static str,
        /// What is wrong and what is expected.
        problem: String,
    },
    /// A secret file named in the configuration could not be read.
    #[error("configuration: `{key}`: cannot read {path}: {source}")]
    SecretFile {
        /// Dotted key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The whole configuration of a node or balancer process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node: identity, listener, registration.
    pub node: NodeConfig,
    /// Event-loop threads and the blocking pool.
    pub runtime: RuntimeConfig,
    /// Bounds on every listener.
    pub limits: LimitsConfig,
    /// Logging.
    pub log: LogConfig,
    /// The persistent store (MySQL or embedded).
    pub store: StoreConfig,
    /// The cache layer (Redis or in-process).
    pub cache: CacheConfig,
    /// Sessions, passwords, login throttling.
    pub auth: AuthConfig,
    /// Cluster-wide shared secret.
    pub cluster: ClusterConfig,
    /// The balancer's listeners and algorithms.
    pub balancer: BalancerConfig,
    /// The admin HTTP listener.
    pub admin: AdminConfig,
}

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
    /// Balancer registration address; empty = standalone.
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
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            threads: 0,
            blocking_threads: DEFAULT_BLOCKING_THREADS,
            reuse_port: true,
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
    /// How long in-flight work may take after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
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
        }
    }
}

/// `[cache]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Redis URLs; empty = in-process cache.
    pub redis: Vec<String>,
    /// Treat `redis` as one Redis Cluster instead of ring-sharded instances.
    pub cluster: bool,
    /// Turn caching off.
    pub enabled: bool,
    /// TTL of a positive entry.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// TTL of a negative entry.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// Deadline of one cache operation.
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
    /// Entries in the in-process cache.
    pub local_capacity: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            redis: Vec::new(),
            cluster: false,
            enabled: true,
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            op_timeout: Duration::from_millis(250),
            local_capacity: 100_000,
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

/// `[balancer]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BalancerConfig {
    /// Registration listener (nodes).
    pub registration: String,
    /// Directory listener (clients asking which node).
    pub directory: String,
    /// Proxy listener (clients whose requests are forwarded).
    pub proxy: String,
    /// Lease lifetime without a heartbeat.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Heartbeat interval asked of nodes.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Default selection algorithm.
    pub algorithm: String,
    /// Ring points per unit of weight.
    pub vnodes: u32,
    /// Bounded-load factor `c`.
    pub load_factor: f64,
    /// Redis URL for shared membership; empty = in memory.
    pub redis: String,
    /// Pooled proxy connections per node.
    pub proxy_conns_per_node: usize,
    /// Per-service overrides.
    pub services: std::collections::BTreeMap<String, ServiceConfig>,
}

/// `[balancer.services.<name>]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Selection algorithm for this service; empty = the balancer default.
    pub algorithm: String,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        BalancerConfig {
            registration: "0.0.0.0:6200".into(),
            directory: "0.0.0.0:6300".into(),
            proxy: "0.0.0.0:6400".into(),
            lease_ttl: Duration::from_secs(3),
            heartbeat: Duration::from_secs(1),
            algorithm: "consistent_hash".into(),
            vnodes: crate::ring::DEFAULT_VNODES,
            load_factor: 1.25,
            redis: String::new(),
            proxy_conns_per_node: 4,
            services: Default::default(),
        }
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
}

/// URL schemes of a Redis server: TCP, TLS, or a unix socket.
pub const REDIS_SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];

/// Where `dsf up` serves its balancer's admin listener unless told otherwise.
pub const UP_ADMIN_LISTEN: &str = "127.0.0.1:9100";

/// Replaces `inline` with the content of `file` when `file` is set (the file wins).
fn read_secret(key: &'static str, file: &Path, inline: &mut String) -> Result<(), ConfigError> {
    if !file.as_os_str().is_empty() {
        let s = std::fs::read_to_string(file).map_err(|source| ConfigError::SecretFile {
            key,
            path: file.to_owned(),
            source,
        })?;
        *inline = s.trim_end_matches(['\n', '\r']).to_owned();
    }
    Ok(())
}

/// Builds a [`Config`] through the documented pipeline.
pub struct Loader {
    builder: config::ConfigBuilder<config::builder::DefaultState>,
}

impl Loader {
    /// Starts from the defaults and, if given, a TOML file; the environment is read in
    /// [`load`](Self::load).
    pub fn new(file: Option<&Path>) -> Self {
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            builder = builder.add_source(
                config::File::from(file.to_owned())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        Loader { builder }
    }

    /// Overrides one dotted key (command-line flags).
    pub fn set(mut self, key: &str, value: impl Into<config::Value>) -> Self {
        self.builder = self
            .builder
            .set_override(key, value)
            .expect("override keys are static and well-formed");
        self
    }

    /// Overrides `key` only when `value` is `Some`.
    pub fn set_opt<V: Into<config::Value>>(self, key: &str, value: Option<V>) -> Self {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }

    /// Merges file, `DSF__SECTION__KEY` environment and overrides, validates, then
    /// reads the secret files, so that no other part of the program reads them.
    pub fn load(self) -> Result<Config, ConfigError> {
        self.load_from_env(std::env::vars())
    }

    /// Like [`load`](Self::load) with an explicit environment (tests).
    pub fn load_from_env(
        self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut cfg = self.check_with_env(env)?;
        cfg.resolve_secrets()?;
        Ok(cfg)
    }

    /// Merges and validates without reading secret files (`dsf check-config`, which
    /// may run where the secrets are not readable, e.g. in a build sandbox).
    pub fn check(self) -> Result<Config, ConfigError> {
        self.check_with_env(std::env::vars())
    }

    /// Like [`check`](Self::check) with an explicit environment (tests).
    pub fn check_with_env(
        self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("DSF__"))
            .collect();
        let environment = config::Environment::with_prefix("DSF")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("node.ops")
            .with_list_parse_key("cache.redis")
            .source(Some(env));
        // Flags were set as overrides on the builder, and overrides always win over
        // sources, so adding the environment here keeps the documented precedence.
        let merged = self.builder.add_source(environment).build()?;
        let cfg: Config = merged.try_deserialize()?;
        cfg.validate()?;
        Ok(cfg)
    }
}

impl Config {
    /// Reads `cluster.secret_file` and `store.password_file` into the values they stand
    /// for: the one place where secret files are read.
    pub fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        read_secret(
            "cluster.secret_file",
            &self.cluster.secret_file,
            &mut self.cluster.secret,
        )?;
        read_secret(
            "store.password_file",
            &self.store.password_file,
            &mut self.store.password,
        )
    }

    /// Checks values that parse but make no sense, naming the key and what is expected.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                problem: problem.into(),
            }
        }
        let l = &self.limits;
        if !(16..=64 << 20).contains(&l.max_frame) {
            return Err(invalid("limits.max_frame", "expected 16 to 67108864 bytes"));
        }
        if l.max_connections == 0 {
            return Err(invalid("limits.max_connections", "expected at least 1"));
        }
        if l.max_inflight_per_connection == 0 || l.max_inflight == 0 {
            return Err(invalid(
                "limits.max_inflight_per_connection",
                "in-flight limits must be at least 1",
            ));
        }
        for (key, d) in [
            ("limits.idle_timeout", l.idle_timeout),
            ("limits.request_timeout", l.request_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "expected a positive duration such as \"5s\""));
            }
        }
        check_addr("node.listen", &self.node.listen)?;
        if !self.node.register.is_empty() && !self.node.register.contains(':') {
            return Err(invalid("node.register", "expected host:port of a balancer"));
        }
        if !(1..=1000).contains(&self.node.weight) {
            return Err(invalid("node.weight", "expected 1 to 1000"));
        }
        if self.runtime.blocking_threads == 0 {
            return Err(invalid("runtime.blocking_threads", "expected at least 1"));
        }
        if self.auth.concurrent_hashes == 0 {
            return Err(invalid("auth.concurrent_hashes", "expected at least 1"));
        }
        if !self.store.url.is_empty() && !self.store.url.starts_with("mysql://") {
            return Err(invalid(
                "store.url",
                "expected empty (embedded) or a mysql:// URL",
            ));
        }
        if self.store.pool_max == 0 || self.store.pool_min > self.store.pool_max {
            return Err(invalid(
                "store.pool_max",
                "expected pool_max >= 1 and pool_min <= pool_max",
            ));
        }
        if self.cache.cluster {
            return Err(invalid(
                "cache.cluster",
                "Redis Cluster is not supported yet; list the servers in cache.redis \
                 and they are sharded with the hash ring",
            ));
        }
        for url in &self.cache.redis {
            if !REDIS_SCHEMES.iter().any(|s| url.starts_with(s)) {
                return Err(invalid(
                    "cache.redis",
                    format!(
                        "`{url}` is not a Redis URL (redis://, rediss://, redis+unix:// or unix://)"
                    ),
                ));
            }
        }
        let a = &self.auth;
        if a.argon2_memory_kib < 8 * a.argon2_parallelism.max(1)
            || a.argon2_iterations == 0
            || a.argon2_parallelism == 0
        {
            return Err(invalid(
                "auth.argon2_memory_kib",
                "argon2 cost out of range (memory >= 8 KiB per lane, iterations and parallelism >= 1)",
            ));
        }
        let b = &self.balancer;
        for (key, addr) in [
            ("balancer.registration", &b.registration),
            ("balancer.directory", &b.directory),
            ("balancer.proxy", &b.proxy),
        ] {
            check_addr(key, addr)?;
        }
        if b.heartbeat.is_zero() || b.lease_ttl <= b.heartbeat {
            return Err(invalid(
                "balancer.lease_ttl",
                "expected lease_ttl greater than heartbeat (e.g. 3s and 1s)",
            ));
        }
        if !(1.0..=10.0).contains(&b.load_factor) {
            return Err(invalid("balancer.load_factor", "expected 1.0 to 10.0"));
        }
        if b.vnodes == 0 {
            return Err(invalid("balancer.vnodes", "expected at least 1"));
        }
        if !self.admin.listen.is_empty() {
            check_addr("admin.listen", &self.admin.listen)?;
        }
        // Secret files are read by the processes that use them, not here: `dsf
        // check-config` must work where they do not exist yet (a Nix build sandbox).
        Ok(())
    }
}

fn check_addr(key: &'static str, addr: &str) -> Result<(), ConfigError> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(ConfigError::Invalid {
            key,
            problem: format!("`{addr}` is not host:port"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn example_config_is_valid_and_equals_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dsf.example.toml");
        let cfg = Loader::new(Some(&path)).load_from_env([]).unwrap();
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn precedence_file_env_flags() {
        let f = file(
            "[limits]\nmax_frame = 1000\nmax_connections = 7\n[node]\nlisten = \"127.0.0.1:1\"\n",
        );
        let env = [
            ("DSF__LIMITS__MAX_FRAME".to_string(), "2000".to_string()),
            ("DSF__NODE__OPS".to_string(), "user.,blacklist.".to_string()),
        ];
        let cfg = Loader::new(Some(f.path()))
            .set("node.listen", "127.0.0.1:2")
            .load_from_env(env)
            .unwrap();
        assert_eq!(cfg.limits.max_frame, 2000, "env beats file");
        assert_eq!(cfg.limits.max_connections, 7, "file beats default");
        assert_eq!(cfg.node.listen, "127.0.0.1:2", "flag beats file");
        assert_eq!(cfg.node.ops, ["user.", "blacklist."]);
        let env = [("DSF__NODE__LISTEN".to_string(), "127.0.0.1:3".to_string())];
        let cfg = Loader::new(None)
            .set("node.listen", "127.0.0.1:4")
            .load_from_env(env)
            .unwrap();
        assert_eq!(cfg.node.listen, "127.0.0.1:4", "flag beats env");
    }

    #[test]
    fn unknown_key_is_named() {
        let f = file("[limits]\nmax_frames = 10\n");
        let err = Loader::new(Some(f.path()))
            .load_from_env([])
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_frames"), "{err}");
    }

    #[test]
    fn wrong_type_is_explained() {
        let f = file("[limits]\nidle_timeout = \"soon\"\n");
        let err = Loader::new(Some(f.path()))
            .load_from_env([])
            .unwrap_err()
            .to_string();
        assert!(err.contains("idle_timeout"), "{err}");
    }

    #[test]
    fn invalid_value_names_key() {
        let f = file("[balancer]\nlease_ttl = \"1s\"\nheartbeat = \"2s\"\n");
        let err = Loader::new(Some(f.path()))
            .load_from_env([])
            .unwrap_err()
            .to_string();
        assert!(err.contains("balancer.lease_ttl"), "{err}");
    }

    #[test]
    fn secret_from_file() {
        let secret = file("s3cret\n");
        let conf = file(&format!(
            "[cluster]\nsecret = \"inline\"\nsecret_file = {:?}\n",
            secret.path()
        ));
        let cfg = Loader::new(Some(conf.path())).load_from_env([]).unwrap();
        assert_eq!(cfg.cluster.secret(), Some("s3cret"));
        assert_eq!(ClusterConfig::default().secret(), None);
    }

    #[test]
    fn validation_does_not_read_secret_files() {
        let f = file("[cluster]\nsecret_file = \"/nonexistent/dsf-secret\"\n");
        assert!(Loader::new(Some(f.path())).check_with_env([]).is_ok());
        let err = Loader::new(Some(f.path()))
            .load_from_env([])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cluster.secret_file") && err.contains("/nonexistent/dsf-secret"),
            "the process reading it fails, naming key and file: {err}"
        );
    }
}
