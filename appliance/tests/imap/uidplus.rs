//! UIDPLUS (APPENDUID, COPYUID) and MOVE after expunges: UIDs are never reused.

use crate::harness::{fill_inbox, Server};

fn code_numbers(line: &str, code: &str) -> Vec<String> {
    let start = line.find(code).unwrap_or_else(|| panic!("no {code} in {line}")) + code.len();
    let end = line[start..].find(']').unwrap() + start;
    line[start..end].split_whitespace().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uids_grow_after_expunge_and_copyuid_pairs_uids() {
    let server = Server::start().await;
    fill_inbox(&server, 3).await;
    let mut raw = server.raw_login().await;
    raw.transact("a SELECT INBOX", "OK").await;
    raw.transact("b STORE 3 +FLAGS.SILENT (\\Deleted)", "OK").await;
    let lines = raw.transact("c EXPUNGE", "OK").await;
    assert!(lines.contains(&"* 3 EXPUNGE".to_string()), "{lines:#?}");
    let lines = raw.transact("d APPEND INBOX {3+}\r\nabc", "OK [APPENDUID").await;
    let appended = code_numbers(lines.last().unwrap(), "APPENDUID ");
    let new_uid: u32 = appended[1].parse().unwrap();
    assert!(new_uid > 33, "UID {new_uid} reuses an expunged one");
    let lines = raw.transact("e UID COPY 1,17 Archive", "OK [COPYUID").await;
    let copyuid = code_numbers(lines.last().unwrap(), "COPYUID ");
    assert_eq!(copyuid[1], "1,17");
    let lines = raw.transact("f UID MOVE 1 Trash", "OK").await;
    assert!(lines.iter().any(|l| l.starts_with("* OK [COPYUID ")), "{lines:#?}");
    assert!(lines.contains(&"* 1 EXPUNGE".to_string()), "{lines:#?}");
    raw.transact("g LOGOUT", "OK").await;
    server.stop().await;
}
