//! EXPUNGE merge rule: removes the named entry everywhere and leaves a
//! tombstone with its UID and a MODSEQ, so QRESYNC clients get VANISHED.

mod merge_support;

use merge_support::Cluster;
use roost_core::model::Flag;
use roost_core::store::{FlagChange, StoreMode};

#[test]
fn expunge_leaves_a_tombstone_with_uid_and_modseq_for_vanished_on_every_device() {
    // Device 0 expunges; device 1's client, synced at HIGHESTMODSEQ h, gets
    // the UID in VANISHED (EARLIER) with a MODSEQ above h.
    let mut c = Cluster::new(2);
    let uid = c.append(0, "INBOX", "m", vec![]);
    c.append(0, "INBOX", "keep", vec![]);
    c.sync_all();
    let inbox = c.mailbox(1, "INBOX");
    let h = inbox.highest_modseq;
    let entry = c.entries(0, "INBOX")[0].entry_id;
    let id = c.mailbox(0, "INBOX").id;
    c.write(0, |w| w.expunge(id, &[entry]));
    c.sync_all();
    c.assert_converged();
    for d in 0..2 {
        let since = if d == 1 { h } else { 0 };
        let vanished = c.devices[d].vanished_since(id, since).unwrap();
        assert_eq!(vanished.len(), 1, "device {d}");
        assert_eq!(vanished[0].0, uid);
        assert!(since < vanished[0].1);
        assert_eq!(c.uids(d, "INBOX").len(), 1);
        assert!(vanished[0].1 <= c.mailbox(d, "INBOX").highest_modseq);
    }
}

#[test]
fn concurrent_expunge_and_flag_change_leave_the_message_expunged() {
    // A flag change on a message expunged concurrently elsewhere does not
    // bring it back (flags belong to the item; the entry is gone).
    let mut c = Cluster::new(2);
    c.append(0, "INBOX", "m", vec![]);
    c.sync_all();
    let id = c.mailbox(0, "INBOX").id;
    let entry = c.entries(0, "INBOX")[0].entry_id;
    c.write(0, |w| w.expunge(id, &[entry]));
    c.write(1, |w| w.store_flags(id, &[entry], &FlagChange { mode: StoreMode::Add, flags: vec![Flag::seen()] }));
    c.sync_all();
    c.assert_converged();
    assert!(c.entries(1, "INBOX").is_empty());
}

#[test]
fn expunge_of_the_same_message_on_two_devices_converges() {
    let mut c = Cluster::new(2);
    c.append(0, "INBOX", "m", vec![]);
    c.sync_all();
    let id = c.mailbox(0, "INBOX").id;
    let entry = c.entries(0, "INBOX")[0].entry_id;
    c.write(0, |w| w.expunge(id, &[entry]));
    c.write(1, |w| w.expunge(id, &[entry]));
    c.sync_all();
    c.assert_converged();
    assert_eq!(c.devices[0].vanished_since(id, 0).unwrap().len(), 1);
}
