//! Log setup: one line per event on standard output, plain or JSON, filtered by `RUST_LOG`
//! (default `info`).

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How logs are written (`--log-format`, `LEADERSHIP_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Installs the process's log subscriber in `format`; the level comes from `RUST_LOG`, `info`
/// when it is unset or unreadable.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Plain => logs.init(),
    }
}
