//! Autologout, IDLE length and the failed-login delay, on tokio's paused
//! clock (STYLE 18): the tests take virtual minutes and real milliseconds.

use std::time::Duration;

use roost::imap::limits::Limits;

use crate::harness::Server;

#[tokio::test(start_paused = true)]
async fn silent_client_is_logged_out() {
    let limits = Limits { autologout: Duration::from_secs(5), idle_max: Duration::from_secs(8), ..Limits::default() };
    let server = Server::start_with(limits).await;
    let mut raw = server.raw_login().await;
    let bye = raw.line().await;
    assert!(bye.starts_with("* BYE Autologout"), "{bye}");
    // IDLE gets its own, longer bound, and is re-armed by the client re-issuing IDLE.
    let mut raw = server.raw_login().await;
    raw.send("i IDLE").await;
    assert_eq!(raw.line().await, "+ idling");
    let start = tokio::time::Instant::now();
    let bye = raw.line().await;
    assert!(bye.starts_with("* BYE"), "{bye}");
    assert!(start.elapsed() >= Duration::from_secs(8), "{:?}", start.elapsed());
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failed_login_is_delayed() {
    let server = Server::start().await;
    let mut raw = server.raw().await;
    let start = tokio::time::Instant::now();
    raw.transact("a LOGIN alice nope", "NO [AUTHENTICATIONFAILED]").await;
    assert!(start.elapsed() >= Limits::default().login_failure_delay, "{:?}", start.elapsed());
    let start = tokio::time::Instant::now();
    raw.transact("b LOGIN alice secret", "OK").await;
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    raw.transact("c LOGOUT", "OK").await;
    server.stop().await;
}
