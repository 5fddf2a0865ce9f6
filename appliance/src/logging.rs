//! Logging through `tracing`: human-readable by default, JSON on request.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides `level`. Logs go to
/// stderr so command output on stdout stays clean for scripts.
pub fn init(format: LogFormat, level: Option<&str>) {
    // rusqlite_migration logs every start at info; only its warnings matter here.
    let default = format!("{},rusqlite_migration=warn", level.unwrap_or("info"));
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::try_new(&default).unwrap_or_else(|_| EnvFilter::new("info")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests calling commands in one process) is harmless.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
