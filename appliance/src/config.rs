//! The TOML configuration file and where things live on disk.
//!
//! Every option is documented in `packaging/roost.toml`; unknown keys are
//! refused (a typo must not silently fall back to a default).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{format_err, Context, Result};
use serde::Deserialize;

/// The whole configuration file. Every field has a default, so an empty file
/// (or no file) is a valid configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the database, blobs and device key live.
    pub data_dir: Option<PathBuf>,
    /// Logging.
    pub log: LogConfig,
    /// IMAP listeners and TLS.
    pub imap: ImapConfig,
    /// LMTP delivery.
    pub lmtp: LmtpConfig,
    /// Device-to-device sync.
    pub sync: SyncConfig,
    /// Admin HTTP API and web UI.
    pub admin: AdminConfig,
    /// Backups: the recipient they are encrypted to, and the schedule.
    pub backup: BackupConfig,
    /// The message store: blob garbage collection.
    pub store: StoreConfig,
    /// Seal new messages to their user's age key (default true). Off only to
    /// measure what encryption costs (docs/benchmarks.md); sealed mail stays
    /// readable either way.
    pub encryption: Option<bool>,
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// TCP addresses of the admin API and web UI; empty turns them off.
    pub listen: Vec<SocketAddr>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        // Loopback only: reaching it from elsewhere is a deliberate choice.
        AdminConfig { listen: vec![SocketAddr::from(([127, 0, 0, 1], 7080))] }
    }
}

/// `[backup]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// The age X25519 recipient (`age1...`) backups are encrypted to; its
    /// identity (`roost backup keygen`) is kept off the device.
    pub recipient: Option<String>,
    /// Where `roost serve` writes scheduled backups.
    pub dir: Option<PathBuf>,
    /// How often: a number and m, h or d (`1d`).
    pub every: Option<String>,
    /// How many scheduled backups to keep.
    pub keep: usize,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig { recipient: None, dir: None, every: None, keep: 7 }
    }
}

/// A validated backup schedule.
#[derive(Debug, Clone)]
pub struct BackupSchedule {
    /// Encrypted to this.
    pub recipient: age::x25519::Recipient,
    /// Written here.
    pub dir: PathBuf,
    /// This often.
    pub every: std::time::Duration,
    /// Newest this many kept.
    pub keep: usize,
}

impl BackupConfig {
    /// The configured recipient, if any.
    pub fn recipient(&self) -> Result<Option<age::x25519::Recipient>> {
        self.recipient.as_deref().map(crate::backup::parse_recipient).transpose().context("[backup] recipient")
    }

    /// The schedule, when `dir` and `every` are set.
    pub fn schedule(&self) -> Result<Option<BackupSchedule>> {
        let (dir, every) = match (&self.dir, &self.every) {
            (None, None) => return Ok(None),
            (Some(dir), Some(every)) => (dir, every),
            _ => return Err(format_err!("[backup] dir and every must be set together")),
        };
        let every = crate::backup::parse_every(every).context("[backup] every")?;
        let recipient =
            self.recipient()?.ok_or_else(|| format_err!("[backup] a schedule needs recipient = \"age1...\""))?;
        if self.keep == 0 {
            return Err(format_err!("[backup] keep must be at least 1"));
        }
        Ok(Some(BackupSchedule { recipient, dir: dir.clone(), every, keep: self.keep }))
    }
}

impl Config {
    /// Whether new messages are stored encrypted.
    pub fn encryption(&self) -> bool {
        self.encryption.unwrap_or(true)
    }
}

/// `[sync]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// UDP addresses of the QUIC endpoint other devices connect to.
    pub listen: Vec<SocketAddr>,
    /// Addresses other devices should dial instead (a port forward on a
    /// router); empty means the bound addresses.
    pub advertise: Vec<SocketAddr>,
    /// How often `roost serve` folds the event log's prefix every paired
    /// device has acknowledged (m, h or d); unset: never (`roost compact`).
    pub compact_every: Option<String>,
}

impl SyncConfig {
    /// The compaction period, if set.
    pub fn compact_every(&self) -> Result<Option<std::time::Duration>> {
        self.compact_every.as_deref().map(crate::backup::parse_every).transpose().context("[sync] compact_every")
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        // Every device must reach it; only paired devices are accepted.
        SyncConfig { listen: vec![SocketAddr::from(([0, 0, 0, 0], 7947))], advertise: Vec::new(), compact_every: None }
    }
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// How often `roost serve` removes blobs nothing can need any more
    /// (expunged, deleted, every paired device acknowledged it): m, h or d,
    /// or "off" (`roost gc` does it once).
    pub blob_gc_every: String,
}

impl StoreConfig {
    /// The blob GC period, `None` when off.
    pub fn blob_gc_every(&self) -> Result<Option<std::time::Duration>> {
        if self.blob_gc_every.trim() == "off" {
            return Ok(None);
        }
        crate::backup::parse_every(&self.blob_gc_every).map(Some).context("[store] blob_gc_every")
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        // Deleted mail should leave the disk within the hour once every
        // paired device has the deletion; a run with nothing to free reads
        // the entries index and the unacknowledged events only.
        StoreConfig { blob_gc_every: "1h".into() }
    }
}

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` (default) or `json`.
    pub format: Option<LogFormat>,
    /// A tracing filter such as `info` or `roost=debug`.
    pub level: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line.
    Json,
}

/// `[imap]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImapConfig {
    /// Addresses for IMAP with STARTTLS (port 143 in production).
    pub listen: Vec<SocketAddr>,
    /// Addresses for IMAP over implicit TLS (port 993 in production).
    pub listen_tls: Vec<SocketAddr>,
    /// PEM certificate chain; when unset, the self-signed one `roost init` made.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Simultaneous connections per client address (unset: the default of
    /// `imap::limits::Limits`, as for every limit below).
    pub max_connections_per_address: Option<usize>,
    /// Simultaneous connections per user.
    pub max_connections_per_user: Option<usize>,
    /// Longest command line (the text between literals), in bytes.
    pub max_line_bytes: Option<usize>,
    /// Largest literal (an APPENDed message), in bytes.
    pub max_literal_bytes: Option<usize>,
    /// Delay before answering a failed login, in milliseconds.
    pub login_failure_delay_ms: Option<u64>,
    /// MiB of opened (decrypted) messages all IMAP sessions keep in memory
    /// together; 0 turns the cache off.
    pub opened_cache_mib: Option<usize>,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1143))],
            listen_tls: vec![SocketAddr::from(([127, 0, 0, 1], 1993))],
            tls_cert: None,
            tls_key: None,
            max_connections_per_address: None,
            max_connections_per_user: None,
            max_line_bytes: None,
            max_literal_bytes: None,
            login_failure_delay_ms: None,
            opened_cache_mib: None,
        }
    }
}

/// `[lmtp]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LmtpConfig {
    /// TCP addresses for LMTP.
    pub listen: Vec<SocketAddr>,
    /// A unix socket path for LMTP (relative paths are inside the data dir).
    pub socket: Option<PathBuf>,
    /// Deliver `user+tag@domain` into folder `tag` when it exists.
    pub subaddress_folders: bool,
    /// Largest message accepted, in bytes.
    pub max_message_bytes: u64,
}

impl Default for LmtpConfig {
    fn default() -> Self {
        LmtpConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2424))],
            socket: None,
            subaddress_folders: false,
            // Postfix's default message_size_limit is 10 MB; leave headroom.
            max_message_bytes: 50 * 1024 * 1024,
        }
    }
}

impl Config {
    /// Reads and validates a config file. Errors name the file and, for syntax
    /// errors and unknown keys, the line.
    pub fn load(path: &Path) -> Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// Parses config text.
    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| format_err!("{}", e.to_string().trim_end()))?;
        if config.imap.tls_cert.is_some() != config.imap.tls_key.is_some() {
            return Err(format_err!("[imap] tls_cert and tls_key must be set together"));
        }
        crate::imap::limits::Limits::from_config(&config.imap)?;
        config.backup.recipient()?;
        config.backup.schedule()?;
        if config.lmtp.max_message_bytes == 0 {
            return Err(format_err!("[lmtp] max_message_bytes must be above 0"));
        }
        Ok(config)
    }
}

/// The packaged service's config file (the .deb installs it as a conffile).
pub const SYSTEM_CONFIG: &str = "/etc/roost/roost.toml";

/// The config file to read: `--config`, else the per-user default if it
/// exists, else the packaged `/etc/roost/roost.toml` if it exists (so admin
/// commands such as `sudo -u roost roost user add` act on the service's data
/// dir), else none.
pub fn config_path(cli: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = cli {
        return Some(path.to_path_buf());
    }
    let user = directories::ProjectDirs::from("", "", "roost").map(|dirs| dirs.config_dir().join("roost.toml"));
    let system = PathBuf::from(SYSTEM_CONFIG);
    user.into_iter().chain([system]).find(|path| path.exists())
}

/// The data directory: `--data-dir`, else the config's `data_dir`, else the
/// XDG data directory (`~/.local/share/roost`).
pub fn data_dir(cli: Option<&Path>, config: &Config) -> Result<PathBuf> {
    if let Some(dir) = cli {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = &config.data_dir {
        return Ok(dir.clone());
    }
    directories::ProjectDirs::from("", "", "roost")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .ok_or_else(|| format_err!("no home directory to put the data in: pass --data-dir"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_valid() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.imap.listen.len(), 1);
    }

    #[test]
    fn typo_names_the_key_and_line() {
        let err = Config::parse("[imap]\nlisen = []\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn bad_value_names_the_line() {
        let err = Config::parse("[imap]\nlisten = [\"not an address\"]\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn imap_limits_are_read_and_checked() {
        let config = Config::parse("[imap]\nmax_connections_per_address = 60\nlogin_failure_delay_ms = 0\n").unwrap();
        let limits = crate::imap::limits::Limits::from_config(&config.imap).unwrap();
        assert_eq!(limits.connections_per_address_max, 60);
        assert_eq!(limits.login_failure_delay, std::time::Duration::ZERO);
        assert_eq!(limits.connections_per_user_max, crate::imap::limits::Limits::default().connections_per_user_max);
        let err = Config::parse("[imap]\nmax_line_bytes = 100\n").unwrap_err().to_string();
        assert!(err.contains("max_line_bytes"), "{err}");
        let err = Config::parse("[imap]\nmax_connections_per_user = 0\n").unwrap_err().to_string();
        assert!(err.contains("max_connections_per_user"), "{err}");
    }

    /// Blob GC runs hourly unless configured otherwise; "off" turns it off;
    /// a bad period names the key.
    #[test]
    fn blob_gc_period_defaults_on_and_can_be_turned_off() {
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(Config::parse("").unwrap().store.blob_gc_every().unwrap(), Some(hour));
        let config = Config::parse("[store]\nblob_gc_every = \"off\"\n").unwrap();
        assert_eq!(config.store.blob_gc_every().unwrap(), None);
        let config = Config::parse("[store]\nblob_gc_every = \"10m\"\n").unwrap();
        assert_eq!(config.store.blob_gc_every().unwrap(), Some(std::time::Duration::from_secs(600)));
        let config = Config::parse("[store]\nblob_gc_every = \"soon\"\n").unwrap();
        let err = format!("{:#}", config.store.blob_gc_every().unwrap_err());
        assert!(err.contains("blob_gc_every"), "{err}");
    }

    #[test]
    fn the_packaged_example_parses() {
        let text = include_str!("../../packaging/roost.toml");
        Config::parse(text).unwrap();
    }
}
