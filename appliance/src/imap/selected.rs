//! The selected mailbox as this session last told the client about it: the
//! message sequence, flags and MODSEQs. `sync` compares it with the store and
//! writes the untagged updates (EXISTS, EXPUNGE or VANISHED, FETCH FLAGS) that
//! bring the client up to date (RFC 9051 7.4, RFC 7162 3.2.10).

use std::sync::Arc;

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use roost_core::model::Uid;
use roost_core::store::{EntryInfo, MailboxInfo, Store, StoreResult};

use crate::imap::cmd::CmdError;
use crate::imap::conn::Enabled;
use crate::imap::snapshot::{SharedEntries, SnapshotCache};
use crate::imap::wire;

/// Whether expunges may be announced now. RFC 9051 7.5.1: not during FETCH,
/// STORE, SEARCH (by sequence number), since the client could not match
/// message numbers to its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpungePolicy {
    /// Announce EXPUNGE/VANISHED.
    Announce,
    /// Keep expunged messages in the sequence until a later command.
    Hold,
}

/// What `sync` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The client is up to date (or expunges are held).
    Current,
    /// The mailbox was deleted (by another session or device): the session
    /// cannot go on in it; `* BYE` was written.
    MailboxGone,
}

/// See the module doc.
#[derive(Debug)]
pub struct Selected {
    /// The mailbox as of SELECT (id, name, UIDVALIDITY).
    pub info: MailboxInfo,
    /// EXAMINE, or SELECT of a mailbox we may not change.
    pub read_only: bool,
    /// Messages in sequence order (UID order), as the client knows them.
    /// Shared with the other sessions that selected the mailbox at the same
    /// HIGHESTMODSEQ (`imap::snapshot`); copied on this session's first
    /// change to it.
    pub messages: SharedEntries,
    /// HIGHESTMODSEQ the client was told about last.
    pub highest_modseq: u64,
    /// The mailbox's HIGHESTMODSEQ when this view was last read from the
    /// store: every change above it is still to be read (`sync` reads only
    /// those, never the whole mailbox again).
    synced_modseq: u64,
    /// UIDs of `messages` removed from the store but not yet announced
    /// (held while expunges may not be announced, [`ExpungePolicy::Hold`]).
    expunged: Vec<Uid>,
    /// Set when a change may have touched the mailbox; `sync` reads then.
    pub dirty: bool,
    /// Set when the user's mailbox list changed since SELECT (a rename, a
    /// create that changes how names are shown): the name in `info` may no
    /// longer be this mailbox's.
    pub names_changed: bool,
}

impl Selected {
    /// Loads the mailbox, from the sessions' shared snapshots when there
    /// are. `info` must have been read under the same `store` guard (or
    /// before the entries, so that a change committed in between is read
    /// again by the next `sync` rather than missed).
    pub fn open(
        store: &Store,
        info: MailboxInfo,
        read_only: bool,
        snapshots: Option<&SnapshotCache>,
    ) -> StoreResult<Selected> {
        let messages = match snapshots {
            Some(snapshots) => snapshots.entries(store, info.id, info.highest_modseq)?,
            None => Arc::new(store.entries(info.id)?),
        };
        let highest_modseq = info.highest_modseq;
        Ok(Selected {
            info,
            read_only,
            messages,
            highest_modseq,
            synced_modseq: highest_modseq,
            expunged: Vec::new(),
            dirty: false,
            names_changed: false,
        })
    }

    /// The view's mailbox is `name` and the view has every change the
    /// session has heard of: what STATUS of it may answer from (the
    /// HIGHESTMODSEQ of its last read, `modseq`), as a NOOP would.
    pub fn current_as(&self, name: &str) -> Option<u64> {
        let current = !self.dirty && !self.names_changed && self.expunged.is_empty() && self.info.name == name;
        current.then_some(self.synced_modseq)
    }

    /// Highest UID in the mailbox.
    pub fn uid_max(&self) -> Option<u32> {
        self.messages.last().map(|m| m.uid.get())
    }

    /// Indices of the messages `set` names, in order. Message numbers past
    /// the end are an error (RFC 9051 9 seq-number); UIDs that do not exist
    /// are skipped. Each range costs two binary searches on the sorted UIDs,
    /// not a pass over the mailbox.
    pub fn resolve(&self, set: &SequenceSet, by_uid: bool) -> Result<Vec<usize>, CmdError> {
        if by_uid {
            let Some(uid_max) = self.uid_max() else { return Ok(Vec::new()) };
            let value = |v: &SeqOrUid| match v {
                SeqOrUid::Value(v) => v.get(),
                SeqOrUid::Asterisk => uid_max,
            };
            let ranges = set.0.as_ref().iter().map(|seq| {
                let (lo, hi) = match seq {
                    Sequence::Single(v) => (value(v), value(v)),
                    Sequence::Range(a, b) => min_max(value(a), value(b)),
                };
                (
                    self.messages.partition_point(|m| m.uid.get() < lo),
                    self.messages.partition_point(|m| m.uid.get() <= hi),
                )
            });
            return Ok(union(ranges.collect()));
        }
        let count = self.messages.len() as u32;
        let value = |v: &SeqOrUid| -> Result<u32, CmdError> {
            match v {
                SeqOrUid::Value(n) if n.get() <= count => Ok(n.get()),
                SeqOrUid::Value(_) => Err(CmdError::Bad("Message sequence number out of range".into())),
                SeqOrUid::Asterisk if count > 0 => Ok(count),
                SeqOrUid::Asterisk => Err(CmdError::Bad("No messages in the mailbox".into())),
            }
        };
        let mut ranges = Vec::with_capacity(set.0.as_ref().len());
        for seq in set.0.as_ref() {
            let (lo, hi) = match seq {
                Sequence::Single(v) => {
                    let n = value(v)?;
                    (n, n)
                }
                Sequence::Range(a, b) => min_max(value(a)?, value(b)?),
            };
            ranges.push((lo as usize - 1, hi as usize));
        }
        Ok(union(ranges))
    }

    /// Brings the client up to date with the store (see module doc). Reads
    /// only what changed since the last read: entries whose MODSEQ is above
    /// `synced_modseq` and the tombstones above it. Flag changes of `quiet`
    /// are applied without a FETCH (messages the command reports itself).
    pub fn sync(
        &mut self,
        store: &Store,
        enabled: Enabled,
        policy: ExpungePolicy,
        out: &mut Vec<u8>,
        quiet: &[Uid],
    ) -> StoreResult<SyncOutcome> {
        if !self.dirty {
            return Ok(SyncOutcome::Current);
        }
        // The mailbox's HIGHESTMODSEQ first, then the changes above the last
        // one: a change committed between the reads is read again next time
        // (and compares equal), never missed.
        let Some((uid_next, store_modseq)) = store.mailbox_progress(self.info.id)? else {
            // Deleted under us (by another session or device): RFC 9051 7.1.
            out.extend_from_slice(b"* BYE [NONEXISTENT] The selected mailbox was deleted\r\n");
            self.dirty = false;
            return Ok(SyncOutcome::MailboxGone);
        };
        let changed = store.entries_changed_since(self.info.id, self.synced_modseq)?;
        for (uid, _) in store.vanished_since(self.info.id, self.synced_modseq)? {
            // UIDs the view never had (added and removed between two reads) are not news.
            if self.seq_of(uid).is_some() && !self.expunged.contains(&uid) {
                self.expunged.push(uid);
            }
        }
        self.synced_modseq = self.synced_modseq.max(store_modseq);
        // Expunges, highest message number first so earlier numbers stay valid.
        if !self.expunged.is_empty() && policy == ExpungePolicy::Announce {
            let expunged = std::mem::take(&mut self.expunged);
            let mut gone: Vec<usize> = expunged.into_iter().filter_map(|uid| self.seq_of(uid)).map(|n| n - 1).collect();
            gone.sort_unstable();
            if enabled.qresync {
                let uids: Vec<u32> = gone.iter().map(|i| self.messages[*i].uid.get()).collect();
                out.extend_from_slice(format!("* VANISHED {}\r\n", wire::number_set(&uids)).as_bytes());
            }
            for i in gone.iter().rev() {
                if !enabled.qresync {
                    out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                }
                Arc::make_mut(&mut self.messages).remove(*i);
            }
        }
        let held = !self.expunged.is_empty();
        // Flag changes of messages the client knows, then new messages: UIDs
        // above every UID the client has seen (`changed` is in UID order).
        let uid_max = self.uid_max().unwrap_or(0);
        let before = self.messages.len();
        for now in changed {
            if now.uid.get() > uid_max {
                Arc::make_mut(&mut self.messages).push(now);
                continue;
            }
            let Ok(idx) = self.messages.binary_search_by_key(&now.uid, |m| m.uid) else { continue };
            let message = &self.messages[idx];
            // Only a real change copies a shared view.
            if now.flags != message.flags || now.modseq != message.modseq {
                if !quiet.contains(&now.uid) {
                    out.extend_from_slice(&flags_fetch(idx + 1, &now, enabled, true));
                }
                Arc::make_mut(&mut self.messages)[idx] = now;
            }
        }
        if self.messages.len() != before {
            out.extend_from_slice(format!("* {} EXISTS\r\n", self.messages.len()).as_bytes());
        }
        if enabled.condstore && store_modseq > self.highest_modseq && !held {
            self.highest_modseq = store_modseq;
        }
        self.info.uid_next = uid_next;
        self.dirty = held;
        Ok(SyncOutcome::Current)
    }

    /// Position (1-based) of `uid`.
    pub fn seq_of(&self, uid: Uid) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok().map(|i| i + 1)
    }
}

/// Whether `set` names `n`, `*` meaning `largest`. Ranges are compared, never
/// expanded: `1:4294967295` costs the same as `1`.
pub fn set_contains(set: &SequenceSet, n: u32, largest: u32) -> bool {
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0.as_ref().iter().any(|seq| match seq {
        Sequence::Single(v) => value(v) == n,
        Sequence::Range(a, b) => {
            let (lo, hi) = min_max(value(a), value(b));
            lo <= n && n <= hi
        }
    })
}

/// `* n FETCH (FLAGS (...) [UID u] [MODSEQ (m)])`.
pub fn flags_fetch(seq: usize, message: &EntryInfo, enabled: Enabled, with_uid: bool) -> Vec<u8> {
    let mut items = vec![format!("FLAGS ({})", flag_list(message))];
    if with_uid || enabled.qresync {
        items.push(format!("UID {}", message.uid.get()));
    }
    if enabled.condstore {
        items.push(format!("MODSEQ ({})", message.modseq.get()));
    }
    format!("* {seq} FETCH ({})\r\n", items.join(" ")).into_bytes()
}

/// The message's flags, space-separated.
pub fn flag_list(message: &EntryInfo) -> String {
    message.flags.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(" ")
}

/// The indices covered by half-open `ranges`, each once, in order: sorting
/// the ranges keeps `1:*,1:*,...` from costing the mailbox size per range.
fn union(mut ranges: Vec<(usize, usize)>) -> Vec<usize> {
    ranges.sort_unstable();
    let mut out = Vec::new();
    let mut covered = 0;
    for (start, end) in ranges {
        let start = start.max(covered);
        if start < end {
            out.extend(start..end);
            covered = end;
        }
    }
    out
}

fn min_max(a: u32, b: u32) -> (u32, u32) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

#[cfg(test)]
mod tests {
    use crate::imap::testing::Harness;

    /// Message numbers of the `* n FETCH` lines, in order.
    fn numbers(out: &str) -> Vec<u32> {
        out.lines().filter(|l| l.contains(" FETCH ")).filter_map(|l| l.split(' ').nth(1)?.parse().ok()).collect()
    }

    /// UID and message-number sets name each message once, in order, however
    /// their ranges overlap or are written.
    #[test]
    fn sets_resolve_each_message_once_in_order() {
        let mut h = Harness::logged_in();
        for i in 1..=5 {
            h.append("INBOX", &format!("Subject: {i}\r\n\r\n{i}\r\n"));
        }
        h.transact("a SELECT INBOX", "OK");
        assert_eq!(numbers(&h.transact("b FETCH 4:2,1,2:3,5:*,1:* (FLAGS)", "OK")), [1, 2, 3, 4, 5]);
        let out = h.transact("c UID FETCH 1:* (FLAGS)", "OK");
        let uids: Vec<u32> = out
            .lines()
            .filter_map(|l| l.split("UID ").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .collect();
        assert_eq!(uids.len(), 5, "{out}");
        let set = format!("{}:{},{},*:{}", uids[1], uids[2], uids[1], uids[3]);
        assert_eq!(numbers(&h.transact(&format!("d UID FETCH {set} (FLAGS)"), "OK")), [2, 3, 4, 5]);
        // UIDs that do not exist are skipped; message numbers past the end are an error.
        let beyond = format!("{}:{}", uids[4] + 1, uids[4] + 1000);
        assert_eq!(numbers(&h.transact(&format!("e UID FETCH {beyond} (FLAGS)"), "OK")), Vec::<u32>::new());
        h.transact("f FETCH 2,6 (FLAGS)", "BAD");
    }
}
