//! The balancer's one error type, and its single mapping onto protocol error codes.

use super::selection::UnknownAlgorithm;
use crate::protocol::{ApiError, ErrorCode};
use thiserror::Error;

/// Everything that can go wrong in the balancer, on either side of the wire.
#[derive(Debug, Error)]
pub enum BalancerError {
    /// `lb.register` without the right cluster secret.
    #[error("registration: missing or wrong cluster secret")]
    Unauthorized,
    /// `lb.register` from another host while no cluster secret is configured.
    #[error("registration: no cluster secret is configured, so only local nodes may register")]
    RemoteWithoutSecret,
    /// `lb.register` over a connection without a verified client certificate, where
    /// one is required.
    #[error("registration: a client certificate is required (tls.client_auth)")]
    NoCertificate,
    /// `lb.register` for a node id its client certificate does not name.
    #[error("registration: the client certificate names {names}, not node `{node}`")]
    CertificateMismatch {
        /// The id asked for.
        node: String,
        /// The certificate's CN and DNS names.
        names: String,
    },
    /// TLS settings could not be built from `[tls]`.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A lease operation on a connection that has not registered.
    #[error("registration: this connection has not registered a node")]
    NotRegistered,
    /// A lease operation for a node this balancer holds no lease for.
    #[error("registration: unknown node `{0}` (lease expired or never registered)")]
    UnknownNode(String),
    /// A lease operation for a node registered over another connection.
    #[error("registration: node `{0}` is registered over another connection")]
    NotOwner(String),
    /// A request body that does not make sense.
    #[error("request: {0}")]
    BadRequest(String),
    /// No healthy node serves what was asked for.
    #[error("no healthy node for {0}")]
    NoBackend(String),
    /// A node failed while a request that may not be repeated was in flight.
    #[error("node {node} failed with the request in flight")]
    NodeFailed {
        /// The node that failed.
        node: String,
    },
    /// No node could be reached for a request that never left the balancer (connect
    /// failed or timed out, also on the node tried next).
    #[error("node {node} could not be reached")]
    NodeUnreachable {
        /// The last node tried.
        node: String,
    },
    /// A request's deadline passed while waiting for a node.
    #[error("deadline passed waiting for node {node}")]
    Timeout {
        /// The node that did not answer in time.
        node: String,
    },
    /// A configured algorithm name is not one of the strategies.
    #[error("configuration: `balancer.{key}`: {source}")]
    Algorithm {
        /// The key holding the name (`algorithm` or `services.<name>.algorithm`).
        key: String,
        /// Which name, and the valid ones.
        source: UnknownAlgorithm,
    },
    /// A listener could not be bound.
    #[error("{listener} listener {addr}: {source}")]
    Bind {
        /// Which listener.
        listener: &'static str,
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A node's registration call got no answer.
    #[error("registration call: {0}")]
    Client(#[from] crate::client::ClientError),
    /// A node's registration call was answered with an error.
    #[error("balancer answered {}: {}", .0.code, .0.message)]
    Refused(ApiError),
    /// Shared membership through Redis failed.
    #[error("shared membership: redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The shared-membership Redis settings are unusable (URL, TLS bundle).
    #[error("shared membership: redis: {0}")]
    RedisSettings(String),
    /// Shared membership through etcd failed at one endpoint.
    #[error("shared membership: etcd {endpoint}: {problem}")]
    Etcd {
        /// The endpoint (`http://host:port`).
        endpoint: String,
        /// What failed.
        problem: String,
    },
    /// Anything else at the I/O level (threads, sockets).
    #[error("balancer: {0}")]
    Io(#[from] std::io::Error),
}

impl BalancerError {
    /// What a client is told. The one place balancer errors become protocol codes;
    /// messages name the node at most, never addresses of backing stores.
    pub fn to_api(&self) -> ApiError {
        let code = match self {
            BalancerError::Unauthorized
            | BalancerError::RemoteWithoutSecret
            | BalancerError::NotRegistered
            | BalancerError::NoCertificate
            | BalancerError::CertificateMismatch { .. } => ErrorCode::Unauthorized,
            BalancerError::UnknownNode(_) => ErrorCode::NotFound,
            BalancerError::NotOwner(_) => ErrorCode::Forbidden,
            BalancerError::BadRequest(_) => ErrorCode::BadRequest,
            BalancerError::NoBackend(_) => ErrorCode::NoBackend,
            BalancerError::NodeFailed { .. } | BalancerError::NodeUnreachable { .. } => {
                ErrorCode::Unavailable
            }
            BalancerError::Timeout { .. } => ErrorCode::Timeout,
            BalancerError::Refused(e) => return e.clone(),
            BalancerError::Algorithm { .. }
            | BalancerError::Client(_)
            | BalancerError::Bind { .. }
            | BalancerError::Tls(_)
            | BalancerError::Redis(_)
            | BalancerError::RedisSettings(_)
            | BalancerError::Etcd { .. }
            | BalancerError::Io(_) => return ApiError::internal(),
        };
        ApiError::new(code, self.to_string())
    }
}
