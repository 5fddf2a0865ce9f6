//! `roost doctor`: checks a device before you trust it with mail. Each check
//! prints one line (`ok`, `warn`, `FAIL`, `n/a`, `skip`) and, when something is
//! wrong, a `fix:` line saying what to do. Exits 1 if any check failed.
//!
//! Doctor only reads: it opens the store only to read the peer records, and
//! only as the data dir's owner (as root it could leave root-owned SQLite
//! files behind); its one write is a probe file it removes again. Checks that cannot run
//! in this build say why (`skip`: not built yet; `n/a`: nothing to check, such
//! as peers on a device with no paired devices), never `ok`.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;

use roost_core::log::VersionVector;
use roost_core::store::peers::Peer;
use roost_core::store::DB_FILE;

use crate::cli::{open_store, Global};
use crate::config::{self, Config, LogFormat};
use crate::device;
use crate::serve::LOCK_FILE;

/// Below this much free space the device fails: one maximum-size delivery
/// (50 MiB by default) needs its temp file and blob, plus SQLite's WAL.
const DISK_FREE_FAIL_BYTES: u64 = 128 * 1024 * 1024;
/// Below this much free space doctor warns, while there is still time to act.
const DISK_FREE_WARN_BYTES: u64 = 1024 * 1024 * 1024;
/// Also warn below this percentage free: filesystems slow down when nearly
/// full. Only a warning: 2 % of a large disk is still gigabytes of mail.
const DISK_FREE_WARN_PERCENT: u64 = 5;

/// A certificate expiring within this many days is a warning: ACME renews at
/// 30 days left, so 14 means renewal has been failing for two weeks.
const CERT_EXPIRY_WARN_DAYS: i64 = 14;

/// A wall clock before this instant (2026-01-01T00:00:00Z, before this code
/// was written) is certainly wrong: a Raspberry Pi has no real-time clock and
/// starts in the past until NTP answers.
const CLOCK_FLOOR_UNIX_S: i64 = 1_767_225_600;

/// A peer silent this long while it lacks our events is failing to sync:
/// the sync layer redials within a minute (its backoff maximum), so an hour
/// is many failed attempts.
const PEER_SILENT_FAIL_MS: u64 = 60 * 60 * 1000;
/// Replication lag above this is worth a warning: DESIGN.md aims for one
/// network trip, and even a slow relay is well under a minute.
const PEER_LAG_WARN_MS: u64 = 60 * 1000;

/// How long to wait for a listener to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// File created and removed in the data dir to prove it is writable.
const WRITE_PROBE_FILE: &str = ".roost-doctor-probe";

/// Arguments of `roost doctor`.
#[derive(Debug, Args, Default)]
pub struct DoctorArgs {}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Checked and fine.
    Ok,
    /// Checked; works today but needs attention soon. Does not fail the run.
    Warn,
    /// Checked and wrong. Fails the run.
    Fail,
    /// Nothing to check on this device (e.g. no paired devices).
    NotApplicable,
    /// Could not be checked: the feature it checks is not built yet.
    NotChecked,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::NotApplicable => "n/a",
            Status::NotChecked => "skip",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked, e.g. `certificate`.
    pub name: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found, naming paths and values.
    pub detail: String,
    /// What to do about it (for `Warn` and `Fail`).
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check { name, status: Status::Ok, detail: detail.into(), fix: None }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name, status: Status::Warn, detail: detail.into(), fix: Some(fix.into()) }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name, status: Status::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }

    fn not_applicable(name: &'static str, why: impl fmt::Display) -> Check {
        Check { name, status: Status::NotApplicable, detail: format!("not applicable: {why}"), fix: None }
    }

    fn not_checked(name: &'static str, why: impl fmt::Display) -> Check {
        Check { name, status: Status::NotChecked, detail: format!("not checked: {why}"), fix: None }
    }
}

/// Runs `roost doctor`.
pub fn run(global: &Global, _args: DoctorArgs) -> anyhow::Result<ExitCode> {
    // Not `global.resolve()`: a broken config is a finding to report, not a
    // reason to stop before the other checks.
    crate::logging::init(global.log_format.unwrap_or(LogFormat::Human), None);
    let checks = run_checks(global);
    let n_failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    out!("{}", render(&checks));
    if n_failed == 0 {
        outln!("roost doctor: no problems found");
        Ok(ExitCode::SUCCESS)
    } else {
        outln!("roost doctor: {n_failed} problem(s) found");
        Ok(ExitCode::FAILURE)
    }
}

/// Every check, in the order a person would fix things.
pub fn run_checks(global: &Global) -> Vec<Check> {
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let mut checks = Vec::new();
    let (config, config_check) = check_config(global.config.as_deref());
    let config_ok = config_check.status != Status::Fail;
    checks.push(config_check);
    let data_dir = match config::data_dir(global.data_dir.as_deref(), &config) {
        Ok(dir) => dir,
        Err(e) => {
            checks.push(Check::fail("data dir", format!("{e:#}"), "pass --data-dir or set data_dir in the config"));
            return checks;
        }
    };
    checks.extend(check_data_dir(&data_dir));
    let daemon = check_daemon(&data_dir);
    let daemon_running = daemon.status == Status::Ok;
    checks.push(daemon);
    if config_ok {
        checks.extend(check_listeners(&config, daemon_running));
        checks.push(check_certificate(&config, &data_dir, now_s, daemon_running));
    } else {
        // The defaults are not what the daemon was told to use.
        checks.push(Check::not_checked("listeners", "the config is invalid"));
        checks.push(Check::not_checked("certificate", "the config is invalid"));
    }
    checks.push(check_disk(&data_dir));
    checks.push(check_clock(now_s));
    let peers = paired_peers(&data_dir);
    checks.push(check_peer_clock_skew(&peers));
    checks.extend(check_peers(&peers, crate::cli::now_ms()));
    checks.push(check_backup_age(&configured_backups(&config, SystemTime::now())));
    checks
}

/// The report as printed: a status column, the check name, the detail, and an
/// indented `fix:` line under anything wrong.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        out.push_str(&format!("{:<5} {:<16} {}\n", check.status.to_string(), check.name, check.detail));
        if let Some(fix) = &check.fix {
            out.push_str(&format!("{:<5} {:<16} fix: {}\n", "", "", fix));
        }
    }
    out
}

fn check_config(cli: Option<&Path>) -> (Config, Check) {
    let Some(path) = config::config_path(cli) else {
        return (Config::default(), Check::ok("config", "no config file; using the defaults"));
    };
    match Config::load(&path) {
        Ok(config) => (config, Check::ok("config", format!("{} is valid", path.display()))),
        Err(e) => (
            Config::default(),
            Check::fail(
                "config",
                format!("{e:#}"),
                "correct the line named above (every option is documented in \
                 /usr/share/doc/roost/examples/roost.toml); the checks below use the defaults",
            ),
        ),
    }
}

/// Existence, initialisation, modes, ownership and a real write.
fn check_data_dir(dir: &Path) -> Vec<Check> {
    const NAME: &str = "data dir";
    let shown = dir.display();
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) => {
            return vec![Check::fail(
                NAME,
                format!("cannot read {shown}: {e}"),
                format!("create it with `roost --data-dir {shown} init` (the .deb's postinst does this)"),
            )]
        }
    };
    if !meta.is_dir() {
        return vec![Check::fail(NAME, format!("{shown} is not a directory"), "point data_dir at a directory")];
    }
    let mut checks = Vec::new();
    let owner = meta.uid();
    let owner_name = user_name(owner);
    let mode = meta.permissions().mode() & 0o777;
    // Mode bits, not access(2): doctor often runs as root, who may write anyway.
    if mode & 0o700 != 0o700 {
        checks.push(Check::fail(
            NAME,
            format!("{shown} has mode {mode:04o}: its owner {owner_name} cannot read, write or enter it"),
            format!("chmod 0700 {shown}"),
        ));
    }
    if mode & 0o077 != 0 {
        checks.push(Check::fail(
            NAME,
            format!("{shown} has mode {mode:04o}: other users can reach the device key and the mail"),
            format!("chmod 0700 {shown}"),
        ));
    }
    let db = dir.join(DB_FILE);
    let key = device::key_path(dir);
    if !db.exists() || !key.exists() {
        checks.push(Check::fail(
            NAME,
            format!("{shown} is not an initialised Roost data directory (no {DB_FILE} or {})", device::KEY_FILE),
            format!("run `sudo -u {owner_name} roost --data-dir {shown} init`"),
        ));
    } else if let Ok(key_meta) = fs::metadata(&key) {
        let key_mode = key_meta.permissions().mode() & 0o777;
        if key_mode != 0o600 {
            checks.push(Check::fail(
                NAME,
                format!("device key {} has mode {key_mode:04o}, not 0600", key.display()),
                format!("chmod 0600 {}", key.display()),
            ));
        }
    }
    checks.extend(check_ownership(dir, owner));
    let euid = effective_uid();
    if let Some(euid) = euid.filter(|&uid| uid != 0 && uid != owner) {
        checks.push(Check::fail(
            NAME,
            format!("doctor runs as {} but {shown} belongs to {owner_name}", user_name(euid)),
            format!("run `sudo -u {owner_name} roost doctor`, as the service does"),
        ));
    }
    if let Err(e) = write_probe(dir) {
        checks.push(Check::fail(
            NAME,
            format!("cannot write in {shown}: {e}"),
            "check that the filesystem is mounted read-write and not full (`mount`, `df -h`)",
        ));
    }
    if checks.is_empty() {
        checks.push(Check::ok(NAME, format!("{shown}: initialised, mode {mode:04o}, owned by {owner_name}, writable")));
    }
    checks
}

/// Every file directly in the data dir (and in its subdirectories, one level
/// down) must belong to the data dir's owner. The usual breakage: an admin
/// command run as root creates root-owned WAL or blob files the daemon cannot
/// write.
fn check_ownership(dir: &Path, owner: u32) -> Option<Check> {
    let mut foreign = Vec::new();
    let mut visit = |path: PathBuf, meta: &fs::Metadata| {
        if meta.uid() != owner {
            foreign.push(format!("{} ({})", path.display(), user_name(meta.uid())));
        }
    };
    let entries = fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        visit(entry.path(), &meta);
        if meta.is_dir() {
            for sub in fs::read_dir(entry.path()).into_iter().flatten().flatten() {
                if let Ok(sub_meta) = sub.metadata() {
                    visit(sub.path(), &sub_meta);
                }
            }
        }
    }
    if foreign.is_empty() {
        return None;
    }
    let owner_name = user_name(owner);
    let n_foreign = foreign.len();
    foreign.truncate(3);
    Some(Check::fail(
        "data dir",
        format!("{n_foreign} file(s) not owned by {owner_name}, e.g. {}", foreign.join(", ")),
        format!("chown -R {owner_name}: {}; run admin commands as `sudo -u {owner_name} roost ...`", dir.display()),
    ))
}

fn write_probe(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(WRITE_PROBE_FILE);
    let res = fs::OpenOptions::new().write(true).create_new(true).open(&probe).and_then(|file| file.sync_all());
    // Remove even after a failed sync; a leftover probe is harmless but untidy.
    let _ = fs::remove_file(&probe);
    res
}

/// Whether a `roost serve` holds this data dir's lock.
fn check_daemon(dir: &Path) -> Check {
    const NAME: &str = "daemon";
    let lock = dir.join(LOCK_FILE);
    let not_running = || {
        Check::fail(
            NAME,
            format!("no `roost serve` is running on {}", dir.display()),
            "systemctl start roost (then `journalctl -u roost` if it stops again)",
        )
    };
    // Opened read-only so doctor never creates the lock file.
    let Ok(file) = fs::File::open(&lock) else { return not_running() };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            not_running()
        }
        Err(_) => Check::ok(NAME, format!("`roost serve` is running on {}", dir.display())),
    }
}

/// Connects to every configured IMAP and LMTP listener, and probes the sync port.
fn check_listeners(config: &Config, daemon_running: bool) -> Vec<Check> {
    let groups: [(&'static str, &[SocketAddr]); 3] = [
        ("imap listener", &config.imap.listen),
        ("imaps listener", &config.imap.listen_tls),
        ("lmtp listener", &config.lmtp.listen),
    ];
    let mut checks = Vec::new();
    for (name, addrs) in groups {
        checks.extend(addrs.iter().map(|addr| check_listener(name, *addr)));
    }
    checks.extend(config.sync.listen.iter().map(|addr| check_sync_listener(*addr, daemon_running)));
    checks
}

/// The sync endpoint is QUIC over UDP, which cannot be probed by connecting
/// without speaking QUIC; instead, binding the same address must fail
/// because the daemon holds it. With no daemon running, a bound port means
/// another process took it, and the daemon will fail to start.
fn check_sync_listener(addr: SocketAddr, daemon_running: bool) -> Check {
    const NAME: &str = "sync listener";
    if addr.port() == 0 {
        return Check::not_checked(NAME, format!("{addr} asks for a random port, which peers cannot be told"));
    }
    match std::net::UdpSocket::bind(addr) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && daemon_running => {
            Check::ok(NAME, format!("udp {addr} is bound"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Check::fail(
            NAME,
            format!("udp {addr} is held by another process, and `roost serve` is not running"),
            "find it with `ss -ulpn`, or move [sync] listen to a free port",
        ),
        Err(e) => Check::fail(NAME, format!("cannot probe udp {addr}: {e}"), "check [sync] listen in the config"),
        Ok(_) => Check::fail(
            NAME,
            format!("nothing is bound to udp {addr}: other devices cannot reach this one"),
            "is the daemon running (`systemctl status roost`, `journalctl -u roost`)?",
        ),
    }
}

fn check_listener(name: &'static str, addr: SocketAddr) -> Check {
    let target = connectable(addr);
    match TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) {
        Ok(_) => Check::ok(name, format!("{addr} accepts connections")),
        Err(e) => {
            let low_port = if addr.port() < 1024 {
                "; ports below 1024 need /usr/share/doc/roost/examples/low-ports.conf installed as a \
                 drop-in (see docs/install-raspberry-pi.md)"
            } else {
                ""
            };
            Check::fail(
                name,
                format!("cannot connect to {target}: {e}"),
                format!("is the daemon running (`systemctl status roost`, `journalctl -u roost`)?{low_port}"),
            )
        }
    }
}

/// A wildcard listen address is reached through loopback.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

/// The certificate IMAP serves: the configured one, else the self-signed one
/// `roost serve` creates in the data dir on its first start. Every
/// certificate in the chain must be valid now.
fn check_certificate(config: &Config, dir: &Path, now_s: i64, daemon_running: bool) -> Check {
    const NAME: &str = "certificate";
    let configured = config.imap.tls_cert.is_some();
    let (path, _) =
        crate::imap::tls::cert_and_key_paths(dir, config.imap.tls_cert.as_deref(), config.imap.tls_key.as_deref());
    let shown = path.display();
    if !configured && !path.exists() && !daemon_running {
        return Check::not_checked(
            NAME,
            format!("no certificate at {shown} yet: `roost serve` creates a self-signed one on its first start"),
        );
    }
    let pem = match fs::read(&path) {
        Ok(pem) => pem,
        Err(e) => {
            let fix = if configured {
                "fix [imap] tls_cert in the config, or remove it to use the self-signed certificate"
            } else {
                "set [imap] tls_cert and tls_key in the config to your certificate"
            };
            return Check::fail(NAME, format!("cannot read {shown}: {e}"), fix);
        }
    };
    match certificate_validity(&pem) {
        Ok(validity) => judge_validity(&shown.to_string(), &validity, now_s),
        Err(e) => Check::fail(
            NAME,
            format!("{shown} is not a usable PEM certificate: {e}"),
            "replace it with a PEM certificate chain (-----BEGIN CERTIFICATE-----)",
        ),
    }
}

/// The window in which every certificate of a chain is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Validity {
    not_before_s: i64,
    not_after_s: i64,
}

fn certificate_validity(pem: &[u8]) -> Result<Validity, String> {
    let mut window: Option<Validity> = None;
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| format!("bad PEM: {e}"))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let cert = block.parse_x509().map_err(|e| format!("bad certificate: {e}"))?;
        let validity = cert.validity();
        let this =
            Validity { not_before_s: validity.not_before.timestamp(), not_after_s: validity.not_after.timestamp() };
        window = Some(match window {
            None => this,
            Some(w) => Validity {
                not_before_s: w.not_before_s.max(this.not_before_s),
                not_after_s: w.not_after_s.min(this.not_after_s),
            },
        });
    }
    window.ok_or_else(|| "no CERTIFICATE block found".to_owned())
}

fn judge_validity(path: &str, validity: &Validity, now_s: i64) -> Check {
    const NAME: &str = "certificate";
    const DAY_S: i64 = 86_400;
    let renew = "renew it (certbot renew, or your ACME client) or replace the file with a new certificate \
                 and key; then `systemctl reload roost`";
    if now_s < validity.not_before_s {
        return Check::fail(
            NAME,
            format!("{path} is not valid before {}", date(validity.not_before_s)),
            "check the system clock (`timedatectl`); if it is right, the certificate was issued for the future",
        );
    }
    let days_left = (validity.not_after_s - now_s) / DAY_S;
    if validity.not_after_s <= now_s {
        return Check::fail(
            NAME,
            format!("{path} expired on {} ({} days ago)", date(validity.not_after_s), -days_left),
            renew,
        );
    }
    if days_left < CERT_EXPIRY_WARN_DAYS {
        return Check::warn(
            NAME,
            format!("{path} expires on {} (in {days_left} days)", date(validity.not_after_s)),
            renew,
        );
    }
    Check::ok(NAME, format!("{path} is valid until {} ({days_left} days)", date(validity.not_after_s)))
}

fn check_disk(dir: &Path) -> Check {
    const NAME: &str = "disk space";
    let (available, total) = match (fs2::available_space(dir), fs2::total_space(dir)) {
        (Ok(available), Ok(total)) => (available, total),
        (Err(e), _) | (_, Err(e)) => {
            return Check::fail(NAME, format!("cannot measure free space of {}: {e}", dir.display()), "check the mount")
        }
    };
    let shown = format!("{} free of {} on the filesystem of {}", mib(available), mib(total), dir.display());
    let hint = "free space there (old backups, logs: `journalctl --vacuum-size=100M`), or move data_dir to a \
                bigger disk";
    let percent_free = available.saturating_mul(100).checked_div(total).unwrap_or(0);
    if available < DISK_FREE_FAIL_BYTES {
        return Check::fail(NAME, format!("nearly full: {shown}"), hint);
    }
    if available < DISK_FREE_WARN_BYTES || percent_free < DISK_FREE_WARN_PERCENT {
        return Check::warn(NAME, format!("getting full: {shown}"), hint);
    }
    Check::ok(NAME, shown)
}

/// The local clock alone; skew against peers is `check_peer_clock_skew`.
fn check_clock(now_s: i64) -> Check {
    const NAME: &str = "clock";
    if now_s < CLOCK_FLOOR_UNIX_S {
        return Check::fail(
            NAME,
            format!("the system clock says {}, which is in the past", date(now_s)),
            "enable NTP (`timedatectl set-ntp true`); a Raspberry Pi has no real-time clock, so wait until \
             `timedatectl` shows \"System clock synchronized: yes\" before serving",
        );
    }
    Check::ok(NAME, format!("system clock says {} UTC", date(now_s)))
}

/// What doctor knows about the devices this one syncs with, from the peer
/// records the sync layer keeps in the store.
#[derive(Debug)]
enum Peers {
    /// The store could not be read (see the detail); the peer checks say so.
    Unreadable(String),
    /// Active (paired, not removed) peers, and this device's version vector.
    Known { peers: Vec<Peer>, local_vv: VersionVector },
}

/// Reads the peers. Only as the data dir's owner: opening the store as root
/// could create root-owned WAL files the daemon then cannot write.
fn paired_peers(data_dir: &Path) -> Peers {
    let owner = fs::metadata(data_dir).map(|meta| meta.uid()).ok();
    let euid = effective_uid();
    if owner.is_none() || euid != owner {
        let owner_name = owner.map_or_else(|| "its owner".to_owned(), user_name);
        return Peers::Unreadable(format!(
            "the peer records are read as the data dir's owner only: run `sudo -u {owner_name} roost doctor`"
        ));
    }
    let res = open_store(data_dir).and_then(|store| {
        let peers: Vec<Peer> = store.peers()?.into_iter().filter(|peer| peer.removed_ms.is_none()).collect();
        let local_vv = store.version_vector()?;
        Ok(Peers::Known { peers, local_vv })
    });
    res.unwrap_or_else(|e| Peers::Unreadable(format!("cannot read the peer records: {e:#}")))
}

fn check_peer_clock_skew(peers: &Peers) -> Check {
    const NAME: &str = "peer clock skew";
    match peers {
        Peers::Unreadable(why) => Check::not_checked(NAME, why),
        Peers::Known { peers, .. } if peers.is_empty() => Check::not_applicable(NAME, "no paired devices"),
        // todo: the sync Hello carries no wall clock yet, so there is nothing
        // to compare; HLCs keep merges correct under skew meanwhile.
        Peers::Known { peers, .. } => Check::not_checked(
            NAME,
            format!("{} paired device(s), but the sync layer does not record peer clocks yet", peers.len()),
        ),
    }
}

/// One line per paired device: when the sync layer last heard from it, how
/// many of our events it still lacks, and the last measured lag.
fn check_peers(peers: &Peers, now_ms: u64) -> Vec<Check> {
    const NAME: &str = "peer";
    match peers {
        Peers::Unreadable(why) => vec![Check::not_checked(NAME, why)],
        Peers::Known { peers, .. } if peers.is_empty() => vec![Check::not_applicable(NAME, "no paired devices")],
        Peers::Known { peers, local_vv } => peers.iter().map(|peer| judge_peer(peer, local_vv, now_ms)).collect(),
    }
}

fn judge_peer(peer: &Peer, local_vv: &VersionVector, now_ms: u64) -> Check {
    const NAME: &str = "peer";
    let who = format!("{} {} ({})", peer.name, peer.device_id.short(), peer.addrs.join(", "));
    let n_lacking: u64 = local_vv.iter().map(|(origin, seq)| seq.saturating_sub(peer.stats.acked.get(origin))).sum();
    let fix = "check that the other device runs (`roost doctor` there), that UDP reaches its sync port \
               (a router's port forward, [sync] advertise), or configure a relay (docs/second-location.md)";
    let Some(last_seen_ms) = peer.stats.last_seen_ms else {
        return Check::fail(NAME, format!("{who}: never connected since pairing"), fix);
    };
    let silent_ms = now_ms.saturating_sub(last_seen_ms);
    let seen = format!("last heard {} ago", duration(silent_ms));
    // A quiet link sends nothing, so silence alone is no fault; silence while
    // it lacks our events means replication is stuck.
    if silent_ms > PEER_SILENT_FAIL_MS && n_lacking > 0 {
        return Check::fail(NAME, format!("{who}: {seen} and it lacks {n_lacking} of our events"), fix);
    }
    match peer.stats.lag_ms {
        Some(lag_ms) if lag_ms > PEER_LAG_WARN_MS => Check::warn(
            NAME,
            format!("{who}: {seen}; replication lag {lag_ms} ms"),
            "a slow or lossy link; a direct connection (port forward) is faster than a relay",
        ),
        lag_ms => Check::ok(
            NAME,
            format!(
                "{who}: {seen}; it lacks {n_lacking} events; lag {}",
                lag_ms.map_or("not measured yet".to_owned(), |ms| format!("{ms} ms"))
            ),
        ),
    }
}

fn duration(ms: u64) -> String {
    match ms / 1000 {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// What doctor knows about backups: the schedule and the newest backup.
#[derive(Debug)]
enum Backups {
    /// No `[backup] dir`/`every`: nothing to judge.
    NotScheduled,
    /// The schedule could not be read (the config check reports why).
    Unreadable(String),
    /// Scheduled every `every`; the newest backup's path and age, if any.
    Scheduled { dir: PathBuf, every: Duration, newest: Option<(PathBuf, Duration)> },
}

/// A backup may be this late before doctor warns: the schedule's own retry
/// and a slow backup of a large store.
const BACKUP_GRACE: Duration = Duration::from_secs(60 * 60);

fn configured_backups(config: &Config, now: SystemTime) -> Backups {
    let schedule = match config.backup.schedule() {
        Ok(Some(schedule)) => schedule,
        Ok(None) => return Backups::NotScheduled,
        Err(e) => return Backups::Unreadable(format!("{e:#}")),
    };
    match crate::backup::newest_backup(&schedule.dir) {
        Ok(newest) => Backups::Scheduled {
            dir: schedule.dir,
            every: schedule.every,
            newest: newest.map(|(path, written)| (path, now.duration_since(written).unwrap_or(Duration::ZERO))),
        },
        Err(_) if !schedule.dir.exists() => {
            Backups::Scheduled { dir: schedule.dir, every: schedule.every, newest: None }
        }
        Err(e) => Backups::Unreadable(format!("{e:#}")),
    }
}

fn check_backup_age(backups: &Backups) -> Check {
    const NAME: &str = "backup age";
    match backups {
        Backups::NotScheduled => {
            Check::not_applicable(NAME, "no backups configured ([backup] dir and every; see `roost backup`)")
        }
        Backups::Unreadable(why) => Check::not_checked(NAME, why),
        Backups::Scheduled { dir, newest: None, .. } => Check::warn(
            NAME,
            format!("backups are scheduled but none is in {} yet", dir.display()),
            "is the daemon running (`systemctl status roost`)? `journalctl -u roost | grep backup` shows why a \
             backup failed; `roost backup --to FILE` makes one by hand",
        ),
        Backups::Scheduled { every, newest: Some((path, age)), .. } => {
            let shown = format!(
                "newest backup {} is {} old (scheduled every {})",
                path.display(),
                duration(age.as_millis() as u64),
                duration(every.as_millis() as u64)
            );
            if *age > *every + BACKUP_GRACE {
                Check::warn(
                    NAME,
                    shown,
                    "`journalctl -u roost | grep backup` shows why backups fail (a full disk, an unwritable dir)",
                )
            } else {
                Check::ok(NAME, shown)
            }
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1024 * 1024))
}

/// `YYYY-MM-DD` of a Unix time, UTC (Howard Hinnant's civil_from_days).
fn date(unix_s: i64) -> String {
    let z = unix_s.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The effective uid: the owner of `/proc/self` (no libc call needed).
fn effective_uid() -> Option<u32> {
    fs::metadata("/proc/self").ok().map(|meta| meta.uid())
}

/// A uid's name from /etc/passwd, else the number. Good enough for messages.
fn user_name(uid: u32) -> String {
    let names: HashMap<u32, String> = fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            Some((uid, name.to_owned()))
        })
        .collect();
    names.get(&uid).cloned().unwrap_or_else(|| format!("uid {uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID_PEM: &[u8] = include_bytes!("../../tests/fixtures/cert-valid-until-2099.pem");
    const EXPIRED_PEM: &[u8] = include_bytes!("../../tests/fixtures/cert-expired-2021.pem");
    /// 2026-06-01T00:00:00Z.
    const NOW_S: i64 = 1_780_272_000;

    // Dates print as calendar days, including the leap day and the epoch.
    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(NOW_S), "2026-06-01");
    }

    // The fixtures' windows parse, and a chain takes the tightest window.
    #[test]
    fn certificate_windows() {
        let valid = certificate_validity(VALID_PEM).unwrap();
        assert_eq!(date(valid.not_after_s), "2099-01-01");
        let expired = certificate_validity(EXPIRED_PEM).unwrap();
        assert_eq!(date(expired.not_after_s), "2021-01-01");
        let chain = [VALID_PEM, EXPIRED_PEM].concat();
        assert_eq!(certificate_validity(&chain).unwrap(), Validity { not_before_s: valid.not_before_s, ..expired });
        assert!(certificate_validity(b"not a pem").is_err());
    }

    // Expired fails, near expiry warns, a future start fails, else ok.
    #[test]
    fn certificate_judgement() {
        let day = 86_400;
        let window = Validity { not_before_s: NOW_S - 10 * day, not_after_s: NOW_S + 90 * day };
        assert_eq!(judge_validity("c", &window, NOW_S).status, Status::Ok);
        assert_eq!(judge_validity("c", &window, NOW_S + 80 * day).status, Status::Warn);
        let expired = judge_validity("c", &window, NOW_S + 100 * day);
        assert_eq!(expired.status, Status::Fail);
        assert!(expired.detail.contains("expired on 2026-08-30 (10 days ago)"), "{}", expired.detail);
        assert_eq!(judge_validity("c", &window, NOW_S - 11 * day).status, Status::Fail);
    }

    // Nothing listens on a port we just released: the check fails with a fix.
    #[test]
    fn closed_listener_fails() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let check = check_listener("imap listener", addr);
        assert_eq!(check.status, Status::Fail);
        assert!(check.fix.unwrap().contains("systemctl status roost"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), listener.local_addr().unwrap().port());
        assert_eq!(check_listener("imap listener", open).status, Status::Ok);
    }

    fn peer(last_seen_ms: Option<u64>, acked: u64, lag_ms: Option<u64>) -> Peer {
        let mut stats = roost_core::store::peers::PeerStats { last_seen_ms, lag_ms, ..Default::default() };
        stats.acked.set(roost_core::model::DeviceId::from_bytes([1; 32]), acked);
        Peer {
            device_id: roost_core::model::DeviceId::from_bytes([2; 32]),
            name: "attic".into(),
            addrs: vec!["192.0.2.7:7947".into()],
            slot: roost_core::model::DeviceSlot::new(1).unwrap(),
            paired_ms: 0,
            removed_ms: None,
            stats,
        }
    }

    // A peer is judged from the sync layer's records: never connected fails;
    // silent for over an hour while lacking our events fails; silent with
    // nothing to send is fine; a slow link warns.
    #[test]
    fn peer_judgement() {
        let now_ms = NOW_S as u64 * 1000;
        let mut local_vv = VersionVector::new();
        local_vv.set(roost_core::model::DeviceId::from_bytes([1; 32]), 10);
        let judge = |p: Peer| judge_peer(&p, &local_vv, now_ms);
        let never = judge(peer(None, 0, None));
        assert_eq!(never.status, Status::Fail);
        assert!(never.detail.contains("attic"), "{}", never.detail);
        assert!(never.detail.contains("never connected"), "{}", never.detail);
        let stuck = judge(peer(Some(now_ms - 2 * 3_600_000), 4, None));
        assert_eq!(stuck.status, Status::Fail);
        assert!(stuck.detail.contains("last heard 2 h ago and it lacks 6 of our events"), "{}", stuck.detail);
        assert_eq!(judge(peer(Some(now_ms - 2 * 3_600_000), 10, Some(40))).status, Status::Ok);
        assert_eq!(judge(peer(Some(now_ms - 1_000), 4, Some(40))).status, Status::Ok);
        assert_eq!(judge(peer(Some(now_ms - 1_000), 10, Some(90_000))).status, Status::Warn);
    }

    // Bound while the daemon runs: ok; bound with no daemon: someone else has
    // it; nothing bound: fail.
    #[test]
    fn sync_listener_probe() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        assert_eq!(check_sync_listener(addr, true).status, Status::Ok);
        let taken = check_sync_listener(addr, false);
        assert_eq!(taken.status, Status::Fail);
        assert!(taken.detail.contains("held by another process"), "{}", taken.detail);
        drop(socket);
        assert_eq!(check_sync_listener(addr, true).status, Status::Fail);
    }

    #[test]
    fn clock_before_the_floor_fails() {
        assert_eq!(check_clock(0).status, Status::Fail);
        assert_eq!(check_clock(NOW_S).status, Status::Ok);
    }
}
