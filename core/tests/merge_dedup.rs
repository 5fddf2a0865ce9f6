//! The same message delivered on two devices (both MX hosts got it) is stored
//! once: one entry of one item, whatever order the deliveries merge in.

mod merge_support;

use merge_support::{alice, msg, Cluster};
use roost_core::model::BlobHash;
use roost_core::store::AppendMessage;

#[test]
fn the_same_message_delivered_on_two_devices_is_stored_once() {
    // Both devices deliver "hello" while apart; after sync INBOX holds it once,
    // under the higher of the two UIDs, on every device.
    let mut c = Cluster::new(3);
    let u0 = c.deliver(0, "INBOX", "hello");
    let u1 = c.deliver(1, "INBOX", "hello");
    c.deliver(1, "INBOX", "other");
    c.sync_all();
    c.assert_converged();
    let blob = BlobHash::of(&msg("hello"));
    for d in 0..3 {
        let copies: Vec<_> = c.entries(d, "INBOX").into_iter().filter(|e| e.blob == blob).collect();
        assert_eq!(copies.len(), 1, "device {d}");
        assert!(u0.max(u1) <= copies[0].uid);
    }
    assert_eq!(c.devices[0].stats().unwrap().messages, 2);
}

#[test]
fn one_message_with_a_different_trace_header_on_each_device_is_stored_once() {
    // LMTP prepends a Received: line naming the device and the time, so the
    // two devices store different bytes of one message. `deliver_keyed` keys
    // the entry by the message as the MTA sent it: still one entry, with the
    // bytes of the smaller delivering event on every device.
    let mut c = Cluster::new(2);
    let content = msg("hello");
    for d in 0..2 {
        let mut raw = format!("Received: by device-{d}\r\n").into_bytes();
        raw.extend_from_slice(&content);
        let inbox = c.mailbox(d, "INBOX").id;
        c.write(d, |w| {
            let message = AppendMessage { raw: &raw, flags: vec![], internal_date: 1_600_000_000 };
            w.deliver_keyed(&alice(), inbox, &[(&message, &content)])
        });
    }
    c.sync_all();
    c.assert_converged();
    for d in 0..2 {
        let entries = c.entries(d, "INBOX");
        assert_eq!(entries.len(), 1, "device {d}");
        let raw = c.devices[d].message(&entries[0].blob).unwrap();
        assert!(raw.ends_with(&content) && raw.starts_with(b"Received: by device-"));
    }
}

#[test]
fn an_expunged_message_stays_expunged_when_its_duplicate_delivery_arrives() {
    // Device 0 delivers and the user expunges it; device 1's delivery of the
    // same message arrives afterwards: removal of that message is final.
    let mut c = Cluster::new(2);
    c.deliver(0, "INBOX", "hello");
    c.expose_all(0);
    let inbox = c.mailbox(0, "INBOX").id;
    let entry = c.entries(0, "INBOX")[0].entry_id;
    c.write(0, |w| w.expunge(inbox, &[entry]));
    c.deliver(1, "INBOX", "hello");
    c.sync_all();
    c.assert_converged();
    assert!(c.entries(0, "INBOX").is_empty());
    assert!(c.entries(1, "INBOX").is_empty());
}

#[test]
fn a_delivered_message_moved_away_is_not_brought_back_by_its_duplicate() {
    let mut c = Cluster::new(2);
    c.deliver(0, "INBOX", "hello");
    c.expose_all(0);
    let inbox = c.mailbox(0, "INBOX").id;
    let archive = c.mailbox(0, "Archive").id;
    let entry = c.entries(0, "INBOX")[0].entry_id;
    c.write(0, |w| w.move_entries(inbox, &[entry], archive));
    c.deliver(1, "INBOX", "hello");
    c.sync_all();
    c.assert_converged();
    assert_eq!((c.entries(1, "INBOX").len(), c.entries(1, "Archive").len()), (0, 1));
}
