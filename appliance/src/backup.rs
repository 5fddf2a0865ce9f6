//! Backups (issue 8): one age-encrypted tar archive of a device, readable
//! with the standard `age` CLI and `tar` given the backup identity.
//!
//! Archive layout (format 1), in this order:
//! - `ROOST-BACKUP`: `roost-backup 1`, the device id, the creation time and
//!   the number of blobs; first, so restore refuses a foreign tar early.
//! - `roost.db`: a `VACUUM INTO` copy, one consistent commit however many
//!   deliveries run meanwhile (the device's version vector comes with it).
//! - `device.key`; `imap-cert.pem`/`imap-key.pem` when the data dir has them;
//!   `config/roost.toml` when a config file is in use (restore puts it beside
//!   the data, it never overwrites the live config).
//! - `blobs/xx/yyyy…`: exactly the blobs the copied database's live entries
//!   name (before blob GC: every blob its `messages` names), each checked
//!   against its hash on the way in.
//!
//! Restore stages everything in a sibling directory, checks it (format, every
//! blob against its hash, the store opens with the key), fsyncs it, and only
//! then moves it into the (empty) data dir: a corrupt or truncated file (age
//! authenticates every 64 KiB chunk and the end of the stream) leaves nothing
//! behind. Scheduled backups (`[backup] dir, every, keep`) are run by `roost
//! serve` through [`run_schedule`].

use std::fs;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use anyhow::{bail, format_err, Context, Result};

use roost_core::model::BlobHash;
use roost_core::store::{snapshot, BlobStore, Store, BLOB_DIR, DB_FILE};

use crate::device::{self, KEY_FILE};
use crate::imap::tls::{SELF_SIGNED_CERT_FILE, SELF_SIGNED_KEY_FILE};

/// The archive's first entry.
pub const FORMAT_FILE: &str = "ROOST-BACKUP";
/// The first line of [`FORMAT_FILE`]; restore refuses any other.
const FORMAT_LINE: &str = "roost-backup 1";
/// Where the config file goes in the archive.
const CONFIG_ENTRY: &str = "config/roost.toml";
/// What restore names the backed-up config in the data dir.
pub const RESTORED_CONFIG_FILE: &str = "roost.toml.from-backup";
/// Scheduled backups are named `roost-<UTC time>.age` in `[backup] dir`.
const SCHEDULED_PREFIX: &str = "roost-";
const SCHEDULED_SUFFIX: &str = ".age";

/// What a backup holds.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// The device, short form.
    pub device: String,
    /// Blobs copied.
    pub blobs: usize,
    /// Size of the encrypted file.
    pub bytes: u64,
}

/// Parses an age X25519 recipient (`age1...`).
pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient> {
    age::x25519::Recipient::from_str(text.trim())
        .map_err(|e| format_err!("{text:?} is not an age X25519 recipient (age1...): {e}"))
}

/// A new backup identity: the text of an identity file (as `age-keygen`
/// writes it) and its recipient.
pub fn keygen(now: SystemTime) -> (String, age::x25519::Recipient) {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let created = chrono::DateTime::<chrono::Utc>::from(now).format("%Y-%m-%dT%H:%M:%SZ");
    let text = format!("# created: {created}\n# public key: {recipient}\n{}\n", identity.to_string().expose_secret());
    (text, recipient)
}

/// Reads an identity file (`roost backup keygen` or `age-keygen` output).
pub fn read_identities(path: &Path) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let file = fs::File::open(path).with_context(|| format!("cannot open identity file {}", path.display()))?;
    age::IdentityFile::from_buffer(BufReader::new(file))
        .with_context(|| format!("cannot read identity file {}", path.display()))?
        .into_identities()
        .map_err(|e| format_err!("identity file {}: {e}", path.display()))
}

/// Writes a backup of `data_dir` to `dest`, encrypted to `recipient`. The file
/// appears at `dest` only when complete and fsynced.
pub fn write_backup(
    data_dir: &Path,
    config_file: Option<&Path>,
    recipient: &age::x25519::Recipient,
    dest: &Path,
    now_ms: u64,
) -> Result<BackupSummary> {
    let store = crate::cli::open_store(data_dir)?;
    let device_short = store.identity().id().short();
    let parent = parent_dir(dest);
    let name = dest.file_name().ok_or_else(|| format_err!("{} names no file", dest.display()))?.to_string_lossy();
    let scratch = Scratch::create(&parent.join(format!(".{name}.snapshot-{}", std::process::id())))?;
    let snapshot_db = scratch.path.join(DB_FILE);
    let blobs = store
        .snapshot_into(&snapshot_db)
        .with_context(|| format!("cannot copy the database of {}", data_dir.display()))?;

    let partial = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let res = (|| {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let recipients = [recipient as &dyn age::Recipient];
        let encryptor = age::Encryptor::with_recipients(recipients.into_iter())
            .map_err(|e| format_err!("cannot set up age encryption: {e}"))?;
        let encrypted = encryptor.wrap_output(BufWriter::new(file)).context("cannot start the age stream")?;
        let mut tar = tar::Builder::new(encrypted);
        let mtime = now_ms / 1000;
        let header_text =
            format!("{FORMAT_LINE}\ndevice {}\ncreated_ms {now_ms}\nblobs {}\n", store.identity().id(), blobs.len());
        append(&mut tar, FORMAT_FILE, header_text.as_bytes(), mtime)?;
        append(&mut tar, DB_FILE, &read(&snapshot_db)?, mtime)?;
        append(&mut tar, KEY_FILE, &read(&device::key_path(data_dir))?, mtime)?;
        for tls_file in [SELF_SIGNED_CERT_FILE, SELF_SIGNED_KEY_FILE] {
            let path = data_dir.join(tls_file);
            if path.exists() {
                append(&mut tar, tls_file, &read(&path)?, mtime)?;
            }
        }
        if let Some(config) = config_file.filter(|path| path.exists()) {
            append(&mut tar, CONFIG_ENTRY, &read(config)?, mtime)?;
        }
        for hash in &blobs {
            let raw = store.message(hash).with_context(|| format!("cannot back up blob {}", hash.to_hex()))?;
            let entry = Path::new(BLOB_DIR).join(BlobStore::relative_path(hash));
            append(&mut tar, &entry.to_string_lossy(), &raw, mtime)?;
        }
        let encrypted = tar.into_inner().context("cannot finish the tar stream")?;
        let mut buffered = encrypted.finish().context("cannot finish the age stream")?;
        buffered.flush().context("cannot write the backup")?;
        let file = buffered.into_inner().map_err(|e| format_err!("cannot write the backup: {}", e.error()))?;
        file.sync_all().with_context(|| format!("cannot fsync {}", partial.display()))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        fs::rename(&partial, dest).with_context(|| format!("cannot move the backup to {}", dest.display()))?;
        sync_dir(&parent)?;
        Ok(BackupSummary { device: device_short, blobs: blobs.len(), bytes })
    })();
    if res.is_err() {
        let _ = fs::remove_file(&partial);
    }
    res
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8], mtime: u64) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data).with_context(|| format!("cannot write {path} into the backup"))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// What a restore put in place.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    /// The device, as recorded in the backup.
    pub device: String,
    /// Blobs restored.
    pub blobs: usize,
    /// Where the backed-up config went, if the backup had one.
    pub config: Option<PathBuf>,
    /// Paired devices recorded in the backup (see [`restore`] on why they matter).
    pub paired_devices: usize,
    /// The device waits for a peer before it writes (see [`restore`]).
    pub rejoining: bool,
}

/// Restores `backup` into `data_dir`, which must be empty or absent. Nothing
/// is written to `data_dir` unless the whole backup decrypts and checks out.
///
/// A restored device keeps its identity and version vector, so peers send it
/// only what it lacks. Events it made *after* the backup live only at its
/// peers: a restored paired device is marked rejoining (durably, in the
/// restored database) unless `rejoin` is [`Rejoin::Standalone`], so it makes
/// no changes until a peer has sent them back (`roost_core::store` `rejoin`).
pub fn restore(
    backup: &Path,
    identities: &[Box<dyn age::Identity + Send + Sync>],
    data_dir: &Path,
    rejoin: Rejoin,
) -> Result<RestoreSummary> {
    if data_dir.exists() {
        let mut entries = fs::read_dir(data_dir).with_context(|| format!("cannot read {}", data_dir.display()))?;
        if entries.next().is_some() {
            bail!("refusing to restore into {}: it is not empty (restore needs an empty data dir)", data_dir.display());
        }
    }
    let parent = parent_dir(data_dir);
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let dir_name = data_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let staging = Scratch::create(&parent.join(format!(".{dir_name}.restore-{}", std::process::id())))?;
    let shown = backup.display();
    let header = unpack(backup, identities, &staging.path).with_context(|| format!("backup {shown} refused"))?;
    let summary = check_staged(&staging.path, &header, rejoin).with_context(|| format!("backup {shown} refused"))?;
    sync_tree(&staging.path)?;
    move_into_place(&staging, data_dir)?;
    let config = summary.config.then(|| data_dir.join(RESTORED_CONFIG_FILE));
    Ok(RestoreSummary {
        device: header.device,
        blobs: summary.blobs,
        config,
        paired_devices: summary.paired_devices,
        rejoining: summary.rejoining,
    })
}

/// Whether a restored paired device waits for a peer before it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejoin {
    /// Wait until a paired device has sent back the events this device made
    /// after the backup (the default; nothing to wait for when unpaired).
    WaitForPeer,
    /// The owner says no peer holds newer events of this device (`roost
    /// restore --standalone`): write at once.
    Standalone,
}

/// What `ROOST-BACKUP` says.
#[derive(Debug)]
struct FormatHeader {
    device: String,
    blobs: usize,
}

fn parse_header(text: &str) -> Result<FormatHeader> {
    let mut lines = text.lines();
    if lines.next() != Some(FORMAT_LINE) {
        bail!("{FORMAT_FILE} does not start with {FORMAT_LINE:?}: not a Roost backup, or a newer format");
    }
    let (mut device, mut blobs) = (None, None);
    for line in lines {
        match line.split_once(' ') {
            Some(("device", value)) => device = Some(value.to_owned()),
            Some(("blobs", value)) => blobs = value.parse().ok(),
            _ => {}
        }
    }
    Ok(FormatHeader {
        device: device.ok_or_else(|| format_err!("{FORMAT_FILE} names no device"))?,
        blobs: blobs.ok_or_else(|| format_err!("{FORMAT_FILE} has no blob count"))?,
    })
}

/// Decrypts and unpacks into `staging`, reading the age stream to its end so
/// its final authentication tag is checked.
fn unpack(backup: &Path, identities: &[Box<dyn age::Identity + Send + Sync>], staging: &Path) -> Result<FormatHeader> {
    let file = fs::File::open(backup).context("cannot open it")?;
    let decryptor =
        age::Decryptor::new(BufReader::new(file)).map_err(|e| format_err!("not a readable age file: {e}"))?;
    let plain = decryptor
        .decrypt(identities.iter().map(|identity| identity.as_ref() as &dyn age::Identity))
        .map_err(|e| format_err!("cannot decrypt it with the given identity: {e}"))?;
    let mut archive = tar::Archive::new(plain);
    let mut header = None;
    let entries = archive.entries().map_err(corrupt)?;
    for entry in entries {
        let mut entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        let name = path.to_string_lossy().into_owned();
        if header.is_none() {
            if name != FORMAT_FILE {
                bail!("its first entry is {name:?}, not {FORMAT_FILE}: not a Roost backup");
            }
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(corrupt)?;
            header = Some(parse_header(&text)?);
            continue;
        }
        if !entry.header().entry_type().is_file() || !allowed_entry(&path) {
            bail!("it holds an unexpected entry {name:?}");
        }
        let dest = staging.join(&path);
        if dest.exists() {
            bail!("it holds {name:?} twice");
        }
        if let Some(dir) = dest.parent() {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(corrupt)?;
        }
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)
            .with_context(|| format!("cannot write {}", dest.display()))?;
        io::copy(&mut entry, &mut out).map_err(corrupt)?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o600))?;
    }
    // tar stops at its end marker; the age stream's last chunk (and its tag)
    // may lie beyond it.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(corrupt)?;
    header.ok_or_else(|| format_err!("it is empty"))
}

fn corrupt(e: io::Error) -> anyhow::Error {
    format_err!("it is corrupt or truncated: {e}")
}

/// Only the names a backup writes; no absolute paths, no `..`.
fn allowed_entry(path: &Path) -> bool {
    let parts: Vec<&str> = path
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str().unwrap_or("/"),
            _ => "/",
        })
        .collect();
    match parts.as_slice() {
        [name] => [DB_FILE, KEY_FILE, SELF_SIGNED_CERT_FILE, SELF_SIGNED_KEY_FILE].contains(name),
        ["config", "roost.toml"] => true,
        [dir, prefix, rest] => {
            *dir == BLOB_DIR
                && prefix.len() == 2
                && rest.len() == 62
                && prefix.chars().chain(rest.chars()).all(|c| c.is_ascii_hexdigit())
        }
        _ => false,
    }
}

#[derive(Debug)]
struct Staged {
    blobs: usize,
    config: bool,
    paired_devices: usize,
    rejoining: bool,
}

/// The staged copy is a whole device: its database opens with its key, and
/// every blob the database names is there with the right content.
/// A paired device is marked rejoining here, before the staged copy is
/// fsynced and moved into place, so no start of it ever writes unmarked.
fn check_staged(staging: &Path, header: &FormatHeader, rejoin: Rejoin) -> Result<Staged> {
    for required in [DB_FILE, KEY_FILE] {
        if !staging.join(required).exists() {
            bail!("it has no {required}");
        }
    }
    let blobs: Vec<BlobHash> =
        snapshot::referenced_blobs(&staging.join(DB_FILE)).context("its database cannot be read")?;
    // A backup made before blob GC carried every blob `messages` names.
    let carried_before_gc = || snapshot::known_blobs(&staging.join(DB_FILE)).map(|known| known.len());
    if blobs.len() != header.blobs && carried_before_gc().context("its database cannot be read")? != header.blobs {
        bail!("its database names {} blobs, its header {}", blobs.len(), header.blobs);
    }
    let secret = device::load_key(staging)?;
    let mut store = Store::open(staging, secret).context("its database does not open with its device key")?;
    for hash in &blobs {
        store.message(hash).with_context(|| format!("blob {} is missing or damaged", hash.to_hex()))?;
    }
    if store.identity().id().to_string() != header.device {
        bail!("its header names device {}, its key is device {}", header.device, store.identity().id());
    }
    let paired_devices = store.peers()?.iter().filter(|peer| peer.removed_ms.is_none()).count();
    let rejoining = 0 < paired_devices && rejoin == Rejoin::WaitForPeer;
    if rejoining {
        store.mark_restored(crate::cli::now_ms()).context("cannot mark the restored device as rejoining")?;
    }
    drop(store);
    let config = staging.join(CONFIG_ENTRY);
    let has_config = config.exists();
    if has_config {
        fs::rename(&config, staging.join(RESTORED_CONFIG_FILE))?;
        fs::remove_dir(staging.join("config"))?;
    }
    Ok(Staged { blobs: blobs.len(), config: has_config, paired_devices, rejoining })
}

/// Moves the checked staging dir to `data_dir` (absent or empty).
fn move_into_place(staging: &Scratch, data_dir: &Path) -> Result<()> {
    let parent = parent_dir(data_dir);
    if data_dir.exists() {
        for entry in fs::read_dir(&staging.path)? {
            let entry = entry?;
            let dest = data_dir.join(entry.file_name());
            fs::rename(entry.path(), &dest).with_context(|| format!("cannot move into {}", dest.display()))?;
        }
        fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))?;
        sync_dir(data_dir)?;
    } else {
        fs::rename(&staging.path, data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    }
    sync_dir(&parent)
}

/// fsyncs every file and directory below `dir`, and `dir`.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot fsync {}", path.display()))?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot fsync {}", dir.display()))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A private scratch directory, removed on drop (also after a failure).
#[derive(Debug)]
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create(path: &Path) -> Result<Scratch> {
        // A leftover from a crashed run of the same pid: it holds nothing of value.
        let _ = fs::remove_dir_all(path);
        fs::DirBuilder::new().mode(0o700).create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Scratch { path: path.to_path_buf() })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

// --- Schedule ---------------------------------------------------------------

/// Parses `every`: a number and a unit, `m`, `h` or `d` (`30m`, `12h`, `1d`).
pub fn parse_every(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format_err!("{text:?}: expected a number and m, h or d, e.g. \"1d\""))?;
    let unit_s = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("{text:?}: the unit must be m, h or d, e.g. \"12h\""),
    };
    if n == 0 {
        bail!("{text:?}: must be above zero");
    }
    Ok(Duration::from_secs(n.saturating_mul(unit_s)))
}

/// The scheduled backups in `dir`, oldest first (names sort by time).
pub fn scheduled_backups(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read backup dir {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(SCHEDULED_PREFIX) && name.ends_with(SCHEDULED_SUFFIX) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// When the newest scheduled backup in `dir` was written, if there is one.
pub fn newest_backup(dir: &Path) -> Result<Option<(PathBuf, SystemTime)>> {
    let Some(newest) = scheduled_backups(dir)?.pop() else { return Ok(None) };
    let modified = fs::metadata(&newest).and_then(|m| m.modified())?;
    Ok(Some((newest, modified)))
}

/// Writes one scheduled backup into `dir` and deletes all but the newest `keep`.
pub fn scheduled_backup(
    data_dir: &Path,
    config_file: Option<&Path>,
    recipient: &age::x25519::Recipient,
    dir: &Path,
    keep: usize,
    now: SystemTime,
) -> Result<(PathBuf, BackupSummary)> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create backup dir {}", dir.display()))?;
    let stamp = chrono::DateTime::<chrono::Utc>::from(now).format("%Y%m%dT%H%M%S%.3fZ");
    let dest = dir.join(format!("{SCHEDULED_PREFIX}{stamp}{SCHEDULED_SUFFIX}"));
    let now_ms = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let summary = write_backup(data_dir, config_file, recipient, &dest, now_ms)?;
    let all = scheduled_backups(dir)?;
    let excess = all.len().saturating_sub(keep.max(1));
    for old in &all[..excess] {
        fs::remove_file(old).with_context(|| format!("cannot delete old backup {}", old.display()))?;
    }
    Ok((dest, summary))
}

/// Runs scheduled backups until `stop` turns true: the first when the newest
/// backup is `every` old (at once if there is none), then every `every`. A
/// failed backup is logged and retried after a tenth of `every` (at least a
/// minute), so a full disk does not spin.
pub async fn run_schedule(
    data_dir: PathBuf,
    config_file: Option<PathBuf>,
    schedule: crate::config::BackupSchedule,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let retry = (schedule.every / 10).max(Duration::from_secs(60));
    loop {
        let due_in = match newest_backup(&schedule.dir) {
            Ok(Some((_, written))) => {
                let age = SystemTime::now().duration_since(written).unwrap_or(Duration::ZERO);
                schedule.every.saturating_sub(age)
            }
            _ => Duration::ZERO,
        };
        tokio::select! {
            _ = tokio::time::sleep(due_in) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let job = {
            let (data_dir, config_file, schedule) = (data_dir.clone(), config_file.clone(), schedule.clone());
            tokio::task::spawn_blocking(move || {
                scheduled_backup(
                    &data_dir,
                    config_file.as_deref(),
                    &schedule.recipient,
                    &schedule.dir,
                    schedule.keep,
                    SystemTime::now(),
                )
            })
        };
        let pause = match job.await {
            Ok(Ok((path, summary))) => {
                tracing::info!(path = %path.display(), blobs = summary.blobs, bytes = summary.bytes, "backup written");
                Duration::ZERO
            }
            Ok(Err(e)) => {
                tracing::error!(error = format!("{e:#}"), "scheduled backup failed; retrying later");
                retry
            }
            Err(e) => {
                tracing::error!(error = %e, "scheduled backup panicked; retrying later");
                retry
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parses() {
        assert_eq!(parse_every("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_every("1d").unwrap(), Duration::from_secs(86_400));
        assert!(parse_every("0h").is_err());
        assert!(parse_every("1w").unwrap_err().to_string().contains("unit"));
        assert!(parse_every("soon").is_err());
    }

    #[test]
    fn only_known_entries_are_accepted() {
        assert!(allowed_entry(Path::new("roost.db")));
        assert!(allowed_entry(Path::new("config/roost.toml")));
        let hex = "ab".repeat(32);
        assert!(allowed_entry(&Path::new("blobs").join(&hex[..2]).join(&hex[2..])));
        assert!(!allowed_entry(Path::new("../roost.db")));
        assert!(!allowed_entry(Path::new("/etc/passwd")));
        assert!(!allowed_entry(Path::new("blobs/ab/../../x")));
        assert!(!allowed_entry(Path::new("notes.txt")));
    }

    #[test]
    fn keygen_round_trips() {
        let (text, recipient) = keygen(SystemTime::now());
        assert!(text.contains(&format!("# public key: {recipient}")));
        let dir = std::env::temp_dir().join(format!("roost-keygen-test-{}", std::process::id()));
        fs::write(&dir, &text).unwrap();
        assert_eq!(read_identities(&dir).unwrap().len(), 1);
        let _ = fs::remove_file(&dir);
        assert!(parse_recipient(&recipient.to_string()).is_ok());
        assert!(parse_recipient("age1nope").is_err());
    }
}
