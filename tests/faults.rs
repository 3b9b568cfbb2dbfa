//! Faults under load, with real processes on 127.0.0.1: a balancer and three nodes on a
//! private MariaDB and a private Redis, and a load driver writing and reading through
//! the proxy while a node is killed, Redis and MariaDB are killed and restarted, the
//! balancer is restarted and every node is restarted in turn.
//!
//! Afterwards: every acknowledged write is in MariaDB (each one is looked up), no node
//! answers from a stale cache, every node is back in membership, and every error the
//! driver saw is one the protocol allows, where it allows it. The default run takes
//! about a minute; `DSF_HEAVY=1` runs three rounds, the second with a graceful
//! balancer restart (SIGTERM) instead of kill -9.

mod common;

use common::cluster::{free_port, heavy, Balancer, Node};
use common::stores::{db_name, MariaDb, Redis, DB_PASSWORD};
use dsf::client::{CallOptions, ClientError, Connection};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest the driver waits for any one answer; reaching it counts as a hang.
const CALL_DEADLINE: Duration = Duration::from_secs(15);
/// Longest the driver waits to connect to the proxy.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a read is retried (no connection, `no_backend`, `overloaded`).
const READ_RETRY_FOR: Duration = Duration::from_secs(8);
/// Errors are allowed this long after a fault's recovery point.
const SLACK: f64 = 2.0;
/// Driver threads.
const THREADS: usize = 4;

/// Node settings: cheap password hashing, and store deadlines short enough that a
/// MariaDB outage is answered within about a second.
const NODE_ENV: [(&str, &str); 5] = [
    ("DSF__STORE__PASSWORD", DB_PASSWORD),
    ("DSF__AUTH__ARGON2_MEMORY_KIB", "1024"),
    ("DSF__AUTH__ARGON2_ITERATIONS", "1"),
    ("DSF__STORE__QUERY_TIMEOUT", "1s"),
    ("DSF__STORE__ACQUIRE_TIMEOUT", "1s"),
];

/// Codes a write may fail with while a fault is on (PROTOCOL §2).
const WRITE_CODES: [&str; 5] = [
    "unavailable",
    "timeout",
    "outcome_unknown",
    "no_backend",
    "overloaded",
];
/// Codes a read may end with, only while MariaDB is out.
const READ_CODES: [&str; 2] = ["unavailable", "timeout"];

/// The system under test.
struct Cluster {
    db: MariaDb,
    db_name: String,
    url: String,
    redis: Redis,
    ports: [u16; 3],
    lb: Option<Balancer>,
    nodes: Vec<Node>,
}

impl Cluster {
    fn start() -> Cluster {
        let db = MariaDb::owned();
        let url = db.fresh_database();
        let redis = Redis::start();
        let ports = [free_port(), free_port(), free_port()];
        let lb = Balancer::start_on(ports, &[], &[]);
        let mut c = Cluster {
            db_name: db_name(&url).to_owned(),
            db,
            url,
            redis,
            ports,
            lb: Some(lb),
            nodes: Vec::new(),
        };
        for id in ["n1", "n2", "n3"] {
            let node = c.start_node(id);
            c.nodes.push(node);
        }
        c.lb()
            .wait_healthy(&["n1", "n2", "n3"], Duration::from_secs(30));
        c
    }

    fn lb(&self) -> &Balancer {
        self.lb.as_ref().expect("a balancer")
    }

    fn proxy(&self) -> String {
        self.lb().proxy.clone()
    }

    fn start_node(&self, id: &str) -> Node {
        let redis = self.redis.url();
        Node::start(
            id,
            &format!("127.0.0.1:{}", self.ports[0]),
            &["--mysql", &self.url, "--redis", &redis],
            &NODE_ENV,
        )
    }

    fn ids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }

    fn wait_all_healthy(&self, timeout: Duration) -> Duration {
        let ids = self.ids();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.lb().wait_healthy(&ids, timeout)
    }
}

/// What became of one call.
#[derive(Clone, Debug)]
enum Outcome {
    Ok(Value),
    /// An error response with this code.
    Code(String),
    /// No connection to the proxy: the request was never sent.
    NotSent,
    /// The connection failed with the request sent: its fate is unknown to the client.
    Lost,
    /// No answer within [`CALL_DEADLINE`].
    Hang,
}

impl Outcome {
    fn label(&self) -> String {
        match self {
            Outcome::Ok(_) => "ok".into(),
            Outcome::Code(c) => c.clone(),
            Outcome::NotSent => "(not sent: no connection)".into(),
            Outcome::Lost => "(connection lost)".into(),
            Outcome::Hang => "(hang)".into(),
        }
    }

    fn ok(&self) -> Option<&Value> {
        match self {
            Outcome::Ok(v) => Some(v),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Insert,
    Report,
    Update,
    Query,
}

impl Op {
    fn is_read(self) -> bool {
        self == Op::Query
    }
}

/// One call the driver made.
struct Record {
    op: Op,
    /// Seconds since the load started, when the call began.
    at: f64,
    took: Duration,
    /// Times a read was sent again.
    retries: u32,
    outcome: Outcome,
}

/// What one driver thread did and what it expects the database to hold.
#[derive(Default)]
struct Tally {
    records: Vec<Record>,
    /// Acknowledged inserts: id_card → the names it may have now (the last
    /// acknowledged one, plus those of failed updates that may have landed).
    listed: HashMap<String, Vec<String>>,
    /// Inserts that failed: they may or may not have happened.
    maybe: Vec<String>,
    /// Acknowledged reports: (report_id, id_card).
    reports: Vec<(u64, String)>,
    /// Reports that failed.
    maybe_reports: Vec<String>,
    /// Ids queried before being written (never acknowledged by then).
    unwritten: Vec<String>,
    /// Reads that contradicted an acknowledged write.
    stale: Vec<String>,
}

/// One call over the driver's connection to the proxy (reconnecting if needed).
async fn call(
    conn: &mut Option<Connection>,
    proxy: &str,
    op: &str,
    body: Value,
    opts: &CallOptions,
) -> Outcome {
    if conn.as_ref().is_none_or(Connection::is_closed) {
        match Connection::connect(proxy, CONNECT_TIMEOUT).await {
            Ok(c) => *conn = Some(c),
            Err(_) => {
                *conn = None;
                return Outcome::NotSent;
            }
        }
    }
    let c = conn.as_ref().expect("connected");
    match c.call_timeout(op, body, opts, CALL_DEADLINE).await {
        Ok(resp) => match resp.result {
            Ok(v) => Outcome::Ok(v),
            Err(e) => Outcome::Code(e.code.to_string()),
        },
        Err(ClientError::Timeout(_)) => {
            *conn = None;
            Outcome::Hang
        }
        Err(ClientError::Server(e)) => {
            *conn = None;
            Outcome::Code(e.code.to_string())
        }
        Err(_) => {
            *conn = None;
            Outcome::Lost
        }
    }
}

/// A read, sent again while there is no way to the nodes (no connection, `no_backend`,
/// `overloaded`), for up to [`READ_RETRY_FOR`].
async fn read(
    conn: &mut Option<Connection>,
    proxy: &str,
    body: Value,
    opts: &CallOptions,
) -> (Outcome, u32) {
    let give_up = Instant::now() + READ_RETRY_FOR;
    let mut retries = 0;
    loop {
        let o = call(conn, proxy, "blacklist.query", body.clone(), opts).await;
        let again = match &o {
            Outcome::NotSent | Outcome::Lost => true,
            Outcome::Code(c) => c == "no_backend" || c == "overloaded",
            _ => false,
        };
        if !again || Instant::now() >= give_up {
            return (o, retries);
        }
        retries += 1;
        async_io::Timer::after(Duration::from_millis(50)).await;
    }
}

/// The load of one thread: inserts, reports and updates of its own ids (one attempt
/// each), and reads of its own ids, checked against what it was told.
fn drive(t: usize, proxy: String, token: String, stop: Arc<AtomicBool>, t0: Instant) -> Tally {
    let mut rng = StdRng::seed_from_u64(t as u64);
    let mut tally = Tally::default();
    let mut acked: Vec<String> = Vec::new();
    // Names of updates whose outcome is unknown even later (lost, timed out): they
    // stay possible after a later update is acknowledged.
    let mut sticky: HashMap<String, Vec<String>> = HashMap::new();
    let (mut n, mut r, mut u) = (0u64, 0u64, 0u64);
    let mut conn = None;
    smol::block_on(async {
        while !stop.load(Ordering::Relaxed) {
            let roll = rng.gen_range(0..10);
            let started = Instant::now();
            let at = started.duration_since(t0).as_secs_f64();
            let mut retries = 0;
            let (op, outcome) = match roll {
                0..=2 => {
                    let id = format!("F{t}-{n}");
                    let name = format!("N{t}-{n}");
                    n += 1;
                    let opts = CallOptions {
                        token: Some(token.clone()),
                        key: Some(id.clone()),
                    };
                    let body = json!({"id_card": id, "name": name});
                    let o = call(&mut conn, &proxy, "blacklist.insert", body, &opts).await;
                    if o.ok().is_some() {
                        tally.listed.insert(id.clone(), vec![name]);
                        acked.push(id);
                    } else {
                        tally.maybe.push(id);
                    }
                    (Op::Insert, o)
                }
                3..=4 => {
                    let id = format!("R{t}-{r}");
                    r += 1;
                    let opts = CallOptions {
                        token: Some(token.clone()),
                        key: Some(id.clone()),
                    };
                    let body = json!({"id_card": id, "name": "Seen", "source": "faults"});
                    let o = call(&mut conn, &proxy, "collector.report", body, &opts).await;
                    match o.ok().and_then(|v| v["report_id"].as_u64()) {
                        Some(rid) => tally.reports.push((rid, id)),
                        None => tally.maybe_reports.push(id),
                    }
                    (Op::Report, o)
                }
                5 if !acked.is_empty() => {
                    let id = acked.choose(&mut rng).expect("an id").clone();
                    let name = format!("U{t}-{u}");
                    u += 1;
                    let opts = CallOptions {
                        token: Some(token.clone()),
                        key: Some(id.clone()),
                    };
                    let body = json!({"id_card": id, "name": name});
                    let o = call(&mut conn, &proxy, "blacklist.update", body, &opts).await;
                    let names = tally.listed.get_mut(&id).expect("acknowledged id");
                    match &o {
                        Outcome::Ok(_) => {
                            *names = vec![name];
                            names.extend(sticky.get(&id).into_iter().flatten().cloned());
                        }
                        Outcome::Code(c) if c != "timeout" && c != "outcome_unknown" => {
                            names.push(name)
                        }
                        Outcome::NotSent => {}
                        _ => {
                            names.push(name.clone());
                            sticky.entry(id).or_default().push(name);
                        }
                    }
                    (Op::Update, o)
                }
                _ => {
                    // Half the reads ask for the id this thread writes next (so nodes
                    // cache "not listed" just before the insert), half for one it wrote.
                    let (id, expect) = if acked.is_empty() || rng.gen_bool(0.5) {
                        (format!("F{t}-{n}"), None)
                    } else {
                        let id = acked.choose(&mut rng).expect("an id").clone();
                        let names = tally.listed[&id].clone();
                        (id, Some(names))
                    };
                    // Reads go wherever a random key sends them, not to the writer's node.
                    let opts = CallOptions {
                        token: Some(token.clone()),
                        key: Some(format!("q{}", rng.gen::<u32>())),
                    };
                    let (o, tries) = read(&mut conn, &proxy, json!({"id_card": id}), &opts).await;
                    retries = tries;
                    if let Some(v) = o.ok() {
                        let fine = match &expect {
                            None => v == &json!({"listed": false}),
                            Some(names) => {
                                v["listed"] == json!(true)
                                    && names.iter().any(|nm| v["name"] == json!(nm))
                            }
                        };
                        if !fine {
                            tally
                                .stale
                                .push(format!("t={at:.2}s {id}: got {v}, expected {expect:?}"));
                        }
                    }
                    if expect.is_none() {
                        tally.unwritten.push(id);
                    }
                    (Op::Query, o)
                }
            };
            let failed = outcome.ok().is_none();
            tally.records.push(Record {
                op,
                at,
                took: started.elapsed(),
                retries,
                outcome,
            });
            if failed {
                // No busy loop against a store that is down.
                async_io::Timer::after(Duration::from_millis(20)).await;
            }
        }
    });
    tally
}

/// A fault and the time it was on, in seconds since the load started.
struct Window {
    fault: &'static str,
    from: f64,
    to: f64,
}

/// The faults injected so far and what was measured about each.
struct Timeline {
    t0: Instant,
    windows: Vec<Window>,
    notes: Vec<String>,
}

impl Timeline {
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn close(&mut self, fault: &'static str, from: f64) {
        let to = self.now();
        self.windows.push(Window { fault, from, to });
    }

    fn note(&mut self, s: String) {
        eprintln!("[{:6.2}s] {s}", self.now());
        self.notes.push(s);
    }

    /// The faults on at `at` (with [`SLACK`] after each recovery).
    fn faults_at(&self, at: f64) -> Vec<&'static str> {
        self.windows
            .iter()
            .filter(|w| at >= w.from - 0.1 && at <= w.to + SLACK)
            .map(|w| w.fault)
            .collect()
    }
}

/// A request over a fresh connection with a token; `Err` holds the failure.
fn probe(addr: &str, token: &str, op: &str, body: Value) -> Result<Value, String> {
    smol::block_on(async {
        let conn = Connection::connect(addr, CONNECT_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let opts = CallOptions {
            token: Some(token.to_owned()),
            key: None,
        };
        let resp = conn
            .call_timeout(op, body, &opts, Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        resp.result.map_err(|e| e.code.to_string())
    })
}

/// Repeats an insert of a fresh probe id until it is acknowledged; returns the time.
fn until_write_works(c: &Cluster, token: &str, probes: &mut Vec<String>, limit: Duration) -> f64 {
    let t = Instant::now();
    loop {
        let id = format!("P-{}", probes.len());
        let r = probe(
            &c.proxy(),
            token,
            "blacklist.insert",
            json!({"id_card": id, "name": "Probe"}),
        );
        match r {
            Ok(_) => {
                probes.push(id);
                return t.elapsed().as_secs_f64();
            }
            Err(e) => {
                // A probe that failed may still have landed: never reuse its id.
                probes.push(format!("{id}?"));
                assert!(t.elapsed() < limit, "writes did not recover: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn pause(d: Duration) {
    std::thread::sleep(d);
}

/// kill -9 of a random node under load, and a replacement.
fn kill_a_node(c: &mut Cluster, rng: &mut StdRng, tl: &mut Timeline, replacement: &str) {
    let i = rng.gen_range(0..c.nodes.len());
    let victim = c.nodes.remove(i);
    let victim_id = victim.id.clone();
    let from = tl.now();
    victim.proc.signal("KILL");
    let rest: Vec<String> = c.ids();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let left = c.lb().wait_healthy(&rest, Duration::from_secs(5));
    drop(victim);
    let t = Instant::now();
    let node = c.start_node(replacement);
    c.nodes.push(node);
    c.wait_all_healthy(Duration::from_secs(30));
    tl.note(format!(
        "kill -9 {victim_id}: out of membership after {:.0} ms; replacement {replacement} healthy after {:.2} s",
        left.as_secs_f64() * 1000.0,
        t.elapsed().as_secs_f64()
    ));
    tl.close("node kill", from);
}

/// Redis killed (its data gone), load continues, Redis restarted.
fn redis_outage(c: &mut Cluster, tl: &mut Timeline, down: Duration) {
    let from = tl.now();
    c.redis.kill();
    pause(down);
    c.redis.restart();
    let t = Instant::now();
    while c.redis.cli(&["DBSIZE"]).parse::<u64>().unwrap_or(0) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the cache was not used again"
        );
        pause(Duration::from_millis(50));
    }
    tl.note(format!(
        "Redis down {:.1} s; cache in use again {:.0} ms after restart",
        down.as_secs_f64(),
        t.elapsed().as_secs_f64() * 1000.0
    ));
    tl.close("redis", from);
}

/// MariaDB killed (or frozen), load continues, MariaDB back.
fn mariadb_outage(
    c: &mut Cluster,
    tl: &mut Timeline,
    token: &str,
    probes: &mut Vec<String>,
    freeze: bool,
    down: Duration,
) {
    let from = tl.now();
    if freeze {
        c.db.signal("STOP");
    } else {
        c.db.kill9();
    }
    pause(down);
    let t = Instant::now();
    if freeze {
        c.db.signal("CONT");
    } else {
        c.db.start();
    }
    let started = t.elapsed().as_secs_f64();
    let writes = until_write_works(c, token, probes, Duration::from_secs(30));
    tl.note(format!(
        "MariaDB {} for {:.1} s; server back after {started:.2} s, writes through the proxy {writes:.2} s later",
        if freeze { "frozen (SIGSTOP)" } else { "killed (SIGKILL)" },
        down.as_secs_f64()
    ));
    tl.close("mariadb", from);
}

/// The balancer killed (or stopped with SIGTERM) and started again on its ports.
fn balancer_restart(c: &mut Cluster, tl: &mut Timeline, token: &str, graceful: bool) {
    let from = tl.now();
    let mut old = c.lb.take().expect("a balancer");
    if graceful {
        old.proc.signal("TERM");
        assert_eq!(old.proc.wait_exit(Duration::from_secs(15)), Some(0));
    }
    drop(old);
    let t = Instant::now();
    c.lb = Some(Balancer::start_on(c.ports, &[], &[]));
    let listening = t.elapsed().as_secs_f64();
    c.wait_all_healthy(Duration::from_secs(15));
    let members = t.elapsed().as_secs_f64();
    let q = json!({"id_card": "P-0"});
    probe(&c.proxy(), token, "blacklist.query", q).expect("a read after the restart");
    tl.note(format!(
        "balancer {}: listening after {listening:.2} s, all nodes registered after {members:.2} s",
        if graceful {
            "SIGTERM + restart"
        } else {
            "kill -9 + restart"
        }
    ));
    tl.close("balancer", from);
}

/// SIGTERM of each node in turn, a new process with the same id, wait until healthy.
fn rolling_restart(c: &mut Cluster, tl: &mut Timeline) {
    let from = tl.now();
    let mut took = Vec::new();
    for i in 0..c.nodes.len() {
        let t = Instant::now();
        let id = c.nodes[i].id.clone();
        c.nodes[i].proc.signal("TERM");
        let code = c.nodes[i].proc.wait_exit(Duration::from_secs(20));
        assert_eq!(code, Some(0), "node {id} exit status");
        let node = c.start_node(&id);
        c.nodes[i] = node;
        c.wait_all_healthy(Duration::from_secs(30));
        took.push(format!("{id} {:.2} s", t.elapsed().as_secs_f64()));
        pause(Duration::from_millis(500));
    }
    tl.note(format!("rolling restart: {}", took.join(", ")));
    tl.close("rolling restart", from);
}

/// Rows of `SELECT a, b …` as pairs.
fn pairs(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
}

/// Node kill, Redis and MariaDB outages, balancer and rolling restarts under load: no acknowledged write lost, nothing stale, only promised errors.
#[test]
fn faults_under_load_lose_no_acknowledged_write() {
    let seed: u64 = std::env::var("DSF_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("DSF_FAULTS_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let setup = Instant::now();
    let mut c = Cluster::start();
    eprintln!("cluster up in {:.1} s", setup.elapsed().as_secs_f64());

    let creds = json!({"name": "driver", "password": "password123"});
    probe(&c.proxy(), "", "user.register", creds.clone()).expect("register");
    let tokens: Vec<String> = (0..=THREADS)
        .map(|_| {
            let v = probe(&c.proxy(), "", "user.login", creds.clone()).expect("login");
            v["token"].as_str().expect("token").to_owned()
        })
        .collect();
    let token = tokens[THREADS].clone();

    let t0 = Instant::now();
    let mut tl = Timeline {
        t0,
        windows: Vec::new(),
        notes: Vec::new(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (proxy, token, stop) = (c.proxy(), tokens[t].clone(), stop.clone());
            std::thread::spawn(move || drive(t, proxy, token, stop, t0))
        })
        .collect();

    let mut probes = Vec::new();
    let rounds = if heavy() { 3 } else { 1 };
    let steady = Duration::from_secs(if heavy() { 5 } else { 2 });
    pause(Duration::from_secs(3));
    for round in 0..rounds {
        let odd = round % 2 == 1;
        kill_a_node(&mut c, &mut rng, &mut tl, &format!("r{round}"));
        pause(steady);
        redis_outage(&mut c, &mut tl, Duration::from_secs(3));
        pause(steady);
        // Killed, then frozen: refused connections, then a server that never answers.
        for freeze in [false, true] {
            mariadb_outage(
                &mut c,
                &mut tl,
                &token,
                &mut probes,
                freeze,
                Duration::from_secs(3),
            );
            pause(steady);
        }
        balancer_restart(&mut c, &mut tl, &token, odd);
        pause(steady);
        rolling_restart(&mut c, &mut tl);
        pause(steady);
    }
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let load_secs = t0.elapsed().as_secs_f64();

    // What the driver saw.
    let mut by: BTreeMap<(Op, String), usize> = BTreeMap::new();
    let mut by_fault: BTreeMap<(&str, &str, String), usize> = BTreeMap::new();
    let mut misplaced: Vec<String> = Vec::new();
    let (mut read_retries, mut retried_reads) = (0u32, 0usize);
    let mut slowest = Duration::ZERO;
    for r in tallies.iter().flat_map(|t| &t.records) {
        *by.entry((r.op, r.outcome.label())).or_default() += 1;
        slowest = slowest.max(r.took);
        read_retries += r.retries;
        retried_reads += (r.retries > 0) as usize;
        if r.outcome.ok().is_some() {
            continue;
        }
        let faults = tl.faults_at(r.at);
        let kind = if r.op.is_read() { "read" } else { "write" };
        let during = faults.last().copied().unwrap_or("no fault");
        *by_fault
            .entry((during, kind, r.outcome.label()))
            .or_default() += 1;
        let allowed = match (&r.outcome, r.op.is_read()) {
            (Outcome::Hang, _) => false,
            (Outcome::Code(code), true) => {
                READ_CODES.contains(&code.as_str()) && faults.contains(&"mariadb")
            }
            (_, true) => false,
            (Outcome::Code(code), false) => {
                WRITE_CODES.contains(&code.as_str()) && !faults.is_empty()
            }
            (Outcome::NotSent | Outcome::Lost, false) => faults.contains(&"balancer"),
            (Outcome::Ok(_), _) => true,
        };
        if !allowed {
            misplaced.push(format!(
                "{:?} at {:.2}s → {} after {:?} (faults on: {faults:?})",
                r.op,
                r.at,
                r.outcome.label(),
                r.took
            ));
        }
    }

    // What MariaDB holds, read over its socket.
    let db = &c.db;
    let rows: HashMap<String, String> = pairs(&db.sql(&format!(
        "SELECT id_card, name FROM {}.blacklist",
        c.db_name
    )))
    .into_iter()
    .collect();
    let reports: HashMap<String, String> =
        pairs(&db.sql(&format!("SELECT id, id_card FROM {}.reports", c.db_name)))
            .into_iter()
            .collect();
    let mut lost = Vec::new();
    let (mut acked_inserts, mut acked_reports, mut acked_updates) = (0, 0, 0);
    for t in &tallies {
        for (id, names) in &t.listed {
            acked_inserts += 1;
            match rows.get(id) {
                Some(name) if names.contains(name) => {}
                other => lost.push(format!("{id}: {other:?}, expected one of {names:?}")),
            }
        }
        for (rid, id) in &t.reports {
            acked_reports += 1;
            if reports.get(&rid.to_string()) != Some(id) {
                lost.push(format!(
                    "report {rid} ({id}): {:?}",
                    reports.get(&rid.to_string())
                ));
            }
        }
        acked_updates += t
            .records
            .iter()
            .filter(|r| r.op == Op::Update && r.outcome.ok().is_some())
            .count();
    }
    for id in probes.iter().filter(|p| !p.ends_with('?')) {
        if !rows.contains_key(id) {
            lost.push(format!("probe {id}"));
        }
    }
    let maybe: Vec<&String> = tallies.iter().flat_map(|t| &t.maybe).collect();
    let maybe_landed = maybe.iter().filter(|id| rows.contains_key(**id)).count();
    let reported: HashSet<&String> = reports.values().collect();
    let maybe_reports: Vec<&String> = tallies.iter().flat_map(|t| &t.maybe_reports).collect();
    let maybe_reports_landed = maybe_reports
        .iter()
        .filter(|id| reported.contains(**id))
        .count();

    // Every node answers what MariaDB holds, for a sample of keys: acknowledged
    // (many of them updated), failed, and never written (queried before).
    let mut sample: Vec<String> = tallies
        .iter()
        .flat_map(|t| t.listed.keys().cloned())
        .collect();
    sample.sort();
    sample.shuffle(&mut rng);
    sample.truncate(300);
    sample.extend(maybe.iter().take(100).map(|s| s.to_string()));
    let mut unwritten: Vec<String> = tallies
        .iter()
        .flat_map(|t| t.unwritten.iter().cloned())
        .collect();
    unwritten.sort();
    unwritten.dedup();
    unwritten.shuffle(&mut rng);
    sample.extend(unwritten.into_iter().take(100));
    c.wait_all_healthy(Duration::from_secs(10));
    let mut stale_at_end = Vec::new();
    for node in &c.nodes {
        for pass in 0..2 {
            for id in &sample {
                let got = probe(
                    &node.addr,
                    &token,
                    "blacklist.query",
                    json!({"id_card": id}),
                )
                .unwrap_or_else(|e| panic!("query {id} on {}: {e}", node.id));
                let want = match rows.get(id) {
                    Some(name) => json!({"listed": true, "name": name}),
                    None => json!({"listed": false}),
                };
                if got != want {
                    stale_at_end.push(format!("{} pass {pass} {id}: {got} ≠ {want}", node.id));
                }
            }
        }
    }

    // Membership: exactly the three current nodes, all healthy.
    let mut members = c.lb().nodes();
    members.sort();
    let mut want_members: Vec<(String, String)> = c
        .ids()
        .into_iter()
        .map(|id| (id, "healthy".into()))
        .collect();
    want_members.sort();

    eprintln!(
        "---- faults under load: {load_secs:.1} s of load, {THREADS} driver threads, seed {seed}"
    );
    for n in &tl.notes {
        eprintln!("  {n}");
    }
    for w in &tl.windows {
        eprintln!("  window {:<16} {:6.2} s – {:6.2} s", w.fault, w.from, w.to);
    }
    for ((op, label), n) in &by {
        eprintln!("  {op:?} {label}: {n}");
    }
    for ((fault, kind, label), n) in &by_fault {
        eprintln!("  failed {kind}s during {fault}: {n} {label}");
    }
    eprintln!(
        "  acknowledged: {acked_inserts} inserts, {acked_reports} reports, {acked_updates} updates; \
         all checked in MariaDB ({} rows, {} reports)",
        rows.len(),
        reports.len()
    );
    eprintln!(
        "  failed inserts: {} ({maybe_landed} of them landed); failed reports: {} ({maybe_reports_landed} landed)",
        maybe.len(),
        maybe_reports.len()
    );
    eprintln!(
        "  reads retried by the driver: {retried_reads} ({read_retries} retries); slowest call {slowest:?}"
    );
    eprintln!(
        "  stale check: {} keys × {} nodes × 2",
        sample.len(),
        c.nodes.len()
    );

    assert!(lost.is_empty(), "acknowledged writes missing: {lost:#?}");
    let stale: Vec<&String> = tallies.iter().flat_map(|t| &t.stale).collect();
    assert!(
        stale.is_empty(),
        "reads contradicted acknowledged writes: {stale:#?}"
    );
    assert!(stale_at_end.is_empty(), "stale answers: {stale_at_end:#?}");
    assert_eq!(members, want_members, "membership after the faults");
    assert!(
        misplaced.is_empty(),
        "errors the protocol does not allow: {misplaced:#?}"
    );
    assert!(slowest < CALL_DEADLINE, "a call took {slowest:?}");
    assert!(
        acked_inserts > 200 && acked_reports > 100,
        "too little load got through"
    );
}
