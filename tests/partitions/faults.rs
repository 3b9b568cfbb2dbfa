//! Faults the suite injects, each undone by [`Fault::heal`].
//!
//! Cuts are iptables DROP rules in one host's namespace, in both directions, so open
//! connections stay open and packets vanish (what a partition looks like, unlike a
//! refused connection). Heartbeats go from the node to the balancer's registration
//! port over the node's own connection; the proxy's data path is the balancer's
//! connections to the node's service port, so cutting only that port from the
//! balancer's namespace leaves heartbeats flowing. Cutting the balancer from etcd
//! leaves it serving the membership it holds.

use super::lab::sh_ok;
use super::topology::{Cluster, NODE_PORT};
use std::time::{Duration, Instant};

/// One fault, on node `usize` (0-based) where it names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The node's packets to and from Redis vanish.
    RedisCut(usize),
    /// The node's packets to and from the balancer vanish (heartbeats and data).
    BalancerCut(usize),
    /// The balancer's packets to and from the node's service port vanish.
    ProxyPathCut(usize),
    /// The node's packets to and from MariaDB vanish.
    DbCut(usize),
    /// The node's outgoing packets are delayed (netem 100 ± 50 ms) and 20 % lost;
    /// where the kernel has no netem, 20 % lost (iptables) and queued behind a
    /// 256 kbit/s token bucket.
    Netem(usize),
    /// The node is paused with SIGSTOP (until SIGCONT).
    Pause(usize),
    /// The node is killed with SIGKILL (and started again on heal).
    Kill(usize),
    /// The balancer's wall clock jumps 90 s ahead (libfaketime).
    ClockSkew,
    /// The balancer's packets to and from etcd vanish.
    EtcdCut,
}

/// `iptables` rules dropping everything between the namespace and `peer` (optionally
/// only TCP to and from `port` on the peer), as `-A`/`-D` argument lists.
fn cut_rules(peer: &str, port: Option<u16>) -> [Vec<String>; 2] {
    let mut out: Vec<String> = ["OUTPUT", "-d", peer].map(String::from).to_vec();
    let mut inp: Vec<String> = ["INPUT", "-s", peer].map(String::from).to_vec();
    if let Some(p) = port {
        out.extend(["-p", "tcp", "--dport", &p.to_string()].map(String::from));
        inp.extend(["-p", "tcp", "--sport", &p.to_string()].map(String::from));
    }
    for r in [&mut out, &mut inp] {
        r.extend(["-j", "DROP"].map(String::from));
    }
    [out, inp]
}

/// Drops 20 % of the namespace's outgoing packets (one-way loss).
fn loss_rule() -> Vec<String> {
    [
        "OUTPUT",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.2",
        "-j",
        "DROP",
    ]
    .map(String::from)
    .to_vec()
}

fn iptables(ns: &str, action: &str, rule: &[String]) {
    let mut args = vec!["netns", "exec", ns, "iptables", "-w", action];
    args.extend(rule.iter().map(String::as_str));
    sh_ok("ip", &args);
}

impl Fault {
    /// Its name in summaries.
    pub fn name(&self) -> String {
        match self {
            Fault::RedisCut(n) => format!("n{}<->redis cut", n + 1),
            Fault::BalancerCut(n) => format!("n{}<->balancer cut", n + 1),
            Fault::ProxyPathCut(n) => format!("proxy->n{} data path cut", n + 1),
            Fault::DbCut(n) => format!("n{}<->mariadb cut", n + 1),
            Fault::Netem(n) => format!("n{} egress loss+delay", n + 1),
            Fault::Pause(n) => format!("n{} SIGSTOP", n + 1),
            Fault::Kill(n) => format!("n{} kill -9", n + 1),
            Fault::ClockSkew => "balancer clock +90 s".into(),
            Fault::EtcdCut => "balancer<->etcd cut".into(),
        }
    }

    /// The namespace and rules of a cut.
    fn cut(&self, c: &Cluster) -> Option<(String, [Vec<String>; 2])> {
        let node = |n: usize| c.nodes[n].host.ns.clone();
        Some(match *self {
            Fault::RedisCut(n) => (node(n), cut_rules(&c.redis.host.ip, None)),
            Fault::BalancerCut(n) => (node(n), cut_rules(&c.balancer.host.ip, None)),
            Fault::DbCut(n) => (node(n), cut_rules(&c.db.host.ip, None)),
            Fault::EtcdCut => (c.balancer.host.ns.clone(), cut_rules(&c.etcd.host.ip, None)),
            Fault::ProxyPathCut(n) => (
                c.balancer.host.ns.clone(),
                cut_rules(&c.nodes[n].host.ip, Some(NODE_PORT)),
            ),
            _ => return None,
        })
    }

    /// Injects it.
    pub fn inject(&self, c: &mut Cluster) {
        if let Some((ns, rules)) = self.cut(c) {
            for r in &rules {
                iptables(&ns, "-I", r);
            }
            return;
        }
        match *self {
            Fault::Netem(n) => {
                let ns = &c.nodes[n].host.ns;
                let tc = |args: &[&str]| {
                    std::process::Command::new("ip")
                        .args([
                            "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root",
                        ])
                        .args(args)
                        .output()
                        .is_ok_and(|o| o.status.success())
                };
                if !tc(&["netem", "delay", "100ms", "50ms", "loss", "20%"]) {
                    // Kernels without sch_netem: the loss from iptables' statistic
                    // match, the delay from a token bucket's queue.
                    assert!(
                        tc(&["tbf", "rate", "256kbit", "burst", "4kb", "latency", "500ms"]),
                        "neither netem nor tbf qdisc on eth0 in {ns}"
                    );
                    iptables(ns, "-I", &loss_rule());
                }
            }
            Fault::Pause(n) => c.nodes[n].signal("STOP"),
            Fault::Kill(n) => c.nodes[n].kill9(),
            Fault::ClockSkew => {
                if let Some(f) = &c.skew_file {
                    std::fs::write(f, "+90s\n").expect("write the clock offset");
                }
            }
            _ => unreachable!("cuts are handled above"),
        }
    }

    /// Undoes it; a killed node is started again and waited for.
    pub fn heal(&self, c: &mut Cluster) {
        if let Some((ns, rules)) = self.cut(c) {
            for r in &rules {
                iptables(&ns, "-D", r);
            }
            return;
        }
        match *self {
            Fault::Netem(n) => {
                let ns = &c.nodes[n].host.ns;
                sh_ok(
                    "ip",
                    &[
                        "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root",
                    ],
                );
                let mut args = vec!["netns", "exec", ns, "iptables", "-w", "-D"];
                let rule = loss_rule();
                args.extend(rule.iter().map(String::as_str));
                // Present only when netem was missing.
                let _ = std::process::Command::new("ip").args(&args).output();
            }
            Fault::Pause(n) => c.nodes[n].signal("CONT"),
            Fault::Kill(n) => {
                c.nodes[n].restart();
                let addr = c.node_addr(n);
                c.lab.wait_port(&addr, Duration::from_secs(60));
            }
            Fault::ClockSkew => {
                if let Some(f) = &c.skew_file {
                    std::fs::write(f, "+0\n").expect("write the clock offset");
                }
            }
            _ => unreachable!("cuts are handled above"),
        }
    }
}

/// A fault injected for a while, for the summary.
#[derive(Debug, Clone)]
pub struct Injected {
    /// Which.
    pub fault: Fault,
    /// Seconds since the run began, when injected and healed.
    pub from: f64,
    /// When healed.
    pub to: f64,
}

/// Injects `fault` now, holds it for `hold`, heals it; the record of it.
pub fn hold(c: &mut Cluster, fault: Fault, hold: Duration, t0: Instant) -> Injected {
    let from = t0.elapsed().as_secs_f64();
    fault.inject(c);
    std::thread::sleep(hold);
    fault.heal(c);
    Injected {
        fault,
        from,
        to: t0.elapsed().as_secs_f64(),
    }
}
