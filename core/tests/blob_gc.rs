//! Blob garbage collection (`core/src/store/gc.rs`): a blob goes only when no
//! live entry names it and every event naming it is acknowledged by every
//! paired device; a peer's event naming a collected blob is refused unless
//! the peer said it is gone, and then converges; a writer adding the same
//! bytes while GC runs keeps its blob.

use std::collections::HashSet;
use std::path::Path;

use roost_core::log::VersionVector;
use roost_core::model::{BlobHash, DeviceSlot, MailboxId, UserName};
use roost_core::store::peers::PeerStats;
use roost_core::store::{AppendMessage, Store, StoreError, BLOB_DIR};

const SECRET_A: [u8; 32] = [1; 32];
const SECRET_B: [u8; 32] = [2; 32];
const NOW: u64 = 1_700_000_000_000;

fn alice() -> UserName {
    UserName::new("alice").unwrap()
}

/// A store on disk with user alice (no key record: mail is stored in clear,
/// so the data dir can be searched for its bytes).
fn device(dir: &Path, secret: [u8; 32], slot: u8) -> (Store, MailboxId) {
    let mut store = Store::init(dir, secret, DeviceSlot::new(slot).unwrap(), NOW).unwrap();
    store.write(NOW, |w| w.add_user(&alice(), "not-a-real-hash")).unwrap();
    let inbox = store.mailbox_by_name(&alice(), "INBOX").unwrap().unwrap().id;
    (store, inbox)
}

fn append(store: &mut Store, mailbox: MailboxId, raw: &[u8]) -> BlobHash {
    store.write(NOW + 1, |w| w.append(mailbox, &[AppendMessage { raw, flags: vec![], internal_date: 1 }])).unwrap();
    let entries = store.entries(mailbox).unwrap();
    entries.last().expect("the append placed an entry").blob
}

fn expunge_all(store: &mut Store, mailbox: MailboxId) {
    let ids: Vec<_> = store.entries(mailbox).unwrap().iter().map(|e| e.entry_id).collect();
    store.write(NOW + 2, |w| w.expunge(mailbox, &ids)).unwrap();
}

/// Whether any file below `dir` contains `needle` (the blob store, the
/// database and its WAL).
fn data_dir_contains(dir: &Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}

fn assert_verified(store: &Store) {
    let report = store.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// Expunge then GC on an unpaired device: the blob file is gone, its bytes
/// are nowhere in the data dir, the report counts it, and `verify` holds.
#[test]
fn an_expunged_message_is_collected_and_its_bytes_leave_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, inbox) = device(dir.path(), SECRET_A, 0);
    let raw = b"Subject: gc\r\n\r\nsecret-marker-7f3a body\r\n";
    let blob = append(&mut store, inbox, raw);
    assert_eq!(store.collect_garbage().unwrap().blobs, 0, "a live entry's blob stays");
    assert!(data_dir_contains(dir.path(), b"secret-marker-7f3a"));
    expunge_all(&mut store, inbox);
    let report = store.collect_garbage().unwrap();
    assert_eq!((report.blobs, report.bytes), (1, raw.len() as u64));
    assert!(!store.blobs().contains(&blob));
    assert!(!data_dir_contains(dir.path().join(BLOB_DIR).as_path(), b"secret-marker-7f3a"));
    assert!(!data_dir_contains(dir.path(), b"secret-marker-7f3a"));
    assert_verified(&store);
    assert_eq!(store.collect_garbage().unwrap().blobs, 0, "a second run finds nothing");
}

/// The same bytes appended twice and copied share one blob: it stays while
/// any entry (any mailbox) names it and goes with the last.
#[test]
fn a_blob_another_entry_names_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, inbox) = device(dir.path(), SECRET_A, 0);
    let raw = b"Subject: twice\r\n\r\nbody\r\n";
    let blob = append(&mut store, inbox, raw);
    assert_eq!(append(&mut store, inbox, raw), blob, "content addressing shares the blob");
    let archive = store.write(NOW + 1, |w| w.create_mailbox(&alice(), "Kept", None)).unwrap().0;
    let first = store.entries(inbox).unwrap()[0].entry_id;
    store.write(NOW + 1, |w| w.copy(inbox, &[first], archive)).unwrap();
    let second = store.entries(inbox).unwrap()[1].entry_id;
    store.write(NOW + 2, |w| w.expunge(inbox, &[second])).unwrap();
    assert_eq!(store.collect_garbage().unwrap().blobs, 0);
    expunge_all(&mut store, inbox);
    assert_eq!(store.collect_garbage().unwrap().blobs, 0, "the copy in Archive names it");
    assert_eq!(store.message(&blob).unwrap(), raw);
    expunge_all(&mut store, archive);
    assert_eq!(store.collect_garbage().unwrap().blobs, 1);
    assert!(!store.blobs().contains(&blob));
    assert_verified(&store);
}

/// A paired peer that has not acknowledged the expunge (nor, first, the
/// append) could still ask for the blob: it stays until the peer has.
#[test]
fn a_blob_whose_expunge_a_paired_peer_has_not_acknowledged_stays_until_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, inbox) = device(dir.path(), SECRET_A, 0);
    let peer = Store::in_memory(SECRET_B, DeviceSlot::new(1).unwrap(), NOW).unwrap().identity().id();
    store.add_peer(peer, "peer", DeviceSlot::new(1).unwrap(), &[], NOW).unwrap();
    let blob = append(&mut store, inbox, b"Subject: acked\r\n\r\nbody\r\n");
    let appended = store.version_vector().unwrap();
    expunge_all(&mut store, inbox);
    let report = store.collect_garbage().unwrap();
    assert_eq!((report.blobs, report.kept_unstable), (0, 1), "nothing acknowledged yet");
    store.record_peer_stats(peer, &PeerStats { acked: appended, ..Default::default() }).unwrap();
    let report = store.collect_garbage().unwrap();
    assert_eq!((report.blobs, report.kept_unstable), (0, 1), "the expunge is not acknowledged");
    assert!(store.blobs().contains(&blob));
    let all = store.version_vector().unwrap();
    store.record_peer_stats(peer, &PeerStats { acked: all, ..Default::default() }).unwrap();
    let report = store.collect_garbage().unwrap();
    assert_eq!((report.blobs, report.kept_unstable), (1, 0));
    assert!(!store.blobs().contains(&blob));
}

/// The same bytes removed, added again and removed again: GC waits for the
/// peer to acknowledge the *second* removal, though it had found the blob
/// orphaned after the first (whose record the re-add drops).
#[test]
fn a_blob_removed_again_after_a_re_add_waits_for_the_second_removal() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, inbox) = device(dir.path(), SECRET_A, 0);
    let peer = Store::in_memory(SECRET_B, DeviceSlot::new(1).unwrap(), NOW).unwrap().identity().id();
    store.add_peer(peer, "peer", DeviceSlot::new(1).unwrap(), &[], NOW).unwrap();
    let raw = b"Subject: again\r\n\r\nbody\r\n";
    append(&mut store, inbox, raw);
    expunge_all(&mut store, inbox);
    assert_eq!(store.collect_garbage().unwrap().kept_unstable, 1, "orphaned, recorded, kept");
    let blob = append(&mut store, inbox, raw);
    let re_added = store.version_vector().unwrap();
    expunge_all(&mut store, inbox);
    store.record_peer_stats(peer, &PeerStats { acked: re_added, ..Default::default() }).unwrap();
    let report = store.collect_garbage().unwrap();
    assert_eq!((report.blobs, report.kept_unstable), (0, 1), "the second expunge is not acknowledged");
    let all = store.version_vector().unwrap();
    store.record_peer_stats(peer, &PeerStats { acked: all, ..Default::default() }).unwrap();
    assert_eq!(store.collect_garbage().unwrap().blobs, 1);
    assert!(!store.blobs().contains(&blob));
}

/// A device that gets the log after the origin collected a blob (paired
/// later): the append naming it is refused while the blob is neither here
/// nor said to be gone (nothing applied), and with the peer's "gone" the
/// whole log applies and converges: same digest, no live entry without its
/// blob, `verify` clean. The origin reports the blob as collected.
#[test]
fn a_device_that_lacks_a_collected_blob_converges_when_the_peer_says_it_is_gone() {
    let root = tempfile::tempdir().unwrap();
    let (mut a, inbox) = device(&root.path().join("a"), SECRET_A, 0);
    let blob = append(&mut a, inbox, b"Subject: gone\r\n\r\nbody\r\n");
    let kept = append(&mut a, inbox, b"Subject: kept\r\n\r\nbody\r\n");
    let first = a.entries(inbox).unwrap()[0].entry_id;
    a.write(NOW + 2, |w| w.expunge(inbox, &[first])).unwrap();
    assert!(!a.blob_collected(&blob).unwrap());
    assert_eq!(a.collect_garbage().unwrap().blobs, 1);
    assert!(a.blob_collected(&blob).unwrap());
    assert!(!a.blob_collected(&kept).unwrap());

    // A fresh device: no history of its own.
    let mut b = Store::init(&root.path().join("b"), SECRET_B, DeviceSlot::new(1).unwrap(), NOW).unwrap();
    let events = a.events_missing(&b.version_vector().unwrap(), 1000).unwrap();
    b.blobs().put(&a.message(&kept).unwrap()).unwrap();
    let err = b.ingest(NOW + 3, &events).unwrap_err();
    assert!(matches!(err, StoreError::EventBlobMissing { .. }), "{err}");
    assert_eq!(b.version_vector().unwrap().get(&a.identity().id()), 0, "nothing of the batch applied");
    let gone: HashSet<BlobHash> = [blob].into();
    b.ingest_from_peer(NOW + 4, &events, &[], &gone).unwrap();
    assert_eq!(
        b.version_vector().unwrap().get(&a.identity().id()),
        a.version_vector().unwrap().get(&a.identity().id())
    );
    b.write(NOW + 5, |_| Ok(())).unwrap();
    assert_eq!(a.state_digest().unwrap().combined(), b.state_digest().unwrap().combined());
    assert_verified(&b);
    assert_eq!(b.collect_garbage().unwrap().blobs, 0, "nothing to remove: it never came");
}

/// A blob the log snapshot's image shows in a live entry stays (a device
/// paired later installs that image and fetches its entries' blobs) until a
/// compaction folds its expunge.
#[test]
fn a_blob_the_log_snapshot_still_shows_stays_until_the_expunge_is_folded() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, inbox) = device(dir.path(), SECRET_A, 0);
    let blob = append(&mut store, inbox, b"Subject: folded\r\n\r\nbody\r\n");
    store.compact(NOW + 3).unwrap();
    expunge_all(&mut store, inbox);
    let report = store.collect_garbage().unwrap();
    assert_eq!((report.blobs, report.kept_unstable), (0, 1));
    let offer = store.snapshot_offer().unwrap().expect("a snapshot");
    let received = roost_core::store::ReceivedSnapshot::check(offer.0, &offer.1).unwrap();
    assert_eq!(received.blobs().unwrap(), vec![blob], "the image names it");
    store.compact(NOW + 4).unwrap();
    assert_eq!(store.collect_garbage().unwrap().blobs, 1);
    assert_verified(&store);
}

/// GC in one connection while another appends and expunges the same bytes
/// over and over (`roost gc` beside a running daemon; in the daemon both
/// also share one lock): every append commits with its blob stored, so the
/// message reads back after each, and the last one survives a final GC.
#[test]
fn a_concurrent_append_of_the_same_bytes_keeps_its_blob() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, inbox) = device(dir.path(), SECRET_A, 0);
    let raw: &[u8] = b"Subject: raced\r\n\r\nthe same bytes again and again\r\n";
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (dir, stop) = (dir.path().to_path_buf(), stop.clone());
        std::thread::spawn(move || {
            let mut gc = Store::open(&dir, SECRET_A).unwrap();
            let mut freed = 0;
            // Bounded by the writer's rounds below.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                freed += gc.collect_garbage().unwrap().blobs;
            }
            freed
        })
    };
    for _ in 0..40 {
        let blob = append(&mut writer, inbox, raw);
        assert_eq!(writer.message(&blob).unwrap(), raw, "an acknowledged append lost its blob");
        expunge_all(&mut writer, inbox);
        // A window in which the blob is unreferenced, for GC to take.
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let blob = append(&mut writer, inbox, raw);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let freed = collector.join().unwrap();
    assert!(0 < freed, "GC never ran between the appends");
    assert_eq!(writer.collect_garbage().unwrap().blobs, 0);
    assert_eq!(writer.message(&blob).unwrap(), raw);
    assert_verified(&writer);
}

/// A peer's blob made durable before its ingest (found "already there"),
/// then collected before the ingest: the ingest refuses the event rather
/// than commit an entry without its blob; fetched again, it applies.
#[test]
fn a_peer_blob_collected_between_its_fetch_and_its_ingest_is_refused_then_refetched() {
    let root = tempfile::tempdir().unwrap();
    let (mut a, a_inbox) = device(&root.path().join("a"), SECRET_A, 0);
    let (mut b, b_inbox) = device(&root.path().join("b"), SECRET_B, 1);
    let raw = b"Subject: both\r\n\r\nbody\r\n";
    append(&mut b, b_inbox, raw);
    expunge_all(&mut b, b_inbox);
    append(&mut a, a_inbox, raw);
    let mut have = VersionVector::new();
    have.merge(&b.version_vector().unwrap());
    let events = a.events_missing(&have, 1000).unwrap();
    // The sync session would find the blob here and skip fetching it.
    let blob = BlobHash::of(raw);
    assert!(b.blobs().contains(&blob));
    assert_eq!(b.collect_garbage().unwrap().blobs, 1);
    let err = b.ingest(NOW + 3, &events).unwrap_err();
    assert!(matches!(err, StoreError::EventBlobMissing { .. }), "{err}");
    b.blobs().put(raw).unwrap();
    b.ingest(NOW + 4, &events).unwrap();
    assert_eq!(b.message(&blob).unwrap(), raw);
    assert_verified(&b);
}

/// Sealed mail (users with a key record): an expunged message's blob goes
/// with its sealed-blob index row (the same content appended again is
/// sealed anew), and a removed user's mail goes too.
#[test]
fn sealed_mail_of_an_expunge_and_of_a_removed_user_is_collected_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::init(dir.path(), SECRET_A, DeviceSlot::new(0).unwrap(), NOW).unwrap();
    let bob = UserName::new("bob").unwrap();
    for user in [&alice(), &bob] {
        let (keys, _) = roost_core::crypto::UserKeys::generate("a passphrase", &mut rand::rngs::OsRng);
        store
            .write(NOW, |w| {
                w.add_user(user, "not-a-real-hash")?;
                w.set_user_keys(user, "not-a-real-hash", &keys)
            })
            .unwrap();
    }
    let alice_inbox = store.mailbox_by_name(&alice(), "INBOX").unwrap().unwrap().id;
    let bob_inbox = store.mailbox_by_name(&bob, "INBOX").unwrap().unwrap().id;
    let raw = b"Subject: sealed\r\n\r\nbody\r\n";
    let sealed = append(&mut store, alice_inbox, raw);
    let bobs = append(&mut store, bob_inbox, raw);
    assert_ne!(sealed, bobs, "no dedup across users");
    let index_rows = |blob: &BlobHash| -> i64 {
        let db = rusqlite::Connection::open(dir.path().join(roost_core::store::DB_FILE)).unwrap();
        db.query_row("SELECT COUNT(*) FROM sealed_blobs WHERE blob = ?1", [blob.as_bytes().as_slice()], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(index_rows(&sealed), 1);
    expunge_all(&mut store, alice_inbox);
    store.write(NOW + 3, |w| w.remove_user(&bob)).unwrap();
    let report = store.collect_garbage().unwrap();
    assert_eq!(report.blobs, 2);
    assert!(!store.blobs().contains(&sealed) && !store.blobs().contains(&bobs));
    assert_eq!(index_rows(&sealed), 0);
    let again = append(&mut store, alice_inbox, raw);
    assert_ne!(again, sealed, "sealed anew, not pointed at the collected blob");
    assert_verified(&store);
}

/// Figures for docs/benchmarks.md ("Blob garbage collection"): 20,000
/// messages appended and expunged, then the first GC run (removes them all,
/// in transactions of 512), a second run with nothing to do, and a run with
/// 20,000 live messages beside that history.
#[test]
#[ignore = "figures: run with --ignored --nocapture in release"]
fn blob_gc_figures() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, inbox) = device(dir.path(), SECRET_A, 0);
    let messages = 20_000;
    let append_all = |store: &mut Store, prefix: &str| {
        let raws: Vec<Vec<u8>> =
            (0..messages).map(|i| format!("Subject: {prefix} {i}\r\n\r\nbody {i}\r\n").into_bytes()).collect();
        for chunk in raws.chunks(1000) {
            let batch: Vec<AppendMessage> =
                chunk.iter().map(|raw| AppendMessage { raw, flags: vec![], internal_date: 1 }).collect();
            store.write(NOW + 1, |w| w.append(inbox, &batch)).unwrap();
        }
    };
    append_all(&mut store, "expunged");
    let ids: Vec<_> = store.entries(inbox).unwrap().iter().map(|e| e.entry_id).collect();
    for chunk in ids.chunks(1000) {
        store.write(NOW + 2, |w| w.expunge(inbox, chunk)).unwrap();
    }
    for what in ["first run", "nothing to do"] {
        let started = std::time::Instant::now();
        let report = store.collect_garbage().unwrap();
        println!("{what}: {report:?} in {:?}", started.elapsed());
    }
    append_all(&mut store, "live");
    let started = std::time::Instant::now();
    let report = store.collect_garbage().unwrap();
    println!("20,000 live beside 20,000 collected: {report:?} in {:?}", started.elapsed());
}
