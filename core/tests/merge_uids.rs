//! UIDs across devices: per-device slots, re-keying of late entries at or
//! below what IMAP may have shown (a replicated `Rekey`, highest wins),
//! UIDVALIDITY fixed, MODSEQ monotonic, and stability-gated exposure.

mod merge_support;

use merge_support::{alice, Cluster};
use roost_core::model::DeviceSlot;

#[test]
fn uids_come_from_per_device_slots() {
    let mut c = Cluster::new(3);
    for d in 0..3 {
        let uid = c.append(d, "INBOX", &format!("m{d}"), vec![]);
        assert_eq!(uid.slot(), DeviceSlot::new(d as u8).unwrap());
    }
}

#[test]
fn a_late_entry_below_an_exposed_uid_is_rekeyed_and_converges() {
    // Device 0 shows UIDs 1 and 17; device 1 appends UID 2 meanwhile. When
    // UID 2 reaches device 0 it is below 17, which a client may have seen:
    // device 0 re-keys it (one Rekey event), and every device ends with the
    // same UIDs, each above what its own clients were shown.
    let mut c = Cluster::new(2);
    assert_eq!(c.append(0, "INBOX", "a", vec![]).get(), 1);
    assert_eq!(c.append(0, "INBOX", "b", vec![]).get(), 17);
    assert_eq!(c.append(1, "INBOX", "c", vec![]).get(), 2);
    let validity = c.mailbox(0, "INBOX").uid_validity;
    let report = c.sync(1, 0);
    assert_eq!(report.rekeys, 1);
    c.expose_all(0);
    let uids = c.uids(0, "INBOX");
    assert_eq!(uids.len(), 3);
    assert!(uids.iter().all(|u| *u != 2), "{uids:?}");
    assert!(c.devices[0].vanished_since(c.mailbox(0, "INBOX").id, 0).unwrap().iter().any(|(u, _)| u.get() == 2));
    c.sync_all();
    c.assert_converged();
    assert_eq!(c.uids(0, "INBOX"), c.uids(1, "INBOX"));
    assert_eq!(c.mailbox(1, "INBOX").uid_validity, validity);
    assert_eq!(c.mailbox(0, "INBOX").uid_validity, validity);
}

#[test]
fn concurrent_rekeys_of_one_entry_converge_on_the_highest() {
    // Device 2's entry reaches devices 0 and 1, which both showed higher UIDs:
    // both re-key it, to different UIDs. After sync the highest wins everywhere.
    let mut c = Cluster::new(3);
    c.append(2, "INBOX", "late", vec![]); // UID 3
    c.append(0, "INBOX", "a", vec![]);
    c.append(0, "INBOX", "b", vec![]);
    c.append(1, "INBOX", "c", vec![]);
    c.append(1, "INBOX", "d", vec![]);
    let events = c.missing(2, 0);
    assert_eq!(c.ingest(2, 0, &events).rekeys, 1);
    assert_eq!(c.ingest(2, 1, &events).rekeys, 1);
    c.sync_all();
    c.assert_converged();
    let late = |c: &Cluster, d: usize| {
        c.entries(d, "INBOX")
            .into_iter()
            .find(|e| c.devices[d].message(&e.blob).unwrap().ends_with(b"late\r\n"))
            .unwrap()
    };
    let uid = late(&c, 0).uid;
    assert_eq!(late(&c, 1).uid, uid);
    assert_eq!(late(&c, 2).uid, uid);
    assert!(3 < uid.get());
}

#[test]
fn replaying_the_log_reproduces_rekeys_without_emitting_any() {
    // `verify` replays into a scratch database; the Rekey events in the log
    // are applied, none are made (the replayed state equals the live one).
    let mut c = Cluster::new(2);
    c.append(0, "INBOX", "a", vec![]);
    c.append(0, "INBOX", "b", vec![]);
    c.append(1, "INBOX", "c", vec![]);
    c.sync_all();
    let before = c.devices[0].version_vector().unwrap();
    let report = c.devices[0].verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(c.devices[0].version_vector().unwrap(), before);
}

#[test]
fn modseq_only_grows_on_every_device_even_with_a_clock_behind() {
    // Device 1's clock is an hour behind the events it receives; its MODSEQs
    // (and HIGHESTMODSEQ) still only grow.
    let mut c = Cluster::new(2);
    let mut last = 0;
    for i in 0..5 {
        c.append(0, "INBOX", &format!("m{i}"), vec![]);
        let events = c.missing(0, 1);
        for b in events.iter().flat_map(|e| e.op.blobs()) {
            let raw = c.devices[0].message(&b).unwrap();
            c.devices[1].blobs().put(&raw).unwrap();
        }
        let behind = c.now - 3_600_000 + i;
        c.devices[1].ingest(behind, &events).unwrap();
        c.devices[1].expose(behind, 0).unwrap();
        let h = c.mailbox(1, "INBOX").highest_modseq;
        assert!(last < h, "{last} then {h}");
        last = h;
    }
}

#[test]
fn delivered_uids_are_held_a_round_trip_so_earlier_peer_entries_need_no_rekey() {
    // Stability-gated exposure. Device 0 delivers (UID 1) and device 1 then
    // delivers (UID 18 above it after sync)... here: device 1 delivers first
    // to a higher UID, device 0's lower UID arrives within the hold. Held
    // entries are invisible until `expose` and the late one needs no re-key.
    let mut c = Cluster::new(2);
    c.append(1, "INBOX", "x", vec![]); // UID 2, shown on device 1
    c.sync_all();
    let hold = 500;
    c.deliver(1, "INBOX", "high"); // UID 18 on device 1, held
    c.deliver(0, "INBOX", "low"); // UID 17 on device 0, held
    assert_eq!(c.uids(1, "INBOX"), vec![2], "held entries are not shown");
    c.tick(100);
    c.expose_all(hold); // Not yet: within the hold.
    assert_eq!(c.uids(1, "INBOX"), vec![2]);
    let report = c.sync(0, 1);
    assert_eq!(report.rekeys, 0, "arrived within the hold");
    c.tick(hold);
    c.expose_all(hold);
    assert_eq!(c.uids(1, "INBOX"), vec![2, 17, 18]);
    c.sync_all();
    c.assert_converged();
}

#[test]
fn without_the_hold_a_late_lower_uid_is_rekeyed() {
    // Peers unreachable: hold 0, the new UID is shown at once, and the peer's
    // lower UID arriving later is re-keyed instead.
    let mut c = Cluster::new(2);
    c.append(1, "INBOX", "x", vec![]);
    c.sync_all();
    c.deliver(1, "INBOX", "high");
    c.deliver(0, "INBOX", "low");
    c.expose_all(0);
    assert_eq!(c.uids(1, "INBOX"), vec![2, 18]);
    assert_eq!(c.sync(0, 1).rekeys, 1);
    c.sync_all();
    c.assert_converged();
    let uids = c.uids(1, "INBOX");
    assert_eq!(uids.len(), 3);
    assert!(18 < uids[2], "{uids:?}");
}

#[test]
fn a_mailbox_revived_by_a_concurrent_append_keeps_its_uidvalidity() {
    let mut c = Cluster::new(2);
    c.write(0, |w| w.create_mailbox(&alice(), "Work", None));
    c.sync_all();
    let validity = c.mailbox(0, "Work").uid_validity;
    c.write(0, |w| w.delete_mailbox(&alice(), "Work"));
    c.append(1, "Work", "m", vec![]);
    c.sync_all();
    c.assert_converged();
    assert_eq!(c.mailbox(0, "Work").uid_validity, validity);
}
