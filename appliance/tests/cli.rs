//! The `roost` command line, run as a real process: each command once on the
//! happy path, then each bad input the foundation issue lists. Every failure
//! must exit non-zero with one message naming the problem and leave nothing
//! half-written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

const PASSWORD: &str = "a fine passphrase";

fn roost(data_dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roost"));
    cmd.arg("--data-dir").arg(data_dir).args(args);
    // Never pick up the developer's own config.
    cmd.env("XDG_CONFIG_HOME", data_dir.with_extension("no-config")).env_remove("ROOST_CONFIG");
    match stdin {
        Some(text) => support::output_with_stdin(&mut cmd, text),
        None => cmd.stdin(Stdio::null()).output().expect("roost binary runs"),
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: Output) -> String {
    assert!(o.status.success(), "expected success, got {:?}\nstdout: {}\nstderr: {}", o.status, stdout(&o), stderr(&o));
    stdout(&o)
}

#[track_caller]
fn fails_with(o: Output, needle: &str) {
    assert!(!o.status.success(), "expected failure, got success\nstdout: {}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains(needle), "stderr should mention {needle:?}: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
}

fn initialised() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(roost(&dir, &["init"], None));
    (tmp, dir)
}

#[test]
fn init_user_status_verify_happy_path() {
    let (_tmp, dir) = initialised();
    let key_mode = std::fs::metadata(dir.join("device.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key_mode.permissions().mode() & 0o777, 0o600);

    let out = ok(roost(&dir, &["user", "add", "alice", "--password-stdin"], Some(&format!("{PASSWORD}\n"))));
    assert!(out.contains("added user alice"), "{out}");
    ok(roost(&dir, &["user", "add", "bob@example.org", "--password-stdin"], Some(&format!("{PASSWORD}\n"))));
    let list = ok(roost(&dir, &["user", "list"], None));
    assert!(list.contains("alice\t6 mailboxes\t0 messages"), "{list}");
    assert!(list.contains("bob@example.org"), "{list}");

    // The current password first (it unwraps alice's key), then the new one.
    fails_with(
        roost(&dir, &["user", "passwd", "alice", "--password-stdin"], Some("not her password\nanother passphrase\n")),
        "current password of alice is wrong",
    );
    ok(roost(
        &dir,
        &["user", "passwd", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\nanother passphrase\n")),
    ));
    fails_with(
        roost(&dir, &["user", "recover", "alice", "--password-stdin"], Some("12-34\nthird passphrase\n")),
        "64 hexadecimal digits",
    );
    ok(roost(&dir, &["user", "remove", "bob@example.org"], None));
    let list = ok(roost(&dir, &["user", "list"], None));
    assert!(!list.contains("bob"), "{list}");

    let status = ok(roost(&dir, &["status"], None));
    for needle in ["device", "users           1", "mailboxes       6", "messages", "storage"] {
        assert!(status.contains(needle), "status lacks {needle:?}: {status}");
    }
    let verify = ok(roost(&dir, &["verify"], None));
    assert!(verify.contains("ok: the state rebuilt from the log matches"), "{verify}");
}

#[test]
fn missing_or_unusable_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    fails_with(roost(&missing, &["status"], None), "does not exist (run `roost init` first)");
    fails_with(roost(&missing, &["user", "list"], None), "does not exist");
    // A file where the data directory should be.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    fails_with(roost(&file, &["init"], None), "cannot create data directory");
    // An initialised directory whose key file is unreadable as text.
    let (_tmp2, dir) = initialised();
    std::fs::write(dir.join("device.key"), b"garbage\n").unwrap();
    fails_with(roost(&dir, &["status"], None), "device.key");
}

#[test]
fn init_twice_is_refused_and_changes_nothing() {
    let (_tmp, dir) = initialised();
    let key_before = std::fs::read(dir.join("device.key")).unwrap();
    fails_with(roost(&dir, &["init"], None), "already a Roost data directory");
    assert_eq!(std::fs::read(dir.join("device.key")).unwrap(), key_before);
}

#[test]
fn config_typo_and_bad_value_name_file_and_line() {
    let (tmp, dir) = initialised();
    let config = tmp.path().join("roost.toml");
    std::fs::write(&config, "[imap]\nlisen = []\n").unwrap();
    let out = roost(&dir, &["--config", config.to_str().unwrap(), "status"], None);
    fails_with(out, "lisen");
    let out = roost(&dir, &["--config", config.to_str().unwrap(), "status"], None);
    let err = stderr(&out);
    assert!(err.contains("roost.toml") && err.contains("line 2"), "{err}");

    std::fs::write(&config, "[lmtp]\nmax_message_bytes = \"big\"\n").unwrap();
    fails_with(roost(&dir, &["--config", config.to_str().unwrap(), "status"], None), "line 2");
    fails_with(roost(&dir, &["--config", tmp.path().join("nope.toml").to_str().unwrap(), "status"], None), "nope.toml");
}

#[test]
fn database_from_a_newer_schema_is_refused() {
    let (_tmp, dir) = initialised();
    let conn = rusqlite::Connection::open(dir.join("roost.db")).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    fails_with(roost(&dir, &["status"], None), "schema version 999");
}

#[test]
fn duplicate_user_and_weak_passwords_are_refused() {
    let (_tmp, dir) = initialised();
    ok(roost(&dir, &["user", "add", "alice", "--password-stdin"], Some(&format!("{PASSWORD}\n"))));
    fails_with(
        roost(&dir, &["user", "add", "alice", "--password-stdin"], Some(&format!("{PASSWORD}\n"))),
        "already exists",
    );
    // Refused before the password is read: input larger than a pipe holds
    // cannot all be written, so the refusal is what the test sees (it once
    // failed with a broken pipe when the command exited before the write).
    fails_with(
        roost(&dir, &["user", "add", "alice", "--password-stdin"], Some(&"x".repeat(1 << 20))),
        "already exists",
    );
    fails_with(roost(&dir, &["user", "add", "bob", "--password-stdin"], Some("\n")), "password is empty");
    fails_with(roost(&dir, &["user", "add", "bob", "--password-stdin"], Some("short\n")), "shorter than 8");
    fails_with(roost(&dir, &["user", "add", "bob", "--password-stdin"], Some("bbbbbbbbbb\n")), "too easy");
    fails_with(
        roost(&dir, &["user", "add", "bob bob", "--password-stdin"], Some(&format!("{PASSWORD}\n"))),
        "invalid user name",
    );
    // No terminal and no --password-stdin: refuse rather than hang.
    fails_with(roost(&dir, &["user", "add", "bob"], None), "--password-stdin");
    fails_with(
        roost(&dir, &["user", "passwd", "nobody", "--password-stdin"], Some(&format!("{PASSWORD}\n"))),
        "no user nobody",
    );
    fails_with(roost(&dir, &["user", "remove", "nobody"], None), "no user nobody");
    let list = ok(roost(&dir, &["user", "list"], None));
    assert_eq!(list.lines().count(), 1, "only alice: {list}");
    ok(roost(&dir, &["verify"], None));
}

#[test]
fn a_second_serve_is_refused_while_other_commands_keep_working() {
    let (_tmp, dir) = initialised();
    ok(roost(&dir, &["user", "add", "alice", "--password-stdin"], Some(&format!("{PASSWORD}\n"))));
    let ports = [
        "--listen-imap",
        "127.0.0.1:0",
        "--listen-imaps",
        "127.0.0.1:0",
        "--listen-lmtp",
        "127.0.0.1:0",
        "--listen-sync",
        "127.0.0.1:0",
    ];
    let mut first = Command::new(env!("CARGO_BIN_EXE_roost"))
        .arg("--data-dir")
        .arg(&dir)
        .arg("serve")
        .args(ports)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first daemon holds the lock (bounded), probing with a
    // non-blocking lock of our own.
    let started = Instant::now();
    loop {
        use fs2::FileExt;
        let lock_path = dir.join("roost.lock");
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&lock_path) {
            if file.try_lock_exclusive().is_err() {
                break;
            }
            file.unlock().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the first daemon never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = roost(&dir, &[&["serve"][..], &ports[..]].concat(), None);
    fails_with(second, "already running");
    // The other commands work while the daemon runs.
    ok(roost(&dir, &["user", "add", "carol", "--password-stdin"], Some(&format!("{PASSWORD}\n"))));
    ok(roost(&dir, &["status"], None));
    ok(roost(&dir, &["verify"], None));
    first.kill().unwrap();
    first.wait().unwrap();
}

/// A reader that stops early (`roost doctor | head -1`) ends the command
/// quietly, with the shell's SIGPIPE status, instead of a panic on stdout.
#[test]
fn closed_stdout_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["doctor"][..], &["man"][..], &["completions", "bash"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_roost"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
            .env_remove("ROOST_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("roost binary runs");
        // Close our end of stdout before the command gets to print.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "roost {args:?} panicked on a closed stdout: {err}");
        assert_eq!(out.status.code(), Some(141), "roost {args:?}: {:?}, stderr: {err}", out.status);
    }
}

#[test]
fn compact_folds_on_an_unpaired_device_and_verify_is_unchanged() {
    let (_tmp, dir) = initialised();
    ok(roost(&dir, &["user", "add", "alice", "--password-stdin"], Some(&format!("{PASSWORD}\n"))));
    let before = ok(roost(&dir, &["verify"], None));
    assert!(before.contains("ok: the state rebuilt from the log matches"), "{before}");
    // A device paired later installs the snapshot: no opt-in any more.
    let out = ok(roost(&dir, &["compact"], None));
    assert!(out.contains("events left in the log") && !out.contains("folded 0 events"), "{out}");
    assert!(out.contains("a fresh device paired later installs the snapshot"), "{out}");
    let after = ok(roost(&dir, &["verify"], None));
    assert!(after.contains("on top of the log snapshot"), "{after}");
    assert!(after.contains("ok: the state rebuilt from the log matches"), "{after}");
    // The digest table `verify` prints (every table, and all together) is the same.
    let digest =
        |text: &str| text.lines().filter(|l| l.contains("rows") || l.starts_with("all")).collect::<Vec<_>>().join("\n");
    assert_eq!(digest(&before), digest(&after));
    assert!(!digest(&after).is_empty());
    // Mail written after the compaction rebuilds on top of the snapshot too.
    ok(roost(&dir, &["user", "add", "bob", "--password-stdin"], Some(&format!("{PASSWORD}\n"))));
    let later = ok(roost(&dir, &["verify"], None));
    assert!(later.contains("ok: the state rebuilt from the log matches"), "{later}");
    // The old opt-in flag is still accepted.
    let again = ok(roost(&dir, &["compact", "--unpaired"], None));
    assert!(again.contains("0 events left in the log"), "{again}");
}
