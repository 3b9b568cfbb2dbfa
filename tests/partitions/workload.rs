//! The workload: clients, some through the proxy and some straight to one node, run
//! `blacklist.insert`, `update`, `delete` and `query` on a small key set, one operation
//! at a time each, and record every operation's invocation, completion and outcome.
//!
//! Which error codes are definite (nothing was applied) was read from the code: a
//! token, a request or an admission check refused before the handler ran
//! (`unauthorized`, `forbidden`, `bad_request`, `unknown_type`, `rate_limited`,
//! `overloaded`, `too_large`, `bad_frame`), and the proxy's `no_backend` (nothing was
//! forwarded). `not_found` and `conflict` are answers of the model. Everything else —
//! `timeout`, `unavailable` (the store's connection may fail after the write was
//! sent; but see [`classify`] for the refused fence), `outcome_unknown`, `internal`, a connection lost or a client timeout — is
//! ambiguous for a write. A read that fails teaches nothing and is left out.

use super::checker::{Kind, Op, Outcome};
use super::lab::enter;
use dsf::client::{CallOptions, Connection};
use rand::Rng;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Codes that guarantee a write was not applied.
const DEFINITE: &[&str] = &[
    "unauthorized",
    "forbidden",
    "bad_request",
    "unknown_type",
    "rate_limited",
    "overloaded",
    "too_large",
    "bad_frame",
    "no_backend",
];

/// Where a client sends its requests.
#[derive(Debug, Clone)]
pub struct Route {
    /// `proxy` or the node's name.
    pub via: String,
    /// The address.
    pub addr: String,
    /// Whether requests carry the key as the routing key (through the proxy).
    pub keyed: bool,
}

/// Shared state of a running workload.
pub struct Workload {
    /// Every operation recorded so far.
    pub history: Arc<Mutex<Vec<Op>>>,
    /// Operations recorded so far.
    pub count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// When the run began (operation times are relative to it).
    pub t0: Instant,
}

/// The keys of a run: `prefix-0` … `prefix-(n-1)`.
pub fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

impl Workload {
    /// Starts one client thread per route in namespace `ns`, each with `token`, on
    /// `keys`; a call not answered within `timeout` is given up (ambiguous).
    pub fn start(
        ns: &str,
        routes: &[Route],
        token: &str,
        keys: &[String],
        timeout: Duration,
    ) -> Workload {
        let w = Workload {
            history: Arc::default(),
            count: Arc::default(),
            stop: Arc::default(),
            threads: Vec::new(),
            t0: Instant::now(),
        };
        let threads = routes
            .iter()
            .enumerate()
            .map(|(process, route)| {
                let c = ClientLoop {
                    process,
                    route: route.clone(),
                    token: token.to_owned(),
                    keys: keys.to_vec(),
                    timeout,
                    t0: w.t0,
                    history: w.history.clone(),
                    count: w.count.clone(),
                    stop: w.stop.clone(),
                };
                let ns = ns.to_owned();
                std::thread::spawn(move || {
                    enter(&ns);
                    smol::block_on(c.run());
                })
            })
            .collect();
        Workload { threads, ..w }
    }

    /// Stops the clients and returns the history (each client finishes its operation).
    pub fn finish(mut self) -> Vec<Op> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().expect("client thread");
        }
        std::mem::take(&mut *self.history.lock().expect("history"))
    }

    /// Nanoseconds since the run began.
    pub fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }
}

struct ClientLoop {
    process: usize,
    route: Route,
    token: String,
    keys: Vec<String>,
    timeout: Duration,
    t0: Instant,
    history: Arc<Mutex<Vec<Op>>>,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl ClientLoop {
    async fn run(self) {
        let mut rng = rand::thread_rng();
        let mut conn: Option<Connection> = None;
        let mut seq = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            if conn.as_ref().is_none_or(Connection::is_closed) {
                match Connection::connect(&self.route.addr, Duration::from_secs(1)).await {
                    Ok(c) => conn = Some(c),
                    Err(_) => {
                        // Nothing was sent: no operation to record.
                        async_io::Timer::after(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
            let c = conn.as_ref().expect("connected");
            let key = self.keys[rng.gen_range(0..self.keys.len())].clone();
            let kind = match rng.gen_range(0..100) {
                0..50 => Kind::Read,
                50..65 => Kind::Insert,
                65..90 => Kind::Update,
                _ => Kind::Delete,
            };
            seq += 1;
            let value = matches!(kind, Kind::Insert | Kind::Update)
                .then(|| format!("c{}-{seq}", self.process));
            let (op, body) = match kind {
                Kind::Read => ("blacklist.query", json!({"id_card": key})),
                Kind::Insert => ("blacklist.insert", json!({"id_card": key, "name": value})),
                Kind::Update => ("blacklist.update", json!({"id_card": key, "name": value})),
                Kind::Delete => ("blacklist.delete", json!({"id_card": key})),
            };
            let opts = CallOptions {
                token: Some(self.token.clone()),
                key: self.route.keyed.then(|| key.clone()),
            };
            let invoke = self.t0.elapsed().as_nanos() as u64;
            let answer = c.call_timeout(op, body, &opts, self.timeout).await;
            let complete = self.t0.elapsed().as_nanos() as u64;
            let outcome = match answer {
                Ok(resp) => match resp.result {
                    Ok(b) if kind == Kind::Read => Outcome::Read(
                        (b["listed"] == true).then(|| b["name"].as_str().unwrap_or("").to_owned()),
                    ),
                    Ok(_) => Outcome::Ok,
                    Err(e) => classify(kind, e.code.as_str(), &e.message),
                },
                Err(e) => {
                    // The connection may hold a late answer or be wedged: start afresh.
                    conn = None;
                    Outcome::Ambiguous(format!("client: {e}"))
                }
            };
            self.history.lock().expect("history").push(Op {
                process: self.process,
                via: self.route.via.clone(),
                key,
                kind,
                value,
                invoke,
                complete,
                outcome,
            });
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The outcome of an error answer `code` (with `message`) to an operation of `kind`.
pub fn classify(kind: Kind, code: &str, message: &str) -> Outcome {
    match (kind, code) {
        (Kind::Update | Kind::Delete, "not_found") => Outcome::NotFound,
        (Kind::Insert, "conflict") => Outcome::Conflict,
        (Kind::Read, _) => Outcome::Failed(code.to_owned()),
        (_, c) if DEFINITE.contains(&c) => Outcome::Failed(code.to_owned()),
        // A write refused because its cache fence could not be set never reached the
        // store; the code alone does not say so (a store connection lost mid-commit
        // answers `unavailable` too), the message does.
        (_, "unavailable") if message.contains("nothing was applied") => {
            Outcome::Failed("unavailable (fence not set)".to_owned())
        }
        _ => Outcome::Ambiguous(code.to_owned()),
    }
}

/// Counts of a history's outcomes: (ok, definite failures, ambiguous).
pub fn tally(history: &[Op]) -> (usize, usize, usize) {
    let mut t = (0, 0, 0);
    for op in history {
        match op.outcome {
            Outcome::Ok | Outcome::Read(_) | Outcome::NotFound | Outcome::Conflict => t.0 += 1,
            Outcome::Failed(_) => t.1 += 1,
            Outcome::Ambiguous(_) => t.2 += 1,
        }
    }
    t
}

/// Whether an operation's outcome was a timeout (the client's or a `timeout` code).
pub fn is_timeout(op: &Op) -> bool {
    match &op.outcome {
        Outcome::Ambiguous(why) | Outcome::Failed(why) => {
            why == "timeout" || why.contains("no response within")
        }
        _ => false,
    }
}
