//! Protocol error codes (PROTOCOL §2) and the error value handlers return.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Every error code a DSF server may answer with; the wire form is snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Unusable frame length (zero).
    BadFrame,
    /// Frame over `max_frame`.
    TooLarge,
    /// Not JSON, missing or invalid field, value out of range.
    BadRequest,
    /// No handler for the request's `type`.
    UnknownType,
    /// Missing, expired or invalid token; wrong credentials.
    Unauthorized,
    /// Authenticated but not allowed.
    Forbidden,
    /// The thing named does not exist.
    NotFound,
    /// Already exists.
    Conflict,
    /// Too many attempts.
    RateLimited,
    /// The server refused work to protect itself.
    Overloaded,
    /// The operation's deadline passed.
    Timeout,
    /// A backing store is down and the answer cannot be given safely; nothing was
    /// applied.
    Unavailable,
    /// A write's outcome is unknown: it may or may not be applied (the store did not
    /// confirm it in time). Retrying is safe only for idempotent writes.
    OutcomeUnknown,
    /// Balancer: no healthy node for the service.
    NoBackend,
    /// Anything else; detail is logged server-side only.
    Internal,
}

impl ErrorCode {
    /// The wire name, e.g. `"bad_request"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::OutcomeUnknown => "outcome_unknown",
            ErrorCode::NoBackend => "no_backend",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the client sees it: a code and a human message without internals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation; never contains SQL, stack traces or store host names.
    pub message: String,
}

impl ApiError {
    /// An error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// `bad_request` with a message naming the offending field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// `internal` with a generic message; log the detail before calling this.
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// `overloaded`.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Overloaded, message)
    }

    /// `timeout` for a request whose deadline passed.
    pub fn timeout() -> Self {
        Self::new(ErrorCode::Timeout, "deadline exceeded")
    }

    /// `unavailable` for a backing store outage.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
