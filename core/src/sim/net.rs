//! The simulated network between devices: packets of events (and version
//! vector acknowledgements) with latency, loss, duplication, reordering and
//! partitions. Purely a data structure; the simulator decides when to call it.

use rand::Rng;

use crate::log::event::Event;
use crate::log::version_vector::VersionVector;

/// What travels between two devices.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// Events the sender believes the receiver misses, in causal order.
    Events(Vec<Event>),
    /// The sender's version vector (the receiver learns what it has).
    Ack(VersionVector),
}

#[derive(Debug, Clone)]
pub(crate) struct Packet {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) arrive_ms: u64,
    pub(crate) payload: Payload,
}

/// Fault knobs, per mille.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Faults {
    pub(crate) loss_pm: u32,
    pub(crate) dup_pm: u32,
    pub(crate) latency_ms_max: u64,
}

#[derive(Debug)]
pub(crate) struct Net {
    in_flight: Vec<Packet>,
    /// `group[d]`: devices talk only within one group (a partition).
    group: Vec<u8>,
    pub(crate) faults: Faults,
    pub(crate) sent: u64,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
}

impl Net {
    pub(crate) fn new(devices: usize, faults: Faults) -> Net {
        Net { in_flight: Vec::new(), group: vec![0; devices], faults, sent: 0, lost: 0, duplicated: 0 }
    }

    pub(crate) fn connected(&self, a: usize, b: usize) -> bool {
        self.group[a] == self.group[b]
    }

    /// Whether `device` can reach at least one other device.
    pub(crate) fn has_peer(&self, device: usize) -> bool {
        (0..self.group.len()).any(|d| d != device && self.connected(d, device))
    }

    pub(crate) fn partition(&mut self, rng: &mut impl Rng) {
        for g in self.group.iter_mut() {
            *g = rng.gen_range(0..2);
        }
    }

    pub(crate) fn heal(&mut self) {
        self.group.iter_mut().for_each(|g| *g = 0);
    }

    pub(crate) fn partitioned(&self) -> bool {
        self.group.iter().any(|g| *g != self.group[0])
    }

    /// Sends with the configured faults (unless `reliable`, used to settle).
    pub(crate) fn send(&mut self, rng: &mut impl Rng, now_ms: u64, packet: Packet, reliable: bool) {
        self.sent += 1;
        if !self.connected(packet.from, packet.to) {
            self.lost += 1;
            return;
        }
        if !reliable && rng.gen_range(0..1000) < self.faults.loss_pm {
            self.lost += 1;
            return;
        }
        let copies = if !reliable && rng.gen_range(0..1000) < self.faults.dup_pm { 2 } else { 1 };
        self.duplicated += copies - 1;
        for _ in 0..copies {
            let mut p = packet.clone();
            p.arrive_ms = now_ms + rng.gen_range(1..=self.faults.latency_ms_max);
            self.in_flight.push(p);
        }
    }

    /// Packets due at `now_ms`, in arrival order (ties in random order);
    /// packets across a partition are lost on the way.
    pub(crate) fn due(&mut self, now_ms: u64) -> Vec<Packet> {
        let (mut due, rest): (Vec<Packet>, Vec<Packet>) = self.in_flight.drain(..).partition(|p| p.arrive_ms <= now_ms);
        self.in_flight = rest;
        due.sort_by_key(|p| p.arrive_ms);
        let before = due.len();
        due.retain(|p| self.group[p.from] == self.group[p.to]);
        self.lost += (before - due.len()) as u64;
        due
    }

    /// A crashed device loses what was on its way to it.
    pub(crate) fn drop_to(&mut self, device: usize) {
        let before = self.in_flight.len();
        self.in_flight.retain(|p| p.to != device);
        self.lost += (before - self.in_flight.len()) as u64;
    }

    pub(crate) fn idle(&self) -> bool {
        self.in_flight.is_empty()
    }

    pub(crate) fn next_arrival(&self) -> Option<u64> {
        self.in_flight.iter().map(|p| p.arrive_ms).min()
    }
}
