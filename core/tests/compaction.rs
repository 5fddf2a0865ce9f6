//! Log compaction (issue 6): the causally stable prefix of the application
//! order folds into a snapshot; verify (snapshot + replay of the rest) equals
//! a full replay; a peer below the snapshot gets an explicit error; a device
//! absent for long still merges everything it brings. And a peer in this
//! device's own UID slot: the device moves to a free slot and re-keys,
//! instead of refusing the peer's events as corrupt.

mod merge_support;

use merge_support::{alice, msg, Cluster, START_MS};
use roost_core::log::VersionVector;
use roost_core::model::{DeviceSlot, Flag};
use roost_core::store::{AppendMessage, FlagChange, Store, StoreError, StoreMode};

/// Some history on every device of `c`: appends, flags, an expunge, a
/// mailbox, a re-key (device 1 appends below device 0's exposed UIDs).
fn history(c: &mut Cluster, tag: &str) {
    for i in 0..3 {
        c.append(0, "INBOX", &format!("{tag}-a{i}"), vec![]);
    }
    c.append(1, "INBOX", &format!("{tag}-b"), vec![Flag::seen()]);
    c.expose_all(0);
    c.sync_all();
    let inbox = c.mailbox(0, "INBOX").id;
    let entries = c.entries(0, "INBOX");
    let first = entries[0].entry_id;
    let change = FlagChange { mode: StoreMode::Add, flags: vec![Flag::flagged()] };
    c.write(0, |w| w.store_flags(inbox, &[first], &change));
    let second = entries[1].entry_id;
    c.write(1, |w| w.expunge(inbox, &[second]));
    let name = format!("Folder-{tag}");
    c.write(1, |w| w.create_mailbox(&alice(), &name, None));
    c.sync_all();
}

#[test]
fn compaction_folds_the_stable_prefix_and_verify_equals_a_full_replay() {
    let mut c = Cluster::new(2);
    history(&mut c, "one");
    let full = c.devices[0].verify().unwrap();
    assert!(full.problems.is_empty(), "{:?}", full.problems);
    assert_eq!(full.folded, 0);
    let digest = c.devices[0].state_digest().unwrap();
    let all = c.devices[0].version_vector().unwrap();

    let report = c.devices[0].compact_within(c.now, &all).unwrap();
    assert_eq!(report.folded, full.events);
    assert_eq!(report.remaining, 0);
    assert_eq!(report.vector, all);
    assert!(report.snapshot_bytes > 0);
    assert_eq!(c.devices[0].stats().unwrap().events, 0);
    let after = c.devices[0].verify().unwrap();
    assert!(after.problems.is_empty(), "{:?}", after.problems);
    assert_eq!((after.folded, after.events), (full.events, 0));
    assert_eq!(after.rebuilt, full.rebuilt, "snapshot replay differs from the full replay");
    assert_eq!(c.devices[0].state_digest().unwrap(), digest);
    assert!(c.devices[0].check_invariants().unwrap().is_empty());

    // Life goes on above the snapshot; a second compaction folds only what is stable.
    history(&mut c, "two");
    let stable_before = c.devices[0].version_vector().unwrap();
    c.append(0, "INBOX", "unstable", vec![]);
    let second = c.devices[0].compact_within(c.now, &stable_before).unwrap();
    assert!(second.folded > 0);
    assert_eq!(second.folded_total, full.events + second.folded);
    assert_eq!(second.remaining, 1, "the event beyond the stable vector stays");
    let again = c.devices[0].compact_within(c.now, &stable_before).unwrap();
    assert_eq!(again.folded, 0, "nothing new is stable");
    c.sync_all();
    c.assert_converged();
    // The uncompacted device 1 rebuilds the same state from its whole log.
    assert_eq!(c.devices[1].verify().unwrap().rebuilt, c.devices[0].verify().unwrap().rebuilt);
}

#[test]
fn only_a_causal_prefix_of_the_application_order_is_folded() {
    // Device 0 applies its own event, then device 1's: if the stable vector
    // covers only device 1's, nothing can be folded (the prefix stops at the
    // first event outside it), and folding never leaves a hole.
    let mut c = Cluster::new(2);
    c.sync_all();
    let base = c.devices[0].version_vector().unwrap();
    c.devices[0].compact_within(c.now, &base).unwrap();
    c.append(0, "INBOX", "mine", vec![]);
    c.append(1, "INBOX", "theirs", vec![]);
    c.sync(1, 0);
    let mut only_theirs = base.clone();
    only_theirs.merge(&c.devices[1].version_vector().unwrap());
    let report = c.devices[0].compact_within(c.now, &only_theirs).unwrap();
    assert_eq!(report.folded, 0);
    assert_eq!(report.vector, base);
    assert!(c.devices[0].check_invariants().unwrap().is_empty());
}

#[test]
fn a_peer_below_the_snapshot_gets_an_explicit_error() {
    let mut c = Cluster::new(2);
    history(&mut c, "x");
    let all = c.devices[0].version_vector().unwrap();
    c.devices[0].compact_within(c.now, &all).unwrap();
    match c.devices[0].events_missing(&VersionVector::new(), 100) {
        Err(StoreError::SnapshotNeeded { folded, have: 0, .. }) => assert!(folded > 0),
        other => panic!("expected SnapshotNeeded, got {other:?}"),
    }
    // A peer at or above the snapshot is served as before.
    c.append(0, "INBOX", "after", vec![]);
    assert_eq!(c.missing(0, 1).len(), 1);
}

#[test]
fn a_device_absent_long_still_merges_everything_after_the_others_compacted() {
    let mut c = Cluster::new(3);
    history(&mut c, "shared");
    // Device 2 leaves; what it had is all the others may fold.
    let left_with = c.devices[2].version_vector().unwrap();
    let old_entries = c.entries(2, "INBOX");
    for round in 0..5 {
        for d in 0..2 {
            c.append(d, "INBOX", &format!("r{round}-d{d}"), vec![]);
        }
        for (a, b) in [(0, 1), (1, 0)] {
            c.sync(a, b);
        }
        for d in 0..2 {
            let stable = VersionVector::meet([
                &c.devices[0].version_vector().unwrap(),
                &c.devices[1].version_vector().unwrap(),
                &left_with,
            ]);
            c.devices[d].compact_within(c.now, &stable).unwrap();
        }
    }
    c.write(0, |w| w.delete_mailbox(&alice(), "Folder-shared"));
    let inbox = c.mailbox(0, "INBOX").id;
    c.write(0, |w| w.expunge(inbox, &[old_entries[0].entry_id]));
    assert!(c.devices[0].snapshot_vector().unwrap().total() > 0);

    // Meanwhile device 2, offline, works on old and new mail.
    let mut offline = Vec::new();
    for i in 0..4 {
        offline.push(format!("offline-{i}"));
        c.append(2, "INBOX", &offline[i], vec![]);
    }
    let folder = c.mailbox(2, "Folder-shared").id;
    let raw = msg("into-deleted-folder");
    c.write(2, |w| w.append(folder, &[AppendMessage { raw: &raw, flags: vec![], internal_date: 1_600_000_000 }]));
    let inbox2 = c.mailbox(2, "INBOX").id;
    let change = FlagChange { mode: StoreMode::Add, flags: vec![Flag::answered()] };
    c.write(2, |w| w.store_flags(inbox2, &[old_entries[0].entry_id, old_entries[2].entry_id], &change));

    // It comes back: everything it brings merges, nothing of it is dropped.
    c.sync_all();
    c.assert_converged();
    let subjects: Vec<Vec<u8>> = c.entries(0, "INBOX").iter().map(|e| c.devices[0].message(&e.blob).unwrap()).collect();
    for name in &offline {
        assert!(subjects.iter().any(|m| m == &msg(name)), "{name} lost");
    }
    // Add-wins: the append revives the mailbox deleted while device 2 was away.
    assert_eq!(c.entries(0, "Folder-shared").len(), 1);
    // The flag on an entry nobody removed survives; the expunged one stays gone.
    let answered = c.entries(0, "INBOX").into_iter().find(|e| e.entry_id == old_entries[2].entry_id).unwrap();
    assert!(answered.flags.contains(&Flag::answered()));
    assert!(c.entries(0, "INBOX").iter().all(|e| e.entry_id != old_entries[0].entry_id));
}

#[test]
fn compaction_on_disk_survives_reopen_and_follows_peer_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let secret = [7u8; 32];
    let mut store = Store::init(dir.path(), secret, DeviceSlot::new(0).unwrap(), START_MS).unwrap();
    store.write(START_MS + 1, |w| w.add_user(&alice(), "$argon2id$test")).unwrap();
    let inbox = store.mailbox_by_name(&alice(), "INBOX").unwrap().unwrap().id;
    for i in 0..5 {
        let raw = msg(&format!("disk-{i}"));
        store
            .write(START_MS + 2 + i, |w| {
                w.append(inbox, &[AppendMessage { raw: &raw, flags: vec![], internal_date: 1_600_000_000 }])
            })
            .unwrap();
    }
    // A paired peer acknowledged only the first events: `compact` folds no further.
    let peer = Store::in_memory([8u8; 32], DeviceSlot::new(1).unwrap(), START_MS).unwrap();
    let peer_id = peer.identity().id();
    store.add_peer(peer_id, "peer", DeviceSlot::new(1).unwrap(), &[], START_MS).unwrap();
    let mut acked = VersionVector::new();
    acked.set(store.identity().id(), 3);
    let stats = roost_core::store::peers::PeerStats { acked, ..Default::default() };
    store.record_peer_stats(peer_id, &stats).unwrap();
    let total = store.version_vector().unwrap().total();
    let report = store.compact(START_MS + 100).unwrap();
    assert_eq!(report.folded, 3);
    assert_eq!(report.remaining, total - 3);
    let digest = store.state_digest().unwrap();
    drop(store);

    let store = Store::open(dir.path(), secret).unwrap();
    assert_eq!(store.state_digest().unwrap(), digest);
    let verify = store.verify().unwrap();
    assert!(verify.problems.is_empty(), "{:?}", verify.problems);
    assert_eq!((verify.folded, verify.events), (3, total - 3));
    // A backup copy carries the snapshot with its log.
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    store.snapshot_into(&copy.join(roost_core::store::DB_FILE)).unwrap();
    let blobs = copy.join(roost_core::store::BLOB_DIR);
    std::fs::create_dir(&blobs).unwrap();
    for entry in std::fs::read_dir(dir.path().join(roost_core::store::BLOB_DIR)).unwrap() {
        let entry = entry.unwrap();
        copy_tree(&entry.path(), &blobs.join(entry.file_name()));
    }
    let restored = Store::open(&copy, secret).unwrap();
    let verify = restored.verify().unwrap();
    assert!(verify.problems.is_empty(), "{:?}", verify.problems);
    assert_eq!(verify.folded, 3);
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

// --- a peer in this device's own slot --------------------------------------

/// Two devices handed slot 0 append concurrently (the same UIDs), then meet.
fn shared_slot_cluster(n: usize) -> Cluster {
    let mut c = Cluster::new(n);
    c.devices[1].set_slot(DeviceSlot::new(0).unwrap()).unwrap();
    for i in 0..3 {
        let a = c.append(0, "INBOX", &format!("zero-{i}"), vec![]);
        let b = c.append(1, "INBOX", &format!("one-{i}"), vec![]);
        assert_eq!(a, b, "both devices issue the same UIDs in one slot");
    }
    c.expose_all(0);
    c
}

fn assert_all_present(c: &Cluster, n: usize) {
    for d in 0..n {
        let uids = c.uids(d, "INBOX");
        let mut distinct = uids.clone();
        distinct.dedup();
        assert_eq!(uids.len(), 6, "device {d}: {uids:?}");
        assert_eq!(distinct.len(), 6, "device {d}: {uids:?}");
        let bodies: Vec<Vec<u8>> =
            c.entries(d, "INBOX").iter().map(|e| c.devices[d].message(&e.blob).unwrap()).collect();
        for name in ["zero-0", "zero-1", "zero-2", "one-0", "one-1", "one-2"] {
            assert!(bodies.contains(&msg(name)), "device {d}: {name} lost");
        }
    }
}

#[test]
fn a_peer_in_this_devices_slot_makes_the_greater_device_move_and_rekey() {
    let mut c = shared_slot_cluster(2);
    let zero = DeviceSlot::new(0).unwrap();
    let (keeper, mover) = if c.devices[0].identity().id() < c.devices[1].identity().id() { (0, 1) } else { (1, 0) };
    let first = c.sync(keeper, mover);
    assert!(first.rekeys > 0, "the clashing UIDs are re-keyed");
    assert_ne!(c.devices[mover].identity().slot(), zero, "the device with the greater id moved");
    let second = c.sync(mover, keeper);
    assert_eq!(c.devices[keeper].identity().slot(), zero, "the other keeps its slot");
    let _ = second;
    c.sync_all();
    c.assert_converged();
    assert_all_present(&c, 2);
    // From now on the two issue distinct UIDs: new appends meet without a clash.
    c.append(0, "INBOX", "later-0", vec![]);
    c.append(1, "INBOX", "later-1", vec![]);
    c.sync_all();
    c.assert_converged();
    assert_eq!(c.uids(0, "INBOX").len(), 8);
    let moved = c.devices[mover].identity().slot();
    assert!(c.entries(mover, "INBOX").iter().any(|e| e.uid.slot() == moved));
}

#[test]
fn a_third_device_meeting_two_devices_of_one_slot_converges() {
    // Device 2 (slot 2) gets both clashing sets first; then everyone syncs in
    // the other order too.
    let mut c = shared_slot_cluster(3);
    c.sync(0, 2);
    c.sync(1, 2);
    c.sync(2, 1);
    c.sync(2, 0);
    c.sync_all();
    c.assert_converged();
    assert_all_present(&c, 3);
    let slots: Vec<DeviceSlot> = c.devices.iter().map(|d| d.identity().slot()).collect();
    let mut distinct = slots.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "slots after the move: {slots:?}");
}
