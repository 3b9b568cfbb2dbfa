//! Middleware: code that runs around every handler (authentication, access log).
//!
//! A middleware receives the request and a [`Next`]; it may answer itself (an auth
//! failure) or call `next.run(..)` and look at the result (timing, logging).

use super::{Access, AuthUser, Ctx, Handler};
use crate::protocol::ApiError;
use crate::runtime::BoxFuture;
use serde_json::Value;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

/// Code around handlers.
pub trait Middleware: Send + Sync + 'static {
    /// Handles the request, usually by calling `next.run(ctx, body)`.
    fn call(
        &self,
        ctx: Ctx,
        body: Value,
        next: Next,
    ) -> BoxFuture<'static, Result<Value, ApiError>>;
}

/// The rest of the chain after the current middleware.
#[derive(Clone)]
pub struct Next {
    pub(crate) chain: Arc<[Arc<dyn Middleware>]>,
    pub(crate) pos: usize,
    pub(crate) handler: Arc<dyn Handler>,
}

impl Next {
    /// Runs the remaining middleware and then the handler.
    pub fn run(mut self, ctx: Ctx, body: Value) -> BoxFuture<'static, Result<Value, ApiError>> {
        match self.chain.get(self.pos).cloned() {
            Some(m) => {
                self.pos += 1;
                m.call(ctx, body, self)
            }
            None => self.handler.call(ctx, body),
        }
    }
}

/// Resolves a session token to a user (implemented by the session store).
pub trait SessionVerifier: Send + Sync + 'static {
    /// The token's user, or `unauthorized` (or `unavailable` when the store is down).
    fn verify(&self, token: &str) -> BoxFuture<'static, Result<AuthUser, ApiError>>;
}

/// Requires a valid token on [`Access::Authenticated`] routes and fills [`Ctx::user`];
/// on [`Access::AuthenticatedRead`] routes the check runs beside the handler.
pub struct Auth {
    verifier: Arc<dyn SessionVerifier>,
}

impl Auth {
    /// Authentication through `verifier`.
    pub fn new(verifier: Arc<dyn SessionVerifier>) -> Self {
        Auth { verifier }
    }
}

impl Middleware for Auth {
    fn call(
        &self,
        mut ctx: Ctx,
        body: Value,
        next: Next,
    ) -> BoxFuture<'static, Result<Value, ApiError>> {
        if ctx.access == Access::Public {
            return next.run(ctx, body);
        }
        let Some(token) = ctx.token.clone() else {
            return Box::pin(std::future::ready(Err(ApiError::unauthorized(
                "this operation requires a token",
            ))));
        };
        let verify = self.verifier.verify(&token);
        if ctx.access == Access::AuthenticatedRead {
            return Box::pin(beside(verify, next.run(ctx, body)));
        }
        Box::pin(async move {
            ctx.user = Some(verify.await?);
            next.run(ctx, body).await
        })
    }
}

/// Runs `handler` beside the session check `verify`: the check's failure answers at
/// once (the handler is dropped); the handler's answer waits for the check to pass.
async fn beside(
    verify: BoxFuture<'static, Result<AuthUser, ApiError>>,
    handler: BoxFuture<'static, Result<Value, ApiError>>,
) -> Result<Value, ApiError> {
    let (mut verify, mut handler) = (Some(verify), handler);
    let mut answer = None;
    std::future::poll_fn(move |cx| {
        // The check is polled first, so that its read joins a batch before the
        // handler's does (they leave together either way).
        if let Some(v) = verify.as_mut() {
            if let Poll::Ready(r) = v.as_mut().poll(cx) {
                r?;
                verify = None;
            }
        }
        if answer.is_none() {
            if let Poll::Ready(r) = handler.as_mut().poll(cx) {
                answer = Some(r);
            }
        }
        match (&verify, answer.take()) {
            (None, Some(r)) => Poll::Ready(r),
            (_, a) => {
                answer = a;
                Poll::Pending
            }
        }
    })
    .await
}

/// Logs every request at debug level and slow ones at warn level.
pub struct AccessLog {
    slow: Duration,
}

impl AccessLog {
    /// Requests slower than `slow` are logged as warnings.
    pub fn new(slow: Duration) -> Self {
        AccessLog { slow }
    }
}

impl Middleware for AccessLog {
    fn call(
        &self,
        ctx: Ctx,
        body: Value,
        next: Next,
    ) -> BoxFuture<'static, Result<Value, ApiError>> {
        let slow = self.slow;
        let (op, id, conn, started) = (ctx.op.clone(), ctx.request_id, ctx.conn.id, ctx.started);
        let fut = next.run(ctx, body);
        Box::pin(async move {
            let result = fut.await;
            let elapsed = started.elapsed();
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.code.as_str(),
            };
            if elapsed >= slow {
                tracing::warn!(%op, id, conn, outcome, elapsed_ms = elapsed.as_secs_f64() * 1e3, "slow request");
            } else {
                tracing::debug!(%op, id, conn, outcome, elapsed_us = elapsed.as_micros() as u64, "request");
            }
            result
        })
    }
}
