//! Components and resources of the simulation world.

use crate::config::GameConfig;
use crate::replication::ClientLink;
use crate::stats::ServerStats;
use bevy_ecs::prelude::*;
use glam::IVec2;
use std::sync::Arc;
use tickwire_protocol::{Input, NetId, Tick};

/// Hit points of a fresh player.
pub const MAX_HP: u8 = 100;

/// Network identity of a replicated entity.
#[derive(Component, Debug, Clone, Copy)]
pub struct Net(pub NetId);

/// Position in position units (see [`tickwire_protocol::quant`]); for a projectile, where it
/// is at the current tick.
#[derive(Component, Debug, Clone, Copy)]
pub struct Position(pub IVec2);

/// Aim of a player in angle steps (1024 per turn).
#[derive(Component, Debug, Clone, Copy)]
pub struct Aim(pub u16);

/// A player avatar, controlled by exactly one client.
#[derive(Component, Debug, Clone)]
pub struct Player {
    /// Display name.
    pub name: String,
    /// Hit points; 0 while dead.
    pub hp: u8,
    /// Kills.
    pub score: u32,
    /// The latest valid input (movement and aim persist until the next input).
    pub input: Input,
    /// A fire press arrived since the last tick.
    pub fire_pressed: bool,
    /// Ticks until the player may fire again.
    pub cooldown_ticks: u32,
    /// Ticks until a dead player respawns; 0 while alive.
    pub respawn_ticks: u32,
}

impl Player {
    /// True while the player can move, fire and be hit.
    #[must_use]
    pub fn alive(&self) -> bool {
        self.respawn_ticks == 0
    }
}

/// A projectile in flight. Its replicated state never changes: it is at
/// `origin + velocity * (tick - born)`, computed the same way by every client.
#[derive(Component, Debug, Clone, Copy)]
pub struct Projectile {
    /// The player that fired it.
    pub owner: NetId,
    /// The owner's entity, for scoring; it may have left since.
    pub owner_entity: Entity,
    /// Where it was at `born`, position units.
    pub origin: IVec2,
    /// Position units (half world units) per tick.
    pub velocity: IVec2,
    /// The tick it was fired.
    pub born: Tick,
    /// Ticks before it vanishes.
    pub ticks_left: u32,
}

impl Projectile {
    /// Position at `tick`, position units.
    #[must_use]
    pub fn position_at(&self, tick: Tick) -> IVec2 {
        self.origin + self.velocity * tick.since(self.born)
    }
}

/// The connection of the client that controls this player. Only the network-facing ingest
/// system adds or removes it, together with the entity.
#[derive(Component)]
pub struct Link(pub ClientLink);

/// The tick being simulated.
#[derive(Resource, Debug, Clone, Copy)]
pub struct Clock {
    /// The tick being simulated.
    pub tick: Tick,
}

/// Gameplay constants, with durations converted to ticks and lengths to position units.
#[derive(Resource, Debug, Clone)]
pub struct Rules {
    /// Constants as configured.
    pub game: GameConfig,
    /// Player half-size, position units.
    pub player_radius_q: i32,
    /// Player movement per tick at full speed, position units.
    pub player_step_q: f32,
    /// Projectile movement per tick, position units.
    pub projectile_step_q: f32,
    /// Which entities each client is sent.
    pub visibility: tickwire_protocol::Visibility,
    /// Projectile lifetime in ticks.
    pub projectile_ticks: u32,
    /// Fire cooldown in ticks.
    pub cooldown_ticks: u32,
    /// Respawn delay in ticks.
    pub respawn_ticks: u32,
    /// Simulation rate, for the welcome.
    pub tick_rate_hz: u16,
    /// Join requests handled per tick at most.
    pub joins_per_tick: usize,
    /// Client messages handled per client per tick at most (the queue length).
    pub events_per_tick: usize,
    /// How far behind a client may fall before it is closed.
    pub lag: crate::replication::LagLimits,
    /// Ticks of views remembered per client (the world history length).
    pub history_ticks: usize,
}

/// Allocator of network ids. Ids count up from 1; after 2^32 - 1 allocations they wrap, and
/// from then on an id is handed out only if no entity holds it: not one alive now, not one
/// allocated since the last capture, and not one in any frame of the world history (so in no
/// client's baseline window either).
#[derive(Resource, Debug, Default)]
pub struct NetIds {
    next: u32,
    wrapped: bool,
    /// Ids allocated since the last capture (after the wrap only): alive, but in no frame yet.
    since_capture: Vec<NetId>,
}

impl NetIds {
    /// An allocator whose next id is `next + 1` (tests start it near the wrap).
    #[must_use]
    pub fn starting_after(next: u32) -> NetIds {
        NetIds {
            next,
            ..NetIds::default()
        }
    }

    /// A fresh id, never 0 and never one that `in_history` reports in use.
    pub fn allocate(&mut self, in_history: impl Fn(NetId) -> bool) -> NetId {
        loop {
            self.next = match self.next.checked_add(1) {
                Some(n) => n,
                None => {
                    self.wrapped = true;
                    1
                }
            };
            let id = NetId(self.next);
            if !self.wrapped {
                return id;
            }
            // Terminates: fewer ids are in use than there are ids.
            if !in_history(id) && !self.since_capture.contains(&id) {
                self.since_capture.push(id);
                return id;
            }
        }
    }

    /// The world was captured: every live entity is in the newest frame now.
    pub fn captured(&mut self) {
        self.since_capture.clear();
    }
}

/// The fault-injection hook, and the client being starved, if any.
#[derive(Resource, Debug)]
pub struct FaultHooks {
    /// Requests from the test.
    pub faults: Arc<super::Faults>,
    /// The client whose snapshots are withheld.
    pub starved: Option<crate::boundary::ClientId>,
}

/// The simulation's random numbers, seeded from the config.
#[derive(Resource)]
pub struct SimRng(pub fastrand::Rng);

/// Counters shared with the network side.
#[derive(Resource, Clone)]
pub struct Stats(pub Arc<ServerStats>);

/// Live players by grid cell, rebuilt each tick for projectile hits.
#[derive(Resource)]
pub struct PlayerGrid(pub crate::spatial::CellGrid<Entity>);
