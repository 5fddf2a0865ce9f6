//! A small cluster of in-memory devices for the merge scenario tests: explicit
//! sync between two devices (in causal order or shuffled), a shared virtual
//! clock, and the convergence check (equal digests, `verify` clean).

#![allow(dead_code)]

use roost_core::log::Event;
use roost_core::model::{DeviceSlot, Flag, MailboxId, Uid, UserName};
use roost_core::store::{AppendMessage, EntryInfo, IngestReport, MailboxInfo, Store, StoreResult, Writer};

pub const START_MS: u64 = 1_700_000_000_000;

pub struct Cluster {
    pub devices: Vec<Store>,
    pub now: u64,
}

pub fn alice() -> UserName {
    UserName::new("alice").unwrap()
}

pub fn msg(subject: &str) -> Vec<u8> {
    format!("Message-ID: <{subject}@test>\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n").into_bytes()
}

impl Cluster {
    /// `n` devices (slots 0..n); alice exists on all of them.
    pub fn new(n: usize) -> Cluster {
        let devices = (0..n)
            .map(|d| Store::in_memory([d as u8 + 1; 32], DeviceSlot::new(d as u8).unwrap(), START_MS).unwrap())
            .collect();
        let mut c = Cluster { devices, now: START_MS };
        // Tests show held entries explicitly (`expose_all`); writes do not.
        for d in &mut c.devices {
            d.set_exposure_hold_ms(3_600_000);
        }
        c.write(0, |w| w.add_user(&alice(), "$argon2id$test"));
        c.sync_all();
        c
    }

    pub fn tick(&mut self, ms: u64) {
        self.now += ms;
    }

    pub fn write<T>(&mut self, d: usize, f: impl FnOnce(&mut Writer<'_>) -> StoreResult<T>) -> T {
        self.now += 1;
        self.devices[d].write(self.now, f).unwrap().0
    }

    /// Events `to` misses from `from`, in `from`'s causal order.
    pub fn missing(&self, from: usize, to: usize) -> Vec<Event> {
        let have = self.devices[to].version_vector().unwrap();
        self.devices[from].events_missing(&have, usize::MAX).unwrap()
    }

    /// Hands `events` (from device `from`) to `to`, blobs first.
    pub fn ingest(&mut self, from: usize, to: usize, events: &[Event]) -> IngestReport {
        for event in events {
            for blob in event.op.blobs() {
                let raw = self.devices[from].message(&blob).unwrap();
                self.devices[to].blobs().put_named(&blob, &raw).unwrap();
            }
        }
        self.now += 1;
        self.devices[to].ingest(self.now, events).unwrap().0
    }

    pub fn sync(&mut self, from: usize, to: usize) -> IngestReport {
        let events = self.missing(from, to);
        self.ingest(from, to, &events)
    }

    /// Everyone gets everything (repeated: re-keys made on the way travel too),
    /// then everything held is shown.
    pub fn sync_all(&mut self) {
        for _ in 0..10 {
            for a in 0..self.devices.len() {
                for b in 0..self.devices.len() {
                    if a != b {
                        self.sync(a, b);
                    }
                }
            }
        }
        self.expose_all(0);
    }

    pub fn expose_all(&mut self, hold_ms: u64) {
        for d in &mut self.devices {
            d.expose(self.now, hold_ms).unwrap();
        }
    }

    pub fn mailbox(&self, d: usize, name: &str) -> MailboxInfo {
        self.devices[d].mailbox_by_name(&alice(), name).unwrap().unwrap_or_else(|| panic!("no {name} on {d}"))
    }

    pub fn names(&self, d: usize) -> Vec<String> {
        self.devices[d].mailboxes(&alice()).unwrap().into_iter().map(|m| m.name).collect()
    }

    pub fn entries(&self, d: usize, name: &str) -> Vec<EntryInfo> {
        self.devices[d].entries(self.mailbox(d, name).id).unwrap()
    }

    pub fn uids(&self, d: usize, name: &str) -> Vec<u32> {
        self.entries(d, name).iter().map(|e| e.uid.get()).collect()
    }

    pub fn append(&mut self, d: usize, mailbox: &str, subject: &str, flags: Vec<Flag>) -> Uid {
        let id = self.mailbox(d, mailbox).id;
        let raw = msg(subject);
        self.write(d, |w| w.append(id, &[AppendMessage { raw: &raw, flags, internal_date: 1_600_000_000 }]))[0]
    }

    pub fn deliver(&mut self, d: usize, mailbox: &str, subject: &str) -> Uid {
        let id: MailboxId = self.mailbox(d, mailbox).id;
        let raw = msg(subject);
        self.write(d, |w| {
            w.deliver(&alice(), id, &[AppendMessage { raw: &raw, flags: vec![], internal_date: 1_600_000_000 }])
        })[0]
    }

    /// Every device has the same state, and each rebuilds from its own log.
    pub fn assert_converged(&self) {
        let first = self.devices[0].state_digest().unwrap();
        for (d, store) in self.devices.iter().enumerate() {
            let digest = store.state_digest().unwrap();
            assert_eq!(digest, first, "device {d} differs: {:?}", digest.differences(&first));
            let report = store.verify().unwrap();
            assert!(report.problems.is_empty(), "device {d} verify: {:?}", report.problems);
            assert!(store.check_invariants().unwrap().is_empty());
        }
    }
}
