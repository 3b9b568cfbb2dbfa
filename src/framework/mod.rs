//! The application framework (the "MVC" of DSF): a [`Router`] maps operation names to
//! typed handlers, with [`Middleware`] around them.
//!
//! - **Controller**: a handler function. Its typed body is decoded by the router
//!   (a decode failure is `bad_request`), then it validates ([`validate`]) and calls
//!   the model.
//! - **Model**: whatever the handler holds (stores, caches) — the framework does not care.
//! - **View**: the handler's `Serialize` return type becomes the response `body`.
//!
//! Errors are [`ApiError`](crate::protocol::ApiError)s; internal errors are turned into
//! them in exactly one place, [`error`].

pub mod context;
pub mod error;
pub mod handler;
pub mod middleware;
pub mod router;
pub mod validate;

pub use context::{Access, AuthUser, Ctx};
pub use handler::Handler;
pub use middleware::{Middleware, Next, SessionVerifier};
pub use router::Router;
