//! A paired but misbehaving peer, speaking the sync protocol by hand: wrong
//! protocol version, an oversized frame, a malformed frame, an event with a
//! forged signature, a blob whose bytes do not match its hash, an age file
//! that cannot be the message sealed in place under its name, a damaged
//! snapshot. Each time the daemon closes the connection with a logged
//! reason, stores nothing, and keeps serving.

use std::path::Path;
use std::time::{Duration, Instant};

use iroh::endpoint::presets;
use iroh::{Endpoint, EndpointAddr, SecretKey, TransportAddr};
use tokio::io::AsyncWriteExt;

use roost::sync::frames::{read_frame, write_frame};
use roost::sync::messages::{Message, WireEvent};
use roost::sync::SYNC_ALPN;
use roost_core::log::VersionVector;
use roost_core::model::{DeviceId, DeviceSlot, UserName};
use roost_core::store::{AppendMessage, Store};
use support::{Listen, Serve as Daemon};

mod support;

const MALLORY: [u8; 32] = [42; 32];

fn start(dir: &Path) -> Daemon {
    support::init(dir);
    Daemon::start(dir, None, Listen::default())
}

async fn wait_log(daemon: &Daemon, needle: &str) {
    wait_log_more(daemon, needle, 0).await
}

/// Waits until the daemon's log holds `needle` more than `before` times (a
/// line may reach the log reader after the connection closed).
async fn wait_log_more(daemon: &Daemon, needle: &str, before: usize) {
    let started = Instant::now();
    while daemon.log().matches(needle).count() <= before {
        assert!(started.elapsed() < Duration::from_secs(60), "log never said {needle:?} again: {}", daemon.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Mallory {
    endpoint: Endpoint,
    target: EndpointAddr,
}

impl Mallory {
    async fn new(dir: &Path) -> Mallory {
        let endpoint = Endpoint::builder(presets::Minimal)
            .secret_key(SecretKey::from_bytes(&MALLORY))
            .alpns(vec![SYNC_ALPN.to_vec()])
            .clear_ip_transports()
            .bind_addr("127.0.0.1:0")
            .unwrap()
            .bind()
            .await
            .unwrap();
        let secret = roost::device::load_key(dir).unwrap();
        let store = Store::open(dir, secret).unwrap();
        let id = iroh::PublicKey::from_bytes(store.identity().id().as_bytes()).unwrap();
        let addrs = roost::sync::read_addrs_file(dir).unwrap();
        // The daemon trusts Mallory: paired, then misbehaving.
        let mallory_id = DeviceId::from_bytes(*endpoint.id().as_bytes());
        store.add_peer(mallory_id, "mallory", DeviceSlot::new(5).unwrap(), &[], 1).unwrap();
        Mallory { endpoint, target: EndpointAddr { id, addrs: addrs.into_iter().map(TransportAddr::Ip).collect() } }
    }

    async fn session(&self) -> (iroh::endpoint::Connection, iroh::endpoint::SendStream, iroh::endpoint::RecvStream) {
        let conn = self.endpoint.connect(self.target.clone(), SYNC_ALPN).await.unwrap();
        let (send, recv) = conn.open_bi().await.unwrap();
        (conn, send, recv)
    }

    async fn hello(&self) -> (iroh::endpoint::Connection, iroh::endpoint::SendStream, iroh::endpoint::RecvStream) {
        let (conn, mut send, mut recv) = self.session().await;
        let hello = Message::Hello { version: 1, vv: VersionVector::new(), addrs: vec![], refused_snapshot: None };
        write_frame(&mut send, &hello).await.unwrap();
        let (answer, _) = read_frame::<_, Message>(&mut recv).await.unwrap().unwrap();
        assert!(matches!(answer, Message::Hello { version: 1, .. }));
        (conn, send, recv)
    }
}

fn events_count(dir: &Path) -> u64 {
    let store = Store::open(dir, roost::device::load_key(dir).unwrap()).unwrap();
    store.stats().unwrap().events
}

/// Events of a real device (Mallory's own in-memory store): a user and a message.
fn mallory_events() -> Vec<roost_core::log::Event> {
    let mut store = Store::in_memory(MALLORY, DeviceSlot::new(5).unwrap(), 1).unwrap();
    let user = UserName::new("mallory").unwrap();
    store.write(1, |w| w.add_user(&user, "hash")).unwrap();
    store
        .write(2, |w| {
            let inbox = w.mailbox(&user, "INBOX")?;
            w.append(inbox, &[AppendMessage { raw: b"Subject: x\r\n\r\nhi\r\n", flags: vec![], internal_date: 1 }])
        })
        .unwrap();
    store.events_missing(&VersionVector::new(), 1000).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_peer_is_cut_off_and_nothing_is_stored() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a");
    let daemon = start(&dir);
    let mallory = Mallory::new(&dir).await;
    let events_before = events_count(&dir);

    // Wrong protocol version.
    let (conn, mut send, _recv) = mallory.session().await;
    write_frame(
        &mut send,
        &Message::Hello { version: 99, vv: VersionVector::new(), addrs: vec![], refused_snapshot: None },
    )
    .await
    .unwrap();
    wait_log(&daemon, "sync protocol version 99").await;
    conn.closed().await;

    // A frame announcing 4 GiB.
    let (conn, mut send, _recv) = mallory.hello().await;
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    wait_log(&daemon, "above the").await;
    conn.closed().await;

    // A frame that is not a message.
    let (conn, mut send, _recv) = mallory.hello().await;
    send.write_all(&5u32.to_be_bytes()).await.unwrap();
    send.write_all(b"hello").await.unwrap();
    wait_log(&daemon, "malformed frame").await;
    conn.closed().await;

    // An event whose signature does not verify (payload changed after signing).
    let events = mallory_events();
    let mut forged = WireEvent::from_event(&events[0]);
    forged.payload = forged.payload.replace("mallory", "alice");
    let (conn, mut send, _recv) = mallory.hello().await;
    write_frame(&mut send, &Message::Events { events: vec![forged], blobs: vec![] }).await.unwrap();
    wait_log(&daemon, "bad signature").await;
    conn.closed().await;

    // A message whose blob bytes do not match the hash its event names.
    let wrong = b"Subject: not what was signed\r\n\r\n";
    let conn = send_message_blob_as(&mallory, wrong, false).await;
    wait_log(&daemon, "does not match its hash").await;
    conn.closed().await;

    // The same lie in an inline blob.
    let before = daemon.log().matches("does not match its hash").count();
    send_message_blob_as(&mallory, wrong, true).await.closed().await;
    wait_log_more(&daemon, "does not match its hash", before).await;

    assert_eq!(events_count(&dir), events_before, "nothing of a bad session may be stored");
    // The daemon keeps serving: a well-behaved session still gets its Hello.
    let (conn, _send, _recv) = mallory.hello().await;
    conn.close(0u32.into(), b"done");
}

/// Sends Mallory's events with `bytes` for their message's blob, inline or
/// over a blob stream; returns the session's connection.
async fn send_message_blob_as(mallory: &Mallory, bytes: &[u8], inline: bool) -> iroh::endpoint::Connection {
    let events = mallory_events();
    let hash = events.iter().flat_map(|e| e.op.blobs()).next().unwrap();
    let wire: Vec<WireEvent> = events.iter().map(WireEvent::from_event).collect();
    let (conn, mut send, _recv) = mallory.hello().await;
    let blobs = match inline {
        true => vec![roost::sync::messages::InlineBlob { hash, data: data_encoding::BASE64.encode(bytes) }],
        false => vec![],
    };
    write_frame(&mut send, &Message::Events { events: wire, blobs }).await.unwrap();
    if !inline {
        let (mut blob_send, mut blob_recv) = conn.accept_bi().await.unwrap();
        let _request: Option<(roost::sync::messages::BlobRequest, usize)> = read_frame(&mut blob_recv).await.unwrap();
        blob_send.write_u64(bytes.len() as u64).await.unwrap();
        blob_send.write_all(bytes).await.unwrap();
        let _ = blob_send.finish();
    }
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_age_file_that_cannot_be_the_named_message_is_refused_at_receipt() {
    // Mail sealed in place keeps its plaintext's name, so an age file is let
    // through under a name its bytes do not hash to; until now any age file
    // was, caught only when opened. What is checkable without the user's key
    // is checked at receipt: a well-formed age header, a payload length age
    // can produce, and the plaintext size the events name for the message
    // (18 bytes here). Each case is refused, inline and fetched alike,
    // nothing is stored, and the daemon keeps serving.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a");
    let daemon = start(&dir);
    let mallory = Mallory::new(&dir).await;
    let events_before = events_count(&dir);
    let (keys, _) = roost_core::crypto::UserKeys::generate("mallory's passphrase", &mut rand::rngs::OsRng);
    let sealer = keys.sealer("mallory").unwrap();
    let other_size = sealer.seal(b"Subject: not the 18 bytes named\r\n\r\n").unwrap();
    let mut bad_header = roost_core::crypto::AGE_MAGIC.to_vec();
    bad_header.extend_from_slice(b"not a stanza\n--- short\n0123456789abcdef0123456789abcdef");
    let mut cut_tag = sealer.seal(b"").unwrap();
    cut_tag.truncate(cut_tag.len() - 1);
    let cases: [(&str, &[u8], &str); 3] = [
        ("an age file of another size", &other_size, "its events name a message of 18 bytes"),
        ("a malformed age header", &bad_header, "header"),
        ("a payload age cannot produce", &cut_tag, "payload"),
    ];
    for (what, bytes, needle) in cases {
        for inline in [true, false] {
            let before = daemon.log().matches(needle).count();
            let conn = send_message_blob_as(&mallory, bytes, inline).await;
            // Bounded: a daemon that accepts the blob keeps the session open.
            let _ = tokio::time::timeout(Duration::from_secs(30), conn.closed()).await;
            eprintln!("{what}, inline {inline}: waiting for the refusal");
            wait_log_more(&daemon, needle, before).await;
        }
    }
    assert_eq!(events_count(&dir), events_before, "nothing of a bad session may be stored");
    let hash = mallory_events().iter().flat_map(|e| e.op.blobs()).next().unwrap();
    let blob_dir = roost_core::store::BlobStore::open_dir(&dir.join(roost_core::store::BLOB_DIR)).unwrap();
    assert!(!blob_dir.contains(&hash), "a refused blob was stored");

    // The message's real bytes still go through.
    let conn = send_message_blob_as(&mallory, b"Subject: x\r\n\r\nhi\r\n", true).await;
    let started = Instant::now();
    while events_count(&dir) == events_before {
        assert!(started.elapsed() < Duration::from_secs(30), "the real message was not stored: {}", daemon.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conn.close(0u32.into(), b"done");
}

/// Mallory's log snapshot: a user and a message, folded.
fn mallory_snapshot() -> (roost_core::store::SnapshotOffer, Vec<u8>) {
    let mut store = Store::in_memory(MALLORY, DeviceSlot::new(5).unwrap(), 1).unwrap();
    let user = UserName::new("mallory").unwrap();
    store.write(1, |w| w.add_user(&user, "hash")).unwrap();
    let all = store.version_vector().unwrap();
    store.compact_within(2, &all).unwrap();
    store.snapshot_offer().unwrap().unwrap()
}

/// Sends a snapshot offer and `image` in chunks, then ends the stream.
async fn offer_snapshot(mallory: &Mallory, offer: roost_core::store::SnapshotOffer, image: &[u8]) {
    let (conn, mut send, _recv) = mallory.hello().await;
    roost::sync::snapshot::send(&mut send, offer, image).await.unwrap();
    let _ = send.finish();
    conn.closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_from_a_peer_is_refused_and_nothing_is_installed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a");
    let daemon = start(&dir);
    let mallory = Mallory::new(&dir).await;
    let (offer, image) = mallory_snapshot();
    let installed = || {
        let store = Store::open(&dir, roost::device::load_key(&dir).unwrap()).unwrap();
        (store.snapshot_vector().unwrap().total(), store.version_vector().unwrap().total())
    };

    // A flipped byte: the image does not match the offered hash.
    let mut flipped = image.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    offer_snapshot(&mallory, offer.clone(), &flipped).await;
    wait_log(&daemon, "damaged in transit").await;

    // Truncated: the stream ends before the offered bytes.
    offer_snapshot(&mallory, offer.clone(), &image[..image.len() / 2]).await;
    wait_log(&daemon, "snapshot bytes").await;

    // An intact image whose stated digest is not its state's.
    let mut lying = offer.clone();
    lying.digest = "00".repeat(32);
    offer_snapshot(&mallory, lying, &image).await;
    wait_log(&daemon, "state digest").await;

    // Announced above the limit: refused before any byte.
    let mut huge = offer.clone();
    huge.bytes = roost_core::store::SNAPSHOT_BYTES_MAX + 1;
    offer_snapshot(&mallory, huge, &[]).await;
    wait_log(&daemon, "-byte limit").await;

    assert_eq!(installed(), (0, 0), "nothing of a bad snapshot may be installed");
    let (conn, _send, _recv) = mallory.hello().await;
    conn.close(0u32.into(), b"done");
}
