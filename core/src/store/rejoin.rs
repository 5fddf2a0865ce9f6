//! Rejoining after a restore (issue 8). A device restored from a backup may be
//! behind what its peers hold *of its own origin*: the events it made after
//! the backup. Its next local event would reuse one of their sequence numbers
//! (two different events with one id, a fork no merge can repair). So
//! `roost restore` marks the store (the LOCAL `rejoin` row, durable), and
//! while the mark is there:
//! - the store makes no events of its own: [`crate::store::Writer`] refuses
//!   every local change with [`StoreError::Rejoining`] (a re-key a peer's
//!   event calls for is skipped, see `Writer::apply_remote`);
//! - [`Store::ingest`] accepts this device's own events above its local seq
//!   (signature checked against its own key, like any event) and applies them;
//! - a peer's `Hello` tells how far it has this device's origin
//!   ([`Store::rejoin_learn`]); once the local seq reaches the highest such
//!   report the mark goes (in the same transaction as the event that reached
//!   it) and local writes continue with the next seq.
//!
//! A device with no active paired device has nobody to learn from: the mark
//! is not set (`roost restore` of an unpaired device, or `--standalone`) or is
//! dropped ([`Store::end_rejoin_if_unpaired`], at daemon start).

use rusqlite::{params, Connection, OptionalExtension};

use crate::log::event::Event;
use crate::log::version_vector::VersionVector;
use crate::model::DeviceId;
use crate::store::{state, Store, StoreError, StoreResult};

/// The rejoin mark, while it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejoinState {
    /// When `roost restore` set it.
    pub restored_ms: u64,
    /// This device's own seq in the backup.
    pub own_seq_restored: u64,
    /// The highest own seq a peer said it has; `None` until a peer's `Hello`.
    pub own_seq_target: Option<u64>,
}

/// What [`Store::rejoin_learn`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejoinProgress {
    /// The store was not rejoining.
    NotRejoining,
    /// Still waiting for own events up to `target` (this device has `have`).
    Waiting {
        /// This device's own seq now.
        have: u64,
        /// The highest own seq a peer reported.
        target: u64,
    },
    /// The store had every own event a peer reported: the mark is gone.
    Done,
}

impl Store {
    /// Marks a restored store (`roost restore` of a paired device): no own
    /// events until a peer told how far this device's origin got.
    pub fn mark_restored(&mut self, now_ms: u64) -> StoreResult<()> {
        let own_seq = state::max_seq(&self.conn, self.identity.id())?;
        self.conn.execute(
            "INSERT INTO rejoin (id, restored_ms, own_seq_restored, own_seq_target) VALUES (1, ?1, ?2, NULL)
             ON CONFLICT (id) DO UPDATE SET restored_ms = excluded.restored_ms",
            params![now_ms as i64, own_seq as i64],
        )?;
        Ok(())
    }

    /// The rejoin mark, if set.
    pub fn rejoin_state(&self) -> StoreResult<Option<RejoinState>> {
        Ok(self
            .conn
            .query_row("SELECT restored_ms, own_seq_restored, own_seq_target FROM rejoin WHERE id = 1", [], |r| {
                Ok(RejoinState {
                    restored_ms: r.get::<_, i64>(0)? as u64,
                    own_seq_restored: r.get::<_, i64>(1)? as u64,
                    own_seq_target: r.get::<_, Option<i64>>(2)?.map(|seq| seq as u64),
                })
            })
            .optional()?)
    }

    /// A peer said (in its `Hello`) that it has this device's own events up
    /// to `own_seq_peer_has`. Raises the target; ends the rejoin if this
    /// device already has that much.
    pub fn rejoin_learn(&self, own_seq_peer_has: u64) -> StoreResult<RejoinProgress> {
        let tx = self.conn.unchecked_transaction()?;
        let changed = tx.execute(
            "UPDATE rejoin SET own_seq_target = MAX(COALESCE(own_seq_target, 0), ?1) WHERE id = 1",
            [own_seq_peer_has as i64],
        )?;
        if changed == 0 {
            return Ok(RejoinProgress::NotRejoining);
        }
        let progress = finish_if_caught_up(&tx, self.identity.id())?;
        tx.commit()?;
        Ok(progress)
    }

    /// Drops the mark when no active paired device is left to learn from
    /// (`roost pair remove` of every peer after a restore); returns whether
    /// it did.
    pub fn end_rejoin_if_unpaired(&self) -> StoreResult<bool> {
        if self.rejoin_state()?.is_none() || self.peers()?.iter().any(|peer| peer.removed_ms.is_none()) {
            return Ok(false);
        }
        self.conn.execute("DELETE FROM rejoin", [])?;
        Ok(true)
    }
}

/// Whether the store is rejoining (no own events allowed).
pub(crate) fn is_rejoining(conn: &Connection) -> StoreResult<bool> {
    Ok(conn.prepare_cached("SELECT 1 FROM rejoin WHERE id = 1")?.exists([])?)
}

/// Whether to take `event`, one of this device's own from a peer: yes while
/// rejoining and it is new here; no for the very event this device has.
/// Anything else is a fork of this device's log (two events with one id, or
/// peers ahead of a device that is not rejoining and would reuse their ids):
/// an error, so the peer's batch is refused and the session ends with it
/// logged, rather than the fork spreading silently.
pub(crate) fn accept_own_event(
    conn: &Connection,
    event: &Event,
    have: &VersionVector,
    rejoining: bool,
) -> StoreResult<bool> {
    if have.contains(event.id) {
        let stored: Option<Vec<u8>> = conn
            .prepare_cached("SELECT signature FROM events WHERE origin = ?1 AND seq = ?2")?
            .query_row(params![event.id.origin.as_bytes().as_slice(), event.id.seq as i64], |r| r.get(0))
            .optional()?;
        return match stored {
            Some(signature) if signature.as_slice() != event.signature.as_slice() => Err(StoreError::Corrupt(format!(
                "a peer holds another event {:?} of this device than this device: its log forked (it wrote after \
                 being restored from an old copy, before it had its own newer events back)",
                event.id
            ))),
            _ => Ok(false),
        };
    }
    if rejoining {
        return Ok(true);
    }
    Err(StoreError::Corrupt(format!(
        "a peer holds event {:?} of this device, which has its own events only up to seq {}: it was restored \
         from an old copy without `roost restore` (which makes it take them back first)",
        event.id,
        have.get(&event.id.origin)
    )))
}

/// Ends the rejoin, in the caller's transaction, once this device has its own
/// events up to the highest seq a peer reported.
pub(crate) fn finish_if_caught_up(conn: &Connection, own: DeviceId) -> StoreResult<RejoinProgress> {
    let target: Option<Option<i64>> = conn
        .prepare_cached("SELECT own_seq_target FROM rejoin WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let Some(target) = target else { return Ok(RejoinProgress::NotRejoining) };
    let have = state::max_seq(conn, own)?;
    match target {
        Some(target) if target as u64 <= have => {
            conn.prepare_cached("DELETE FROM rejoin WHERE id = 1")?.execute([])?;
            Ok(RejoinProgress::Done)
        }
        Some(target) => Ok(RejoinProgress::Waiting { have, target: target as u64 }),
        // No peer has said anything yet: `Waiting` for an unknown target.
        None => Ok(RejoinProgress::Waiting { have, target: u64::MAX }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeviceSlot, UserName};
    use crate::store::AppendMessage;

    fn alice() -> UserName {
        UserName::new("alice").unwrap()
    }

    fn append(store: &mut Store, now_ms: u64, subject: &str) -> StoreResult<()> {
        let raw = format!("Subject: {subject}\r\n\r\nbody\r\n").into_bytes();
        store
            .write(now_ms, |w| {
                let inbox = w.mailbox(&alice(), "INBOX")?;
                w.append(inbox, &[AppendMessage { raw: &raw, flags: vec![], internal_date: 1 }])
            })
            .map(|_| ())
    }

    /// Stores the blobs `events` name in `to`, from `from`: the sync layer
    /// does so before an ingest, which refuses an event whose blob is absent.
    fn copy_blobs(from: &Store, to: &Store, events: &[crate::log::Event]) {
        for blob in events.iter().flat_map(|e| e.op.blobs()) {
            to.blobs().put_named(&blob, &from.message(&blob).unwrap()).unwrap();
        }
    }

    // A device "restored" to an older copy of its log refuses local changes,
    // takes its own newer events back from a peer, ends the rejoin when it
    // has what the peer reported, and then continues with the next seq.
    #[test]
    fn a_restored_store_takes_its_own_events_back_before_writing() {
        let mut a = Store::in_memory([1; 32], DeviceSlot::new(0).unwrap(), 1).unwrap();
        let mut b = Store::in_memory([2; 32], DeviceSlot::new(1).unwrap(), 1).unwrap();
        a.write(10, |w| w.add_user(&alice(), "hash")).unwrap();
        let backup = a.events_missing(&Default::default(), 10_000).unwrap();
        append(&mut a, 20, "after the backup").unwrap();
        let all_of_a = a.events_missing(&Default::default(), 10_000).unwrap();
        copy_blobs(&a, &b, &all_of_a);
        b.ingest(30, &all_of_a).unwrap();
        let a_seq = a.version_vector().unwrap().get(&a.identity().id());

        // The restored copy: the backup's events only, marked.
        // (Marked first: that is what lets it take its own events in.)
        let mut restored = Store::in_memory([1; 32], DeviceSlot::new(0).unwrap(), 1).unwrap();
        restored.mark_restored(40).unwrap();
        restored.ingest(45, &backup).unwrap();
        assert_eq!(restored.rejoin_state().unwrap().map(|r| r.own_seq_target), Some(None));
        let err = append(&mut restored, 50, "too early").unwrap_err();
        assert!(matches!(err, StoreError::Rejoining), "{err}");
        assert!(err.to_string().contains("restored from a backup"), "{err}");
        let had = restored.version_vector().unwrap().get(&a.identity().id());
        assert!(had < a_seq, "the copy must be behind: {had} < {a_seq}");

        // B's Hello says how far it has A; B then streams what A lacks.
        let progress = restored.rejoin_learn(b.version_vector().unwrap().get(&a.identity().id())).unwrap();
        assert_eq!(progress, RejoinProgress::Waiting { have: had, target: a_seq });
        let missing = b.events_missing(&restored.version_vector().unwrap(), 10_000).unwrap();
        copy_blobs(&b, &restored, &missing);
        let (report, _) = restored.ingest(60, &missing).unwrap();
        assert_eq!(report.applied, missing.len() as u64);
        assert_eq!(restored.rejoin_state().unwrap(), None);
        assert_eq!(restored.state_digest().unwrap().combined(), a.state_digest().unwrap().combined());

        // Writes continue with the next seq, and B takes the new event.
        append(&mut restored, 70, "after the rejoin").unwrap();
        let new = restored.events_missing(&b.version_vector().unwrap(), 10_000).unwrap();
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].id.seq, a_seq + 1);
        copy_blobs(&restored, &b, &new);
        b.ingest(80, &new).unwrap();
        assert_eq!(restored.state_digest().unwrap().combined(), b.state_digest().unwrap().combined());
    }

    // Own events are accepted only while rejoining; a peer reporting no more
    // than the device has ends the rejoin at once; an unpaired store drops it.
    #[test]
    fn own_events_are_refused_outside_a_rejoin_and_a_caught_up_peer_ends_it() {
        let mut a = Store::in_memory([1; 32], DeviceSlot::new(0).unwrap(), 1).unwrap();
        a.write(10, |w| w.add_user(&alice(), "hash")).unwrap();
        let own = a.events_missing(&Default::default(), 10_000).unwrap();
        // A copy that is not rejoining refuses its own newer events: it would reuse their ids.
        let mut copy = Store::in_memory([1; 32], DeviceSlot::new(0).unwrap(), 1).unwrap();
        let err = copy.ingest(20, &own).unwrap_err();
        assert!(err.to_string().contains("without `roost restore`"), "{err}");
        assert_eq!(copy.version_vector().unwrap().total(), 0, "nothing of the batch is stored");
        // The same copy, once it wrote on its own, has a forked log: a peer's
        // event with one of its ids but other content is refused too.
        copy.write(15, |w| w.add_user(&UserName::new("bob").unwrap(), "hash")).unwrap();
        let err = copy.ingest(20, &own).unwrap_err();
        assert!(err.to_string().contains("its log forked"), "{err}");
        // Its own events sent back to it unchanged are plain duplicates.
        let mine = copy.events_missing(&Default::default(), 10_000).unwrap();
        let (report, _) = copy.ingest(25, &mine).unwrap();
        assert_eq!((report.applied, report.duplicates), (0, mine.len() as u64));

        a.mark_restored(30).unwrap();
        assert_eq!(a.rejoin_learn(1).unwrap(), RejoinProgress::Done);
        assert_eq!(a.rejoin_state().unwrap(), None);
        assert_eq!(a.rejoin_learn(1).unwrap(), RejoinProgress::NotRejoining);
        append(&mut a, 40, "writes again").unwrap();

        a.mark_restored(50).unwrap();
        assert!(a.end_rejoin_if_unpaired().unwrap(), "no peers: nobody to wait for");
        append(&mut a, 60, "writes again").unwrap();
    }
}
