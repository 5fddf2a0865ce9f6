//! Events from other devices, and what replication asks of the store besides
//! applying them: holding events until their causal dependencies are here,
//! stability-gated exposure of new UIDs, and the causally stable prefix for
//! compaction.
//!
//! Driving contract (the sync layer, or the simulator): hand every received
//! event to [`Store::ingest`] in any order, with duplicates; stream to a peer
//! what [`Store::events_missing`] returns for its version vector; call
//! [`Store::expose`] whenever time passes, with a hold of about one round trip
//! while peers are reachable and 0 when none is.

use std::collections::HashSet;

use crate::log::event::Event;
use crate::log::version_vector::VersionVector;
use crate::merge::Effects;
use crate::model::{BlobHash, EventId};
use crate::store::spool::{self, SpooledBlob};
use crate::store::{rejoin, state, Store, StoreError, StoreResult};

/// Most events held for missing dependencies. A peer streams in causal order,
/// so only reordering or loss fills this; 100k small events is tens of MB.
pub const PENDING_EVENTS_MAX: u64 = 100_000;

/// What one [`Store::ingest`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Events applied (including held ones that became ready).
    pub applied: u64,
    /// Events this device had already.
    pub duplicates: u64,
    /// Events waiting for their dependencies after this call (all calls).
    pub pending: u64,
    /// `Rekey` events this device emitted for entries that arrived at or below
    /// UIDs IMAP may have shown here.
    pub rekeys: u64,
    /// This call ended a rejoin after a restore (`rejoin.rs`): the device had
    /// its own events back up to what a peer reported, and writes again.
    pub rejoined: bool,
}

impl Store {
    /// Takes events from peers, in any order and with duplicates, in one
    /// transaction: verifies each signature, holds those whose dependencies
    /// are missing, and applies every event that is ready, repeatedly, in a
    /// causal order. Applying is idempotent (an event is applied once) and the
    /// merge rules make concurrent events commute.
    ///
    /// Errors: a bad signature or undecodable event fails the whole call
    /// (nothing is written; the caller drops the peer's batch).
    pub fn ingest(&mut self, now_ms: u64, events: &[Event]) -> StoreResult<(IngestReport, Effects)> {
        self.ingest_spooled(now_ms, events, &[])
    }

    /// [`Store::ingest`], also putting `blobs` (small blobs the events name,
    /// as received, hash-checked here) into the blob spool in the same
    /// transaction: the events and their blobs become durable in one commit
    /// (see `spool.rs` for why and what a crash leaves).
    pub fn ingest_spooled(
        &mut self,
        now_ms: u64,
        events: &[Event],
        blobs: &[SpooledBlob],
    ) -> StoreResult<(IngestReport, Effects)> {
        self.ingest_from_peer(now_ms, events, blobs, &HashSet::new())
    }

    /// [`Store::ingest_spooled`], where the peer said the blobs in `gone`
    /// were collected there (docs/replication.md, "Blob garbage
    /// collection"): an event naming one applies without it, since the
    /// removal of every entry naming it follows in the peer's log. Every
    /// other blob an applied event names must be stored (checked under the
    /// write lock, so blob GC cannot remove it between the check and the
    /// commit): else [`StoreError::EventBlobMissing`] and nothing is applied.
    pub fn ingest_from_peer(
        &mut self,
        now_ms: u64,
        events: &[Event],
        blobs: &[SpooledBlob],
        gone: &HashSet<BlobHash>,
    ) -> StoreResult<(IngestReport, Effects)> {
        let have = state::version_vector(&self.conn)?;
        for event in events.iter().filter(|e| !have.contains(e.id)) {
            // Untrusted input: the struct's fields may not match its bytes.
            // (Events already applied are skipped unverified: nothing of them is used.)
            let checked = Event::decode(
                event.id,
                event.hlc,
                event.deps_bytes.clone(),
                event.payload_bytes.clone(),
                event.signature,
            )?;
            if checked != *event {
                return Err(StoreError::Corrupt(format!("event {:?} does not match its signed bytes", event.id)));
            }
        }
        let own = self.identity.id();
        self.write(now_ms, |w| {
            let mut report = IngestReport::default();
            spool::spool(w.blobs(), w.conn(), blobs)?;
            let have = state::version_vector(w.conn())?;
            let rejoining = rejoin::is_rejoining(w.conn())?;
            for event in events {
                let new_here = if event.id.origin == own {
                    // A restored device takes its own events back; otherwise a
                    // peer's copy of one must be the very event this device has.
                    rejoin::accept_own_event(w.conn(), event, &have, rejoining)?
                } else {
                    !have.contains(event.id)
                };
                if new_here {
                    state::pending_put(w.conn(), event, now_ms)?;
                } else {
                    report.duplicates += 1;
                }
            }
            if PENDING_EVENTS_MAX < state::pending_count(w.conn())? {
                return Err(StoreError::TooManyPending(PENDING_EVENTS_MAX));
            }
            report.applied = apply_ready(w, gone)?;
            report.pending = state::pending_count(w.conn())?;
            report.rekeys = w.rekeys();
            report.rejoined = rejoin::finish_if_caught_up(w.conn(), own)? == rejoin::RejoinProgress::Done;
            Ok(report)
        })
    }

    /// Raises each mailbox's exposure watermark over the entries that have
    /// been held at least `hold_ms` (stability-gated exposure: a new UID waits
    /// about one round trip while peers are reachable, so their concurrent
    /// entries with lower UIDs arrive before IMAP shows it and need no re-key;
    /// with `hold_ms` 0 everything placed is shown). The uncovered entries get
    /// a new MODSEQ so CONDSTORE clients see them.
    pub fn expose(&mut self, now_ms: u64, hold_ms: u64) -> StoreResult<Effects> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let effects = expose_held(&tx, now_ms, hold_ms, self.identity.slot())?;
        tx.commit()?;
        Ok(effects)
    }

    /// Sets the hold every write applies when it ends (see [`Store::expose`]):
    /// about one round trip while peers are reachable, 0 (the default: show at
    /// commit) when none is. Entries still held after a write are shown by a
    /// later write or an explicit `expose`.
    pub fn set_exposure_hold_ms(&mut self, hold_ms: u64) {
        self.exposure_hold_ms = hold_ms;
    }

    /// Entries placed but not yet shown to IMAP (held by the exposure gate).
    pub fn held_entries(&self) -> StoreResult<u64> {
        Ok(self.conn.query_row(&format!("SELECT COUNT(*) FROM {}", state::HELD_ENTRIES), [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Events held for missing dependencies.
    pub fn pending_events(&self) -> StoreResult<u64> {
        state::pending_count(&self.conn)
    }

    /// The causally stable prefix: events every paired device has
    /// acknowledged (the pointwise minimum of this device's vector and every
    /// active peer's acknowledged vector). Only these may ever be folded
    /// ([`Store::compact`]).
    pub fn stable_vector(&self) -> StoreResult<VersionVector> {
        let mine = state::version_vector(&self.conn)?;
        let peers = self.peers()?;
        let acked: Vec<&VersionVector> =
            peers.iter().filter(|p| p.removed_ms.is_none()).map(|p| &p.stats.acked).collect();
        Ok(VersionVector::meet(std::iter::once(&mine).chain(acked)))
    }
}

/// Raises the exposure watermark of every mailbox over what has been held
/// `hold_ms`, in the caller's transaction.
pub(crate) fn expose_held(
    conn: &rusqlite::Connection,
    now_ms: u64,
    hold_ms: u64,
    slot: crate::model::DeviceSlot,
) -> StoreResult<Effects> {
    let mut effects = Effects::default();
    for (mailbox, uid) in state::exposable(conn, now_ms, hold_ms)? {
        let modseq = crate::model::ModSeq::next(state::last_modseq(conn)?, now_ms, slot);
        state::set_last_modseq(conn, modseq)?;
        if state::raise_exposure(conn, mailbox, uid, modseq)? {
            effects.mailboxes.insert(mailbox);
        }
    }
    Ok(effects)
}

/// Applies held events that are next in causal order until none is; returns
/// how many were applied.
fn apply_ready(w: &mut crate::store::Writer<'_>, gone: &HashSet<BlobHash>) -> StoreResult<u64> {
    let mut applied = 0;
    loop {
        let mut progress = false;
        let have = state::version_vector(w.conn())?;
        state::pending_prune(w.conn(), &have)?;
        for origin in state::pending_origins(w.conn())? {
            let next = EventId { origin, seq: have.get(&origin) + 1 };
            let Some(event) = state::pending_get(w.conn(), next)? else {
                continue;
            };
            let vv = state::version_vector(w.conn())?;
            if !vv.dominates(&event.deps) {
                continue;
            }
            state::pending_delete(w.conn(), next)?;
            require_blobs(w, &event, gone)?;
            let res = w.apply_remote(&event)?;
            assert!(res == crate::store::RemoteApply::Applied, "ready event {next:?} was not applied: {res:?}");
            applied += 1;
            progress = true;
        }
        if !progress {
            return Ok(applied);
        }
    }
}

/// Fails unless every blob `event` names is stored (file or spool) or the
/// peer said it is gone.
fn require_blobs(w: &crate::store::Writer<'_>, event: &Event, gone: &HashSet<BlobHash>) -> StoreResult<()> {
    for blob in event.op.blobs() {
        if gone.contains(&blob) || w.blobs().contains(&blob) || spool::is_spooled(w.conn(), &blob)? {
            continue;
        }
        return Err(StoreError::EventBlobMissing {
            event: format!("{}:{}", event.id.origin.short(), event.id.seq),
            blob: blob.to_hex(),
        });
    }
    Ok(())
}
