//! The one place where internal errors become protocol errors.
//!
//! Subsystems define their own `thiserror` enums, and each maps its own to a protocol
//! code at its edge (`impl From<StoreError> for ApiError` sits next to `StoreError`),
//! so the framework names no store and no hash. What it offers them is [`internal`],
//! which logs the detail a client must not see.

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
