//! The simulation: a `bevy_ecs` World running one game, stepped by one Schedule per phase per
//! tick, with no sockets.
//!
//! Data flows in through bounded channels (join requests, then each client's inputs and acks),
//! through five timed phases (ingest, simulate, capture, replicate, hand off; see [`PHASES`]):
//! the engine's systems in [`systems`] around the game's own in the simulate phase; and out as
//! one snapshot frame per client per tick on each client's bounded outbox. [`Sim::tick`] never
//! blocks: the tick thread in [`driver`] calls it on a fixed schedule, and tests and benches
//! call it directly.
//!
//! - [`components`]: the engine's components and resources.
//! - [`systems`]: the engine's systems, in schedule order.
//! - [`driver`]: the thread that runs ticks on drift-free deadlines.

pub mod components;
pub mod driver;
pub mod systems;
#[cfg(test)]
pub(crate) mod tests;

use crate::boundary::JoinRequest;
use crate::config::Config;
use crate::error::ServerError;
use crate::game::{GameApp, GameDef};
use crate::replication::Replication;
use crate::stats::ServerStats;
use bevy_ecs::prelude::*;
use components::*;
use crossbeam_channel::Receiver;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tickwire_protocol::{GameSchema, Tick, Visibility};

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
    drop_player: AtomicU32,
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

    /// Drops the connection of the player with this net id (in whichever room has one, on its
    /// next hand-off) the way a failing network does: no close frame, the socket just closes.
    /// The player is then held for a resume.
    pub fn drop_connection_of(&self, player: u32) {
        self.drop_player.store(player, Relaxed);
    }

    /// The player whose connection to drop, if one is pending (0: none).
    pub(crate) fn drop_requested(&self) -> u32 {
        self.drop_player.load(Relaxed)
    }

    /// The pending drop was carried out.
    pub(crate) fn drop_taken(&self) {
        self.drop_player.store(0, Relaxed);
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
    room: Arc<crate::rooms::RoomInfo>,
    phases: [Schedule; PHASES.len()],
    faults: Arc<Faults>,
    schema: Arc<GameSchema>,
    page: &'static [crate::net::web::Asset],
}

impl Sim {
    /// A world running `game` (with its section of `config.games`), fed by `joins`, reporting
    /// into `stats`, outside any room registry.
    ///
    /// # Errors
    /// The game's configuration or registrations are invalid.
    pub fn new(
        config: &Config,
        game: &GameDef,
        joins: Receiver<JoinRequest>,
        stats: Arc<ServerStats>,
    ) -> Result<Sim, ServerError> {
        let room = crate::rooms::RoomInfo::detached("main", game.name());
        Sim::in_room(config, game, joins, stats, room, std::sync::Weak::new())
    }

    /// The world of `room` in `registry`: like [`Sim::new`], and the world's tick and the
    /// welcome's room id are the room's; the game reads the room's properties from the
    /// [`crate::game::Room`] resource; the world gives a held player's seat back to `registry`
    /// when it gives up on the player.
    ///
    /// # Errors
    /// The game's configuration or registrations are invalid.
    pub fn in_room(
        config: &Config,
        game: &GameDef,
        joins: Receiver<JoinRequest>,
        stats: Arc<ServerStats>,
        room: Arc<crate::rooms::RoomInfo>,
        registry: std::sync::Weak<crate::rooms::Rooms>,
    ) -> Result<Sim, ServerError> {
        let mut app = GameApp::new(game.name(), config.seed, config.tick_rate_hz);
        app.world_mut()
            .insert_resource(crate::game::Room(Arc::clone(&room)));
        game.build(&mut app, config.games.get(game.name()))?;
        app.check()?;
        // Interest management needs both the setting and a game that places its entities.
        let interest = match (config.visibility(), &app.interest) {
            (Visibility::Aoi { radius }, Some(i)) => {
                let r = (radius * i.units_per_world)
                    .round()
                    .clamp(1.0, i32::MAX as f32);
                Some((r as i32, i.extent, config.aoi_views))
            }
            _ => None,
        };
        let visibility = if interest.is_some() {
            config.visibility()
        } else {
            Visibility::Global
        };
        let (hooks, mut world, simulate, page) = systems::GameHooks::new(app);
        let schema = Arc::clone(&hooks.schema);
        world.insert_resource(Clock {
            tick: Tick(0),
            tick_rate_hz: config.tick_rate_hz,
        });
        world.insert_resource(Rules {
            visibility,
            joins_per_tick: config.join_queue_len,
            events_per_tick: config.input_queue_len,
            lag: crate::replication::LagLimits {
                max_in_a_row: config.max_lag_ticks,
                skip_window: config.skip_window_ticks,
                max_skipped_fraction: config.max_skipped_fraction,
                max_unacked: config.ms_to_ticks(config.ack_timeout_ms),
            },
            history_ticks: config.history_ticks as usize,
            resume_grace_ticks: config.ms_to_ticks(config.resume_grace_ms),
            max_pending_events: config.max_pending_events.max(1),
            max_pending_event_bytes: config.max_pending_event_bytes.max(64),
            replicate_threads: replicate_threads(config),
            parallel_views_min_clients: config.parallel_views_min_clients.max(1),
        });
        world.insert_resource(NetIds::default());
        let faults = Arc::new(Faults::default());
        world.insert_resource(FaultHooks {
            faults: Arc::clone(&faults),
            starved: None,
        });
        world.insert_resource(Stats(stats));
        let server_events = schema
            .server_events
            .iter()
            .map(|c| c.name.clone())
            .collect();
        world.insert_resource(crate::game::ServerEvents::new(Arc::new(server_events)));
        world.insert_resource(systems::Joins(joins));
        world.insert_resource(systems::Registry(registry));
        world.insert_resource(systems::Departed::default());
        world.insert_resource(systems::HeldPlayers::default());
        world.insert_resource(Replication::new(
            config.history_ticks as usize,
            Arc::clone(&schema),
            interest,
        ));
        world.insert_resource(hooks);

        let phase = |systems: bevy_ecs::schedule::ScheduleConfigs<_>| {
            let mut schedule = Schedule::default();
            schedule.add_systems(systems);
            schedule
        };
        let phases = [
            phase(
                (
                    systems::ingest_joins,
                    systems::ingest_client_events,
                    systems::depart,
                )
                    .chain(),
            ),
            simulate,
            phase(systems::capture_world.into_configs()),
            phase(systems::replicate.into_configs()),
            phase((systems::deliver_events, systems::hand_off).chain()),
        ];
        Ok(Sim {
            world,
            room,
            phases,
            faults,
            schema,
            page,
        })
    }

    /// The game's schema.
    #[must_use]
    pub fn schema(&self) -> &Arc<GameSchema> {
        &self.schema
    }

    /// The room this world is.
    #[must_use]
    pub fn room(&self) -> &Arc<crate::rooms::RoomInfo> {
        &self.room
    }

    /// The game's own cap on players, if it set one.
    #[must_use]
    pub fn player_cap(&self) -> Option<usize> {
        self.world
            .get_resource::<systems::GameHooks>()
            .and_then(systems::GameHooks::player_cap)
    }

    /// The game's page files.
    #[must_use]
    pub fn page(&self) -> &'static [crate::net::web::Asset] {
        self.page
    }

    /// The fault-injection hook of this world.
    #[must_use]
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// Shares another world's fault-injection hook (every room of a server uses the pool's).
    pub fn use_faults(&mut self, faults: Arc<Faults>) {
        if let Some(mut hooks) = self.world.get_resource_mut::<components::FaultHooks>() {
            hooks.faults = Arc::clone(&faults);
        }
        self.faults = faults;
    }

    /// Gives up on this world (the game panicked in it, so its state cannot be trusted): asks
    /// every connected client's session to close with `code` and `reason`, and returns how
    /// many there were. The world is dropped afterwards; nothing of it runs again.
    pub fn abandon(&mut self, code: u16, reason: &str) -> usize {
        let mut links = self.world.query::<&components::Link>();
        let mut n = 0;
        for link in links.iter(&self.world) {
            link.0.kick.kick(code, reason.to_owned());
            n += 1;
        }
        if let Some(stats) = self.world.get_resource::<components::Stats>() {
            // Their departures will never run in this world.
            stats.0.clients.dec_by(n as i64);
        }
        n
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
        self.room.set_tick(done.0);
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

/// The threads that build `aoi` views in a large room: `replicate_threads`, where 0 is
/// one per core (at most 8).
#[must_use]
pub fn replicate_threads(config: &Config) -> usize {
    per_core_or(config.replicate_threads)
}

/// A thread count from the configuration: `n`, or for 0 one per core, at most 8.
#[must_use]
pub(crate) fn per_core_or(n: usize) -> usize {
    match n {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
        n => n,
    }
}
