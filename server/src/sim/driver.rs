//! The tick threads: a small pool, each running [`Sim::tick`] for its worlds on drift-free
//! deadlines; one logs the stats line.
//!
//! Deadlines are computed from the start instant and the tick count (never by adding a period to
//! the previous wake-up), so rounding and scheduling jitter do not accumulate. A tick that ends
//! after the next deadline is an overrun; the loop then runs the next tick at once to catch up.
//! If it falls more than `max_catchup_ticks` behind, it skips the missed ticks (counted) rather
//! than trying to run them all, so an overload can never spiral: the world then runs slower
//! than real time for a moment, clients see a gap in tick numbers, and nothing queues up.
//! Every tick's phase timings and the lag go to [`Telemetry`].
//!
//! Game code can panic. A panic in a tick (a game system, a join or leave hook) disposes of
//! that room: its clients are closed with 1011 and a reason, the panic is logged and counted
//! (`game_panics`), and the room leaves the registry, so the server keeps serving every other
//! room (and new ones) instead of dying with its tick thread.
//!
//! After each tick a thread also asks the registry whether the room has been empty for its
//! grace period; if so the room is disposed and its world dropped (see [`crate::rooms`]).

use super::Sim;
use crate::config::Config;
use crate::error::ServerError;
use crate::rooms::Rooms;
use crate::stats::ServerStats;
use crate::telemetry::Telemetry;
use crossbeam_channel::{RecvTimeoutError, Sender, TryRecvError};
use parking_lot::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// The close reason clients of a room whose game panicked get (with 1011).
pub const GAME_FAILED_REASON: &str = "internal error: the game failed and its room was closed";

/// One world on a tick thread, with its own drift-free deadlines.
struct Room {
    sim: Sim,
    /// The registry it belongs to (none for a world added directly, by tests).
    registry: Weak<Rooms>,
    /// Deadline of tick 0.
    start: Instant,
    /// Ticks run (or skipped): tick `n` is due at `start + offset(n)`.
    n: u64,
}

/// What the pool tells a tick thread.
enum Control {
    /// Step this world too.
    Add(Box<Room>),
}

/// One thread of the pool.
struct Worker {
    control: Sender<Control>,
    handle: JoinHandle<()>,
    /// Worlds it steps (the thread counts down the ones it drops).
    rooms: Arc<AtomicUsize>,
}

/// The tick threads: a small pool (`tick_threads`, by default one per core), each stepping the
/// worlds given to it, each world on its own deadlines (staggered across the tick period, so
/// the worlds of one thread do not all fall due at once). A world is stepped by one thread
/// only; a slow world delays the others of its thread, never those of another thread.
pub struct TickLoop {
    workers: Mutex<Vec<Worker>>,
    threads: usize,
    paused: Arc<AtomicBool>,
    faults: Arc<super::Faults>,
    added: AtomicU64,
    tick_rate_hz: u64,
}

impl TickLoop {
    /// Starts the threads, with no world yet.
    pub fn spawn(
        config: &Config,
        stats: Arc<ServerStats>,
        telemetry: Arc<Telemetry>,
    ) -> Result<TickLoop, ServerError> {
        let paused = Arc::new(AtomicBool::new(false));
        let threads = super::per_core_or(config.tick_threads);
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let (control, control_rx) = crossbeam_channel::bounded::<Control>(64);
            let schedule = Schedule {
                tick_rate_hz: u64::from(config.tick_rate_hz),
                max_catchup_ticks: u64::from(config.max_catchup_ticks),
                stats_interval: Duration::from_millis(config.stats_interval_ms.max(1)),
                // One stats line for the process (the telemetry window is shared).
                logs_stats: i == 0,
            };
            let rooms = Arc::new(AtomicUsize::new(0));
            let (stats, telemetry, paused, count) = (
                Arc::clone(&stats),
                Arc::clone(&telemetry),
                Arc::clone(&paused),
                Arc::clone(&rooms),
            );
            let handle = std::thread::Builder::new()
                .name(format!("tickwire-tick-{i}"))
                .spawn(move || run(&control_rx, &schedule, &stats, &telemetry, &paused, &count))
                .map_err(ServerError::TickThread)?;
            workers.push(Worker {
                control,
                handle,
                rooms,
            });
        }
        Ok(TickLoop {
            workers: Mutex::new(workers),
            threads,
            paused,
            faults: Arc::new(super::Faults::default()),
            added: AtomicU64::new(0),
            tick_rate_hz: u64::from(config.tick_rate_hz),
        })
    }

    /// Gives a world to the thread with the fewest, starting it within the next tick period
    /// (staggered by eighths of a period, in the order worlds are added). `registry` is the
    /// room registry the world's room is in, which its thread asks whether to dispose of it
    /// (a dangling one for a world outside any registry). The world uses the pool's
    /// fault-injection hook.
    pub fn add(&self, mut sim: Sim, registry: Weak<Rooms>) {
        let period = Duration::from_nanos(1_000_000_000 / self.tick_rate_hz.max(1));
        let added = self.added.fetch_add(1, Relaxed);
        let stagger = period * u32::try_from(added % 8).unwrap_or(0) / 8;
        sim.use_faults(Arc::clone(&self.faults));
        let room = Box::new(Room {
            sim,
            registry,
            start: Instant::now() + stagger,
            n: 0,
        });
        let workers = self.workers.lock();
        if let Some(w) = workers.iter().min_by_key(|w| w.rooms.load(Relaxed)) {
            w.rooms.fetch_add(1, Relaxed);
            if w.control.send(Control::Add(room)).is_err() {
                warn!("a tick thread has stopped: the world is dropped");
            }
        } else {
            warn!("the tick pool is stopped: the world is dropped");
        }
    }

    /// The tick threads.
    #[must_use]
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The fault-injection hook shared by every world of the pool.
    #[must_use]
    pub fn faults(&self) -> &Arc<super::Faults> {
        &self.faults
    }

    /// Stops running ticks until resumed, as a stalled loop would (a diagnostic hook: health
    /// checks then fail, and on resume the loop skips what it missed).
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Relaxed);
    }

    /// Stops every thread after its current tick and waits for them to end; worlds added
    /// afterwards are dropped.
    pub fn stop(&self) {
        let workers = std::mem::take(&mut *self.workers.lock());
        let mut handles = Vec::with_capacity(workers.len());
        for w in workers {
            // Dropping the sender is the stop signal.
            drop(w.control);
            handles.push(w.handle);
        }
        for h in handles {
            if h.join().is_err() {
                warn!("tick thread panicked");
            }
        }
    }
}

struct Schedule {
    tick_rate_hz: u64,
    max_catchup_ticks: u64,
    stats_interval: Duration,
    logs_stats: bool,
}

impl Schedule {
    /// Offset of tick `n`'s deadline from the start, exact in nanoseconds.
    fn offset(&self, n: u64) -> Duration {
        let nanos = u128::from(n) * 1_000_000_000 / u128::from(self.tick_rate_hz);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// A tick thread: steps whichever of its worlds is due next, waiting for it (or for a new
/// world, or the stop) in between.
fn run(
    control: &crossbeam_channel::Receiver<Control>,
    schedule: &Schedule,
    stats: &ServerStats,
    telemetry: &Telemetry,
    paused: &AtomicBool,
    count: &AtomicUsize,
) {
    let period = schedule.offset(1);
    let mut rooms: Vec<Room> = Vec::new();
    let mut window_start = Instant::now();
    let mut window_bytes = stats.bytes_out.get();
    let mut window_overruns = stats.overruns.get();
    info!(tick_rate_hz = schedule.tick_rate_hz, "tick thread started");
    loop {
        // New worlds, or the stop.
        loop {
            match control.try_recv() {
                Ok(Control::Add(room)) => rooms.push(*room),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return stopped(&rooms),
            }
        }
        if rooms.is_empty() || paused.load(Relaxed) {
            let wait = if rooms.is_empty() {
                Duration::MAX
            } else {
                period
            };
            match control.recv_timeout(wait) {
                Ok(Control::Add(room)) => rooms.push(*room),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return stopped(&rooms),
            }
            continue;
        }
        let Some((i, due)) = rooms
            .iter()
            .enumerate()
            .map(|(i, r)| (i, r.start + schedule.offset(r.n)))
            .min_by_key(|(_, due)| *due)
        else {
            continue;
        };
        if due > Instant::now() {
            match control.recv_deadline(due) {
                Ok(Control::Add(room)) => {
                    rooms.push(*room);
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return stopped(&rooms),
            }
        }
        if !step(&mut rooms[i], schedule, stats, telemetry) {
            rooms.swap_remove(i);
            count.fetch_sub(1, Relaxed);
        }
        let now = Instant::now();
        if schedule.logs_stats && now.duration_since(window_start) >= schedule.stats_interval {
            let secs = now.duration_since(window_start).as_secs_f64();
            let bytes = stats.bytes_out.get();
            let overruns = stats.overruns.get();
            let window = telemetry.take_window();
            info!(
                rooms = stats.rooms.get(),
                clients = stats.clients.get(),
                tick = stats.last_tick(),
                tick_p50_ms = window.p50_ms,
                tick_p99_ms = window.p99_ms,
                tick_max_ms = window.max_ms,
                overruns = overruns - window_overruns,
                bytes_out_per_s = ((bytes - window_bytes) as f64 / secs).round(),
                snapshots_dropped = stats.snapshots_dropped.get(),
                "stats"
            );
            window_start = now;
            window_bytes = bytes;
            window_overruns = overruns;
        }
    }
}

fn stopped(rooms: &[Room]) {
    let ticks: u64 = rooms.iter().map(|r| r.n).sum();
    info!(worlds = rooms.len(), ticks, "tick thread stopped");
}

/// Runs one tick of `room` and moves its deadline on, skipping ticks when it is too far
/// behind. False when the room is gone: its game panicked (its clients are then closed with
/// 1011), or it has been empty for the grace period; its thread then drops the world.
fn step(room: &mut Room, schedule: &Schedule, stats: &ServerStats, telemetry: &Telemetry) -> bool {
    // The world is not touched again after a panic (only its links, to close them), so no
    // broken invariant of it is observed: AssertUnwindSafe holds.
    let sim = &mut room.sim;
    let timings = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.tick())) {
        Ok(timings) => timings,
        Err(payload) => {
            stats.game_panics.inc();
            let clients = sim.abandon(tickwire_protocol::close::INTERNAL_ERROR, GAME_FAILED_REASON);
            if let Some(registry) = room.registry.upgrade() {
                registry.remove(sim.room());
            }
            error!(
                room = sim.room().id(),
                panic = panic_message(payload.as_ref()),
                clients,
                "the game panicked: its room is disposed and its clients closed with 1011"
            );
            return false;
        }
    };
    room.n += 1;
    let now = Instant::now();
    sim.room().record_tick(timings.total());
    if let Some(registry) = room.registry.upgrade()
        && registry.dispose_if_idle(sim.room(), now)
    {
        // No seat is taken, so no session is left; a player whose departure the world has
        // not seen yet is only counted out.
        sim.abandon(tickwire_protocol::close::GOING_AWAY, "room closed");
        info!(room = sim.room().id(), "empty room disposed");
        return false;
    }
    let deadline = room.start + schedule.offset(room.n);
    let mut lag = 0;
    if now > deadline {
        stats.overruns.inc();
        let behind =
            (now - deadline).as_nanos() * u128::from(schedule.tick_rate_hz) / 1_000_000_000;
        let behind = u64::try_from(behind).unwrap_or(u64::MAX);
        lag = behind;
        if behind > schedule.max_catchup_ticks {
            room.n += behind;
            stats.skipped_ticks.inc_by(behind);
            warn!(
                room = sim.room().id(),
                skipped = behind,
                "tick loop fell behind; skipping ticks"
            );
        }
    }
    telemetry.record_tick(&timings, lag);
    true
}

/// The message of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_do_not_drift() {
        let s = Schedule {
            tick_rate_hz: 30,
            max_catchup_ticks: 3,
            stats_interval: Duration::from_secs(5),
            logs_stats: false,
        };
        assert_eq!(s.offset(30), Duration::from_secs(1));
        assert_eq!(s.offset(30 * 3600), Duration::from_secs(3600));
        assert_eq!(s.offset(1), Duration::from_nanos(33_333_333));
    }
}
