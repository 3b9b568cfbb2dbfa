//! Outlier ejection, the pure part: how long a node stays out after its n-th ejection,
//! how repeats are forgotten, and how many of a service's nodes may be out at once.
//!
//! The proxy counts failures in a row on each node (in its [`NodeLoad`]); when they
//! reach `consecutive_failures` the membership ejects the node (its state becomes
//! `ejected`, so the selectors skip it) for `base_ejection × n`, capped at
//! `max_ejection`, where n counts its ejections. When that time is up the node is
//! probed; it takes traffic again only once a probe is answered, and a failed probe
//! ejects it again at once for the next, longer, time. Every `max_ejection` spent
//! without an ejection forgets one.
//!
//! [`NodeLoad`]: crate::balancer::snapshot::NodeLoad

use crate::config::OutlierConfig;
use std::fmt;
use std::time::{Duration, Instant};

/// A local-origin failure of the proxy's traffic to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection was refused or reset while opening.
    ConnectFailed,
    /// The connection did not open within `balancer.connect_timeout`.
    ConnectTimeout,
    /// A request got no answer within `outlier.response_timeout`, and neither did
    /// any other request on its connection meanwhile (the connection went silent).
    ResponseTimeout,
}

impl Failure {
    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::ConnectFailed => "connect failed",
            Failure::ConnectTimeout => "connect timed out",
            Failure::ResponseTimeout => "no answer within the response timeout",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node's ejection history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ejection {
    /// Ejections not yet forgotten; the next one lasts `count + 1` base times.
    pub count: u32,
    /// While ejected: when the ejection time ends (then a probe decides).
    pub until: Option<Instant>,
    /// A probe is under way (the time is up, the answer not yet in).
    pub probing: bool,
    /// Since when the node has been in (or the last forgetting step).
    pub calm_since: Instant,
}

impl Ejection {
    /// A node never ejected.
    pub fn new(at: Instant) -> Ejection {
        Ejection {
            count: 0,
            until: None,
            probing: false,
            calm_since: at,
        }
    }

    /// Whether the node is out of selection.
    pub fn ejected(&self) -> bool {
        self.until.is_some()
    }

    /// Ejects (or, after a failed probe, ejects again) at `at`; returns for how long.
    pub fn eject(&mut self, policy: &OutlierConfig, at: Instant) -> Duration {
        self.forget(policy, at);
        self.count = self.count.saturating_add(1);
        let time = ejection_time(policy, self.count);
        self.until = Some(at + time);
        self.probing = false;
        time
    }

    /// Whether the ejection time is up and no probe has been started yet.
    pub fn probe_due(&self, at: Instant) -> bool {
        !self.probing && self.until.is_some_and(|u| u <= at)
    }

    /// A probe was answered: the node takes traffic again from `at`.
    pub fn readmit(&mut self, at: Instant) {
        self.until = None;
        self.probing = false;
        self.calm_since = at;
    }

    /// Forgets one past ejection for every `max_ejection` spent in since the last.
    pub fn forget(&mut self, policy: &OutlierConfig, at: Instant) {
        if self.ejected() || policy.max_ejection.is_zero() {
            return;
        }
        while self.count > 0 && at.saturating_duration_since(self.calm_since) >= policy.max_ejection
        {
            self.count -= 1;
            self.calm_since += policy.max_ejection;
        }
    }
}

/// How long the `n`-th (unforgotten) ejection lasts: `base × n`, at most `max`.
pub fn ejection_time(policy: &OutlierConfig, n: u32) -> Duration {
    policy
        .base_ejection
        .saturating_mul(n.max(1))
        .min(policy.max_ejection)
}

/// Whether one more of a service's `nodes` may be ejected while `ejected` already
/// are: at most `max_ejection_percent` of them (rounded down), and never the last one.
pub fn may_eject(policy: &OutlierConfig, ejected: usize, nodes: usize) -> bool {
    let by_share = nodes * policy.max_ejection_percent as usize / 100;
    ejected < by_share.min(nodes.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OutlierConfig {
        OutlierConfig::default()
    }

    /// Each repeat ejection lasts one base time more, up to the cap.
    #[test]
    fn ejection_time_grows_and_is_capped() {
        let p = policy();
        let t0 = Instant::now();
        let mut e = Ejection::new(t0);
        let mut at = t0;
        let mut times = Vec::new();
        for _ in 0..14 {
            let d = e.eject(&p, at);
            times.push(d.as_secs());
            assert!(e.ejected());
            at += d;
            assert!(e.probe_due(at));
            e.probing = true;
            assert!(!e.probe_due(at), "one probe at a time");
        }
        assert_eq!(
            times,
            [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 60, 60]
        );
    }

    /// A node that stays in for `max_ejection` per past ejection is back to the base time.
    #[test]
    fn quiet_time_forgets_past_ejections() {
        let p = policy();
        let t0 = Instant::now();
        let mut e = Ejection::new(t0);
        let mut at = t0;
        for _ in 0..3 {
            at += e.eject(&p, at);
            e.readmit(at);
        }
        assert_eq!(e.count, 3);
        // 59 s in: nothing forgotten; the next ejection is the fourth.
        let mut probe = e.clone();
        assert_eq!(probe.eject(&p, at + Duration::from_secs(59)).as_secs(), 20);
        // 2 minutes in: two forgotten, so the next is the second.
        let mut probe = e.clone();
        assert_eq!(probe.eject(&p, at + Duration::from_secs(120)).as_secs(), 10);
        // Long after: all forgotten.
        assert_eq!(e.eject(&p, at + Duration::from_secs(3600)).as_secs(), 5);
    }

    /// Nothing is forgotten while the node is out.
    #[test]
    fn no_forgetting_while_ejected() {
        let p = policy();
        let t0 = Instant::now();
        let mut e = Ejection::new(t0);
        e.eject(&p, t0);
        e.forget(&p, t0 + Duration::from_secs(600));
        assert_eq!(e.count, 1);
    }

    /// At most the configured share is out, never the last node, and a one-node
    /// service is never emptied.
    #[test]
    fn share_of_ejected_nodes_is_bounded() {
        let mut p = policy();
        assert!(!may_eject(&p, 0, 1), "one node stays");
        assert!(may_eject(&p, 0, 2));
        assert!(!may_eject(&p, 1, 2), "50% of 2 is 1");
        assert!(!may_eject(&p, 1, 3), "50% of 3 rounds down to 1");
        assert!(may_eject(&p, 4, 10));
        assert!(!may_eject(&p, 5, 10));
        p.max_ejection_percent = 100;
        assert!(may_eject(&p, 1, 3));
        assert!(!may_eject(&p, 2, 3), "the last node stays even at 100%");
        assert!(!may_eject(&p, 0, 1));
        p.max_ejection_percent = 0;
        assert!(!may_eject(&p, 0, 10));
    }
}
