//! The store and `apply_event`, one test per event type: each makes a local
//! change through `Writer`, checks the materialised state a client would see,
//! and checks that a rebuild from the log alone gives the same state
//! (`verify`).

use roost_core::auth;
use roost_core::model::{DeviceSlot, Flag, SpecialUse, UserName};
use roost_core::store::{AppendMessage, FlagChange, Store, StoreError, StoreMode};

const NOW: u64 = 1_700_000_000_000;

fn store() -> Store {
    Store::in_memory([7; 32], DeviceSlot::new(0).unwrap(), NOW).unwrap()
}

fn alice() -> UserName {
    UserName::new("alice").unwrap()
}

fn with_user() -> Store {
    let mut store = store();
    store
        .write(NOW, |w| w.add_user(&alice(), &auth::hash_password("a fine passphrase", &mut rand::rngs::OsRng)))
        .unwrap();
    store
}

fn msg(subject: &str) -> Vec<u8> {
    format!("From: a@example.org\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n").into_bytes()
}

fn append(store: &mut Store, mailbox: &str, subject: &str, flags: Vec<Flag>) -> u32 {
    let raw = msg(subject);
    let user = alice();
    let name = mailbox.to_string();
    let (uids, _) = store
        .write(NOW, |w| {
            let mailbox = w.mailbox(&user, &name)?;
            w.append(mailbox, &[AppendMessage { raw: &raw, flags, internal_date: 1_600_000_000 }])
        })
        .unwrap();
    uids[0].get()
}

fn assert_verifies(store: &Store) {
    let report = store.verify().unwrap();
    assert!(report.problems.is_empty(), "verify found: {:?}", report.problems);
    assert_eq!(report.live, report.rebuilt);
}

fn names(store: &Store) -> Vec<String> {
    store.mailboxes(&alice()).unwrap().into_iter().map(|m| m.name).collect()
}

#[test]
fn user_add_creates_default_mailboxes_with_special_use() {
    // A new user gets the six default mailboxes, subscribed, with SPECIAL-USE.
    let store = with_user();
    let mailboxes = store.mailboxes(&alice()).unwrap();
    let mut by_name: Vec<(String, Option<SpecialUse>)> =
        mailboxes.iter().map(|m| (m.name.clone(), m.special_use)).collect();
    by_name.sort();
    assert_eq!(
        by_name,
        [
            ("Archive".into(), Some(SpecialUse::Archive)),
            ("Drafts".into(), Some(SpecialUse::Drafts)),
            ("INBOX".into(), None),
            ("Junk".into(), Some(SpecialUse::Junk)),
            ("Sent".into(), Some(SpecialUse::Sent)),
            ("Trash".into(), Some(SpecialUse::Trash)),
        ]
    );
    assert_eq!(store.subscriptions(&alice()).unwrap().len(), 6);
    assert!(store.check_login("alice", "a fine passphrase").unwrap().is_some());
    assert!(store.check_login("ALICE", "a fine passphrase").unwrap().is_some());
    assert!(store.check_login("alice", "wrong").unwrap().is_none());
    assert!(store.check_login("bob", "a fine passphrase").unwrap().is_none());
    assert_verifies(&store);
}

#[test]
fn user_add_twice_is_refused_and_writes_nothing() {
    let mut store = with_user();
    let before = store.stats().unwrap().events;
    let err = store.write(NOW, |w| w.add_user(&alice(), "x")).unwrap_err();
    assert!(matches!(err, StoreError::UserExists(_)), "{err}");
    assert_eq!(store.stats().unwrap().events, before);
}

#[test]
fn user_password_and_remove() {
    let mut store = with_user();
    let hash = auth::hash_password("another passphrase", &mut rand::rngs::OsRng);
    store.write(NOW, |w| w.set_password(&alice(), &hash)).unwrap();
    assert!(store.check_login("alice", "another passphrase").unwrap().is_some());
    assert!(store.check_login("alice", "a fine passphrase").unwrap().is_none());
    append(&mut store, "INBOX", "hello", vec![]);
    store.write(NOW, |w| w.remove_user(&alice())).unwrap();
    assert!(!store.user_exists(&alice()).unwrap());
    assert!(store.mailboxes(&alice()).unwrap().is_empty());
    assert_eq!(store.stats().unwrap().entries, 0);
    let err = store.write(NOW, |w| w.remove_user(&alice())).unwrap_err();
    assert!(matches!(err, StoreError::NoSuchUser(_)));
    assert_verifies(&store);
    // Added again, the user starts with fresh mailboxes whose UIDVALIDITY differs.
    store.write(NOW, |w| w.add_user(&alice(), &hash)).unwrap();
    assert_eq!(store.mailboxes(&alice()).unwrap().len(), 6);
    assert_verifies(&store);
}

#[test]
fn mailbox_create_makes_parents_and_refuses_duplicates() {
    let mut store = with_user();
    store.write(NOW, |w| w.create_mailbox(&alice(), "Lists/rust/announce", None)).unwrap();
    let all = names(&store);
    for name in ["Lists", "Lists/rust", "Lists/rust/announce"] {
        assert!(all.contains(&name.to_string()), "{name} missing from {all:?}");
    }
    let err = store.write(NOW, |w| w.create_mailbox(&alice(), "Lists", None)).unwrap_err();
    assert!(matches!(err, StoreError::MailboxExists(_)));
    let err = store.write(NOW, |w| w.create_mailbox(&alice(), "inbox", None)).unwrap_err();
    assert!(matches!(err, StoreError::MailboxExists(_)), "INBOX is case-insensitive: {err}");
    let err = store.write(NOW, |w| w.create_mailbox(&alice(), "a//b", None)).unwrap_err();
    assert!(matches!(err, StoreError::InvalidName { .. }));
    assert_verifies(&store);
}

#[test]
fn mailbox_rename_moves_children_and_keeps_uidvalidity() {
    let mut store = with_user();
    store.write(NOW, |w| w.create_mailbox(&alice(), "Work/2024", None)).unwrap();
    append(&mut store, "Work/2024", "report", vec![]);
    let before = store.mailbox_by_name(&alice(), "Work/2024").unwrap().unwrap();
    store.write(NOW, |w| w.rename_mailbox(&alice(), "Work", "Old/Work")).unwrap();
    let after = store.mailbox_by_name(&alice(), "Old/Work/2024").unwrap().unwrap();
    assert_eq!(before.id, after.id);
    assert_eq!(before.uid_validity, after.uid_validity);
    assert_eq!(store.entries(after.id).unwrap().len(), 1);
    assert!(store.mailbox_by_name(&alice(), "Work").unwrap().is_none());
    let err = store.write(NOW, |w| w.rename_mailbox(&alice(), "Old", "Sent")).unwrap_err();
    assert!(matches!(err, StoreError::MailboxExists(_)));
    // A new mailbox under the old name is a different mailbox.
    store.write(NOW, |w| w.create_mailbox(&alice(), "Work", None)).unwrap();
    let new_work = store.mailbox_by_name(&alice(), "Work").unwrap().unwrap();
    assert_ne!(new_work.uid_validity, store.mailbox_by_name(&alice(), "Old/Work").unwrap().unwrap().uid_validity);
    assert_verifies(&store);
}

#[test]
fn inbox_rename_moves_messages_and_leaves_inbox_empty() {
    // RFC 9051 6.3.6: renaming INBOX moves its messages to the new name.
    let mut store = with_user();
    append(&mut store, "INBOX", "one", vec![Flag::seen()]);
    append(&mut store, "INBOX", "two", vec![]);
    store.write(NOW, |w| w.rename_mailbox(&alice(), "INBOX", "Old Inbox")).unwrap();
    let inbox = store.mailbox_by_name(&alice(), "INBOX").unwrap().unwrap();
    let old = store.mailbox_by_name(&alice(), "Old Inbox").unwrap().unwrap();
    assert!(store.entries(inbox.id).unwrap().is_empty());
    let moved = store.entries(old.id).unwrap();
    assert_eq!(moved.len(), 2);
    assert_eq!(moved[0].flags, vec![Flag::seen()]);
    assert_verifies(&store);
}

#[test]
fn mailbox_delete_removes_messages_and_leaves_tombstones() {
    let mut store = with_user();
    store.write(NOW, |w| w.create_mailbox(&alice(), "Tmp", None)).unwrap();
    append(&mut store, "Tmp", "x", vec![]);
    let tmp = store.mailbox_by_name(&alice(), "Tmp").unwrap().unwrap();
    store.write(NOW, |w| w.delete_mailbox(&alice(), "Tmp")).unwrap();
    assert!(store.mailbox_by_name(&alice(), "Tmp").unwrap().is_none());
    assert_eq!(store.vanished_since(tmp.id, 0).unwrap().len(), 1);
    let err = store.write(NOW, |w| w.delete_mailbox(&alice(), "INBOX")).unwrap_err();
    assert!(matches!(err, StoreError::InboxProtected(_)));
    let err = store.write(NOW, |w| w.delete_mailbox(&alice(), "Tmp")).unwrap_err();
    assert!(matches!(err, StoreError::NoSuchMailbox(_)));
    assert_verifies(&store);
}

#[test]
fn subscribe_and_unsubscribe() {
    let mut store = with_user();
    store.write(NOW, |w| w.subscribe(&alice(), "Does/Not/Exist", true)).unwrap();
    assert!(store.subscriptions(&alice()).unwrap().contains(&"Does/Not/Exist".to_string()));
    store.write(NOW, |w| w.subscribe(&alice(), "Junk", false)).unwrap();
    assert!(!store.subscriptions(&alice()).unwrap().contains(&"Junk".to_string()));
    assert_verifies(&store);
}

#[test]
fn append_assigns_growing_uids_and_stores_the_blob_once() {
    let mut store = with_user();
    let a = append(&mut store, "INBOX", "same", vec![]);
    let b = append(&mut store, "INBOX", "same", vec![]);
    assert!(a < b);
    let inbox = store.mailbox_by_name(&alice(), "INBOX").unwrap().unwrap();
    assert!(b < inbox.uid_next);
    let stats = store.stats().unwrap();
    assert_eq!((stats.entries, stats.messages), (2, 1));
    let entries = store.entries(inbox.id).unwrap();
    assert_eq!(store.message(&entries[0].blob).unwrap(), msg("same"));
    assert_eq!(entries[0].size, msg("same").len() as u64);
    assert_verifies(&store);
}

#[test]
fn store_flags_add_remove_replace_and_bumps_modseq() {
    let mut store = with_user();
    append(&mut store, "INBOX", "f", vec![Flag::seen()]);
    let inbox = store.mailbox_by_name(&alice(), "INBOX").unwrap().unwrap();
    let entry = store.entries(inbox.id).unwrap()[0].clone();
    let change = |mode, flags: Vec<Flag>| FlagChange { mode, flags };
    let id = entry.entry_id;
    let (changed, _) =
        store.write(NOW, |w| w.store_flags(inbox.id, &[id], &change(StoreMode::Add, vec![Flag::flagged()]))).unwrap();
    assert_eq!(changed, vec![id]);
    let after_add = store.entries(inbox.id).unwrap()[0].clone();
    assert_eq!(after_add.flags, vec![Flag::flagged(), Flag::seen()]);
    assert!(entry.modseq < after_add.modseq);
    // Adding a flag that is already set changes nothing, not even the MODSEQ.
    let (changed, _) =
        store.write(NOW, |w| w.store_flags(inbox.id, &[id], &change(StoreMode::Add, vec![Flag::seen()]))).unwrap();
    assert!(changed.is_empty());
    assert_eq!(store.entries(inbox.id).unwrap()[0].modseq, after_add.modseq);
    store.write(NOW, |w| w.store_flags(inbox.id, &[id], &change(StoreMode::Remove, vec![Flag::seen()]))).unwrap();
    assert_eq!(store.entries(inbox.id).unwrap()[0].flags, vec![Flag::flagged()]);
    let keyword = Flag::parse("$Important").unwrap();
    store
        .write(NOW, |w| {
            w.store_flags(inbox.id, &[id], &change(StoreMode::Replace, vec![keyword.clone(), Flag::draft()]))
        })
        .unwrap();
    assert_eq!(store.entries(inbox.id).unwrap()[0].flags, vec![keyword, Flag::draft()]);
    let highest = store.mailbox_by_name(&alice(), "INBOX").unwrap().unwrap().highest_modseq;
    assert_eq!(highest, store.entries(inbox.id).unwrap()[0].modseq.get());
    assert_verifies(&store);
}

#[test]
fn expunge_leaves_a_tombstone_and_uids_are_not_reused() {
    let mut store = with_user();
    let first = append(&mut store, "INBOX", "gone", vec![]);
    let inbox = store.mailbox_by_name(&alice(), "INBOX").unwrap().unwrap();
    let id = store.entries(inbox.id).unwrap()[0].entry_id;
    let before = store.mailbox_by_name(&alice(), "INBOX").unwrap().unwrap().highest_modseq;
    store.write(NOW, |w| w.expunge(inbox.id, &[id])).unwrap();
    assert!(store.entries(inbox.id).unwrap().is_empty());
    let vanished = store.vanished_since(inbox.id, before).unwrap();
    assert_eq!(vanished.len(), 1);
    assert_eq!(vanished[0].0.get(), first);
    let next = append(&mut store, "INBOX", "new", vec![]);
    assert!(first < next, "UID {first} reused");
    assert_verifies(&store);
}

#[test]
fn copy_makes_independent_items() {
    let mut store = with_user();
    append(&mut store, "INBOX", "c", vec![Flag::seen()]);
    let inbox = store.mailbox_by_name(&alice(), "INBOX").unwrap().unwrap();
    let archive = store.mailbox_by_name(&alice(), "Archive").unwrap().unwrap();
    let id = store.entries(inbox.id).unwrap()[0].entry_id;
    let (pairs, _) = store.write(NOW, |w| w.copy(inbox.id, &[id], archive.id)).unwrap();
    assert_eq!(pairs.len(), 1);
    let copy = store.entries(archive.id).unwrap()[0].clone();
    assert_eq!(copy.uid, pairs[0].1);
    assert_eq!(copy.flags, vec![Flag::seen()]);
    // Flags of the copy change independently of the original.
    store
        .write(NOW, |w| {
            w.store_flags(
                archive.id,
                &[copy.entry_id],
                &FlagChange { mode: StoreMode::Add, flags: vec![Flag::flagged()] },
            )
        })
        .unwrap();
    assert_eq!(store.entries(inbox.id).unwrap()[0].flags, vec![Flag::seen()]);
    assert_eq!(store.stats().unwrap().messages, 1, "a copy shares the stored message");
    assert_verifies(&store);
}

#[test]
fn move_keeps_flags_and_is_in_exactly_one_mailbox() {
    let mut store = with_user();
    let old_uid = append(&mut store, "INBOX", "m", vec![Flag::answered()]);
    let inbox = store.mailbox_by_name(&alice(), "INBOX").unwrap().unwrap();
    let trash = store.mailbox_by_name(&alice(), "Trash").unwrap().unwrap();
    let id = store.entries(inbox.id).unwrap()[0].entry_id;
    let (pairs, _) = store.write(NOW, |w| w.move_entries(inbox.id, &[id], trash.id)).unwrap();
    assert_eq!(pairs[0].0.get(), old_uid);
    assert!(store.entries(inbox.id).unwrap().is_empty());
    let moved = store.entries(trash.id).unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].flags, vec![Flag::answered()]);
    assert_eq!(store.vanished_since(inbox.id, 0).unwrap()[0].0.get(), old_uid);
    assert_verifies(&store);
}

#[test]
fn a_failing_write_leaves_nothing() {
    // The closure errors after making changes: the transaction rolls back whole.
    let mut store = with_user();
    let before = store.state_digest().unwrap();
    let res: Result<((), _), _> = store.write(NOW, |w| {
        w.create_mailbox(&alice(), "Half", None)?;
        w.delete_mailbox(&alice(), "No such mailbox")
    });
    assert!(res.is_err());
    assert_eq!(store.state_digest().unwrap(), before);
    assert_verifies(&store);
}

#[test]
fn group_commit_rolls_back_only_the_failing_job() {
    let mut store = with_user();
    let jobs: Vec<roost_core::store::BatchJob<'_, &str>> = vec![
        Box::new(|w| (w.create_mailbox(&alice(), "One", None).is_ok(), "one")),
        Box::new(|w| {
            let ok = w.create_mailbox(&alice(), "Two", None).is_ok() && w.delete_mailbox(&alice(), "Nope").is_ok();
            (ok, "two")
        }),
        Box::new(|w| (w.create_mailbox(&alice(), "Three", None).is_ok(), "three")),
    ];
    let (results, effects) = store.write_batch(NOW, jobs).unwrap();
    assert_eq!(results, ["one", "two", "three"]);
    let all = names(&store);
    assert!(all.contains(&"One".to_string()));
    assert!(!all.contains(&"Two".to_string()), "the failed job's mailbox must be rolled back");
    assert!(all.contains(&"Three".to_string()));
    assert_eq!(effects.events.len(), 2);
    assert_verifies(&store);
}

#[test]
fn reopening_a_store_on_disk_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let secret = [9u8; 32];
    {
        let mut store = Store::init(dir.path(), secret, DeviceSlot::new(0).unwrap(), NOW).unwrap();
        store.write(NOW, |w| w.add_user(&alice(), "hash")).unwrap();
    }
    let store = Store::open(dir.path(), secret).unwrap();
    assert!(store.user_exists(&alice()).unwrap());
    assert_verifies(&store);
    let err = Store::open(dir.path(), [1u8; 32]).unwrap_err();
    assert!(matches!(err, StoreError::WrongDevice { .. }), "{err}");
    let err = Store::init(dir.path(), secret, DeviceSlot::new(0).unwrap(), NOW).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyInitialised(_)));
}

#[test]
fn delivery_dedup_key_is_recorded_once_per_user() {
    // A dedup key is new once per user, is kept with the transaction's fate,
    // and leaves the replicated state (and so `verify`) untouched.
    let mut store = with_user();
    let bob = UserName::new("bob").unwrap();
    store.write(NOW, |w| w.add_user(&bob, "x")).unwrap();
    let key = [9u8; 32];
    let (first, _) = store.write(NOW, |w| w.record_delivery(&alice(), &key)).unwrap();
    let (again, _) = store.write(NOW, |w| w.record_delivery(&alice(), &key)).unwrap();
    let (other_user, _) = store.write(NOW, |w| w.record_delivery(&bob, &key)).unwrap();
    assert!(first);
    assert!(!again);
    assert!(other_user);
    // A rolled-back transaction records nothing.
    let other = [8u8; 32];
    let res: Result<((), _), _> = store.write(NOW, |w| {
        w.record_delivery(&alice(), &other)?;
        Err(roost_core::store::StoreError::Corrupt("roll back".into()))
    });
    assert!(res.is_err());
    let (after_rollback, _) = store.write(NOW, |w| w.record_delivery(&alice(), &other)).unwrap();
    assert!(after_rollback);
    assert_verifies(&store);
}

#[test]
fn a_slot_changed_by_another_process_is_used_by_the_next_write() {
    // `roost pair join` changes the slot while the daemon has the store open:
    // the daemon's next write must assign UIDs from the new slot, or two
    // devices would share one (a UID clash the merge refuses).
    let dir = tempfile::tempdir().unwrap();
    let secret = [9u8; 32];
    let mut daemon = Store::init(dir.path(), secret, DeviceSlot::new(0).unwrap(), NOW).unwrap();
    daemon.write(NOW, |w| w.add_user(&alice(), "hash")).unwrap();
    let mut cli = Store::open(dir.path(), secret).unwrap();
    cli.set_slot(DeviceSlot::new(3).unwrap()).unwrap();
    let raw = msg("after join");
    let (uids, _) = daemon
        .write(NOW, |w| {
            let inbox = w.mailbox(&alice(), "INBOX")?;
            w.append(inbox, &[AppendMessage { raw: &raw, flags: vec![], internal_date: 1 }])
        })
        .unwrap();
    assert_eq!(uids[0].slot(), DeviceSlot::new(3).unwrap());
}
