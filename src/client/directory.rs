//! A client that asks a balancer's directory which node to use, then talks to it.
//!
//! Each `(operation, key)` is resolved once with `lb.assign` (the balancer routes by
//! the operation's service and hashes the key) and the answer is cached, as are the
//! connections to nodes. When a node connection fails, the cached answer is dropped,
//! the directory is asked again, and the request is repeated on the new node if it
//! never left this client or if repeating it is harmless: the node declared the
//! operation idempotent when it registered, and `lb.assign` passes that on.

use super::{CallOptions, ClientError, Connection};
use crate::protocol::Response;
use crate::tls::Connector;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Attempts per call: the first node, then up to two more after asking again.
const MAX_ATTEMPTS: usize = 3;
/// Pause before asking the directory again, so the balancer can notice the failure.
const REASK_PAUSE: Duration = Duration::from_millis(100);

/// A node the directory assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Node id.
    pub node: String,
    /// Where to connect.
    pub addr: String,
    /// Whether the node declared the operation safe to send twice.
    pub idempotent: bool,
}

/// What the directory answered.
#[derive(Debug)]
enum Assigned {
    /// A node.
    Node(Assignment),
    /// An error response (e.g. `no_backend`), passed on to the caller as it is.
    Refused(Response),
}

/// A directory-following client; share it between tasks (`&self` methods).
pub struct DirectoryClient {
    /// The balancer's directory address.
    directory: String,
    /// Bound on connecting and on each call.
    timeout: Duration,
    /// The directory connection, reopened when it fails.
    dir_conn: async_lock::Mutex<Option<Arc<Connection>>>,
    /// `(op, key)` → assigned node.
    assignments: Mutex<HashMap<(String, Option<String>), Assignment>>,
    /// Node connections by address.
    nodes: async_lock::Mutex<HashMap<String, Arc<Connection>>>,
    /// TLS to the directory (with any server-name override) and to nodes (verified
    /// against the host of the address the directory gives); `None` = plain TCP.
    tls: Option<(Connector, Connector)>,
}

impl DirectoryClient {
    /// A client of the directory at `directory` (host:port); connects on first use.
    pub fn new(directory: impl Into<String>, timeout: Duration) -> DirectoryClient {
        DirectoryClient {
            directory: directory.into(),
            timeout,
            dir_conn: async_lock::Mutex::new(None),
            assignments: Mutex::default(),
            nodes: async_lock::Mutex::new(HashMap::new()),
            tls: None,
        }
    }

    /// Speaks TLS to the directory and to the nodes it assigns, verifying each.
    pub fn with_tls(mut self, tls: Connector) -> DirectoryClient {
        let nodes = tls.clone().with_address_name();
        self.tls = Some((tls, nodes));
        self
    }

    /// Calls `op` on the node the directory assigns for `op` and `opts.key`.
    ///
    /// The response's `id` is the wire id of the connection used. A directory error
    /// (`no_backend`) is returned as an error response.
    pub async fn call(
        &self,
        op: &str,
        body: Value,
        opts: &CallOptions,
    ) -> Result<Response, ClientError> {
        let cache_key = (op.to_owned(), opts.key.clone());
        let mut last_err = None;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                async_io::Timer::after(REASK_PAUSE).await;
            }
            let cached = self
                .assignments
                .lock()
                .expect("assignments lock")
                .get(&cache_key)
                .cloned();
            let node = match cached {
                Some(a) => a,
                None => match self.assign(op, opts.key.as_deref()).await? {
                    Assigned::Node(a) => {
                        self.assignments
                            .lock()
                            .expect("assignments lock")
                            .insert(cache_key.clone(), a.clone());
                        a
                    }
                    Assigned::Refused(resp) => return Ok(resp),
                },
            };
            let conn = match self.node_conn(&node.addr).await {
                Ok(c) => c,
                Err(e) => {
                    // Never sent: any request may go elsewhere.
                    tracing::debug!(node = %node.node, error = %e, "node unreachable; asking the directory again");
                    self.forget(&cache_key, &node.addr).await;
                    last_err = Some(e);
                    continue;
                }
            };
            match conn
                .call_timeout(op, body.clone(), opts, self.timeout)
                .await
            {
                Ok(resp) => return Ok(resp),
                Err(e @ ClientError::GoneAway) => {
                    // The node drains or hands over: ask again; the request never left.
                    tracing::debug!(node = %node.node, "node sent goaway; asking the directory again");
                    self.forget(&cache_key, &node.addr).await;
                    last_err = Some(e);
                }
                Err(e @ (ClientError::Io(_) | ClientError::Closed)) => {
                    tracing::debug!(node = %node.node, error = %e, "node connection failed");
                    self.forget(&cache_key, &node.addr).await;
                    if !node.idempotent {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or(ClientError::Closed))
    }

    /// Asks the directory (`lb.assign`) without caching.
    pub async fn lookup(&self, op: &str, key: Option<&str>) -> Result<Assignment, ClientError> {
        match self.assign(op, key).await? {
            Assigned::Node(a) => Ok(a),
            Assigned::Refused(resp) => Err(ClientError::Server(
                resp.result.expect_err("a refusal is an error response"),
            )),
        }
    }

    async fn assign(&self, op: &str, key: Option<&str>) -> Result<Assigned, ClientError> {
        let mut body = json!({ "op": op });
        if let Some(k) = key {
            body["key"] = Value::String(k.to_owned());
        }
        let conn = self.dir_conn().await?;
        let mut resp = conn
            .call_timeout(
                "lb.assign",
                body.clone(),
                &CallOptions::default(),
                self.timeout,
            )
            .await;
        if matches!(resp, Err(ClientError::GoneAway)) {
            // The balancer drains or hands over: the next connection reaches its successor.
            *self.dir_conn.lock().await = None;
            let conn = self.dir_conn().await?;
            resp = conn
                .call_timeout("lb.assign", body, &CallOptions::default(), self.timeout)
                .await;
        }
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                *self.dir_conn.lock().await = None;
                return Err(e);
            }
        };
        let Ok(v) = &resp.result else {
            return Ok(Assigned::Refused(resp));
        };
        let field = |f: &str| {
            v.get(f)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ClientError::Protocol(format!("lb.assign answer lacks `{f}`")))
        };
        Ok(Assigned::Node(Assignment {
            node: field("node")?,
            addr: field("addr")?,
            idempotent: v.get("idempotent").and_then(Value::as_bool) == Some(true),
        }))
    }

    async fn dir_conn(&self) -> Result<Arc<Connection>, ClientError> {
        let mut slot = self.dir_conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.is_usable()) {
            return Ok(c.clone());
        }
        let tls = self.tls.as_ref().map(|t| &t.0);
        let c = Arc::new(Connection::connect_with(&self.directory, self.timeout, tls).await?);
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn node_conn(&self, addr: &str) -> Result<Arc<Connection>, ClientError> {
        let mut nodes = self.nodes.lock().await;
        if let Some(c) = nodes.get(addr).filter(|c| c.is_usable()) {
            return Ok(c.clone());
        }
        let tls = self.tls.as_ref().map(|t| &t.1);
        let c = Arc::new(Connection::connect_with(addr, self.timeout, tls).await?);
        nodes.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    /// Drops a failed node's connection and every cached answer pointing at it.
    async fn forget(&self, key: &(String, Option<String>), addr: &str) {
        self.nodes.lock().await.remove(addr);
        let mut a = self.assignments.lock().expect("assignments lock");
        a.remove(key);
        a.retain(|_, v| v.addr != addr);
    }
}
