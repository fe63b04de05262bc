//! The simulation: a `bevy_ecs` World stepped by one Schedule per tick, with no sockets.
//!
//! Data flows in through bounded channels (join requests, then each client's inputs and acks),
//! through the systems in [`systems`] in five timed phases (ingest, simulate, capture,
//! replicate, hand off; see [`PHASES`]), and out as one snapshot frame per client per tick on
//! each client's bounded outbox. [`Sim::tick`] never blocks: the tick thread
//! in [`driver`] calls it on a fixed schedule, and tests and benches call it directly.
//!
//! - [`components`]: components and resources.
//! - [`systems`]: the systems, in schedule order.
//! - [`map`]: the arena, its walls and collision queries.
//! - [`driver`]: the thread that runs ticks on drift-free deadlines.

pub mod components;
pub mod driver;
pub mod map;
pub mod systems;
#[cfg(test)]
mod tests;

use crate::boundary::JoinRequest;
use crate::config::Config;
use crate::replication::Replication;
use crate::stats::ServerStats;
use bevy_ecs::prelude::*;
use components::*;
use crossbeam_channel::Receiver;
use map::Map;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tickwire_protocol::Tick;

/// Side of a cell of the player grid, in world units.
const GRID_CELL: f32 = 200.0;

/// Names of the tick's phases, in the order they run.
pub const PHASES: [&str; 5] = ["ingest", "simulate", "capture", "replicate", "handoff"];

/// How long each phase of one tick took.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TickTimings {
    /// Per phase, in the order of [`PHASES`].
    pub took: [Duration; PHASES.len()],
}

impl TickTimings {
    /// The whole tick.
    #[must_use]
    pub fn total(&self) -> Duration {
        self.took.iter().sum()
    }

    /// Each phase's name and time.
    pub fn phases(&self) -> impl Iterator<Item = (&'static str, Duration)> + '_ {
        PHASES.iter().copied().zip(self.took.iter().copied())
    }
}

/// Faults injected into what the tick thread sends: a hook for tests of the verifier (a bot
/// swarm must fail, and say why, when the server misbehaves). Idle, it costs two atomic loads
/// per tick.
#[derive(Debug, Default)]
pub struct Faults {
    corrupt: AtomicU32,
    starve: AtomicBool,
}

impl Faults {
    /// Corrupts the checksum of the next `n` snapshots handed off (to whichever clients).
    pub fn corrupt_checksums(&self, n: u32) {
        self.corrupt.fetch_add(n, Relaxed);
    }

    /// Stops sending snapshots to one client (the first one handed off next tick), without
    /// closing it or counting it as slow.
    pub fn starve_one_client(&self) {
        self.starve.store(true, Relaxed);
    }

    /// Takes every pending checksum corruption (give back what is not used with
    /// [`Faults::return_corruptions`]).
    pub(crate) fn take_corruptions(&self) -> u32 {
        if self.corrupt.load(Relaxed) == 0 {
            return 0;
        }
        self.corrupt.swap(0, Relaxed)
    }

    /// Gives back corruptions taken but not used this tick.
    pub(crate) fn return_corruptions(&self, n: u32) {
        if n > 0 {
            self.corrupt.fetch_add(n, Relaxed);
        }
    }

    /// True while a request to starve a client is pending.
    pub(crate) fn starve_requested(&self) -> bool {
        self.starve.load(Relaxed)
    }

    /// The pending request to starve a client has been carried out.
    pub(crate) fn starve_taken(&self) {
        self.starve.store(false, Relaxed);
    }
}

/// The world and one schedule per phase.
pub struct Sim {
    world: World,
    phases: [Schedule; PHASES.len()],
    faults: Arc<Faults>,
}

impl Sim {
    /// A world with the given map, fed by `joins`, reporting into `stats`.
    #[must_use]
    pub fn new(
        config: &Config,
        map: Map,
        joins: Receiver<JoinRequest>,
        stats: Arc<ServerStats>,
    ) -> Sim {
        let mut world = World::new();
        world.insert_resource(Clock { tick: Tick(0) });
        let q = tickwire_protocol::quant::POS_SCALE;
        let dt = config.tick_seconds();
        world.insert_resource(Rules {
            game: config.game.clone(),
            player_radius_q: tickwire_protocol::quant::to_q(config.game.player_radius),
            player_step_q: config.game.player_speed * q * dt,
            projectile_step_q: config.game.projectile_speed * q * dt,
            visibility: config.visibility(),
            projectile_ticks: config.ms_to_ticks(config.game.projectile_lifetime_ms),
            cooldown_ticks: config.ms_to_ticks(config.game.fire_cooldown_ms),
            respawn_ticks: config.ms_to_ticks(config.game.respawn_delay_ms),
            tick_rate_hz: config.tick_rate_hz,
            joins_per_tick: config.join_queue_len,
            events_per_tick: config.input_queue_len,
            lag: crate::replication::LagLimits {
                max_in_a_row: config.max_lag_ticks,
                skip_window: config.skip_window_ticks,
                max_skipped_fraction: config.max_skipped_fraction,
                max_unacked: config.ms_to_ticks(config.ack_timeout_ms),
            },
            history_ticks: config.history_ticks as usize,
        });
        world.insert_resource(PlayerGrid(crate::spatial::CellGrid::new(
            map.size_q,
            tickwire_protocol::quant::to_q(GRID_CELL),
        )));
        let size_q = map.size_q;
        world.insert_resource(map);
        world.insert_resource(NetIds::default());
        let faults = Arc::new(Faults::default());
        world.insert_resource(FaultHooks {
            faults: Arc::clone(&faults),
            starved: None,
        });
        world.insert_resource(SimRng(fastrand::Rng::with_seed(config.seed)));
        world.insert_resource(Stats(stats));
        world.insert_resource(systems::Joins(joins));
        world.insert_resource(Replication::new(
            config.history_ticks as usize,
            config.visibility(),
            size_q,
        ));

        let phase = |systems: bevy_ecs::schedule::ScheduleConfigs<_>| {
            let mut schedule = Schedule::default();
            schedule.add_systems(systems);
            schedule
        };
        let phases = [
            phase((systems::ingest_joins, systems::ingest_client_events).chain()),
            phase(
                (
                    systems::move_players,
                    systems::fire_weapons,
                    systems::index_players,
                    systems::move_projectiles,
                    systems::respawn_players,
                )
                    .chain(),
            ),
            phase(systems::capture_world.into_configs()),
            phase(systems::replicate.into_configs()),
            phase(systems::hand_off.into_configs()),
        ];
        Sim {
            world,
            phases,
            faults,
        }
    }

    /// The fault-injection hook of this world.
    #[must_use]
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// Runs one tick: ingest, simulate, capture, replicate, hand off. Then advances the clock.
    /// Returns how long each phase took.
    pub fn tick(&mut self) -> TickTimings {
        let mut took = [Duration::ZERO; PHASES.len()];
        for (schedule, t) in self.phases.iter_mut().zip(&mut took) {
            let t0 = Instant::now();
            schedule.run(&mut self.world);
            *t = t0.elapsed();
        }
        // Without this, removal trackers grow without bound (see CRATES.md, P1).
        self.world.clear_trackers();
        let done = self.current_tick();
        let stats = &self.world.resource::<Stats>().0;
        stats.tick.set(i64::from(done.0));
        stats.ticks_total.inc();
        self.world.resource_mut::<Clock>().tick = done.next();
        TickTimings { took }
    }

    /// The tick the next call to [`Sim::tick`] will simulate.
    #[must_use]
    pub fn current_tick(&self) -> Tick {
        self.world.resource::<Clock>().tick
    }

    /// The world, for inspection by tests.
    #[must_use]
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The world, for tests that set up situations directly.
    pub fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }
}
