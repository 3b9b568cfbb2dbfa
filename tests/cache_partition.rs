//! A writer cut off from Redis (connections open, packets held: a partition, not a
//! crash) on two nodes sharing one MariaDB and one Redis. Node A reaches Redis through
//! a pausable relay ([`common::relay`]); node B directly. The promise under test
//! (PROTOCOL §3, docs/stores.md): once a write is acknowledged, no node serves an
//! older value, and once `user.logout` is acknowledged no node accepts the token.
//! Also the fence scripts themselves against a real Redis.

mod common;

use common::relay::Relay;
use common::stores::{Backend, Client, Node, Redis, Stores};
use dsf::cache::redis::{holders_key, lock_key, value_key, RedisInstance};
use dsf::cache::script::RELEASE;
use dsf::protocol::ErrorCode;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// `store.query_timeout` of the test nodes: the fence's hold is then
/// 2 × 1 s + 0.25 s + 1 s = 3.25 s.
const QUERY_TIMEOUT: &str = "1s";
const HOLD: Duration = Duration::from_millis(3250);

/// Node A through `relay`, node B directly, both on `stores`.
fn two_nodes(stores: &Stores, relay: &Relay) -> (Node, Node) {
    let mut spec_a = stores.spec().env("STORE__QUERY_TIMEOUT", QUERY_TIMEOUT);
    spec_a.redis = vec![relay.redis_url()];
    let spec_b = stores.spec().env("STORE__QUERY_TIMEOUT", QUERY_TIMEOUT);
    (Node::start(&spec_a), Node::start(&spec_b))
}

fn relay_to(redis: &Redis) -> Relay {
    Relay::start(&format!("127.0.0.1:{}", redis.port))
}

fn name_on(c: &Client, id_card: &str) -> Value {
    c.call("blacklist.query", json!({ "id_card": id_card }))
        .unwrap_or_else(|e| panic!("blacklist.query {id_card}: {e:?}"))
}

fn listed(name: &str) -> Value {
    json!({"listed": true, "name": name})
}

/// Retries `op` on `c` until it is acknowledged (after a heal, the node skips Redis
/// for a second and refuses writes meanwhile).
fn until_acknowledged(c: &Client, op: &str, body: Value) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match c.call(op, body.clone()) {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline && e.code == ErrorCode::Unavailable => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{op} {body} never acknowledged after the heal: {e:?}"),
        }
    }
}

/// A cut off from Redis: its writes of cached keys (and its logouts) are refused with
/// `unavailable`, nothing is applied, and B keeps answering what the store holds.
/// After the heal the same writes are acknowledged and B sees them at once.
#[test]
fn a_writer_cut_from_redis_acknowledges_no_write_and_no_logout() {
    let stores = Stores::new(Backend::MariaDbRedis);
    let relay = relay_to(stores.redis.as_ref().unwrap());
    let (a, b) = two_nodes(&stores, &relay);
    let mut ca = a.client();
    let token = ca.login_new("pat");
    let mut cb = b.client();
    cb.token = Some(token.clone());
    ca.call("blacklist.insert", json!({"id_card": "P-1", "name": "Old"}))
        .unwrap();
    assert_eq!(name_on(&cb, "P-1"), listed("Old"));

    relay.pause();
    for i in 0..5 {
        let started = Instant::now();
        let name = format!("New{i}");
        let code = ca.code("blacklist.update", json!({"id_card": "P-1", "name": name}));
        assert!(
            matches!(code, ErrorCode::Unavailable | ErrorCode::Timeout),
            "update {i} on A while cut from Redis answered {code:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "update {i} took {:?} to be refused",
            started.elapsed()
        );
        // Not applied anywhere: B's cache and the store agree on the old name.
        assert_eq!(
            name_on(&cb, "P-1"),
            listed("Old"),
            "after refused update {i}"
        );
        let found = cb
            .call("blacklist.search", json!({"id_card": "P-1"}))
            .unwrap();
        assert_eq!(found["entries"][0]["name"], "Old", "store after update {i}");
    }
    for i in 0..3 {
        let code = ca.code("user.logout", json!({}));
        assert!(
            matches!(code, ErrorCode::Unavailable | ErrorCode::Timeout),
            "logout {i} on A while cut from Redis answered {code:?}"
        );
        // Not acknowledged, so the session rightly stays valid everywhere.
        cb.call("blacklist.query", json!({"id_card": "P-1"}))
            .expect("the session of a refused logout stays valid");
    }

    relay.resume();
    until_acknowledged(
        &ca,
        "blacklist.update",
        json!({"id_card": "P-1", "name": "Healed"}),
    );
    assert_eq!(name_on(&cb, "P-1"), listed("Healed"));
    assert_eq!(name_on(&ca, "P-1"), listed("Healed"));
    until_acknowledged(&ca, "user.logout", json!({}));
    assert_eq!(
        cb.code("blacklist.query", json!({"id_card": "P-1"})),
        ErrorCode::Unauthorized,
        "B accepted a token whose logout was acknowledged"
    );
}

/// A fences, writes MariaDB, and loses Redis before it can release: the write is
/// acknowledged, and B never serves the old value — not while the fence holds (B reads
/// the store and fills nothing) and not after it expired (the next fill reads the
/// committed value). The same for a logout: B rejects the token at once.
#[test]
fn a_writer_that_loses_redis_after_the_fence_is_acknowledged_and_b_never_serves_old() {
    let stores = Stores::new(Backend::MariaDbRedis);
    let redis = stores.redis.as_ref().unwrap();
    let relay = relay_to(redis);
    let (a, b) = two_nodes(&stores, &relay);
    let mut ca = a.client();
    let token = ca.login_new("quinn");
    let mut cb = b.client();
    cb.token = Some(token.clone());
    ca.call("blacklist.insert", json!({"id_card": "Q-1", "name": "Old"}))
        .unwrap();
    assert_eq!(name_on(&cb, "Q-1"), listed("Old"));
    assert_eq!(
        redis.cli(&["GET", &value_key("bl:Q-1")]),
        "+Old",
        "B cached the old name"
    );

    relay.pause_on(RELEASE.get_hash().as_bytes());
    ca.call("blacklist.update", json!({"id_card": "Q-1", "name": "New"}))
        .expect("a write whose fence was set is acknowledged without its release");
    let acked = Instant::now();
    assert!(relay.is_paused(), "the release was cut off on its way");
    assert_eq!(
        redis.cli(&["EXISTS", &lock_key("bl:Q-1")]),
        "1",
        "fence held"
    );

    // Through the fence's hold and past its expiry, B only ever answers the new name.
    let mut reads = 0;
    while acked.elapsed() < HOLD + Duration::from_secs(2) {
        assert_eq!(
            name_on(&cb, "Q-1"),
            listed("New"),
            "B after {:?} (read {reads})",
            acked.elapsed()
        );
        reads += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(name_on(&ca, "Q-1"), listed("New"), "A reads its own write");
    // The fence expired by itself, and the cache serves reads again, with the new name.
    assert_eq!(redis.cli(&["EXISTS", &lock_key("bl:Q-1")]), "0");
    assert_eq!(redis.cli(&["EXISTS", &holders_key("bl:Q-1")]), "0");
    assert_eq!(redis.cli(&["GET", &value_key("bl:Q-1")]), "+New");
    eprintln!("B answered {reads} reads, none stale");

    // The held release arrives late; a new write's fence is not lifted by it.
    relay.resume();
    until_acknowledged(
        &ca,
        "blacklist.update",
        json!({"id_card": "Q-1", "name": "Newer"}),
    );
    assert_eq!(name_on(&cb, "Q-1"), listed("Newer"));

    // Logout under the same cut: B has the session cached, A's release is lost.
    cb.call("blacklist.query", json!({"id_card": "Q-1"}))
        .expect("session valid on B");
    relay.pause_on(RELEASE.get_hash().as_bytes());
    ca.call("user.logout", json!({}))
        .expect("a logout whose fence was set is acknowledged");
    assert!(relay.is_paused(), "the logout's release was cut off");
    let acked = Instant::now();
    while acked.elapsed() < HOLD + Duration::from_secs(1) {
        assert_eq!(
            cb.code("blacklist.query", json!({"id_card": "Q-1"})),
            ErrorCode::Unauthorized,
            "B accepted a revoked token {:?} after the logout",
            acked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    relay.resume();
}

/// A *reader* cut off from Redis (its per-loop connections hold unanswered reads):
/// each query is answered from the store within a bound, B's acknowledged write is
/// what A answers, and after the heal A reads through Redis again (Redis counts its
/// hits) without a restart.
#[test]
fn a_reader_cut_from_redis_answers_from_the_store_and_uses_redis_again() {
    let stores = Stores::new(Backend::MariaDbRedis);
    let redis = stores.redis.as_ref().unwrap();
    let relay = relay_to(redis);
    let (a, b) = two_nodes(&stores, &relay);
    let mut cb = b.client();
    let token = cb.login_new("quin");
    let mut ca = a.client();
    ca.token = Some(token);
    cb.call("blacklist.insert", json!({"id_card": "Q-1", "name": "One"}))
        .unwrap();
    assert_eq!(name_on(&ca, "Q-1"), listed("One"));

    relay.pause();
    for i in 0..6 {
        let started = Instant::now();
        assert_eq!(
            name_on(&ca, "Q-1"),
            listed(if i < 3 { "One" } else { "Two" })
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "read {i} while cut took {:?}",
            started.elapsed()
        );
        if i == 2 {
            cb.call("blacklist.update", json!({"id_card": "Q-1", "name": "Two"}))
                .unwrap();
        }
    }

    relay.resume();
    let hits = || -> u64 {
        let info = redis.cli(&["INFO", "stats"]);
        info.lines()
            .find_map(|l| l.strip_prefix("keyspace_hits:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    // Cached again through B, then read by A alone.
    assert_eq!(name_on(&cb, "Q-1"), listed("Two"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = hits();
        assert_eq!(name_on(&ca, "Q-1"), listed("Two"));
        if hits() > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A never read through Redis again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Lua side: a fence refuses fills even with the current generation, a release
/// lifts only its own hold, a hold is never shortened, and a fence expires by itself.
#[test]
fn fence_scripts_refuse_fills_under_a_lock_and_keep_every_holder() {
    let mut redis = Redis::start();
    let inst = RedisInstance::new(&redis.url(), Duration::from_millis(250), Path::new(""))
        .expect("redis instance");
    let long = Duration::from_secs(30);
    smol::block_on(async {
        assert_eq!(inst.get_guarded("k").await.unwrap(), (None, None, false));
        inst.fence("k", "w1", long).await.unwrap();
        let (v, g1, locked) = inst.get_guarded("k").await.unwrap();
        assert_eq!((v, locked), (None, true));
        assert!(
            !inst
                .fill_guarded("k", g1.as_deref(), "old", long)
                .await
                .unwrap(),
            "a fill under a lock is refused even with the current generation"
        );

        // Two writers hold the key; a release of the first leaves the second's hold.
        inst.fence("k", "w2", long).await.unwrap();
        inst.release("k", "w1").await.unwrap();
        let (_, g2, locked) = inst.get_guarded("k").await.unwrap();
        assert!(locked, "w2 still holds the key");
        assert_ne!(g1, g2, "a release is an invalidation");
        assert!(!inst
            .fill_guarded("k", g2.as_deref(), "old", long)
            .await
            .unwrap());
        // A stale release (w1 again, as if delivered late) changes nothing.
        inst.release("k", "w1").await.unwrap();
        assert!(
            inst.get_guarded("k").await.unwrap().2,
            "w2 still holds the key"
        );
        inst.release("k", "w2").await.unwrap();
        let (_, g3, locked) = inst.get_guarded("k").await.unwrap();
        assert!(!locked, "no holder left");
        assert!(inst
            .fill_guarded("k", g3.as_deref(), "new", long)
            .await
            .unwrap());
        assert_eq!(
            inst.get_guarded("k").await.unwrap().0.as_deref(),
            Some("new")
        );

        // A fence drops the value; a short hold never shortens a longer one.
        inst.fence("k", "w3", Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(inst.get_guarded("k").await.unwrap().0, None);
        inst.fence("k", "w4", Duration::from_millis(100))
            .await
            .unwrap();
        for key in [lock_key("k"), holders_key("k")] {
            let ttl: u64 = redis.cli(&["PTTL", &key]).parse().unwrap();
            assert!(ttl > 15_000, "{key} hold shortened to {ttl} ms");
        }

        // An abandoned fence (its writer never releases) expires by itself.
        inst.fence("e", "w5", Duration::from_millis(300))
            .await
            .unwrap();
        assert!(inst.get_guarded("e").await.unwrap().2);
        async_io::Timer::after(Duration::from_millis(400)).await;
        let (_, g, locked) = inst.get_guarded("e").await.unwrap();
        assert!(!locked, "the fence expired");
        assert_eq!(redis.cli(&["EXISTS", &holders_key("e")]), "0");
        assert!(inst
            .fill_guarded("e", g.as_deref(), "v", long)
            .await
            .unwrap());
    });

    // A fence to a server that is gone fails within the command deadline.
    redis.kill();
    let started = Instant::now();
    let r = smol::block_on(inst.fence("k", "w6", long));
    assert!(r.is_err(), "fence without a server: {r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the fence failed only after {:?}",
        started.elapsed()
    );
}
