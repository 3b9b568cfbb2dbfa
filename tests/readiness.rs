//! A node's `/readyz` follows its backing stores: unready while Redis or MariaDB is
//! down (with the reason), ready again when they return; store and cache metrics move.

mod common;

use common::process::{http_get, metric};
use common::stores::{free_port, MariaDb, Node, NodeSpec, Redis};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Polls `/readyz` until its `ready` flag is `want`; returns the last body.
fn wait_ready(admin: &str, want: bool, within: Duration) -> Value {
    let t0 = Instant::now();
    loop {
        let (status, body) = http_get(admin, "/readyz");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if v["ready"] == json!(want) {
            assert_eq!(status, if want { 200 } else { 503 }, "{body}");
            return v;
        }
        assert!(
            t0.elapsed() < within,
            "/readyz never became ready={want}: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Redis stopped → unready (cache); MariaDB stopped → unready (store); both back → ready.
#[test]
fn readyz_follows_redis_and_mariadb() {
    let db = MariaDb::owned();
    let url = db.fresh_database();
    let mut redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let spec = NodeSpec {
        mysql: Some(url),
        redis: vec![redis.url()],
        data: dir.path().to_owned(),
        env: Vec::new(),
    }
    .env("ADMIN__LISTEN", &admin)
    .env("STORE__QUERY_TIMEOUT", "1s")
    .env("STORE__ACQUIRE_TIMEOUT", "1s");
    let node = Node::start(&spec);
    let ready = wait_ready(&admin, true, Duration::from_secs(10));
    assert_eq!(ready["checks"]["store"], "ok");
    assert_eq!(ready["checks"]["cache"], "ok");

    // Traffic moves the store and cache metrics.
    let mut c = node.client();
    c.login_new("ada");
    c.call("blacklist.insert", json!({"id_card": "R-1", "name": "X"}))
        .unwrap();
    for _ in 0..3 {
        c.call("blacklist.query", json!({"id_card": "R-1"}))
            .unwrap();
    }
    let (_, text) = http_get(&admin, "/metrics");
    assert!(
        metric(&text, "dsf_cache_lookups_total", &[("result", "hit")]) >= 2.0,
        "{text}"
    );
    assert!(metric(&text, "dsf_store_blacklist_reads_total", &[]) >= 1.0);
    assert!(text.contains("dsf_store_pool_connections"), "{text}");

    redis.kill();
    let down = wait_ready(&admin, false, Duration::from_secs(10));
    assert_eq!(down["checks"]["store"], "ok");
    assert_ne!(down["checks"]["cache"], "ok");
    redis.restart();
    wait_ready(&admin, true, Duration::from_secs(15));

    db.stop();
    let down = wait_ready(&admin, false, Duration::from_secs(15));
    let why = down["checks"]["store"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("mysql store"), "{down}");
    assert!(
        !why.contains("127.0.0.1"),
        "no host names in the probe: {why}"
    );
    db.start();
    wait_ready(&admin, true, Duration::from_secs(30));
}
