//! The arena's systems, run by the engine in its simulate phase, in this order: read inputs,
//! move players, fire weapons, index players, move projectiles (hits, kills, scores), respawn.
//! Also the join and leave hooks.

use crate::components::*;
use crate::map::Map;
use bevy_ecs::prelude::*;
use glam::{IVec2, Vec2};
use tickwire_server::spatial::CellGrid;
use tickwire_server::{Clock, Controls, Held, Joined, Net, ServerEvents};
use tracing::debug;

/// Attempts at finding a free spawn point before falling back to the arena centre.
const SPAWN_ATTEMPTS: u32 = 256;

/// Side of a cell of the player grid, in world units.
pub const GRID_CELL: f32 = 200.0;

/// Gameplay constants in ticks and position units.
#[derive(Resource, Debug, Clone)]
pub struct Tuning {
    /// The settings as configured.
    pub config: crate::ArenaConfig,
    /// Player half-size, position units.
    pub player_radius_q: i32,
    /// Player movement per tick at full speed, position units.
    pub player_step_q: f32,
    /// Projectile movement per tick, position units.
    pub projectile_step_q: f32,
    /// Projectile lifetime in ticks.
    pub projectile_ticks: u32,
    /// Fire cooldown in ticks.
    pub cooldown_ticks: u32,
    /// Respawn delay in ticks.
    pub respawn_ticks: u32,
}

/// The arena's random numbers, seeded from the server's seed.
#[derive(Resource)]
pub struct ArenaRng(pub fastrand::Rng);

/// Living players by grid cell, rebuilt each tick for projectile hits.
#[derive(Resource)]
pub struct PlayerGrid(pub CellGrid<Entity>);

fn spawn_point(map: &Map, rng: &mut fastrand::Rng, r: i32) -> IVec2 {
    map.random_free_position(rng, r, SPAWN_ATTEMPTS)
        // Only a map that is nearly all wall gets here.
        .unwrap_or(map.size_q / 2)
}

/// Spawns a player at a random free position.
pub fn join(world: &mut World, joined: &Joined) -> Entity {
    let r = world.resource::<Tuning>().player_radius_q;
    let pos = world.resource_scope(|world, mut rng: Mut<ArenaRng>| {
        spawn_point(world.resource::<Map>(), &mut rng.0, r)
    });
    world
        .spawn((
            Position(pos),
            Aim(0),
            Vitals {
                hp: MAX_HP,
                score: 0,
            },
            Pilot {
                name: joined.name.clone(),
                input: ArenaInput::default(),
                fire_pressed: false,
                cooldown_ticks: 0,
                respawn_ticks: 0,
            },
        ))
        .id()
}

/// Takes this tick's inputs: the newest steers, any of them may press fire. A player held
/// for a resume (its connection dropped) stops where it is, aim kept, and holds its fire.
pub fn read_inputs(mut players: Query<(&Controls, &mut Pilot, Has<Held>)>) {
    for (controls, mut pilot, held) in &mut players {
        if held {
            pilot.input.move_x = 0;
            pilot.input.move_y = 0;
            pilot.input.fire = false;
            continue;
        }
        if let Some(input) = controls.latest::<ArenaInput>() {
            pilot.input = input;
        }
        if controls.this_tick::<ArenaInput>().any(|i| i.fire) {
            pilot.fire_pressed = true;
        }
    }
}

/// Moves living players along their input direction, stopping at walls; applies aim.
pub fn move_players(
    mut players: Query<(&mut Position, &mut Aim, &Pilot)>,
    map: Res<Map>,
    tuning: Res<Tuning>,
) {
    for (mut pos, mut aim, pilot) in &mut players {
        if !pilot.alive() {
            continue;
        }
        aim.set_if_neq(Aim(pilot.input.aim));
        let dir = pilot.input.direction();
        if dir != Vec2::ZERO {
            // The step is rounded to whole position units.
            let delta = (dir * tuning.player_step_q).round().as_ivec2();
            pos.set_if_neq(Position(map.slide(pos.0, delta, tuning.player_radius_q)));
        }
    }
}

/// Spawns a projectile for each living player that pressed fire and is off cooldown.
pub fn fire_weapons(
    mut commands: Commands,
    mut players: Query<(Entity, &Net, &Position, &Aim, &mut Pilot)>,
    map: Res<Map>,
    tuning: Res<Tuning>,
    clock: Res<Clock>,
) {
    let g = &tuning.config;
    for (entity, net, pos, aim, mut pilot) in &mut players {
        pilot.cooldown_ticks = pilot.cooldown_ticks.saturating_sub(1);
        let pressed = std::mem::take(&mut pilot.fire_pressed);
        if !pressed || !pilot.alive() || pilot.cooldown_ticks > 0 {
            continue;
        }
        pilot.cooldown_ticks = tuning.cooldown_ticks;
        let dir = Vec2::from_angle(aim_radians(aim.0));
        let muzzle_offset = dir * (g.player_radius + g.projectile_radius + 1.0) * POS_SCALE;
        let muzzle = pos.0 + muzzle_offset.round().as_ivec2();
        if map.segment_blocked(world(pos.0), world(muzzle), g.projectile_radius) {
            continue; // Firing into a wall at point blank: the shot is absorbed.
        }
        commands.spawn((
            Shot {
                origin: muzzle,
                velocity: (dir * tuning.projectile_step_q).round().as_ivec2(),
                born: clock.tick,
                owner: net.0,
            },
            Flight {
                now: muzzle,
                owner_entity: entity,
                ticks_left: tuning.projectile_ticks,
            },
        ));
    }
}

/// Indexes living players by grid cell for the projectile system.
pub fn index_players(mut grid: ResMut<PlayerGrid>, players: Query<(Entity, &Position, &Pilot)>) {
    grid.0.clear();
    for (e, pos, pilot) in &players {
        if pilot.alive() {
            grid.0.insert(e, pos.0);
        }
    }
}

/// Distance from `p` to the segment `a -> b`.
fn segment_distance(a: Vec2, b: Vec2, p: Vec2) -> f32 {
    let d = b - a;
    let len_sq = d.length_squared();
    let t = if len_sq > 0.0 {
        ((p - a).dot(d) / len_sq).clamp(0.0, 1.0)
    } else {
        0.0
    };
    p.distance(a + d * t)
}

/// Moves projectiles to where their fixed trajectory puts them at this tick; one that hits a
/// living player (not its owner) on the way damages it and vanishes, as does one that hits a
/// wall, leaves the arena or runs out of time. A kill scores for the owner, starts the
/// victim's respawn timer and goes out on the kill feed.
#[allow(clippy::too_many_arguments)] // A system's parameters are its declared data access.
pub fn move_projectiles(
    mut commands: Commands,
    mut feed: ResMut<ServerEvents>,
    mut projectiles: Query<(Entity, &Shot, &mut Flight)>,
    mut players: Query<(&Net, &mut Vitals, &mut Pilot)>,
    grid: Res<PlayerGrid>,
    map: Res<Map>,
    tuning: Res<Tuning>,
    clock: Res<Clock>,
) {
    let g = &tuning.config;
    let reach = g.player_radius + g.projectile_radius;
    for (entity, shot, mut flight) in &mut projectiles {
        let from = world(flight.now);
        let now = shot.position_at(clock.tick);
        let to = world(now);
        // The nearest living player (other than the owner) along the path, if any.
        let (lo, hi) = (
            from.min(to) - Vec2::splat(reach),
            from.max(to) + Vec2::splat(reach),
        );
        let to_q = |v: Vec2, round: fn(f32) -> f32| {
            IVec2::new(round(v.x * POS_SCALE) as i32, round(v.y * POS_SCALE) as i32)
        };
        let mut hit: Option<(f32, Entity)> = None;
        grid.0
            .for_each_cell(to_q(lo, f32::floor), to_q(hi, f32::ceil), |cell| {
                for &(target, tq) in cell {
                    let tpos = world(tq);
                    if target == flight.owner_entity || segment_distance(from, to, tpos) > reach {
                        continue;
                    }
                    let along = from.distance_squared(tpos);
                    if hit.is_none_or(|(best, _)| along < best) {
                        hit = Some((along, target));
                    }
                }
            });
        if let Some((_, target)) = hit
            && let Ok((victim_net, mut vitals, mut victim)) = players.get_mut(target)
            && victim.alive()
        {
            vitals.hp = vitals.hp.saturating_sub(g.projectile_damage);
            if vitals.hp == 0 {
                victim.respawn_ticks = tuning.respawn_ticks;
                feed.broadcast(&Kill {
                    killer: shot.owner,
                    victim: victim_net.0,
                });
                debug!(
                    victim = victim_net.0.0,
                    killer = shot.owner.0,
                    "player killed"
                );
                if let Ok((_, mut killer, _)) = players.get_mut(flight.owner_entity) {
                    killer.score = killer.score.saturating_add(1);
                }
            }
            commands.entity(entity).despawn();
            continue;
        }
        flight.ticks_left = flight.ticks_left.saturating_sub(1);
        if flight.ticks_left == 0 || map.segment_blocked(from, to, g.projectile_radius) {
            commands.entity(entity).despawn();
        } else {
            flight.now = now;
        }
    }
}

/// Counts down dead players' timers and respawns them at a random free position.
pub fn respawn_players(
    mut players: Query<(&mut Position, &mut Vitals, &mut Pilot)>,
    map: Res<Map>,
    tuning: Res<Tuning>,
    mut rng: ResMut<ArenaRng>,
) {
    for (mut pos, mut vitals, mut pilot) in &mut players {
        if pilot.respawn_ticks == 0 {
            continue;
        }
        pilot.respawn_ticks -= 1;
        if pilot.respawn_ticks == 0 {
            vitals.hp = MAX_HP;
            pilot.cooldown_ticks = 0;
            pos.0 = spawn_point(&map, &mut rng.0, tuning.player_radius_q);
        }
    }
}
