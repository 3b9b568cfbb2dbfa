//! The lab: every process in its own network namespace on a private bridge.
//!
//! A run gets namespaces named `dsfp<pid>-<host>`, a hub namespace holding the bridge
//! (and the clients, which enter it with setns(2)), and one veth pair per host: `hN` on
//! the bridge, `eth0` in the host. The /24 is chosen from the test's pid. Nothing is
//! made in the root namespace, and [`Lab`]'s `Drop` kills every process left in the
//! namespaces and deletes them (also when a test panics); a later run also sweeps the
//! namespaces of runs whose process is gone.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The namespace prefix of this suite.
const PREFIX: &str = "dsfp";

/// One host of the lab: a namespace and its address on the bridge.
#[derive(Debug, Clone)]
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// Address on the bridge.
    pub ip: String,
}

/// Runs `ip ARGS`, panicking with the command and its error output on failure.
pub fn ip(args: &[&str]) {
    sh_ok("ip", args);
}

/// Runs `program ARGS`; panics naming the command when it fails.
pub fn sh_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Why the lab cannot run here, if it cannot.
fn unsupported() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: network namespaces need CAP_NET_ADMIN".into());
    }
    let ok = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        return Some("`ip netns` is unavailable (apt-get install iproute2)".into());
    }
    for tool in ["iptables", "tc", "mariadbd", "redis-server"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("`{tool}` is not installed (see scripts/test)"));
        }
    }
    None
}

/// Whether the lab can run; when it cannot, panics with the reason unless
/// `DSF_SKIP_NETNS=1`, in which case it prints the reason and returns false.
pub fn available(test: &str) -> bool {
    match unsupported() {
        None => true,
        Some(why) if std::env::var("DSF_SKIP_NETNS").is_ok_and(|v| v == "1") => {
            eprintln!("{test}: skipped (DSF_SKIP_NETNS=1): {why}");
            false
        }
        Some(why) => panic!("{test}: {why}; set DSF_SKIP_NETNS=1 to skip the partition suite"),
    }
}

/// Deletes the namespaces left by runs whose test process is gone.
fn sweep_stale() {
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = ns.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
            delete_ns(ns);
        }
    }
}

/// Kills every process in namespace `ns` and deletes it.
fn delete_ns(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-CONT", pid]).status();
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// A bridge, its namespaces and a temporary folder; all removed on drop.
pub struct Lab {
    /// The hub namespace (bridge and clients).
    pub hub: Host,
    /// The hosts made so far.
    pub hosts: Vec<Host>,
    /// The /24's first three octets, e.g. `10.123.45`.
    pub net: String,
    /// Logs and data of every process.
    pub dir: tempfile::TempDir,
}

impl Lab {
    /// A fresh lab with a hub namespace and bridge (no hosts yet).
    pub fn new() -> Lab {
        sweep_stale();
        let pid = std::process::id();
        static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let net = format!(
            "10.{}.{}",
            100 + pid % 100,
            (pid / 100 + run * 37) % 250 + 1
        );
        let hub = Host {
            ns: format!("{PREFIX}{pid}-{run}-hub"),
            ip: format!("{net}.1"),
        };
        let lab = Lab {
            hub: hub.clone(),
            hosts: Vec::new(),
            net,
            dir: tempfile::tempdir().expect("temp folder for the lab"),
        };
        ip(&["netns", "add", &hub.ns]);
        ip(&["-n", &hub.ns, "link", "set", "lo", "up"]);
        ip(&["-n", &hub.ns, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &hub.ns,
            "addr",
            "add",
            &format!("{}/24", hub.ip),
            "dev",
            "br0",
        ]);
        ip(&["-n", &hub.ns, "link", "set", "br0", "up"]);
        lab
    }

    /// Adds host `name` (its own namespace, a veth pair on the bridge, the next address).
    pub fn add_host(&mut self, name: &str) -> Host {
        let idx = self.hosts.len() + 1;
        let host = Host {
            ns: self.hub.ns.replace("-hub", &format!("-{name}")),
            ip: format!("{}.{}", self.net, 10 + idx),
        };
        let veth = format!("h{idx}");
        ip(&["netns", "add", &host.ns]);
        self.hosts.push(host.clone());
        ip(&["-n", &host.ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &self.hub.ns,
            "link",
            "add",
            &veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &host.ns,
        ]);
        ip(&[
            "-n",
            &self.hub.ns,
            "link",
            "set",
            &veth,
            "master",
            "br0",
            "up",
        ]);
        ip(&[
            "-n",
            &host.ns,
            "addr",
            "add",
            &format!("{}/24", host.ip),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &host.ns, "link", "set", "eth0", "up"]);
        host
    }

    /// A path in the lab's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `f` on a thread inside the hub namespace (where clients live).
    pub fn in_hub<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = self.hub.ns.clone();
        std::thread::spawn(move || {
            enter(&ns);
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Waits until `addr` accepts TCP connections from the hub, up to `limit`.
    pub fn wait_port(&self, addr: &str, limit: Duration) {
        let a: std::net::SocketAddr = addr.parse().expect("an ip:port");
        let what = addr.to_owned();
        self.in_hub(move || {
            let t0 = Instant::now();
            while std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_err() {
                assert!(t0.elapsed() < limit, "{what} not accepting after {limit:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in &self.hosts {
            delete_ns(&h.ns);
        }
        delete_ns(&self.hub.ns);
    }
}

/// Moves the calling thread into namespace `ns` (network only).
pub fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("open namespace {ns}: {e}"));
    // SAFETY: a valid namespace fd; CLONE_NEWNET changes only this thread's network.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "setns into {ns}: {}",
        std::io::Error::last_os_error()
    );
}

/// A process running in a host's namespace; killed (after a SIGCONT) when dropped.
pub struct LabProc {
    /// What it is, for messages (`n1`, `redis`, …).
    pub name: String,
    /// The host it runs on.
    pub host: Host,
    /// The command line, to start it again.
    argv: Vec<String>,
    /// Environment, to start it again.
    env: Vec<(String, String)>,
    /// stdout and stderr.
    pub log: PathBuf,
    child: Option<Child>,
}

impl LabProc {
    /// Starts `argv` in `host`'s namespace with `env`, logging to `log`.
    pub fn start(
        name: &str,
        host: &Host,
        argv: &[String],
        env: &[(String, String)],
        log: PathBuf,
    ) -> LabProc {
        let mut p = LabProc {
            name: name.to_owned(),
            host: host.clone(),
            argv: argv.to_vec(),
            env: env.to_vec(),
            log,
            child: None,
        };
        p.restart();
        p
    }

    /// Starts it (again) with the same command line.
    pub fn restart(&mut self) {
        self.kill9();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.host.ns])
            .args(&self.argv)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {} in {}: {e}", self.name, self.host.ns));
        self.child = Some(child);
    }

    /// The pid (`ip netns exec` execs the program, so it is the program's).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends signal `sig` (`STOP`, `CONT`, …).
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), pid.as_str()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {} (pid {pid})", self.name);
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The last `n` lines of its log, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for LabProc {
    fn drop(&mut self) {
        self.kill9();
    }
}
