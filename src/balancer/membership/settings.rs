//! Lease timing and selector construction ([`Settings`]), and the record of one
//! membership change ([`Event`]).

use crate::balancer::error::BalancerError;
use crate::balancer::selection::{self, Algorithm};
use crate::balancer::snapshot::BuildOptions;
use crate::config::{BalancerConfig, OutlierConfig};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One logged membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When (ms since the epoch).
    pub unix_ms: u64,
    /// Which node.
    pub node: String,
    /// `joined`, `rejoined`, `draining`, `left`, `unhealthy`, `recovered`, `ejected`,
    /// `readmitted` or `reweighted`.
    pub change: &'static str,
    /// Why, for the operator reading the log.
    pub reason: String,
}

/// Lease timing and selector construction.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A lease without a heartbeat for this long ends.
    pub lease_ttl: Duration,
    /// The heartbeat interval asked of nodes.
    pub heartbeat: Duration,
    /// How selectors are built.
    pub build: BuildOptions,
    /// Outlier ejection for services without their own.
    pub outlier: OutlierConfig,
    /// Outlier ejection of services that override some of it.
    pub service_outliers: BTreeMap<String, OutlierConfig>,
}

impl Settings {
    /// From `[balancer]`, naming the key of an unknown algorithm.
    pub fn from_config(cfg: &BalancerConfig) -> Result<Settings, BalancerError> {
        let parse = |key: String, name: &str| {
            name.parse::<Algorithm>()
                .map_err(|source| BalancerError::Algorithm { key, source })
        };
        let default_algorithm = parse("algorithm".into(), &cfg.algorithm)?;
        let mut service_algorithms = BTreeMap::new();
        let mut service_outliers = BTreeMap::new();
        for (name, svc) in &cfg.services {
            if svc.outlier != Default::default() {
                service_outliers.insert(name.clone(), cfg.outlier.with(&svc.outlier));
            }
            if !svc.algorithm.is_empty() {
                let alg = parse(format!("services.{name}.algorithm"), &svc.algorithm)?;
                service_algorithms.insert(name.clone(), alg);
            }
        }
        Ok(Settings {
            lease_ttl: cfg.lease_ttl,
            heartbeat: cfg.heartbeat,
            build: BuildOptions {
                default_algorithm,
                service_algorithms,
                selection: selection::Options {
                    vnodes: cfg.vnodes,
                    load_factor: cfg.load_factor,
                },
            },
            outlier: cfg.outlier.clone(),
            service_outliers,
        })
    }

    /// The outlier ejection settings of `service`.
    pub fn outlier(&self, service: &str) -> &OutlierConfig {
        self.service_outliers.get(service).unwrap_or(&self.outlier)
    }

    /// Silence after which a node counts as unhealthy: two missed heartbeats.
    pub fn unhealthy_after(&self) -> Duration {
        (self.heartbeat * 2).min(self.lease_ttl)
    }
}
