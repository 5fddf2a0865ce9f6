//! Real clients against the server. Each test skips with a printed message
//! when the client is not installed (apt: python3, isync).

use std::process::Command;

use crate::harness::Server;

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_imaplib_session() {
    if !have("python3") {
        println!("SKIPPED python_imaplib_session: python3 not installed (apt install python3)");
        return;
    }
    let server = Server::start().await;
    let script = format!(
        r#"
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", {port})
m.login("alice", "secret")
typ, _ = m.append("INBOX", r"(\Seen)", None, b"Subject: py\r\n\r\nfrom python\r\n")
assert typ == "OK", typ
typ, data = m.select("INBOX")
assert typ == "OK" and data == [b"1"], data
typ, data = m.uid("SEARCH", None, "ALL")
assert data == [b"1"], data
typ, data = m.fetch("1", "(RFC822)")
assert b"from python" in data[0][1], data
typ, data = m.list()
assert any(b"Sent" in l for l in data), data
m.store("1", "+FLAGS", r"(\Deleted)")
m.expunge()
m.close()
m.logout()
print("imaplib ok")
"#,
        port = server.addr.port()
    );
    let out = tokio::task::spawn_blocking(move || Command::new("python3").arg("-c").arg(script).output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    server.stop().await;
}

fn maildir_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    ["cur", "new"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(dir.join(sub)).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbsync_two_way_sync() {
    // mbsync over STARTTLS (trusting our self-signed certificate): pull two
    // messages, then push a local message and a local \Seen + deletion back.
    if Command::new("mbsync").arg("--version").output().is_err() {
        println!("SKIPPED mbsync_two_way_sync: mbsync not installed (apt install isync)");
        return;
    }
    let server = Server::start().await;
    crate::harness::fill_inbox(&server, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, &server.cert_pem).unwrap();
    let mail = dir.path().join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    let config = dir.path().join("mbsyncrc");
    std::fs::write(
        &config,
        format!(
            "IMAPAccount roost\nHost localhost\nPort {port}\nUser alice\nPass secret\nSSLType STARTTLS\n\
             CertificateFile {cert}\n\nIMAPStore remote\nAccount roost\n\n\
             MaildirStore local\nPath {mail}/\nInbox {mail}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX Archive\nCreate Both\nExpunge Both\nSyncState *\n",
            port = server.addr.port(),
            cert = cert.display(),
            mail = mail.display()
        ),
    )
    .unwrap();
    let run = |config: std::path::PathBuf| async move {
        let out = tokio::task::spawn_blocking(move || {
            Command::new("mbsync").arg("-c").arg(&config).arg("-a").output().unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "mbsync failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(config.clone()).await;
    let inbox = mail.join("INBOX");
    let files = maildir_files(&inbox);
    assert_eq!(files.len(), 2, "{files:?}");
    // Locally: add a message, mark one seen, flag the other trashed (deleted).
    std::fs::write(inbox.join("new").join("1.local:2,"), "Subject: from mbsync\r\n\r\nlocal\r\n").unwrap();
    let mut files = files;
    files.sort();
    let seen = format!("{}S", files[0].display().to_string().trim_end_matches(char::is_alphabetic));
    std::fs::rename(&files[0], inbox.join("cur").join(std::path::Path::new(&seen).file_name().unwrap())).unwrap();
    let trashed = format!("{}T", files[1].display().to_string().trim_end_matches(char::is_alphabetic));
    std::fs::rename(&files[1], inbox.join("cur").join(std::path::Path::new(&trashed).file_name().unwrap())).unwrap();
    run(config.clone()).await;
    let mut raw = server.raw_login().await;
    let lines = raw.transact("a SELECT INBOX", "OK").await;
    assert!(lines.contains(&"* 2 EXISTS".to_string()), "{lines:#?}");
    let lines = raw.transact("b FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])", "OK").await;
    let all = lines.join("\n");
    assert!(all.contains("\\Seen"), "{all}");
    assert!(all.contains("from mbsync"), "{all}");
    raw.transact("c LOGOUT", "OK").await;
    server.stop().await;
}
