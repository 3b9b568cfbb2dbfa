//! What a handler knows about the request besides its body.

use crate::runtime::ConnMeta;
use std::sync::Arc;
use std::time::Instant;

/// Whether an operation needs a session token (PROTOCOL §3, column "token").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone may call it.
    Public,
    /// A valid token is required; the auth middleware fills [`Ctx::user`].
    Authenticated,
    /// A valid token is required, and the handler only reads and does not look at
    /// who asks ([`Ctx::user`] stays empty): it runs *beside* the session check, so
    /// that both reads leave together (one cache round trip instead of two), and its
    /// answer is released only once the check has passed. A failed check answers at
    /// once and drops the handler. A handler that writes, or whose answer depends on
    /// the user, must use [`Access::Authenticated`].
    AuthenticatedRead,
}

/// The user behind a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    /// Numeric user id.
    pub user_id: u64,
    /// User name.
    pub name: String,
}

/// Per-request context passed through middleware to the handler.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The connection the request came on.
    pub conn: ConnMeta,
    /// The client's request id.
    pub request_id: u64,
    /// Operation name (legacy codes already mapped).
    pub op: Arc<str>,
    /// The route's access rule.
    pub access: Access,
    /// Session token, if sent.
    pub token: Option<String>,
    /// Routing key, if sent.
    pub key: Option<String>,
    /// When the request was decoded.
    pub started: Instant,
    /// When the request must be answered by.
    pub deadline: Instant,
    /// Set by the auth middleware for [`Access::Authenticated`] routes.
    pub user: Option<AuthUser>,
}

impl Ctx {
    /// The authenticated user; `unauthorized` if the route was public or auth did not run.
    pub fn user(&self) -> Result<&AuthUser, crate::protocol::ApiError> {
        self.user
            .as_ref()
            .ok_or_else(|| crate::protocol::ApiError::unauthorized("a valid token is required"))
    }
}
