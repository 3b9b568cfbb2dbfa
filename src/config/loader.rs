//! The pipeline that builds a [`Config`]: defaults → file → environment → flags,
//! validation, then the secret files read once.

use super::{Config, ConfigError};
use std::path::Path;

/// Replaces `inline` with the content of `file` when `file` is set (the file wins).
fn read_secret(key: &'static str, file: &Path, inline: &mut String) -> Result<(), ConfigError> {
    if !file.as_os_str().is_empty() {
        let s = std::fs::read_to_string(file).map_err(|source| ConfigError::SecretFile {
            key,
            path: file.to_owned(),
            source,
        })?;
        *inline = s.trim_end_matches(['\n', '\r']).to_owned();
    }
    Ok(())
}

/// Builds a [`Config`] through the documented pipeline.
pub struct Loader {
    builder: config::ConfigBuilder<config::builder::DefaultState>,
}

impl Loader {
    /// Starts from the defaults and, if given, a TOML file; the environment is read in
    /// [`load`](Self::load).
    pub fn new(file: Option<&Path>) -> Self {
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            builder = builder.add_source(
                config::File::from(file.to_owned())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        Loader { builder }
    }

    /// Overrides one dotted key (command-line flags).
    pub fn set(mut self, key: &str, value: impl Into<config::Value>) -> Self {
        self.builder = self
            .builder
            .set_override(key, value)
            .expect("override keys are static and well-formed");
        self
    }

    /// Overrides `key` only when `value` is `Some`.
    pub fn set_opt<V: Into<config::Value>>(self, key: &str, value: Option<V>) -> Self {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }

    /// Merges file, `DSF__SECTION__KEY` environment and overrides, validates, then
    /// reads the secret files, so that no other part of the program reads them.
    pub fn load(self) -> Result<Config, ConfigError> {
        self.load_from_env(std::env::vars())
    }

    /// Like [`load`](Self::load) with an explicit environment (tests).
    pub fn load_from_env(
        self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut cfg = self.check_with_env(env)?;
        cfg.resolve_secrets()?;
        Ok(cfg)
    }

    /// Merges and validates without reading secret files (`dsf check-config`, which
    /// may run where the secrets are not readable, e.g. in a build sandbox).
    pub fn check(self) -> Result<Config, ConfigError> {
        self.check_with_env(std::env::vars())
    }

    /// Like [`check`](Self::check) with an explicit environment (tests).
    pub fn check_with_env(
        self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("DSF__"))
            .collect();
        let environment = config::Environment::with_prefix("DSF")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("node.ops")
            .with_list_parse_key("cache.redis")
            .with_list_parse_key("balancer.etcd")
            .with_list_parse_key("tls.client_auth")
            .source(Some(env));
        // Flags were set as overrides on the builder, and overrides always win over
        // sources, so adding the environment here keeps the documented precedence.
        let merged = self.builder.add_source(environment).build()?;
        let cfg: Config = merged.try_deserialize()?;
        cfg.validate()?;
        Ok(cfg)
    }
}

impl Config {
    /// Reads `cluster.secret_file` and `store.password_file` into the values they stand
    /// for: the one place where secret files are read.
    pub fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        read_secret(
            "cluster.secret_file",
            &self.cluster.secret_file,
            &mut self.cluster.secret,
        )?;
        read_secret(
            "store.password_file",
            &self.store.password_file,
            &mut self.store.password,
        )
    }
}
