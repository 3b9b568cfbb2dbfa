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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Router;
    use crate::protocol::{ErrorCode, Request};
    use crate::runtime::{ConnMeta, Service};
    use serde_json::json;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    /// Accepts the token "good" and refuses any other, after `delay`.
    struct Slow {
        delay: Duration,
    }

    impl SessionVerifier for Slow {
        fn verify(&self, token: &str) -> BoxFuture<'static, Result<AuthUser, ApiError>> {
            let (delay, good) = (self.delay, token == "good");
            Box::pin(async move {
                async_io::Timer::after(delay).await;
                if good {
                    Ok(AuthUser {
                        user_id: 1,
                        name: "a".into(),
                    })
                } else {
                    Err(ApiError::unauthorized("no"))
                }
            })
        }
    }

    fn router(check: Duration, handler: Duration, ran: Arc<AtomicBool>) -> Router {
        let mut r = Router::new(Duration::from_secs(10));
        r.layer(Auth::new(Arc::new(Slow { delay: check })));
        r.route("x.read", Access::AuthenticatedRead, move |ctx, _: Value| {
            let ran = ran.clone();
            async move {
                assert!(ctx.user.is_none());
                async_io::Timer::after(handler).await;
                ran.store(true, Ordering::SeqCst);
                Ok(json!({"read": true}))
            }
        });
        r
    }

    fn call(r: &Router, token: &str) -> (Result<Value, ApiError>, Duration) {
        let mut req = Request::new(1, "x.read", json!({}));
        req.token = Some(token.into());
        let meta = ConnMeta {
            id: 1,
            peer: "127.0.0.1:1".parse().unwrap(),
        };
        let t = Instant::now();
        let r = smol::block_on(r.call(meta, req)).result;
        (r, t.elapsed())
    }

    #[test]
    fn a_read_beside_its_check_is_released_only_after_the_check_passes() {
        let ran = Arc::new(AtomicBool::new(false));
        let r = router(Duration::from_millis(80), Duration::ZERO, ran.clone());
        let (ok, took) = call(&r, "good");
        assert_eq!(ok.unwrap(), json!({"read": true}));
        assert!(took >= Duration::from_millis(80), "released after {took:?}");
        // A failed check wins over an answer that was ready first.
        let (refused, _) = call(&r, "bad");
        assert_eq!(refused.unwrap_err().code, ErrorCode::Unauthorized);
        assert!(ran.load(Ordering::SeqCst));
    }

    #[test]
    fn a_failed_check_answers_at_once_and_drops_the_read() {
        let ran = Arc::new(AtomicBool::new(false));
        let r = router(
            Duration::from_millis(10),
            Duration::from_secs(5),
            ran.clone(),
        );
        let (refused, took) = call(&r, "bad");
        assert_eq!(refused.unwrap_err().code, ErrorCode::Unauthorized);
        assert!(took < Duration::from_secs(1), "answered after {took:?}");
        assert!(!ran.load(Ordering::SeqCst));
    }

    #[test]
    fn the_two_run_at_the_same_time() {
        let ran = Arc::new(AtomicBool::new(false));
        let r = router(Duration::from_millis(150), Duration::from_millis(150), ran);
        let (ok, took) = call(&r, "good");
        assert!(ok.is_ok());
        assert!(
            took < Duration::from_millis(290),
            "took {took:?}: run one after the other"
        );
    }
}
