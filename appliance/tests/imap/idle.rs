//! IDLE across two connections: a change made on one is pushed to the other
//! while it idles, and DONE ends the IDLE.

use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;

use crate::harness::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sees_append_from_another_connection() {
    let server = Server::start().await;
    let mut idler = server.session("alice").await;
    idler.select("INBOX").await.unwrap();
    let mut handle = idler.idle();
    handle.init().await.unwrap();
    let (wait, _stop) = handle.wait_with_timeout(Duration::from_secs(10));
    let writer = async {
        // Give the idler time to be idle, then append from a second connection.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut other = server.session("alice").await;
        other.append("INBOX", None, None, "Subject: pushed\r\n\r\nhi\r\n").await.unwrap();
        other.logout().await.unwrap();
    };
    let (response, ()) = tokio::join!(wait, writer);
    match response.unwrap() {
        IdleResponse::NewData(data) => {
            let text = format!("{:?}", data.parsed());
            assert!(text.contains("Exists(1)"), "{text}");
        }
        other => panic!("expected pushed data, got {other:?}"),
    }
    let mut idler = handle.done().await.unwrap();
    idler.logout().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_raw_flag_change_and_done() {
    // A flag change by another session shows up as FETCH while idling.
    let server = Server::start().await;
    crate::harness::fill_inbox(&server, 1).await;
    let mut idler = server.raw_login().await;
    idler.transact("a SELECT INBOX", "OK").await;
    idler.send("b IDLE").await;
    assert_eq!(idler.line().await, "+ idling");
    let mut other = server.raw_login().await;
    other.transact("x SELECT INBOX", "OK").await;
    other.transact("y STORE 1 +FLAGS (\\Flagged)", "OK").await;
    let pushed = idler.line().await;
    assert!(pushed.starts_with("* 1 FETCH (FLAGS (\\Flagged)"), "{pushed}");
    idler.send("DONE").await;
    idler.until_tagged("b").await;
    idler.transact("c LOGOUT", "OK").await;
    other.transact("z LOGOUT", "OK").await;
    server.stop().await;
}
