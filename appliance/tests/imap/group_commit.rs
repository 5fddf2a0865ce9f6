//! Writes of concurrent sessions go through the daemon's committer and share
//! commits, while each OK still follows its own commit.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::Server;

const CLIENTS: usize = 10;
const APPENDS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_and_stores_share_commits() {
    let server = Server::start().await;
    // A reader holds the store now and then, as sync and IDLE do, so writers
    // find it busy and queue for the committer. Without it an idle machine
    // can let every write find the store free and commit alone on its
    // session's thread (`write_blocking`'s direct path): nothing to share.
    let writing = Arc::new(AtomicBool::new(true));
    let holder = {
        let (daemon, writing) = (server.daemon.clone(), writing.clone());
        tokio::spawn(async move {
            // Ends when the clients are done.
            while writing.load(Ordering::Relaxed) {
                daemon
                    .read(|_| {
                        std::thread::sleep(Duration::from_millis(20));
                        Ok(())
                    })
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut raw = server.raw_login().await;
        tasks.push(tokio::spawn(async move {
            let mut uids = Vec::new();
            for i in 0..APPENDS {
                let body = format!("Subject: client {c} message {i}\r\n\r\nbody\r\n");
                let lines =
                    raw.transact(&format!("a{i} APPEND INBOX {{{}+}}\r\n{body}", body.len()), "OK [APPENDUID").await;
                let code = lines.last().unwrap().split(']').next().unwrap().to_string();
                uids.push(code.rsplit(' ').next().unwrap().parse::<u32>().unwrap());
            }
            raw.transact("s SELECT INBOX", "OK").await;
            for uid in &uids {
                raw.transact(&format!("f{uid} UID STORE {uid} +FLAGS.SILENT (\\Flagged)"), "OK").await;
            }
            raw.transact("z LOGOUT", "OK").await;
            uids
        }));
    }
    let mut all = BTreeSet::new();
    for task in tasks {
        for uid in task.await.unwrap() {
            assert!(all.insert(uid), "UID {uid} assigned twice");
        }
    }
    assert_eq!(all.len(), CLIENTS * APPENDS);
    writing.store(false, Ordering::Relaxed);
    holder.await.unwrap();

    // Everything acknowledged is there, with its flag.
    let mut raw = server.raw_login().await;
    let lines = raw.transact("a SELECT INBOX", "OK").await;
    assert!(lines.contains(&format!("* {} EXISTS", CLIENTS * APPENDS)), "{lines:#?}");
    let lines = raw.transact("b SEARCH FLAGGED", "OK").await;
    let found = lines.iter().find(|l| l.starts_with("* SEARCH")).unwrap().split(' ').count() - 2;
    assert_eq!(found, CLIENTS * APPENDS, "{lines:#?}");
    raw.transact("z LOGOUT", "OK").await;

    let counts = &server.daemon.commit_counts;
    let (batches, writes) = (counts.batches.load(Ordering::Relaxed), counts.writes.load(Ordering::Relaxed));
    // 100 APPENDs + 100 STOREs from 10 clients at once: some commits carried several.
    assert!(writes >= 2 * (CLIENTS * APPENDS) as u64, "{writes} writes went through the committer");
    assert!(batches < writes, "{batches} commits for {writes} writes: none shared");
    server.stop().await;
}

/// A stream of STOREs, one after the other, keeps the WAL bounded. A
/// checkpoint beside the writes always ends a commit or two behind them, and
/// SQLite starts the WAL over only for a write that begins with nothing left
/// to copy; the checkpoint thread took "all it found copied" for caught up,
/// and the WAL grew by every STORE's pages (80 MB in five seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_stores_keeps_the_wal_bounded() {
    const MESSAGES: usize = 20;
    // About 10 pages each: three times the 4,096 frames after which the
    // checkpoint thread starts the WAL over.
    const STORES: usize = 1_300;
    const WAL_FRAME_BYTES: u64 = 4096 + 24;
    let server = Server::start().await;
    let mut raw = server.raw_login().await;
    for i in 0..MESSAGES {
        let body = format!("Subject: {i}\r\n\r\nbody\r\n");
        raw.transact(&format!("a{i} APPEND INBOX {{{}+}}\r\n{body}", body.len()), "OK").await;
    }
    raw.transact("s SELECT INBOX", "OK").await;
    let wal = server.daemon.data_dir.join("roost.db-wal");
    let mut grown = 0;
    for i in 0..STORES {
        // A new keyword each round: every STORE changes something.
        raw.transact(&format!("t{i} STORE {} +FLAGS.SILENT ($k{})", i % MESSAGES + 1, i / MESSAGES), "OK").await;
        grown = grown.max(std::fs::metadata(&wal).unwrap().len());
    }
    let frames = grown / WAL_FRAME_BYTES;
    assert!(frames < 8_192, "the WAL grew to {frames} frames over {STORES} STOREs without starting over");
}
