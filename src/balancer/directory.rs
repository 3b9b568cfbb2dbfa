//! The directory port (PROTOCOL §5): `lb.assign` and `lb.nodes`.
//!
//! Answers come straight from the current snapshot, without locks or awaits, so
//! every request is answered inline by the connection task.

use super::error::BalancerError;
use super::membership::Membership;
use super::snapshot::Group;
use crate::protocol::{Request, Response};
use crate::runtime::{BoxFuture, ConnMeta, Service};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The service `lb.assign` answers for when the request names none (PROTOCOL §5).
pub const DEFAULT_SERVICE: &str = "dsf";

/// `lb.assign` body. `op` is an extension: the service owning that operation (the
/// proxy's longest-prefix rule) is used when `service` is absent.
#[derive(Debug, Default, Deserialize)]
struct AssignBody {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    op: Option<String>,
}

/// The directory service.
pub struct Directory {
    /// Whose snapshot answers.
    membership: Arc<Membership>,
}

impl Directory {
    /// A directory over `membership`.
    pub fn new(membership: Arc<Membership>) -> Directory {
        Directory { membership }
    }

    fn handle(&self, req: Request) -> Result<Value, BalancerError> {
        match req.op.as_str() {
            "lb.assign" => self.assign(req.body),
            "lb.nodes" => Ok(self.nodes()),
            other => Err(BalancerError::BadRequest(format!(
                "`{other}` is not a directory operation (lb.assign, lb.nodes)"
            ))),
        }
    }

    fn assign(&self, body: Value) -> Result<Value, BalancerError> {
        let b: AssignBody =
            serde_json::from_value(body).map_err(|e| BalancerError::BadRequest(e.to_string()))?;
        let snap = self.membership.load();
        let (group, wanted): (Option<&Arc<Group>>, String) = match (&b.service, &b.op) {
            (Some(s), _) => (snap.service(s), format!("service `{s}`")),
            (None, Some(op)) => (snap.route(op), format!("operation `{op}`")),
            (None, None) => (
                snap.service(DEFAULT_SERVICE),
                format!("service `{DEFAULT_SERVICE}`"),
            ),
        };
        let group = group.ok_or_else(|| BalancerError::NoBackend(wanted.clone()))?;
        let i = group
            .pick(b.key.as_deref().map(str::as_bytes))
            .ok_or(BalancerError::NoBackend(wanted))?;
        let m = &group.members[i];
        m.load
            .assigned
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut answer = json!({"node": &*m.id, "addr": &*m.addr, "service": &*m.service});
        if let Some(op) = &b.op {
            answer["idempotent"] = Value::Bool(m.idempotent(op));
        }
        Ok(answer)
    }

    fn nodes(&self) -> Value {
        let snap = self.membership.load();
        let nodes: Vec<Value> = snap
            .nodes
            .iter()
            .map(|m| {
                json!({
                    "node": &*m.id,
                    "addr": &*m.addr,
                    "service": &*m.service,
                    "weight": m.weight,
                    "ops": m.ops,
                    "idempotent": m.idempotent,
                    "state": m.state.as_str(),
                    "conns": m.load.reported_conns.load(Ordering::Relaxed),
                    "inflight": m.load.reported_inflight.load(Ordering::Relaxed),
                })
            })
            .collect();
        json!({ "nodes": nodes })
    }
}

impl Service for Directory {
    fn call(&self, _conn: ConnMeta, req: Request) -> BoxFuture<'static, Response> {
        let id = req.id;
        let result = self.handle(req).map_err(|e| e.to_api());
        Box::pin(std::future::ready(Response {
            id: Some(id),
            result,
        }))
    }
}
