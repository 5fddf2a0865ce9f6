//! `roost import` and `roost export` through the real binary on small
//! generated fixtures: bad input is skipped with file and position, re-runs
//! add nothing, export -> import gives the same mailboxes, messages and flags,
//! and an import killed mid-way finishes on re-run without duplicates or gaps.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use roost_core::model::UserName;

struct Env {
    dir: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
}

/// A data dir with users alice, bob and carol, and an empty config file (so a
/// config in the developer's home is not read).
fn setup() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut store = roost::cli::init::init_data_dir(&data).unwrap();
    store
        .write(1, |w| {
            for name in ["alice", "bob", "carol"] {
                w.add_user(&UserName::new(name).unwrap(), "not-a-hash")?;
            }
            Ok(())
        })
        .unwrap();
    let config = dir.path().join("roost.toml");
    std::fs::write(&config, "").unwrap();
    Env { dir, data, config }
}

impl Env {
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_roost"));
        c.arg("--data-dir").arg(&self.data).arg("--config").arg(&self.config);
        c
    }

    fn roost(&self, args: &[&str]) -> (i32, String, String) {
        let out: Output = self.cmd().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Mailbox -> sorted (blob, INTERNALDATE, flags) of every message.
    fn snapshot(&self, user: &str) -> Snapshot {
        let store = roost::cli::open_store(&self.data).unwrap();
        let user = UserName::new(user).unwrap();
        let mut out = BTreeMap::new();
        for mb in store.mailboxes(&user).unwrap() {
            let mut msgs: Vec<_> = store
                .entries(mb.id)
                .unwrap()
                .into_iter()
                .map(|e| (e.blob.to_hex(), e.internal_date, e.flags.iter().map(|f| f.to_string()).collect()))
                .collect();
            msgs.sort();
            out.insert(mb.name, msgs);
        }
        out
    }
}

/// Mailbox -> sorted (blob hex, INTERNALDATE, flags).
type Snapshot = BTreeMap<String, Vec<(String, i64, Vec<String>)>>;

fn count(snapshot: &Snapshot) -> usize {
    snapshot.values().map(Vec::len).sum()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A Maildir++ tree: INBOX (one seen, one new), `Sent Items` (special, goes
/// to Sent), `Lists.rust` (nested, one message with broken MIME), plus a folder whose name is not UTF-8, a
/// binary file, and a dangling symlink where a message should be.
fn maildir_fixture(root: &Path) {
    let msg = |n: u32| format!("From: a@example.org\nMessage-ID: <{n}@x>\nSubject: m{n}\n\nbody {n}\n").into_bytes();
    write(&root.join("cur/1700000001.1.host:2,S"), &msg(1));
    write(&root.join("new/1700000002.2.host"), &msg(2));
    write(&root.join(".Sent Items/cur/1700000003.3.host:2,RS"), &msg(3));
    write(&root.join(".Lists.rust/cur/1700000004.4.host:2,FP"), &msg(4));
    // Broken MIME (no closing boundary, bad header continuation) is still
    // mail: stored as it is, since IMAP serves the raw bytes.
    let broken =
        b"From: b@example.org\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: text/plain\n\ncut\n";
    write(&root.join(".Lists.rust/cur/1700000008.8.host:2,"), broken);
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    let bad = root.join(std::ffi::OsStr::from_bytes(b".bad\xffname"));
    write(&bad.join("cur/1700000005.5.host:2,"), &msg(5));
    write(&root.join("cur/1700000006.6.host:2,"), b"\x7fELF\x02\x01\x01\0\0\0binary");
    std::os::unix::fs::symlink(root.join("nowhere"), root.join("cur/1700000007.7.host:2,S")).unwrap();
    for (i, name) in ["cur/1700000001.1.host:2,S", "new/1700000002.2.host"].iter().enumerate() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_001 + i as u64);
        std::fs::File::options().write(true).open(root.join(name)).unwrap().set_modified(t).unwrap();
    }
}

/// An mbox with flags, a quoted From line, and a truncated last message.
fn mbox_fixture(path: &Path) {
    let text = "From alice@example.org Tue Nov 14 22:13:20 2023\n\
                From: alice@example.org\nMessage-ID: <a@x>\nStatus: RO\nX-Status: AF\n\nhello\n>From the body\n\n\
                From bob@example.org Wed Nov 15 08:00:00 2023\n\
                From: bob@example.org\nMessage-ID: <b@x>\n\nsecond\n\n\
                From carol@example.org Thu Nov 16 08:00:00 2023\n\
                From: carol@example.org\nContent-Length: 5000\n\ncut off";
    write(path, text.as_bytes());
}

#[test]
fn maildir_import_skips_bad_items_maps_folders_and_reruns_add_nothing() {
    // The good messages land with their flags and dates, special folders map
    // by name, each bad item is named on stderr and counted in the summary
    // (exit 2), and a second run stores nothing new.
    let env = setup();
    let root = env.path("Maildir");
    maildir_fixture(&root);
    let (code, stdout, stderr) = env.roost(&["import", "--user", "alice", root.to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stdout.contains("imported 5 messages"), "{stdout}");
    assert!(stdout.contains("skipped 3 items"), "{stdout}");
    assert!(stderr.contains("1700000006.6.host:2,: not a mail message"), "{stderr}");
    assert!(stderr.contains("1700000007.7.host:2,S"), "{stderr}");
    assert!(stderr.contains(".bad"), "{stderr}");
    let snap = env.snapshot("alice");
    assert_eq!(snap["INBOX"].len(), 2);
    let inbox_flags: Vec<&Vec<String>> = snap["INBOX"].iter().map(|m| &m.2).collect();
    assert!(inbox_flags.contains(&&vec!["\\Seen".to_string()]), "{inbox_flags:?}");
    assert!(snap["INBOX"].iter().any(|m| m.1 == 1_700_000_001), "{:?}", snap["INBOX"]);
    assert_eq!(snap["Sent"][0].2, ["\\Answered", "\\Seen"]);
    assert_eq!(snap["Lists/rust"].len(), 2);
    assert!(snap["Lists/rust"].iter().any(|m| m.2 == ["$Forwarded", "\\Flagged"]), "{:?}", snap["Lists/rust"]);
    assert!(!snap.contains_key("Sent Items"));

    let (code, stdout, _) = env.roost(&["import", "--user", "alice", root.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stdout.contains("imported 0 messages"), "{stdout}");
    assert!(stdout.contains("5 already present"), "{stdout}");
    assert_eq!(env.snapshot("alice"), snap);
}

#[test]
fn truncated_mbox_keeps_the_good_messages_and_names_the_line() {
    let env = setup();
    let path = env.path("old.mbox");
    mbox_fixture(&path);
    let (code, stdout, stderr) =
        env.roost(&["import", "--user", "alice", "--mailbox", "Old/2023", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stderr.contains("old.mbox line 16: truncated message"), "{stderr}");
    assert!(stdout.contains("imported 2 messages") && stdout.contains("1 truncated message"), "{stdout}");
    let snap = env.snapshot("alice");
    let old = &snap["Old/2023"];
    assert_eq!(old.len(), 2);
    assert!(old.iter().any(|m| m.1 == 1_700_000_000 && m.2 == ["\\Answered", "\\Flagged", "\\Seen"]), "{old:?}");
    let store = roost::cli::open_store(&env.data).unwrap();
    let mb = store.mailbox_by_name(&UserName::new("alice").unwrap(), "Old/2023").unwrap().unwrap();
    let first = store.entries(mb.id).unwrap().into_iter().find(|e| e.internal_date == 1_700_000_000).unwrap();
    let raw = String::from_utf8(store.message(&first.blob).unwrap()).unwrap();
    assert!(raw.ends_with("\r\n\r\nhello\r\nFrom the body\r\n"), "{raw:?}");
    assert!(!raw.contains("Status:"), "{raw:?}");
}

#[test]
fn export_then_import_gives_the_same_mailboxes_messages_and_flags() {
    // For each format: alice's mail (from both fixtures) exported, imported
    // into a fresh user, compares equal mailbox by mailbox.
    let env = setup();
    let root = env.path("Maildir");
    maildir_fixture(&root);
    let mbox = env.path("old.mbox");
    mbox_fixture(&mbox);
    env.roost(&["import", "--user", "alice", root.to_str().unwrap()]);
    env.roost(&["import", "--user", "alice", "--mailbox", "Old/2023", mbox.to_str().unwrap()]);
    let alice = env.snapshot("alice");
    assert_eq!(count(&alice), 7);
    for (format, user) in [("maildir", "bob"), ("mbox", "carol")] {
        let out = env.path(&format!("export-{format}"));
        let (code, stdout, stderr) =
            env.roost(&["export", "--user", "alice", "--format", format, out.to_str().unwrap()]);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        assert!(stdout.contains("exported 7 messages"), "{stdout}");
        let (code, stdout, stderr) = env.roost(&["import", "--user", user, out.to_str().unwrap()]);
        assert_eq!(code, 0, "{format}: {stdout}\n{stderr}");
        let mut want = alice.clone();
        if format == "mbox" {
            // FIXME(#5): mbox has no place for keywords (Status/X-Status carry
            // system flags only), so $Forwarded is lost; export says so.
            for msgs in want.values_mut() {
                for m in msgs.iter_mut() {
                    m.2.retain(|f| f != "$Forwarded");
                }
            }
        }
        assert_eq!(env.snapshot(user), want, "{format}");
    }
    // mbox cannot carry $Forwarded: counted and said, the rest kept.
    let out = env.path("again");
    let (_, stdout, _) = env.roost(&["export", "--user", "alice", "--format", "mbox", out.to_str().unwrap()]);
    assert!(stdout.contains("1 messages had keywords"), "{stdout}");
    // An existing export is never overwritten.
    let (code, _, stderr) = env.roost(&["export", "--user", "alice", "--format", "mbox", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not empty"), "{stderr}");
}

#[test]
fn import_killed_mid_way_finishes_on_rerun_without_duplicates_or_gaps() {
    // SIGKILL after the first committed batch, then a re-run: every message
    // is there exactly once.
    const N: usize = 3000;
    let env = setup();
    let path = env.path("big.mbox");
    let mut text = String::new();
    for i in 0..N {
        text.push_str(&format!(
            "From x@example.org Tue Nov 14 22:13:20 2023\nFrom: x@example.org\nMessage-ID: <{i}@x>\n\nmessage {i}\n\n"
        ));
    }
    write(&path, text.as_bytes());
    let mut child = env
        .cmd()
        .args(["import", "--user", "alice", "--batch", "100", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("committed"), "{line}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = count(&env.snapshot("alice"));
    assert!(partial >= 100, "{partial}");
    assert!(partial < N, "the import finished before the kill: {partial}");

    let (code, stdout, stderr) = env.roost(&["import", "--user", "alice", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let snap = env.snapshot("alice");
    let inbox = &snap["INBOX"];
    assert_eq!(inbox.len(), N);
    let distinct: std::collections::HashSet<&String> = inbox.iter().map(|m| &m.0).collect();
    assert_eq!(distinct.len(), N);
    assert!(stdout.contains(&format!("{partial} already present")), "{stdout}");
}
