//! Ingest of remote events: held until their dependencies are here, any order,
//! duplicates ignored, concurrent events commute; what a peer misses streams in
//! causal order; the causally stable prefix; forged events are refused.

mod merge_support;

use merge_support::{alice, Cluster};
use roost_core::model::{Flag, UserName};
use roost_core::store::peers::PeerStats;
use roost_core::store::{FlagChange, StoreMode};

#[test]
fn events_in_reverse_order_with_duplicates_are_held_then_applied_once() {
    // Device 0 makes a chain of dependent events; device 1 gets them one at a
    // time, newest first, each twice: nothing applies until the oldest arrives.
    let mut c = Cluster::new(2);
    c.write(0, |w| w.create_mailbox(&alice(), "Work", None));
    c.append(0, "Work", "a", vec![]);
    c.append(0, "Work", "b", vec![]);
    let work = c.mailbox(0, "Work").id;
    let entries: Vec<_> = c.entries(0, "Work").iter().map(|e| e.entry_id).collect();
    c.write(0, |w| w.store_flags(work, &entries, &FlagChange { mode: StoreMode::Add, flags: vec![Flag::seen()] }));
    let mut events = c.missing(0, 1);
    assert_eq!(events.len(), 4);
    events.reverse();
    for (i, event) in events.iter().enumerate() {
        let report = c.ingest(0, 1, &[event.clone(), event.clone()]);
        if i + 1 < events.len() {
            assert_eq!(report.applied, 0);
            assert_eq!(report.pending, i as u64 + 1);
        } else {
            assert_eq!(report.applied, 4);
            assert_eq!(report.pending, 0);
        }
    }
    let again = c.ingest(0, 1, &events);
    assert_eq!((again.applied, again.duplicates), (0, 4));
    c.expose_all(0);
    c.assert_converged();
    assert!(c.entries(1, "Work").iter().all(|e| e.flags == vec![Flag::seen()]));
}

#[test]
fn concurrent_events_commute() {
    // Devices 0 and 1 change things concurrently; device 2 hears 0 first,
    // device 3 hears 1 first: same state.
    let mut c = Cluster::new(4);
    c.write(0, |w| w.create_mailbox(&alice(), "Work", None));
    c.append(0, "INBOX", "from0", vec![Flag::seen()]);
    c.write(1, |w| w.rename_mailbox(&alice(), "Archive", "Old"));
    c.append(1, "INBOX", "from1", vec![]);
    c.sync(0, 2);
    c.sync(1, 2);
    c.sync(1, 3);
    c.sync(0, 3);
    c.expose_all(0);
    assert_eq!(c.devices[2].state_digest().unwrap(), c.devices[3].state_digest().unwrap());
    c.sync_all();
    c.assert_converged();
}

#[test]
fn events_missing_is_a_causal_order_for_streaming() {
    // Device 2 streams from device 1 what it misses (events of 0 and 1
    // interleaved); applying them one by one never has to hold one.
    let mut c = Cluster::new(3);
    c.append(0, "INBOX", "a", vec![]);
    c.sync(0, 1);
    c.append(1, "INBOX", "b", vec![]);
    c.append(0, "INBOX", "c", vec![]);
    c.sync(0, 1);
    c.append(1, "INBOX", "d", vec![]);
    let stream = c.missing(1, 2);
    assert_eq!(stream.len(), 4);
    for event in &stream {
        let report = c.ingest(1, 2, std::slice::from_ref(event));
        assert_eq!((report.applied, report.pending), (1, 0), "{:?} was not ready", event.id);
    }
    // Streaming in bounded batches gives the same prefix-closed order.
    let have = c.devices[0].version_vector().unwrap();
    let batch = c.devices[1].events_missing(&have, 1).unwrap();
    assert_eq!(batch.len(), 1);
    assert!(have.dominates(&batch[0].deps));
}

#[test]
fn a_forged_event_is_refused_and_nothing_is_written() {
    // The op of a signed event is swapped: the signature no longer covers it.
    let mut c = Cluster::new(2);
    c.append(0, "INBOX", "a", vec![]);
    let mut events = c.missing(0, 1);
    let before = c.devices[1].state_digest().unwrap();
    events[0].op = roost_core::log::EventOp::UserRemove { user: UserName::new("alice").unwrap() };
    let now = c.now;
    assert!(c.devices[1].ingest(now, &events).is_err());
    assert_eq!(c.devices[1].state_digest().unwrap(), before);
    assert_eq!(c.devices[1].pending_events().unwrap(), 0);
}

#[test]
fn stable_vector_is_what_every_paired_device_acknowledged_and_compaction_folds_only_that() {
    // Device 0 with two peers: only what both acknowledged is stable, and
    // only that is folded; the appends device 2 lacks stay in the log.
    let mut c = Cluster::new(3);
    c.append(0, "INBOX", "a", vec![]);
    c.append(0, "INBOX", "b", vec![]);
    let all = c.devices[0].version_vector().unwrap();
    let old = c.devices[1].version_vector().unwrap();
    for (d, acked) in [(1usize, all.clone()), (2, old.clone())] {
        let id = c.devices[d].identity().id();
        let slot = c.devices[d].identity().slot();
        c.devices[0].add_peer(id, "peer", slot, &[], c.now).unwrap();
        c.devices[0].record_peer_stats(id, &PeerStats { acked, ..PeerStats::default() }).unwrap();
    }
    assert_eq!(c.devices[0].stable_vector().unwrap(), old);
    let report = c.devices[0].compact(c.now).unwrap();
    assert_eq!(report.vector, old);
    assert_eq!(report.remaining, all.total() - old.total());
    assert_eq!(c.devices[0].version_vector().unwrap(), all);
    assert_eq!(c.missing(0, 2).len() as u64, report.remaining);
    c.sync_all();
    c.assert_converged();
}
