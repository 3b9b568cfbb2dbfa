//! `[balancer.outlier]` and its per-service overrides: passive health checking of the
//! proxy's node connections (docs/balancer.md, "Passive health checking").

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Default failures in a row that eject a node.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 3;
/// Default wait for a node's answer before the request counts as a failure.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Default length of a first ejection; the n-th lasts n times as long.
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(5);
/// Default cap on one ejection.
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(60);
/// Default largest share of a service's nodes ejected at once.
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 50;

/// `[balancer.outlier]`: when the proxy takes a node it cannot reach out of selection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierConfig {
    /// Eject nodes at all.
    pub enabled: bool,
    /// Connect failures, connect timeouts and unanswered requests in a row that eject.
    pub consecutive_failures: u32,
    /// A request without an answer for this long, on a connection that answered
    /// nothing else meanwhile, counts as a failure (and an idempotent one is repeated
    /// on the next node, silent connection or not); the client's own deadline is
    /// still `limits.request_timeout`.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// Length of a first ejection; each repeat adds as much again.
    #[serde(with = "humantime_serde")]
    pub base_ejection: Duration,
    /// Cap on one ejection; also the quiet time that forgets one past ejection.
    #[serde(with = "humantime_serde")]
    pub max_ejection: Duration,
    /// Largest share of a service's nodes ejected at once (one node always stays).
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            enabled: true,
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            base_ejection: DEFAULT_BASE_EJECTION,
            max_ejection: DEFAULT_MAX_EJECTION,
            max_ejection_percent: DEFAULT_MAX_EJECTION_PERCENT,
        }
    }
}

/// `[balancer.services.<name>.outlier]`: the keys set here replace the
/// `[balancer.outlier]` ones for that service.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceOutlierConfig {
    /// Replaces `outlier.enabled`.
    pub enabled: Option<bool>,
    /// Replaces `outlier.consecutive_failures`.
    pub consecutive_failures: Option<u32>,
    /// Replaces `outlier.response_timeout`.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Option<Duration>,
    /// Replaces `outlier.base_ejection`.
    #[serde(with = "humantime_serde")]
    pub base_ejection: Option<Duration>,
    /// Replaces `outlier.max_ejection`.
    #[serde(with = "humantime_serde")]
    pub max_ejection: Option<Duration>,
    /// Replaces `outlier.max_ejection_percent`.
    pub max_ejection_percent: Option<u32>,
}

impl OutlierConfig {
    /// These settings with a service's overrides applied.
    pub fn with(&self, o: &ServiceOutlierConfig) -> OutlierConfig {
        OutlierConfig {
            enabled: o.enabled.unwrap_or(self.enabled),
            consecutive_failures: o.consecutive_failures.unwrap_or(self.consecutive_failures),
            response_timeout: o.response_timeout.unwrap_or(self.response_timeout),
            base_ejection: o.base_ejection.unwrap_or(self.base_ejection),
            max_ejection: o.max_ejection.unwrap_or(self.max_ejection),
            max_ejection_percent: o.max_ejection_percent.unwrap_or(self.max_ejection_percent),
        }
    }

    /// What is wrong with these values, if anything: `(key, problem)`, the key
    /// relative to the outlier table.
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self.consecutive_failures == 0 {
            return Some(("consecutive_failures", "expected at least 1"));
        }
        if self.response_timeout.is_zero() {
            return Some((
                "response_timeout",
                "expected a positive duration such as \"1s\"",
            ));
        }
        if self.base_ejection.is_zero() {
            return Some((
                "base_ejection",
                "expected a positive duration such as \"5s\"",
            ));
        }
        if self.max_ejection < self.base_ejection {
            return Some((
                "max_ejection",
                "expected at least base_ejection (e.g. 5s and 60s)",
            ));
        }
        if self.max_ejection_percent > 100 {
            return Some(("max_ejection_percent", "expected 0 to 100"));
        }
        None
    }
}
