//! A paired but misbehaving peer, speaking the sync protocol by hand: wrong
//! protocol version, an oversized frame, a malformed frame, an event with a
//! forged signature, a blob whose bytes do not match its hash. Each time the
//! daemon closes the connection with a logged reason, stores nothing, and
//! keeps serving.

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
    let started = Instant::now();
    while !daemon.log().contains(needle) {
        assert!(started.elapsed() < Duration::from_secs(60), "log never said {needle:?}: {}", daemon.log());
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
    let (conn, mut send, _recv) = mallory.hello().await;
    let wire: Vec<WireEvent> = events.iter().map(WireEvent::from_event).collect();
    write_frame(&mut send, &Message::Events { events: wire, blobs: vec![] }).await.unwrap();
    let (mut blob_send, mut blob_recv) = conn.accept_bi().await.unwrap();
    let _request: Option<(roost::sync::messages::BlobRequest, usize)> = read_frame(&mut blob_recv).await.unwrap();
    let wrong = b"Subject: not what was signed\r\n\r\n";
    blob_send.write_u64(wrong.len() as u64).await.unwrap();
    blob_send.write_all(wrong).await.unwrap();
    let _ = blob_send.finish();
    wait_log(&daemon, "does not match its hash").await;
    conn.closed().await;

    // The same lie in an inline blob.
    let before = daemon.log().matches("does not match its hash").count();
    let (conn, mut send, _recv) = mallory.hello().await;
    let wire: Vec<WireEvent> = events.iter().map(WireEvent::from_event).collect();
    let hash = events.iter().flat_map(|e| e.op.blobs()).next().unwrap();
    let blobs = vec![roost::sync::messages::InlineBlob { hash, data: data_encoding::BASE64.encode(wrong) }];
    write_frame(&mut send, &Message::Events { events: wire, blobs }).await.unwrap();
    conn.closed().await;
    // The log line may reach the reader thread after the connection closed.
    let started = Instant::now();
    while daemon.log().matches("does not match its hash").count() <= before {
        assert!(started.elapsed() < Duration::from_secs(30), "the inline blob's bad hash was never logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(events_count(&dir), events_before, "nothing of a bad session may be stored");
    // The daemon keeps serving: a well-behaved session still gets its Hello.
    let (conn, _send, _recv) = mallory.hello().await;
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
