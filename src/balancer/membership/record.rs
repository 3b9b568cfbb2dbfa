//! The record of one node's lease, as a balancer keeps it and shares it with others.

use serde::{Deserialize, Serialize};

/// What a balancer knows about one node; also the record shared through Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node id, unique in the cluster.
    pub node: String,
    /// Service name.
    pub service: String,
    /// Address clients and the proxy reach it at.
    pub addr: String,
    /// Selection weight.
    pub weight: u32,
    /// Operation prefixes served; empty = all.
    #[serde(default)]
    pub ops: Vec<String>,
    /// Operations the node declared safe to send twice (a proxy or client may repeat
    /// them on another node after a failure); none when the node declared none.
    #[serde(default)]
    pub idempotent: Vec<String>,
    /// Set by `lb.drain`.
    #[serde(default)]
    pub draining: bool,
    /// Open connections, as last reported.
    #[serde(default)]
    pub conns: u64,
    /// Requests in flight, as last reported.
    #[serde(default)]
    pub inflight: u64,
    /// Wall-clock time of the last registration or heartbeat (ms since the epoch), so
    /// that other balancers can judge the lease's age.
    #[serde(default)]
    pub heartbeat_unix_ms: u64,
}

#[cfg(test)]
impl NodeRecord {
    /// A node of service `dsf` at `addr`, weight 1, serving every operation, none of
    /// them declared idempotent, never heard from: the tests' starting point.
    pub(crate) fn for_test(node: &str, addr: &str) -> NodeRecord {
        NodeRecord {
            node: node.into(),
            service: "dsf".into(),
            addr: addr.into(),
            weight: 1,
            ops: Vec::new(),
            idempotent: Vec::new(),
            draining: false,
            conns: 0,
            inflight: 0,
            heartbeat_unix_ms: 0,
        }
    }
}
