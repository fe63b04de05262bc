//! The arena: Tickwire's reference game (`SCENARIO.md`), written on the engine's public API
//! only. Players move in a walled 2D arena, aim, and fire projectiles that damage; kills score
//! and the dead respawn.
//!
//! - [`components`]: the replicated components (`Position`, `Aim`, `Vitals`, `Shot`), the
//!   input, the static records (walls, rules) and their wire fields.
//! - [`systems`]: the simulation, run in the engine's simulate phase, and the join hook.
//! - [`map`]: the map (embedded from `assets/maps/arena.toml` unless configured) and its
//!   collision queries.
//! - [`config`]: the `[games.arena]` settings.
//! - [`wander`]: the reference bot behaviour.
//!
//! The page in `games/arena/web/` plays it in a browser on the JavaScript SDK.

pub mod components;
pub mod config;
pub mod map;
pub mod systems;
#[cfg(test)]
mod tests;
pub mod wander;

pub use config::ArenaConfig;
pub use wander::Wander;

use bevy_ecs::prelude::*;
use components::*;
use tickwire_server::spatial::CellGrid;
use tickwire_server::{Asset, Game, GameApp};

/// The arena game.
#[derive(Debug)]
pub struct Arena;

/// The arena's browser page (the SDK is served beside it).
pub const PAGE: &[Asset] = &[
    Asset::html("/", include_str!("../web/index.html")),
    Asset::script("/app.js", include_str!("../web/app.js")),
];

impl Game for Arena {
    const NAME: &'static str = "arena";
    type Config = ArenaConfig;

    fn build(app: &mut GameApp, config: &ArenaConfig) -> Result<(), String> {
        config.validate()?;
        let map = map::Map::load(config.map.as_deref())?;
        let q = POS_SCALE;
        let dt = 1.0 / f32::from(app.tick_rate_hz().max(1));
        let ticks = |ms: u32| app.ms_to_ticks(u64::from(ms));
        if config.projectile_speed * q * dt >= MAX_SHOT_STEP as f32 {
            return Err(format!(
                "projectile_speed {} is too fast to replicate at {} Hz (at most {} units per tick)",
                config.projectile_speed,
                app.tick_rate_hz(),
                MAX_SHOT_STEP as f32 / q
            ));
        }
        let tuning = systems::Tuning {
            config: config.clone(),
            player_radius_q: to_q(config.player_radius),
            player_step_q: config.player_speed * q * dt,
            projectile_step_q: config.projectile_speed * q * dt,
            projectile_ticks: ticks(config.projectile_lifetime_ms),
            cooldown_ticks: ticks(config.fire_cooldown_ms),
            respawn_ticks: ticks(config.respawn_delay_ms),
        };
        let rules = Rules {
            width: map.width,
            height: map.height,
            player_radius: config.player_radius,
            projectile_radius: config.projectile_radius,
            player_speed: config.player_speed,
            projectile_speed: config.projectile_speed,
        };
        let size_q = map.size_q;
        let walls = map.walls.clone();
        let seed = app.seed();
        let world = app.world_mut();
        world.insert_resource(systems::PlayerGrid(CellGrid::new(
            size_q,
            to_q(systems::GRID_CELL),
        )));
        world.insert_resource(systems::ArenaRng(fastrand::Rng::with_seed(seed)));
        world.insert_resource(tuning);
        world.insert_resource(map);
        app.replicate::<Position>()
            .replicate::<Aim>()
            .replicate::<Vitals>()
            .replicate::<Shot>()
            .input::<ArenaInput>()
            .server_event::<Kill>()
            .statics([rules])
            .statics(walls)
            .interest::<Position>(POS_SCALE, size_q, |p| p.0)
            .interest::<Flight>(POS_SCALE, size_q, |f| f.now)
            .add_systems(
                (
                    systems::read_inputs,
                    systems::move_players,
                    systems::fire_weapons,
                    systems::index_players,
                    systems::move_projectiles,
                    systems::respawn_players,
                )
                    .chain(),
            )
            .on_join(systems::join)
            .page(PAGE);
        Ok(())
    }
}
