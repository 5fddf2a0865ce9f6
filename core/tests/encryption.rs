//! Mail at rest (issue 8) at the store level: sealed blobs, the key record
//! replicating with the password, password change and recovery across
//! devices, per-user dedup, and the encryption switch.

mod merge_support;

use merge_support::{alice, msg, Cluster};
use roost_core::auth;
use roost_core::crypto::{self, RecoveryKey, UserKeys};
use roost_core::model::UserName;
use roost_core::store::{AppendMessage, StoreError};

const PASSWORD: &str = "correct horse battery";

/// A cluster whose alice has a key record (made on device 0, synced).
fn keyed_cluster(n: usize) -> (Cluster, RecoveryKey) {
    let mut c = Cluster::new(n);
    let (keys, recovery) = UserKeys::generate(PASSWORD, &mut rand::rngs::OsRng);
    let hash = auth::hash_password(PASSWORD, &mut rand::rngs::OsRng);
    c.write(0, |w| w.set_user_keys(&alice(), &hash, &keys));
    c.sync_all();
    (c, recovery)
}

#[test]
fn appended_and_delivered_mail_is_sealed_and_opens_only_with_the_session_key() {
    let (mut c, _) = keyed_cluster(2);
    c.append(0, "INBOX", "secret-subject-append", vec![]);
    c.deliver(0, "INBOX", "secret-subject-deliver");
    c.sync_all();
    for d in 0..2 {
        let entries = c.entries(d, "INBOX");
        assert_eq!(entries.len(), 2);
        let key = c.devices[d].login("alice", PASSWORD).unwrap().unwrap().1.expect("alice has a key");
        for e in &entries {
            let stored = c.devices[d].message(&e.blob).unwrap();
            assert!(crypto::is_sealed(&stored));
            assert!(!stored.windows(14).any(|w| w == b"secret-subject"), "plaintext in a stored blob");
            assert!(matches!(c.devices[d].message_plain(&e.blob, None), Err(StoreError::Sealed(_))));
            let plain = c.devices[d].message_plain(&e.blob, Some(&key)).unwrap();
            assert!(plain.windows(14).any(|w| w == b"secret-subject"));
            assert_eq!(plain.len() as u64, e.size, "RFC822.SIZE is the plaintext size");
        }
    }
    c.assert_converged();
}

#[test]
fn wrong_password_and_unknown_user_both_fail_alike() {
    let (c, _) = keyed_cluster(1);
    let store = &c.devices[0];
    assert!(store.login("alice", "wrong password!").unwrap().is_none());
    assert!(store.login("nobody", PASSWORD).unwrap().is_none());
    assert!(store.login("bad name with spaces", PASSWORD).unwrap().is_none());
    assert!(store.login("alice", PASSWORD).unwrap().is_some());
}

#[test]
fn wrong_password_costs_what_an_unknown_user_costs() {
    // The cost class, two ways. Exactly: every outcome does the same argon2id
    // work, counted on this thread (runs, and memory blocks times passes),
    // which neither load nor tests hashing in parallel disturb; a login that
    // skipped or cheapened its hash fails here. Then the time: rounds
    // interleave the outcomes, so a burst of load falls on one round rather
    // than on one outcome, and the median of the rounds' ratios stays within
    // a wide band (a missing hash run would be a factor of 50 or more: the
    // rest is microseconds).
    let (c, _) = keyed_cluster(1);
    let store = &c.devices[0];
    let wrong = ("alice", "wrong password!");
    let others = [("unknown user", ("nobody", "wrong password!")), ("right password", ("alice", PASSWORD))];
    let work = |(user, password): (&str, &str)| {
        let before = auth::argon2_work_on_this_thread();
        let _ = store.login(user, password).unwrap();
        let after = auth::argon2_work_on_this_thread();
        (after.runs - before.runs, after.block_passes - before.block_passes)
    };
    let wrong_work = work(wrong);
    assert_eq!(wrong_work.0, 1, "a wrong password runs argon2id once");
    assert!(0 < wrong_work.1);
    let bad_name = ("unknown and invalid user name", ("bad name with spaces", "wrong password!"));
    for (what, login) in others.iter().chain([&bad_name]) {
        assert_eq!(work(*login), wrong_work, "{what}: (argon2 runs, blocks x passes) differ from a wrong password's");
    }

    let time = |(user, password): (&str, &str)| {
        let started = std::time::Instant::now();
        let _ = store.login(user, password).unwrap();
        started.elapsed().as_secs_f64()
    };
    const ROUNDS: usize = 9;
    let mut ratios = [Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS)];
    for _ in 0..ROUNDS {
        let wrong_secs = time(wrong);
        for (ratios, (_, login)) in ratios.iter_mut().zip(others) {
            ratios.push(time(login) / wrong_secs);
        }
    }
    for (mut ratios, (what, _)) in ratios.into_iter().zip(others) {
        ratios.sort_by(f64::total_cmp);
        let median = ratios[ROUNDS / 2];
        assert!((0.25..4.0).contains(&median), "{what} takes {median:.3} times a wrong password's time: {ratios:.3?}");
    }
}

#[test]
fn password_change_on_one_device_then_login_on_another_with_the_new_password_only() {
    let (mut c, recovery) = keyed_cluster(2);
    c.append(0, "INBOX", "before-change", vec![]);
    c.sync_all();
    // Device 0: change the password (re-wrap with the unlocked identity).
    let keys = c.devices[0].user_keys(&alice()).unwrap().unwrap();
    let session = keys.unlock("alice", PASSWORD).unwrap();
    let new_keys = keys.rewrap(&session, "a brand new passphrase", &mut rand::rngs::OsRng).unwrap();
    let hash = auth::hash_password("a brand new passphrase", &mut rand::rngs::OsRng);
    c.write(0, |w| w.set_user_keys(&alice(), &hash, &new_keys));
    c.sync_all();
    // Device 1 knows only the new password, and old mail still opens.
    assert!(c.devices[1].login("alice", PASSWORD).unwrap().is_none());
    let key = c.devices[1].login("alice", "a brand new passphrase").unwrap().unwrap().1.unwrap();
    let blob = c.entries(1, "INBOX")[0].blob;
    assert!(c.devices[1].message_plain(&blob, Some(&key)).unwrap().starts_with(b"Message-ID: <before-change@test>"));
    // The recovery key still works after the change, on either device.
    let keys = c.devices[1].user_keys(&alice()).unwrap().unwrap();
    let recovered = keys.recover("alice", &recovery).unwrap();
    assert_eq!(recovered.public_key(), keys.public_key);
    c.assert_converged();
}

#[test]
fn same_message_twice_for_one_user_shares_its_blob_but_not_across_users() {
    let (mut c, _) = keyed_cluster(1);
    let bob = UserName::new("bob").unwrap();
    let (keys, _) = UserKeys::generate("bob's passphrase", &mut rand::rngs::OsRng);
    c.write(0, |w| {
        w.add_user(&bob, "$argon2id$test")?;
        w.set_user_keys(&bob, "$argon2id$test", &keys)
    });
    let raw = msg("shared");
    let message = AppendMessage { raw: &raw, flags: vec![], internal_date: 0 };
    let alice_inbox = c.mailbox(0, "INBOX").id;
    let bob_inbox = c.devices[0].mailbox_by_name(&bob, "INBOX").unwrap().unwrap().id;
    c.write(0, |w| w.append(alice_inbox, &[message.clone(), message.clone()]));
    c.write(0, |w| w.append(bob_inbox, std::slice::from_ref(&message)));
    let alice_blobs: Vec<_> = c.entries(0, "INBOX").iter().map(|e| e.blob).collect();
    assert_eq!(alice_blobs.len(), 2);
    assert_eq!(alice_blobs[0], alice_blobs[1], "one user's duplicate reuses the sealed blob");
    let bob_blob = c.devices[0].entries(bob_inbox).unwrap()[0].blob;
    assert_ne!(bob_blob, alice_blobs[0], "another user's copy is a different ciphertext");
}

#[test]
fn encryption_off_stores_plaintext_and_a_user_without_keys_still_logs_in() {
    let (mut c, _) = keyed_cluster(1);
    c.devices[0].set_encryption(false);
    c.append(0, "INBOX", "stored-clear", vec![]);
    let blob = c.entries(0, "INBOX")[0].blob;
    assert!(!crypto::is_sealed(&c.devices[0].message(&blob).unwrap()));
    assert!(c.devices[0].message_plain(&blob, None).is_ok());
    // A user from before encryption (no key record) logs in by password hash.
    let carol = UserName::new("carol").unwrap();
    let hash = auth::hash_password("carol's passphrase", &mut rand::rngs::OsRng);
    c.write(0, |w| w.add_user(&carol, &hash));
    let (name, key) = c.devices[0].login("carol", "carol's passphrase").unwrap().unwrap();
    assert_eq!((name, key.is_none()), (carol, true));
}

/// Upgrade: mail stored in clear (encryption off, a user from before
/// encryption) is sealed in place when encryption is on. Checks that each
/// blob becomes an age file under its old name, opens for each of its users
/// (one plaintext blob shared by two users is sealed to both), a user
/// without a key is reported and left alone, a second run finds nothing more
/// to do, and a device that syncs afterwards receives the sealed file under
/// the old name and reads the same bytes.
#[test]
fn mail_stored_in_clear_is_sealed_in_place_and_reads_the_same() {
    let (mut c, _) = keyed_cluster(2);
    let bob = UserName::new("bob").unwrap();
    let (bob_keys, _) = UserKeys::generate("bob's passphrase", &mut rand::rngs::OsRng);
    let carol = UserName::new("carol").unwrap();
    c.write(0, |w| {
        w.add_user(&bob, "$argon2id$test")?;
        w.set_user_keys(&bob, "$argon2id$test", &bob_keys)?;
        w.add_user(&carol, "$argon2id$test")
    });
    c.devices[0].set_encryption(false);
    let (shared, alone, expunged, carols) = (msg("clear-shared"), msg("clear-alone"), msg("clear-gone"), msg("carol"));
    let append = |c: &mut Cluster, user: &UserName, raw: &[u8]| {
        let inbox = c.devices[0].mailbox_by_name(user, "INBOX").unwrap().unwrap().id;
        c.write(0, |w| w.append(inbox, &[AppendMessage { raw, flags: vec![], internal_date: 0 }]));
    };
    append(&mut c, &alice(), &shared);
    append(&mut c, &bob, &shared);
    append(&mut c, &alice(), &alone);
    append(&mut c, &alice(), &expunged);
    append(&mut c, &carol, &carols);
    let inbox = c.mailbox(0, "INBOX").id;
    let gone = c.entries(0, "INBOX")[2].clone();
    c.write(0, |w| w.expunge(inbox, &[gone.entry_id]));
    let blobs: Vec<_> =
        [&shared, &alone, &expunged, &carols].iter().map(|m| roost_core::model::BlobHash::of(m)).collect();
    assert!(blobs.iter().all(|b| !crypto::is_sealed(&c.devices[0].message(b).unwrap())));

    c.devices[0].set_encryption(true);
    let report = c.devices[0].seal_existing().unwrap();
    assert_eq!((report.found_in_clear, report.sealed), (4, 3), "{report:?}");
    assert_eq!(report.left_in_clear.len(), 1, "{report:?}");
    assert_eq!(report.left_in_clear[0].0, blobs[3]);
    assert!(report.left_in_clear[0].1.contains("user carol has no encryption key"), "{report:?}");

    let alice_key = c.devices[0].login("alice", PASSWORD).unwrap().unwrap().1.unwrap();
    let bob_key = bob_keys.unlock("bob", "bob's passphrase").unwrap();
    for (blob, raw) in blobs.iter().zip([&shared, &alone, &expunged]) {
        assert!(crypto::is_sealed(&c.devices[0].message(blob).unwrap()));
        assert!(matches!(c.devices[0].message_plain(blob, None), Err(StoreError::Sealed(_))));
        assert_eq!(&c.devices[0].message_plain(blob, Some(&alice_key)).unwrap(), raw);
    }
    assert_eq!(c.devices[0].message_plain(&blobs[0], Some(&bob_key)).unwrap(), shared);
    assert!(c.devices[0].message_plain(&blobs[1], Some(&bob_key)).is_err(), "alice's own mail is not bob's");
    assert_eq!(c.devices[0].message_plain(&blobs[3], None).unwrap(), carols);

    // Restartable: nothing more to do but carol's.
    let again = c.devices[0].seal_existing().unwrap();
    assert_eq!((again.found_in_clear, again.sealed), (1, 0), "{again:?}");

    // Re-delivering the same message for alice reuses the sealed blob.
    append(&mut c, &alice(), &alone);
    assert_eq!(c.entries(0, "INBOX").last().unwrap().blob, blobs[1]);

    // A device syncing now gets the sealed file under the old name.
    c.sync_all();
    c.assert_converged();
    assert!(crypto::is_sealed(&c.devices[1].message(&blobs[0]).unwrap()));
    assert_eq!(c.devices[1].message_plain(&blobs[0], Some(&alice_key)).unwrap(), shared);
}
