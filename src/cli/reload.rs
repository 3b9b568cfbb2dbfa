//! `SIGHUP` for `dsf node` and `dsf balancer` (PROTOCOL §9): the configuration is
//! loaded again through the same pipeline as at start.

use super::telemetry;
use dsf::config::{Config, ConfigError};
use dsf::runtime::{shutdown, Reload};

/// Where a process's configuration comes from, for reload log lines.
fn origin(file: Option<&std::path::Path>) -> String {
    match file {
        Some(f) => f.display().to_string(),
        None => "environment and flags".into(),
    }
}

/// The live-reload handle of a `dsf node` or `dsf balancer` process: the same
/// pipeline as at start, with the log level among the parts that take a new value.
pub(super) fn reloader(
    cfg: &Config,
    file: Option<&std::path::Path>,
    log: &telemetry::LogGuard,
    load: impl Fn() -> Result<Config, ConfigError> + Send + Sync + 'static,
) -> Reload {
    let reload = Reload::new(cfg.clone(), origin(file), load);
    let level = log.level_handle();
    reload.on_reload(move |old, new| {
        if old.log.level != new.log.level {
            level(&new.log.level);
        }
    });
    // Watch from now on: a SIGHUP while the process starts is logged and ignored
    // instead of ending it.
    let watcher = reload.clone();
    let spawned = std::thread::Builder::new()
        .name("dsf-reload".into())
        .spawn(move || smol::block_on(watcher.watch(shutdown::Shutdown::never())));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the SIGHUP watcher early");
    }
    reload
}
