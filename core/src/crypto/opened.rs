//! Plaintexts a session has opened, kept in memory so that reading a message
//! again (a client fetching a folder twice, SEARCH after FETCH) skips the
//! file read, the hash check and the decryption (issue 8: reading sealed mail
//! cost 1.5-1.9x reading it in clear).
//!
//! Each [`super::SessionKey`] owns one cache; all caches of a daemon draw on
//! one [`OpenedBudget`], so the memory they hold together is bounded however
//! many sessions are open. Entries are `Zeroizing`: they are wiped when
//! evicted and when the session (and with it its key) ends. Nothing here
//! touches the disk.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use zeroize::Zeroizing;

use crate::model::BlobHash;

/// The bytes all session caches of a process may hold together.
#[derive(Debug)]
pub struct OpenedBudget {
    bytes_max: usize,
    bytes_used: AtomicUsize,
}

impl OpenedBudget {
    /// A budget of `bytes_max` (0 disables caching).
    pub fn new(bytes_max: usize) -> Arc<OpenedBudget> {
        Arc::new(OpenedBudget { bytes_max, bytes_used: AtomicUsize::new(0) })
    }

    /// Bytes held by all caches drawing on this budget now.
    pub fn bytes_used(&self) -> usize {
        self.bytes_used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes if they fit.
    fn reserve(&self, n: usize) -> bool {
        self.bytes_used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.bytes_max)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        let before = self.bytes_used.fetch_sub(n, Ordering::AcqRel);
        assert!(n <= before, "released {n} bytes of {before} reserved");
    }
}

/// One session's opened plaintexts, oldest evicted first.
#[derive(Default)]
pub(crate) struct OpenedCache {
    /// None: caching is off (tools, tests that did not ask for it).
    budget: Option<Arc<OpenedBudget>>,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_blob: HashMap<BlobHash, Zeroizing<Vec<u8>>>,
    /// Insertion order, for eviction.
    order: VecDeque<BlobHash>,
    bytes: usize,
}

impl fmt::Debug for OpenedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counts only: the content is mail.
        let entries = self.lock();
        write!(f, "OpenedCache({} messages, {} bytes)", entries.by_blob.len(), entries.bytes)
    }
}

impl OpenedCache {
    pub(crate) fn with_budget(budget: Arc<OpenedBudget>) -> OpenedCache {
        OpenedCache { budget: Some(budget), inner: Mutex::default() }
    }

    /// A copy of the plaintext of `blob`, if this session opened it before.
    pub(crate) fn get(&self, blob: &BlobHash) -> Option<Vec<u8>> {
        self.budget.as_ref()?;
        self.lock().by_blob.get(blob).map(|plain| plain.to_vec())
    }

    /// Whether caching is on and `blob` is not cached yet.
    pub(crate) fn wants(&self, blob: &BlobHash) -> bool {
        self.budget.is_some() && !self.lock().by_blob.contains_key(blob)
    }

    /// Keeps the plaintext of `blob`, evicting this session's oldest entries
    /// to make room; does nothing when it cannot fit.
    pub(crate) fn insert(&self, blob: &BlobHash, plain: &[u8]) {
        let Some(budget) = &self.budget else {
            return;
        };
        let n = plain.len();
        if budget.bytes_max < n {
            return;
        }
        let mut entries = self.lock();
        if entries.by_blob.contains_key(blob) {
            return;
        }
        while !budget.reserve(n) {
            let Some(oldest) = entries.order.pop_front() else {
                // Other sessions hold the budget.
                return;
            };
            if let Some(evicted) = entries.by_blob.remove(&oldest) {
                entries.bytes -= evicted.len();
                budget.release(evicted.len());
            }
        }
        entries.by_blob.insert(*blob, Zeroizing::new(plain.to_vec()));
        entries.order.push_back(*blob);
        entries.bytes += n;
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Plain data: usable after a panic elsewhere.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for OpenedCache {
    fn drop(&mut self) {
        // The entries zeroise themselves; give their bytes back.
        if let Some(budget) = &self.budget {
            budget.release(self.lock().bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_share_one_budget_and_evict_their_oldest() {
        let budget = OpenedBudget::new(10);
        let a = OpenedCache::with_budget(budget.clone());
        let b = OpenedCache::with_budget(budget.clone());
        let (h1, h2, h3) = (BlobHash::of(b"1"), BlobHash::of(b"2"), BlobHash::of(b"3"));
        a.insert(&h1, b"aaaa");
        a.insert(&h2, b"bbbb");
        assert_eq!(budget.bytes_used(), 8);
        assert_eq!(a.get(&h1).as_deref(), Some(&b"aaaa"[..]));
        // a's oldest entry makes room for its third.
        a.insert(&h3, b"cccc");
        assert_eq!(a.get(&h1), None);
        assert_eq!(a.get(&h3).as_deref(), Some(&b"cccc"[..]));
        assert_eq!(budget.bytes_used(), 8);
        // b cannot take a's bytes: it caches nothing rather than exceed.
        b.insert(&h1, b"xxxxx");
        assert_eq!(b.get(&h1), None);
        assert_eq!(budget.bytes_used(), 8);
        // Larger than the whole budget: not kept, and nothing evicted for it.
        a.insert(&BlobHash::of(b"4"), &[0; 11]);
        assert_eq!(budget.bytes_used(), 8);
        drop(a);
        assert_eq!(budget.bytes_used(), 0);
        b.insert(&h1, b"xxxxx");
        assert_eq!(budget.bytes_used(), 5);
        drop(b);
        assert_eq!(budget.bytes_used(), 0);
        // Without a budget nothing is cached.
        let off = OpenedCache::default();
        off.insert(&h1, b"a");
        assert_eq!(off.get(&h1), None);
    }
}
