//! Subcommands, one file each. Each `run` returns the process exit code or an
//! error that `main` prints as `roost: <context>: <cause>`.

/// `println!` for command output. A closed stdout (`roost doctor | head -1`)
/// becomes an error the command returns (`main` exits quietly on it) instead
/// of `println!`'s panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `print!` for command output; see `outln!`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}

pub mod admin;
pub mod backup;
pub mod compact;
pub mod completions;
pub mod doctor;
pub mod export;
pub mod gc;
pub mod import;
pub mod init;
pub mod pair;
pub mod serve;
pub mod sim;
pub mod status;
pub mod user;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use roost_core::store::Store;

use crate::config::{self, Config, LogFormat};
use crate::device;

/// Options every subcommand takes.
#[derive(Debug, Clone, Default)]
pub struct Global {
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--config`
    pub config: Option<PathBuf>,
    /// `--log-format`
    pub log_format: Option<LogFormat>,
}

/// The resolved configuration and data directory of a command.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Parsed config (defaults if no file).
    pub config: Config,
    /// Data directory.
    pub data_dir: PathBuf,
}

impl Global {
    /// Loads the config, resolves the data dir, and sets up logging.
    pub fn resolve(&self) -> Result<Resolved> {
        let config = match config::config_path(self.config.as_deref()) {
            Some(path) => Config::load(&path)?,
            None => Config::default(),
        };
        let format = self.log_format.or(config.log.format).unwrap_or(LogFormat::Human);
        crate::logging::init(format, config.log.level.as_deref());
        let data_dir = config::data_dir(self.data_dir.as_deref(), &config)?;
        Ok(Resolved { config, data_dir })
    }
}

/// Opens the store of an initialised data dir, with errors that say what to do.
pub fn open_store(data_dir: &Path) -> Result<Store> {
    if !data_dir.exists() {
        anyhow::bail!("data directory {} does not exist (run `roost init` first)", data_dir.display());
    }
    let secret = device::load_key(data_dir)?;
    Store::open(data_dir, secret).with_context(|| format!("cannot open the store in {}", data_dir.display()))
}

/// Milliseconds since the Unix epoch: the `now_ms` the core takes.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
