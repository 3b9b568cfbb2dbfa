//! Attacks on authentication and on text fields, against real nodes on both backends
//! (embedded, and MariaDB with Redis): tampered, expired and revoked tokens, brute-force
//! logins, and Unicode edge cases in every text field.
//!
//! `tests/stores.rs` already covers a made-up token, a logout seen by a second node,
//! the failed-login limit itself and SQL-injection strings; these go further.

mod common;

use common::stores::{Backend, Client, MariaDb, Node, Stores};
use common::wire::{frame, Wire};
use dsf::protocol::ErrorCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use common::stores::both_backends;

both_backends!(
    tampered_tokens_are_refused_and_leave_the_real_ones_working,
    expired_tokens_are_refused_on_every_node,
    logout_revokes_that_token_on_every_node_and_only_that_token,
    brute_force_logins_are_rate_limited_across_nodes_and_the_owner_gets_in_after_the_window,
    parallel_guesses_cannot_pass_the_failed_login_limit,
    unicode_edge_cases_in_every_text_field_are_refused_or_kept_verbatim,
    user_names_and_passwords_with_unicode,
);

const Q: &str = "blacklist.query";

fn q() -> Value {
    json!({"id_card": "A-1"})
}

/// The code of a call with `token`, or "ok".
fn outcome(c: &Client, token: &str) -> String {
    match c.call_with(Q, q(), Some(token.to_owned())) {
        Ok(_) => "ok".into(),
        Err(e) => e.code.to_string(),
    }
}

/// Replaces the character at `i` with another hex digit.
fn flip(token: &str, i: usize) -> String {
    let mut b = token.as_bytes().to_vec();
    b[i] = if b[i] == b'0' { b'1' } else { b'0' };
    String::from_utf8(b).unwrap()
}

/// Tampered tokens (every character flipped, truncated, extended, re-cased, padded,
/// another user's token altered, not a string) are refused; the real ones keep working.
fn tampered_tokens_are_refused_and_leave_the_real_ones_working(backend: Backend) {
    let stores = Stores::new(backend);
    let node = stores.node();
    let mut alice = node.client();
    let token = alice.login_new("alice");
    let mut bob = node.client();
    let other = bob.login_new("bob");
    assert_eq!(outcome(&alice, &token), "ok");

    let mut forged: Vec<String> = (0..token.len()).map(|i| flip(&token, i)).collect();
    forged.extend([
        token[..63].to_owned(),
        token[..32].to_owned(),
        token[..1].to_owned(),
        String::new(),
        format!("{token}0"),
        format!("{token}{token}"),
        token.to_uppercase(),
        format!(" {token}"),
        format!("{token}\n"),
        format!("{token}\u{0}"),
        format!("{}\u{0}", &token[..63]),
        token.replace(|c: char| c.is_ascii_digit(), "é"),
        flip(&other, 0),
        flip(&other, 63),
        "0".repeat(64),
        "x".repeat(100_000),
    ]);
    let started = Instant::now();
    for f in &forged {
        assert_ne!(f, &token);
        assert_eq!(outcome(&alice, f), "unauthorized", "forged token {f:?}");
    }
    // A token that is not a string is a malformed request, not a login attempt.
    let mut w = Wire::connect(&node.addr);
    for bad in [json!(5), json!({"t": token}), json!([token]), json!(true)] {
        let req = json!({"id": 1, "type": Q, "token": bad, "body": q()});
        w.send(&frame(req.to_string().as_bytes()));
        let r = w.recv().expect("an answer");
        assert_eq!(r["error"]["code"], "bad_request", "token {bad}: {r}");
    }
    eprintln!(
        "{} forged tokens refused in {:?}",
        forged.len(),
        started.elapsed()
    );
    // Nothing was locked or revoked by the attempts.
    assert_eq!(outcome(&alice, &token), "ok");
    assert_eq!(outcome(&bob, &other), "ok");
    // The session belongs to its user: bob's token is not alice's.
    bob.call("blacklist.insert", json!({"id_card": "B-1", "name": "x"}))
        .unwrap();
    alice.call("user.logout", json!({})).unwrap();
    assert_eq!(outcome(&bob, &other), "ok");
}

/// With `auth.session_ttl = 2s`, a token works on every node until then and on none after.
fn expired_tokens_are_refused_on_every_node(backend: Backend) {
    let stores = Stores::new(backend);
    let spec = stores.spec().env("AUTH__SESSION_TTL", "2s");
    let nodes: Vec<Node> = (0..3).map(|_| Node::start(&spec)).collect();
    let first = nodes[0].client();
    let creds = json!({"name": "carl", "password": "password123"});
    first.call("user.register", creds.clone()).unwrap();
    let issued = Instant::now();
    let login = first.call("user.login", creds.clone()).unwrap();
    // The session ends at most 2 s from now.
    let logged_in = Instant::now();
    assert_eq!(login["expires_in_s"], json!(2));
    let token = login["token"].as_str().unwrap().to_owned();
    let clients: Vec<Client> = nodes.iter().map(Node::client).collect();
    // Every node accepts it (and caches the session).
    for c in &clients {
        assert_eq!(outcome(c, &token), "ok");
        assert_eq!(outcome(c, &token), "ok");
    }
    assert!(
        issued.elapsed() < Duration::from_millis(1500),
        "the machine is too slow for a 2 s session: {:?}",
        issued.elapsed()
    );
    std::thread::sleep(Duration::from_millis(2200).saturating_sub(logged_in.elapsed()));
    for c in &clients {
        assert_eq!(outcome(c, &token), "unauthorized");
    }
    // A fresh login works again.
    let again = first.call("user.login", creds).unwrap();
    let fresh = again["token"].as_str().unwrap();
    for c in &clients {
        assert_eq!(outcome(c, fresh), "ok");
    }
}

/// After `user.logout` on one of three nodes, no node accepts that token; the same
/// user's other session is untouched, and the revoked token cannot log out again.
fn logout_revokes_that_token_on_every_node_and_only_that_token(backend: Backend) {
    let stores = Stores::new(backend);
    let nodes: Vec<Node> = (0..3).map(|_| stores.node()).collect();
    let mut c0 = nodes[0].client();
    let token = c0.login_new("dana");
    let creds = json!({"name": "dana", "password": "password123"});
    let second = c0.call("user.login", creds).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let clients: Vec<Client> = nodes.iter().map(Node::client).collect();
    for c in &clients {
        for t in [&token, &second] {
            assert_eq!(outcome(c, t), "ok");
            assert_eq!(outcome(c, t), "ok");
        }
    }
    clients[1]
        .call_with("user.logout", json!({}), Some(token.clone()))
        .unwrap();
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(outcome(c, &token), "unauthorized", "node {i}");
        assert_eq!(outcome(c, &second), "ok", "node {i}");
    }
    let again = clients[2].call_with("user.logout", json!({}), Some(token.clone()));
    assert_eq!(again.unwrap_err().code, ErrorCode::Unauthorized);
}

/// A guesser spreading wrong passwords over three nodes is `rate_limited` after
/// `max_failed_logins` in total; so is the owner meanwhile; after the window the owner
/// gets in.
fn brute_force_logins_are_rate_limited_across_nodes_and_the_owner_gets_in_after_the_window(
    backend: Backend,
) {
    let stores = Stores::new(backend);
    let window = Duration::from_secs(3);
    let spec = stores
        .spec()
        .env("AUTH__MAX_FAILED_LOGINS", "5")
        .env("AUTH__LOGIN_WINDOW", "3s");
    let nodes: Vec<Node> = (0..3).map(|_| Node::start(&spec)).collect();
    let clients: Vec<Client> = nodes.iter().map(Node::client).collect();
    let mut owner = nodes[0].client();
    owner.login_new("erin");
    let right = json!({"name": "erin", "password": "password123"});

    let first_guess = Instant::now();
    let mut codes = Vec::new();
    for i in 0..12 {
        let guess = json!({"name": "erin", "password": format!("guess-{i:04}")});
        codes.push(clients[i % 3].code("user.login", guess));
    }
    assert!(
        first_guess.elapsed() < window,
        "guessing took {:?}",
        first_guess.elapsed()
    );
    assert_eq!(
        codes,
        [
            vec![ErrorCode::Unauthorized; 5],
            vec![ErrorCode::RateLimited; 7]
        ]
        .concat()
    );
    // The right password does not get through during the window, on any node.
    for c in &clients {
        assert_eq!(c.code("user.login", right.clone()), ErrorCode::RateLimited);
    }
    // Another name is unaffected.
    let mut other = nodes[1].client();
    other.login_new("fred");
    std::thread::sleep((window + Duration::from_millis(300)).saturating_sub(first_guess.elapsed()));
    let login = clients[2].call("user.login", right.clone()).unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    assert_eq!(outcome(&clients[0], &token), "ok");
    // The success cleared the count: one wrong guess is `unauthorized` again.
    let guess = json!({"name": "erin", "password": "guess-again"});
    assert_eq!(
        clients[1].code("user.login", guess),
        ErrorCode::Unauthorized
    );
    clients[0].call("user.login", right).unwrap();
}

/// 30 wrong logins of one name sent at once: at most `max_failed_logins` are checked
/// (`unauthorized`); the rest are `rate_limited`, counted before any hashing.
fn parallel_guesses_cannot_pass_the_failed_login_limit(backend: Backend) {
    let stores = Stores::new(backend);
    let node = Node::start(&stores.spec().env("AUTH__MAX_FAILED_LOGINS", "5"));
    node.client().login_new("gina");
    let addr = node.addr.clone();
    let guesses: Vec<_> = (0..30)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let c = Client::connect(&addr);
                let guess = json!({"name": "gina", "password": format!("parallel-{i}")});
                c.code("user.login", guess)
            })
        })
        .collect();
    let codes: Vec<ErrorCode> = guesses.into_iter().map(|g| g.join().unwrap()).collect();
    let checked = codes
        .iter()
        .filter(|c| **c == ErrorCode::Unauthorized)
        .count();
    let limited = codes
        .iter()
        .filter(|c| **c == ErrorCode::RateLimited)
        .count();
    eprintln!("30 parallel guesses: {checked} unauthorized, {limited} rate_limited");
    assert_eq!(checked + limited, 30, "{codes:?}");
    assert!((1..=5).contains(&checked), "{checked} guesses were checked");
}

/// Values that must be refused with `bad_request`: control characters (C0, DEL, C1),
/// and lengths over the limit counted in characters, whatever their byte size.
fn refused(limit: usize) -> Vec<String> {
    vec![
        "nul\u{0}inside".into(),
        "\u{0}".into(),
        "tab\there".into(),
        "line\nbreak".into(),
        "del\u{7f}".into(),
        "c1-next-line\u{85}".into(),
        "c1-csi\u{9b}31m".into(),
        "\u{1b}[31mred".into(),
        "😀".repeat(limit + 1),
        format!("{}é", "e\u{301}".repeat(limit / 2)),
        "a".repeat(limit + 1),
    ]
}

/// Values that must come back byte for byte.
fn kept(limit: usize) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "rtl \u{200f}mark\u{200e}".into(),
        "override \u{202e}txt.exe".into(),
        "isolates \u{2066}x\u{2069}".into(),
        "café".into(),        // precomposed é
        "cafe\u{301}".into(), // e + combining acute: a different key
        "Z\u{336}\u{334}\u{337}a\u{35b}\u{321}l\u{362}g\u{34e}o".into(),
        "👩‍👩‍👧‍👦 family".into(),
        "🇺🇦🏳️‍🌈 flags".into(),
        "\u{feff}bom".into(),
        "zero\u{200b}width\u{200d}joiner".into(),
        "line\u{2028}separator\u{2029}".into(),
        "nonchar \u{fffe}\u{ffff}".into(),
        "max \u{10ffff}".into(),
        "replacement \u{fffd}".into(),
        " padded ".into(),
        "x ".into(),
        "'\"\\%_`$(){}".into(),
        "日本語の名前".into(),
        "\u{a0}nbsp".into(),
    ];
    // At the limit exactly: one-, two-, three- and four-byte characters.
    v.push("z".repeat(limit));
    v.push("ß".repeat(limit));
    v.push("語".repeat(limit));
    v.push("😀".repeat(limit));
    // A base letter and combining marks: `limit` characters, however it renders.
    v.push(format!("e{}", "\u{301}".repeat(limit - 1)));
    v
}

/// Every text field of the blacklist and collector operations: control characters
/// and over-long values get `bad_request`; RTL marks, combining characters, 4-byte
/// emoji and values at the limit are stored and returned verbatim, byte for byte.
fn unicode_edge_cases_in_every_text_field_are_refused_or_kept_verbatim(backend: Backend) {
    let stores = Stores::new(backend);
    let node = stores.node();
    let mut c = node.client();
    c.login_new("hank");

    for (i, bad) in refused(64).iter().enumerate() {
        let ok = format!("ok-{i}");
        for (op, body) in [
            ("blacklist.insert", json!({"id_card": bad, "name": "n"})),
            ("blacklist.insert", json!({"id_card": ok, "name": bad})),
            ("blacklist.query", json!({"id_card": bad})),
            ("blacklist.update", json!({"id_card": ok, "name": bad})),
            ("blacklist.delete", json!({"id_card": bad})),
            ("collector.report", json!({"id_card": bad, "name": "n"})),
            ("collector.report", json!({"id_card": ok, "name": bad})),
        ] {
            assert_eq!(
                c.code(op, body.clone()),
                ErrorCode::BadRequest,
                "{op} {body}"
            );
        }
    }
    for bad in refused(128) {
        let body = json!({"id_card": "ok", "name": "n", "source": bad});
        assert_eq!(
            c.code("collector.report", body.clone()),
            ErrorCode::BadRequest,
            "{body}"
        );
    }
    // Nothing half-written by the refusals.
    let all = c.call("blacklist.search", json!({"limit": 500})).unwrap();
    assert_eq!(all["entries"], json!([]));

    let values = kept(64);
    for (i, s) in values.iter().enumerate() {
        // As an id_card (and its own name), then as the name of a plain id.
        let plain = format!("U-{i}");
        c.call("blacklist.insert", json!({"id_card": s, "name": s}))
            .unwrap_or_else(|e| panic!("insert {s:?}: {e}"));
        c.call("blacklist.insert", json!({"id_card": plain, "name": s}))
            .unwrap();
        for id in [s, &plain] {
            assert_eq!(
                c.call(Q, json!({"id_card": id})).unwrap(),
                json!({"listed": true, "name": s}),
                "{id:?}"
            );
        }
        let found = c.call("blacklist.search", json!({"id_card": s})).unwrap();
        assert_eq!(found, json!({"entries": [{"id_card": s, "name": s}]}));
        let r = c
            .call(
                "collector.report",
                json!({"id_card": s, "name": s, "source": format!("{s}{s}")}),
            )
            .unwrap();
        assert_eq!(r["listed"], json!(true), "{s:?}");
    }
    // Updates keep them too.
    for i in (0..values.len()).rev() {
        let plain = format!("U-{i}");
        let next = &values[(i + 1) % values.len()];
        c.call("blacklist.update", json!({"id_card": plain, "name": next}))
            .unwrap();
        assert_eq!(
            c.call(Q, json!({"id_card": plain})).unwrap(),
            json!({"listed": true, "name": next})
        );
    }
    // Canonically equivalent strings are different keys: no normalization.
    assert_ne!("café", "cafe\u{301}");
    c.call(
        "blacklist.update",
        json!({"id_card": "café", "name": "nfc"}),
    )
    .unwrap();
    assert_eq!(
        c.call(Q, json!({"id_card": "cafe\u{301}"})).unwrap(),
        json!({"listed": true, "name": "cafe\u{301}"})
    );
    assert_eq!(
        c.call(Q, json!({"id_card": "x"})).unwrap(),
        json!({"listed": false}),
        "\"x \" is not \"x\""
    );
    // A prefix that ends inside a combining sequence or an emoji ZWJ sequence.
    for prefix in ["e\u{301}\u{301}", "👩\u{200d}👩", "override \u{202e}"] {
        let found = c
            .call("blacklist.search", json!({"name_prefix": prefix}))
            .unwrap();
        let names: Vec<&str> = found["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert!(!names.is_empty(), "{prefix:?}");
        assert!(names.iter().all(|n| n.starts_with(prefix)), "{names:?}");
    }
    // A source of 128 four-byte characters fills its column exactly.
    let r = c
        .call(
            "collector.report",
            json!({"id_card": "src", "name": "n", "source": "😀".repeat(128)}),
        )
        .unwrap();
    assert_eq!(r["listed"], json!(false));

    if let Some(url) = &stores.mysql {
        // In MariaDB the bytes are exactly the UTF-8 the client sent.
        let db = common::stores::db_name(url);
        for s in &values {
            let hex = MariaDb::shared().sql(&format!(
                "SELECT HEX(id_card) FROM {db}.blacklist WHERE id_card = UNHEX('{}')",
                hex_of(s)
            ));
            assert_eq!(hex, hex_of(s).to_uppercase(), "{s:?}");
        }
        let src = MariaDb::shared().sql(&format!(
            "SELECT HEX(source) FROM {db}.reports WHERE id_card = 'src'"
        ));
        assert_eq!(src, hex_of(&"😀".repeat(128)).to_uppercase());
    }

    // JSON that cannot be a string of Unicode scalar values: a lone surrogate, and
    // bytes that are not UTF-8 (an overlong NUL, a truncated sequence).
    let mut w = Wire::connect(&node.addr);
    let token = c.token.clone().unwrap();
    let head =
        format!(r#"{{"id":1,"type":"blacklist.insert","token":"{token}","body":{{"id_card":"#);
    for tail in [
        br#""\ud800","name":"n"}}"#.to_vec(),
        br#""\udc00x","name":"n"}}"#.to_vec(),
        [b"\"\xc0\x80\",\"name\":\"n\"}}".as_slice()].concat(),
        [b"\"\xe2\x82\",\"name\":\"n\"}}".as_slice()].concat(),
        [b"\"\xf4\x90\x80\x80\",\"name\":\"n\"}}".as_slice()].concat(),
    ] {
        let payload = [head.as_bytes(), &tail].concat();
        w.send(&frame(&payload));
        let r = w.recv().expect("an answer");
        assert_eq!(r["error"]["code"], "bad_request", "{r}");
    }
    // The connection and the node are fine.
    assert_eq!(w.call(2, "sys.ping", json!({}))["ok"], true);
    let all = c.call("blacklist.search", json!({"limit": 500})).unwrap();
    assert_eq!(all["entries"].as_array().unwrap().len(), 2 * values.len());
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// User names are ASCII only (a look-alike Cyrillic "а" is refused, so no one can pose
/// as another user); passwords take any characters, counted as characters, and only
/// the exact string logs in (no normalization, NUL not truncated).
fn user_names_and_passwords_with_unicode(backend: Backend) {
    let stores = Stores::new(backend);
    let node = stores.node();
    let c = node.client();
    c.call(
        "user.register",
        json!({"name": "admin", "password": "password123"}),
    )
    .unwrap();
    for name in [
        "\u{430}dmin",
        "admin\u{200b}",
        "admin\u{0}",
        "admın",
        "ａｄｍｉｎ",
        "admin ",
        "😀",
        "e\u{301}",
    ] {
        let creds = json!({"name": name, "password": "password123"});
        assert_eq!(
            c.code("user.register", creds.clone()),
            ErrorCode::BadRequest,
            "{name:?}"
        );
        assert_eq!(
            c.code("user.login", creds),
            ErrorCode::BadRequest,
            "{name:?}"
        );
    }
    let (keys, fewer) = ("🔑".repeat(128), "🔑".repeat(127));
    let cases = [
        (
            "pw-nul",
            "pass\u{0}word-1",
            vec!["pass", "password-1", "pass\u{0}word-2"],
        ),
        (
            "pw-combining",
            "cafe\u{301}-secret",
            vec!["café-secret", "cafe-secret"],
        ),
        ("pw-emoji", keys.as_str(), vec![fewer.as_str()]),
        (
            "pw-rtl",
            "\u{202e}drowssap\u{202c}!",
            vec!["\u{202e}drowssap!"],
        ),
        ("pw-chars", "ÿÿÿÿÿÿÿÿ", vec!["ÿÿÿÿÿÿÿ"]),
    ];
    for (name, password, wrong) in &cases {
        c.call("user.register", json!({"name": name, "password": password}))
            .unwrap_or_else(|e| panic!("register {name} with {password:?}: {e}"));
        let token = c
            .call("user.login", json!({"name": name, "password": password}))
            .unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(outcome(&c, &token), "ok");
        for w in wrong {
            assert_eq!(
                c.code("user.login", json!({"name": name, "password": w})),
                ErrorCode::Unauthorized,
                "{name}: {w:?}"
            );
        }
    }
    // 129 characters is too long even though 8 of them would be plenty of bytes.
    assert_eq!(
        c.code(
            "user.register",
            json!({"name": "pw-long", "password": "🔑".repeat(129)})
        ),
        ErrorCode::BadRequest
    );
    // Seven four-byte characters are 28 bytes but too short.
    assert_eq!(
        c.code(
            "user.register",
            json!({"name": "pw-short", "password": "🔑".repeat(7)})
        ),
        ErrorCode::BadRequest
    );
}
