//! `sys.*`: liveness and echo (PROTOCOL §3).

use crate::framework::{Access, Router};
use crate::protocol::ApiError;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// The `sys.*` operations, all safe to send twice.
pub const IDEMPOTENT: &[&str] = &["sys.ping", "sys.echo", "sys.sleep"];

/// Longest `sys.sleep` accepted; the request deadline usually ends it sooner.
const MAX_SLEEP_MS: u64 = 60_000;

/// `sys.sleep` body.
#[derive(Debug, Deserialize)]
struct Sleep {
    /// Milliseconds to wait before answering.
    ms: u64,
}

/// Registers `sys.ping` (answers the node id) and `sys.echo` (answers its body); with
/// `debug_ops`, also `sys.sleep` (answers after `ms` milliseconds without using CPU).
pub fn register(router: &mut Router, node_id: Arc<str>, debug_ops: bool) {
    if debug_ops {
        router.route(
            "sys.sleep",
            Access::Public,
            |_ctx, body: Sleep| async move {
                if body.ms > MAX_SLEEP_MS {
                    return Err(ApiError::bad_request(format!(
                        "`ms` must be at most {MAX_SLEEP_MS}"
                    )));
                }
                async_io::Timer::after(Duration::from_millis(body.ms)).await;
                Ok(json!({ "slept_ms": body.ms }))
            },
        );
    }
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
