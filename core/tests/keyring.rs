//! The keyring (issue 8): a user given an identity on two devices before they
//! synced keeps both identities, so mail sealed to the one that lost the
//! last-writer-wins record stays readable. The merge commutes, the digest and
//! `verify` agree, a login with the shared password opens every message, and
//! with different passwords the recovery key of the losing identity folds it in.

mod merge_support;

use merge_support::{alice, Cluster};
use roost_core::auth;
use roost_core::crypto::{self, RecoveryKey, UserKeys};
use roost_core::store::ConflictKind;

const PASSWORD_0: &str = "passphrase of device zero";
const PASSWORD_1: &str = "passphrase of device one";

/// Each of devices 0 and 1 gives alice a new identity (under its password)
/// and delivers one message sealed to it, before they sync. Returns the
/// recovery keys, by device.
fn keyed_apart(c: &mut Cluster, passwords: [&str; 2]) -> [RecoveryKey; 2] {
    let recoveries = [0, 1].map(|d| {
        let (keys, recovery) = UserKeys::generate(passwords[d], &mut rand::rngs::OsRng);
        let hash = auth::hash_password(passwords[d], &mut rand::rngs::OsRng);
        c.write(d, |w| w.set_user_keys(&alice(), &hash, &keys));
        c.deliver(d, "INBOX", &format!("sealed-on-device-{d}"));
        recovery
    });
    c.tick(10);
    recoveries
}

/// The bodies of alice's INBOX on device `d` that `password` opens.
fn readable(c: &Cluster, d: usize, password: &str) -> Vec<String> {
    let key = c.devices[d].login("alice", password).unwrap().expect("the password logs in").1.expect("a key");
    let mut out: Vec<String> = c
        .entries(d, "INBOX")
        .iter()
        .filter_map(|e| c.devices[d].message_plain(&e.blob, Some(&key)).ok())
        .map(|raw| String::from_utf8_lossy(&raw).lines().next().unwrap_or_default().to_string())
        .collect();
    out.sort();
    out
}

const BOTH: [&str; 2] = ["Message-ID: <sealed-on-device-0@test>", "Message-ID: <sealed-on-device-1@test>"];

#[test]
fn the_keyring_merge_commutes_and_verify_agrees() {
    let mut c = Cluster::new(4);
    keyed_apart(&mut c, [PASSWORD_0, PASSWORD_1]);
    // Device 2 hears 0 then 1, device 3 hears 1 then 0.
    c.sync(0, 2);
    c.sync(1, 2);
    c.sync(1, 3);
    c.sync(0, 3);
    let (two, three) = (c.devices[2].state_digest().unwrap(), c.devices[3].state_digest().unwrap());
    assert_eq!(two, three, "{:?}", two.differences(&three));
    for d in [2, 3] {
        assert_eq!(c.devices[d].user_keyring(&alice()).unwrap().len(), 2, "device {d} keeps both identities");
        let report = c.devices[d].verify().unwrap();
        assert!(report.problems.is_empty(), "device {d}: {:?}", report.problems);
    }
    c.sync_all();
    c.assert_converged();
}

#[test]
fn same_password_on_both_devices_reads_every_message_everywhere() {
    let mut c = Cluster::new(2);
    keyed_apart(&mut c, [PASSWORD_0, PASSWORD_0]);
    c.sync_all();
    c.assert_converged();
    for d in 0..2 {
        assert_eq!(readable(&c, d, PASSWORD_0), BOTH, "device {d}");
    }
    // The identities have different salts: noted until a password change joins them.
    assert!(c.devices[0].conflicts(100).unwrap().iter().any(|r| r.kind == ConflictKind::KeyringSplit));

    // A password change re-wraps both identities under one salt, in one event.
    let keys = c.devices[1].user_keys(&alice()).unwrap().unwrap();
    let keyring = c.devices[1].user_keyring(&alice()).unwrap();
    let unlocked = crypto::unlock_keyring("alice", &keys, &keyring, PASSWORD_0).unwrap();
    assert!(unlocked.locked.is_empty());
    let (main, also) =
        crypto::rewrap_keyring(&keys, &keyring, &unlocked.key, "a third passphrase", &mut rand::rngs::OsRng).unwrap();
    assert_eq!(also.len(), 1);
    let hash = auth::hash_password("a third passphrase", &mut rand::rngs::OsRng);
    c.write(1, |w| w.set_user_keyring(&alice(), &hash, &main, &also));
    c.sync_all();
    c.assert_converged();
    for d in 0..2 {
        assert!(c.devices[d].login("alice", PASSWORD_0).unwrap().is_none());
        assert_eq!(readable(&c, d, "a third passphrase"), BOTH, "device {d}");
        let keyring = c.devices[d].user_keyring(&alice()).unwrap();
        assert!(keyring.iter().all(|k| k.by_password.kdf == main.by_password.kdf), "one salt for the keyring");
    }
}

#[test]
fn different_passwords_leave_a_conflict_and_the_losing_recovery_key_folds_it_in() {
    let mut c = Cluster::new(2);
    let recoveries = keyed_apart(&mut c, [PASSWORD_0, PASSWORD_1]);
    c.sync_all();
    c.assert_converged();
    // Device 1 wrote last: its record wins, its password is alice's password.
    let keys = c.devices[0].user_keys(&alice()).unwrap().unwrap();
    let keyring = c.devices[0].user_keyring(&alice()).unwrap();
    let loser = keyring.iter().find(|k| k.public_key != keys.public_key).unwrap().clone();
    assert!(c.devices[0].login("alice", PASSWORD_0).unwrap().is_none());
    assert_eq!(readable(&c, 0, PASSWORD_1), ["Message-ID: <sealed-on-device-1@test>"]);
    let unlocked = crypto::unlock_keyring("alice", &keys, &keyring, PASSWORD_1).unwrap();
    assert_eq!(unlocked.locked, vec![loser.public_key.clone()]);
    for d in 0..2 {
        let noted = c.devices[d].conflicts(100).unwrap();
        let split = noted.iter().find(|r| r.kind == ConflictKind::KeyringSplit).expect("a keyring conflict");
        assert!(split.resolution.contains(&loser.public_key), "{}", split.resolution);
        assert!(split.resolution.contains("roost user recover alice"), "{}", split.resolution);
    }

    // The recovery key of the losing identity (device 0's) opens it; the
    // current password opens the rest; both are wrapped under it.
    assert!(keys.recover("alice", &recoveries[0]).is_err());
    let recovered = loser.recover("alice", &recoveries[0]).unwrap();
    let key = unlocked.key.with(recovered);
    let (main, also) = crypto::rewrap_keyring(&keys, &keyring, &key, PASSWORD_1, &mut rand::rngs::OsRng).unwrap();
    let hash = auth::hash_password(PASSWORD_1, &mut rand::rngs::OsRng);
    c.write(0, |w| w.set_user_keyring(&alice(), &hash, &main, &also));
    c.sync_all();
    c.assert_converged();
    for d in 0..2 {
        assert_eq!(readable(&c, d, PASSWORD_1), BOTH, "device {d}");
        let keyring = c.devices[d].user_keyring(&alice()).unwrap();
        let unlocked = crypto::unlock_keyring("alice", &main, &keyring, PASSWORD_1).unwrap();
        assert!(unlocked.locked.is_empty());
    }
}

#[test]
fn removing_the_user_empties_the_keyring_whatever_the_order() {
    let mut c = Cluster::new(3);
    keyed_apart(&mut c, [PASSWORD_0, PASSWORD_0]);
    c.sync(0, 2);
    c.write(2, |w| w.remove_user(&alice()));
    // Device 1's identity reaches device 2 after the removal; device 0 gets
    // the removal after device 1's identity.
    c.sync_all();
    c.assert_converged();
    for d in 0..3 {
        assert!(c.devices[d].user_keyring(&alice()).unwrap().is_empty(), "device {d}");
    }
}

#[test]
fn a_data_dir_from_before_the_keyring_gets_both_identities_back_from_its_log() {
    // A device on disk that heard both identities (as a version without the
    // keyring would have: the losing one only in its log).
    let root = tempfile::tempdir().unwrap();
    let secret = [9u8; 32];
    let slot = roost_core::model::DeviceSlot::new(5).unwrap();
    let mut disk = roost_core::store::Store::init(root.path(), secret, slot, merge_support::START_MS).unwrap();
    let mut c = Cluster::new(2);
    keyed_apart(&mut c, [PASSWORD_0, PASSWORD_0]);
    c.sync_all();
    for from in 0..2 {
        let events = c.devices[from].events_missing(&disk.version_vector().unwrap(), usize::MAX).unwrap();
        for event in &events {
            for blob in event.op.blobs() {
                disk.blobs().put(&c.devices[from].message(&blob).unwrap()).unwrap();
            }
        }
        disk.ingest(c.now + 1, &events).unwrap();
    }
    let digest = disk.state_digest().unwrap();
    assert_eq!(digest, c.devices[0].state_digest().unwrap());
    drop(disk);
    // Back to the schema before the keyring (0007): drop what 0008_keyring
    // and every later migration created (extend this when one is added).
    let db = rusqlite::Connection::open(root.path().join(roost_core::store::DB_FILE)).unwrap();
    db.execute_batch(
        "DROP TABLE user_keyring; DROP TABLE log_snapshot; DROP TABLE log_snapshot_vector;
         DROP INDEX mailbox_entries_by_modseq; DROP TABLE blob_spool; DROP TABLE file_keys; DROP INDEX mailbox_entries_by_blob;
         DROP INDEX mailboxes_live_by_user_name; DROP TABLE blob_orphans; DROP INDEX sealed_blobs_by_blob; CREATE INDEX mailboxes_by_user_name ON mailboxes (user, name);
         DROP TABLE snapshot_refusals;
         PRAGMA user_version = 7;",
    )
    .unwrap();
    drop(db);

    let reopened = roost_core::store::Store::open(root.path(), secret).unwrap();
    assert_eq!(reopened.user_keyring(&alice()).unwrap().len(), 2);
    assert_eq!(reopened.state_digest().unwrap(), digest);
    let report = reopened.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let key = reopened.login("alice", PASSWORD_0).unwrap().unwrap().1.unwrap();
    let inbox = reopened.mailbox_by_name(&alice(), "INBOX").unwrap().unwrap();
    for entry in reopened.entries(inbox.id).unwrap() {
        assert!(reopened.message_plain(&entry.blob, Some(&key)).is_ok());
    }
}
