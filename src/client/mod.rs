//! Client side of the protocol: a pipelined [`Connection`] to a node, a proxy or a
//! balancer port, and a [`DirectoryClient`] that follows a balancer's directory.

mod connection;
pub mod directory;

pub use connection::{CallOptions, ClientError, Connection};
pub use directory::DirectoryClient;
