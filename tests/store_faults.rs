//! Faults and limits of the MariaDB + Redis backend with real processes: Redis killed
//! and restarted, MariaDB stopped and frozen, and the connection pool's upper bound.

mod common;

use common::stores::{
    db_name, Backend, Client, MariaDb, Node, NodeSpec, Redis, Stores, DB_PASSWORD,
};
use dsf::protocol::ErrorCode;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn redis_has(redis: &Redis, id_card: &str) -> bool {
    redis.cli(&["EXISTS", &format!("dsf:{{bl:{id_card}}}:v")]) == "1"
}

/// Redis killed mid-test: every answer stays correct (from MariaDB); writes of cached
/// keys answer `unavailable` and apply nothing (their fence cannot be set); Redis
/// restarted: the cache is used again without restarting the node, writes work.
#[test]
fn redis_killed_then_restarted_answers_stay_correct_and_the_cache_comes_back() {
    let mut stores = Stores::new(Backend::MariaDbRedis);
    let (a, b) = (stores.node(), stores.node());
    let mut ca = a.client();
    let token = ca.login_new("ivan");
    let mut cb = b.client();
    cb.token = Some(token);
    ca.call(
        "blacklist.insert",
        json!({"id_card": "R-1", "name": "Before"}),
    )
    .unwrap();
    let listed = json!({"listed": true, "name": "Before"});
    assert_eq!(
        cb.call("blacklist.query", json!({"id_card": "R-1"}))
            .unwrap(),
        listed
    );
    let redis = stores.redis.as_mut().unwrap();
    assert!(redis_has(redis, "R-1"), "the answer was cached");

    redis.kill();
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(
            cb.call("blacklist.query", json!({"id_card": "R-1"}))
                .unwrap(),
            listed
        );
        assert_eq!(
            cb.call("blacklist.query", json!({"id_card": "R-2"}))
                .unwrap(),
            json!({"listed": false})
        );
    }
    // Writes of cached keys are refused while their fence cannot be set: nothing is
    // applied, and the other node still answers what the store holds.
    assert_eq!(
        ca.code(
            "blacklist.update",
            json!({"id_card": "R-1", "name": "During"}),
        ),
        ErrorCode::Unavailable
    );
    assert_eq!(
        ca.code("blacklist.insert", json!({"id_card": "R-2", "name": "New"}),),
        ErrorCode::Unavailable
    );
    assert_eq!(
        cb.call("blacklist.query", json!({"id_card": "R-1"}))
            .unwrap(),
        listed
    );
    assert_eq!(
        cb.call("blacklist.query", json!({"id_card": "R-2"}))
            .unwrap(),
        json!({"listed": false})
    );
    // Logins and sessions do not depend on Redis.
    let mut cc = a.client();
    cc.login_new("judy");
    cc.call("blacklist.query", json!({"id_card": "R-1"}))
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fallback was slow: {:?}",
        started.elapsed()
    );

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !redis_has(redis, "R-1") {
        assert!(Instant::now() < deadline, "the cache was not used again");
        assert_eq!(
            cb.call("blacklist.query", json!({"id_card": "R-1"}))
                .unwrap(),
            listed
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And writes work again (A may skip Redis for a moment after its last failure):
    // a write on A is seen through B's cache.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = ca.call(
        "blacklist.update",
        json!({"id_card": "R-1", "name": "After"}),
    ) {
        assert!(
            e.code == ErrorCode::Unavailable && Instant::now() < deadline,
            "update after Redis came back: {e:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        cb.call("blacklist.query", json!({"id_card": "R-1"}))
            .unwrap(),
        json!({"listed": true, "name": "After"})
    );
    let warnings = b.log().matches("redis unavailable").count();
    assert!(
        (1..=3).contains(&warnings),
        "warnings are logged, rate-limited: {warnings}"
    );
}

/// MariaDB stopped: `unavailable` or `timeout` within the configured timeout, never a
/// hang; cached answers are still served; everything works again when it returns.
/// Then the same with the server frozen (SIGSTOP), where only a deadline can help.
/// A node started while MariaDB is down keeps trying (capped backoff, a warning at
/// most every 10 s) instead of exiting, and serves once MariaDB is up; with
/// `store.startup_timeout` it gives up after that long and exits non-zero.
#[test]
fn a_node_started_before_mariadb_waits_for_it() {
    let db = MariaDb::owned();
    let url = db.fresh_database();
    db.stop();
    let dir = tempfile::tempdir().unwrap();

    let limited = dir.path().join("limited");
    std::fs::create_dir_all(&limited).unwrap();
    let t = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dsf"))
        .args([
            "node",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "",
            "--mysql",
            &url,
        ])
        .arg("--data")
        .arg(&limited)
        .env("DSF__STORE__PASSWORD", DB_PASSWORD)
        .env("DSF__STORE__STARTUP_TIMEOUT", "2s")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("store unavailable"), "{said}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());

    let spec = NodeSpec {
        mysql: Some(url),
        data: dir.path().join("waiting"),
        ..NodeSpec::default()
    }
    .env("STORE__ACQUIRE_TIMEOUT", "1s");
    let t = Instant::now();
    let starting = std::thread::spawn(move || Node::start(&spec));
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !starting.is_finished(),
        "the node started without its database"
    );
    db.start();
    let node = starting.join().unwrap();
    let waited = t.elapsed().as_secs() as usize;
    let mut c = node.client();
    c.login_new("late");
    c.call(
        "blacklist.insert",
        json!({"id_card": "W-1", "name": "Waited"}),
    )
    .unwrap();
    let log = node.log();
    let warnings = log.matches("waiting for the database").count();
    assert!((1..=1 + waited / 10).contains(&warnings), "{log}");
    assert!(log.contains("mysql store open"), "{log}");
}

#[test]
fn mariadb_outage_answers_unavailable_or_timeout_in_time_and_recovers() {
    let db = MariaDb::owned();
    let url = db.fresh_database();
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec {
        mysql: Some(url),
        redis: vec![redis.url()],
        data: dir.path().to_owned(),
        env: Vec::new(),
    }
    .env("STORE__QUERY_TIMEOUT", "1s")
    .env("STORE__ACQUIRE_TIMEOUT", "1s");
    let node = Node::start(&spec);
    let mut c = node.client();
    c.login_new("ken");
    c.call(
        "blacklist.insert",
        json!({"id_card": "M-1", "name": "Cached"}),
    )
    .unwrap();
    c.call("blacklist.query", json!({"id_card": "M-1"}))
        .unwrap();

    let bound = Duration::from_millis(2500); // query_timeout + scheduling slack
    let expect_outage = |c: &Client, op: &str, body: serde_json::Value| {
        let t = Instant::now();
        let code = c.code(op, body);
        // A write the store did not confirm in time may yet land: `outcome_unknown`.
        let unknown = op == "blacklist.insert" && code == ErrorCode::OutcomeUnknown;
        assert!(
            matches!(code, ErrorCode::Unavailable | ErrorCode::Timeout) || unknown,
            "{op}: {code:?}"
        );
        assert!(t.elapsed() < bound, "{op} took {:?}", t.elapsed());
    };

    for (round, (stop, resume)) in [
        (
            Box::new(|| db.stop()) as Box<dyn Fn()>,
            Box::new(|| db.start()) as Box<dyn Fn()>,
        ),
        (
            Box::new(|| signal(&db, "STOP")),
            Box::new(|| signal(&db, "CONT")),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let uncached = format!("M-2-{round}");
        stop();
        for _ in 0..3 {
            expect_outage(&c, "blacklist.query", json!({"id_card": uncached}));
            expect_outage(
                &c,
                "blacklist.insert",
                json!({"id_card": "M-3", "name": "X"}),
            );
            expect_outage(&c, "blacklist.search", json!({}));
            expect_outage(
                &c,
                "user.login",
                json!({"name": "ken", "password": "password123"}),
            );
        }
        // What the cache holds is still the truth: no write can have happened.
        assert_eq!(
            c.call("blacklist.query", json!({"id_card": "M-1"}))
                .unwrap(),
            json!({"listed": true, "name": "Cached"})
        );
        resume();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match c.call("blacklist.search", json!({"id_card": "M-1"})) {
                Ok(v) => {
                    assert_eq!(v["entries"][0]["name"], json!("Cached"));
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "no recovery: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        c.call("blacklist.query", json!({"id_card": uncached}))
            .unwrap();
        c.call(
            "user.login",
            json!({"name": "ken", "password": "password123"}),
        )
        .unwrap();
    }
}

fn signal(db: &MariaDb, sig: &str) {
    let pid = std::fs::read_to_string(db.dir.join("server.pid")).unwrap();
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), pid.trim()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

/// With `pool_max = 4`, a burst of 100 concurrent clients doing store-bound work never
/// opens more than 4 connections, and every request succeeds.
#[test]
fn pool_max_four_holds_under_a_burst_of_100_concurrent_clients() {
    let db = MariaDb::shared();
    let url = db.fresh_database();
    let name = db_name(&url).to_owned();
    let dir = tempfile::tempdir().unwrap();
    // No Redis: sessions and every answer come from MariaDB.
    let spec = NodeSpec {
        mysql: Some(url),
        redis: Vec::new(),
        data: dir.path().to_owned(),
        env: Vec::new(),
    }
    .env("STORE__POOL_MAX", "4")
    .env("STORE__POOL_MIN", "1")
    .env("LIMITS__REQUEST_TIMEOUT", "30s")
    .env("STORE__QUERY_TIMEOUT", "20s")
    .env("STORE__ACQUIRE_TIMEOUT", "20s");
    let node = Node::start(&spec);
    let token = node.client().login_new("liz");

    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU32::new(0));
    let watcher = {
        let (done, peak, name) = (done.clone(), peak.clone(), name.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let n = MariaDb::shared().connections_to(&name);
                peak.fetch_max(n, Ordering::Relaxed);
            }
        })
    };
    let ok = Arc::new(AtomicU32::new(0));
    let clients: Vec<_> = (0..100)
        .map(|i| {
            let (addr, token, ok) = (node.addr.clone(), token.clone(), ok.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(&addr);
                c.token = Some(token);
                for j in 0..10 {
                    let r = c.call(
                        "collector.report",
                        json!({"id_card": format!("P-{i}-{j}"), "name": "Burst"}),
                    );
                    if r.is_ok() {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    assert_eq!(ok.load(Ordering::Relaxed), 1000, "every request succeeded");
    let peak = peak.load(Ordering::Relaxed);
    assert!((1..=4).contains(&peak), "peak connections: {peak}");
    eprintln!("peak MariaDB connections during the burst: {peak}");
}

/// Two Redis servers in `cache.redis` share the keys by the hash ring; killing one
/// leaves answers correct and the other still serving its share from cache.
#[test]
fn keys_are_sharded_over_two_redis_servers_and_losing_one_cools_only_its_share() {
    let stores = Stores::new(Backend::MariaDbRedis);
    let second = Redis::start();
    let mut spec = stores.spec();
    spec.redis.push(second.url());
    let node = Node::start(&spec);
    let mut c = node.client();
    c.login_new("mia");
    let ids: Vec<String> = (0..40).map(|i| format!("H-{i}")).collect();
    for id in &ids {
        c.call("blacklist.insert", json!({"id_card": id, "name": "N"}))
            .unwrap();
        c.call("blacklist.query", json!({"id_card": id})).unwrap();
    }
    let first = stores.redis.as_ref().unwrap();
    let on_first: Vec<&String> = ids.iter().filter(|id| redis_has(first, id)).collect();
    let on_second: Vec<&String> = ids.iter().filter(|id| redis_has(&second, id)).collect();
    assert_eq!(
        on_first.len() + on_second.len(),
        ids.len(),
        "each key on one server"
    );
    assert!(
        !on_first.is_empty() && !on_second.is_empty(),
        "both servers hold keys: {} / {}",
        on_first.len(),
        on_second.len()
    );
    drop(second);
    for id in &ids {
        assert_eq!(
            c.call("blacklist.query", json!({"id_card": id})).unwrap(),
            json!({"listed": true, "name": "N"})
        );
    }
    // The surviving server still holds (and serves) its share.
    assert!(on_first.iter().all(|id| redis_has(first, id)));
    // A write is fenced on the server that owns its key: keys of the surviving server
    // are still written, keys of the lost one are refused and nothing is applied.
    c.call(
        "blacklist.update",
        json!({"id_card": on_first[0], "name": "M"}),
    )
    .unwrap();
    assert_eq!(
        c.code(
            "blacklist.update",
            json!({"id_card": on_second[0], "name": "M"}),
        ),
        ErrorCode::Unavailable
    );
    assert_eq!(
        c.call("blacklist.query", json!({"id_card": on_first[0]}))
            .unwrap(),
        json!({"listed": true, "name": "M"})
    );
    assert_eq!(
        c.call("blacklist.query", json!({"id_card": on_second[0]}))
            .unwrap(),
        json!({"listed": true, "name": "N"})
    );
}
