//! Batched point reads on MariaDB (`src/store/mysql/batch.rs`): with the cache off,
//! concurrent session checks and `blacklist.query` reads share statements, and each
//! still gets its own answer, sees every write acknowledged before it began, and is
//! answered in time when the database freezes. The node runs in this process (same
//! router and store as `dsf node`) so that the store's counters can be read.

mod common;

use common::stores::{db_name, Backend, MariaDb, Stores, DB_PASSWORD};
use dsf::protocol::{ErrorCode, Request, Response};
use dsf::runtime::{ConnMeta, Service};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An in-process node over `cfg`, with the cache off.
struct InProcess {
    node: Arc<dsf::node::NodeContext>,
    router: Arc<dsf::framework::Router>,
}

impl InProcess {
    async fn open(mut cfg: dsf::config::Config) -> InProcess {
        cfg.cache.enabled = false;
        cfg.cache.redis.clear();
        let opened = dsf::app::builder(cfg).open(Arc::from("t")).await.unwrap();
        let router = Arc::new(opened.router);
        InProcess {
            node: opened.node,
            router,
        }
    }

    fn call(
        &self,
        op: &str,
        body: Value,
        token: Option<&str>,
    ) -> impl std::future::Future<Output = Response> + Send + 'static {
        let meta = ConnMeta {
            id: 1,
            peer: "127.0.0.1:9".parse().unwrap(),
        };
        let mut req = Request::new(1, op, body);
        req.token = token.map(str::to_owned);
        self.router.call(meta, req)
    }

    /// Registers and logs in `name`; returns the token.
    async fn login(&self, name: &str) -> String {
        let creds = json!({"name": name, "password": "password123"});
        self.call("user.register", creds.clone(), None)
            .await
            .result
            .unwrap();
        let login = self.call("user.login", creds, None).await.result.unwrap();
        login["token"].as_str().unwrap().to_owned()
    }

    fn batched(&self) -> (u64, u64) {
        let s = self.node.store.stats();
        (
            s.batched_reads.load(Ordering::Relaxed),
            s.batched_statements.load(Ordering::Relaxed),
        )
    }
}

/// 400 concurrent uncached queries under three valid tokens, a revoked one and a
/// well-formed unknown one, over listed and unlisted id_cards: every answer is the
/// one for its own token and id_card, and the reads took far fewer statements.
#[test]
fn concurrent_uncached_reads_share_statements_and_each_gets_its_own_answer() {
    let stores = Stores::new(Backend::MariaDbRedis);
    smol::block_on(async {
        let n = InProcess::open(stores.config()).await;
        let mut tokens = Vec::new();
        for name in ["ann", "bob", "cid", "dan"] {
            tokens.push(n.login(name).await);
        }
        n.call("user.logout", json!({}), Some(&tokens[3]))
            .await
            .result
            .unwrap();
        tokens.push("ab".repeat(32));
        for i in 0..32 {
            let body = json!({"id_card": format!("L-{i}"), "name": format!("Name {i}")});
            n.call("blacklist.insert", body, Some(&tokens[0]))
                .await
                .result
                .unwrap();
        }
        let before = n.batched();
        let tasks: Vec<_> = (0..400)
            .map(|i| {
                let who = i % 5;
                let id = if i % 2 == 0 {
                    format!("L-{}", i % 32)
                } else {
                    format!("U-{i}")
                };
                let call = n.call(
                    "blacklist.query",
                    json!({"id_card": id}),
                    Some(&tokens[who]),
                );
                smol::spawn(async move { (who, i, call.await) })
            })
            .collect();
        for t in tasks {
            let (who, i, r) = t.await;
            match who {
                0..=2 if i % 2 == 0 => assert_eq!(
                    r.result.unwrap(),
                    json!({"listed": true, "name": format!("Name {}", i % 32)})
                ),
                0..=2 => assert_eq!(r.result.unwrap(), json!({"listed": false})),
                _ => assert_eq!(r.result.unwrap_err().code, ErrorCode::Unauthorized),
            }
        }
        let after = n.batched();
        let (reads, statements) = (after.0 - before.0, after.1 - before.1);
        // 400 session checks and 240 entry reads under valid tokens; the entry reads
        // beside a failing check (160) are sent unless the check failed first.
        assert!(
            (640..=800).contains(&reads),
            "{reads} reads went through the batches"
        );
        assert!(
            statements * 4 <= reads,
            "{reads} reads took {statements} statements"
        );
        println!("{reads} point reads in {statements} statements");
    });
}

/// Readers query one id_card without pause while a writer updates it 40 times: a
/// read that began after an update was acknowledged never answers an older name.
#[test]
fn a_read_begun_after_an_acknowledged_update_sees_it() {
    let stores = Stores::new(Backend::MariaDbRedis);
    smol::block_on(async {
        let n = Arc::new(InProcess::open(stores.config()).await);
        let token = n.login("eve").await;
        let set = |v: u64| json!({"id_card": "W-1", "name": format!("v{v:03}")});
        n.call("blacklist.insert", set(0), Some(&token))
            .await
            .result
            .unwrap();
        let acked = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..16)
            .map(|_| {
                let (n, acked, done, token) =
                    (n.clone(), acked.clone(), done.clone(), token.clone());
                smol::spawn(async move {
                    let mut reads = 0u64;
                    while done.load(Ordering::SeqCst) == 0 {
                        let floor = acked.load(Ordering::SeqCst);
                        let r = n
                            .call("blacklist.query", json!({"id_card": "W-1"}), Some(&token))
                            .await;
                        let name = r.result.unwrap()["name"].as_str().unwrap().to_owned();
                        let seen: u64 = name[1..].parse().unwrap();
                        assert!(seen >= floor, "read begun after v{floor} answered {name}");
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for v in 1..=40 {
            n.call("blacklist.update", set(v), Some(&token))
                .await
                .result
                .unwrap();
            acked.store(v, Ordering::SeqCst);
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
        done.store(1, Ordering::SeqCst);
        let mut total = 0;
        for r in readers {
            total += r.await;
        }
        assert!(total > 40, "readers made only {total} reads");
    });
}

/// MariaDB frozen (SIGSTOP) under 100 concurrent uncached queries: each is answered
/// `timeout` or `unavailable` within the query timeout and slack, none hangs; after
/// SIGCONT the same queries succeed.
#[test]
fn a_frozen_database_times_out_queued_reads_in_time_and_they_recover() {
    let db = MariaDb::owned();
    let url = db.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = dsf::config::Config::default();
    cfg.node.data_dir = dir.path().to_owned();
    cfg.store.url = url;
    cfg.store.password = DB_PASSWORD.to_owned();
    cfg.store.query_timeout = Duration::from_secs(1);
    cfg.store.acquire_timeout = Duration::from_secs(1);
    cfg.auth.argon2_memory_kib = 1024;
    cfg.auth.argon2_iterations = 1;
    assert!(!db_name(&cfg.store.url).is_empty());
    smol::block_on(async {
        let n = InProcess::open(cfg).await;
        let token = n.login("fay").await;
        let query = |i: usize| {
            n.call(
                "blacklist.query",
                json!({"id_card": format!("F-{i}")}),
                Some(&token),
            )
        };
        query(0).await.result.unwrap();
        db.signal("STOP");
        let started = Instant::now();
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let call = query(i);
                smol::spawn(async move { (call.await, started.elapsed()) })
            })
            .collect();
        for t in tasks {
            let (r, took) = t.await;
            let code = r.result.unwrap_err().code;
            assert!(
                matches!(code, ErrorCode::Timeout | ErrorCode::Unavailable),
                "{code:?}"
            );
            assert!(
                took < Duration::from_millis(2500),
                "answered after {took:?}"
            );
        }
        db.signal("CONT");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let tasks: Vec<_> = (0..100).map(|i| smol::spawn(query(i))).collect();
            let mut ok = 0;
            for t in tasks {
                ok += usize::from(t.await.result == Ok(json!({"listed": false})));
            }
            if ok == 100 {
                break;
            }
            assert!(Instant::now() < deadline, "only {ok} of 100 after SIGCONT");
            async_io::Timer::after(Duration::from_millis(200)).await;
        }
    });
}
