//! Handlers: typed functions adapted to the router's JSON-in, JSON-out interface.

use super::error::IntoApiError;
use super::Ctx;
use crate::protocol::ApiError;
use crate::runtime::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::marker::PhantomData;

/// A handler as the router stores it.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request body.
    fn call(&self, ctx: Ctx, body: Value) -> BoxFuture<'static, Result<Value, ApiError>>;
}

/// Adapts `Fn(Ctx, In) -> Future<Output = Result<Out, ApiError>>` to [`Handler`].
pub(crate) struct Typed<F, In, Out> {
    pub(crate) f: F,
    pub(crate) _types: PhantomData<fn(In) -> Out>,
}

impl<F, Fut, In, Out> Handler for Typed<F, In, Out>
where
    F: Fn(Ctx, In) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Out, ApiError>> + Send + 'static,
    In: DeserializeOwned + Send + 'static,
    Out: Serialize + 'static,
{
    fn call(&self, ctx: Ctx, body: Value) -> BoxFuture<'static, Result<Value, ApiError>> {
        let input: In = match serde_json::from_value(body) {
            Ok(v) => v,
            Err(e) => return Box::pin(std::future::ready(Err(e.into_api_error()))),
        };
        let fut = (self.f)(ctx, input);
        Box::pin(async move {
            let out = fut.await?;
            serde_json::to_value(out).map_err(|e| super::error::internal("encoding response", &e))
        })
    }
}
