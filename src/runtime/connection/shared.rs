//! What the connections of one server share: the service, the registry, the limits
//! and the metric handles.

use crate::runtime::registry::Registry;
use crate::runtime::server::LiveLimits;
use crate::runtime::Service;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// State shared by all connections of one server.
pub struct ConnShared {
    /// What answers requests.
    pub service: Arc<dyn Service>,
    /// Open connections.
    pub registry: Arc<Registry>,
    /// Bounds; a reload replaces them (connections read them as they go).
    pub limits: LiveLimits,
    /// Listener name for logs.
    pub name: &'static str,
    /// Requests in flight across the server, against `limits.max_inflight`.
    pub inflight_total: AtomicUsize,
    /// Metric handles, resolved once per server.
    pub metrics: ServerMetrics,
}

/// Metric handles of one server (labelled with its listener name).
#[derive(Clone)]
pub struct ServerMetrics {
    /// Open connections.
    pub connections: metrics::Gauge,
    /// Accepted connections.
    pub accepted: metrics::Counter,
    /// Connections refused at the limit.
    pub refused: metrics::Counter,
    /// Requests in flight.
    pub inflight: metrics::Gauge,
    /// Bytes read.
    pub bytes_in: metrics::Counter,
    /// Bytes written.
    pub bytes_out: metrics::Counter,
    /// Requests refused at the process-wide in-flight limit.
    pub inflight_refused: metrics::Counter,
    /// TLS handshakes that failed (plaintext clients, unverified certificates).
    pub tls_failed: metrics::Counter,
}

impl ServerMetrics {
    /// Handles labelled `listener = name`.
    pub fn new(name: &'static str) -> Self {
        use crate::metrics as m;
        ServerMetrics {
            connections: metrics::gauge!(m::CONNECTIONS, "listener" => name),
            accepted: metrics::counter!(m::CONNECTIONS_ACCEPTED, "listener" => name),
            refused: metrics::counter!(m::CONNECTIONS_REFUSED, "listener" => name),
            inflight: metrics::gauge!(m::INFLIGHT, "listener" => name),
            bytes_in: metrics::counter!(m::BYTES_IN, "listener" => name),
            bytes_out: metrics::counter!(m::BYTES_OUT, "listener" => name),
            inflight_refused: metrics::counter!(m::INFLIGHT_REFUSED, "listener" => name),
            tls_failed: metrics::counter!(m::TLS_HANDSHAKE_FAILURES, "listener" => name),
        }
    }
}
