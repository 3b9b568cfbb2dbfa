//! Client side of the protocol: a pipelined [`Connection`] to a node, a proxy or a
//! balancer port.

mod connection;

pub use connection::{CallOptions, ClientError, Connection};
