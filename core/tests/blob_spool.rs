//! The blob spool (`core/src/store/spool.rs`): small blobs from a peer commit
//! with their events in one transaction, are readable from the spool until
//! moved, survive a reopen (a crash before the move), and leave the spool
//! only once the blob store holds them.

use std::path::Path;

use roost_core::log::Event;
use roost_core::model::{BlobHash, DeviceSlot, UserName};
use roost_core::store::{AppendMessage, BlobStore, SpooledBlob, Store, StoreError, BLOB_DIR};

const SECRET_A: [u8; 32] = [1; 32];
const SECRET_B: [u8; 32] = [2; 32];
const NOW: u64 = 1_700_000_000_000;

fn alice() -> UserName {
    UserName::new("alice").unwrap()
}

/// Device A with one message in INBOX; returns its events and the blob.
fn origin(dir: &Path) -> (Vec<Event>, BlobHash, Vec<u8>) {
    let mut a = Store::init(dir, SECRET_A, DeviceSlot::new(0).unwrap(), NOW).unwrap();
    a.write(NOW, |w| w.add_user(&alice(), "not-a-real-hash")).unwrap();
    let raw = b"Subject: spooled\r\n\r\nbody\r\n".to_vec();
    a.write(NOW + 1, |w| {
        let inbox = w.mailbox(&alice(), "INBOX")?;
        w.append(inbox, &[AppendMessage { raw: &raw, flags: vec![], internal_date: 1 }])
    })
    .unwrap();
    let events = a.events_missing(&Default::default(), 100).unwrap();
    let blob = events.iter().flat_map(|e| e.op.blobs()).next().expect("the append names a blob");
    let data = a.message(&blob).unwrap();
    (events, blob, data)
}

#[test]
fn a_spooled_blob_commits_with_its_events_and_moves_to_the_blob_store() {
    let root = tempfile::tempdir().unwrap();
    let (events, blob, data) = origin(&root.path().join("a"));
    let b_dir = root.path().join("b");
    let mut b = Store::init(&b_dir, SECRET_B, DeviceSlot::new(1).unwrap(), NOW).unwrap();
    let (report, _) = b.ingest_spooled(NOW + 2, &events, &[SpooledBlob { hash: blob, data: data.clone() }]).unwrap();
    assert_eq!(report.applied, events.len() as u64);
    assert!(!b.blobs().contains(&blob), "a spooled blob is not written as a file at ingest");
    assert_eq!(b.spooled_blob(&blob).unwrap().as_deref(), Some(data.as_slice()));
    assert_eq!(b.message(&blob).unwrap(), data);
    assert!(b.verify().unwrap().problems.is_empty(), "{:?}", b.verify().unwrap().problems);

    // A crash before the move: the commit made the rows durable.
    drop(b);
    let mut b = Store::open(&b_dir, SECRET_B).unwrap();
    assert_eq!(b.message(&blob).unwrap(), data);

    // Unspooling a blob the blob store lacks keeps its row.
    assert_eq!(b.unspool(&[blob]).unwrap(), 0);
    assert!(b.spooled_blob(&blob).unwrap().is_some());

    // The move: durable in the blob store first, then the row goes.
    let spooled = b.spooled_blobs(10).unwrap();
    assert_eq!(spooled.len(), 1);
    BlobStore::open_dir(&b_dir.join(BLOB_DIR)).unwrap().put_all(&[spooled[0].data.as_slice()]).unwrap();
    assert_eq!(b.unspool(&[blob]).unwrap(), 1);
    assert!(b.spooled_blob(&blob).unwrap().is_none());
    assert!(b.blobs().contains(&blob));
    assert_eq!(b.message(&blob).unwrap(), data);
    assert!(b.verify().unwrap().problems.is_empty());
}

#[test]
fn a_spooled_blob_that_does_not_match_its_hash_stores_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (events, blob, _) = origin(&root.path().join("a"));
    let mut b = Store::init(&root.path().join("b"), SECRET_B, DeviceSlot::new(1).unwrap(), NOW).unwrap();
    let before = b.version_vector().unwrap();
    let forged = SpooledBlob { hash: blob, data: b"something else".to_vec() };
    let err = b.ingest_spooled(NOW + 2, &events, &[forged]).unwrap_err();
    assert!(matches!(err, StoreError::Blob(_)), "{err}");
    assert_eq!(b.version_vector().unwrap(), before);
    assert!(b.spooled_blob(&blob).unwrap().is_none());
}
