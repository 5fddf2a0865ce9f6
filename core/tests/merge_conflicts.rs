//! Conflicts the merge resolves are recorded where the rule decides, on each
//! device, with both sides' events: UID re-keys, name clashes after a
//! concurrent create and rename, a delete against concurrent mail, concurrent
//! moves and duplicate deliveries. Changes without concurrency record none.

mod merge_support;

use merge_support::{alice, Cluster};
use roost_core::model::EventId;
use roost_core::store::{ConflictKind, ConflictRecord};

fn conflicts(c: &Cluster, d: usize, kind: ConflictKind) -> Vec<ConflictRecord> {
    c.devices[d].conflicts(1000).unwrap().into_iter().filter(|r| r.kind == kind).collect()
}

/// The device an event came from.
fn origin_slot(c: &Cluster, id: EventId) -> usize {
    c.devices.iter().position(|s| s.identity().id() == id.origin).expect("an event of a cluster device")
}

/// Both sides are events this device has, one from each device.
fn assert_two_sides(c: &Cluster, d: usize, r: &ConflictRecord) {
    let other = r.other.unwrap_or_else(|| panic!("device {d}: {r:?} names no other side"));
    assert!(c.devices[d].event(r.event).unwrap().is_some(), "{r:?}");
    assert!(c.devices[d].event(other).unwrap().is_some(), "{r:?}");
    assert_ne!(origin_slot(c, r.event), origin_slot(c, other), "sides from two devices: {r:?}");
    assert!(!r.resolution.is_empty());
}

#[test]
fn sequential_changes_record_no_conflict() {
    let mut c = Cluster::new(2);
    c.write(0, |w| w.create_mailbox(&alice(), "Work", None));
    c.append(0, "Work", "a", vec![]);
    c.sync_all();
    c.write(1, |w| w.rename_mailbox(&alice(), "Work", "Job"));
    c.sync_all();
    c.write(0, |w| w.delete_mailbox(&alice(), "Job"));
    c.sync_all();
    c.assert_converged();
    for d in 0..2 {
        assert_eq!(c.devices[d].conflicts(1000).unwrap(), vec![], "device {d}");
    }
}

#[test]
fn a_late_entry_below_an_exposed_uid_records_a_rekey() {
    let mut c = Cluster::new(2);
    c.append(0, "INBOX", "a", vec![]);
    c.append(0, "INBOX", "b", vec![]);
    c.append(1, "INBOX", "c", vec![]);
    assert_eq!(c.sync(1, 0).rekeys, 1);
    let found = conflicts(&c, 0, ConflictKind::UidRekey);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_two_sides(&c, 0, &found[0]);
    // The resolving event is device 0's Rekey; the other side is device 1's append.
    assert_eq!(origin_slot(&c, found[0].event), 0);
    assert_eq!(found[0].mailbox, c.mailbox(0, "INBOX").id);
    assert!(found[0].resolution.contains("UID 2"), "{}", found[0].resolution);
    c.sync_all();
    c.assert_converged();
}

#[test]
fn rename_onto_a_concurrently_created_name_records_a_clash_on_both_devices() {
    let mut c = Cluster::new(2);
    c.write(0, |w| w.create_mailbox(&alice(), "Projects", None));
    c.tick(10);
    c.write(1, |w| w.rename_mailbox(&alice(), "Archive", "Projects"));
    c.sync_all();
    c.assert_converged();
    for d in 0..2 {
        let found = conflicts(&c, d, ConflictKind::NameClash);
        assert_eq!(found.len(), 1, "device {d}: {found:?}");
        assert_two_sides(&c, d, &found[0]);
        assert!(found[0].resolution.contains("Projects"));
    }
}

#[test]
fn delete_against_concurrent_mail_is_recorded_on_both_devices() {
    let mut c = Cluster::new(2);
    c.write(0, |w| w.create_mailbox(&alice(), "Work", None));
    c.append(0, "Work", "seen", vec![]);
    c.sync_all();
    c.write(0, |w| w.delete_mailbox(&alice(), "Work"));
    c.append(1, "Work", "concurrent", vec![]);
    c.sync_all();
    c.assert_converged();
    // Device 1 learns of the delete after its append (decided in the delete
    // rule); device 0 gets mail for a mailbox it deleted (decided in place).
    for d in 0..2 {
        let found = conflicts(&c, d, ConflictKind::DeleteVsArrival);
        assert_eq!(found.len(), 1, "device {d}: {found:?}");
        assert_two_sides(&c, d, &found[0]);
        assert_eq!(found[0].mailbox, c.mailbox(d, "Work").id);
    }
}

#[test]
fn concurrent_moves_are_recorded_on_both_devices() {
    let mut c = Cluster::new(2);
    c.append(0, "INBOX", "m", vec![]);
    c.sync_all();
    let inbox = c.mailbox(0, "INBOX").id;
    let entry = c.entries(0, "INBOX")[0].entry_id;
    let (archive, trash) = (c.mailbox(0, "Archive").id, c.mailbox(0, "Trash").id);
    c.write(0, |w| w.move_entries(inbox, &[entry], archive));
    c.write(1, |w| w.move_entries(inbox, &[entry], trash));
    c.sync_all();
    c.assert_converged();
    for d in 0..2 {
        let found = conflicts(&c, d, ConflictKind::ConcurrentMove);
        assert_eq!(found.len(), 1, "device {d}: {found:?}");
        assert_two_sides(&c, d, &found[0]);
    }
}

#[test]
fn one_message_delivered_on_two_devices_records_a_merged_duplicate() {
    let mut c = Cluster::new(2);
    c.deliver(0, "INBOX", "twice");
    c.deliver(1, "INBOX", "twice");
    c.sync_all();
    c.assert_converged();
    assert_eq!(c.entries(0, "INBOX").len(), 1);
    for d in 0..2 {
        let found = conflicts(&c, d, ConflictKind::DuplicateMerged);
        assert_eq!(found.len(), 1, "device {d}: {found:?}");
        assert_two_sides(&c, d, &found[0]);
    }
}
