//! Snapshot transfer (issue 6): a device paired after its peers compacted
//! installs a peer's log snapshot, catches up on the events above it, and
//! converges; its own later writes replicate back. A damaged or mismatched
//! image is refused before anything is written, and a device with history
//! the snapshot lacks refuses to install it.

mod merge_support;

use merge_support::{alice, Cluster};
use roost_core::model::{DeviceSlot, Flag};
use roost_core::store::{FlagChange, ReceivedSnapshot, SnapshotOffer, Store, StoreError, StoreMode};

/// Two devices with mail, flags, an expunge and a deleted mailbox, all of it
/// folded on both; then more mail on device 0 above the snapshot.
fn compacted_pair() -> Cluster {
    let mut c = Cluster::new(2);
    for i in 0..4 {
        c.append(i % 2, "INBOX", &format!("m{i}"), vec![]);
    }
    c.write(1, |w| w.create_mailbox(&alice(), "Old", None));
    c.sync_all();
    c.append(1, "Old", "in old", vec![Flag::seen()]);
    c.sync_all();
    let inbox = c.mailbox(0, "INBOX").id;
    let entries = c.entries(0, "INBOX");
    let change = FlagChange { mode: StoreMode::Add, flags: vec![Flag::flagged()] };
    c.write(0, |w| w.store_flags(inbox, &[entries[0].entry_id], &change));
    c.write(1, |w| w.expunge(inbox, &[entries[1].entry_id]));
    c.sync_all();
    c.write(0, |w| w.delete_mailbox(&alice(), "Old"));
    c.sync_all();
    let all = c.devices[0].version_vector().unwrap();
    for d in 0..2 {
        let report = c.devices[d].compact_within(c.now, &all).unwrap();
        assert!(report.folded > 0);
    }
    c.append(0, "INBOX", "after the snapshot", vec![]);
    c.sync_all();
    c
}

fn fresh_device() -> Store {
    Store::in_memory([42; 32], DeviceSlot::new(2).unwrap(), merge_support::START_MS).unwrap()
}

fn offer_of(store: &Store) -> (SnapshotOffer, Vec<u8>) {
    store.snapshot_offer().unwrap().expect("the device has a log snapshot")
}

/// Copies the blobs a checked snapshot names from `from` into `to`.
fn copy_blobs(from: &Store, to: &Store, snapshot: &ReceivedSnapshot) {
    for blob in snapshot.blobs().unwrap() {
        to.blobs().put_named(&blob, &from.message(&blob).unwrap()).unwrap();
    }
}

#[test]
fn a_device_paired_after_compaction_installs_the_snapshot_and_catches_up() {
    let mut c = compacted_pair();
    let mut fresh = fresh_device();
    assert!(matches!(
        c.devices[0].events_missing(&fresh.version_vector().unwrap(), 100),
        Err(StoreError::SnapshotNeeded { .. })
    ));
    let (offer, image) = offer_of(&c.devices[0]);
    assert_eq!(offer.vector, c.devices[0].snapshot_vector().unwrap());
    fresh.snapshot_installable(&offer.vector).unwrap();
    let snapshot = ReceivedSnapshot::check(offer.clone(), &image).unwrap();
    copy_blobs(&c.devices[0], &fresh, &snapshot);
    let effects = fresh.install_snapshot(snapshot, c.now + 1).unwrap();
    assert!(!effects.mailboxes.is_empty());
    assert_eq!(fresh.version_vector().unwrap(), offer.vector);
    assert_eq!(fresh.snapshot_vector().unwrap(), offer.vector);
    assert_eq!(fresh.identity().slot(), DeviceSlot::new(2).unwrap(), "the device keeps its own slot");
    let report = fresh.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    c.devices.push(fresh);

    // The events above the snapshot stream as usual, then everyone converges.
    c.sync(0, 2);
    c.sync_all();
    c.assert_converged();
    assert_eq!(c.entries(2, "INBOX").len(), 4, "three old messages (one expunged) and the one after the snapshot");
    assert!(!c.names(2).contains(&"Old".to_string()), "the deleted mailbox stays deleted");
    let flagged = c.entries(2, "INBOX").iter().filter(|e| e.flags.contains(&Flag::flagged())).count();
    assert_eq!(flagged, 1);

    // The new device's own writes replicate back, above its own slot.
    c.append(2, "INBOX", "from the new device", vec![]);
    c.write(2, |w| w.create_mailbox(&alice(), "New", None));
    c.sync_all();
    c.assert_converged();
    assert_eq!(c.entries(0, "INBOX").len(), 5);
    assert!(c.names(0).contains(&"New".to_string()));

    // It compacts on top of the installed snapshot and stays sound.
    let all = c.devices[2].version_vector().unwrap();
    c.devices[2].compact_within(c.now, &all).unwrap();
    c.assert_converged();
}

#[test]
fn a_damaged_or_mismatched_snapshot_is_refused_and_nothing_is_installed() {
    let c = compacted_pair();
    let fresh = fresh_device();
    let before = fresh.state_digest().unwrap();
    let (offer, image) = offer_of(&c.devices[0]);

    let mut flipped = image.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    let truncated = &image[..image.len() - 100];
    let mut wrong_digest = offer.clone();
    wrong_digest.digest = "00".repeat(32);
    let mut wrong_vector = offer.clone();
    wrong_vector.vector.set(fresh.identity().id(), 3);
    // Every page damaged (one flipped byte may land in a free page, which
    // nothing reads), under a hash that matches it.
    let mut garbage = image.clone();
    garbage[100..].iter_mut().for_each(|b| *b ^= 0x55);
    let mut garbage_offer = offer.clone();
    garbage_offer.image_hash = blake3::hash(&garbage).to_hex().to_string();
    let cases: Vec<(&str, SnapshotOffer, &[u8], &str)> = vec![
        ("a flipped byte", offer.clone(), &flipped, "hash"),
        ("a truncated image", offer.clone(), truncated, "bytes"),
        ("a wrong digest", wrong_digest, &image, "digest"),
        ("a wrong vector", wrong_vector, &image, "vector"),
        ("garbage under a matching hash", garbage_offer, &garbage, ""),
    ];
    for (what, offer, bytes, needle) in cases {
        match ReceivedSnapshot::check(offer, bytes) {
            Err(StoreError::Snapshot(reason)) => {
                eprintln!("{what}: {reason}");
                assert!(reason.contains(needle), "{what}: {reason}")
            }
            Err(other) if needle.is_empty() => eprintln!("{what}: {other}"),
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(fresh.state_digest().unwrap(), before);
    assert!(fresh.version_vector().unwrap().total() == 0);
}

#[test]
fn a_snapshot_whose_blobs_are_not_here_yet_is_not_installed() {
    let c = compacted_pair();
    let mut fresh = fresh_device();
    let (offer, image) = offer_of(&c.devices[0]);
    let snapshot = ReceivedSnapshot::check(offer, &image).unwrap();
    match fresh.install_snapshot(snapshot, c.now) {
        Err(StoreError::Snapshot(reason)) => assert!(reason.contains("not stored here"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(fresh.version_vector().unwrap().total(), 0);
    assert!(fresh.snapshot_offer().unwrap().is_none());
}

#[test]
fn a_device_with_history_the_snapshot_lacks_refuses_it_and_says_what_to_do() {
    let c = compacted_pair();
    let mut busy = fresh_device();
    busy.write(c.now, |w| w.add_user(&alice(), "$argon2id$other")).unwrap();
    let digest = busy.state_digest().unwrap();
    let (offer, image) = offer_of(&c.devices[0]);
    let refused = busy.snapshot_installable(&offer.vector).unwrap_err();
    assert!(matches!(refused, StoreError::SnapshotRefused { .. }));
    assert!(refused.to_string().contains("roost init"), "{refused}");
    let snapshot = ReceivedSnapshot::check(offer, &image).unwrap();
    copy_blobs(&c.devices[0], &busy, &snapshot);
    assert!(matches!(busy.install_snapshot(snapshot, c.now), Err(StoreError::SnapshotRefused { .. })));
    assert_eq!(busy.state_digest().unwrap(), digest, "nothing of the snapshot was installed");

    // The refusal is remembered per peer while it holds (the sync session
    // tells the peer not to send that snapshot again); one for a vector this
    // device has everything of no longer holds.
    let (peer, other) = (c.devices[0].identity().id(), c.devices[1].identity().id());
    let (offer, _) = offer_of(&c.devices[0]);
    assert_eq!(busy.snapshot_refusal(peer).unwrap(), None);
    busy.record_snapshot_refusal(peer, &offer.vector, &refused.to_string(), 7).unwrap();
    let kept = busy.snapshot_refusal(peer).unwrap().expect("the refusal holds");
    assert_eq!((kept.vector, kept.reason, kept.refused_ms), (offer.vector, refused.to_string(), 7));
    assert_eq!(busy.snapshot_refusal(other).unwrap(), None, "per peer");
    busy.record_snapshot_refusal(peer, &busy.version_vector().unwrap(), "covered", 8).unwrap();
    assert_eq!(busy.snapshot_refusal(peer).unwrap(), None, "nothing of it is lacking here");
}

/// Figures for docs/benchmarks.md: image size per message and the time to
/// offer, check and install a snapshot of `ROOST_SNAPSHOT_MESSAGES` (10,000)
/// messages in 100 appends.
#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn snapshot_transfer_figures() {
    let messages: usize = std::env::var("ROOST_SNAPSHOT_MESSAGES").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let mut c = Cluster::new(1);
    let inbox = c.mailbox(0, "INBOX").id;
    for batch in 0..messages / 100 {
        let raws: Vec<Vec<u8>> = (0..100).map(|i| merge_support::msg(&format!("m{batch}-{i}"))).collect();
        let appends: Vec<roost_core::store::AppendMessage> = raws
            .iter()
            .map(|raw| roost_core::store::AppendMessage { raw, flags: vec![Flag::seen()], internal_date: 1 })
            .collect();
        c.write(0, |w| w.append(inbox, &appends));
    }
    let all = c.devices[0].version_vector().unwrap();
    let started = std::time::Instant::now();
    c.devices[0].compact_within(c.now, &all).unwrap();
    let compact = started.elapsed();
    let started = std::time::Instant::now();
    let (offer, image) = offer_of(&c.devices[0]);
    let offered = started.elapsed();
    let mut fresh = fresh_device();
    let started = std::time::Instant::now();
    let snapshot = ReceivedSnapshot::check(offer, &image).unwrap();
    let checked = started.elapsed();
    copy_blobs(&c.devices[0], &fresh, &snapshot);
    let started = std::time::Instant::now();
    fresh.install_snapshot(snapshot, c.now).unwrap();
    let installed = started.elapsed();
    assert_eq!(fresh.state_digest().unwrap(), c.devices[0].state_digest().unwrap());
    println!(
        "{messages} messages: image {} bytes ({} per message); compact {compact:?}, offer {offered:?}, \
         check {checked:?}, install {installed:?}",
        image.len(),
        image.len() / messages
    );
}
