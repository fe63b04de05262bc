//! Field-level deltas between two states of a player: the server makes them, clients apply
//! them. Only fields that changed are sent; positions and aim as differences, hit points and
//! score as new values.

use crate::msg::{NetId, PlayerDelta, PlayerState};
use crate::quant::{aim_add, aim_diff};

/// The delta from `old` to `new`, or `None` if they are equal.
#[must_use]
pub fn player_delta(id: NetId, old: &PlayerState, new: &PlayerState) -> Option<PlayerDelta> {
    if old == new {
        return None;
    }
    Some(PlayerDelta {
        id,
        dx: i32::from(new.x) - i32::from(old.x),
        dy: i32::from(new.y) - i32::from(old.y),
        daim: aim_diff(old.aim, new.aim),
        hp: (old.hp != new.hp).then_some(new.hp),
        score: (old.score != new.score).then_some(new.score),
    })
}

/// `old` with `delta` applied, or `None` if a coordinate would leave the `u16` range.
#[must_use]
pub fn apply_player_delta(old: &PlayerState, delta: &PlayerDelta) -> Option<PlayerState> {
    let coord = |v: u16, d: i32| u16::try_from(i32::from(v).checked_add(d)?).ok();
    Some(PlayerState {
        x: coord(old.x, delta.dx)?,
        y: coord(old.y, delta.dy)?,
        aim: aim_add(old.aim, delta.daim),
        hp: delta.hp.unwrap_or(old.hp),
        score: delta.score.unwrap_or(old.score),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_round_trips_and_omits_what_did_not_change() {
        let a = PlayerState {
            x: 100,
            y: 65_000,
            aim: 1020,
            hp: 100,
            score: 3,
        };
        let b = PlayerState {
            x: 133,
            y: 64_990,
            aim: 4,
            hp: 100,
            score: 4,
        };
        let d = player_delta(NetId(7), &a, &b).expect("differs");
        assert_eq!(
            (d.dx, d.dy, d.daim, d.hp, d.score),
            (33, -10, 8, None, Some(4))
        );
        assert_eq!(apply_player_delta(&a, &d), Some(b));
        assert_eq!(player_delta(NetId(7), &a, &a), None);
    }

    #[test]
    fn out_of_range_deltas_are_refused() {
        let a = PlayerState::default();
        let d = PlayerDelta {
            dx: -1,
            ..PlayerDelta::default()
        };
        assert_eq!(apply_player_delta(&a, &d), None);
        let d = PlayerDelta {
            dy: i32::MAX,
            ..PlayerDelta::default()
        };
        assert_eq!(apply_player_delta(&a, &d), None);
    }
}
