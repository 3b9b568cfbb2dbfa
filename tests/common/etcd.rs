//! A private etcd cluster (Debian's `etcd-server`) on free 127.0.0.1 ports, its data
//! in a temporary folder, every member killed when it is dropped. [`Etcd::start_tls`]
//! serves clients over TLS and requires a client certificate (`--client-cert-auth`);
//! member-to-member traffic stays plain.

#![allow(dead_code)]

use super::cluster::free_port;
use super::pki::{Issued, Pki};
use super::process::http_get;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One member of the cluster.
struct Member {
    /// `m0`, `m1`, …
    name: String,
    /// Client port.
    client: u16,
    /// Peer port.
    peer: u16,
    /// The running process, if any.
    child: Option<Child>,
}

/// The files of a cluster serving clients over TLS.
pub struct EtcdTls {
    /// The CA bundle that signed the members' and the clients' certificates.
    pub ca: PathBuf,
    /// The members' certificate (CN `etcd`, IP 127.0.0.1).
    pub server: Issued,
    /// A client certificate etcd accepts (CN `dsf-balancer`).
    pub client: Issued,
}

/// A cluster of etcd members.
pub struct Etcd {
    members: Vec<Member>,
    /// Set when clients must speak TLS with a client certificate.
    pub tls: Option<EtcdTls>,
    /// `m0=http://127.0.0.1:P,…`.
    initial_cluster: String,
    /// Data folders and logs.
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts an `n`-member cluster and waits until every member is healthy.
    pub fn start(n: usize) -> Etcd {
        Etcd::start_with(n, None)
    }

    /// Starts an `n`-member cluster serving clients on `https://` only, with
    /// certificates issued by `pki`, requiring client certificates signed by it.
    pub fn start_tls(n: usize, pki: &Pki) -> Etcd {
        let tls = EtcdTls {
            ca: pki.ca.clone(),
            server: pki.issue("etcd-server", "etcd"),
            client: pki.issue("etcd-client", "dsf-balancer"),
        };
        Etcd::start_with(n, Some(tls))
    }

    fn start_with(n: usize, tls: Option<EtcdTls>) -> Etcd {
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            members,
            tls,
            initial_cluster,
            dir: tempfile::tempdir().unwrap(),
        };
        for i in 0..n {
            etcd.spawn(i, "new");
        }
        for i in 0..n {
            etcd.wait_healthy(i, Duration::from_secs(20));
        }
        etcd
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let m = &self.members[i];
        let client = format!("{}://127.0.0.1:{}", self.scheme(), m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .unwrap();
        let mut cmd = Command::new("etcd");
        if let Some(t) = &self.tls {
            cmd.args(["--cert-file", t.server.cert(), "--key-file", t.server.key()])
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.dir.path().join(&m.name))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", "dsf-test"])
            // Fast elections, so that a killed leader is replaced within a second.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd is installed (apt-get install etcd-server etcd-client)");
        self.members[i].child = Some(child);
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// etcdctl's TLS flags, when clients speak TLS.
    fn tls_args(&self) -> Vec<String> {
        match &self.tls {
            None => Vec::new(),
            Some(t) => vec![
                format!("--cacert={}", t.ca.display()),
                format!("--cert={}", t.client.cert()),
                format!("--key={}", t.client.key()),
            ],
        }
    }

    /// Whether member `i` answers with a leader (TLS: asked with etcdctl).
    fn healthy(&self, i: usize) -> bool {
        let addr = format!("127.0.0.1:{}", self.members[i].client);
        if self.tls.is_none() {
            return std::net::TcpStream::connect(&addr).is_ok()
                && http_get(&addr, "/health").1.contains("\"true\"");
        }
        std::net::TcpStream::connect(&addr).is_ok()
            && Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &format!("https://{addr}")])
                .args(self.tls_args())
                .args(["--command-timeout=1s", "endpoint", "health"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    /// Waits until member `i` answers `/health` with a leader.
    pub fn wait_healthy(&self, i: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.healthy(i) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd member {i} not healthy within {timeout:?}; log:\n{}",
                std::fs::read_to_string(self.log(i)).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}://127.0.0.1:{}", self.scheme(), m.client))
            .collect()
    }

    /// Client URLs, comma-separated (`DSF__BALANCER__ETCD`, `etcdctl --endpoints`).
    pub fn endpoints_csv(&self) -> String {
        self.endpoints().join(",")
    }

    /// Sends `sig` (`KILL`, `TERM`, `STOP`, `CONT`) to member `i`; a killed member is
    /// reaped.
    pub fn signal(&mut self, i: usize, sig: &str) {
        let Some(child) = self.members[i].child.as_mut() else {
            return;
        };
        super::process::signal(child.id(), sig);
        if sig == "KILL" || sig == "TERM" {
            let _ = child.wait();
            self.members[i].child = None;
        }
    }

    /// Starts member `i` again on its data folder and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i, "existing");
        self.wait_healthy(i, Duration::from_secs(20));
    }

    /// `etcdctl --endpoints … ARGS`: its standard output.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoints_csv()])
            .args(self.tls_args())
            .args(args)
            .output()
            .expect("etcdctl is installed (apt-get install etcd-client)");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        let out = self.etcdctl(&["get", "/", "-w", "json", "--limit", "1"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["header"]["revision"].as_i64().unwrap()
    }

    /// `(key, value)` of every key under `prefix`, read with `etcdctl get --prefix`.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let text = self.etcdctl(&["get", "--prefix", prefix]);
        let lines: Vec<&str> = text.lines().collect();
        lines
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].to_owned(), c[1].to_owned()))
            .collect()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = Command::new("kill")
                    .args(["-CONT", &c.id().to_string()])
                    .stderr(Stdio::null())
                    .status();
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
