//! Helpers for the store and cache tests: private Redis and MariaDB servers on free
//! ports, real `dsf node` processes on them, and a blocking client.
//!
//! One MariaDB server is started per test binary (it takes seconds) and every test
//! gets its own database on it; Redis starts in milliseconds, so each test that uses
//! it starts its own and may kill it. Everything lives in temporary folders and is
//! stopped when its owner is dropped; the shared MariaDB is stopped by a watchdog when
//! the test process exits.

use super::process::require;
use dsf::client::{CallOptions, Connection};
use dsf::protocol::{ApiError, ErrorCode};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What `apt-get install` provides the servers started here.
const PACKAGES: &str = "mariadb-server redis-server";

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what} not ready after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A private `redis-server`.
pub struct Redis {
    /// Its port (kept across restarts).
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// TLS only (`--tls-port`): certificate, key and CA files.
    tls: Option<[PathBuf; 3]>,
}

impl Redis {
    /// Starts one on a free port.
    pub fn start() -> Redis {
        require("redis-server", PACKAGES);
        let mut r = Redis {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            tls: None,
        };
        r.restart();
        r
    }

    /// Starts one that speaks TLS only, with `cert` and `key`, on a free port.
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path) -> Redis {
        require("redis-server", PACKAGES);
        let mut r = Redis {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            tls: Some([cert.to_owned(), key.to_owned(), ca.to_owned()]),
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL): its data is gone, as after a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some([cert, key, ca]) => cmd
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-auth-clients", "no"]),
        };
        let child = cmd
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        wait_until("redis", Duration::from_secs(10), || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
    }

    /// Runs a command with `redis-cli` and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        if let Some([_, _, ca]) = &self.tls {
            cmd.arg("--tls").arg("--cacert").arg(ca);
        }
        let out = cmd
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private MariaDB server in a temporary folder.
pub struct MariaDb {
    /// TCP port.
    pub port: u16,
    /// Data folder (also holds the socket).
    pub dir: PathBuf,
    /// The running server's pid (0 when stopped).
    pid: std::sync::Mutex<u32>,
    /// The shell that runs the server and stops it when the test process is gone.
    watchdog: std::sync::Mutex<Option<Child>>,
    /// Keeps the folder alive for an owned (non-shared) server.
    _tmp: Option<tempfile::TempDir>,
    /// Whether a watchdog removes the server with the test process.
    shared: bool,
    /// More `mariadbd` options (e.g. `--ssl-cert=…`).
    extra: String,
}

/// Password of the application user the helpers create.
pub const DB_PASSWORD: &str = "dsf-test-pw";

impl MariaDb {
    /// The server shared by every test of this binary (started on first use).
    pub fn shared() -> &'static MariaDb {
        static SHARED: OnceLock<MariaDb> = OnceLock::new();
        SHARED.get_or_init(|| {
            // Never dropped: a watchdog stops it and removes the folder when this
            // process exits.
            let dir = tempfile::tempdir().expect("temp dir").keep();
            MariaDb::init(dir, None, true, String::new())
        })
    }

    /// A server of its own, for tests that stop it.
    pub fn owned() -> MariaDb {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_owned();
        MariaDb::init(dir, Some(tmp), false, String::new())
    }

    /// The TLS server shared by every test of this binary, and its CA bundle.
    pub fn shared_tls() -> &'static (MariaDb, super::pki::Pki) {
        static SHARED: OnceLock<(MariaDb, super::pki::Pki)> = OnceLock::new();
        SHARED.get_or_init(|| {
            let pki = super::pki::Pki::new("dsf-store-ca");
            let cert = pki.issue("mariadb", "mariadb");
            let dir = tempfile::tempdir().expect("temp dir").keep();
            let db = MariaDb::init(
                dir,
                None,
                true,
                MariaDb::ssl_args(&cert.cert, &cert.key, &pki.ca),
            );
            db.sql("ALTER USER 'dsf'@'127.0.0.1' REQUIRE SSL;");
            (db, pki)
        })
    }

    fn ssl_args(cert: &Path, key: &Path, ca: &Path) -> String {
        format!(
            "--ssl-cert={} --ssl-key={} --ssl-ca={}",
            cert.display(),
            key.display(),
            ca.display()
        )
    }

    /// A server of its own that offers TLS with `cert` and `key` (PEM files), and
    /// requires it of the application user.
    pub fn owned_tls(cert: &Path, key: &Path, ca: &Path) -> MariaDb {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_owned();
        let extra = MariaDb::ssl_args(cert, key, ca);
        let db = MariaDb::init(dir, Some(tmp), false, extra);
        db.sql("ALTER USER 'dsf'@'127.0.0.1' REQUIRE SSL;");
        db
    }

    fn init(dir: PathBuf, tmp: Option<tempfile::TempDir>, shared: bool, extra: String) -> MariaDb {
        require("mariadbd", PACKAGES);
        let data = dir.join("data");
        // Two bootstraps at once (the shared server and an owned one, started by
        // tests running in parallel) sometimes abort on each other's temporary
        // tables: one at a time.
        static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
        let out = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
            ])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect("mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let db = MariaDb {
            port: free_port(),
            dir,
            pid: std::sync::Mutex::new(0),
            watchdog: std::sync::Mutex::new(None),
            _tmp: tmp,
            shared,
            extra,
        };
        db.start();
        db.sql(&format!(
            "CREATE USER IF NOT EXISTS 'dsf'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';\
             CREATE USER IF NOT EXISTS 'dsf'@'localhost' IDENTIFIED BY '{DB_PASSWORD}';\
             GRANT ALL ON *.* TO 'dsf'@'127.0.0.1'; GRANT ALL ON *.* TO 'dsf'@'localhost';"
        ));
        db
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub fn start(&self) {
        let data = self.dir.join("data");
        let server = format!(
            "mariadbd --no-defaults --datadir={data} --port={port} --bind-address=127.0.0.1 \
             --socket={sock} --pid-file={data}/pid --user=root --skip-log-bin \
             --innodb-buffer-pool-size=64M --innodb-flush-log-at-trx-commit=2 \
             --max-connections=500 --skip-name-resolve {extra}",
            extra = self.extra,
            data = data.display(),
            port = self.port,
            sock = self.socket().display(),
        );
        // The watchdog stops the server when the test process goes away, however it
        // ends (it ignores the hang-up a terminal or job control may send); the
        // shared server's folder goes with it.
        let cleanup = if self.shared {
            format!("rm -rf {}", self.dir.display())
        } else {
            "true".to_owned()
        };
        let script = format!(
            "trap '' HUP INT; {server} >{log} 2>&1 & m=$!; echo $m >{dir}/server.pid; \
             while kill -0 {test} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; \
             kill $m 2>/dev/null; kill -CONT $m 2>/dev/null; wait $m; {cleanup}",
            log = self.dir.join("server.log").display(),
            dir = self.dir.display(),
            test = std::process::id(),
        );
        let _ = std::fs::remove_file(self.dir.join("server.pid"));
        let watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mariadbd");
        *self.watchdog.lock().expect("watchdog lock") = Some(watchdog);
        let pid_file = self.dir.join("server.pid");
        wait_until("mariadbd pid", Duration::from_secs(10), || {
            std::fs::read_to_string(&pid_file).is_ok_and(|s| s.trim().parse::<u32>().is_ok())
        });
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .expect("pid")
            .trim()
            .parse()
            .expect("pid");
        *self.pid.lock().expect("pid lock") = pid;
        let sock = self.socket();
        wait_until("mariadbd", Duration::from_secs(60), || {
            Command::new("mariadb-admin")
                .arg("--no-defaults")
                .arg(format!("--socket={}", sock.display()))
                .args(["-uroot", "ping"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    }

    /// Stops the server (SIGTERM, waits until its port is closed).
    pub fn stop(&self) {
        let pid = std::mem::take(&mut *self.pid.lock().expect("pid lock"));
        if pid == 0 {
            return;
        }
        // A frozen (SIGSTOPped) server must be thawed to act on SIGTERM.
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let _ = Command::new("kill")
            .args(["-CONT", &pid.to_string()])
            .status();
        let addr = format!("127.0.0.1:{}", self.port);
        wait_until("mariadbd to stop", Duration::from_secs(30), || {
            std::net::TcpStream::connect(&addr).is_err()
                && !Path::new(&format!("/proc/{pid}")).exists()
        });
        if let Some(mut w) = self.watchdog.lock().expect("watchdog lock").take() {
            let _ = w.wait();
        }
    }

    /// Kills the server (SIGKILL, as in a crash) and waits until it is gone; `start`
    /// brings it back through crash recovery.
    pub fn kill9(&self) {
        let pid = std::mem::take(&mut *self.pid.lock().expect("pid lock"));
        if pid == 0 {
            return;
        }
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        let addr = format!("127.0.0.1:{}", self.port);
        wait_until("mariadbd to die", Duration::from_secs(30), || {
            std::net::TcpStream::connect(&addr).is_err()
                && !Path::new(&format!("/proc/{pid}")).exists()
        });
        if let Some(mut w) = self.watchdog.lock().expect("watchdog lock").take() {
            let _ = w.wait();
        }
    }

    /// Sends a signal (`STOP`, `CONT`, …) to the running server.
    pub fn signal(&self, sig: &str) {
        let pid = *self.pid.lock().expect("pid lock");
        assert!(pid != 0, "mariadbd is not running");
        super::process::signal(pid, sig);
    }

    /// Runs SQL as root over the socket; returns tab-separated rows.
    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-uroot", "-N", "-B", "-e", sql])
            .output()
            .expect("mariadb client");
        assert!(
            out.status.success(),
            "SQL failed: {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A fresh, empty database; returns its `mysql://` URL (password kept out of it).
    pub fn fresh_database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "dsf_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.sql(&format!("CREATE DATABASE {name}"));
        format!("mysql://dsf@127.0.0.1:{}/{name}", self.port)
    }

    /// Connections currently open to database `db` (from the process list).
    pub fn connections_to(&self, db: &str) -> u32 {
        self.sql(&format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{db}'"
        ))
        .parse()
        .expect("a count")
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The name of the database in a `mysql://…/db` URL.
pub fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or("")
}

/// A running `dsf node` process.
pub struct Node {
    /// Its protocol address.
    pub addr: String,
    child: Child,
    log: PathBuf,
}

/// How to start a node.
#[derive(Debug, Clone, Default)]
pub struct NodeSpec {
    /// `--mysql URL`, if any (else the embedded store in `data`).
    pub mysql: Option<String>,
    /// `--redis URL` for each.
    pub redis: Vec<String>,
    /// `--data DIR`.
    pub data: PathBuf,
    /// Extra `DSF__…` environment.
    pub env: Vec<(String, String)>,
}

impl NodeSpec {
    /// Adds an environment override, e.g. `("STORE__POOL_MAX", "4")`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((format!("DSF__{key}"), value.to_owned()));
        self
    }
}

impl Node {
    /// Starts a node and waits for its `listening on ADDR` line.
    pub fn start(spec: &NodeSpec) -> Node {
        std::fs::create_dir_all(&spec.data).expect("data dir");
        static N: AtomicU32 = AtomicU32::new(0);
        let log = spec
            .data
            .join(format!("node-{}.log", N.fetch_add(1, Ordering::Relaxed)));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsf"));
        cmd.args(["node", "--listen", "127.0.0.1:0", "--threads", "2"]);
        // The admin listener stays off unless the test asked for one.
        if !spec.env.iter().any(|(k, _)| k == "DSF__ADMIN__LISTEN") {
            cmd.args(["--admin", ""]);
        }
        cmd.arg("--data").arg(&spec.data);
        if let Some(url) = &spec.mysql {
            let pw = spec.data.join("db-password");
            std::fs::write(&pw, DB_PASSWORD).expect("password file");
            cmd.args(["--mysql", url])
                .env("DSF__STORE__PASSWORD_FILE", &pw);
        }
        for r in &spec.redis {
            cmd.args(["--redis", r]);
        }
        // Cheap hashing keeps the suite fast; the benchmark uses the OWASP cost.
        cmd.env("DSF__AUTH__ARGON2_MEMORY_KIB", "1024")
            .env("DSF__AUTH__ARGON2_ITERATIONS", "1")
            .env("DSF__LOG__LEVEL", "info");
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn dsf node");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, addr)) = line.split_once("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "node did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Node { addr, child, log }
    }

    /// A client connection to it.
    pub fn client(&self) -> Client {
        Client::connect(&self.addr)
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- node {} log ---\n{}", self.addr, self.log());
        }
    }
}

/// A blocking client over one pipelined connection.
pub struct Client {
    conn: Connection,
    /// Token sent with every call, if set.
    pub token: Option<String>,
}

impl Client {
    /// Connects to `addr`.
    pub fn connect(addr: &str) -> Client {
        let conn = smol::block_on(Connection::connect(addr, Duration::from_secs(5)))
            .expect("connect to node");
        Client { conn, token: None }
    }

    /// Calls `op` with `body` (and the client's token).
    pub fn call(&self, op: &str, body: Value) -> Result<Value, ApiError> {
        let token = self.token.clone();
        self.call_with(op, body, token)
    }

    /// Calls `op` with an explicit token.
    pub fn call_with(
        &self,
        op: &str,
        body: Value,
        token: Option<String>,
    ) -> Result<Value, ApiError> {
        let opts = CallOptions { token, key: None };
        smol::block_on(
            self.conn
                .call_timeout(op, body, &opts, Duration::from_secs(30)),
        )
        .expect("a response")
        .result
    }

    /// The error code of a call that must fail.
    pub fn code(&self, op: &str, body: Value) -> ErrorCode {
        match self.call(op, body.clone()) {
            Ok(v) => panic!("{op} {body} succeeded with {v}, expected an error"),
            Err(e) => e.code,
        }
    }

    /// Registers `name` (password `password123`) and logs in; keeps the token.
    pub fn login_new(&mut self, name: &str) -> String {
        let creds = serde_json::json!({"name": name, "password": "password123"});
        self.call("user.register", creds.clone()).expect("register");
        let out = self.call("user.login", creds).expect("login");
        let token = out["token"].as_str().expect("token").to_owned();
        self.token = Some(token.clone());
        token
    }

    /// The underlying connection.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Reads `id` as not listed twice (the second read is a cache hit), has `writer`
    /// insert it as `first`, and checks that this client answers `first` at once.
    pub fn cache_miss_then_see_insert(&self, writer: &Client, id: &str) {
        let q = serde_json::json!({"id_card": id});
        for _ in 0..2 {
            assert_eq!(
                self.call("blacklist.query", q.clone()).unwrap(),
                serde_json::json!({"listed": false})
            );
        }
        writer
            .call(
                "blacklist.insert",
                serde_json::json!({"id_card": id, "name": "first"}),
            )
            .unwrap();
        assert_eq!(
            self.call("blacklist.query", q).unwrap(),
            serde_json::json!({"listed": true, "name": "first"})
        );
    }
}

/// Which backends a cluster of test nodes uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite and the in-process cache in a shared data folder.
    Embedded,
    /// The shared MariaDB (fresh database) and a private Redis.
    MariaDbRedis,
    /// A shared MariaDB that requires TLS of the node (`store.tls_ca`) and a private
    /// Redis on TLS only (`rediss://`, `cache.tls_ca`), both with an openssl CA.
    MariaDbRedisTls,
}

/// Backing stores for some nodes of one test.
pub struct Stores {
    /// The backend.
    pub backend: Backend,
    /// Shared data folder (the embedded store; node logs).
    pub dir: tempfile::TempDir,
    /// The MySQL URL, for [`Backend::MariaDbRedis`].
    pub mysql: Option<String>,
    /// The Redis server, for [`Backend::MariaDbRedis`].
    pub redis: Option<Redis>,
    /// The CA bundle of both stores, for [`Backend::MariaDbRedisTls`].
    pub tls_ca: Option<PathBuf>,
}

impl Stores {
    /// Fresh stores of `backend`.
    pub fn new(backend: Backend) -> Stores {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Embedded => Stores {
                backend,
                dir,
                mysql: None,
                redis: None,
                tls_ca: None,
            },
            Backend::MariaDbRedis => Stores {
                backend,
                dir,
                mysql: Some(MariaDb::shared().fresh_database()),
                redis: Some(Redis::start()),
                tls_ca: None,
            },
            Backend::MariaDbRedisTls => {
                let (db, pki) = MariaDb::shared_tls();
                static N: AtomicU32 = AtomicU32::new(0);
                let file = format!("redis-{}", N.fetch_add(1, Ordering::Relaxed));
                let cert = pki.issue(&file, "redis");
                Stores {
                    backend,
                    dir,
                    mysql: Some(db.fresh_database()),
                    redis: Some(Redis::start_tls(&cert.cert, &cert.key, &pki.ca)),
                    tls_ca: Some(pki.ca.clone()),
                }
            }
        }
    }

    /// The spec of a node on these stores.
    pub fn spec(&self) -> NodeSpec {
        NodeSpec {
            mysql: self.mysql.clone(),
            redis: self.redis.iter().map(Redis::url).collect(),
            data: self.dir.path().to_owned(),
            env: match &self.tls_ca {
                None => Vec::new(),
                Some(ca) => ["STORE__TLS_CA", "CACHE__TLS_CA"]
                    .iter()
                    .map(|k| (format!("DSF__{k}"), ca.display().to_string()))
                    .collect(),
            },
        }
    }

    /// Starts a node on these stores.
    pub fn node(&self) -> Node {
        Node::start(&self.spec())
    }

    /// A configuration for an in-process application on these stores.
    pub fn config(&self) -> dsf::config::Config {
        let mut cfg = dsf::config::Config::default();
        cfg.node.data_dir = self.dir.path().to_owned();
        if let Some(url) = &self.mysql {
            cfg.store.url = url.clone();
            cfg.store.password = DB_PASSWORD.to_owned();
        }
        cfg.cache.redis = self.redis.iter().map(Redis::url).collect();
        if let Some(ca) = &self.tls_ca {
            cfg.store.tls_ca = ca.clone();
            cfg.cache.tls_ca = ca.clone();
        }
        cfg.auth.argon2_memory_kib = 1024;
        cfg.auth.argon2_iterations = 1;
        cfg
    }
}

/// Generates one `#[test]` per backend for each suite function (a suite function takes
/// a [`Backend`]; the calling file must import `Backend`).
#[allow(unused_macros)]
macro_rules! both_backends {
    ($($suite:ident),* $(,)?) => {
        mod embedded {
            $( #[test] fn $suite() { super::$suite(super::Backend::Embedded) } )*
        }
        mod mariadb_redis {
            $( #[test] fn $suite() { super::$suite(super::Backend::MariaDbRedis) } )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use both_backends;

/// Runs each named suite function against [`Backend::MariaDbRedisTls`].
#[allow(unused_macros)]
macro_rules! tls_backend {
    ($($suite:ident),* $(,)?) => {
        mod mariadb_redis_tls {
            $( #[test] fn $suite() { super::$suite(super::Backend::MariaDbRedisTls) } )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use tls_backend;
