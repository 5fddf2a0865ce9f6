//! Bookkeeping shared by all connections: failed logins per client address and
//! open connections per address and per user, and the memory budget of the
//! sessions' opened-message caches. Counts are released by dropping
//! the slot types, so a connection that ends in any way (even a panic) gives
//! its slot back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use roost_core::crypto::OpenedBudget;

use crate::imap::limits::Limits;

/// Shared counters; cheap to clone.
#[derive(Debug, Clone)]
pub struct Access {
    inner: Arc<Mutex<Counts>>,
    limits: Limits,
    /// What every session's cache of opened messages draws on.
    opened: Arc<OpenedBudget>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Failure times (ms) per address within the window, oldest first.
    failures: HashMap<IpAddr, Vec<u64>>,
    per_address: HashMap<IpAddr, usize>,
    per_user: HashMap<String, usize>,
}

/// One open connection from an address; released on drop.
#[derive(Debug)]
pub struct AddressSlot {
    access: Access,
    address: IpAddr,
}

/// One logged-in session of a user; released on drop.
#[derive(Debug)]
pub struct UserSlot {
    access: Access,
    user: String,
}

impl Access {
    /// Counters with the given limits.
    pub fn new(limits: Limits) -> Access {
        let opened = OpenedBudget::new(limits.opened_cache_bytes_max);
        Access { inner: Arc::new(Mutex::new(Counts::default())), limits, opened }
    }

    /// The memory budget of all sessions' opened-message caches.
    pub fn opened_budget(&self) -> Arc<OpenedBudget> {
        self.opened.clone()
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // A panic while holding this lock leaves plain counters behind, which
        // are still usable: recover rather than take every connection down.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for a new connection from `address`, if under the limit.
    pub fn open_connection(&self, address: IpAddr) -> Option<AddressSlot> {
        let mut counts = self.counts();
        let n = counts.per_address.entry(address).or_insert(0);
        if *n >= self.limits.connections_per_address_max {
            return None;
        }
        *n += 1;
        Some(AddressSlot { access: self.clone(), address })
    }

    /// A session slot for `user`, if under the limit.
    pub fn open_session(&self, user: &str) -> Option<UserSlot> {
        let mut counts = self.counts();
        let n = counts.per_user.entry(user.to_string()).or_insert(0);
        if *n >= self.limits.connections_per_user_max {
            return None;
        }
        *n += 1;
        Some(UserSlot { access: self.clone(), user: user.to_string() })
    }

    /// Whether `address` has used up its failed logins for now.
    pub fn login_blocked(&self, address: IpAddr, now_ms: u64) -> bool {
        let window_ms = self.limits.login_failure_window.as_millis() as u64;
        let mut counts = self.counts();
        let Some(times) = counts.failures.get_mut(&address) else { return false };
        times.retain(|t| now_ms.saturating_sub(*t) < window_ms);
        let blocked = times.len() >= self.limits.login_failures_max as usize;
        if times.is_empty() {
            counts.failures.remove(&address);
        }
        blocked
    }

    /// Records a failed login from `address`.
    pub fn login_failed(&self, address: IpAddr, now_ms: u64) {
        let mut counts = self.counts();
        let times = counts.failures.entry(address).or_default();
        times.push(now_ms);
        // Only the last `login_failures_max` matter; keep memory bounded.
        let excess = times.len().saturating_sub(self.limits.login_failures_max as usize);
        times.drain(..excess);
    }

    /// Open connections and sessions (tests check nothing leaked).
    pub fn open_counts(&self) -> (usize, usize) {
        let counts = self.counts();
        (counts.per_address.values().sum(), counts.per_user.values().sum())
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.access.counts();
        if let Some(n) = counts.per_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                counts.per_address.remove(&self.address);
            }
        }
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut counts = self.access.counts();
        if let Some(n) = counts.per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.per_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_released() {
        let limits = Limits { connections_per_user_max: 1, connections_per_address_max: 1, ..Limits::default() };
        let access = Access::new(limits);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let slot = access.open_connection(ip).unwrap();
        assert!(access.open_connection(ip).is_none());
        drop(slot);
        assert!(access.open_connection(ip).is_some());
        let session = access.open_session("alice").unwrap();
        assert!(access.open_session("alice").is_none());
        drop(session);
        assert_eq!(access.open_counts(), (0, 0));
    }

    #[test]
    fn failed_logins_block_within_window() {
        let access = Access::new(Limits::default());
        let ip: IpAddr = [10, 0, 0, 1].into();
        for t in 0..5 {
            assert!(!access.login_blocked(ip, t));
            access.login_failed(ip, t);
        }
        assert!(access.login_blocked(ip, 10));
        assert!(!access.login_blocked(ip, 10 * 60 * 1000 + 10));
    }
}
