//! A complete Tickwire game in about a hundred lines: every player is a dot that moves where
//! its input steers it. `cargo run --example minimal_game` serves it on ws://127.0.0.1:7777/ws;
//! `tests/game_api.rs` plays it with the Rust client, and `docs/GAME_API.md` walks through it.

use bevy_ecs::prelude::*;
use tickwire_protocol::Replicate;
use tickwire_protocol::schema::{Delta, Encoding, Field, fixed};
use tickwire_server::{Config, Controls, Game, GameApp, GameDef, Server};

/// Tenths of a unit: positions travel as integers in 0..=10000 (0 to 1000 units).
const SCALE: f32 = 10.0;
const MAX: i32 = 10_000;

/// Where a player is. Replicated: every client gets it, as two fixed-point numbers.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Dot {
    /// Units, 0..=1000.
    pub x: f32,
    /// Units, 0..=1000.
    pub y: f32,
}

impl Replicate for Dot {
    const NAME: &'static str = "Dot";
    fn fields() -> Vec<Field> {
        let coord = Encoding::Fixed {
            scale: SCALE,
            min: 0,
            max: MAX,
        };
        // A step of up to 3 units is a difference of 30 tenths: it fits in 6 bits.
        vec![
            Field::new("x", coord).delta(Delta::Diff { bits: 6 }),
            Field::new("y", coord).delta(Delta::Diff { bits: 6 }),
        ]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.push(fixed::to_fixed(self.x, SCALE, 0, MAX));
        out.push(fixed::to_fixed(self.y, SCALE, 0, MAX));
    }
    fn read(words: &[i64]) -> Self {
        let unit = |q: i64| fixed::from_fixed(q, SCALE);
        Dot {
            x: unit(words[0]),
            y: unit(words[1]),
        }
    }
}

/// One tick of a player's controls: a direction, each axis in -1..=1.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Steer {
    /// Towards +x.
    pub dx: f32,
    /// Towards +y.
    pub dy: f32,
}

impl Replicate for Steer {
    const NAME: &'static str = "Steer";
    fn fields() -> Vec<Field> {
        let axis = Encoding::Fixed {
            scale: 100.0,
            min: -100,
            max: 100,
        };
        vec![Field::new("dx", axis), Field::new("dy", axis)]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.push(fixed::to_fixed(self.dx, 100.0, -100, 100));
        out.push(fixed::to_fixed(self.dy, 100.0, -100, 100));
    }
    fn read(words: &[i64]) -> Self {
        Steer {
            dx: fixed::from_fixed(words[0], 100.0),
            dy: fixed::from_fixed(words[1], 100.0),
        }
    }
}

/// The game: its name, its settings (none) and what it registers.
pub struct Dots;

impl Game for Dots {
    const NAME: &'static str = "dots";
    type Config = ();

    fn build(app: &mut GameApp, _config: &()) -> Result<(), String> {
        app.replicate::<Dot>()
            .input::<Steer>()
            .add_systems(steer)
            .on_join(|world, _joined| world.spawn(Dot { x: 500.0, y: 500.0 }).id());
        Ok(())
    }
}

/// Moves each player's dot 3 units per tick along its newest input, inside the field.
fn steer(mut dots: Query<(&Controls, &mut Dot)>) {
    for (controls, mut dot) in &mut dots {
        let Some(s) = controls.latest::<Steer>() else {
            continue;
        };
        let moved = Dot {
            x: (dot.x + 3.0 * s.dx).clamp(0.0, 1000.0),
            y: (dot.y + 3.0 * s.dy).clamp(0.0, 1000.0),
        };
        // Only a real change marks the component changed (and costs bytes).
        dot.set_if_neq(moved);
    }
}

#[allow(dead_code)] // The test includes this file as a module and starts the server itself.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let server = Server::start(Config::default(), GameDef::of::<Dots>()).await?;
        eprintln!("serving dots on {}", server.ws_url());
        tokio::signal::ctrl_c().await?;
        server.shutdown().await;
        Ok(())
    })
}
