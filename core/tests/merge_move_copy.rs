//! MOVE and COPY merge rules: one event each, so no device ever shows a moved
//! message in both mailboxes or in neither; concurrent moves of one message to
//! two mailboxes leave it in both (nothing lost, the duplicate visible); a
//! move concurrent with an expunge of its source keeps the message.

mod merge_support;

use merge_support::Cluster;
use roost_core::model::Flag;

fn count(c: &Cluster, d: usize, name: &str) -> usize {
    c.entries(d, name).len()
}

#[test]
fn a_move_is_atomic_on_every_device() {
    // Device 1 receives device 0's events one at a time; after each one the
    // message is in exactly one of INBOX and Archive.
    let mut c = Cluster::new(2);
    c.append(0, "INBOX", "m", vec![Flag::seen()]);
    c.sync_all();
    let inbox = c.mailbox(0, "INBOX").id;
    let archive = c.mailbox(0, "Archive").id;
    let entry = c.entries(0, "INBOX")[0].entry_id;
    c.write(0, |w| w.move_entries(inbox, &[entry], archive));
    for event in c.missing(0, 1) {
        c.ingest(0, 1, &[event]);
        c.expose_all(0);
        assert_eq!(count(&c, 1, "INBOX") + count(&c, 1, "Archive"), 1);
    }
    c.assert_converged();
    assert_eq!(count(&c, 1, "Archive"), 1);
    assert_eq!(c.entries(1, "Archive")[0].flags, vec![Flag::seen()], "the item keeps its flags");
}

#[test]
fn concurrent_moves_to_two_mailboxes_leave_the_message_in_both() {
    // Device 0 moves to Archive, device 1 to Trash, concurrently. Defined
    // outcome: the item is in both (nothing lost), shares its flags, and the
    // source is empty, on every device.
    let mut c = Cluster::new(3);
    c.append(0, "INBOX", "m", vec![]);
    c.sync_all();
    let inbox = c.mailbox(0, "INBOX").id;
    let entry = c.entries(0, "INBOX")[0].entry_id;
    let archive = c.mailbox(0, "Archive").id;
    let trash = c.mailbox(0, "Trash").id;
    c.write(0, |w| w.move_entries(inbox, &[entry], archive));
    c.write(1, |w| w.move_entries(inbox, &[entry], trash));
    c.sync_all();
    c.assert_converged();
    for d in 0..3 {
        assert_eq!((count(&c, d, "INBOX"), count(&c, d, "Archive"), count(&c, d, "Trash")), (0, 1, 1), "device {d}");
        assert_eq!(c.entries(d, "Archive")[0].item_id, c.entries(d, "Trash")[0].item_id);
    }
}

#[test]
fn a_move_concurrent_with_an_expunge_of_its_source_keeps_the_message() {
    let mut c = Cluster::new(2);
    c.append(0, "INBOX", "m", vec![]);
    c.sync_all();
    let inbox = c.mailbox(0, "INBOX").id;
    let archive = c.mailbox(0, "Archive").id;
    let entry = c.entries(0, "INBOX")[0].entry_id;
    c.write(0, |w| w.move_entries(inbox, &[entry], archive));
    c.write(1, |w| w.expunge(inbox, &[entry]));
    c.sync_all();
    c.assert_converged();
    assert_eq!((count(&c, 1, "INBOX"), count(&c, 1, "Archive")), (0, 1));
}

#[test]
fn a_copy_is_a_new_item_with_the_flags_at_copy_time() {
    // COPY on device 0, flag change of the original on device 1: the copy keeps
    // the flags it was copied with; both devices agree.
    let mut c = Cluster::new(2);
    c.append(0, "INBOX", "m", vec![Flag::seen()]);
    c.sync_all();
    let inbox = c.mailbox(0, "INBOX").id;
    let archive = c.mailbox(0, "Archive").id;
    let entry = c.entries(0, "INBOX")[0].entry_id;
    c.write(0, |w| w.copy(inbox, &[entry], archive));
    c.write(1, |w| {
        w.store_flags(
            inbox,
            &[entry],
            &roost_core::store::FlagChange { mode: roost_core::store::StoreMode::Add, flags: vec![Flag::flagged()] },
        )
    });
    c.sync_all();
    c.assert_converged();
    assert_eq!(c.entries(1, "Archive")[0].flags, vec![Flag::seen()]);
    assert_eq!(c.entries(1, "INBOX")[0].flags, vec![Flag::flagged(), Flag::seen()]);
    assert_ne!(c.entries(1, "Archive")[0].item_id, c.entries(1, "INBOX")[0].item_id);
}
