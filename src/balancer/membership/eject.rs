//! Outlier ejection in the membership: the proxy reports failures, the membership
//! ejects (bounded by `max_ejection_percent`), hands out due probes and readmits.
//!
//! Ejection is this balancer's own view of its data path: it is not shared through
//! Redis, since another balancer may reach the node fine.

use super::outlier::{may_eject, Ejection, Failure};
use super::{Membership, Table};
use crate::balancer::snapshot::Member;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A probe to run: an ejected node whose time is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The node.
    pub node: String,
    /// Where the proxy reaches it.
    pub addr: String,
    /// How long the probe may wait for its answer (the service's response timeout).
    pub timeout: Duration,
}

impl Membership {
    /// The proxy's traffic to `member` failed locally; ejects it once that makes
    /// `consecutive_failures` in a row and the service may lose one more node.
    pub fn failed(&self, member: &Member, failure: Failure) {
        let settings = self.settings.load();
        let policy = settings.outlier(&member.service);
        if !policy.enabled {
            return;
        }
        let run = member.load.failed();
        if run < policy.consecutive_failures {
            return;
        }
        let at = Instant::now();
        let mut t = self.lock();
        // A report about a node that has left (or rejoined with fresh counters) is moot.
        let current = t
            .loads
            .get(&*member.id)
            .is_some_and(|l| Arc::ptr_eq(l, &member.load));
        if !current || is_ejected(&t, &member.id) {
            return;
        }
        let peers: Vec<&str> = t
            .shape
            .iter()
            .filter(|s| s.1 == *member.service)
            .map(|s| s.0.as_str())
            .collect();
        let out = peers.iter().filter(|id| is_ejected(&t, id)).count();
        if !may_eject(policy, out, peers.len()) {
            if run == policy.consecutive_failures {
                tracing::warn!(
                    node = %member.id,
                    addr = %member.addr,
                    service = %member.service,
                    reason = %failure,
                    ejected = out,
                    nodes = peers.len(),
                    max_ejection_percent = policy.max_ejection_percent,
                    "node not ejected: its service already has as many nodes ejected as allowed"
                );
            }
            return;
        }
        member
            .load
            .failures
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let e = t
            .outliers
            .entry(member.id.to_string())
            .or_insert_with(|| Ejection::new(at));
        let time = e.eject(policy, at);
        let count = e.count;
        let reason = format!("{failure} ({run} failures in a row)");
        self.log_ejection(
            [&member.id, &member.addr, &member.service],
            &reason,
            time,
            count,
        );
        self.refresh(&mut t, at);
    }

    /// Ejected nodes whose time is up, each handed out once; every one must be
    /// answered with [`probe_done`](Self::probe_done).
    pub fn due_probes(&self, at: Instant) -> Vec<Probe> {
        let mut t = self.lock();
        let Table {
            outliers, shape, ..
        } = &mut *t;
        let mut due = Vec::new();
        for (id, e) in outliers.iter_mut() {
            if !e.probe_due(at) {
                continue;
            }
            let Ok(i) = shape.binary_search_by(|s| s.0.as_str().cmp(id)) else {
                continue;
            };
            e.probing = true;
            let timeout = self.settings.load().outlier(&shape[i].1).response_timeout;
            due.push(Probe {
                node: id.clone(),
                addr: shape[i].2.clone(),
                timeout,
            });
        }
        due
    }

    /// A probe of `node` ended: answered, the node takes traffic again; failed, it is
    /// ejected again at once for the next, longer, time.
    pub fn probe_done(&self, node: &str, result: Result<(), String>) {
        let at = Instant::now();
        let mut t = self.lock();
        let Some(i) = t.shape.binary_search_by(|s| s.0.as_str().cmp(node)).ok() else {
            return;
        };
        let (service, addr) = (t.shape[i].1.clone(), t.shape[i].2.clone());
        let policy = self.settings.load().outlier(&service).clone();
        let Some(e) = t.outliers.get_mut(node).filter(|e| e.probing) else {
            return;
        };
        match result {
            Ok(()) => {
                e.readmit(at);
                if let Some(load) = t.loads.get(node) {
                    load.answered();
                }
                tracing::info!(node, addr = %addr, service = %service, "node readmitted: probe answered");
                self.event(node, "readmitted", "probe answered".into());
            }
            Err(why) => {
                let time = e.eject(&policy, at);
                let count = e.count;
                let reason = format!("probe failed: {why}");
                self.log_ejection([node, &addr, &service], &reason, time, count);
            }
        }
        self.refresh(&mut t, at);
    }

    /// One log line, one event and one count per ejection of `[node, addr, service]`.
    fn log_ejection(
        &self,
        [node, addr, service]: [&str; 3],
        reason: &str,
        time: Duration,
        count: u32,
    ) {
        tracing::warn!(
            node,
            addr,
            service,
            reason,
            ejection_ms = time.as_millis() as u64,
            ejections = count,
            "node ejected"
        );
        self.event(
            node,
            "ejected",
            format!(
                "{reason}; out for {} ms (ejection {count})",
                time.as_millis()
            ),
        );
        metrics::counter!(
            crate::metrics::BALANCER_EJECTIONS,
            "service" => service.to_owned(),
            "node" => node.to_owned()
        )
        .increment(1);
    }
}

fn is_ejected(t: &Table, id: &str) -> bool {
    t.outliers.get(id).is_some_and(Ejection::ejected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::membership::{InMemory, NodeRecord, Settings};
    use crate::balancer::selection;
    use crate::balancer::snapshot::{BuildOptions, NodeState};
    use crate::config::OutlierConfig;
    use std::collections::BTreeMap;

    fn membership(nodes: &[&str]) -> Membership {
        let settings = Settings {
            lease_ttl: Duration::from_secs(60),
            heartbeat: Duration::from_secs(20),
            build: BuildOptions {
                default_algorithm: selection::Algorithm::ConsistentHash,
                service_algorithms: BTreeMap::new(),
                selection: selection::Options::default(),
            },
            outlier: OutlierConfig::default(),
            service_outliers: BTreeMap::new(),
        };
        let m = Membership::new(settings, Arc::new(InMemory));
        for (i, id) in nodes.iter().enumerate() {
            let record = NodeRecord::for_test(id, &format!("127.0.0.1:{}", 7000 + i));
            m.register(i as u64 + 1, record).unwrap();
        }
        m
    }

    fn fail(m: &Membership, node: &str, times: u32) {
        for _ in 0..times {
            let snap = m.snapshot();
            let member = snap.nodes.iter().find(|n| &*n.id == node).unwrap();
            m.failed(member, Failure::ResponseTimeout);
        }
    }

    fn states(m: &Membership) -> Vec<(String, NodeState)> {
        let snap = m.snapshot();
        snap.nodes
            .iter()
            .map(|n| (n.id.to_string(), n.state))
            .collect()
    }

    /// Three failures in a row eject; an answer in between starts the count again;
    /// keyed picks skip the ejected node.
    #[test]
    fn consecutive_failures_eject() {
        let m = membership(&["a", "b", "c"]);
        fail(&m, "a", 2);
        m.snapshot().nodes[0].load.answered();
        fail(&m, "a", 2);
        assert_eq!(states(&m)[0].1, NodeState::Healthy);
        fail(&m, "a", 1);
        assert_eq!(states(&m)[0].1, NodeState::Ejected);
        // Keyed picks go where they would go if `a` had left: its keys to the ring's
        // next node, no other key moves.
        let without_a = membership(&["b", "c"]);
        let pick = |m: &Membership, key: &str| {
            let snap = m.snapshot();
            let group = snap.service("dsf").unwrap().clone();
            group.members[group.pick(Some(key.as_bytes())).unwrap()]
                .id
                .to_string()
        };
        for k in 0..500 {
            let key = format!("k{k}");
            assert_eq!(pick(&m, &key), pick(&without_a, &key), "key {key}");
        }
        assert!(m
            .events()
            .iter()
            .any(|e| e.node == "a" && e.change == "ejected"));
    }

    /// A probe is handed out once the ejection time is up; answered, the node is back;
    /// failed, it is out again at once for longer.
    #[test]
    fn probes_readmit_or_eject_again() {
        let m = membership(&["a", "b"]);
        fail(&m, "b", 3);
        assert!(m.due_probes(Instant::now()).is_empty(), "not before 5 s");
        let later = Instant::now() + Duration::from_secs(5);
        let due = m.due_probes(later);
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].node.as_str(), due[0].timeout),
            ("b", Duration::from_secs(1))
        );
        assert!(m.due_probes(later).is_empty(), "one probe at a time");
        m.probe_done("b", Err("no answer".into()));
        assert_eq!(states(&m)[1].1, NodeState::Ejected);
        let now = Instant::now();
        assert!(
            m.due_probes(now + Duration::from_secs(9)).is_empty(),
            "10 s now"
        );
        assert_eq!(m.due_probes(now + Duration::from_secs(11)).len(), 1);
        m.probe_done("b", Ok(()));
        assert_eq!(states(&m)[1].1, NodeState::Healthy);
    }

    /// At most half of a service goes out, and a one-node service never does.
    #[test]
    fn ejection_share_is_bounded() {
        let m = membership(&["a", "b"]);
        fail(&m, "a", 3);
        fail(&m, "b", 10);
        let s = states(&m);
        assert_eq!((s[0].1, s[1].1), (NodeState::Ejected, NodeState::Healthy));
        let one = membership(&["solo"]);
        fail(&one, "solo", 10);
        assert_eq!(states(&one)[0].1, NodeState::Healthy);
    }
}
