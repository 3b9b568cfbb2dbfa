//! `sys.*`: liveness and echo (PROTOCOL §3).

use crate::framework::{Access, Router};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Registers `sys.ping` (answers the node id) and `sys.echo` (answers its body).
pub fn register(router: &mut Router, node_id: Arc<str>) {
    router.route(
        "sys.ping",
        Access::Public,
        move |_ctx, _: Map<String, Value>| {
            let node = node_id.clone();
            async move { Ok(json!({ "node": &*node })) }
        },
    );
    router.route(
        "sys.echo",
        Access::Public,
        |_ctx, body: Map<String, Value>| async move { Ok(Value::Object(body)) },
    );
}
