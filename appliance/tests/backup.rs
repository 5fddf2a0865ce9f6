//! `roost backup` and `roost restore` end to end: the archive decrypts with
//! the standard `age` CLI (Debian package `age`), a restore gives the same
//! `roost verify` digest, damaged files are refused without writing anything,
//! a backup taken while LMTP delivers restores to a consistent state, and
//! scheduled backups keep the newest `keep`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

mod support;

struct Device {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data_dir: PathBuf,
    config: PathBuf,
    identity: PathBuf,
    lmtp: u16,
    daemon: Option<Child>,
}

impl Device {
    fn new() -> Device {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let data_dir = root.join("data");
        let config = root.join("roost.toml");
        let identity = root.join("backup-identity.txt");
        let [imap, imaps, lmtp] = [free_port(), free_port(), free_port()];
        let sync = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut device = Device { _tmp: tmp, root, data_dir, config, identity, lmtp, daemon: None };
        fs::write(&device.config, "").unwrap();
        let keygen = device.roost(&["backup", "keygen", "--out", device.identity.to_str().unwrap()]);
        assert!(keygen.status.success(), "{}", String::from_utf8_lossy(&keygen.stderr));
        let stdout = String::from_utf8(keygen.stdout).unwrap();
        let recipient_line =
            stdout.lines().find(|l| l.starts_with("recipient = ")).expect("keygen prints the recipient");
        fs::write(
            &device.config,
            format!(
                "[imap]\nlisten = [\"127.0.0.1:{imap}\"]\nlisten_tls = [\"127.0.0.1:{imaps}\"]\n\
                 [lmtp]\nlisten = [\"127.0.0.1:{lmtp}\"]\n[sync]\nlisten = [\"127.0.0.1:{sync}\"]\n\
                 [backup]\n{recipient_line}\n"
            ),
        )
        .unwrap();
        device.ok(&["init"]);
        let out = support::output_with_stdin(
            &mut device.command(&["user", "add", "alice", "--password-stdin"]),
            "a fine passphrase\n",
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        device.daemon = None;
        device
    }

    fn command(&self, args: &[&str]) -> Command {
        self.command_on(&self.data_dir, args)
    }

    fn command_on(&self, data_dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roost"));
        cmd.arg("--data-dir").arg(data_dir).arg("--config").arg(&self.config).args(args);
        cmd.env_remove("ROOST_CONFIG").stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    fn roost(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.roost(args);
        assert!(out.status.success(), "roost {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn verify_on(&self, data_dir: &Path) -> String {
        let out = self.command_on(data_dir, &["verify"]).output().unwrap();
        assert!(out.status.success(), "verify failed: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stdout).unwrap()
    }

    fn restore(&self, backup: &Path, into: &Path) -> Output {
        let args = ["restore", backup.to_str().unwrap(), "--identity", self.identity.to_str().unwrap()];
        self.command_on(into, &args).output().unwrap()
    }

    fn import_messages(&self, n: usize) {
        let mbox = self.root.join("in.mbox");
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!(
                "From a@example.org Mon Jan  1 00:00:00 2026\nFrom: a@example.org\nTo: alice@example.org\n\
                 Subject: message {i}\nMessage-ID: <m{i}@example.org>\n\nbody {i}\n\n"
            ));
        }
        fs::write(&mbox, text).unwrap();
        self.ok(&["import", "--user", "alice", mbox.to_str().unwrap()]);
    }

    fn serve(&mut self) {
        let mut cmd = self.command(&["serve"]);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        self.daemon = Some(cmd.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.lmtp)).is_err() {
            assert!(Instant::now() < deadline, "LMTP did not listen within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Everything `roost verify` prints: the event count and the state digest.
fn digest(verify: &str) -> String {
    assert!(verify.contains("ok: the state rebuilt from the log matches"), "{verify}");
    verify.to_owned()
}

// Backup, read it with `age` and `tar`, restore into an empty dir: same digest.
#[test]
fn backup_restores_to_the_same_digest_and_the_age_cli_reads_it() {
    let device = Device::new();
    device.import_messages(20);
    let before = digest(&device.verify_on(&device.data_dir));
    let backup = device.root.join("device.age");
    let out = device.ok(&["backup", "--to", backup.to_str().unwrap()]);
    assert!(out.contains("20 blobs"), "{out}");
    // A second backup to the same name is refused, never overwritten.
    assert!(!device.roost(&["backup", "--to", backup.to_str().unwrap()]).status.success());

    // The standard age CLI decrypts it to a tar of the data dir.
    let age = Command::new("age")
        .args(["--decrypt", "--identity"])
        .arg(&device.identity)
        .arg(&backup)
        .output()
        .expect("the age CLI is installed (Debian package age)");
    assert!(age.status.success(), "age -d failed: {}", String::from_utf8_lossy(&age.stderr));
    let tar_path = device.root.join("device.tar");
    fs::write(&tar_path, &age.stdout).unwrap();
    let listing = Command::new("tar").arg("-tf").arg(&tar_path).output().unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(names[0], "ROOST-BACKUP", "{listing}");
    for name in ["roost.db", "device.key", "config/roost.toml"] {
        assert!(names.contains(&name), "{name} missing from {listing}");
    }
    assert_eq!(names.iter().filter(|n| n.starts_with("blobs/")).count(), 20, "{listing}");
    // Without the identity the ciphertext holds no plaintext of the mail.
    let cipher = fs::read(&backup).unwrap();
    assert!(!cipher.windows(b"message 7".len()).any(|w| w == b"message 7"), "plaintext in the backup file");

    // Restore into an empty, existing dir.
    let restored = device.root.join("restored");
    fs::create_dir(&restored).unwrap();
    let out = device.restore(&backup, &restored);
    assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(digest(&device.verify_on(&restored)), before);
    assert!(restored.join("roost.toml.from-backup").exists());
    // An unpaired device has nobody to take newer events back from: it is
    // not marked rejoining and accepts changes at once.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("takes back"), "{out:?}");
    let status = device.command_on(&restored, &["status"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&status.stdout).contains("rejoining"), "{status:?}");
    // And into a dir that does not exist yet.
    let fresh = device.root.join("fresh");
    assert!(device.restore(&backup, &fresh).status.success());
    assert_eq!(digest(&device.verify_on(&fresh)), before);

    // A non-empty data dir is refused and left as it was.
    let out = device.restore(&backup, &device.data_dir);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("it is not empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(digest(&device.verify_on(&device.data_dir)), before);
}

// One flipped byte in the middle, or the file cut short: refused with a clear
// error, and neither the data dir nor a staging dir is left behind.
#[test]
fn damaged_backups_are_refused_and_nothing_is_written() {
    let device = Device::new();
    device.import_messages(50);
    let backup = device.root.join("device.age");
    device.ok(&["backup", "--to", backup.to_str().unwrap()]);
    let good = fs::read(&backup).unwrap();
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let cases: [(&str, Vec<u8>); 3] = [
        ("flipped", flipped),
        ("truncated", good[..good.len() - 100].to_vec()),
        ("cut in half", good[..good.len() / 2].to_vec()),
    ];
    for (what, bytes) in cases {
        let damaged = device.root.join(format!("{}.age", what.replace(' ', "-")));
        fs::write(&damaged, bytes).unwrap();
        let target = device.root.join(format!("restore-{}", what.replace(' ', "-")));
        let out = device.restore(&damaged, &target);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: restore accepted a damaged backup");
        assert!(stderr.contains("refused"), "{what}: {stderr}");
        assert!(!target.exists(), "{what}: restore wrote {}", target.display());
        let leftovers: Vec<_> = fs::read_dir(&device.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".restore-"))
            .collect();
        assert!(leftovers.is_empty(), "{what}: staging left behind: {leftovers:?}");
    }
    // A wrong identity is refused the same way.
    let other = device.root.join("other-identity.txt");
    device.ok(&["backup", "keygen", "--out", other.to_str().unwrap()]);
    let target = device.root.join("restore-wrong-identity");
    let out = device
        .command_on(&target, &["restore", backup.to_str().unwrap(), "--identity", other.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot decrypt"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!target.exists());
}

/// Delivers `n` messages over LMTP, one transaction each, checking each 250.
fn deliver(port: u16, first: usize, n: usize) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut reply = || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(line.len() >= 4, "LMTP closed: {all}{line}");
            all.push_str(&line);
            if line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    };
    assert!(reply().starts_with("220"));
    writer.write_all(b"LHLO test\r\n").unwrap();
    assert!(reply().starts_with("250"));
    for i in first..first + n {
        writer.write_all(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n").unwrap();
        assert!(reply().starts_with("250"));
        assert!(reply().starts_with("250"));
        assert!(reply().starts_with("354"));
        let body = format!(
            "From: a@example.org\r\nTo: alice@example.org\r\nSubject: live {i}\r\nMessage-ID: <live{i}@example.org>\r\n\r\nbody {i}\r\n.\r\n"
        );
        writer.write_all(body.as_bytes()).unwrap();
        let r = reply();
        assert!(r.starts_with("250"), "delivery {i}: {r}");
    }
    writer.write_all(b"QUIT\r\n").unwrap();
}

// Backups taken while LMTP deliveries commit restore to consistent states
// that hold a prefix of the deliveries, and the last one taken after the
// deliveries ended holds them all.
#[test]
fn backup_during_lmtp_deliveries_restores_consistently() {
    let mut device = Device::new();
    device.serve();
    let port = device.lmtp;
    let delivering = std::thread::spawn(move || deliver(port, 0, 150));
    let mut backups = Vec::new();
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(200));
        let path = device.root.join(format!("live-{i}.age"));
        device.ok(&["backup", "--to", path.to_str().unwrap()]);
        backups.push(path);
    }
    delivering.join().unwrap();
    let last = device.root.join("after.age");
    device.ok(&["backup", "--to", last.to_str().unwrap()]);
    backups.push(last);
    for (i, backup) in backups.iter().enumerate() {
        let target = device.root.join(format!("restored-{i}"));
        let out = device.restore(backup, &target);
        assert!(out.status.success(), "restore {i}: {}", String::from_utf8_lossy(&out.stderr));
        device.verify_on(&target);
    }
    // The backup after the deliveries holds the same state as the live device.
    let live = device.verify_on(&device.data_dir);
    assert_eq!(device.verify_on(&device.root.join("restored-3")), live);
}

// The schedule's unit of work keeps the newest `keep` backups.
#[test]
fn scheduled_backups_keep_the_newest() {
    let device = Device::new();
    device.import_messages(3);
    let (_, recipient) = roost::backup::keygen(SystemTime::now());
    let dir = device.root.join("backups");
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let mut written = Vec::new();
    for i in 0..4 {
        let now = start + Duration::from_secs(3600 * i);
        let (path, summary) =
            roost::backup::scheduled_backup(&device.data_dir, None, &recipient, &dir, 2, now).unwrap();
        assert_eq!(summary.blobs, 3);
        written.push(path);
    }
    assert_eq!(roost::backup::scheduled_backups(&dir).unwrap(), written[2..].to_vec());
}

// `roost serve` with a schedule writes a backup at start when none exists.
#[test]
fn serve_runs_the_schedule() {
    let mut device = Device::new();
    let dir = device.root.join("scheduled");
    let mut config = fs::read_to_string(&device.config).unwrap();
    config.push_str(&format!("dir = \"{}\"\nevery = \"1d\"\nkeep = 3\n", dir.display()));
    fs::write(&device.config, config).unwrap();
    device.serve();
    let deadline = Instant::now() + Duration::from_secs(30);
    while roost::backup::scheduled_backups(&dir).map(|b| b.len()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "no scheduled backup within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let backup = roost::backup::scheduled_backups(&dir).unwrap().remove(0);
    let target = device.root.join("restored");
    assert!(device.restore(&backup, &target).status.success());
    device.verify_on(&target);
}

/// After blob GC removed an expunged message's blob (its `messages` row
/// stays), a backup carries the live entries' blobs only and restores to the
/// same digest; before GC it would have failed on the missing blob.
#[test]
fn a_backup_after_blob_gc_carries_the_live_mail_and_restores() {
    let device = Device::new();
    device.import_messages(3);
    {
        let secret = roost::device::load_key(&device.data_dir).unwrap();
        let mut store = roost_core::store::Store::open(&device.data_dir, secret).unwrap();
        let alice = roost_core::model::UserName::new("alice").unwrap();
        let inbox = store.mailbox_by_name(&alice, "INBOX").unwrap().unwrap().id;
        let first = store.entries(inbox).unwrap()[0].entry_id;
        store.write(roost::cli::now_ms(), |w| w.expunge(inbox, &[first])).unwrap();
    }
    assert!(device.ok(&["gc"]).contains("removed 1 blobs"));
    let before = digest(&device.verify_on(&device.data_dir));
    let backup = device.root.join("after-gc.age");
    let out = device.ok(&["backup", "--to", backup.to_str().unwrap()]);
    assert!(out.contains("2 blobs"), "{out}");
    let target = device.root.join("restored");
    let out = device.restore(&backup, &target);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(digest(&device.verify_on(&target)), before);
}
