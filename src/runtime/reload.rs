//! Live reload (PROTOCOL §9) as a value: a [`Reload`] holds the running
//! configuration, the pipeline that loads it again, and the parts of the process
//! that take a new one.
//!
//! On `SIGHUP` (or [`Reload::reload`]) the pipeline runs again (file, environment,
//! the command line's overrides, secrets). A configuration that fails to load or to
//! pass a part's check is refused with one error line naming the key and the file,
//! and the running one stays. Otherwise every changed key that needs a restart is
//! named in one warning line and keeps its running value, and each part is handed
//! the old and the new configuration to take what it can live. Parts run on every
//! reload, changed or not, so that files named by the configuration (certificates)
//! are read again.

use crate::config::reload::{changes, is_secret, Changes};
use crate::config::{Config, ConfigError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Loads the configuration again: the process's own pipeline.
type Source = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;
/// Refuses a configuration a part cannot take: `(key, problem)`.
type Check = Box<dyn Fn(&Config) -> Result<(), (String, String)> + Send + Sync>;
/// Takes a new configuration: `(running, new)`.
type Apply = Box<dyn Fn(&Config, &Config) + Send + Sync>;

struct Inner {
    /// Where the configuration comes from, for log lines (`/etc/dsf/balancer.toml`).
    origin: String,
    /// The pipeline; `None` = the configuration is fixed and a reload only reads
    /// files again.
    source: Option<Source>,
    /// The configuration the process runs with.
    current: Mutex<Config>,
    /// Checks every part makes before anything is applied.
    checks: Mutex<Vec<Check>>,
    /// Parts taking new configurations, in registration order.
    parts: Mutex<Vec<Apply>>,
    /// Whether a `SIGHUP` watcher runs for this value.
    watching: AtomicBool,
    /// Whether every part is registered: a `SIGHUP` before that is logged and ignored.
    ready: AtomicBool,
}

/// The process's configuration and what takes a new one; clones share it.
#[derive(Clone)]
pub struct Reload {
    inner: Arc<Inner>,
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Taken: the changed keys, those needing a restart kept at their running values.
    Applied(Changes),
    /// Refused: the key at fault (when known) and why; the running configuration stays.
    Refused {
        /// Dotted key, or `-` when the problem names none (unreadable file).
        key: String,
        /// The loader's or the part's message.
        problem: String,
    },
}

impl Reload {
    /// A configuration loaded again by `source` on every reload; `origin` names where
    /// it comes from in log lines (e.g. `/etc/dsf/dsf.toml`, or `environment and flags`).
    pub fn new(
        running: Config,
        origin: impl Into<String>,
        source: impl Fn() -> Result<Config, ConfigError> + Send + Sync + 'static,
    ) -> Reload {
        Reload::build(running, origin.into(), Some(Box::new(source)))
    }

    /// A configuration that never changes: a reload only reads files again
    /// (certificates). Libraries and `dsf up` use this.
    pub fn fixed(running: Config) -> Reload {
        Reload::build(running, "fixed configuration".into(), None)
    }

    fn build(running: Config, origin: String, source: Option<Source>) -> Reload {
        Reload {
            inner: Arc::new(Inner {
                origin,
                source,
                current: Mutex::new(running),
                checks: Mutex::default(),
                parts: Mutex::default(),
                watching: AtomicBool::new(false),
                ready: AtomicBool::new(false),
            }),
        }
    }

    /// The configuration the process runs with now.
    pub fn current(&self) -> Config {
        self.inner.current.lock().expect("reload lock").clone()
    }

    /// Adds a check a new configuration must pass before any part takes it.
    pub fn check(
        &self,
        f: impl Fn(&Config) -> Result<(), (String, String)> + Send + Sync + 'static,
    ) {
        self.inner
            .checks
            .lock()
            .expect("reload lock")
            .push(Box::new(f));
    }

    /// Adds a part that takes new configurations: `f(running, new)` on every reload.
    pub fn on_reload(&self, f: impl Fn(&Config, &Config) + Send + Sync + 'static) {
        self.inner
            .parts
            .lock()
            .expect("reload lock")
            .push(Box::new(f));
    }

    /// Loads, checks and applies the configuration once, logging the outcome.
    pub fn reload(&self) -> Outcome {
        let origin = &self.inner.origin;
        let mut current = self.inner.current.lock().expect("reload lock");
        let new = match &self.inner.source {
            None => current.clone(),
            Some(source) => match source() {
                Ok(new) => new,
                Err(e) => return refused(origin, e.key().unwrap_or_else(|| "-".into()), e),
            },
        };
        for check in self.inner.checks.lock().expect("reload lock").iter() {
            if let Err((key, problem)) = check(&new) {
                return refused(origin, key, problem);
            }
        }
        let changed = changes(&current, &new);
        if !changed.restart.is_empty() {
            tracing::warn!(
                config = %origin,
                keys = %changed.restart.join(", "),
                "reload: these changed keys need a restart; they keep their running values until then"
            );
        }
        let taken = new.keep_running(&current, &changed.restart);
        for part in self.inner.parts.lock().expect("reload lock").iter() {
            part(&current, &taken);
        }
        if changed.live.is_empty() {
            tracing::info!(config = %origin, "reload: no live setting changed; files read again");
        } else {
            let shown: Vec<String> = changed
                .live
                .iter()
                .map(|k| {
                    if is_secret(k) {
                        format!("{k} (secret)")
                    } else {
                        k.clone()
                    }
                })
                .collect();
            tracing::info!(config = %origin, keys = %shown.join(", "), "reload: configuration taken live");
        }
        *current = taken;
        Outcome::Applied(changed)
    }

    /// Marks every part registered: from now on a `SIGHUP` reloads. One that arrives
    /// earlier (a node still waiting for its database) is logged and ignored, rather
    /// than ending the process as an unhandled `SIGHUP` would.
    pub fn set_ready(&self) {
        self.inner.ready.store(true, Ordering::SeqCst);
    }

    /// Reloads on every `SIGHUP` until `shutdown`; only the first call per value
    /// starts a watcher (a process with several parts watches once). A binary calls
    /// it as early as it can, so that no `SIGHUP` finds the default action (exit).
    pub async fn watch(self, shutdown: super::Shutdown) {
        use async_signal::{Signal, Signals};
        use futures_lite::StreamExt;
        if self.inner.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut signals = match Signals::new([Signal::Hup]) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGHUP; the configuration will not reload");
                return;
            }
        };
        loop {
            let got = futures_lite::future::or(async { signals.next().await.is_some() }, async {
                shutdown.wait().await;
                false
            })
            .await;
            if !got {
                return;
            }
            if !self.inner.ready.load(Ordering::SeqCst) {
                tracing::warn!(
                    config = %self.inner.origin,
                    "SIGHUP while starting: ignored; send it again once the process is ready"
                );
                continue;
            }
            tracing::info!(config = %self.inner.origin, "SIGHUP: reloading the configuration");
            // Parts may block briefly (reading certificates, building a pool): keep
            // that off the loop threads.
            let me = self.clone();
            blocking::unblock(move || me.reload()).await;
        }
    }
}

fn refused(origin: &str, key: String, problem: impl ToString) -> Outcome {
    let problem = problem.to_string();
    tracing::error!(
        config = %origin,
        key = %key,
        error = %problem,
        "reload refused: the new configuration is invalid; the running one is kept"
    );
    Outcome::Refused { key, problem }
}

/// Reads `tls`'s files again, logging the outcome: a broken file is refused and the
/// certificate in use stays. New handshakes use what was loaded; established
/// connections keep their session.
pub fn reload_tls(tls: &crate::tls::Tls) {
    match tls.reload() {
        Ok(()) => tracing::info!(
            serial = tls.serial().as_deref().unwrap_or("-"),
            "reload: certificates reloaded; new handshakes use them"
        ),
        Err(e) => tracing::error!(
            error = %e,
            serial = tls.serial().as_deref().unwrap_or("-"),
            "reload: certificates not reloaded; the ones in use stay"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn a_reload_applies_live_keys_and_a_refused_one_keeps_the_running_config() {
        let next = Arc::new(Mutex::new(Ok::<u32, ()>(3)));
        let source = next.clone();
        let reload = Reload::new(Config::default(), "test.toml", move || {
            let mut cfg = Config::default();
            match *source.lock().unwrap() {
                Ok(w) => cfg.node.weight = w,
                Err(()) => {
                    return Err(ConfigError::Invalid {
                        key: "node.weight",
                        problem: "expected 1 to 1000".into(),
                    })
                }
            }
            cfg.balancer.proxy = "127.0.0.1:1".into();
            Ok(cfg)
        });
        let seen = Arc::new(AtomicU32::new(0));
        let s = seen.clone();
        reload.on_reload(move |_, new| s.store(new.node.weight, Ordering::SeqCst));
        let Outcome::Applied(c) = reload.reload() else {
            panic!("refused")
        };
        assert_eq!(c.live, ["node.weight"]);
        assert_eq!(c.restart, ["balancer.proxy"]);
        assert_eq!(seen.load(Ordering::SeqCst), 3);
        let running = reload.current();
        assert_eq!(running.node.weight, 3);
        assert_eq!(running.balancer.proxy, Config::default().balancer.proxy);

        *next.lock().unwrap() = Err(());
        let refused = reload.reload();
        assert!(matches!(&refused, Outcome::Refused { key, .. } if key == "node.weight"));
        assert_eq!(reload.current().node.weight, 3, "the running config stays");

        *next.lock().unwrap() = Ok(4);
        reload.check(|cfg| {
            if cfg.node.weight == 4 {
                Err(("node.weight".into(), "four is refused here".into()))
            } else {
                Ok(())
            }
        });
        assert!(matches!(reload.reload(), Outcome::Refused { .. }));
        assert_eq!(seen.load(Ordering::SeqCst), 3, "no part ran");
    }
}
