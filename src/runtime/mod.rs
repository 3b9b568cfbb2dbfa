//! The server runtime: loop threads, listeners, the connection registry, limits and
//! shutdown. Protocol-level but application-agnostic: whatever answers requests
//! implements [`Service`] (the node's router, the balancer's proxy and directory).

pub mod connection;
pub mod executors;
pub mod mailbox;
pub mod registry;
pub mod server;
pub mod shutdown;

pub use executors::{blocking, spawn_local, Runtime};
pub use registry::{ConnSnapshot, Outbound, Registry};
pub use server::{Server, ServerOptions};
pub use shutdown::{Shutdown, ShutdownTrigger};

use crate::protocol::{Request, Response};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

/// A boxed, sendable future (handlers are stored as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who sent a request: enough to log, rate-limit or push back to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnMeta {
    /// Registry id of the connection.
    pub id: u64,
    /// The peer's address.
    pub peer: SocketAddr,
}

/// Answers requests arriving on a listener.
pub trait Service: Send + Sync + 'static {
    /// Handles one request. The returned future may complete at once; the server
    /// polls it inline first and only spawns it when it has to wait.
    fn call(&self, conn: ConnMeta, req: Request) -> BoxFuture<'static, Response>;

    /// Called once when a connection closes (e.g. the balancer drops a node's lease).
    fn on_close(&self, _conn: ConnMeta) {}
}
