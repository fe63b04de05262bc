//! Simulation tick numbers.
//!
//! Ticks count up from zero at 30 Hz and wrap after `u32::MAX`: about 4.5 years of uptime. All
//! comparisons are wrap-aware, so two ticks compare correctly as long as they are less than
//! 2^31 ticks apart.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// A simulation tick number.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Default, Debug, Encode, Decode, Serialize, Deserialize,
)]
pub struct Tick(pub u32);

impl Tick {
    /// The tick after this one.
    #[must_use]
    pub fn next(self) -> Tick {
        Tick(self.0.wrapping_add(1))
    }

    /// Signed number of ticks from `earlier` to `self` (negative if `earlier` is later).
    #[must_use]
    pub fn since(self, earlier: Tick) -> i32 {
        // Reinterpreting the wrapped difference as signed is what makes the order wrap-aware.
        self.0.wrapping_sub(earlier.0).cast_signed()
    }

    /// This tick moved `count` ticks back.
    #[must_use]
    pub fn minus(self, count: u32) -> Tick {
        Tick(self.0.wrapping_sub(count))
    }
}

impl PartialOrd for Tick {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.since(*other).cmp(&0))
    }
}

impl fmt::Display for Tick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_is_wrap_aware() {
        let a = Tick(u32::MAX - 1);
        let b = a.next().next().next();
        assert_eq!(b, Tick(1));
        assert!(b > a);
        assert!(a < b);
        assert_eq!(b.since(a), 3);
        assert_eq!(a.since(b), -3);
        assert_eq!(b.minus(3), a);
    }

    #[test]
    fn plain_ordering() {
        assert!(Tick(10) > Tick(9));
        assert!(Tick(9) < Tick(10));
        assert_eq!(Tick(5).partial_cmp(&Tick(5)), Some(Ordering::Equal));
    }
}
