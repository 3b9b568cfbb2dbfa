//! The server runtime: loop threads, listeners, the connection registry, limits and
//! shutdown. Protocol-level but application-agnostic: whatever answers requests
//! implements [`Service`] (the node's router, the balancer's proxy and directory).

pub mod clock;
pub mod connection;
pub mod deadline;
pub mod executors;
pub mod handover;
pub mod listeners;
pub mod mailbox;
pub mod registry;
pub mod reload;
pub mod server;
pub mod shutdown;

pub use executors::{blocking, on_loop, spawn_local, Runtime};
pub use listeners::Inherited;
pub use registry::{ConnSnapshot, Outbound, Registry};
pub use reload::Reload;
pub use server::{LiveLimits, Server, ServerOptions};
pub use shutdown::{Shutdown, ShutdownTrigger};

use crate::protocol::{Request, Response};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

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

    /// Offered each request payload before it is decoded, for services that relay
    /// bytes and gain nothing from a [`Request`] (the balancer's proxy).
    ///
    /// Returning `true` takes the request: the service then pushes exactly one
    /// [`Outbound::Response`] holding the answer frame to `mailbox` (which refuses it
    /// if the client has left). Returning `false`, the default, lets the server decode
    /// the payload and use [`call`](Self::call), so a service can take the shapes it
    /// handles fast and leave everything else (malformed payloads included) to the
    /// common path. Not offered while the server is at its in-flight limit.
    fn call_frame(
        &self,
        _conn: ConnMeta,
        _payload: &[u8],
        _mailbox: &Arc<mailbox::Mailbox>,
    ) -> bool {
        false
    }

    /// Called once when a connection closes (e.g. the balancer drops a node's lease).
    fn on_close(&self, _conn: ConnMeta) {}
}
