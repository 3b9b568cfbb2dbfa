//! The one place where internal errors become protocol errors.
//!
//! Subsystems define their own `thiserror` enums; each gets a `From` impl here that
//! picks the protocol code and a message safe to show a client. Details (SQL errors,
//! host names) are logged here and never sent.

use crate::protocol::{ApiError, ErrorCode};

/// Turns a subsystem error into an [`ApiError`], logging what the client will not see.
pub trait IntoApiError {
    /// The protocol error for this failure.
    fn into_api_error(self) -> ApiError;
}

impl IntoApiError for serde_json::Error {
    fn into_api_error(self) -> ApiError {
        // serde's message names the field and the expectation, and holds no internals.
        ApiError::new(ErrorCode::BadRequest, format!("invalid body: {self}"))
    }
}

/// Logs an unexpected failure and returns the generic `internal` error.
pub fn internal(context: &str, err: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(context, error = %err, "internal error");
    ApiError::internal()
}

impl IntoApiError for crate::store::StoreError {
    fn into_api_error(self) -> ApiError {
        use crate::store::StoreError as E;
        match self {
            E::Conflict(what) => ApiError::conflict(format!("{what} already exists")),
            E::NotFound(what) => ApiError::not_found(format!("no such {what}")),
            E::Unavailable(detail) => {
                tracing::warn!(error = %detail, "store unavailable");
                ApiError::unavailable("a backing store is unavailable; try again later")
            }
            E::Timeout(what) => {
                tracing::warn!(op = what, "store timeout");
                ApiError::new(ErrorCode::Timeout, "the store did not answer in time")
            }
            E::Other(detail) => internal("store", &detail),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        e.into_api_error()
    }
}

impl IntoApiError for crate::auth::password::HashError {
    fn into_api_error(self) -> ApiError {
        internal("password hashing", &self)
    }
}

impl From<crate::auth::password::HashError> for ApiError {
    fn from(e: crate::auth::password::HashError) -> Self {
        e.into_api_error()
    }
}
