//! Configuration: one pipeline, `defaults → TOML file → DSF__SECTION__KEY env → flags`.
//!
//! Each layer overrides the one before it. The `config` crate merges the file and the
//! environment; command-line flags are applied as overrides by the caller
//! ([`Loader::set`]). The merged tree is deserialized into [`Config`], whose structs
//! deny unknown keys so a typo is an error rather than a silently ignored setting.
//! `dsf check-config FILE` runs the same pipeline plus [`Config::validate`].
//!
//! Every default is a named constant or a `Default` impl below; `dsf.example.toml`
//! at the repository root lists every key with its default.

mod balancer;
mod cache;
mod loader;
mod outlier;
pub mod reload;
mod sections;
mod validate;

pub use balancer::*;
pub use cache::*;
pub use loader::Loader;
pub use outlier::*;
pub use sections::*;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong while loading configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file or environment could not be read or merged, or a value has the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value parsed but is not acceptable.
    #[error("configuration: `{key}`: {problem}")]
    Invalid {
        /// Dotted key, e.g. `limits.max_frame`.
        key: &'static str,
        /// What is wrong and what is expected.
        problem: String,
    },
    /// A secret file named in the configuration could not be read.
    #[error("configuration: `{key}`: cannot read {path}: {source}")]
    SecretFile {
        /// Dotted key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl ConfigError {
    /// The dotted key at fault, when the error names one (reload logs name it).
    pub fn key(&self) -> Option<String> {
        fn inner(e: &config::ConfigError) -> Option<String> {
            match e {
                config::ConfigError::Type { key, .. } => key.clone(),
                config::ConfigError::At { key, error, .. } => key.clone().or_else(|| inner(error)),
                config::ConfigError::NotFound(key) => Some(key.clone()),
                _ => None,
            }
        }
        match self {
            ConfigError::Load(e) => inner(e),
            ConfigError::Invalid { key, .. } | ConfigError::SecretFile { key, .. } => {
                Some((*key).to_owned())
            }
        }
    }
}

/// The whole configuration of a node or balancer process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node: identity, listener, registration.
    pub node: NodeConfig,
    /// Event-loop threads and the blocking pool.
    pub runtime: RuntimeConfig,
    /// Bounds on every listener.
    pub limits: LimitsConfig,
    /// Logging.
    pub log: LogConfig,
    /// The persistent store (MySQL or embedded).
    pub store: StoreConfig,
    /// The cache layer (Redis or in-process).
    pub cache: CacheConfig,
    /// Sessions, passwords, login throttling.
    pub auth: AuthConfig,
    /// Cluster-wide shared secret.
    pub cluster: ClusterConfig,
    /// The balancer's listeners and algorithms.
    pub balancer: BalancerConfig,
    /// The admin HTTP listener.
    pub admin: AdminConfig,
    /// Certificates, keys and CAs of the process's TLS listeners and connections.
    pub tls: TlsConfig,
}

#[cfg(test)]
mod tests;
