//! Client side of the protocol: a pipelined [`Connection`] to a node, a proxy or a
//! balancer port, a [`Reconnecting`] client that moves on after `goaway`, and a
//! [`DirectoryClient`] that follows a balancer's directory.

mod connection;
pub mod directory;
mod reconnecting;

pub use connection::{CallOptions, ClientError, Connection};
pub use directory::DirectoryClient;
pub use reconnecting::Reconnecting;
