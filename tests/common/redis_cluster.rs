//! A private Redis Cluster for tests: 3 masters and 3 replicas (`redis-server
//! --cluster-enabled yes`, joined with `redis-cli --cluster create`) on free
//! 127.0.0.1 ports in a temporary folder, killed when dropped. Tests may kill a
//! master, restart it (it rejoins as a replica) and reshard slots under load.

use super::process::require;
use super::stores::free_port;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What `apt-get install` provides the servers started here.
const PACKAGES: &str = "redis-server redis-tools";

/// How long a silent node stays a master before its replica takes over.
pub const NODE_TIMEOUT_MS: u64 = 1000;

/// One `redis-server` of the cluster.
struct Member {
    /// Client port.
    port: u16,
    /// Cluster bus port.
    bus: u16,
    /// The running process, if any.
    child: Option<Child>,
}

/// A running Redis Cluster.
pub struct RedisCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
}

/// A master as `CLUSTER NODES` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// Node id.
    pub id: String,
    /// Client port.
    pub port: u16,
    /// Slot ranges it serves (inclusive).
    pub slots: Vec<(u16, u16)>,
}

impl Master {
    /// Whether it serves `slot`.
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }
}

impl RedisCluster {
    /// Starts 6 servers and joins them as 3 masters with one replica each; returns
    /// once every member reports `cluster_state:ok` with all slots covered.
    pub fn start() -> RedisCluster {
        require("redis-server", PACKAGES);
        require("redis-cli", PACKAGES);
        let mut c = RedisCluster {
            dir: tempfile::tempdir().expect("temp dir"),
            members: Vec::new(),
        };
        for _ in 0..6 {
            let (port, bus) = (free_port(), free_port());
            c.members.push(Member {
                port,
                bus,
                child: None,
            });
        }
        for i in 0..c.members.len() {
            c.spawn(i);
        }
        let addrs: Vec<String> = c
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        c.wait_ok(Duration::from_secs(20));
        c
    }

    fn spawn(&mut self, i: usize) {
        let dir = self.dir.path().join(format!("n{i}"));
        std::fs::create_dir_all(&dir).expect("member dir");
        let m = &mut self.members[i];
        let child = Command::new("redis-server")
            .args(["--port", &m.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-port", &m.bus.to_string()])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        m.child = Some(child);
        let addr = format!("127.0.0.1:{}", m.port);
        let start = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis {addr} not up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The seed URLs (every member).
    pub fn seeds(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("redis://127.0.0.1:{}", m.port))
            .collect()
    }

    /// Runs `redis-cli -p port ARGS` and returns its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn running_port(&self) -> u16 {
        self.members
            .iter()
            .find(|m| m.child.is_some())
            .map(|m| m.port)
            .expect("a running member")
    }

    /// The masters serving slots, as a running member sees them.
    pub fn masters(&self) -> Vec<Master> {
        let nodes = self.cli(self.running_port(), &["cluster", "nodes"]);
        let mut out = Vec::new();
        for line in nodes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let port = f[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .expect("node port");
            let slots: Vec<(u16, u16)> = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|a| (a, a)),
                })
                .collect();
            if !slots.is_empty() {
                out.push(Master {
                    id: f[0].to_owned(),
                    port,
                    slots,
                });
            }
        }
        out.sort_by_key(|m| m.port);
        out
    }

    /// The master serving `slot`.
    pub fn master_of(&self, slot: u16) -> Master {
        self.masters()
            .into_iter()
            .find(|m| m.serves(slot))
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// Kills the member on `port` with SIGKILL (its data is gone).
    pub fn kill(&mut self, port: u16) {
        let m = self
            .members
            .iter_mut()
            .find(|m| m.port == port)
            .expect("member");
        if let Some(mut c) = m.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the member on `port` again with its cluster configuration: it rejoins,
    /// as a replica if its slots were taken over meanwhile.
    pub fn restart(&mut self, port: u16) {
        let i = self
            .members
            .iter()
            .position(|m| m.port == port)
            .expect("member");
        self.kill(port);
        self.spawn(i);
    }

    /// Waits until every running member reports `cluster_state:ok`, 3 masters cover
    /// all slots, and each master streams to an online replica (so `WAIT` can succeed).
    pub fn wait_ok(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            let ok = self.members.iter().filter(|m| m.child.is_some()).all(|m| {
                let info = self.cli(m.port, &["cluster", "info"]);
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            });
            let masters = self.masters();
            let replicated = masters.iter().all(|m| {
                self.cli(m.port, &["info", "replication"])
                    .contains("state=online")
            });
            if ok && masters.len() == 3 && replicated {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "cluster not ok after {limit:?}: {}",
                self.cli(self.running_port(), &["cluster", "nodes"])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Replicas each master has, as a running member sees them (master id → count of
    /// replicas that are not failed).
    pub fn replicas(&self) -> HashMap<String, usize> {
        let nodes = self.cli(self.running_port(), &["cluster", "nodes"]);
        let mut out = HashMap::new();
        for line in nodes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 8 && f[2].contains("slave") && !f[2].contains("fail") {
                *out.entry(f[3].to_owned()).or_insert(0) += 1;
            }
        }
        out
    }

    /// The client port of a replica of `master`.
    pub fn replica_of(&self, master: &Master) -> u16 {
        let nodes = self.cli(self.running_port(), &["cluster", "nodes"]);
        nodes
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() >= 8 && f[2].contains("slave") && f[3] == master.id)
            .and_then(|f| f[1].split('@').next()?.rsplit(':').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no replica of {}: {nodes}", master.id))
    }

    /// Moves `slots` slots from master `from` to master `to` with `redis-cli --cluster
    /// reshard` (keys included) and returns its exit status and output.
    pub fn reshard(&self, from: &Master, to: &Master, slots: u32) -> (bool, String) {
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{}", from.port))
            .args(["--cluster-from", &from.id, "--cluster-to", &to.id])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster reshard");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
