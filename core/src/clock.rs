//! Hybrid logical clock (Kulkarni et al., 2014): physical milliseconds in the high
//! 48 bits, a counter in the low 16. It orders events consistently with causality
//! (an event's HLC is above every HLC its device had seen) while staying close to
//! wall-clock time, so last-writer-wins registers pick the later change even when
//! device clocks are skewed a little.
//!
//! The clock never reads the time: callers pass `now_ms` (STYLE 1).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A hybrid logical clock timestamp.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Hlc(u64);

impl Hlc {
    /// Largest millisecond value representable (year 10889).
    const MS_MAX: u64 = (1 << 48) - 1;

    /// From the packed form stored in SQLite.
    pub fn from_raw(raw: u64) -> Hlc {
        Hlc(raw)
    }
    /// The packed form.
    pub fn raw(self) -> u64 {
        self.0
    }
    /// Physical milliseconds part.
    pub fn ms(self) -> u64 {
        self.0 >> 16
    }

    /// Timestamp for a new local event, given the last timestamp this device
    /// issued or observed.
    pub fn tick(last: Hlc, now_ms: u64) -> Hlc {
        let by_clock = now_ms.min(Self::MS_MAX) << 16;
        Hlc(by_clock.max(last.0 + 1))
    }

    /// The clock after receiving an event stamped `remote`: above both.
    pub fn observe(last: Hlc, remote: Hlc, now_ms: u64) -> Hlc {
        let by_clock = now_ms.min(Self::MS_MAX) << 16;
        Hlc(by_clock.max(last.0.max(remote.0) + 1))
    }
}

impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hlc({}.{})", self.ms(), self.0 & 0xFFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_follows_wall_clock_and_never_goes_back() {
        let a = Hlc::tick(Hlc::default(), 1_000);
        assert_eq!(a.ms(), 1_000);
        let b = Hlc::tick(a, 1_000);
        assert!(a < b);
        let c = Hlc::tick(b, 10); // wall clock stepped back
        assert!(b < c);
        let d = Hlc::tick(c, 2_000);
        assert_eq!(d.ms(), 2_000);
    }

    #[test]
    fn observe_goes_above_remote() {
        let local = Hlc::tick(Hlc::default(), 1_000);
        let remote = Hlc::tick(Hlc::default(), 5_000); // skewed peer
        let after = Hlc::observe(local, remote, 1_001);
        assert!(remote < after);
        assert!(local < after);
    }
}
