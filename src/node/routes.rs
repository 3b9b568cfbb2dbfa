//! How a service installs its operations: only those the node serves (`node.ops`),
//! and with which of them are safe to send twice.

use crate::framework::{Access, Ctx, Router};
use crate::protocol::ApiError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;

/// Installs operations into a node's router, filtered by the prefixes the node serves.
pub struct Routes<'r> {
    /// Where the operations go.
    router: &'r mut Router,
    /// `node.ops`: the prefixes this node serves; empty = all.
    ops: &'r [String],
    /// Operations declared safe to send twice, announced when the node registers.
    idempotent: &'r mut Vec<String>,
}

impl<'r> Routes<'r> {
    /// Routes into `router`, filtered by the prefixes in `ops` (empty: all).
    pub fn new(router: &'r mut Router, ops: &'r [String], idempotent: &'r mut Vec<String>) -> Self {
        Routes {
            router,
            ops,
            idempotent,
        }
    }

    /// Whether operation `op` is served.
    pub fn serves(&self, op: &str) -> bool {
        serves(self.ops, op)
    }

    /// Like [`Router::route`], skipped when `op` is not served.
    pub fn route<In, Out, F, Fut>(&mut self, op: &str, access: Access, f: F) -> &mut Self
    where
        F: Fn(Ctx, In) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Out, ApiError>> + Send + 'static,
        In: DeserializeOwned + Send + 'static,
        Out: Serialize + 'static,
    {
        if self.serves(op) {
            self.router.route(op, access, f);
        }
        self
    }

    /// Like [`Router::route_with`], skipped when `op` is not served.
    pub fn route_with<S, In, Out, F, Fut>(
        &mut self,
        op: &str,
        access: Access,
        state: &Arc<S>,
        f: F,
    ) -> &mut Self
    where
        S: Send + Sync + 'static,
        F: Fn(Arc<S>, Ctx, In) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Out, ApiError>> + Send + 'static,
        In: DeserializeOwned + Send + 'static,
        Out: Serialize + 'static,
    {
        if self.serves(op) {
            self.router.route_with(op, access, state.clone(), f);
        }
        self
    }

    /// Declares operations safe to send twice (reads, or writes that end in the same
    /// state): after a node fails with one in flight, the proxy and the directory
    /// client may repeat it on another node. Operations not declared are never
    /// repeated once they may have reached a node.
    pub fn idempotent(&mut self, ops: &[&str]) -> &mut Self {
        for op in ops {
            if self.serves(op) && !self.idempotent.iter().any(|o| o == op) {
                self.idempotent.push((*op).to_owned());
            }
        }
        self
    }
}

/// Whether `op` matches one of `prefixes` (empty: everything; `sys.` always).
pub fn serves(prefixes: &[String], op: &str) -> bool {
    prefixes.is_empty() || op.starts_with("sys.") || prefixes.iter().any(|p| op.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_filter_by_prefix_and_always_serve_sys() {
        let ops = vec!["user.".to_owned()];
        assert!(serves(&ops, "user.login"));
        assert!(serves(&ops, "sys.ping"));
        assert!(!serves(&ops, "blacklist.query"));
        assert!(serves(&[], "blacklist.query"));
    }

    #[test]
    fn only_served_operations_are_declared_idempotent() {
        let mut router = Router::new(std::time::Duration::from_secs(1));
        let ops = vec!["kv.".to_owned()];
        let mut idempotent = Vec::new();
        Routes::new(&mut router, &ops, &mut idempotent).idempotent(&[
            "kv.get",
            "user.login",
            "kv.get",
        ]);
        assert_eq!(idempotent, ["kv.get"]);
    }
}
