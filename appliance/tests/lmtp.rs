//! LMTP on real sockets: the daemon's store and LMTP listeners started
//! in-process on 127.0.0.1:0 (and a unix socket) with a temp data dir, a raw
//! line client, and the store checked afterwards.

use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

use roost::config::Config;
use roost::lmtp::{spawn_listeners, LmtpListeners};
use roost::serve::Daemon;
use roost_core::model::UserName;

struct Server {
    _dir: tempfile::TempDir,
    daemon: Arc<Daemon>,
    listeners: LmtpListeners,
}

/// A data dir with users alice and bob (alice has a folder `lists`), and
/// LMTP on an ephemeral TCP port and a unix socket.
fn start(subaddress_folders: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut store = roost::cli::init::init_data_dir(&data).unwrap();
    store
        .write(1, |w| {
            for name in ["alice", "bob"] {
                w.add_user(&UserName::new(name).unwrap(), "not-a-hash")?;
            }
            w.create_mailbox(&UserName::new("alice").unwrap(), "lists", None)?;
            Ok(())
        })
        .unwrap();
    let mut config = Config::default();
    config.lmtp.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.lmtp.socket = Some("lmtp.sock".into());
    config.lmtp.subaddress_folders = subaddress_folders;
    let daemon = Daemon::new(store, config.clone(), data);
    let listeners = spawn_listeners(daemon.clone(), &config).unwrap();
    Server { _dir: dir, daemon, listeners }
}

struct Client<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn new(stream: S) -> Self {
        let mut c = Client { io: BufReader::new(stream) };
        let greeting = c.reply().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        c
    }

    /// One reply, all its lines joined with `\n`.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.io.read_line(&mut line).await.unwrap();
            assert!(n > 0, "connection closed after {lines:?}");
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) == Some(&b' ') || line.len() == 3;
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    async fn send(&mut self, text: &str) {
        self.io.get_mut().write_all(text.as_bytes()).await.unwrap();
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }
}

async fn tcp(server: &Server) -> Client<TcpStream> {
    Client::new(TcpStream::connect(server.listeners.tcp[0]).await.unwrap()).await
}

/// (mailbox name, raw message, internal date) of everything `user` has.
async fn messages(daemon: &Daemon, user: &str) -> Vec<(String, String, i64)> {
    let user = UserName::new(user).unwrap();
    daemon
        .read(move |store| {
            let mut out = Vec::new();
            for mb in store.mailboxes(&user)? {
                for e in store.entries(mb.id)? {
                    let raw = String::from_utf8(store.message(&e.blob)?).unwrap();
                    out.push((mb.name.clone(), raw, e.internal_date));
                }
            }
            Ok(out)
        })
        .await
        .unwrap()
}

const MESSAGE: &str =
    "From: s@example.org\r\nMessage-ID: <m1@example.org>\r\nSubject: hi\r\n\r\nhello\r\n.dot line\r\n";

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_recipient_replies_unknown_user_and_trace_headers() {
    // Three recipients, one unknown: 550 5.1.1 for that one only at RCPT, and
    // one reply per accepted recipient after DATA; each copy carries its own
    // Delivered-To and Received, and INTERNALDATE is the delivery time.
    let server = start(false);
    let mut c = tcp(&server).await;
    let lhlo = c.cmd("LHLO mta.example.org").await;
    for ext in ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE"] {
        assert!(lhlo.contains(ext), "{lhlo}");
    }
    assert!(c.cmd("MAIL FROM:<s@example.org> BODY=8BITMIME").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice@example.org>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<nobody@example.org>").await.starts_with("550 5.1.1"));
    assert!(c.cmd("RCPT TO:<Bob@example.org>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    let before = now_secs();
    c.send(&format!("{}..dot line\r\n.\r\n", MESSAGE.replace("\r\n.dot line\r\n", "\r\n"))).await;
    let first = c.reply().await;
    let second = c.reply().await;
    assert!(first.starts_with("250 2.0.0"), "{first}");
    assert!(second.starts_with("250 2.0.0"), "{second}");
    assert!(c.cmd("NOOP").await.starts_with("250"));
    assert!(c.cmd("QUIT").await.starts_with("221"));

    let alice = messages(&server.daemon, "alice").await;
    assert_eq!(alice.len(), 1);
    let (mailbox, raw, date) = &alice[0];
    assert_eq!(mailbox, "INBOX");
    assert!(raw.starts_with("Delivered-To: alice@example.org\r\nReceived: from mta.example.org by "), "{raw}");
    assert!(raw.ends_with("\r\n\r\nhello\r\n.dot line\r\n"), "{raw}");
    assert!((before..=now_secs()).contains(date), "{date}");
    let bob = messages(&server.daemon, "bob").await;
    assert_eq!(bob.len(), 1);
    assert!(bob[0].1.starts_with("Delivered-To: Bob@example.org\r\n"), "{}", bob[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_duplicate_deliveries_are_stored_once() {
    // Two transactions in one write (PIPELINING), the same Message-ID and body
    // both times: both get 250, the store holds the message once. RSET in
    // between is answered in order.
    let server = start(false);
    let mut c = tcp(&server).await;
    let txn = format!("MAIL FROM:<s@example.org>\r\nRCPT TO:<alice@x>\r\nDATA\r\n{MESSAGE}.\r\n");
    c.send(&format!("LHLO mta\r\n{txn}RSET\r\n{txn}QUIT\r\n")).await;
    let mut replies = Vec::new();
    for _ in 0..11 {
        replies.push(c.reply().await);
    }
    let codes: Vec<&str> = replies.iter().map(|r| &r[..3]).collect();
    assert_eq!(codes, ["250", "250", "250", "354", "250", "250", "250", "250", "354", "250", "221"], "{replies:?}");
    assert_eq!(messages(&server.daemon, "alice").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subaddress_goes_to_its_folder_when_enabled_and_it_exists() {
    // alice+lists lands in `lists`; a tag without a folder lands in INBOX.
    let server = start(true);
    let mut c = tcp(&server).await;
    c.cmd("LHLO mta").await;
    c.cmd("MAIL FROM:<>").await;
    assert!(c.cmd("RCPT TO:<alice+lists@example.org>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice+nosuch@example.org>").await.starts_with("250"));
    c.cmd("DATA").await;
    c.send("Subject: no message-id\r\n\r\nbody\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250"));
    assert!(c.reply().await.starts_with("250"));
    let mut boxes: Vec<String> = messages(&server.daemon, "alice").await.into_iter().map(|m| m.0).collect();
    boxes.sort();
    assert_eq!(boxes, ["INBOX", "lists"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subaddress_goes_to_inbox_when_folders_are_disabled() {
    let server = start(false);
    let mut c = tcp(&server).await;
    c.cmd("LHLO mta").await;
    c.cmd("MAIL FROM:<>").await;
    c.cmd("RCPT TO:<alice+lists@example.org>").await;
    c.cmd("DATA").await;
    c.send("Subject: x\r\n\r\nbody\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250"));
    assert_eq!(messages(&server.daemon, "alice").await[0].0, "INBOX");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_delivers_and_oversize_is_refused() {
    // The unix socket speaks the same protocol; SIZE= above the limit is
    // refused at MAIL FROM (RFC 1870 6.1).
    let server = start(false);
    let path = server.listeners.socket.clone().unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666, "the MTA's user must be able to connect");
    let mut c = Client::new(UnixStream::connect(&path).await.unwrap()).await;
    c.cmd("LHLO mta").await;
    let too_big = c.cmd("MAIL FROM:<s@x> SIZE=99999999999").await;
    assert!(too_big.starts_with("552"), "{too_big}");
    c.cmd("MAIL FROM:<s@x>").await;
    c.cmd("RCPT TO:<bob@x>").await;
    c.cmd("DATA").await;
    c.send(&format!("{MESSAGE}.\r\n")).await;
    assert!(c.reply().await.starts_with("250"));
    assert_eq!(messages(&server.daemon, "bob").await.len(), 1);
    drop(server.listeners);
    assert!(!Path::new(&path).exists(), "socket file removed on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_removed_after_rcpt_gets_a_permanent_failure_others_deliver() {
    // bob is accepted at RCPT and removed before DATA ends: his reply is a
    // 5xx while alice's copy is delivered; replies stay in RCPT order.
    let server = start(false);
    let mut c = tcp(&server).await;
    c.cmd("LHLO mta").await;
    c.cmd("MAIL FROM:<s@x>").await;
    assert!(c.cmd("RCPT TO:<bob@x>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice@x>").await.starts_with("250"));
    server.daemon.write(|w| w.remove_user(&UserName::new("bob").unwrap())).await.unwrap();
    c.cmd("DATA").await;
    c.send(&format!("{MESSAGE}.\r\n")).await;
    let bob = c.reply().await;
    let alice = c.reply().await;
    assert!(bob.starts_with("550 5.3.0 <bob@x>"), "{bob}");
    assert!(alice.starts_with("250 2.0.0 <alice@x>"), "{alice}");
    assert_eq!(messages(&server.daemon, "alice").await.len(), 1);
}

/// A second device of the same owner: a fresh data dir in slot 1 that has
/// every event of `first` (as after pairing), with its own LMTP listener.
async fn start_second_device(first: &Server) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut store = roost::cli::init::init_data_dir(&data).unwrap();
    store.set_slot(roost_core::model::DeviceSlot::new(1).unwrap()).unwrap();
    let history =
        first.daemon.read(|s| s.events_missing(&roost_core::log::VersionVector::new(), usize::MAX)).await.unwrap();
    store.ingest(2, &history).unwrap();
    let mut config = Config::default();
    config.lmtp.listen = vec!["127.0.0.1:0".parse().unwrap()];
    let daemon = Daemon::new(store, config.clone(), data);
    let listeners = spawn_listeners(daemon.clone(), &config).unwrap();
    Server { _dir: dir, daemon, listeners }
}

/// What the sync layer does, without the network: `to` gets the blobs, then
/// the events it misses from `from`, in causal order.
async fn sync_events(from: &Server, to: &Server) {
    let have = to.daemon.read(|s| s.version_vector()).await.unwrap();
    let events = from.daemon.read(move |s| s.events_missing(&have, usize::MAX)).await.unwrap();
    let blobs = roost_core::store::BlobStore::open_dir(&to.daemon.data_dir.join(roost_core::store::BLOB_DIR)).unwrap();
    for blob in events.iter().flat_map(|e| e.op.blobs()) {
        let raw = from.daemon.read(move |s| s.message(&blob)).await.unwrap();
        blobs.put(&raw).unwrap();
    }
    to.daemon
        .write(move |w| {
            for event in &events {
                w.apply_remote(event)?;
            }
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_over_lmtp_to_two_devices_is_stored_once_after_sync() {
    // Two MX hosts hand one message to two devices of alice. Each device
    // stores it with its own Received: line (different bytes), yet both
    // deliveries name one entry (keyed by the message as the MTA sent it):
    // after the devices exchange events, alice has the message once, on both.
    let a = start(false);
    let b = start_second_device(&a).await;
    for server in [&a, &b] {
        let mut c = tcp(server).await;
        c.cmd("LHLO mta").await;
        c.cmd("MAIL FROM:<s@example.org>").await;
        assert!(c.cmd("RCPT TO:<alice@example.org>").await.starts_with("250"));
        assert!(c.cmd("DATA").await.starts_with("354"));
        c.send(&format!("{MESSAGE}.\r\n")).await;
        let reply = c.reply().await;
        assert!(reply.starts_with("250 2.0.0"), "{reply}");
    }
    sync_events(&a, &b).await;
    sync_events(&b, &a).await;
    let on_a = messages(&a.daemon, "alice").await;
    let on_b = messages(&b.daemon, "alice").await;
    assert_eq!(on_a.len(), 1, "{on_a:?}");
    assert_eq!(on_a, on_b);
    assert!(on_a[0].1.contains("Subject: hi\r\n\r\nhello\r\n"), "{}", on_a[0].1);
    let digest_a = a.daemon.read(|s| s.state_digest()).await.unwrap();
    let digest_b = b.daemon.read(|s| s.state_digest()).await.unwrap();
    assert_eq!(digest_a, digest_b, "{:?}", digest_a.differences(&digest_b));
    for server in [&a, &b] {
        let report = server.daemon.read(|s| s.verify()).await.unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
}
