//! Real `dsf` processes on 127.0.0.1 for whole-system tests: balancers, nodes, `dsf up`,
//! a private Redis, and the calls tests make against them.

#![allow(dead_code)]

use dsf::client::{CallOptions, Connection};
use dsf::protocol::Response;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The lease TTL the test clusters run with (short, so expiry tests are quick).
pub const LEASE_TTL: Duration = Duration::from_millis(1500);
/// The heartbeat interval the test clusters run with.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// The cluster secret test balancers and nodes share.
pub const SECRET: &str = "test-cluster-secret";

/// The `dsf` binary under test.
pub fn dsf() -> &'static str {
    env!("CARGO_BIN_EXE_dsf")
}

/// Environment every test process gets: short leases, quiet logs.
fn base_env(cmd: &mut Command) {
    cmd.env("DSF__BALANCER__LEASE_TTL", "1500ms")
        .env("DSF__BALANCER__HEARTBEAT", "500ms")
        .env("DSF__ADMIN__LISTEN", "")
        .env("DSF__LOG__LEVEL", "info")
        .env_remove("RUST_LOG");
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process whose stdout lines are collected and whose stderr goes to a file.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Stdout lines so far.
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    /// Where stderr (the logs) goes.
    pub log: PathBuf,
    /// Keeps the temp folder (data, logs) alive.
    pub dir: Arc<tempfile::TempDir>,
}

impl Proc {
    /// Starts `dsf args…` with the test environment plus `env`.
    pub fn spawn(name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        Self::spawn_in(Arc::new(tempfile::tempdir().unwrap()), name, args, env)
    }

    /// Like [`spawn`](Self::spawn), with logs and data in `dir`.
    pub fn spawn_in(
        dir: Arc<tempfile::TempDir>,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        Self::spawn_program(Path::new(dsf()), dir, name, args, env)
    }

    /// Like [`spawn_in`](Self::spawn_in), for another program built on the library
    /// (an example service).
    pub fn spawn_program(
        program: &Path,
        dir: Arc<tempfile::TempDir>,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        let log = dir.path().join(format!("{name}.log"));
        let mut cmd = Command::new(program);
        base_env(&mut cmd);
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = cmd.spawn().expect("spawn dsf");
        let stdout = child.stdout.take().unwrap();
        let lines: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().push(line);
                sink.1.notify_all();
            }
        });
        Proc {
            child,
            lines,
            log,
            dir,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line for which `pred` holds.
    pub fn wait_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.lines;
        let mut lines = lock.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no matching line within {timeout:?}; stdout: {:?}; log:\n{}",
                *lines,
                self.logs()
            );
            lines = cv.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// The address at the end of the stdout line starting with `prefix`.
    pub fn addr(&self, prefix: &str) -> String {
        let line = self.wait_line(|l| l.starts_with(prefix), Duration::from_secs(20));
        line.rsplit(' ').next().unwrap().to_owned()
    }

    /// The log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal by name (`TERM`, `KILL`, `STOP`, `CONT`, `INT`).
    pub fn signal(&self, sig: &str) {
        super::process::signal(self.pid(), sig);
    }

    /// Waits for the process to exit; its status code (None if killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {timeout:?}; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Open file descriptors of the process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A balancer process and its three addresses.
pub struct Balancer {
    /// The process.
    pub proc: Proc,
    /// Registration port.
    pub registration: String,
    /// Directory port.
    pub directory: String,
    /// Proxy port.
    pub proxy: String,
}

impl Balancer {
    /// A balancer on free ports, requiring [`SECRET`], plus extra `args` and `env`.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Balancer {
        let mut all = vec![
            "balancer",
            "--registration",
            "127.0.0.1:0",
            "--directory",
            "127.0.0.1:0",
            "--proxy",
            "127.0.0.1:0",
        ];
        all.extend_from_slice(args);
        Self::start_with(&all, env)
    }

    /// A balancer on the given ports (to restart one in place).
    pub fn start_on(ports: [u16; 3], args: &[&str], env: &[(&str, &str)]) -> Balancer {
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut all = vec![
            "balancer",
            "--registration",
            &addrs[0],
            "--directory",
            &addrs[1],
            "--proxy",
            &addrs[2],
        ];
        all.extend_from_slice(args);
        Self::start_with(&all, env)
    }

    fn start_with(args: &[&str], env: &[(&str, &str)]) -> Balancer {
        let mut env_all = vec![("DSF__CLUSTER__SECRET", SECRET)];
        env_all.extend_from_slice(env);
        let proc = Proc::spawn("balancer", args, &env_all);
        proc.wait_line(|l| l == "ready", Duration::from_secs(20));
        Balancer {
            registration: proc.addr("balancer registration listening on"),
            directory: proc.addr("balancer directory listening on"),
            proxy: proc.addr("balancer proxy listening on"),
            proc,
        }
    }

    /// `lb.nodes` → `(node, state)` pairs.
    pub fn nodes(&self) -> Vec<(String, String)> {
        let resp =
            call(&self.directory, "lb.nodes", serde_json::json!({}), None).expect("lb.nodes");
        let body = resp.result.expect("lb.nodes ok");
        body["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["node"].as_str().unwrap().to_owned(),
                    n["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Healthy node ids, sorted.
    pub fn healthy(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .nodes()
            .into_iter()
            .filter(|(_, s)| s == "healthy")
            .map(|(n, _)| n)
            .collect();
        v.sort();
        v
    }

    /// Waits until exactly `ids` are healthy members; returns how long it took.
    pub fn wait_healthy(&self, ids: &[&str], timeout: Duration) -> Duration {
        let t0 = Instant::now();
        let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        want.sort();
        loop {
            if self.healthy() == want {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < timeout,
                "healthy nodes {:?}, wanted {want:?}; balancer log:\n{}",
                self.nodes(),
                self.proc.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `lb.assign` for `key`: the node id.
    pub fn assign(&self, key: &str) -> String {
        let resp = call(
            &self.directory,
            "lb.assign",
            serde_json::json!({ "key": key }),
            None,
        )
        .unwrap();
        resp.result.expect("lb.assign ok")["node"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// A node process registered with a balancer.
pub struct Node {
    /// The process.
    pub proc: Proc,
    /// Its id.
    pub id: String,
    /// Its protocol address.
    pub addr: String,
}

impl Node {
    /// `dsf node --id ID --register REG` with [`SECRET`], plus extra `args` and `env`.
    pub fn start(id: &str, register: &str, args: &[&str], env: &[(&str, &str)]) -> Node {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let data = dir.path().join("data");
        let data = data.to_str().unwrap().to_owned();
        let mut all = vec![
            "node",
            "--id",
            id,
            "--listen",
            "127.0.0.1:0",
            "--register",
            register,
            "--threads",
            "1",
        ];
        // A test may share one data folder between nodes (one embedded store).
        if !args.contains(&"--data") {
            all.extend_from_slice(&["--data", &data]);
        }
        all.extend_from_slice(args);
        let mut env_all = vec![("DSF__CLUSTER__SECRET", SECRET)];
        env_all.extend_from_slice(env);
        let proc = Proc::spawn_in(dir.clone(), id, &all, &env_all);
        let addr = proc.addr(&format!("node {id} listening on"));
        Node {
            proc,
            id: id.to_owned(),
            addr,
        }
    }
}

/// `dsf up --nodes N` on free ports.
pub struct Up {
    /// The process.
    pub proc: Proc,
    /// Directory port.
    pub directory: String,
    /// Proxy port.
    pub proxy: String,
}

impl Up {
    /// Starts it and waits for `ready`.
    pub fn start(nodes: usize) -> Up {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let data = dir.path().join("data").to_str().unwrap().to_owned();
        let n = nodes.to_string();
        let proc = Proc::spawn_in(
            dir,
            "up",
            &["up", "--nodes", &n, "--data", &data, "--admin", ""],
            &[
                ("DSF__BALANCER__REGISTRATION", "127.0.0.1:0"),
                ("DSF__BALANCER__DIRECTORY", "127.0.0.1:0"),
                ("DSF__BALANCER__PROXY", "127.0.0.1:0"),
                ("DSF__NODE__LISTEN", "127.0.0.1:0"),
            ],
        );
        proc.wait_line(|l| l.contains("ready"), Duration::from_secs(30));
        Up {
            directory: proc.addr("balancer directory listening on"),
            proxy: proc.addr("balancer proxy listening on"),
            proc,
        }
    }
}

/// A private Redis on a free port, or `None` when `redis-server` is not installed.
pub struct Redis {
    child: Child,
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one and waits until it answers.
    pub fn start() -> Option<Redis> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
            _dir: dir,
        })
    }

    /// Sends `sig` (`STOP`, `CONT`, …) to the server.
    pub fn signal(&self, sig: &str) {
        super::process::signal(self.child.id(), sig);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // A frozen server must be thawed to die.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request over a fresh connection.
pub fn call(addr: &str, op: &str, body: Value, key: Option<&str>) -> Result<Response, String> {
    smol::block_on(async {
        let conn = Connection::connect(addr, Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?;
        let opts = CallOptions {
            token: None,
            key: key.map(str::to_owned),
        };
        conn.call_timeout(op, body, &opts, Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())
    })
}

/// `dsf client ARGS…`: exit status and the printed response.
pub fn client(args: &[&str]) -> (i32, Value) {
    let mut cmd = Command::new(dsf());
    base_env(&mut cmd);
    let out = cmd.arg("client").args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), value)
}

/// Starts `dsf bench --json` against `target` in the background.
pub fn bench(target: &str, op: &str, conns: usize, depth: usize, duration: &str) -> Command {
    let mut cmd = Command::new(dsf());
    base_env(&mut cmd);
    cmd.args(["bench", "--target", target, "--op", op])
        .args(["--conns", &conns.to_string(), "--depth", &depth.to_string()])
        .args(["--duration", duration, "--warmup", "200ms", "--json"])
        .args(["--body", r#"{"k":"{n}"}"#]);
    cmd
}

/// Runs a prepared `dsf bench` command to completion and parses its report.
pub fn bench_report(child: Child) -> Value {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "dsf bench failed");
    let s = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("bench output {s:?}: {e}"))
}

/// Spawns a prepared bench command with stdout captured.
pub fn bench_spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Whether the heavier variants of tests were asked for (`DSF_HEAVY=1`).
pub fn heavy() -> bool {
    std::env::var("DSF_HEAVY").is_ok_and(|v| v == "1")
}

/// A path inside a process's temp folder.
pub fn path_in(p: &Proc, name: &str) -> PathBuf {
    Path::new(p.dir.path()).join(name)
}
