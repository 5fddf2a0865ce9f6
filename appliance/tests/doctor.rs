//! `roost doctor` against real devices: a healthy one (initialised, daemon
//! running, valid certificate) must pass, and each broken setup must fail with
//! exactly the check that names the problem, and no other. Each test builds a
//! `Device` (temp data dir, its own config on free ports, a running `roost
//! serve`), breaks one thing and reads the report.
//!
//! The full-disk test mounts a small tmpfs and so needs root; without root it
//! says so and passes, unless ROOST_REQUIRE_ROOT=1 (test.sh sets it in CI).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const VALID_CERT: &str = include_str!("fixtures/cert-valid-until-2099.pem");
const EXPIRED_CERT: &str = include_str!("fixtures/cert-expired-2021.pem");
const TEST_KEY: &str = include_str!("fixtures/key.pem");

/// A data dir with its own config and, once `serve` ran, its daemon.
struct Device {
    _tmp: tempfile::TempDir,
    data_dir: PathBuf,
    config: PathBuf,
    /// The IMAP port: the last listener `roost serve` binds.
    imap_port: u16,
    daemon: Option<Child>,
}

impl Device {
    /// An initialised device in a fresh temp dir (or under `parent`), with a
    /// valid certificate where `roost init` will put one.
    fn new_in(parent: Option<&Path>) -> Device {
        let tmp = match parent {
            Some(dir) => tempfile::tempdir_in(dir).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let data_dir = tmp.path().join("data");
        let config = tmp.path().join("roost.toml");
        let [imap, imaps, lmtp] = [free_port(), free_port(), free_port()];
        let sync = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        fs::write(
            &config,
            format!(
                "[imap]\nlisten = [\"127.0.0.1:{imap}\"]\nlisten_tls = [\"127.0.0.1:{imaps}\"]\n\
                 [lmtp]\nlisten = [\"127.0.0.1:{lmtp}\"]\n[sync]\nlisten = [\"127.0.0.1:{sync}\"]\n"
            ),
        )
        .unwrap();
        let device = Device { _tmp: tmp, data_dir, config, imap_port: imap, daemon: None };
        let out = device.roost(&["init"]);
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        device.install_cert(VALID_CERT);
        device
    }

    fn new() -> Device {
        Device::new_in(None)
    }

    /// Writes `pem` (with the fixtures' key) as the data dir's self-signed
    /// pair, the certificate `roost serve` loads when the config names none
    /// and the one doctor checks.
    fn install_cert(&self, pem: &str) {
        fs::write(self.data_dir.join("imap-cert.pem"), pem).unwrap();
        fs::write(self.data_dir.join("imap-key.pem"), TEST_KEY).unwrap();
        fs::set_permissions(self.data_dir.join("imap-key.pem"), fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roost"));
        cmd.arg("--data-dir").arg(&self.data_dir).arg("--config").arg(&self.config).args(args);
        cmd.env("XDG_CONFIG_HOME", self.data_dir.with_extension("no-config")).env_remove("ROOST_CONFIG");
        cmd
    }

    fn roost(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().expect("roost runs")
    }

    /// Starts `roost serve` and waits until it holds the data dir lock and
    /// IMAP, bound last, accepts connections.
    fn serve(&mut self) {
        let child = self.command(&["serve"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        self.daemon = Some(child.expect("roost serve starts"));
        let lock = self.data_dir.join("roost.lock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let locked = fs::File::open(&lock).is_ok_and(|file| file.try_lock_shared().is_err());
            if locked && std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("roost serve did not take its lock and listen for IMAP within 20 s");
    }

    /// Runs doctor; returns (exit success, report).
    fn doctor(&self) -> (bool, String) {
        let out = self.roost(&["doctor"]);
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "doctor panicked: {stderr}");
        (out.status.success(), report)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A test may have made the dir unwritable; let TempDir clean up.
        let _ = fs::set_permissions(&self.data_dir, fs::Permissions::from_mode(0o700));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The check names on `FAIL` lines of a report.
fn failed_checks(report: &str) -> Vec<String> {
    let mut names: Vec<String> = report
        .lines()
        .filter_map(|line| line.strip_prefix("FAIL  "))
        .map(|rest| rest[..16].trim().to_owned())
        .collect();
    names.dedup();
    names
}

/// The first line of the report for check `name`, with its status.
#[track_caller]
fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find(|line| line.get(6..6 + 16).is_some_and(|n| n.trim() == name))
        .unwrap_or_else(|| panic!("no {name:?} line in:\n{report}"))
}

/// Whether this process runs as root (the owner of /proc/self).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

// A healthy device passes, and what cannot be checked yet says so honestly.
#[test]
fn healthy_device_passes() {
    let mut device = Device::new();
    device.serve();
    let (passed, report) = device.doctor();
    assert!(passed, "doctor failed on a healthy device:\n{report}");
    assert!(report.contains("roost doctor: no problems found"), "{report}");
    assert!(line(&report, "certificate").starts_with("ok"), "{report}");
    assert!(line(&report, "certificate").contains("valid until 2099-01-01"), "{report}");
    assert!(line(&report, "daemon").starts_with("ok"), "{report}");
    assert!(line(&report, "data dir").starts_with("ok"), "{report}");
    // The build machine's own disk may be low (a warning), never failing here.
    assert!(!line(&report, "disk space").starts_with("FAIL"), "{report}");
    // Peers and backups do not exist yet: not applicable, never "ok".
    assert!(
        line(&report, "peer clock skew").starts_with("n/a   peer clock skew  not applicable: no paired devices"),
        "{report}"
    );
    assert!(line(&report, "peer").contains("not applicable: no paired devices"), "{report}");
    assert!(line(&report, "sync listener").starts_with("ok"), "{report}");
    assert!(line(&report, "lmtp listener").starts_with("ok"), "{report}");
    assert!(line(&report, "imap listener").starts_with("ok"), "{report}");
    assert!(line(&report, "imaps listener").starts_with("ok"), "{report}");
    assert!(line(&report, "backup age").contains("not applicable: no backups configured"), "{report}");
}

// A backup schedule with no backup yet warns (doctor still passes); once a
// backup is in the dir, the check is ok and names it.
#[test]
fn backup_age_follows_the_schedule() {
    let device = Device::new();
    let (_, recipient) = roost::backup::keygen(std::time::SystemTime::now());
    let backups = device.data_dir.with_extension("backups");
    let mut config = fs::read_to_string(&device.config).unwrap();
    config.push_str(&format!(
        "[backup]\nrecipient = \"{recipient}\"\ndir = \"{}\"\nevery = \"1d\"\nkeep = 2\n",
        backups.display()
    ));
    fs::write(&device.config, config).unwrap();
    let (_, report) = device.doctor();
    assert!(line(&report, "backup age").starts_with("warn"), "{report}");
    assert!(line(&report, "backup age").contains("none is in"), "{report}");
    fs::create_dir_all(&backups).unwrap();
    let out = device.roost(&["backup", "--to", backups.join("roost-20260101T000000.000Z.age").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, report) = device.doctor();
    assert!(line(&report, "backup age").starts_with("ok"), "{report}");
    assert!(line(&report, "backup age").contains("scheduled every 24 h"), "{report}");
}

// A stopped daemon is a problem, with the command that fixes it.
#[test]
fn stopped_daemon_fails() {
    let device = Device::new();
    let (passed, report) = device.doctor();
    assert!(!passed, "{report}");
    assert_eq!(
        failed_checks(&report),
        ["daemon", "imap listener", "imaps listener", "lmtp listener", "sync listener"],
        "{report}"
    );
    assert!(report.contains("fix: systemctl start roost"), "{report}");
}

// An expired certificate fails with its date and how to renew it.
#[test]
fn expired_certificate_fails() {
    let mut device = Device::new();
    device.install_cert(EXPIRED_CERT);
    device.serve();
    let (passed, report) = device.doctor();
    assert!(!passed, "{report}");
    assert_eq!(failed_checks(&report), ["certificate"], "{report}");
    assert!(line(&report, "certificate").contains("expired on 2021-01-01"), "{report}");
    assert!(report.contains("fix: renew it"), "{report}");
}

// A configured certificate that does not exist is named.
#[test]
fn missing_configured_certificate_fails() {
    let device = Device::new();
    let text = fs::read_to_string(&device.config)
        .unwrap()
        .replace("[imap]\n", "[imap]\ntls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"\n");
    fs::write(&device.config, text).unwrap();
    // `roost serve` refuses to start without its configured certificate (the
    // IMAP listeners need it), so doctor sees the daemon down as well.
    let out = device.roost(&["serve"]);
    assert!(!out.status.success(), "serve must refuse a missing certificate");
    let (passed, report) = device.doctor();
    assert!(!passed, "{report}");
    assert!(failed_checks(&report).iter().any(|c| c == "certificate"), "{report}");
    assert!(line(&report, "certificate").contains("cannot read /nonexistent/cert.pem"), "{report}");
}

// A paired device that cannot be reached (nothing listens at its address)
// fails the peer check, naming the device and what to look at.
#[test]
fn unreachable_peer_fails() {
    let mut device = Device::new();
    {
        let store = roost::cli::open_store(&device.data_dir).unwrap();
        let ghost = roost_core::model::DeviceId::from_bytes([7; 32]);
        // A UDP port we held a moment ago: nothing answers there.
        let addr = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let slot = roost_core::model::DeviceSlot::new(1).unwrap();
        store.add_peer(ghost, "cellar", slot, &[addr.to_string()], 1).unwrap();
    }
    device.serve();
    let (passed, report) = device.doctor();
    assert!(!passed, "{report}");
    assert_eq!(failed_checks(&report), ["peer"], "{report}");
    assert!(line(&report, "peer").contains("cellar"), "{report}");
    assert!(line(&report, "peer").contains("never connected since pairing"), "{report}");
    assert!(report.contains("fix: check that the other device runs"), "{report}");
}

// A data dir its owner cannot write fails on its mode, even when doctor runs
// as root (who could write anyway: the daemon's user could not).
#[test]
fn unwritable_data_dir_fails() {
    let mut device = Device::new();
    device.serve();
    fs::set_permissions(&device.data_dir, fs::Permissions::from_mode(0o500)).unwrap();
    let (passed, report) = device.doctor();
    assert!(!passed, "{report}");
    assert_eq!(failed_checks(&report), ["data dir"], "{report}");
    assert!(report.contains("has mode 0500"), "{report}");
    assert!(report.contains("cannot read, write or enter it"), "{report}");
    assert!(report.contains("fix: chmod 0700"), "{report}");
}

// A data dir other users can read exposes the key and the mail.
#[test]
fn world_readable_data_dir_fails() {
    let mut device = Device::new();
    device.serve();
    fs::set_permissions(&device.data_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let (passed, report) = device.doctor();
    assert!(!passed, "{report}");
    assert_eq!(failed_checks(&report), ["data dir"], "{report}");
    assert!(report.contains("other users can reach the device key"), "{report}");
}

// A broken config is reported with its line, and the other checks still run.
#[test]
fn invalid_config_fails_and_the_rest_still_runs() {
    let mut device = Device::new();
    device.serve();
    fs::write(&device.config, "[imap]\nlisen = []\n").unwrap();
    let (passed, report) = device.doctor();
    assert!(!passed, "{report}");
    assert_eq!(failed_checks(&report), ["config"], "{report}");
    assert!(line(&report, "config").contains("line 2"), "{report}");
    assert!(!line(&report, "disk space").starts_with("FAIL"), "{report}");
}

// As root: a file in the data dir owned by someone else (an admin command run
// as root) is found, with the chown that fixes it.
#[test]
fn foreign_owned_file_fails() {
    if !root_or_skip("foreign_owned_file_fails") {
        return;
    }
    let mut device = Device::new();
    device.serve();
    let stray = device.data_dir.join("roost.db-stray");
    fs::write(&stray, "").unwrap();
    // 65534 is `nobody` on Debian.
    std::os::unix::fs::chown(&stray, Some(65534), Some(65534)).unwrap();
    let (passed, report) = device.doctor();
    assert!(!passed, "{report}");
    assert_eq!(failed_checks(&report), ["data dir"], "{report}");
    assert!(report.contains("roost.db-stray"), "{report}");
    assert!(report.contains("fix: chown -R root:"), "{report}");
}

// A nearly full disk fails: a 256 MiB tmpfs is fine while empty (a warning at
// most) and fails once a file leaves it under the 128 MiB floor.
#[test]
fn nearly_full_disk_fails() {
    if !root_or_skip("nearly_full_disk_fails") {
        return;
    }
    let mount = Tmpfs::new("256m");
    let mut device = Device::new_in(Some(&mount.path));
    device.serve();
    let (passed, report) = device.doctor();
    assert!(passed, "an empty 256 MiB disk should pass:\n{report}");
    let mut filler = fs::File::create(mount.path.join("filler")).unwrap();
    let chunk = vec![0u8; 1024 * 1024];
    for _ in 0..200 {
        filler.write_all(&chunk).unwrap();
    }
    filler.sync_all().unwrap();
    let (passed, report) = device.doctor();
    assert!(!passed, "{report}");
    assert_eq!(failed_checks(&report), ["disk space"], "{report}");
    assert!(line(&report, "disk space").contains("nearly full"), "{report}");
    drop(device);
}

/// Whether the test may run root-only steps; without root it explains and
/// lets the caller return, unless ROOST_REQUIRE_ROOT=1.
fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(std::env::var("ROOST_REQUIRE_ROOT").as_deref() != Ok("1"), "{test} needs root (ROOST_REQUIRE_ROOT=1)");
    eprintln!("{test}: NOT RUN: needs root to mount a tmpfs or chown; run as root (CI does)");
    false
}

/// A tmpfs of the given size, unmounted on drop.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("mount runs");
        assert!(status.success(), "cannot mount a tmpfs on {}", path.display());
        Tmpfs { _dir: dir, path }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the daemon may still be closing files.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
