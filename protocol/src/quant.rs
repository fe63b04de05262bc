//! Fixed-point forms of replicated values. The server's authoritative state is kept in these
//! forms, so a client's replica can match it bit for bit while the wire stays small.
//!
//! - Positions: half world units in a `u16` (0.5-unit precision; coordinates up to 32767.5
//!   units). Velocities: position units per tick in an `i16`.
//! - Angles: 1024 steps per turn in a `u16` (about 0.35 degrees), 0 pointing along +x,
//!   increasing towards +y.
//! - Hit points: a `u8`.

use std::f32::consts::TAU;

/// Position units per world unit.
pub const POS_SCALE: f32 = 2.0;
/// Largest world coordinate a quantized position can hold.
pub const MAX_WORLD_COORD: f32 = u16::MAX as f32 / POS_SCALE;
/// Angle steps per full turn.
pub const AIM_STEPS: u16 = 1024;

/// World units to position units, rounded to nearest.
#[must_use]
pub fn to_q(v: f32) -> i32 {
    (v * POS_SCALE).round() as i32
}

/// Position units (half world units) to world units (exact).
#[must_use]
pub fn from_q(q: i32) -> f32 {
    q as f32 / POS_SCALE
}

/// Radians to angle steps in `0..AIM_STEPS`, rounded to nearest.
#[must_use]
pub fn aim_to_q(radians: f32) -> u16 {
    let turns = radians / TAU;
    let frac = turns - turns.floor();
    ((frac * f32::from(AIM_STEPS)).round() as u32 % u32::from(AIM_STEPS)) as u16
}

/// Angle steps to radians in `[0, 2pi)`.
#[must_use]
pub fn aim_from_q(q: u16) -> f32 {
    f32::from(q % AIM_STEPS) * TAU / f32::from(AIM_STEPS)
}

/// The shortest signed turn from angle `from` to angle `to`, in steps, in `-512..512`.
#[must_use]
pub fn aim_diff(from: u16, to: u16) -> i16 {
    let n = i32::from(AIM_STEPS);
    let d = (i32::from(to) - i32::from(from)).rem_euclid(n);
    (if d >= n / 2 { d - n } else { d }) as i16
}

/// `from` turned by `d` steps, wrapped into `0..AIM_STEPS`.
#[must_use]
pub fn aim_add(from: u16, d: i16) -> u16 {
    (i32::from(from) + i32::from(d)).rem_euclid(i32::from(AIM_STEPS)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_at_half_unit_precision() {
        assert_eq!(to_q(1.0), 2);
        assert_eq!(to_q(0.25), 1); // Ties round away from zero.
        assert_eq!(from_q(to_q(1234.5)), 1234.5);
        assert!((from_q(to_q(1234.567)) - 1234.567).abs() <= 0.25);
        assert_eq!(MAX_WORLD_COORD, 32767.5);
    }

    #[test]
    fn angles_wrap_and_diff_takes_the_short_way() {
        assert_eq!(aim_to_q(0.0), 0);
        assert_eq!(aim_to_q(TAU), 0);
        assert_eq!(aim_to_q(-TAU / 4.0), 768);
        assert_eq!(aim_to_q(TAU / 2.0), 512);
        assert_eq!(aim_diff(1020, 4), 8);
        assert_eq!(aim_diff(4, 1020), -8);
        assert_eq!(aim_diff(0, 512), -512);
        for a in [0u16, 5, 511, 512, 1023] {
            for d in [-512i16, -1, 0, 1, 511] {
                assert_eq!(aim_diff(a, aim_add(a, d)), d);
            }
        }
        let q = aim_to_q(1.0);
        assert!((aim_from_q(q) - 1.0).abs() < TAU / 1024.0);
    }
}
