//! Bad input over a real socket: each gets the right tagged BAD/NO, the
//! connection stays usable, and nothing panics (`Server::stop` checks).

use roost::imap::limits::Limits;

use crate::harness::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_unknown_and_wrong_state() {
    let server = Server::start().await;
    let mut raw = server.raw().await;
    raw.transact("a1 FOOBAR", "BAD").await;
    raw.transact("a2 SELECT INBOX", "BAD").await; // not logged in
    raw.transact("a3 LOGIN alice secret", "OK").await;
    raw.transact("a4 FETCH 1 FLAGS", "BAD").await; // nothing selected
    raw.transact("a5 SELECT INBOX", "OK").await;
    raw.transact("a6 FETCH 1:x FLAGS", "BAD").await;
    raw.transact("a7 FETCH 3 FLAGS", "BAD").await; // past the end
    raw.transact("a8 UID FETCH 1:* (FLAGS", "BAD").await;
    raw.send("* NOOP").await;
    assert!(raw.line().await.starts_with("* BAD"));
    raw.write(b"a9 LOGIN \"m\xff\" pw\r\n").await;
    assert!(raw.until_tagged("a9").await.last().unwrap().starts_with("a9 BAD"));
    raw.write(b"b1 NOOP\n").await; // bare LF is accepted
    raw.until_tagged("b1").await;
    raw.transact("b2 STATUS INBOX (MESSAGES)", "OK").await;
    raw.transact("b3 LOGOUT", "OK").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_literals_and_lines() {
    let limits = Limits { literal_bytes_max: 1000, line_bytes_max: 2000, command_bytes_max: 4000, ..Limits::default() };
    let server = Server::start_with(limits).await;
    let mut raw = server.raw_login().await;
    // A synchronising literal over the limit: NO [TOOBIG], connection usable.
    raw.transact("a APPEND INBOX {5000}", "NO [TOOBIG]").await;
    raw.transact("b NOOP", "OK").await;
    // An over-long line: BYE, since the stream cannot be resynchronised.
    raw.write(&vec![b'x'; 3000]).await;
    let bye = raw.line().await;
    assert!(bye.starts_with("* BYE [TOOBIG]"), "{bye}");
    assert_eq!(raw.line().await, "");
    // A non-synchronising literal over the limit: BYE too (RFC 7888 4).
    let mut raw = server.raw_login().await;
    raw.send("c APPEND INBOX {99999999+}").await;
    assert!(raw.line().await.starts_with("* BYE [TOOBIG]"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_per_address() {
    let limits = Limits { connections_per_address_max: 2, ..Limits::default() };
    let server = Server::start_with(limits).await;
    let a = server.raw().await;
    let b = server.raw().await;
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut line).await.unwrap();
    assert!(line.starts_with("* BYE [LIMIT]"), "{line}");
    drop((a, b));
    server.stop().await;
}
