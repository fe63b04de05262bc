//! The tick thread: runs [`Sim::tick`] on drift-free deadlines and logs a stats line.
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
//! that world: its clients are closed with 1011 and a reason, the panic is logged and counted
//! (`game_panics`), and a fresh world of the same game starts on the same deadlines, so the
//! server keeps serving new clients instead of dying with its tick thread.

use super::Sim;
use crate::config::Config;
use crate::error::ServerError;
use crate::stats::ServerStats;
use crate::telemetry::Telemetry;
use crossbeam_channel::{RecvTimeoutError, Sender};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Builds a fresh world of the server's game, after a game panic disposed of the last one.
pub type Remake = Box<dyn FnMut() -> Result<Sim, ServerError> + Send>;

/// The close reason clients of a world whose game panicked get (with 1011).
pub const GAME_FAILED_REASON: &str = "internal error: the game failed and was restarted";

/// The running tick thread.
pub struct TickLoop {
    stop: Sender<()>,
    handle: JoinHandle<()>,
    paused: Arc<AtomicBool>,
    faults: Arc<super::Faults>,
}

impl TickLoop {
    /// Starts the thread; it owns the simulation until stopped.
    pub fn spawn(
        sim: Sim,
        remake: Remake,
        config: &Config,
        stats: Arc<ServerStats>,
        telemetry: Arc<Telemetry>,
    ) -> Result<TickLoop, ServerError> {
        let paused = Arc::new(AtomicBool::new(false));
        let faults = Arc::clone(sim.faults());
        let paused_in_loop = Arc::clone(&paused);
        let (stop, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let schedule = Schedule {
            tick_rate_hz: u64::from(config.tick_rate_hz),
            max_catchup_ticks: u64::from(config.max_catchup_ticks),
            stats_interval: Duration::from_millis(config.stats_interval_ms.max(1)),
        };
        let handle = std::thread::Builder::new()
            .name("tickwire-tick".into())
            .spawn(move || {
                run(
                    sim,
                    remake,
                    &schedule,
                    &stats,
                    &telemetry,
                    &paused_in_loop,
                    &stop_rx,
                )
            })
            .map_err(ServerError::TickThread)?;
        Ok(TickLoop {
            stop,
            handle,
            paused,
            faults,
        })
    }

    /// The fault-injection hook of the running world.
    #[must_use]
    pub fn faults(&self) -> &Arc<super::Faults> {
        &self.faults
    }

    /// Stops running ticks until resumed, as a stalled loop would (a diagnostic hook: health
    /// checks then fail, and on resume the loop skips what it missed).
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Relaxed);
    }

    /// Stops the loop after the current tick and waits for the thread to end.
    pub fn stop(self) {
        // A full channel means a stop is already pending; a closed one that the thread ended.
        let _ = self.stop.try_send(());
        if self.handle.join().is_err() {
            warn!("tick thread panicked");
        }
    }
}

struct Schedule {
    tick_rate_hz: u64,
    max_catchup_ticks: u64,
    stats_interval: Duration,
}

impl Schedule {
    /// Offset of tick `n`'s deadline from the start, exact in nanoseconds.
    fn offset(&self, n: u64) -> Duration {
        let nanos = u128::from(n) * 1_000_000_000 / u128::from(self.tick_rate_hz);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

fn run(
    mut sim: Sim,
    mut remake: Remake,
    schedule: &Schedule,
    stats: &ServerStats,
    telemetry: &Telemetry,
    paused: &AtomicBool,
    stop: &crossbeam_channel::Receiver<()>,
) {
    let period = schedule.offset(1);
    let start = Instant::now();
    let mut window_start = start;
    let mut window_bytes = stats.bytes_out.get();
    let mut window_overruns = 0u64;
    let mut n: u64 = 0;
    info!(tick_rate_hz = schedule.tick_rate_hz, "tick loop started");
    loop {
        if paused.load(Relaxed) {
            match stop.recv_timeout(period) {
                Err(RecvTimeoutError::Timeout) => continue,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // The world is not touched again after a panic (only its links, to close them), so
        // no broken invariant of it is observed: AssertUnwindSafe holds.
        let timings = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.tick())) {
            Ok(timings) => timings,
            Err(payload) => {
                stats.game_panics.inc();
                let clients =
                    sim.abandon(tickwire_protocol::close::INTERNAL_ERROR, GAME_FAILED_REASON);
                error!(
                    panic = panic_message(payload.as_ref()),
                    clients,
                    "the game panicked: its world is disposed, its clients closed with 1011, \
                     and a fresh world started"
                );
                match remake() {
                    Ok(mut fresh) => {
                        fresh.use_faults(Arc::clone(sim.faults()));
                        sim = fresh;
                    }
                    Err(e) => {
                        error!(error = %e, "cannot start a fresh world: the tick loop stops");
                        break;
                    }
                }
                n += 1;
                continue;
            }
        };
        n += 1;
        let mut deadline = start + schedule.offset(n);
        let now = Instant::now();
        let mut lag = 0;
        if now > deadline {
            window_overruns += 1;
            stats.overruns.inc();
            let behind =
                (now - deadline).as_nanos() * u128::from(schedule.tick_rate_hz) / 1_000_000_000;
            let behind = u64::try_from(behind).unwrap_or(u64::MAX);
            lag = behind;
            if behind > schedule.max_catchup_ticks {
                n += behind;
                stats.skipped_ticks.inc_by(behind);
                deadline = start + schedule.offset(n);
                warn!(skipped = behind, "tick loop fell behind; skipping ticks");
            }
        }
        telemetry.record_tick(&timings, lag);
        if now.duration_since(window_start) >= schedule.stats_interval {
            let secs = now.duration_since(window_start).as_secs_f64();
            let bytes = stats.bytes_out.get();
            let window = telemetry.take_window();
            info!(
                clients = stats.clients.get(),
                tick = stats.last_tick(),
                tick_p50_ms = window.p50_ms,
                tick_p99_ms = window.p99_ms,
                tick_max_ms = window.max_ms,
                overruns = window_overruns,
                bytes_out_per_s = ((bytes - window_bytes) as f64 / secs).round(),
                snapshots_dropped = stats.snapshots_dropped.get(),
                "stats"
            );
            window_start = now;
            window_bytes = bytes;
            window_overruns = 0;
        }
        match stop.recv_deadline(deadline) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    info!(ticks = n, "tick loop stopped");
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
        };
        assert_eq!(s.offset(30), Duration::from_secs(1));
        assert_eq!(s.offset(30 * 3600), Duration::from_secs(3600));
        assert_eq!(s.offset(1), Duration::from_nanos(33_333_333));
    }
}
