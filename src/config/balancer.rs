//! `[balancer]`: listeners, lease timing, selection, and where membership is shared.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Default key prefix of the records the balancers keep in etcd (`balancer.etcd_prefix`).
pub const DEFAULT_ETCD_PREFIX: &str = "/dsf/";

/// Default bound on the proxy opening a node connection: a reachable node on a LAN
/// answers a connect in well under a millisecond, so a second is already generous.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

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
    /// Redis URL for shared membership; empty = in memory (or etcd).
    pub redis: String,
    /// etcd v3 endpoints (`http://host:2379` or `https://host:2379`) for shared
    /// membership; non-empty selects etcd. Several endpoints of one cluster: a failed
    /// member is skipped.
    pub etcd: Vec<String>,
    /// Prefix of every key the balancers keep in etcd.
    pub etcd_prefix: String,
    /// PEM bundle verifying the certificates of `https://` etcd endpoints; empty = the
    /// system's roots.
    pub etcd_tls_ca: PathBuf,
    /// Client certificate (PEM) presented to etcd run with `--client-cert-auth`;
    /// set together with `etcd_tls_key`.
    pub etcd_tls_cert: PathBuf,
    /// Private key (PEM) of `etcd_tls_cert`.
    pub etcd_tls_key: PathBuf,
    /// Pooled proxy connections per node.
    pub proxy_conns_per_node: usize,
    /// Bound on the proxy opening a node connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Passive health checking: ejecting nodes the proxy cannot reach.
    pub outlier: super::OutlierConfig,
    /// Per-service overrides.
    pub services: std::collections::BTreeMap<String, ServiceConfig>,
}

/// `[balancer.services.<name>]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Selection algorithm for this service; empty = the balancer default.
    pub algorithm: String,
    /// Outlier ejection keys that differ from `[balancer.outlier]`.
    pub outlier: super::ServiceOutlierConfig,
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
            etcd: Vec::new(),
            etcd_prefix: DEFAULT_ETCD_PREFIX.into(),
            etcd_tls_ca: PathBuf::new(),
            etcd_tls_cert: PathBuf::new(),
            etcd_tls_key: PathBuf::new(),
            proxy_conns_per_node: 4,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            outlier: Default::default(),
            services: Default::default(),
        }
    }
}
