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
