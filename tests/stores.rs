//! The behavioural suite of PROTOCOL §3, run against both backends: the embedded
//! stores (SQLite and the in-process cache) and MariaDB with Redis, all real
//! processes on free ports.

mod common;

use common::stores::{Backend, Stores};
use dsf::protocol::{ErrorCode, Request};
use dsf::runtime::{ConnMeta, Service};
use serde_json::{json, Value};
use std::sync::Arc;

use common::stores::{both_backends, tls_backend};

both_backends!(
    every_operation_and_error_code,
    token_from_one_node_works_on_another_and_logout_revokes_it_on_both,
    a_write_on_one_node_is_visible_at_once_through_another_nodes_cached_query,
    sql_injection_strings_are_stored_and_returned_verbatim,
    repeated_failed_logins_are_rate_limited,
    fifty_concurrent_misses_for_one_key_cause_one_store_read,
    a_migration_applied_again_after_an_interruption_succeeds,
);

// The business suite again with both stores on TLS (PROTOCOL §8).
tls_backend!(
    every_operation_and_error_code,
    token_from_one_node_works_on_another_and_logout_revokes_it_on_both,
    a_write_on_one_node_is_visible_at_once_through_another_nodes_cached_query,
    sql_injection_strings_are_stored_and_returned_verbatim,
);

/// Every operation of §3 answers as specified, including each error code.
fn every_operation_and_error_code(backend: Backend) {
    let stores = Stores::new(backend);
    let node = stores.node();
    let mut c = node.client();

    // user.register
    let creds = json!({"name": "alice", "password": "password123"});
    let uid = c.call("user.register", creds.clone()).unwrap()["user_id"]
        .as_u64()
        .unwrap();
    assert!(uid > 0);
    assert_eq!(c.code("user.register", creds.clone()), ErrorCode::Conflict);
    for bad in [
        json!({"name": "", "password": "password123"}),
        json!({"name": "a b", "password": "password123"}),
        json!({"name": "x".repeat(33), "password": "password123"}),
        json!({"name": "bob", "password": "short"}),
        json!({"name": "bob", "password": "p".repeat(129)}),
        json!({"name": "bob"}),
    ] {
        assert_eq!(
            c.code("user.register", bad.clone()),
            ErrorCode::BadRequest,
            "{bad}"
        );
    }

    // user.login: same answer for unknown name and wrong password.
    let wrong = c
        .call(
            "user.login",
            json!({"name": "alice", "password": "wrong-password"}),
        )
        .unwrap_err();
    let unknown = c
        .call(
            "user.login",
            json!({"name": "nobody", "password": "password123"}),
        )
        .unwrap_err();
    assert_eq!(wrong.code, ErrorCode::Unauthorized);
    assert_eq!(wrong, unknown);
    let login = c.call("user.login", creds).unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64, "256-bit hex token");
    assert_eq!(login["expires_in_s"], json!(3600));

    // Authenticated operations need a valid token.
    let q = json!({"id_card": "ID-1"});
    assert_eq!(
        c.code("blacklist.query", q.clone()),
        ErrorCode::Unauthorized
    );
    c.token = Some("f".repeat(64));
    assert_eq!(
        c.code("blacklist.query", q.clone()),
        ErrorCode::Unauthorized
    );
    c.token = Some(token.clone());

    // blacklist.insert / query / update / delete.
    assert_eq!(
        c.call("blacklist.query", q.clone()).unwrap(),
        json!({"listed": false})
    );
    let id = c
        .call(
            "blacklist.insert",
            json!({"id_card": "ID-1", "name": "Mallory"}),
        )
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    assert!(id > 0);
    assert_eq!(
        c.code(
            "blacklist.insert",
            json!({"id_card": "ID-1", "name": "Other"})
        ),
        ErrorCode::Conflict
    );
    assert_eq!(
        c.call("blacklist.query", q.clone()).unwrap(),
        json!({"listed": true, "name": "Mallory"})
    );
    assert_eq!(
        c.call(
            "blacklist.update",
            json!({"id_card": "ID-1", "name": "Mallory B."})
        )
        .unwrap(),
        json!({})
    );
    // Renaming to the same name is not "not found".
    c.call(
        "blacklist.update",
        json!({"id_card": "ID-1", "name": "Mallory B."}),
    )
    .unwrap();
    assert_eq!(
        c.call("blacklist.query", q.clone()).unwrap(),
        json!({"listed": true, "name": "Mallory B."})
    );
    assert_eq!(
        c.code(
            "blacklist.update",
            json!({"id_card": "ID-404", "name": "X"})
        ),
        ErrorCode::NotFound
    );
    assert_eq!(
        c.code("blacklist.delete", json!({"id_card": "ID-404"})),
        ErrorCode::NotFound
    );
    for bad in [
        json!({"id_card": "", "name": "X"}),
        json!({"id_card": "x".repeat(65), "name": "X"}),
        json!({"id_card": "ID-2", "name": ""}),
        json!({"id_card": "ID-2", "name": "n".repeat(65)}),
        json!({"id_card": "ID-2", "name": "nul\u{0}"}),
        json!({"id_card": 7, "name": "X"}),
    ] {
        assert_eq!(
            c.code("blacklist.insert", bad.clone()),
            ErrorCode::BadRequest,
            "{bad}"
        );
    }
    assert_eq!(c.code("blacklist.query", json!({})), ErrorCode::BadRequest);
    // 64 characters (not bytes) is the limit.
    let long = "é".repeat(64);
    c.call(
        "blacklist.insert",
        json!({"id_card": long, "name": "ü".repeat(64)}),
    )
    .unwrap();

    // blacklist.search: filters, order, limits.
    for i in 0..60 {
        c.call(
            "blacklist.insert",
            json!({"id_card": format!("S-{i:03}"), "name": format!("Smith {i}")}),
        )
        .unwrap();
    }
    let all = c.call("blacklist.search", json!({})).unwrap();
    assert_eq!(
        all["entries"].as_array().unwrap().len(),
        50,
        "default limit"
    );
    let some = c
        .call(
            "blacklist.search",
            json!({"name_prefix": "Smith 1", "limit": 5}),
        )
        .unwrap();
    let names: Vec<&str> = some["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Smith 1", "Smith 10", "Smith 11", "Smith 12", "Smith 13"]
    );
    // Prefixes are exact: case-sensitive, and whole characters of any script.
    let names = |v: Value| -> Vec<String> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let none = c
        .call("blacklist.search", json!({"name_prefix": "smith 1"}))
        .unwrap();
    assert_eq!(names(none), Vec::<String>::new(), "case-sensitive");
    for (id, name) in [
        ("U-1", "Zoë"),
        ("U-2", "Zoe"),
        ("U-3", "Zoë😀"),
        ("U-4", "Zoë\u{10FFFF}"),
    ] {
        c.call("blacklist.insert", json!({"id_card": id, "name": name}))
            .unwrap();
    }
    let zoe = c
        .call("blacklist.search", json!({"name_prefix": "Zoë"}))
        .unwrap();
    assert_eq!(names(zoe), ["Zoë", "Zoë😀", "Zoë\u{10FFFF}"]);
    let emoji = c
        .call("blacklist.search", json!({"name_prefix": "Zoë😀"}))
        .unwrap();
    assert_eq!(names(emoji), ["Zoë😀"]);
    for id in ["U-1", "U-2", "U-3", "U-4"] {
        c.call("blacklist.delete", json!({"id_card": id})).unwrap();
    }
    let one = c
        .call("blacklist.search", json!({"id_card": "S-007"}))
        .unwrap();
    assert_eq!(
        one,
        json!({"entries": [{"id_card": "S-007", "name": "Smith 7"}]})
    );
    let many = c.call("blacklist.search", json!({"limit": 500})).unwrap();
    assert_eq!(many["entries"].as_array().unwrap().len(), 62);
    for bad in [
        json!({"limit": 0}),
        json!({"limit": 501}),
        json!({"limit": -1}),
    ] {
        assert_eq!(
            c.code("blacklist.search", bad.clone()),
            ErrorCode::BadRequest,
            "{bad}"
        );
    }

    // collector.report: recorded, answers whether listed.
    let r1 = c
        .call(
            "collector.report",
            json!({"id_card": "ID-1", "name": "Mallory", "source": "camera 4"}),
        )
        .unwrap();
    assert_eq!(r1["listed"], json!(true));
    let r2 = c
        .call(
            "collector.report",
            json!({"id_card": "ID-9", "name": "Eve"}),
        )
        .unwrap();
    assert_eq!(r2["listed"], json!(false));
    assert!(r2["report_id"].as_u64().unwrap() > r1["report_id"].as_u64().unwrap());
    assert_eq!(
        c.code(
            "collector.report",
            json!({"id_card": "ID-9", "name": "Eve", "source": ""})
        ),
        ErrorCode::BadRequest
    );

    // blacklist.delete, then the entry is gone.
    assert_eq!(c.call("blacklist.delete", q.clone()).unwrap(), json!({}));
    assert_eq!(
        c.call("blacklist.query", q.clone()).unwrap(),
        json!({"listed": false})
    );

    // Unknown operations are unknown_type.
    assert_eq!(c.code("nope.nothing", json!({})), ErrorCode::UnknownType);

    // user.logout: the token stops working.
    assert_eq!(c.call("user.logout", json!({})).unwrap(), json!({}));
    assert_eq!(c.code("blacklist.query", q), ErrorCode::Unauthorized);
    assert_eq!(c.code("user.logout", json!({})), ErrorCode::Unauthorized);
}

/// A token issued by node A is accepted by node B; logging out on B revokes it on A.
fn token_from_one_node_works_on_another_and_logout_revokes_it_on_both(backend: Backend) {
    let stores = Stores::new(backend);
    let (a, b) = (stores.node(), stores.node());
    let mut ca = a.client();
    let token = ca.login_new("carol");
    let mut cb = b.client();
    cb.token = Some(token);
    let q = json!({"id_card": "T-1"});
    // Both nodes accept it (and cache the session).
    for _ in 0..3 {
        ca.call("blacklist.query", q.clone()).unwrap();
        cb.call("blacklist.query", q.clone()).unwrap();
    }
    cb.call("user.logout", json!({})).unwrap();
    assert_eq!(
        ca.code("blacklist.query", q.clone()),
        ErrorCode::Unauthorized
    );
    assert_eq!(cb.code("blacklist.query", q), ErrorCode::Unauthorized);
    // A new login gives a new, working token.
    let again = ca
        .call(
            "user.login",
            json!({"name": "carol", "password": "password123"}),
        )
        .unwrap();
    ca.token = again["token"].as_str().map(str::to_owned);
    ca.call("blacklist.query", json!({"id_card": "T-1"}))
        .unwrap();
}

/// Node B has cached an answer; a write acknowledged by node A is what B answers next.
fn a_write_on_one_node_is_visible_at_once_through_another_nodes_cached_query(backend: Backend) {
    let stores = Stores::new(backend);
    let (a, b) = (stores.node(), stores.node());
    let mut ca = a.client();
    let token = ca.login_new("dave");
    let mut cb = b.client();
    cb.token = Some(token);
    for i in 0..20 {
        let id = format!("V-{i}");
        let q = json!({"id_card": id});
        // B caches "not listed", then sees A's insert at once.
        cb.cache_miss_then_see_insert(&ca, &id);
        ca.call("blacklist.update", json!({"id_card": id, "name": "second"}))
            .unwrap();
        assert_eq!(
            cb.call("blacklist.query", q.clone()).unwrap(),
            json!({"listed": true, "name": "second"})
        );
        ca.call("blacklist.delete", json!({"id_card": id})).unwrap();
        assert_eq!(
            cb.call("blacklist.query", q).unwrap(),
            json!({"listed": false})
        );
    }
    if let Some(redis) = &stores.redis {
        // The answers above did go through Redis.
        let keys = redis.cli(&["--scan", "--pattern", "dsf:{bl:*"]);
        assert!(!keys.is_empty(), "no blacklist keys in Redis");
    }
}

/// Text that would break SQL built by string formatting is stored and returned as is.
fn sql_injection_strings_are_stored_and_returned_verbatim(backend: Backend) {
    let stores = Stores::new(backend);
    let node = stores.node();
    let mut c = node.client();
    c.login_new("erin");
    let evil = [
        "'; DROP TABLE blacklist; --",
        "\" OR \"1\"=\"1",
        "x' OR '1'='1",
        "Robert'); DELETE FROM users;--",
        "%_\\%",
        "1; SELECT SLEEP(10)",
        "' UNION SELECT password_hash FROM users --",
    ];
    for (i, s) in evil.iter().enumerate() {
        let id_card = format!("{s}{i}");
        c.call("blacklist.insert", json!({"id_card": id_card, "name": s}))
            .unwrap();
        assert_eq!(
            c.call("blacklist.query", json!({"id_card": id_card}))
                .unwrap(),
            json!({"listed": true, "name": s})
        );
        let found = c
            .call(
                "blacklist.search",
                json!({"id_card": id_card, "name_prefix": s}),
            )
            .unwrap();
        assert_eq!(found, json!({"entries": [{"id_card": id_card, "name": s}]}));
        let r = c
            .call(
                "collector.report",
                json!({"id_card": id_card, "name": s, "source": s}),
            )
            .unwrap();
        assert_eq!(r["listed"], json!(true));
    }
    // `%` and `_` in a prefix are literal.
    let found = c
        .call("blacklist.search", json!({"name_prefix": "%"}))
        .unwrap();
    assert_eq!(found["entries"].as_array().unwrap().len(), 1);
    // Nothing was dropped or deleted; users still log in.
    let all = c.call("blacklist.search", json!({"limit": 500})).unwrap();
    assert_eq!(all["entries"].as_array().unwrap().len(), evil.len());
    c.call(
        "user.login",
        json!({"name": "erin", "password": "password123"}),
    )
    .unwrap();
    // A user name with SQL in it is refused by validation, not by accident.
    assert_eq!(
        c.code(
            "user.register",
            json!({"name": "x' OR 1=1 --", "password": "password123"})
        ),
        ErrorCode::BadRequest
    );
}

/// After `max_failed_logins` failures a name gets `rate_limited`, even with the right
/// password; other names are unaffected.
fn repeated_failed_logins_are_rate_limited(backend: Backend) {
    let stores = Stores::new(backend);
    let node = common::stores::Node::start(&stores.spec().env("AUTH__MAX_FAILED_LOGINS", "3"));
    let mut c = node.client();
    c.login_new("frank");
    c.login_new("grace");
    let wrong = json!({"name": "frank", "password": "not-the-password"});
    for _ in 0..3 {
        assert_eq!(c.code("user.login", wrong.clone()), ErrorCode::Unauthorized);
    }
    assert_eq!(c.code("user.login", wrong), ErrorCode::RateLimited);
    assert_eq!(
        c.code(
            "user.login",
            json!({"name": "frank", "password": "password123"})
        ),
        ErrorCode::RateLimited
    );
    c.call(
        "user.login",
        json!({"name": "grace", "password": "password123"}),
    )
    .unwrap();
    // Unknown names are throttled the same way (no hint that the name is free).
    let ghost = json!({"name": "ghost", "password": "password123"});
    for _ in 0..3 {
        assert_eq!(c.code("user.login", ghost.clone()), ErrorCode::Unauthorized);
    }
    assert_eq!(c.code("user.login", ghost), ErrorCode::RateLimited);
}

/// 50 concurrent `blacklist.query` misses for one key make one store read. The node
/// runs in this process (same router, store and cache as `dsf node`) so the store's
/// own read counter can be checked.
fn fifty_concurrent_misses_for_one_key_cause_one_store_read(backend: Backend) {
    let stores = Stores::new(backend);
    let cfg = stores.config();
    smol::block_on(async {
        let opened = dsf::app::builder(cfg.clone())
            .open(Arc::from("t"))
            .await
            .unwrap();
        let (app, router) = (opened.node, Arc::new(opened.router));
        let meta = ConnMeta {
            id: 1,
            peer: "127.0.0.1:9".parse().unwrap(),
        };
        let call = |op: &str, body: Value, token: Option<String>| {
            let mut req = Request::new(1, op, body);
            req.token = token;
            router.call(meta, req)
        };
        let creds = json!({"name": "heidi", "password": "password123"});
        call("user.register", creds.clone(), None)
            .await
            .result
            .unwrap();
        let login = call("user.login", creds, None).await.result.unwrap();
        let token = login["token"].as_str().map(str::to_owned);
        call(
            "blacklist.insert",
            json!({"id_card": "HOT", "name": "Hot Key"}),
            token.clone(),
        )
        .await
        .result
        .unwrap();
        // Warm the session so that all 50 reach the blacklist read together.
        call("blacklist.query", json!({"id_card": "warm"}), token.clone())
            .await
            .result
            .unwrap();
        let before = app.store.stats().blacklist_reads();
        let calls: Vec<_> = (0..50)
            .map(|_| call("blacklist.query", json!({"id_card": "HOT"}), token.clone()))
            .collect();
        let tasks: Vec<_> = calls.into_iter().map(smol::spawn).collect();
        for t in tasks {
            assert_eq!(
                t.await.result.unwrap(),
                json!({"listed": true, "name": "Hot Key"})
            );
        }
        assert_eq!(app.store.stats().blacklist_reads() - before, 1);
        // And the next read is a cache hit.
        call("blacklist.query", json!({"id_card": "HOT"}), token.clone())
            .await
            .result
            .unwrap();
        assert_eq!(app.store.stats().blacklist_reads() - before, 1);
    });
}

/// A migration whose statements ran but whose version was not recorded (the process
/// died in between; MySQL DDL is not transactional) is applied again at the next
/// start without failing, and the schema is what it should be.
fn a_migration_applied_again_after_an_interruption_succeeds(backend: Backend) {
    let stores = Stores::new(backend);
    let node = stores.node();
    let mut c = common::stores::Client::connect(&node.addr);
    c.login_new("mig");
    c.call("blacklist.insert", json!({"id_card": "M-2", "name": "Ma"}))
        .unwrap();
    c.call("blacklist.insert", json!({"id_card": "M-1", "name": "Mb"}))
        .unwrap();
    drop(c);
    drop(node);
    let forget = "DELETE FROM schema_migrations WHERE version = 2";
    match &stores.mysql {
        Some(url) => {
            let db = common::stores::db_name(url);
            common::stores::MariaDb::shared().sql(&format!("USE {db}; {forget}"));
        }
        None => {
            let path = stores.dir.path().join("dsf.sqlite3");
            rusqlite::Connection::open(path)
                .unwrap()
                .execute(forget, [])
                .unwrap();
        }
    }
    let node = stores.node();
    let mut c = common::stores::Client::connect(&node.addr);
    c.token = Some(
        c.call(
            "user.login",
            json!({"name": "mig", "password": "password123"}),
        )
        .unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let found = c
        .call("blacklist.search", json!({"name_prefix": "M"}))
        .unwrap();
    assert_eq!(
        found,
        json!({"entries": [{"id_card": "M-2", "name": "Ma"}, {"id_card": "M-1", "name": "Mb"}]}),
        "name order"
    );
}
