//! The router: operation name → handler, with middleware and a per-request deadline.

use super::handler::Typed;
use super::middleware::{Middleware, Next};
use super::{Access, Ctx, Handler};
use crate::metrics as m;
use crate::protocol::{ApiError, ErrorCode, Request, Response};
use crate::runtime::{BoxFuture, ConnMeta, Service};
use futures_lite::future;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// One registered operation.
#[derive(Clone)]
struct Route {
    /// Name as registered, shared into each request's context.
    op: Arc<str>,
    /// Whether a token is required.
    access: Access,
    /// The chain's final step.
    handler: Arc<dyn Handler>,
    /// `dsf_requests_total{op, code="ok"}`, resolved once.
    ok: metrics::Counter,
    /// `dsf_request_duration_seconds{op}`, resolved once.
    latency: metrics::Histogram,
}

/// Maps operation names to handlers.
///
/// ```no_run
/// use dsf::framework::{Access, Router};
/// use serde_json::{json, Value};
/// let mut router = Router::new(std::time::Duration::from_secs(5));
/// router.route("demo.hello", Access::Public, |_ctx, body: Value| async move {
///     Ok(json!({"hello": body.get("name")}))
/// });
/// ```
pub struct Router {
    routes: HashMap<String, Route>,
    middleware: Vec<Arc<dyn Middleware>>,
    /// Frozen copy of `middleware`, shared by every request.
    chain: Arc<[Arc<dyn Middleware>]>,
    request_timeout: Duration,
}

impl Router {
    /// An empty router whose requests must finish within `request_timeout`.
    ///
    /// Install the metrics recorder ([`crate::metrics::install`]) before
    /// registering routes: their metric handles are resolved at registration.
    pub fn new(request_timeout: Duration) -> Self {
        Router {
            routes: HashMap::new(),
            middleware: Vec::new(),
            chain: Arc::from(Vec::new()),
            request_timeout,
        }
    }

    /// Registers a typed handler for `op`. The body is decoded into `In` (failure:
    /// `bad_request`); the handler's `Out` becomes the response body.
    pub fn route<In, Out, F, Fut>(&mut self, op: &str, access: Access, f: F) -> &mut Self
    where
        F: Fn(Ctx, In) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Out, ApiError>> + Send + 'static,
        In: DeserializeOwned + Send + 'static,
        Out: Serialize + 'static,
    {
        self.handler(
            op,
            access,
            Arc::new(Typed {
                f,
                _types: PhantomData,
            }),
        )
    }

    /// Like [`route`](Self::route), for handlers that need shared state (stores,
    /// caches): each call gets its own clone of `state`'s `Arc`.
    pub fn route_with<S, In, Out, F, Fut>(
        &mut self,
        op: &str,
        access: Access,
        state: Arc<S>,
        f: F,
    ) -> &mut Self
    where
        S: Send + Sync + 'static,
        F: Fn(Arc<S>, Ctx, In) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Out, ApiError>> + Send + 'static,
        In: DeserializeOwned + Send + 'static,
        Out: Serialize + 'static,
    {
        self.route(op, access, move |ctx, body| f(state.clone(), ctx, body))
    }

    /// Registers an untyped handler.
    pub fn handler(&mut self, op: &str, access: Access, handler: Arc<dyn Handler>) -> &mut Self {
        let previous = self.routes.insert(
            op.to_owned(),
            Route {
                op: Arc::from(op),
                access,
                handler,
                ok: metrics::counter!(m::REQUESTS, "op" => op.to_owned(), "code" => "ok"),
                latency: metrics::histogram!(m::REQUEST_SECONDS, "op" => op.to_owned()),
            },
        );
        assert!(previous.is_none(), "operation `{op}` registered twice");
        self
    }

    /// Adds middleware; the first added runs outermost.
    pub fn layer(&mut self, m: impl Middleware) -> &mut Self {
        self.middleware.push(Arc::new(m));
        self.chain = Arc::from(self.middleware.clone());
        self
    }

    /// Registered operation names, sorted.
    pub fn ops(&self) -> Vec<String> {
        let mut ops: Vec<String> = self.routes.keys().cloned().collect();
        ops.sort();
        ops
    }
}

impl Service for Router {
    fn call(&self, conn: ConnMeta, req: Request) -> BoxFuture<'static, Response> {
        let id = req.id;
        let Some(route) = self.routes.get(&req.op) else {
            // Client-chosen names are not labels: that would let anyone grow the metrics.
            metrics::counter!(m::REQUESTS, "op" => "unknown", "code" => "unknown_type")
                .increment(1);
            let err = ApiError::new(
                ErrorCode::UnknownType,
                format!("no operation named `{}`", req.op),
            );
            return Box::pin(std::future::ready(Response::err(Some(id), err)));
        };
        let started = crate::runtime::clock::now();
        let deadline = started + self.request_timeout;
        let ctx = Ctx {
            conn,
            request_id: id,
            op: route.op.clone(),
            access: route.access,
            token: req.token,
            key: req.key,
            started,
            deadline,
            user: None,
        };
        let next = Next {
            chain: self.chain.clone(),
            pos: 0,
            handler: route.handler.clone(),
        };
        let fut = next.run(ctx, req.body);
        let (ok, latency, op) = (route.ok.clone(), route.latency.clone(), route.op.clone());
        Box::pin(async move {
            // The handler is polled first, so a request answered at once never arms a timer.
            let result = future::or(fut, async move {
                crate::runtime::deadline::at(deadline).await;
                Err(ApiError::timeout())
            })
            .await;
            latency.record(started.elapsed().as_secs_f64());
            match &result {
                Ok(_) => ok.increment(1),
                Err(e) => metrics::counter!(m::REQUESTS, "op" => op.to_string(), "code" => e.code.as_str())
                    .increment(1),
            }
            Response {
                id: Some(id),
                result,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn meta() -> ConnMeta {
        ConnMeta {
            id: 1,
            peer: "127.0.0.1:1".parse().unwrap(),
        }
    }

    fn call(r: &Router, op: &str, body: Value) -> Response {
        smol::block_on(r.call(meta(), Request::new(1, op, body)))
    }

    #[derive(serde::Deserialize)]
    struct Add {
        a: i64,
        b: i64,
    }

    #[test]
    fn typed_routes_decode_and_encode() {
        let mut r = Router::new(Duration::from_secs(1));
        r.route("math.add", Access::Public, |_ctx, x: Add| async move {
            Ok(json!({"sum": x.a + x.b}))
        });
        assert_eq!(
            call(&r, "math.add", json!({"a":2,"b":3})).result,
            Ok(json!({"sum":5}))
        );
        let bad = call(&r, "math.add", json!({"a":"x"})).result.unwrap_err();
        assert_eq!(bad.code, ErrorCode::BadRequest);
        let unknown = call(&r, "math.sub", json!({})).result.unwrap_err();
        assert_eq!(unknown.code, ErrorCode::UnknownType);
    }

    #[test]
    fn deadline_gives_timeout() {
        let mut r = Router::new(Duration::from_millis(20));
        r.route("slow.op", Access::Public, |_ctx, _: Value| async move {
            async_io::Timer::after(Duration::from_secs(5)).await;
            Ok(json!({}))
        });
        assert_eq!(
            call(&r, "slow.op", json!({})).result.unwrap_err().code,
            ErrorCode::Timeout
        );
    }

    struct OnlyAlice;
    impl super::super::SessionVerifier for OnlyAlice {
        fn verify(
            &self,
            token: &str,
        ) -> BoxFuture<'static, Result<super::super::AuthUser, ApiError>> {
            let ok = token == "alice-token";
            Box::pin(async move {
                if ok {
                    Ok(super::super::AuthUser {
                        user_id: 1,
                        name: "alice".into(),
                    })
                } else {
                    Err(ApiError::unauthorized("invalid token"))
                }
            })
        }
    }

    #[test]
    fn auth_middleware_guards_authenticated_routes() {
        let mut r = Router::new(Duration::from_secs(1));
        r.layer(super::super::middleware::Auth::new(Arc::new(OnlyAlice)));
        r.route(
            "me.whoami",
            Access::Authenticated,
            |ctx: Ctx, _: Value| async move { Ok(json!({"name": ctx.user()?.name})) },
        );
        r.route("pub.hi", Access::Public, |_ctx, _: Value| async move {
            Ok(json!({}))
        });
        assert!(call(&r, "pub.hi", json!({})).result.is_ok());
        let denied = call(&r, "me.whoami", json!({})).result.unwrap_err();
        assert_eq!(denied.code, ErrorCode::Unauthorized);
        let mut req = Request::new(2, "me.whoami", json!({}));
        req.token = Some("alice-token".into());
        let ok = smol::block_on(r.call(meta(), req)).result.unwrap();
        assert_eq!(ok, json!({"name":"alice"}));
    }
}
