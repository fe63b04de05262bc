//! A test game with a bug, shared by the tests of game panics: the guide's dots, plus a system
//! that panics once a client named "boom" is in its world, and a join hook that panics for a
//! client named "boom-at-join". Included with `#[path]` next to `minimal_game`.

use super::minimal_game::{Dot, Steer};
use bevy_ecs::prelude::*;
use tickwire_server::{Game, GameApp};

/// Marks the player of a client named "boom".
#[derive(Component)]
pub struct Bomb;

/// The guide's dots, plus a bug: a system that panics once a client named "boom" has joined.
pub struct Fragile;

impl Game for Fragile {
    const NAME: &'static str = "fragile";
    type Config = ();

    fn build(app: &mut GameApp, _: &()) -> Result<(), String> {
        app.replicate::<Dot>()
            .input::<Steer>()
            .add_systems(explode)
            .on_join(|world, joined| {
                assert_ne!(joined.name, "boom-at-join", "the join hook failed");
                let mut player = world.spawn(Dot { x: 500.0, y: 500.0 });
                if joined.name == "boom" {
                    player.insert(Bomb);
                }
                player.id()
            });
        Ok(())
    }
}

pub fn explode(bombs: Query<&Bomb>) {
    assert!(bombs.is_empty(), "a bomb went off");
}
