//! Checks of values that parse but make no sense, each naming its key.

use super::{Config, ConfigError, REDIS_SCHEMES};
use std::net::SocketAddr;

impl Config {
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
        if !self.node.register.is_empty() && self.node.register.split(',').any(|a| !a.contains(':'))
        {
            return Err(invalid(
                "node.register",
                "expected host:port of a balancer, or several separated by commas",
            ));
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
        if self.cache.cluster && self.cache.redis.is_empty() {
            return Err(invalid(
                "cache.cluster",
                "a Redis Cluster needs its seed nodes in cache.redis",
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
        if !b.etcd.is_empty() && !b.redis.is_empty() {
            return Err(invalid(
                "balancer.etcd",
                "balancer.etcd and balancer.redis both select shared membership: set one of them",
            ));
        }
        for url in &b.etcd {
            let host = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .unwrap_or_default();
            if host.is_empty() || check_addr("balancer.etcd", host.trim_end_matches('/')).is_err() {
                return Err(invalid(
                    "balancer.etcd",
                    format!(
                        "`{url}` is not an etcd endpoint (http://host:port or https://host:port)"
                    ),
                ));
            }
        }
        let (cert, key) = (&b.etcd_tls_cert, &b.etcd_tls_key);
        if cert.as_os_str().is_empty() != key.as_os_str().is_empty() {
            return Err(invalid(
                "balancer.etcd_tls_cert",
                "balancer.etcd_tls_cert and balancer.etcd_tls_key go together: set both (a client certificate for etcd) or neither",
            ));
        }
        let etcd_tls_set = [&b.etcd_tls_ca, cert, key]
            .iter()
            .any(|p| !p.as_os_str().is_empty());
        if etcd_tls_set && !b.etcd.iter().any(|u| u.starts_with("https://")) {
            return Err(invalid(
                "balancer.etcd_tls_ca",
                "balancer.etcd_tls_ca, etcd_tls_cert and etcd_tls_key apply to https:// endpoints, and balancer.etcd has none",
            ));
        }
        if !b.etcd.is_empty() && b.etcd_prefix.is_empty() {
            return Err(invalid(
                "balancer.etcd_prefix",
                "expected a key prefix such as \"/dsf/\"",
            ));
        }
        if b.vnodes == 0 {
            return Err(invalid("balancer.vnodes", "expected at least 1"));
        }
        if b.connect_timeout.is_zero() {
            return Err(invalid(
                "balancer.connect_timeout",
                "expected a positive duration such as \"1s\"",
            ));
        }
        if let Some((key, problem)) = b.outlier.problem() {
            return Err(invalid("balancer.outlier", format!("{key}: {problem}")));
        }
        for (name, svc) in &b.services {
            if let Some((key, problem)) = b.outlier.with(&svc.outlier).problem() {
                return Err(invalid(
                    "balancer.services",
                    format!("{name}.outlier.{key}: {problem}"),
                ));
            }
        }
        if !self.admin.listen.is_empty() {
            check_addr("admin.listen", &self.admin.listen)?;
        }
        self.validate_tls()?;
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

impl Config {
    /// The `[tls]` keys that depend on each other. The files themselves are read (and
    /// their errors named) when the process builds its TLS settings, like secrets.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let t = &self.tls;
        let set = |p: &std::path::Path| !p.as_os_str().is_empty();
        if set(&t.cert) != set(&t.key) {
            return Err(ConfigError::Invalid {
                key: if set(&t.cert) { "tls.key" } else { "tls.cert" },
                problem: "tls.cert and tls.key go together: set both or neither".into(),
            });
        }
        if !t.client_auth().is_empty() && !set(&t.client_ca) {
            return Err(ConfigError::Invalid {
                key: "tls.client_auth",
                problem: "client certificates are required but tls.client_ca, which \
                          verifies them, is not set"
                    .into(),
            });
        }
        if set(&t.client_ca) && !set(&t.cert) {
            return Err(ConfigError::Invalid {
                key: "tls.client_ca",
                problem: "verifying client certificates needs TLS listeners: set tls.cert \
                          and tls.key"
                    .into(),
            });
        }
        if self.admin.tls && !set(&t.cert) {
            return Err(ConfigError::Invalid {
                key: "admin.tls",
                problem: "HTTPS needs a certificate: set tls.cert and tls.key".into(),
            });
        }
        Ok(())
    }
}
