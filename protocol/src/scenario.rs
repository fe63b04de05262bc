//! The "wander" behaviour of the reference scenario "arena" (`SCENARIO.md`), shared by the bot
//! swarm and the server's headless harness: one input per tick with an
//! increasing sequence number; a new uniformly random direction every 2.0 s +/- 0.5 s and at once
//! when blocked; aim turning by +0.05 rad per input; fire with probability 1/30 per input. All
//! randomness comes from the seed.

use crate::input::wrap_angle;
use crate::msg::Input;
use std::f32::consts::{PI, TAU};

/// Aim turn per input, radians.
const AIM_STEP: f32 = 0.05;

/// One bot's controls.
#[derive(Debug)]
pub struct Wander {
    rng: fastrand::Rng,
    tick_rate_hz: f32,
    seq: u32,
    dir: (f32, f32),
    inputs_until_turn: u32,
    aim: f32,
}

impl Wander {
    /// A bot whose choices all follow from `seed`.
    #[must_use]
    pub fn new(seed: u64, tick_rate_hz: u16) -> Wander {
        let mut w = Wander {
            rng: fastrand::Rng::with_seed(seed),
            tick_rate_hz: f32::from(tick_rate_hz.max(1)),
            seq: 0,
            dir: (0.0, 0.0),
            inputs_until_turn: 0,
            aim: 0.0,
        };
        w.aim = w.rng.f32() * TAU - PI;
        w
    }

    fn turn(&mut self) {
        let a = self.rng.f32() * TAU;
        self.dir = (a.cos(), a.sin());
        // 2.0 s +/- 0.5 s, uniformly, in inputs.
        let secs = 1.5 + self.rng.f32();
        self.inputs_until_turn = (secs * self.tick_rate_hz).round().max(1.0) as u32;
    }

    /// The next input; `blocked` says the player did not move as commanded since the last one.
    pub fn next_input(&mut self, blocked: bool) -> Input {
        if blocked || self.inputs_until_turn == 0 {
            self.turn();
        }
        self.inputs_until_turn -= 1;
        self.seq += 1;
        self.aim = wrap_angle(self.aim + AIM_STEP);
        Input {
            seq: self.seq,
            move_x: self.dir.0,
            move_y: self.dir.1,
            aim: self.aim,
            fire: self.rng.u32(0..30) == 0,
        }
    }

    /// Sequence number of the last input made.
    #[must_use]
    pub fn seq(&self) -> u32 {
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_scenario() {
        let mut w = Wander::new(42, 30);
        let inputs: Vec<_> = (0..3000).map(|_| w.next_input(false)).collect();
        for pair in inputs.windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq + 1);
            let turn = wrap_angle(pair[1].aim - pair[0].aim);
            assert!((turn - AIM_STEP).abs() < 1e-4);
        }
        for i in &inputs {
            let len = (i.move_x * i.move_x + i.move_y * i.move_y).sqrt();
            assert!((len - 1.0).abs() < 1e-5);
        }
        let fires = inputs.iter().filter(|i| i.fire).count();
        assert!((50..=150).contains(&fires), "{fires} fires in 3000 inputs");
        // Direction changes: every 45..=75 inputs.
        let mut changes = Vec::new();
        for (k, pair) in inputs.windows(2).enumerate() {
            if pair[0].move_x != pair[1].move_x {
                changes.push(k + 1);
            }
        }
        for gap in changes.windows(2) {
            assert!(
                (45..=75).contains(&(gap[1] - gap[0])),
                "gap {}",
                gap[1] - gap[0]
            );
        }
    }

    #[test]
    fn same_seed_same_inputs_and_blocked_turns_at_once() {
        let mut a = Wander::new(7, 30);
        let mut b = Wander::new(7, 30);
        for _ in 0..100 {
            assert_eq!(a.next_input(false), b.next_input(false));
        }
        let before = a.next_input(false);
        let after = a.next_input(true);
        assert_ne!((before.move_x, before.move_y), (after.move_x, after.move_y));
    }
}
