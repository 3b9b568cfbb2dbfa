//! Handlers: typed functions adapted to the router's JSON-in, JSON-out interface.

use super::error::IntoApiError;
use super::Ctx;
use crate::protocol::ApiError;
use crate::runtime::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::any::{Any, TypeId};
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
        let input: In = match decode(body) {
            Ok(v) => v,
            Err(e) => return Box::pin(std::future::ready(Err(e.into_api_error()))),
        };
        let fut = (self.f)(ctx, input);
        Box::pin(async move { encode(fut.await?) })
    }
}

/// The body as the handler's input type. A handler taking the JSON itself (`Value`
/// or an object's `Map`) gets the decoded tree as it is: converting a `Value` into a
/// `Value` would rebuild it node by node.
fn decode<In: DeserializeOwned + 'static>(body: Value) -> Result<In, serde_json::Error> {
    let mut slot = Some(body);
    if let Some(same) = (&mut slot as &mut dyn Any).downcast_mut::<Option<In>>() {
        return Ok(same.take().expect("filled just above"));
    }
    let body = slot.expect("only taken on return");
    match body {
        Value::Object(map) if TypeId::of::<In>() == TypeId::of::<Map<String, Value>>() => {
            let mut map = Some(map);
            match (&mut map as &mut dyn Any).downcast_mut::<Option<In>>() {
                Some(same) => Ok(same.take().expect("filled just above")),
                None => serde_json::from_value(Value::Object(map.expect("not taken"))),
            }
        }
        body => serde_json::from_value(body),
    }
}

/// The handler's output as the response body; a `Value` is taken as it is.
fn encode<Out: Serialize + 'static>(out: Out) -> Result<Value, ApiError> {
    let mut slot = Some(out);
    if let Some(same) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Value>>() {
        return Ok(same.take().expect("filled just above"));
    }
    serde_json::to_value(slot.expect("not taken"))
        .map_err(|e| super::error::internal("encoding response", &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_takes_json_as_is_and_converts_the_rest() {
        let v: Value = decode(json!({"a": 1})).unwrap();
        assert_eq!(v, json!({"a": 1}));
        let m: Map<String, Value> = decode(json!({"a": 1})).unwrap();
        assert_eq!(Value::Object(m), json!({"a": 1}));
        assert!(decode::<Map<String, Value>>(json!([1])).is_err());
        #[derive(serde::Deserialize)]
        struct In {
            a: u32,
        }
        assert_eq!(decode::<In>(json!({"a": 7})).unwrap().a, 7);
        assert!(decode::<In>(json!({"a": "x"})).is_err());
        assert_eq!(encode(json!({"b": 2})).unwrap(), json!({"b": 2}));
        assert_eq!(encode(vec![1, 2]).unwrap(), json!([1, 2]));
    }
}
