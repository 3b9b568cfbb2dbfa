//! The cluster under test, in the lab: MariaDB, Redis, etcd (the balancer's shared
//! membership), a balancer (with its proxy) and 2–3 nodes, each on a host of its own.

use super::lab::{sh_ok, Host, Lab, LabProc};
use dsf::client::{CallOptions, Connection};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Cluster secret of the lab's balancer and nodes.
const SECRET: &str = "partition-suite-secret";
/// Password of the application's MariaDB user.
const DB_PASSWORD: &str = "dsf-partitions-pw";
/// Port every node serves on (each node has an address of its own).
pub const NODE_PORT: u16 = 7000;
/// The balancer's registration port (where heartbeats go).
pub const REG_PORT: u16 = 6200;
/// The balancer's directory port.
pub const DIR_PORT: u16 = 6300;
/// The balancer's proxy port.
pub const PROXY_PORT: u16 = 6400;
/// libfaketime, for clock skew on the balancer (package `faketime`).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// A running cluster. Fields drop in order: processes first, the lab last.
pub struct Cluster {
    /// The nodes (`n1`, `n2`, …), in order.
    pub nodes: Vec<LabProc>,
    /// The balancer.
    pub balancer: LabProc,
    /// Redis.
    pub redis: LabProc,
    /// etcd (one member), where the balancer keeps its registrations.
    pub etcd: LabProc,
    /// MariaDB.
    pub db: LabProc,
    /// The file libfaketime reads the balancer's clock offset from, when available.
    pub skew_file: Option<PathBuf>,
    /// The lab (namespaces, bridge, folder).
    pub lab: Lab,
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn dsf_env() -> Vec<(String, String)> {
    [
        ("DSF__CLUSTER__SECRET", SECRET),
        ("DSF__BALANCER__LEASE_TTL", "1500ms"),
        ("DSF__BALANCER__HEARTBEAT", "500ms"),
        ("DSF__ADMIN__LISTEN", ""),
        ("DSF__LOG__LEVEL", "warn"),
        ("DSF__AUTH__ARGON2_MEMORY_KIB", "1024"),
        ("DSF__AUTH__ARGON2_ITERATIONS", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Cluster {
    /// Starts MariaDB, Redis, the balancer and `n` nodes, each in its namespace, and
    /// waits until every node is healthy in `lb.nodes`.
    pub fn start(n: usize) -> Cluster {
        let mut lab = Lab::new();
        let db_host = lab.add_host("db");
        let redis_host = lab.add_host("redis");
        let lb_host = lab.add_host("lb");
        let etcd_host = lab.add_host("etcd");
        let db = start_mariadb(&lab, &db_host);
        let redis = LabProc::start(
            "redis",
            &redis_host,
            &s(&[
                "redis-server",
                "--port",
                "6379",
                "--bind",
                &redis_host.ip,
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                lab.dir.path().to_str().expect("utf-8 path"),
            ]),
            &[],
            lab.path("redis.log"),
        );
        lab.wait_port(&format!("{}:6379", redis_host.ip), Duration::from_secs(10));
        let etcd_url = |p: u16| format!("http://{}:{p}", etcd_host.ip);
        let etcd = LabProc::start(
            "etcd",
            &etcd_host,
            &s(&[
                "etcd",
                "--name",
                "e1",
                "--data-dir",
                lab.path("etcd").to_str().expect("utf-8 path"),
                "--listen-client-urls",
                &etcd_url(2379),
                "--advertise-client-urls",
                &etcd_url(2379),
                "--listen-peer-urls",
                &etcd_url(2380),
                "--initial-advertise-peer-urls",
                &etcd_url(2380),
                "--initial-cluster",
                &format!("e1={}", etcd_url(2380)),
            ]),
            &[],
            lab.path("etcd.log"),
        );
        lab.wait_port(&format!("{}:2379", etcd_host.ip), Duration::from_secs(20));
        let mut env = dsf_env();
        let skew_file = std::path::Path::new(FAKETIME).exists().then(|| {
            let f = lab.path("balancer-clock");
            std::fs::write(&f, "+0\n").expect("clock offset file");
            env.extend([
                ("LD_PRELOAD".to_string(), FAKETIME.to_string()),
                ("FAKETIME_TIMESTAMP_FILE".into(), f.display().to_string()),
                ("FAKETIME_CACHE_DURATION".into(), "1".into()),
                ("DONT_FAKE_MONOTONIC".into(), "1".into()),
            ]);
            f
        });
        let at = |p: u16| format!("{}:{p}", lb_host.ip);
        let balancer = LabProc::start(
            "balancer",
            &lb_host,
            &s(&[
                env!("CARGO_BIN_EXE_dsf"),
                "balancer",
                "--registration",
                &at(REG_PORT),
                "--directory",
                &at(DIR_PORT),
                "--proxy",
                &at(PROXY_PORT),
                "--etcd",
                &etcd_url(2379),
            ]),
            &env,
            lab.path("balancer.log"),
        );
        lab.wait_port(&at(PROXY_PORT), Duration::from_secs(20));
        let pw = lab.path("db-password");
        std::fs::write(&pw, DB_PASSWORD).expect("password file");
        let mut nodes = Vec::new();
        for i in 1..=n {
            let name = format!("n{i}");
            let host = lab.add_host(&name);
            let data = lab.path(&format!("{name}-data"));
            std::fs::create_dir_all(&data).expect("node data folder");
            let mut env = dsf_env();
            env.push(("DSF__STORE__PASSWORD_FILE".into(), pw.display().to_string()));
            let argv = s(&[
                env!("CARGO_BIN_EXE_dsf"),
                "node",
                "--id",
                &name,
                "--listen",
                &format!("{}:{NODE_PORT}", host.ip),
                "--register",
                &at(REG_PORT),
                "--threads",
                "2",
                "--admin",
                "",
                "--data",
                data.to_str().expect("utf-8 path"),
                "--mysql",
                &format!("mysql://dsf@{}:3306/dsf", db_host.ip),
                "--redis",
                &format!("redis://{}:6379", redis_host.ip),
            ]);
            let log = lab.path(&format!("{name}.log"));
            nodes.push(LabProc::start(&name, &host, &argv, &env, log));
        }
        let c = Cluster {
            nodes,
            balancer,
            redis,
            etcd,
            db,
            skew_file,
            lab,
        };
        for i in 0..n {
            c.lab.wait_port(&c.node_addr(i), Duration::from_secs(60));
        }
        c.wait_healthy(n, Duration::from_secs(20));
        c
    }

    /// The address of node `i` (0-based).
    pub fn node_addr(&self, i: usize) -> String {
        format!("{}:{NODE_PORT}", self.nodes[i].host.ip)
    }

    /// The proxy's address.
    pub fn proxy(&self) -> String {
        format!("{}:{PROXY_PORT}", self.balancer.host.ip)
    }

    /// Runs SQL against MariaDB as root over its socket; tab-separated rows.
    pub fn sql(&self, sql: &str) -> String {
        let sock = format!("--socket={}", self.lab.path("db/sock").display());
        sh_ok(
            "mariadb",
            &[
                "--no-defaults",
                &sock,
                "-uroot",
                "-N",
                "-B",
                "dsf",
                "-e",
                sql,
            ],
        )
    }

    /// One call from the hub over a fresh connection, with a timeout of `limit`.
    pub fn call(
        &self,
        addr: &str,
        op: &str,
        body: Value,
        token: Option<&str>,
    ) -> Result<Value, String> {
        let (addr, op, token) = (addr.to_owned(), op.to_owned(), token.map(str::to_owned));
        self.lab.in_hub(move || {
            smol::block_on(async {
                let conn = Connection::connect(&addr, Duration::from_secs(2))
                    .await
                    .map_err(|e| format!("connect {addr}: {e}"))?;
                let opts = CallOptions { token, key: None };
                let resp = conn
                    .call_timeout(&op, body, &opts, Duration::from_secs(5))
                    .await
                    .map_err(|e| format!("{op} at {addr}: {e}"))?;
                resp.result.map_err(|e| e.code.as_str().to_owned())
            })
        })
    }

    /// `lb.nodes`: (node, state) pairs.
    pub fn lb_nodes(&self) -> Vec<(String, String)> {
        let dir = format!("{}:{DIR_PORT}", self.balancer.host.ip);
        match self.call(&dir, "lb.nodes", json!({}), None) {
            Ok(v) => v["nodes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|n| {
                            let f = |k: &str| n[k].as_str().unwrap_or("").to_owned();
                            (f("node"), f("state"))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// Waits until `n` nodes are `healthy`.
    pub fn wait_healthy(&self, n: usize, limit: Duration) {
        let t0 = Instant::now();
        loop {
            let nodes = self.lb_nodes();
            if nodes.iter().filter(|(_, s)| s == "healthy").count() == n {
                return;
            }
            assert!(
                t0.elapsed() < limit,
                "{n} healthy nodes wanted, lb.nodes says {nodes:?}; balancer log:\n{}",
                self.balancer.tail(20)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Registers `user` (if new) and logs in at `addr`; the token.
    pub fn login(&self, addr: &str, user: &str) -> String {
        let creds = json!({"name": user, "password": "password123"});
        let _ = self.call(addr, "user.register", creds.clone(), None);
        let out = self
            .call(addr, "user.login", creds, None)
            .unwrap_or_else(|e| panic!("user.login {user} at {addr}: {e}"));
        out["token"].as_str().expect("a token").to_owned()
    }
}

/// Installs and starts MariaDB in `host`; creates database `dsf` and its user.
fn start_mariadb(lab: &Lab, host: &Host) -> LabProc {
    let dir = lab.path("db");
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).expect("db folder");
    // A bootstrap running at the same time elsewhere on the machine can make this one
    // fail on a shared temporary table: try again in a fresh folder.
    let mut attempt = 0;
    loop {
        let _ = std::fs::remove_dir_all(&data);
        let out = std::process::Command::new("mariadb-install-db")
            .args(["--no-defaults", "--auth-root-authentication-method=normal"])
            .args(["--skip-test-db", "--user=root"])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect("run mariadb-install-db");
        attempt += 1;
        if out.status.success() {
            break;
        }
        assert!(
            attempt < 4,
            "mariadb-install-db in {} failed 4 times: {}",
            data.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let sock = dir.join("sock");
    let argv = s(&[
        "mariadbd",
        "--no-defaults",
        &format!("--datadir={}", data.display()),
        "--port=3306",
        &format!("--bind-address={}", host.ip),
        &format!("--socket={}", sock.display()),
        "--user=root",
        "--skip-log-bin",
        "--innodb-buffer-pool-size=64M",
        "--innodb-flush-log-at-trx-commit=2",
        "--max-connections=500",
        "--skip-name-resolve",
    ]);
    let p = LabProc::start("mariadb", host, &argv, &[], lab.path("mariadb.log"));
    let t0 = Instant::now();
    let sock_arg = format!("--socket={}", sock.display());
    while !std::process::Command::new("mariadb-admin")
        .args(["--no-defaults", &sock_arg, "-uroot", "ping"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "mariadbd in {} not up after 60 s:\n{}",
            host.ns,
            p.tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    sh_ok(
        "mariadb",
        &[
            "--no-defaults",
            &sock_arg,
            "-uroot",
            "-e",
            &format!(
                "CREATE DATABASE dsf; CREATE USER 'dsf'@'%' IDENTIFIED BY '{DB_PASSWORD}'; \
                 GRANT ALL ON dsf.* TO 'dsf'@'%';"
            ),
        ],
    );
    p
}
