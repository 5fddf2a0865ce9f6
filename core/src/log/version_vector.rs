//! Version vectors: for each origin device, how many of its events are included.
//! Because `seq` is dense per origin, one number per origin says exactly which
//! events a device has.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{DeviceId, EventId};

/// Per origin, the highest `seq` included (all lower ones are included too).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionVector(BTreeMap<DeviceId, u64>);

impl VersionVector {
    /// The empty vector.
    pub fn new() -> Self {
        VersionVector::default()
    }
    /// Highest seq of `origin` included (0 if none).
    pub fn get(&self, origin: &DeviceId) -> u64 {
        self.0.get(origin).copied().unwrap_or(0)
    }
    /// Records that events of `origin` up to `seq` are included.
    pub fn set(&mut self, origin: DeviceId, seq: u64) {
        if seq == 0 {
            self.0.remove(&origin);
        } else {
            self.0.insert(origin, seq);
        }
    }
    /// Whether `event` is included.
    pub fn contains(&self, event: EventId) -> bool {
        event.seq <= self.get(&event.origin)
    }
    /// Whether every event included in `other` is included in `self`.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(origin, seq)| *seq <= self.get(origin))
    }
    /// Pointwise maximum.
    pub fn merge(&mut self, other: &VersionVector) {
        for (origin, seq) in &other.0 {
            if *seq > self.get(origin) {
                self.0.insert(*origin, *seq);
            }
        }
    }
    /// Pointwise minimum over several vectors (what all of them include): the
    /// causally stable prefix when the vectors are every device's acknowledgements.
    pub fn meet<'a>(vectors: impl IntoIterator<Item = &'a VersionVector>) -> VersionVector {
        let mut iter = vectors.into_iter();
        let Some(first) = iter.next() else {
            return VersionVector::new();
        };
        let mut out = first.clone();
        for v in iter {
            out.0.retain(|origin, seq| {
                *seq = (*seq).min(v.get(origin));
                *seq > 0
            });
        }
        out
    }
    /// The origins and their counts.
    pub fn iter(&self) -> impl Iterator<Item = (&DeviceId, &u64)> {
        self.0.iter()
    }
    /// Total number of events included.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(n: u8) -> DeviceId {
        DeviceId::from_bytes([n; 32])
    }

    #[test]
    fn dominate_merge_meet() {
        let mut a = VersionVector::new();
        a.set(dev(1), 3);
        let mut b = VersionVector::new();
        b.set(dev(1), 2);
        b.set(dev(2), 5);
        assert!(!a.dominates(&b));
        assert!(!b.dominates(&a));
        let mut m = a.clone();
        m.merge(&b);
        assert!(m.dominates(&a) && m.dominates(&b));
        assert_eq!(m.get(&dev(2)), 5);
        let meet = VersionVector::meet([&a, &b]);
        assert_eq!(meet.get(&dev(1)), 2);
        assert_eq!(meet.get(&dev(2)), 0);
        assert!(a.contains(EventId { origin: dev(1), seq: 3 }));
        assert!(!a.contains(EventId { origin: dev(1), seq: 4 }));
    }
}
