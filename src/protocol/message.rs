//! Requests and responses (PROTOCOL §2) and their JSON encoding.

use super::error::{ApiError, ErrorCode};
use super::frame;
use super::legacy::{self, Legacy};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// One decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Client-chosen id, echoed in the response.
    pub id: u64,
    /// Operation name (legacy integer codes already mapped).
    pub op: String,
    /// Session token, if any.
    pub token: Option<String>,
    /// Routing key for the balancer; nodes ignore it.
    pub key: Option<String>,
    /// Operation arguments (`{}` when absent).
    pub body: Value,
}

/// Why a payload is not a usable request.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestError {
    /// Answer this error; `id` is echoed when the payload had a usable one.
    Reply {
        /// The request's id, if it could be read.
        id: Option<u64>,
        /// What to answer.
        error: ApiError,
    },
    /// Legacy code 3: close the connection cleanly without an answer.
    Exit,
}

impl RequestError {
    fn reply(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        RequestError::Reply {
            id,
            error: ApiError::new(code, message),
        }
    }
}

impl Request {
    /// A request for `op` with `body` (clients).
    pub fn new(id: u64, op: impl Into<String>, body: Value) -> Self {
        Request {
            id,
            op: op.into(),
            token: None,
            key: None,
            body,
        }
    }

    /// Decodes one payload. Unknown top-level fields are ignored.
    pub fn parse(payload: &[u8]) -> Result<Request, RequestError> {
        if let Some(req) = Self::parse_common(payload) {
            return Ok(req);
        }
        Self::parse_general(payload)
    }

    /// The shape nearly every client sends (an object with a numeric `id`, a string
    /// `type`, string-or-null `token`/`key` and an object-or-null `body`), decoded
    /// straight into its fields without building the top-level object as a map.
    /// `None` for anything else — legacy codes, duplicate fields, wrong types,
    /// malformed JSON — which [`parse_general`](Self::parse_general) then decodes
    /// and, where it is an error, words.
    fn parse_common(payload: &[u8]) -> Option<Request> {
        #[derive(Deserialize)]
        struct Wire<'a> {
            id: u64,
            #[serde(rename = "type", borrow)]
            op: Cow<'a, str>,
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            key: Option<String>,
            #[serde(default)]
            body: Option<Value>,
        }
        // A derived struct also accepts a JSON array; the protocol does not.
        if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return None;
        }
        let wire: Wire<'_> = serde_json::from_slice(payload).ok()?;
        let body = match wire.body {
            None => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => return None,
        };
        Some(Request {
            id: wire.id,
            op: wire.op.into_owned(),
            token: wire.token,
            key: wire.key,
            body,
        })
    }

    /// Decodes any payload through a generic JSON value, with the exact error for
    /// each way a request can be malformed.
    fn parse_general(payload: &[u8]) -> Result<Request, RequestError> {
        let value: Value = serde_json::from_slice(payload).map_err(|e| {
            let what = if e.is_syntax() || e.is_eof() {
                "payload is not valid JSON"
            } else {
                "payload could not be decoded"
            };
            RequestError::reply(None, ErrorCode::BadRequest, format!("{what}: {e}"))
        })?;
        let Value::Object(mut obj) = value else {
            return Err(RequestError::reply(
                None,
                ErrorCode::BadRequest,
                "payload must be a JSON object",
            ));
        };
        let id = match obj.get("id") {
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
                RequestError::reply(
                    None,
                    ErrorCode::BadRequest,
                    "`id` must be an unsigned 64-bit integer",
                )
            })?,
            Some(_) => {
                return Err(RequestError::reply(
                    None,
                    ErrorCode::BadRequest,
                    "`id` must be an unsigned 64-bit integer",
                ))
            }
            None => {
                // Legacy clients may send `{"type": 3}` without an id to hang up.
                if let Some(Value::Number(n)) = obj.get("type") {
                    if n.as_i64().and_then(legacy::lookup) == Some(Legacy::Exit) {
                        return Err(RequestError::Exit);
                    }
                }
                return Err(RequestError::reply(
                    None,
                    ErrorCode::BadRequest,
                    "missing field `id`",
                ));
            }
        };
        let bad = |msg: &str| RequestError::reply(Some(id), ErrorCode::BadRequest, msg);
        let op = match obj.remove("type") {
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => match n.as_i64().and_then(legacy::lookup) {
                Some(Legacy::Op(name)) => name.to_owned(),
                Some(Legacy::Exit) => return Err(RequestError::Exit),
                None => {
                    return Err(RequestError::reply(
                        Some(id),
                        ErrorCode::UnknownType,
                        format!("unknown legacy type code {n}"),
                    ))
                }
            },
            Some(_) => return Err(bad("`type` must be a string or a legacy integer code")),
            None => return Err(bad("missing field `type`")),
        };
        let token = optional_string(&mut obj, "token").map_err(|m| bad(&m))?;
        let key = optional_string(&mut obj, "key").map_err(|m| bad(&m))?;
        let body = match obj.remove("body") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => return Err(bad("`body` must be a JSON object")),
        };
        Ok(Request {
            id,
            op,
            token,
            key,
            body,
        })
    }

    /// Appends this request as one frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        #[derive(Serialize)]
        struct Wire<'a> {
            id: u64,
            #[serde(rename = "type")]
            op: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            token: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            key: Option<&'a str>,
            body: &'a Value,
        }
        let wire = Wire {
            id: self.id,
            op: &self.op,
            token: self.token.as_deref(),
            key: self.key.as_deref(),
            body: &self.body,
        };
        frame::encode_with(out, |w| serde_json::to_writer(w, &wire))
            .expect("serializing a JSON value into memory cannot fail");
    }
}

/// A response as written on the wire.
#[derive(Serialize)]
struct WireResponse<'a> {
    id: Option<u64>,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ApiError>,
}

fn optional_string(obj: &mut Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{field}` must be a string")),
    }
}

/// One response: the request's id and either a body or an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The request's id; `None` when the request had no usable id.
    pub id: Option<u64>,
    /// The outcome.
    pub result: Result<Value, ApiError>,
}

impl Response {
    /// A success.
    pub fn ok(id: u64, body: Value) -> Self {
        Response {
            id: Some(id),
            result: Ok(body),
        }
    }

    /// A failure.
    pub fn err(id: Option<u64>, error: ApiError) -> Self {
        Response {
            id,
            result: Err(error),
        }
    }

    /// Appends this response as one frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        frame::encode_with(out, |w| serde_json::to_writer(w, &self.wire()))
            .expect("serializing a JSON value into memory cannot fail");
    }

    /// The wire text in PROTOCOL §2 field order, e.g. `{"id":7,"ok":true,"body":{}}`.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(&self.wire()).expect("a response is always representable as JSON")
    }

    /// The wire JSON as a value.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.wire()).expect("a response is always representable as JSON")
    }

    /// The wire shape, serialized in the field order of PROTOCOL §2.
    fn wire(&self) -> WireResponse<'_> {
        match &self.result {
            Ok(body) => WireResponse {
                id: self.id,
                ok: true,
                body: Some(body),
                error: None,
            },
            Err(e) => WireResponse {
                id: self.id,
                ok: false,
                body: None,
                error: Some(e),
            },
        }
    }

    /// Decodes a response payload (clients).
    pub fn parse(payload: &[u8]) -> Result<Response, String> {
        let v: Value = serde_json::from_slice(payload).map_err(|e| format!("bad response: {e}"))?;
        let id = v.get("id").and_then(Value::as_u64);
        match v.get("ok").and_then(Value::as_bool) {
            Some(true) => Ok(Response {
                id,
                result: Ok(v.get("body").cloned().unwrap_or(Value::Null)),
            }),
            Some(false) => {
                let err: ApiError = v
                    .get("error")
                    .cloned()
                    .and_then(|e| serde_json::from_value(e).ok())
                    .ok_or_else(|| "bad response: malformed `error`".to_string())?;
                Ok(Response {
                    id,
                    result: Err(err),
                })
            }
            None => Err("bad response: missing `ok`".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: &str) -> Result<Request, RequestError> {
        Request::parse(v.as_bytes())
    }

    fn code(r: Result<Request, RequestError>) -> (Option<u64>, ErrorCode) {
        match r {
            Err(RequestError::Reply { id, error }) => (id, error.code),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn full_request() {
        let r = parse(
            r#"{"id":7,"type":"user.login","token":"t","key":"k","body":{"a":1},"extra":true}"#,
        )
        .unwrap();
        assert_eq!(r.id, 7);
        assert_eq!(r.op, "user.login");
        assert_eq!(r.token.as_deref(), Some("t"));
        assert_eq!(r.key.as_deref(), Some("k"));
        assert_eq!(r.body, json!({"a":1}));
    }

    #[test]
    fn body_defaults_to_empty_object() {
        assert_eq!(
            parse(r#"{"id":1,"type":"sys.ping"}"#).unwrap().body,
            json!({})
        );
    }

    #[test]
    fn legacy_codes() {
        assert_eq!(parse(r#"{"id":1,"type":1}"#).unwrap().op, "user.login");
        assert_eq!(parse(r#"{"id":1,"type":3}"#), Err(RequestError::Exit));
        assert_eq!(parse(r#"{"type":3}"#), Err(RequestError::Exit));
        assert_eq!(
            code(parse(r#"{"id":1,"type":42}"#)),
            (Some(1), ErrorCode::UnknownType)
        );
    }

    #[test]
    fn malformed_requests() {
        assert_eq!(code(parse("not json")), (None, ErrorCode::BadRequest));
        assert_eq!(code(parse("[1,2]")), (None, ErrorCode::BadRequest));
        assert_eq!(
            code(parse(r#"{"type":"sys.ping"}"#)),
            (None, ErrorCode::BadRequest)
        );
        assert_eq!(
            code(parse(r#"{"id":-1,"type":"x"}"#)),
            (None, ErrorCode::BadRequest)
        );
        assert_eq!(code(parse(r#"{"id":2}"#)), (Some(2), ErrorCode::BadRequest));
        assert_eq!(
            code(parse(r#"{"id":2,"type":[1]}"#)),
            (Some(2), ErrorCode::BadRequest)
        );
        assert_eq!(
            code(parse(r#"{"id":2,"type":"x","body":5}"#)),
            (Some(2), ErrorCode::BadRequest)
        );
        assert_eq!(
            code(parse(r#"{"id":2,"type":"x","token":5}"#)),
            (Some(2), ErrorCode::BadRequest)
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(code(parse(&deep)), (None, ErrorCode::BadRequest));
    }

    #[test]
    fn response_round_trip() {
        let ok = Response::ok(3, json!({"node":"n1"}));
        let mut out = Vec::new();
        ok.encode(&mut out);
        assert_eq!(&out[4..], br#"{"id":3,"ok":true,"body":{"node":"n1"}}"#);
        assert_eq!(Response::parse(&out[4..]).unwrap(), ok);
        let err = Response::err(None, ApiError::bad_request("nope"));
        assert_eq!(
            err.to_json(),
            json!({"id":null,"ok":false,"error":{"code":"bad_request","message":"nope"}})
        );
        assert_eq!(
            Response::parse(err.to_json().to_string().as_bytes()).unwrap(),
            err
        );
    }

    #[test]
    fn common_and_general_paths_agree() {
        for text in [
            r#"{"id":7,"type":"a.b","token":null,"key":"k","body":null}"#,
            r#" {"body":{"x":[1,{"y":null}]},"type":"a\u002eb","id":0,"z":[1]}"#,
            r#"{"id":1,"type":"x","id":2}"#,
            r#"{"id":1,"type":"x","body":{"a":1},"body":{"b":2}}"#,
            r#"{"id":1.0,"type":"x"}"#,
            r#"{"id":18446744073709551615,"type":"x","key":3}"#,
            r#"[1,"x"]"#,
            r#"{"id":1,"type":"x"} x"#,
        ] {
            let general = Request::parse_general(text.as_bytes());
            assert_eq!(parse(text), general, "{text}");
            if let Some(common) = Request::parse_common(text.as_bytes()) {
                assert_eq!(Ok(common), general, "{text}");
            }
        }
        assert!(Request::parse_common(br#"{"id":1,"type":"x","id":2}"#).is_none());
        assert!(Request::parse_common(br#"[1,"x"]"#).is_none());
    }

    #[test]
    fn request_round_trip() {
        let mut r = Request::new(9, "sys.echo", json!({"x":[1,2]}));
        r.key = Some("k".into());
        let mut out = Vec::new();
        r.encode(&mut out);
        assert_eq!(Request::parse(&out[4..]).unwrap(), r);
    }
}
