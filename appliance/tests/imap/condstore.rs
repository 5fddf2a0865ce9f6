//! CONDSTORE/QRESYNC resync traces, as a phone does them after reconnecting:
//! CHANGEDSINCE 0, and a client that was offline while messages were
//! expunged and flags changed.

use crate::harness::{fill_inbox, Server};

fn value_after(lines: &[String], key: &str) -> u64 {
    let line = lines.iter().find(|l| l.contains(key)).unwrap_or_else(|| panic!("no {key} in {lines:#?}"));
    let rest = &line[line.find(key).unwrap() + key.len()..];
    rest.trim_start().split([']', ' ', ')']).next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changedsince_zero_returns_everything() {
    let server = Server::start().await;
    fill_inbox(&server, 3).await;
    let mut raw = server.raw_login().await;
    raw.transact("a SELECT INBOX (CONDSTORE)", "OK").await;
    let lines = raw.transact("b UID FETCH 1:* (FLAGS) (CHANGEDSINCE 0)", "OK").await;
    assert_eq!(lines.iter().filter(|l| l.contains("MODSEQ (")).count(), 3, "{lines:#?}");
    raw.transact("c LOGOUT", "OK").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qresync_after_being_offline() {
    let server = Server::start().await;
    fill_inbox(&server, 4).await;
    // The phone syncs and remembers UIDVALIDITY and HIGHESTMODSEQ, then goes away.
    let mut phone = server.raw_login().await;
    phone.transact("e ENABLE QRESYNC", "OK").await;
    let lines = phone.transact("s SELECT INBOX", "OK").await;
    let uid_validity = value_after(&lines, "UIDVALIDITY ");
    let modseq = value_after(&lines, "HIGHESTMODSEQ ");
    phone.transact("l LOGOUT", "OK").await;
    // Meanwhile another client expunges UID 17 and flags UID 33.
    let mut desktop = server.raw_login().await;
    desktop.transact("a SELECT INBOX", "OK").await;
    desktop.transact("b UID STORE 17 +FLAGS (\\Deleted)", "OK").await;
    desktop.transact("c UID EXPUNGE 17", "OK").await;
    desktop.transact("d UID STORE 33 +FLAGS (\\Seen)", "OK").await;
    desktop.transact("e LOGOUT", "OK").await;
    // The phone comes back: one round trip tells it exactly what changed.
    let mut phone = server.raw_login().await;
    phone.transact("e ENABLE QRESYNC", "OK").await;
    let lines = phone.transact(&format!("s SELECT INBOX (QRESYNC ({uid_validity} {modseq} 1:49))"), "OK").await;
    let all = lines.join("\n");
    assert!(all.contains("* VANISHED (EARLIER) 17"), "{all}");
    assert!(all.contains("FETCH (FLAGS (\\Seen) UID 33 MODSEQ ("), "{all}");
    assert!(!all.contains("UID 1 "), "unchanged message reported: {all}");
    // And the same through UID FETCH ... VANISHED.
    let lines = phone.transact(&format!("f UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"), "OK").await;
    assert!(lines.join("\n").contains("* VANISHED (EARLIER) 17"), "{lines:#?}");
    // A wrong UIDVALIDITY gets a plain SELECT, no resync data.
    let lines = phone.transact(&format!("t SELECT INBOX (QRESYNC (1 {modseq}))"), "OK").await;
    assert!(!lines.join("\n").contains("VANISHED"), "{lines:#?}");
    phone.transact("z LOGOUT", "OK").await;
    server.stop().await;
}
