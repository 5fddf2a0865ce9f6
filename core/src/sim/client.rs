//! A simulated IMAP client that caches like a phone: per mailbox it keeps the
//! UIDVALIDITY, the UIDs it knows with their messages and flags, and the
//! HIGHESTMODSEQ it last saw, and resyncs with QRESYNC semantics over the
//! store's read API (`vanished_since`, entries changed since a MODSEQ). Each
//! resync checks what a real client relies on; a failed check is a violation.

use std::collections::BTreeMap;

use crate::model::{EntryId, Flag, MailboxId, UidValidity};
use crate::store::{Store, StoreResult};

/// What the client knows of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cached {
    entry: EntryId,
    flags: Vec<Flag>,
}

/// One client's cache of one mailbox on one device.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) device: usize,
    pub(crate) mailbox: MailboxId,
    uid_validity: Option<UidValidity>,
    cache: BTreeMap<u32, Cached>,
    highest_modseq: u64,
    /// Highest UID ever shown to this client in this mailbox.
    uid_seen_max: u32,
    /// Every UID ever shown, with the entry it named: a UID never names
    /// another message.
    ever: BTreeMap<u32, EntryId>,
    /// Resyncs done.
    pub(crate) resyncs: u64,
}

impl Client {
    pub(crate) fn new(device: usize, mailbox: MailboxId) -> Client {
        Client {
            device,
            mailbox,
            uid_validity: None,
            cache: BTreeMap::new(),
            highest_modseq: 0,
            uid_seen_max: 0,
            ever: BTreeMap::new(),
            resyncs: 0,
        }
    }

    /// SELECT (QRESYNC uidvalidity modseq): applies VANISHED and the changes
    /// since the cached HIGHESTMODSEQ, then compares the cache with the
    /// server's full state. Returns the violations found.
    pub(crate) fn resync(&mut self, store: &Store) -> StoreResult<Vec<String>> {
        let mut out = Vec::new();
        let Some(info) = store.mailbox_by_id(self.mailbox)? else {
            return Ok(out); // Deleted: the client cannot select it; keeps its cache.
        };
        self.resyncs += 1;
        let who = format!("client of device {} in {:?}", self.device, self.mailbox);
        match self.uid_validity {
            Some(v) if v != info.uid_validity => {
                out.push(format!("{who}: UIDVALIDITY changed {} -> {}", v.get(), info.uid_validity.get()));
            }
            _ => self.uid_validity = Some(info.uid_validity),
        }
        if info.highest_modseq < self.highest_modseq {
            out.push(format!("{who}: HIGHESTMODSEQ went back {} -> {}", self.highest_modseq, info.highest_modseq));
        }
        // RFC 7162 3.2.5.2: VANISHED (EARLIER) for UIDs removed since the MODSEQ.
        for (uid, _) in store.vanished_since(self.mailbox, self.highest_modseq)? {
            self.cache.remove(&uid.get());
        }
        let entries = store.entries(self.mailbox)?;
        // FETCH 1:* (FLAGS) (CHANGEDSINCE modseq).
        for entry in entries.iter().filter(|e| self.highest_modseq < e.modseq.get()) {
            let uid = entry.uid.get();
            if !self.cache.contains_key(&uid) && !self.ever.contains_key(&uid) && uid <= self.uid_seen_max {
                out.push(format!("{who}: new UID {uid} appeared at or below UID {} already shown", self.uid_seen_max));
            }
            match self.ever.get(&uid) {
                Some(e) if *e != entry.entry_id => {
                    out.push(format!("{who}: UID {uid} reused for another message ({e:?} then {:?})", entry.entry_id));
                }
                _ => {
                    self.ever.insert(uid, entry.entry_id);
                }
            }
            self.uid_seen_max = self.uid_seen_max.max(uid);
            self.cache.insert(uid, Cached { entry: entry.entry_id, flags: entry.flags.clone() });
        }
        self.highest_modseq = self.highest_modseq.max(info.highest_modseq);
        let server: BTreeMap<u32, Cached> =
            entries.into_iter().map(|e| (e.uid.get(), Cached { entry: e.entry_id, flags: e.flags })).collect();
        if server != self.cache {
            let missing: Vec<&u32> = server.keys().filter(|u| !self.cache.contains_key(u)).take(3).collect();
            let extra: Vec<&u32> = self.cache.keys().filter(|u| !server.contains_key(u)).take(3).collect();
            let stale: Vec<&u32> = server
                .iter()
                .filter(|(u, c)| self.cache.get(u).is_some_and(|m| m != *c))
                .map(|(u, _)| u)
                .take(3)
                .collect();
            out.push(format!(
                "{who}: cache after resync differs from the server (missing {missing:?}, extra {extra:?}, stale {stale:?})"
            ));
            self.cache = server; // Report once, then carry on from the truth.
        }
        Ok(out)
    }
}
