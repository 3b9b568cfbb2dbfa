//! A small client of etcd's v3 JSON gateway (`POST /v3/...` on the client port),
//! spoken with hyper over smol sockets (TLS by rustls for `https://` endpoints): no
//! tokio runtime, no gRPC stack.
//!
//! A call goes to the endpoint that answered last; when it cannot be reached, times
//! out or answers with an error, the next endpoint is tried, so a failed member of
//! the cluster is skipped. Keys and values travel base64-encoded and 64-bit numbers
//! as strings, as the gateway's JSON mapping of the protobuf messages has them.

use super::transport::{self, chain, Endpoint};
use crate::balancer::error::BalancerError;
use base64::Engine;
use futures_lite::future;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Base64 as the gateway encodes bytes.
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The endpoints of one etcd cluster.
pub struct Client {
    /// Each endpoint, `http://` or `https://`.
    endpoints: Vec<Endpoint>,
    /// TLS settings for the `https://` endpoints.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The endpoint to try first: the one that answered last.
    current: AtomicUsize,
    /// Bound on connecting and on each unary call.
    timeout: Duration,
}

/// One key-value pair read or watched.
#[derive(Debug, Clone)]
pub struct Kv {
    /// The key.
    pub key: String,
    /// The value (empty for a deletion).
    pub value: Vec<u8>,
}

/// One change seen by a watch.
#[derive(Debug, Clone)]
pub enum Change {
    /// The key was written.
    Put(Kv),
    /// The key was deleted (or its lease expired).
    Delete(String),
}

impl Client {
    /// A client of `endpoints` (`http://host:port` or `https://host:port`, the latter
    /// under `tls`), each call bounded by `timeout`.
    pub fn new(
        endpoints: &[String],
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Client {
        Client {
            endpoints: endpoints.iter().map(|e| Endpoint::parse(e)).collect(),
            tls,
            current: AtomicUsize::new(0),
            timeout,
        }
    }

    /// The endpoints, comma-separated, for messages.
    pub fn endpoints(&self) -> String {
        self.endpoints
            .iter()
            .map(|e| e.url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `POST path` with `body` to the first endpoint that answers; its JSON answer.
    pub async fn call(&self, path: &str, body: &Value) -> Result<Value, BalancerError> {
        let first = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.endpoints.len() {
            let at = (first + i) % self.endpoints.len();
            match self.call_at(at, path, body).await {
                Ok(v) => {
                    self.current.store(at, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| etcd_error("", "no endpoint configured".into())))
    }

    /// `POST path` with `body` to endpoint number `at` only.
    async fn call_at(&self, at: usize, path: &str, body: &Value) -> Result<Value, BalancerError> {
        let Some(endpoint) = self.endpoints.get(at) else {
            return Err(etcd_error("", "no endpoint configured".into()));
        };
        let attempt = async {
            let (status, bytes) = transport::unary(endpoint, self.tls.as_ref(), path, body).await?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            if !status.is_success() {
                let why = value["message"]
                    .as_str()
                    .or(value["error"].as_str())
                    .unwrap_or("error");
                return Err(format!("{path}: HTTP {status}: {why}"));
            }
            Ok::<Value, String>(value)
        };
        let timeout = async {
            async_io::Timer::after(self.timeout).await;
            Err(format!(
                "{path}: no answer within {} ms",
                self.timeout.as_millis()
            ))
        };
        future::or(attempt, timeout)
            .await
            .map_err(|problem| etcd_error(&endpoint.url, problem))
    }

    /// A linearizable read of `key` at endpoint number `at` only: whether that member
    /// answers and has a leader.
    pub async fn read_at(&self, at: usize, key: &str) -> Result<(), BalancerError> {
        let body = serde_json::json!({"key": B64.encode(key), "count_only": true});
        self.call_at(at, "/v3/kv/range", &body).await.map(drop)
    }

    /// The URL of endpoint number `at`, for messages.
    pub fn endpoint(&self, at: usize) -> String {
        self.endpoints
            .get(at)
            .map_or_else(String::new, |e| e.url.clone())
    }

    /// The endpoint a new watch should use: the one that answered last.
    pub fn preferred(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.endpoints.len().max(1)
    }

    /// Endpoint number `at` failed a watch: the next call starts at the one after it.
    pub fn skip(&self, at: usize) {
        let next = (at + 1) % self.endpoints.len().max(1);
        let _ = self
            .current
            .compare_exchange(at, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Grants a lease of `ttl_secs`; its id and the TTL etcd gave it.
    pub async fn grant(&self, ttl_secs: u64) -> Result<(i64, u64), BalancerError> {
        let v = self
            .call("/v3/lease/grant", &serde_json::json!({ "TTL": ttl_secs }))
            .await?;
        Ok((num(&v["ID"]), num(&v["TTL"]) as u64))
    }

    /// Renews lease `id`; the TTL left, 0 when the lease no longer exists.
    pub async fn keep_alive(&self, id: i64) -> Result<u64, BalancerError> {
        let v = self
            .call(
                "/v3/lease/keepalive",
                &serde_json::json!({ "ID": id.to_string() }),
            )
            .await?;
        Ok(num(&v["result"]["TTL"]).max(0) as u64)
    }

    /// Writes `key` attached to lease `lease`.
    pub async fn put(&self, key: &str, value: &str, lease: i64) -> Result<(), BalancerError> {
        let body = serde_json::json!({
            "key": B64.encode(key),
            "value": B64.encode(value),
            "lease": lease.to_string(),
        });
        self.call("/v3/kv/put", &body).await.map(drop)
    }

    /// Deletes `key` if it is still attached to lease `lease` (another balancer may
    /// hold it by now); whether it was.
    pub async fn delete_if_leased(&self, key: &str, lease: i64) -> Result<bool, BalancerError> {
        let k = B64.encode(key);
        let body = serde_json::json!({
            "compare": [{"target": "LEASE", "key": k, "lease": lease.to_string(), "result": "EQUAL"}],
            "success": [{"request_delete_range": {"key": k}}],
        });
        let v = self.call("/v3/kv/txn", &body).await?;
        Ok(v["succeeded"].as_bool().unwrap_or(false))
    }

    /// Every key under `prefix` (a linearizable read: it needs a quorum) and the
    /// store's revision at the time.
    pub async fn get_prefix(&self, prefix: &str) -> Result<(i64, Vec<Kv>), BalancerError> {
        let body = serde_json::json!({
            "key": B64.encode(prefix),
            "range_end": B64.encode(range_end(prefix)),
        });
        let v = self.call("/v3/kv/range", &body).await?;
        let kvs = v["kvs"]
            .as_array()
            .map(|a| a.iter().filter_map(kv).collect())
            .unwrap_or_default();
        Ok((num(&v["header"]["revision"]), kvs))
    }

    /// Watches `prefix` from `revision` at endpoint number `at`, calling `changed` with each batch of changes,
    /// until the watch ends. Always ends with an error: the stream closed, the
    /// endpoint lost its leader, or the revision was compacted (then a fresh read is
    /// needed).
    pub async fn watch(
        &self,
        at: usize,
        prefix: &str,
        revision: i64,
        mut changed: impl FnMut(Vec<Change>),
    ) -> BalancerError {
        let Some(endpoint) = self.endpoints.get(at) else {
            return etcd_error("", "no endpoint configured".into());
        };
        let body = serde_json::json!({"create_request": {
            "key": B64.encode(prefix),
            "range_end": B64.encode(range_end(prefix)),
            "start_revision": revision.to_string(),
        }});
        let problem = async {
            let (mut sender, conn) = transport::open(endpoint, self.tls.as_ref()).await?;
            let io = async {
                conn.await.map_err(|e| chain(&e))?;
                Err::<(), _>("connection closed".to_owned())
            };
            let reading = async {
                let resp = sender
                    .send_request(transport::request(endpoint, "/v3/watch", &body, true)?)
                    .await
                    .map_err(|e| chain(&e))?;
                if !resp.status().is_success() {
                    return Err(format!("/v3/watch: HTTP {}", resp.status()));
                }
                follow(resp.into_body(), &mut changed).await
            };
            future::or(reading, io).await
        }
        .await
        .err()
        .unwrap_or_else(|| "watch ended".into());
        etcd_error(&endpoint.url, problem)
    }
}

/// Reads a watch's stream of JSON messages (one a line) until it ends.
async fn follow(mut body: Incoming, changed: &mut impl FnMut(Vec<Change>)) -> Result<(), String> {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| chain(&e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let msg: Value = serde_json::from_slice(&line).map_err(|e| e.to_string())?;
            let r = &msg["result"];
            if msg.get("error").is_some() {
                return Err(format!("/v3/watch: {}", msg["error"]));
            }
            if num(&r["compact_revision"]) > 0 {
                return Err(format!(
                    "revision compacted (now {})",
                    num(&r["compact_revision"])
                ));
            }
            if r["canceled"].as_bool() == Some(true) {
                let why = r["cancel_reason"].as_str().unwrap_or("canceled");
                return Err(format!("watch canceled: {why}"));
            }
            let events: Vec<Change> = r["events"]
                .as_array()
                .map(|a| a.iter().filter_map(change).collect())
                .unwrap_or_default();
            if !events.is_empty() {
                changed(events);
            }
        }
    }
    Ok(())
}

/// One event of a watch message.
fn change(e: &Value) -> Option<Change> {
    let kv = kv(&e["kv"])?;
    match &e["type"] {
        Value::String(t) if t == "DELETE" => Some(Change::Delete(kv.key)),
        Value::Number(n) if n.as_u64() == Some(1) => Some(Change::Delete(kv.key)),
        _ => Some(Change::Put(kv)),
    }
}

/// A key-value pair of the gateway's JSON.
fn kv(v: &Value) -> Option<Kv> {
    let key = B64.decode(v["key"].as_str()?).ok()?;
    let value = match v["value"].as_str() {
        Some(s) => B64.decode(s).ok()?,
        None => Vec::new(),
    };
    Some(Kv {
        key: String::from_utf8(key).ok()?,
        value,
    })
}

/// A 64-bit number, which the gateway writes as a string (absent = 0).
fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// The end of the key range holding every key that starts with `prefix`.
fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// An error naming the endpoint (its URL).
fn etcd_error(endpoint: &str, problem: String) -> BalancerError {
    BalancerError::Etcd {
        endpoint: endpoint.to_owned(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_of_a_prefix_ends_past_its_last_key() {
        assert_eq!(range_end("/dsf/"), b"/dsf0".to_vec());
        assert_eq!(range_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn watch_events_are_puts_unless_marked_deletions() {
        let put = serde_json::json!({"kv": {"key": B64.encode("k"), "value": B64.encode("v")}});
        let del = serde_json::json!({"type": "DELETE", "kv": {"key": B64.encode("k")}});
        assert!(matches!(change(&put), Some(Change::Put(kv)) if kv.value == b"v"));
        assert!(matches!(change(&del), Some(Change::Delete(k)) if k == "k"));
        assert_eq!(num(&serde_json::json!("42")), 42);
        assert_eq!(num(&Value::Null), 0);
    }
}
