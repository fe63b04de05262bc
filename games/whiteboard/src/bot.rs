//! The whiteboard's bot behaviour "scribble": one input per tick; the cursor wanders in
//! straight runs (a new random heading about every second, and at once at the board's edge),
//! the pen is down nine runs in ten, each bot has its own colour and width; a bot clears the
//! board when its view holds more than [`CLEAR_AT`] strokes (so long runs exercise clears
//! without the board growing forever); and about every three seconds a bot says something on
//! the chat. All randomness comes from the seed.

use crate::{BOARD_SIZE, COLOURS, Cursor, Draw, MAX_WIDTH, Say, Stroke};
use std::f32::consts::TAU;
use tickwire_protocol::behaviour::{Behaviour, BotView};
use tickwire_protocol::{Replicate, Welcome};

/// Strokes in view above which a bot clears the board.
pub const CLEAR_AT: usize = 15_000;
/// Board units a cursor moves per tick.
const STEP: f32 = 24.0;

/// The state of one scribbling bot.
#[derive(Debug)]
pub struct Scribble {
    rng: fastrand::Rng,
    at: (f32, f32),
    heading: f32,
    ticks_left: u32,
    down: bool,
    colour: u32,
    width: u32,
    /// Ticks until its next chat line, and lines said.
    chat_in: u32,
    said: u32,
}

impl Scribble {
    /// A bot seeded with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Scribble {
        let mut rng = fastrand::Rng::with_seed(seed);
        let size = BOARD_SIZE as f32;
        Scribble {
            at: (rng.f32() * size, rng.f32() * size),
            heading: rng.f32() * TAU,
            ticks_left: 0,
            down: true,
            colour: rng.u32(0..COLOURS),
            width: rng.u32(1..=MAX_WIDTH.min(8)),
            chat_in: rng.u32(30..=150),
            said: 0,
            rng,
        }
    }

    /// The behaviour for one bot of the swarm or the harness.
    #[must_use]
    pub fn boxed(seed: u64, _welcome: &Welcome) -> Box<dyn Behaviour> {
        Box::new(Scribble::new(seed))
    }

    /// The next input, given how many strokes the bot sees.
    pub fn next(&mut self, strokes_in_view: usize) -> Draw {
        let size = BOARD_SIZE as f32 - 1.0;
        if self.ticks_left == 0 {
            self.heading = self.rng.f32() * TAU;
            self.ticks_left = self.rng.u32(20..=40);
            self.down = self.rng.u32(0..10) != 0;
        }
        self.ticks_left -= 1;
        let (mut x, mut y) = (
            self.at.0 + self.heading.cos() * STEP,
            self.at.1 + self.heading.sin() * STEP,
        );
        if !(0.0..=size).contains(&x) || !(0.0..=size).contains(&y) {
            // Turn back into the board.
            self.heading += std::f32::consts::PI;
            x = x.clamp(0.0, size);
            y = y.clamp(0.0, size);
        }
        self.at = (x, y);
        Draw {
            x: x.round() as i64,
            y: y.round() as i64,
            down: self.down,
            colour: self.colour,
            width: self.width,
            clear: strokes_in_view > CLEAR_AT,
        }
    }
}

impl Behaviour for Scribble {
    fn next_input(&mut self, bot: &BotView<'_>, out: &mut Vec<i64>) {
        let schema = &bot.welcome.schema;
        let strokes = bot.view.map_or(0, |v| {
            let index = schema.component_index(Stroke::NAME);
            let own = schema.component_index(Cursor::NAME);
            // Entities with a stroke and no cursor: a cheap mask test per entity.
            v.entities
                .values()
                .filter(|s| {
                    index.is_some_and(|i| s.mask & (1 << i) != 0)
                        && own.is_none_or(|i| s.mask & (1 << i) == 0)
                })
                .count()
        });
        self.next(strokes).write(out);
    }

    fn next_event(&mut self, _bot: &BotView<'_>, out: &mut Vec<i64>) -> Option<&'static str> {
        self.chat_in = self.chat_in.saturating_sub(1);
        if self.chat_in > 0 {
            return None;
        }
        self.chat_in = self.rng.u32(60..=120);
        self.said += 1;
        Say(format!("line {} in colour {}", self.said, self.colour)).write(out);
        Some(Say::NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_on_the_board_draws_mostly_and_clears_only_when_full() {
        let mut s = Scribble::new(3);
        let inputs: Vec<Draw> = (0..3000).map(|_| s.next(10)).collect();
        assert!(
            inputs.iter().all(|d| (0..BOARD_SIZE).contains(&d.x)
                && (0..BOARD_SIZE).contains(&d.y)
                && !d.clear)
        );
        let down = inputs.iter().filter(|d| d.down).count();
        assert!(down > 2000, "{down} of 3000 with the pen down");
        assert!(s.next(CLEAR_AT + 1).clear);
        let mut a = Scribble::new(9);
        let mut b = Scribble::new(9);
        for _ in 0..100 {
            assert_eq!(a.next(0), b.next(0));
        }
    }
}
