//! `[cache]`: Redis (one server, a ring of servers, or a Redis Cluster) or the
//! in-process cache, with its deadlines and TTLs (docs/stores.md).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `[cache]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Redis URLs; empty = in-process cache.
    pub redis: Vec<String>,
    /// Treat `redis` as the seed nodes of one Redis Cluster instead of ring-sharded
    /// instances.
    pub cluster: bool,
    /// Replicas of a slot's master that must confirm a fence before the write it
    /// guards starts (Redis Cluster only; `WAIT`). 0 gives up the guarantee across a
    /// failover.
    pub wait_replicas: u32,
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
    /// PEM bundle that verifies `rediss://` servers; empty = the system roots.
    pub tls_ca: PathBuf,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            redis: Vec::new(),
            cluster: false,
            wait_replicas: 1,
            enabled: true,
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            op_timeout: Duration::from_millis(250),
            local_capacity: 100_000,
            tls_ca: PathBuf::new(),
        }
    }
}
