//! Validation of what a client sends: a fair client's input passes unchanged, anything else is
//! clamped into range or rejected.

use crate::msg::Input;
use std::f32::consts::PI;
use thiserror::Error;

/// Longest display name accepted in a hello, in bytes.
pub const MAX_NAME_BYTES: usize = 32;

/// Why an input was rejected.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum InputError {
    /// A move or aim value was NaN or infinite.
    #[error("input {seq} has a non-finite value")]
    NonFinite {
        /// Sequence number of the input.
        seq: u32,
    },
    /// The sequence number did not increase.
    #[error("input sequence went from {last} to {seq}")]
    StaleSequence {
        /// The latest sequence number accepted before.
        last: u32,
        /// The sequence number received.
        seq: u32,
    },
}

impl Input {
    /// Checks the values: rejects non-finite numbers, scales a move vector longer than 1 back to
    /// length 1 and wraps the aim angle into `[-pi, pi)`.
    pub fn sanitize(self) -> Result<Input, InputError> {
        if !(self.move_x.is_finite() && self.move_y.is_finite() && self.aim.is_finite()) {
            return Err(InputError::NonFinite { seq: self.seq });
        }
        let len_sq = self.move_x * self.move_x + self.move_y * self.move_y;
        let (move_x, move_y) = if len_sq > 1.0 {
            // Scale by the larger component first so that huge values cannot overflow to inf.
            let m = self.move_x.abs().max(self.move_y.abs());
            let (x, y) = (self.move_x / m, self.move_y / m);
            let len = (x * x + y * y).sqrt();
            (x / len, y / len)
        } else {
            (self.move_x, self.move_y)
        };
        Ok(Input {
            move_x,
            move_y,
            aim: wrap_angle(self.aim),
            ..self
        })
    }
}

/// Wraps an angle in radians into `[-pi, pi)`.
#[must_use]
pub fn wrap_angle(a: f32) -> f32 {
    if (-PI..PI).contains(&a) {
        return a;
    }
    let w = (a + PI).rem_euclid(2.0 * PI) - PI;
    // rem_euclid can round up to exactly 2*pi for values just below a multiple of it.
    if w >= PI { -PI } else { w }
}

/// Trims a display name to [`MAX_NAME_BYTES`] on a character boundary and drops control
/// characters.
#[must_use]
pub fn sanitize_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(move_x: f32, move_y: f32, aim: f32) -> Input {
        Input {
            seq: 1,
            move_x,
            move_y,
            aim,
            fire: false,
        }
    }

    #[test]
    fn fair_input_passes_unchanged() {
        let i = input(0.6, -0.8, 1.0);
        assert_eq!(i.sanitize(), Ok(i));
    }

    #[test]
    fn non_finite_is_rejected() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert!(input(bad, 0.0, 0.0).sanitize().is_err());
            assert!(input(0.0, bad, 0.0).sanitize().is_err());
            assert!(input(0.0, 0.0, bad).sanitize().is_err());
        }
    }

    #[test]
    fn long_move_is_clamped_to_unit_length() {
        let s = input(300.0, 400.0, 0.0).sanitize().expect("finite");
        assert!((s.move_x - 0.6).abs() < 1e-6 && (s.move_y - 0.8).abs() < 1e-6);
        let huge = input(f32::MAX, f32::MAX, 0.0).sanitize().expect("finite");
        let len = (huge.move_x * huge.move_x + huge.move_y * huge.move_y).sqrt();
        assert!((len - 1.0).abs() < 1e-6, "len {len}");
    }

    #[test]
    fn angles_wrap() {
        for a in [0.0, 3.0, -3.0, 7.0, -7.0, 100.0, -100.0, PI, -PI] {
            let w = wrap_angle(a);
            assert!((-PI..PI).contains(&w), "{a} -> {w}");
            let turns = (a - w) / (2.0 * PI);
            assert!((turns - turns.round()).abs() < 1e-3, "{a} -> {w}");
        }
    }

    #[test]
    fn names_are_trimmed_on_char_boundaries() {
        assert_eq!(sanitize_name("bot\n1"), "bot1");
        let long = "é".repeat(40);
        let s = sanitize_name(&long);
        assert!(s.len() <= MAX_NAME_BYTES);
        assert_eq!(s.chars().count(), 16);
    }
}
