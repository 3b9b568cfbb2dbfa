//! The balancer: node membership, selection algorithms, the directory and the proxy.

pub mod selection;
