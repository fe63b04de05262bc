//! The bot behaviour "wander" of the reference scenario (`SCENARIO.md`): one input per tick; a
//! new uniformly random direction every 2.0 s +/- 0.5 s, and at once when blocked by a wall or
//! the arena edge; aim turning by +0.05 rad per input; fire with probability 1/30 per input.
//! All randomness comes from the seed.

use crate::components::{ArenaInput, Position};
use glam::Vec2;
use std::f32::consts::{PI, TAU};
use tickwire_protocol::behaviour::{Behaviour, BotView};
use tickwire_protocol::{NetId, Replicate, Welcome};

/// Aim turn per input, radians.
const AIM_STEP: f32 = 0.05;

/// The state of one wandering bot.
#[derive(Debug)]
pub struct Wander {
    rng: fastrand::Rng,
    tick_rate_hz: f32,
    dir: Vec2,
    inputs_until_turn: u32,
    aim: f32,
    player: NetId,
    /// Where the player was at the previous input, and whether it was asked to move.
    last: Option<(Position, bool)>,
}

impl Wander {
    /// A bot seeded with `seed`, sending inputs at `tick_rate_hz`.
    #[must_use]
    pub fn new(seed: u64, tick_rate_hz: u16, player: NetId) -> Wander {
        let mut rng = fastrand::Rng::with_seed(seed);
        let aim = rng.f32() * TAU - PI;
        Wander {
            rng,
            tick_rate_hz: f32::from(tick_rate_hz.max(1)),
            dir: Vec2::ZERO,
            inputs_until_turn: 0,
            aim,
            player,
            last: None,
        }
    }

    /// The behaviour for one bot of the swarm or the harness.
    #[must_use]
    pub fn boxed(seed: u64, welcome: &Welcome) -> Box<dyn Behaviour> {
        Box::new(Wander::new(seed, welcome.tick_rate_hz, welcome.player))
    }

    fn turn(&mut self) {
        self.dir = Vec2::from_angle(self.rng.f32() * TAU);
        // 2.0 s +/- 0.5 s, uniformly, in inputs.
        let secs = 1.5 + self.rng.f32();
        self.inputs_until_turn = (secs * self.tick_rate_hz).round().max(1.0) as u32;
    }

    /// The next input; `blocked` turns at once.
    pub fn next(&mut self, blocked: bool) -> ArenaInput {
        if blocked || self.inputs_until_turn == 0 {
            self.turn();
        }
        self.inputs_until_turn -= 1;
        self.aim = (self.aim + AIM_STEP + PI).rem_euclid(TAU) - PI;
        ArenaInput::new(self.dir, self.aim, self.rng.u32(0..30) == 0)
    }
}

impl Behaviour for Wander {
    fn next_input(&mut self, bot: &BotView<'_>, out: &mut Vec<i64>) {
        // Blocked: asked to move last time, and the newest view shows the player where it was.
        let now = bot.view.and_then(|v| {
            let state = v.entities.get(&self.player)?;
            state.get::<Position>(&bot.welcome.schema)
        });
        let blocked = matches!((self.last, now), (Some((before, true)), Some(p)) if before == p);
        let input = self.next(blocked);
        self.last = now.map(|p| (p, input.direction() != Vec2::ZERO));
        input.write(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_scenario() {
        let mut w = Wander::new(42, 30, NetId(1));
        let inputs: Vec<_> = (0..3000).map(|_| w.next(false)).collect();
        for pair in inputs.windows(2) {
            let turn = (i64::from(pair[1].aim) - i64::from(pair[0].aim)).rem_euclid(1024);
            // 0.05 rad is 8.15 steps of 1/1024 turn.
            assert!((7..=9).contains(&turn), "{turn}");
        }
        for i in &inputs {
            assert!((i.direction().length() - 1.0).abs() < 0.02);
        }
        let fires = inputs.iter().filter(|i| i.fire).count();
        assert!((50..=150).contains(&fires), "{fires} fires in 3000 inputs");
        // Direction changes: every 45..=75 inputs.
        let mut changes = Vec::new();
        for (k, pair) in inputs.windows(2).enumerate() {
            if (pair[0].move_x, pair[0].move_y) != (pair[1].move_x, pair[1].move_y) {
                changes.push(k + 1);
            }
        }
        assert!(changes.len() > 30);
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
        let mut a = Wander::new(7, 30, NetId(1));
        let mut b = Wander::new(7, 30, NetId(1));
        for _ in 0..100 {
            assert_eq!(a.next(false), b.next(false));
        }
        let before = a.next(false);
        let after = a.next(true);
        assert_ne!((before.move_x, before.move_y), (after.move_x, after.move_y));
    }
}
