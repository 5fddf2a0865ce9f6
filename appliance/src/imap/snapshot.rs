//! One read-only copy of a mailbox's entries shared by every session that
//! selects it. SELECT of a large mailbox then costs a map lookup (or, when
//! the mailbox changed since the copy was made, reading only the changes)
//! instead of reading and decoding every entry; 50 sessions on a
//! 10,000-message mailbox hold one copy instead of 50.
//!
//! A snapshot is versioned by the mailbox's HIGHESTMODSEQ: every change to
//! an entry IMAP may show raises it, and the changes above a version are
//! what `Store::entries_changed_since` and `Store::vanished_since` return
//! (the same catch-up `Selected::sync` does). Applying them twice is
//! harmless, so a snapshot that is a little ahead of its version (a commit
//! by another process between two reads) is still a sound base.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use roost_core::model::Flag;
use roost_core::model::MailboxId;
use roost_core::model::Uid;
use roost_core::store::{EntryInfo, MailboxCounts, Store, StoreResult};

/// Entries of one mailbox in UID order, shared read-only.
pub type SharedEntries = Arc<Vec<EntryInfo>>;

/// Mailboxes whose snapshot is kept while no session has them selected.
/// Snapshots a session holds are never counted: they live as long as it does.
const UNHELD_SNAPSHOTS_MAX: usize = 16;

/// See the module doc. Cloning shares the cache.
#[derive(Debug, Clone, Default)]
pub struct SnapshotCache {
    inner: Arc<Mutex<Snapshots>>,
}

#[derive(Debug, Default)]
struct Snapshots {
    by_mailbox: HashMap<MailboxId, Snapshot>,
    /// Bumped per lookup: the least recently used unheld snapshot goes first.
    clock: u64,
}

#[derive(Debug)]
struct Snapshot {
    /// HIGHESTMODSEQ the entries are current at.
    modseq: u64,
    entries: SharedEntries,
    /// STATUS counts of `entries`, computed at the first STATUS.
    counts: Option<MailboxCounts>,
    last_used: u64,
}

impl SnapshotCache {
    /// The entries of `mailbox`, current at least at HIGHESTMODSEQ
    /// `version`. `store` must be the guard `version` was read under, so no
    /// commit falls between the two.
    pub fn entries(&self, store: &Store, mailbox: MailboxId, version: u64) -> StoreResult<SharedEntries> {
        let cached = self.lock().by_mailbox.get(&mailbox).map(|s| (s.modseq, s.entries.clone()));
        let entries = match cached {
            Some((modseq, entries)) if modseq == version => {
                self.touch(mailbox);
                return Ok(entries);
            }
            // Older: read only what changed since (unless most of it did).
            Some((modseq, entries)) if modseq < version => match caught_up(store, mailbox, modseq, &entries)? {
                Some(fresh) => Arc::new(fresh),
                None => Arc::new(store.entries(mailbox)?),
            },
            // None, or newer than `version` (cannot happen under one
            // guard; read afresh rather than guess).
            _ => Arc::new(store.entries(mailbox)?),
        };
        self.insert(mailbox, version, entries.clone());
        Ok(entries)
    }

    /// STATUS counts of [`SnapshotCache::entries`], counted once per
    /// snapshot: a STATUS of an unchanged mailbox costs a lookup.
    pub fn counts(&self, store: &Store, mailbox: MailboxId, version: u64) -> StoreResult<MailboxCounts> {
        let entries = self.entries(store, mailbox, version)?;
        let same = |s: &&mut Snapshot| Arc::ptr_eq(&s.entries, &entries);
        if let Some(counts) = self.lock().by_mailbox.get_mut(&mailbox).filter(same).and_then(|s| s.counts) {
            return Ok(counts);
        }
        let counts = count(&entries);
        if let Some(snapshot) = self.lock().by_mailbox.get_mut(&mailbox).filter(same) {
            snapshot.counts = Some(counts);
        }
        Ok(counts)
    }

    /// The STATUS counts kept with `entries` if they are the snapshot of
    /// `mailbox` and were counted already; no store read.
    pub fn counted(&self, mailbox: MailboxId, entries: &SharedEntries) -> Option<MailboxCounts> {
        let snapshots = self.lock();
        let snapshot = snapshots.by_mailbox.get(&mailbox)?;
        if Arc::ptr_eq(&snapshot.entries, entries) {
            snapshot.counts
        } else {
            None
        }
    }

    fn touch(&self, mailbox: MailboxId) {
        let mut snapshots = self.lock();
        snapshots.clock += 1;
        let now = snapshots.clock;
        if let Some(snapshot) = snapshots.by_mailbox.get_mut(&mailbox) {
            snapshot.last_used = now;
        }
    }

    fn insert(&self, mailbox: MailboxId, modseq: u64, entries: SharedEntries) {
        let mut snapshots = self.lock();
        snapshots.clock += 1;
        let last_used = snapshots.clock;
        // A concurrent reader may have stored a newer one meanwhile: keep it.
        if snapshots.by_mailbox.get(&mailbox).is_some_and(|s| s.modseq > modseq) {
            return;
        }
        snapshots.by_mailbox.insert(mailbox, Snapshot { modseq, entries, counts: None, last_used });
        // Bound the snapshots nobody holds (the cache's own Arc is the only one).
        loop {
            let unheld = snapshots.by_mailbox.iter().filter(|(_, s)| Arc::strong_count(&s.entries) == 1);
            let (count, oldest) = unheld.fold((0, None::<(MailboxId, u64)>), |(n, oldest), (id, s)| {
                let older = oldest.is_none_or(|(_, t)| s.last_used < t);
                (n + 1, if older { Some((*id, s.last_used)) } else { oldest })
            });
            match oldest {
                Some((id, _)) if count > UNHELD_SNAPSHOTS_MAX => snapshots.by_mailbox.remove(&id),
                _ => break,
            };
        }
    }

    fn lock(&self) -> MutexGuard<'_, Snapshots> {
        // Plain data: usable after a panic elsewhere.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What `Store::mailbox_counts` adds up, from entries in memory.
pub fn count(entries: &[EntryInfo]) -> MailboxCounts {
    let (seen, deleted) = (Flag::seen(), Flag::deleted());
    let mut counts = MailboxCounts { messages: entries.len() as u64, ..MailboxCounts::default() };
    for entry in entries {
        counts.size += entry.size;
        if !entry.flags.contains(&seen) {
            counts.unseen += 1;
        }
        if entry.flags.contains(&deleted) {
            counts.deleted += 1;
            counts.deleted_size += entry.size;
        }
    }
    counts
}

/// `entries` (current at `since`) with the changes above `since` applied,
/// or `None` when so much changed that reading the mailbox is cheaper.
fn caught_up(
    store: &Store,
    mailbox: MailboxId,
    since: u64,
    entries: &[EntryInfo],
) -> StoreResult<Option<Vec<EntryInfo>>> {
    let changed = store.entries_changed_since(mailbox, since)?;
    let vanished = store.vanished_since(mailbox, since)?;
    if changed.len() + vanished.len() > entries.len() / 2 {
        return Ok(None);
    }
    Ok(Some(merge(entries, changed, &vanished.into_iter().map(|(uid, _)| uid).collect::<Vec<_>>())))
}

/// `entries` without the UIDs in `vanished`, with `changed` replacing the
/// entry of the same UID or added in UID order. All three are in UID order.
pub fn merge(entries: &[EntryInfo], changed: Vec<EntryInfo>, vanished: &[Uid]) -> Vec<EntryInfo> {
    let mut out = Vec::with_capacity(entries.len() + changed.len());
    let mut changed = changed.into_iter().peekable();
    for entry in entries {
        while let Some(new) = changed.next_if(|c| c.uid < entry.uid) {
            out.push(new);
        }
        if let Some(new) = changed.next_if(|c| c.uid == entry.uid) {
            out.push(new);
        } else if vanished.binary_search(&entry.uid).is_err() {
            out.push(entry.clone());
        }
    }
    out.extend(changed);
    out
}

#[cfg(test)]
mod tests {
    use roost_core::model::{BlobHash, EntryId, Flag, ItemId, ModSeq, Uid};
    use roost_core::store::EntryInfo;

    use super::merge;

    fn entry(uid: u32, modseq: u64) -> EntryInfo {
        EntryInfo {
            entry_id: EntryId::from_raw(uid.into()),
            item_id: ItemId::from_raw(uid.into()),
            uid: Uid::new(uid).unwrap(),
            flags: if modseq > 1 { vec![Flag::seen()] } else { Vec::new() },
            modseq: ModSeq::new(modseq).unwrap(),
            internal_date: 0,
            size: 1,
            blob: BlobHash::of(&uid.to_le_bytes()),
        }
    }

    #[test]
    fn merge_replaces_adds_and_removes_by_uid() {
        let base: Vec<EntryInfo> = [2, 4, 6, 8].into_iter().map(|u| entry(u, 1)).collect();
        let changed = vec![entry(1, 2), entry(4, 2), entry(7, 2), entry(9, 2)];
        let vanished = [Uid::new(6).unwrap(), Uid::new(8).unwrap()];
        let merged = merge(&base, changed, &vanished);
        let got: Vec<(u32, u64)> = merged.iter().map(|e| (e.uid.get(), e.modseq.get())).collect();
        assert_eq!(got, [(1, 2), (2, 1), (4, 2), (7, 2), (9, 2)]);
    }
}
