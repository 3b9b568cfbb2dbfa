//! Starting real `dsf` processes on free ports and reading what they print.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Sends signal `sig` by name (`TERM`, `KILL`, `STOP`, `CONT`, …) to process `pid`;
/// panics if it cannot be sent.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid}");
}

/// Panics, naming the apt `packages` that provide it, unless `binary` is on the PATH.
pub fn require(binary: &str, packages: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{binary}` is not installed: apt-get install -y {packages}"
    );
}

/// A running `dsf` process; killed when dropped.
pub struct Dsf {
    /// The child process.
    pub child: Child,
    /// Addresses it announced, by listener name (e.g. "node" → "127.0.0.1:40123").
    pub listeners: HashMap<String, String>,
    /// Lines it printed on stdout after `ready` (read in the background).
    pub stdout: mpsc::Receiver<String>,
    /// Its data folder, removed with it.
    pub data: Option<tempfile::TempDir>,
}

impl Dsf {
    /// Runs `dsf ARGS` with extra environment and waits (up to 30 s) for `ready`.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Dsf {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsf"));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn dsf");
        let out = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut listeners = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("dsf {args:?} did not print `ready` within 30 s"));
            if let Some((head, addr)) = line.split_once(" listening on ") {
                let name = head.split_whitespace().next().unwrap_or("").to_owned();
                listeners.insert(name, addr.trim().to_owned());
            }
            if line.contains("ready") {
                break;
            }
        }
        Dsf {
            child,
            listeners,
            stdout: rx,
            data: None,
        }
    }

    /// Starts `dsf node --listen 127.0.0.1:0` with extra args and environment.
    pub fn node(extra: &[&str], env: &[(&str, &str)]) -> Dsf {
        let data = tempfile::tempdir().expect("temp data folder");
        let data_path = data.path().to_str().expect("utf-8 temp path").to_owned();
        let mut args = vec!["node", "--listen", "127.0.0.1:0"];
        if !extra.contains(&"--admin") {
            args.extend_from_slice(&["--admin", ""]);
        }
        if !extra.contains(&"--data") {
            args.extend_from_slice(&["--data", &data_path]);
        }
        args.extend_from_slice(extra);
        let mut node = Dsf::start(&args, env);
        node.data = Some(data);
        node
    }

    /// The address announced for listener `name`.
    pub fn addr(&self, name: &str) -> &str {
        self.listeners
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` listener in {:?}", self.listeners))
    }

    /// Sends a signal (e.g. "TERM", "KILL", "STOP", "CONT").
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits up to `timeout` for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// GETs `path` from the admin listener; returns (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.addr("admin"), path)
    }

    /// Resident memory of the process in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS line")
    }

    /// Open file descriptors of the process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Dsf {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read response");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of one Prometheus sample line, e.g. `dsf_requests_total{code="ok",op="sys.ping"}`;
/// 0 when absent. Label order is as the exporter renders it.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap_or(0.0))
        .sum()
}
