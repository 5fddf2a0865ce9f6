//! STORE merge rule: each flag of each item is its own add-wins set.

mod merge_support;

use merge_support::Cluster;
use roost_core::model::Flag;
use roost_core::store::{FlagChange, StoreMode};

fn change(c: &mut Cluster, d: usize, mode: StoreMode, flags: Vec<Flag>) {
    let inbox = c.mailbox(d, "INBOX").id;
    let entries: Vec<_> = c.entries(d, "INBOX").iter().map(|e| e.entry_id).collect();
    c.write(d, |w| w.store_flags(inbox, &entries, &FlagChange { mode, flags }));
}

#[test]
fn concurrent_add_of_one_flag_and_remove_of_another_both_survive() {
    // +\Seen on device 0 and -\Flagged on device 1 at once: the message ends
    // \Seen and not \Flagged everywhere (dsync would lose one side).
    let mut c = Cluster::new(2);
    c.append(0, "INBOX", "m", vec![Flag::flagged()]);
    c.sync_all();
    change(&mut c, 0, StoreMode::Add, vec![Flag::seen()]);
    change(&mut c, 1, StoreMode::Remove, vec![Flag::flagged()]);
    c.sync_all();
    c.assert_converged();
    for d in 0..2 {
        assert_eq!(c.entries(d, "INBOX")[0].flags, vec![Flag::seen()], "device {d}");
    }
}

#[test]
fn concurrent_add_wins_over_remove_of_the_same_flag() {
    // Device 0 removes \Seen (which it saw set), device 1 sets \Seen again
    // concurrently: the unobserved add survives.
    let mut c = Cluster::new(2);
    c.append(0, "INBOX", "m", vec![Flag::seen()]);
    c.sync_all();
    change(&mut c, 0, StoreMode::Remove, vec![Flag::seen()]);
    change(&mut c, 1, StoreMode::Replace, vec![Flag::seen(), Flag::answered()]);
    c.sync_all();
    c.assert_converged();
    for d in 0..2 {
        assert_eq!(c.entries(d, "INBOX")[0].flags, vec![Flag::answered(), Flag::seen()], "device {d}");
    }
}

#[test]
fn a_remove_after_seeing_the_add_removes_it_everywhere() {
    // Causally later removal wins over the add it observed.
    let mut c = Cluster::new(3);
    c.append(0, "INBOX", "m", vec![]);
    c.sync_all();
    change(&mut c, 1, StoreMode::Add, vec![Flag::flagged()]);
    c.sync(1, 2);
    change(&mut c, 2, StoreMode::Remove, vec![Flag::flagged()]);
    c.sync_all();
    c.assert_converged();
    assert!(c.entries(0, "INBOX")[0].flags.is_empty());
}
