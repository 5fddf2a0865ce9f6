//! Durability: a child process commits events in a loop and reports each
//! commit on stdout only after `write` returned; the parent kills it with
//! SIGKILL mid-stream, reopens the store, and checks that every reported
//! commit is there and that the log still rebuilds the state (`verify`).
//!
//! The child is this same test binary re-run with `ROOST_DURABILITY_CHILD`
//! set, so no extra binary is needed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use roost_core::model::{DeviceSlot, UserName};
use roost_core::store::{AppendMessage, Store};

const SECRET: [u8; 32] = [5; 32];
const CHILD_ENV: &str = "ROOST_DURABILITY_CHILD";

/// Commits message `i` to alice's INBOX.
fn append(store: &mut Store, user: &UserName, i: u64) {
    let raw = format!("Subject: message {i}\r\n\r\nbody {i}\r\n").into_bytes();
    store
        .write(1_700_000_000_000 + i, |w| {
            let inbox = w.mailbox(user, "INBOX")?;
            w.append(inbox, &[AppendMessage { raw: &raw, flags: vec![], internal_date: i as i64 }])
        })
        .unwrap();
}

fn child(dir: &Path) {
    let mut store = Store::open(dir, SECRET).unwrap();
    let user = UserName::new("alice").unwrap();
    for i in 0u64.. {
        append(&mut store, &user, i);
        println!("committed {i}");
    }
}

#[test]
fn sigkill_during_commits_loses_nothing_reported() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::init(dir.path(), SECRET, DeviceSlot::new(0).unwrap(), 1_700_000_000_000).unwrap();
        store.write(1_700_000_000_000, |w| w.add_user(&UserName::new("alice").unwrap(), "hash")).unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sigkill_during_commits_loses_nothing_reported", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reported = Vec::new();
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("committed ") {
            reported.push(n.parse::<u64>().unwrap());
        }
        // Kill while commits are streaming: after 40 of them or 20 s at most.
        if reported.len() >= 40 || started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    child.wait().unwrap();
    assert!(reported.len() >= 10, "child reported only {} commits", reported.len());

    let store = Store::open(dir.path(), SECRET).unwrap();
    let user = UserName::new("alice").unwrap();
    let inbox = store.mailbox_by_name(&user, "INBOX").unwrap().unwrap();
    let entries = store.entries(inbox.id).unwrap();
    let dates: Vec<i64> = entries.iter().map(|e| e.internal_date).collect();
    for n in &reported {
        assert!(dates.contains(&(*n as i64)), "commit {n} was reported but is gone");
    }
    // Commits are sequential: what is there is a prefix without gaps.
    for (i, date) in dates.iter().enumerate() {
        assert_eq!(*date, i as i64, "gap in the committed sequence");
    }
    for entry in &entries {
        store.message(&entry.blob).unwrap();
    }
    let report = store.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// WAL frame size: a 4 KiB page plus its 24-byte frame header.
const WAL_FRAME_BYTES: u64 = 4096 + 24;

// The daemon moves checkpoints off the commit path (docs/benchmarks.md):
// commits no longer checkpoint at SQLite's 1,000 pages, the second
// connection's PASSIVE checkpoint copies the whole WAL into the database,
// the next write starts the WAL over, and nothing committed is lost.
#[test]
fn checkpoints_move_off_the_commit_path() {
    let dir = tempfile::tempdir().unwrap();
    let user = UserName::new("alice").unwrap();
    let mut store = Store::init(dir.path(), SECRET, DeviceSlot::new(0).unwrap(), 1_700_000_000_000).unwrap();
    store.write(1_700_000_000_000, |w| w.add_user(&user, "hash")).unwrap();
    let checkpointer = store.checkpoint_elsewhere().unwrap();
    let wal = dir.path().join("roost.db-wal");
    let mut appended = 0;
    // Past 1,500 frames: a commit-path checkpoint would have started the WAL over at 1,000.
    while std::fs::metadata(&wal).unwrap().len() < 1_500 * WAL_FRAME_BYTES {
        append(&mut store, &user, appended);
        appended += 1;
        assert!(appended < 20_000, "the WAL does not grow");
    }
    let report = checkpointer.passive().unwrap();
    assert!(report.complete() && report.wal_frames >= 1_500, "{report:?}");
    append(&mut store, &user, appended);
    appended += 1;
    let report = checkpointer.passive().unwrap();
    assert!(report.complete() && report.wal_frames < 100, "the WAL did not start over: {report:?}");
    drop((checkpointer, store));
    let store = Store::open(dir.path(), SECRET).unwrap();
    let inbox = store.mailbox_by_name(&user, "INBOX").unwrap().unwrap();
    assert_eq!(store.entries(inbox.id).unwrap().len() as u64, appended);
}

/// Under steady writes a checkpoint beside them always ends a commit behind
/// (its "complete" is of the frames there were when it began), and SQLite
/// starts the WAL over only for a write that begins with nothing left to
/// copy: the WAL grew without bound under a stream of STOREs (80 MB in five
/// seconds). The restart checkpoint, taken between two writes, bounds it.
#[test]
fn a_restart_checkpoint_starts_the_wal_over_between_writes() {
    let dir = tempfile::tempdir().unwrap();
    let user = UserName::new("alice").unwrap();
    let mut store = Store::init(dir.path(), SECRET, DeviceSlot::new(0).unwrap(), 1_700_000_000_000).unwrap();
    store.write(1_700_000_000_000, |w| w.add_user(&user, "hash")).unwrap();
    let checkpointer = store.checkpoint_elsewhere().unwrap();
    // Stands for the writes that commit while a checkpoint runs: a write of
    // the same value, on a connection of its own.
    let meanwhile = rusqlite::Connection::open(dir.path().join("roost.db")).unwrap();
    let mut appended = 0;
    for _ in 0..20 {
        for _ in 0..20 {
            append(&mut store, &user, appended);
            appended += 1;
        }
        let report = checkpointer.passive().unwrap();
        assert!(report.complete(), "{report:?}");
        meanwhile.execute("UPDATE device SET slot = slot", []).unwrap();
    }
    let grown = checkpointer.passive().unwrap();
    assert!(grown.wal_frames > 200, "the WAL started over without help: {grown:?}");
    append(&mut store, &user, appended);
    appended += 1;
    assert!(store.checkpoint_restart(20).unwrap(), "no reader holds the WAL");
    append(&mut store, &user, appended);
    appended += 1;
    let report = checkpointer.passive().unwrap();
    assert!(report.wal_frames < 20, "the WAL did not start over: {report:?} (was {grown:?})");
    drop((checkpointer, store));
    let store = Store::open(dir.path(), SECRET).unwrap();
    let inbox = store.mailbox_by_name(&user, "INBOX").unwrap().unwrap();
    assert_eq!(store.entries(inbox.id).unwrap().len() as u64, appended);
}
