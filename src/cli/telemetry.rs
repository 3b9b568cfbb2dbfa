//! Logging setup: terminal output (pretty or JSON) and an optional rotating file log.
//! Called once, from the binary.

use dsf::config::{LogConfig, LogFormat, Rotation};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Layer, Registry};

/// Keeps the file writer flushing; hold it until the program exits.
pub struct LogGuard {
    _file: Option<WorkerGuard>,
    /// Replaces the filter of every output (a reload of `log.level`).
    filter: reload::Handle<EnvFilter, Registry>,
}

impl LogGuard {
    /// A function that sets new `EnvFilter` directives (`log.level`), unless
    /// `RUST_LOG` is set, which wins as at start; bad directives are logged and the
    /// running filter stays.
    pub fn level_handle(&self) -> impl Fn(&str) + Send + Sync + 'static {
        let handle = self.filter.clone();
        move |level: &str| {
            if std::env::var_os("RUST_LOG").is_some() {
                tracing::warn!(
                    level,
                    "log.level changed but RUST_LOG is set and wins; filter kept"
                );
                return;
            }
            match EnvFilter::try_new(level) {
                Ok(f) => match handle.reload(f) {
                    Ok(()) => tracing::info!(level, "log level changed"),
                    Err(e) => tracing::error!(level, error = %e, "log level not changed"),
                },
                Err(e) => tracing::error!(
                    key = "log.level",
                    level,
                    error = %e,
                    "log level not changed: not a valid filter"
                ),
            }
        }
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `cfg.level`.
/// Logs go to stderr so stdout stays free for command output.
pub fn init(cfg: &LogConfig) -> anyhow::Result<LogGuard> {
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&cfg.level))?;
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let terminal = match cfg.format {
        LogFormat::Pretty => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_target(false)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .boxed(),
    };
    let (file_layer, guard) = if cfg.dir.as_os_str().is_empty() {
        (None, None)
    } else {
        std::fs::create_dir_all(&cfg.dir)?;
        let rotation = match cfg.rotation {
            Rotation::Minutely => tracing_appender::rolling::Rotation::MINUTELY,
            Rotation::Hourly => tracing_appender::rolling::Rotation::HOURLY,
            Rotation::Daily => tracing_appender::rolling::Rotation::DAILY,
            Rotation::Never => tracing_appender::rolling::Rotation::NEVER,
        };
        let appender = tracing_appender::rolling::RollingFileAppender::builder()
            .rotation(rotation)
            .filename_prefix("dsf")
            .filename_suffix("log")
            .max_log_files(14)
            .build(&cfg.dir)?;
        let (writer, guard) = tracing_appender::non_blocking(appender);
        let layer = match cfg.format {
            LogFormat::Pretty => fmt::layer().with_writer(writer).with_ansi(false).boxed(),
            LogFormat::Json => fmt::layer().json().with_writer(writer).boxed(),
        };
        (Some(layer), Some(guard))
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(terminal)
        .with(file_layer)
        .try_init()?;
    Ok(LogGuard {
        _file: guard,
        filter: handle,
    })
}
