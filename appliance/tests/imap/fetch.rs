//! FETCH through async-imap: its parser (imap-proto) must accept our
//! ENVELOPE, BODYSTRUCTURE and body sections.

use futures::TryStreamExt;

use crate::harness::Server;

const MAIL: &str = "From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nTo: a@example.org\r\nSubject: multipart\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
hello\r\n--b1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b1--\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_bodystructure_and_sections_parse_in_a_real_client() {
    let server = Server::start().await;
    let mut session = server.session("alice").await;
    session.append("INBOX", Some("(\\Seen)"), None, MAIL).await.unwrap();
    session.select("INBOX").await.unwrap();
    let fetches: Vec<_> = session
        .uid_fetch("1:*", "(FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(fetches.len(), 1);
    let fetch = &fetches[0];
    let envelope = fetch.envelope().unwrap();
    assert_eq!(envelope.subject.as_deref(), Some(b"multipart".as_slice()));
    let from = &envelope.from.as_ref().unwrap()[0];
    assert_eq!(from.mailbox.as_deref(), Some(b"j".as_slice()));
    assert!(fetch.bodystructure().is_some());
    assert_eq!(fetch.uid, Some(1));
    drop(fetches);
    session.logout().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_and_header_fields_raw() {
    let server = Server::start().await;
    let mut raw = server.raw_login().await;
    raw.transact(&format!("a APPEND INBOX {{{}+}}\r\n{MAIL}", MAIL.len()), "OK").await;
    raw.transact("b SELECT INBOX", "OK").await;
    let lines = raw.transact("c FETCH 1 (BODY.PEEK[2.MIME] BODY.PEEK[]<0.4>)", "OK").await;
    let all = lines.join("\n");
    assert!(all.contains("BODY[2.MIME] {"), "{all}");
    assert!(all.contains("BODY[]<0> {4}"), "{all}");
    raw.transact("d LOGOUT", "OK").await;
    server.stop().await;
}
