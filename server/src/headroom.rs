//! The headless harness and the headroom report: how much of the tick budget the server uses
//! with N simulated clients, and the largest N that fits under a chosen fraction of it.
//!
//! A [`Harness`] runs the real simulation and replication with N clients that have no sockets:
//! each tick they send one input chosen by the game's bot behaviour, carrying an ack of a
//! snapshot from 1 to 3 ticks earlier (as over a network), and their outboxes are emptied. While verification is on (the checking run: the
//! warm-up, and in the headroom command and the tick bench [`CHECK_TICKS`] more) every client's
//! frames are decoded and applied to that client's own replica and checked against the
//! server's checksum, at every lag in use, so deltas against 2- and 3-tick-old baselines and change records
//! shared through the per-baseline cache are all checked; a run cannot look fast while
//! producing wrong deltas. The criterion bench `tick` and the `tickwire-server headroom` command
//! both use it.
//!
//! What the socket-less hand-off leaves out: each fake client registers a waker on its outbox
//! (as a session waiting in `recv` does), so hand-off pays the wake-up call, but the waker only
//! counts, where the real one schedules the session's task on the runtime and may unpark a
//! network thread (a futex call); and no bytes are written to sockets. Those costs are on the
//! network threads, not the tick thread, and show up in live runs (see `docs/PERFORMANCE.md`).

use crate::boundary::{ClientEvent, ClientId};
use crate::config::{Config, VisibilityMode};
use crate::game::GameDef;
use crate::harness::SimClient;
use crate::sim::{PHASES, Sim, TickTimings};
use crate::stats::ServerStats;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Wake, Waker};
use std::time::Duration;
use tickwire_protocol::Tick;
use tickwire_protocol::behaviour::{Behaviour, BehaviourFactory, BotView};

/// What the harness runs: a game, and the behaviour of its simulated clients.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// The game.
    pub game: GameDef,
    /// Its bots' behaviour.
    pub behaviour: BehaviourFactory,
}

/// Ticks run after the clients join and before measuring, so a game's churn (entities that come
/// and go) is in steady state.
pub const WARMUP_TICKS: usize = 90;

/// Verified ticks run after the warm-up and before timing, in the checking run of the headroom
/// command and the tick bench.
pub const CHECK_TICKS: usize = 30;

struct FakeClient {
    client: SimClient,
    seed: u64,
    /// Made from the welcome, at the first tick after it.
    behaviour: Option<Box<dyn Behaviour>>,
    /// Ticks of acknowledgement lag (1..=3).
    lag: usize,
    received: VecDeque<Tick>,
}

/// A waker that counts its wake-ups (standing in for a session task's waker).
#[derive(Debug, Default)]
struct CountingWaker(AtomicU64);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Relaxed);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Relaxed);
    }
}

/// N socket-less clients around a real simulation.
pub struct Harness {
    sim: Sim,
    factory: BehaviourFactory,
    input: Vec<i64>,
    clients: Vec<FakeClient>,
    waker: Arc<CountingWaker>,
    verify: bool,
    /// Snapshots verified so far (decoded, applied to the client's replica, checksum matched).
    pub verified: u64,
    /// Payload bytes handed to all clients in the last tick.
    pub bytes_last_tick: u64,
}

impl Harness {
    /// A world with `n` clients joined and warmed up, using `config` (its bind address and
    /// network settings are ignored). Every client's frames are verified during the warm-up;
    /// verification stays on until [`Harness::stop_verifying`].
    ///
    /// # Panics
    /// If the embedded map is invalid or any client's replica disagrees with the server.
    #[must_use]
    pub fn new(config: &Config, work: &Workload, n: usize) -> Harness {
        Harness::build(config, work, n, true)
    }

    /// [`Harness::new`] without verifying anything, for tests that count something else (the
    /// allocation test) and must not pay for `n` replicas under an instrumented allocator.
    #[must_use]
    pub fn new_unverified(config: &Config, work: &Workload, n: usize) -> Harness {
        Harness::build(config, work, n, false)
    }

    fn build(config: &Config, work: &Workload, n: usize, verify: bool) -> Harness {
        let (join_tx, join_rx) = crossbeam_channel::bounded(n.max(1));
        let sim = Sim::new(
            config,
            &work.game,
            join_rx,
            Arc::new(ServerStats::default()),
        )
        .expect("the game builds");
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let (client, join) = SimClient::new(
                ClientId(i as u64),
                &format!("sim-{i}"),
                config.input_queue_len,
                config.outbox_len,
            );
            join_tx.send(join).expect("the join queue holds n");
            clients.push(FakeClient {
                client,
                seed: config.seed.wrapping_add(i as u64),
                behaviour: None,
                lag: 1 + i % 3,
                received: VecDeque::with_capacity(4),
            });
        }
        let mut h = Harness {
            sim,
            factory: work.behaviour,
            input: Vec::new(),
            clients,
            waker: Arc::new(CountingWaker::default()),
            verify,
            verified: 0,
            bytes_last_tick: 0,
        };
        for _ in 0..WARMUP_TICKS {
            h.step();
        }
        h
    }

    /// Sends each client's input with its lagged ack riding on it (not part of the tick).
    pub fn feed(&mut self) {
        for c in &mut self.clients {
            let ack = (c.received.len() >= c.lag).then(|| c.received[c.received.len() - c.lag]);
            let Some(welcome) = c.client.welcome.as_ref() else {
                if let Some(t) = ack {
                    c.client.send(ClientEvent::Ack(t));
                }
                continue;
            };
            let behaviour = c
                .behaviour
                .get_or_insert_with(|| (self.factory)(c.seed, welcome));
            self.input.clear();
            let view = BotView {
                welcome,
                view: c.client.replica.as_ref().and_then(|r| r.latest()),
            };
            behaviour.next_input(&view, &mut self.input);
            c.client.send_input(&self.input, ack);
        }
    }

    /// Runs one tick and returns its phase timings.
    pub fn tick(&mut self) -> TickTimings {
        self.sim.tick()
    }

    /// Stops verifying frames (for benches that time many more ticks than they check). There
    /// is no way back: replicas that missed frames cannot verify later deltas.
    pub fn stop_verifying(&mut self) {
        self.verify = false;
        // The replicas are no use now; drop them so their memory (views of every entity, per
        // client) does not sit in the heap the timed ticks allocate from.
        for c in &mut self.clients {
            c.client.replica = None;
        }
    }

    /// Empties every outbox (not part of the tick), verifying every frame while verification
    /// is on, then registers each client's waker on its outbox again.
    ///
    /// # Panics
    /// If a client's replica disagrees with the server.
    pub fn drain(&mut self) {
        let tick = self.sim.current_tick().minus(1);
        self.bytes_last_tick = 0;
        let waker = Waker::from(Arc::clone(&self.waker));
        let mut cx = Context::from_waker(&waker);
        for (i, c) in self.clients.iter_mut().enumerate() {
            let before = c.client.verified;
            let got = match c.client.receive(self.verify) {
                Ok(got) => got,
                Err(e) => panic!(
                    "client {i} (ack lag {}) disagrees with the server: {e}",
                    c.lag
                ),
            };
            self.verified += c.client.verified - before;
            self.bytes_last_tick += got.bytes;
            // Every frame drained now belongs to the tick just run.
            if got.frames > 0 {
                if c.received.len() == 4 {
                    c.received.pop_front();
                }
                c.received.push_back(tick);
            }
            // As a session waiting in `recv` would: the next `try_send` wakes it.
            c.client.wait_for_frames(&mut cx);
        }
    }

    /// Wake-ups hand-off has made so far.
    #[must_use]
    pub fn wakeups(&self) -> u64 {
        self.waker.0.load(Relaxed)
    }

    /// Feed, tick, drain; returns the tick's timings.
    pub fn step(&mut self) -> TickTimings {
        self.feed();
        let t = self.tick();
        self.drain();
        t
    }

    /// The player of client 0 (known once its welcome was drained).
    #[must_use]
    pub fn first_player(&self) -> Option<tickwire_protocol::NetId> {
        self.clients
            .first()
            .map(|c| c.client.player)
            .filter(|p| p.0 != 0)
    }

    /// The replication state, for benches that time one part of it.
    pub fn replication(&mut self) -> bevy_ecs::world::Mut<'_, crate::replication::Replication> {
        self.sim.world_mut().resource_mut()
    }

    /// Entities in client 0's view now, as the server computes it.
    pub fn visible_to_first(&mut self) -> usize {
        let Some(player) = self.first_player() else {
            return 0;
        };
        let mut r = self.replication();
        if let Some(eye) = r.viewpoint(player) {
            let mut v = Vec::new();
            r.visible(eye, &mut v);
            v.len()
        } else {
            r.latest().map_or(0, |f| f.entities.len())
        }
    }

    /// Number of clients.
    #[must_use]
    pub fn clients(&self) -> usize {
        self.clients.len()
    }
}

/// p50, p99 and max of a duration, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Quantiles {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

impl Quantiles {
    fn of(h: &Histogram<u64>) -> Quantiles {
        let ms = |ns: u64| ns as f64 / 1e6;
        Quantiles {
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// One client count's measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Simulated clients.
    pub clients: usize,
    /// Entities in client 0's view at the end.
    pub visible_entities: usize,
    /// Per phase, in the order of [`PHASES`].
    pub phases: Vec<(String, Quantiles)>,
    /// The whole tick.
    pub tick: Quantiles,
    /// p99 tick as a fraction of the tick period.
    pub budget_used_p99: f64,
    /// Snapshot bytes per client per tick (last tick).
    pub bytes_per_client_per_tick: f64,
    /// Snapshots verified in the checking run (every client's, warm-up and check ticks).
    pub snapshots_verified: u64,
}

/// The headroom report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `global` or `aoi`.
    pub visibility: String,
    /// How `aoi` views are cut (`exact` or `cells`) and on how many threads they are built;
    /// empty in `global` mode.
    pub views: String,
    /// The tick period, ms.
    pub budget_ms: f64,
    /// Ticks measured per client count.
    pub ticks: usize,
    /// The fraction of the budget a p99 tick may use.
    pub max_fraction: f64,
    /// One row per client count, ascending.
    pub rows: Vec<Row>,
    /// The largest client count measured whose p99 tick fits under `max_fraction`.
    pub max_clients_under_fraction: Option<usize>,
}

/// Longest tick the histograms record (10 s), in nanoseconds.
const MAX_NS: u64 = 10_000_000_000;

/// Measures `ticks` ticks at one client count.
#[must_use]
pub fn measure(config: &Config, work: &Workload, clients: usize, ticks: usize) -> Row {
    let mut h = Harness::new(config, work, clients);
    // The checking run: the warm-up and these ticks verify every client's every frame. The
    // measured ticks then run without the replicas, whose memory would slow them.
    for _ in 0..CHECK_TICKS {
        h.step();
    }
    h.stop_verifying();
    let new_hist = || Histogram::<u64>::new_with_bounds(1, MAX_NS, 3).expect("static bounds");
    let mut phases: Vec<Histogram<u64>> = PHASES.iter().map(|_| new_hist()).collect();
    let mut total = new_hist();
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    for _ in 0..ticks {
        let t = h.step();
        for (hist, d) in phases.iter_mut().zip(t.took) {
            hist.saturating_record(ns(d));
        }
        total.saturating_record(ns(t.total()));
    }
    let budget_ms = 1000.0 / f64::from(config.tick_rate_hz);
    let tick = Quantiles::of(&total);
    Row {
        clients,
        visible_entities: h.visible_to_first(),
        phases: PHASES
            .iter()
            .zip(&phases)
            .map(|(name, hist)| ((*name).to_owned(), Quantiles::of(hist)))
            .collect(),
        tick,
        budget_used_p99: tick.p99_ms / budget_ms,
        bytes_per_client_per_tick: h.bytes_last_tick as f64 / clients.max(1) as f64,
        snapshots_verified: h.verified,
    }
}

/// Measures each client count in `counts` (ascending) and finds the largest that fits.
#[must_use]
pub fn run(
    config: &Config,
    work: &Workload,
    counts: &[usize],
    ticks: usize,
    max_fraction: f64,
) -> Report {
    let (rows, max_clients_under_fraction) = sweep(
        counts,
        |n| measure(config, work, n, ticks),
        |r: &Row| (r.clients, r.budget_used_p99 <= max_fraction),
    );
    Report {
        visibility: visibility_name(config),
        views: views_name(config),
        budget_ms: 1000.0 / f64::from(config.tick_rate_hz),
        ticks,
        max_fraction,
        rows,
        max_clients_under_fraction,
    }
}

impl Report {
    /// A readable table: p50 / p99 / max per phase and for the whole tick, in ms.
    #[must_use]
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "headroom: {} visibility{}, {} ticks per row, budget {:.1} ms per tick",
            self.visibility,
            if self.views.is_empty() {
                String::new()
            } else {
                format!(", views: {}", self.views)
            },
            self.ticks,
            self.budget_ms
        );
        let _ = write!(s, "{:>8} {:>8}", "clients", "visible");
        for p in PHASES {
            let _ = write!(s, " {:>22}", format!("{p} p50/p99/max"));
        }
        let _ = writeln!(
            s,
            " {:>24} {:>8} {:>9} {:>9}",
            "tick p50/p99/max", "budget", "B/client", "verified"
        );
        for r in &self.rows {
            let _ = write!(s, "{:>8} {:>8}", r.clients, r.visible_entities);
            for (_, q) in &r.phases {
                let _ = write!(
                    s,
                    " {:>22}",
                    format!("{:.3}/{:.3}/{:.3}", q.p50_ms, q.p99_ms, q.max_ms)
                );
            }
            let q = &r.tick;
            let _ = writeln!(
                s,
                " {:>24} {:>7.1}% {:>9.0} {:>9}",
                format!("{:.3}/{:.3}/{:.3}", q.p50_ms, q.p99_ms, q.max_ms),
                r.budget_used_p99 * 100.0,
                r.bytes_per_client_per_tick,
                r.snapshots_verified
            );
        }
        let _ = match self.max_clients_under_fraction {
            Some(n) => writeln!(
                s,
                "largest client count measured with p99 tick under {:.0}% of the budget: {n}",
                self.max_fraction * 100.0
            ),
            None => writeln!(
                s,
                "no client count measured kept the p99 tick under {:.0}% of the budget",
                self.max_fraction * 100.0
            ),
        };
        s
    }
}

/// Measures each of `counts` (ascending, once each) and finds the largest that fits:
/// `verdict` gives a row's count and whether it fits, and the search stops at the first that
/// does not.
fn sweep<R>(
    counts: &[usize],
    measure: impl Fn(usize) -> R,
    verdict: impl Fn(&R) -> (usize, bool),
) -> (Vec<R>, Option<usize>) {
    let mut counts = counts.to_vec();
    counts.sort_unstable();
    counts.dedup();
    let rows: Vec<R> = counts.into_iter().map(measure).collect();
    let largest = rows
        .iter()
        .map(&verdict)
        .take_while(|(_, fits)| *fits)
        .last()
        .map(|(n, _)| n);
    (rows, largest)
}

/// `global` or `aoi`, as reports name it.
fn visibility_name(config: &Config) -> String {
    match config.visibility {
        VisibilityMode::Global => "global",
        VisibilityMode::Aoi => "aoi",
    }
    .to_owned()
}

fn views_name(config: &Config) -> String {
    match (config.visibility, config.aoi_views) {
        (VisibilityMode::Global, _) => String::new(),
        (VisibilityMode::Aoi, views) => {
            let name = match views {
                crate::config::AoiViews::Exact => "exact",
                crate::config::AoiViews::Cells => "cells",
            };
            let threads = crate::sim::replicate_threads(config);
            if threads > 1 {
                let per = config.parallel_views_min_clients;
                format!("{name}, built on up to {threads} threads (one more per {per} clients)")
            } else {
                format!("{name}, built on the tick thread")
            }
        }
    }
}

/// Rooms measured for the memory of an empty room.
pub const EMPTY_ROOMS: usize = 100;

/// K rooms of N clients each, stepped one after another as one tick thread steps its rooms.
#[derive(Debug, Clone, Serialize)]
pub struct RoomsRow {
    /// Rooms on the thread.
    pub rooms: usize,
    /// The ticks of all of them, per tick period.
    pub period: Quantiles,
    /// p99 of that as a fraction of the tick period.
    pub budget_used_p99: f64,
    /// Snapshots verified in the checking run, all rooms.
    pub snapshots_verified: u64,
}

/// The headroom report for rooms: how many rooms of N clients one core steps within a fraction
/// of the tick budget, and what an empty room costs in memory.
#[derive(Debug, Clone, Serialize)]
pub struct RoomsReport {
    /// `global` or `aoi`.
    pub visibility: String,
    /// The tick period, ms.
    pub budget_ms: f64,
    /// Tick periods measured per row.
    pub ticks: usize,
    /// The fraction of the budget a p99 period may use.
    pub max_fraction: f64,
    /// Simulated clients in each room.
    pub clients_per_room: usize,
    /// One row per room count, ascending.
    pub rows: Vec<RoomsRow>,
    /// The largest room count measured whose p99 period fits under `max_fraction`: rooms per
    /// core (one tick thread per core).
    pub rooms_per_core: Option<usize>,
    /// Resident memory of one room with no clients (its world, frame history, schedules):
    /// the process's growth over [`EMPTY_ROOMS`] of them, divided; `None` where the process's
    /// memory cannot be read.
    pub empty_room_bytes: Option<u64>,
}

/// Measures `ticks` tick periods of `rooms` rooms of `clients` clients each: every room's
/// clients are fed, then every room ticks (timed together), then every outbox is drained.
#[must_use]
pub fn measure_rooms(
    config: &Config,
    work: &Workload,
    rooms: usize,
    clients: usize,
    ticks: usize,
) -> RoomsRow {
    // Rooms per core: each room's views are built by its tick thread alone.
    let config = &Config {
        replicate_threads: 1,
        ..config.clone()
    };
    let mut hs: Vec<Harness> = (0..rooms)
        .map(|_| Harness::new(config, work, clients))
        .collect();
    for h in &mut hs {
        for _ in 0..CHECK_TICKS {
            h.step();
        }
        h.stop_verifying();
    }
    let mut period = Histogram::<u64>::new_with_bounds(1, MAX_NS, 3).expect("static bounds");
    for _ in 0..ticks {
        for h in &mut hs {
            h.feed();
        }
        let t0 = std::time::Instant::now();
        for h in &mut hs {
            h.tick();
        }
        let took = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        period.saturating_record(took.max(1));
        for h in &mut hs {
            h.drain();
        }
    }
    let budget_ms = 1000.0 / f64::from(config.tick_rate_hz);
    let q = Quantiles::of(&period);
    RoomsRow {
        rooms,
        budget_used_p99: q.p99_ms / budget_ms,
        period: q,
        snapshots_verified: hs.iter().map(|h| h.verified).sum(),
    }
}

/// The resident memory of one empty room: [`EMPTY_ROOMS`] worlds of the game built and ticked
/// once with no clients, the process's growth divided by their number.
#[must_use]
pub fn empty_room_bytes(config: &Config, work: &Workload) -> Option<u64> {
    let before = crate::process::resident_bytes()?;
    let (_joins, rx) = crossbeam_channel::bounded(1);
    let stats = Arc::new(ServerStats::default());
    let worlds: Vec<Sim> = (0..EMPTY_ROOMS)
        .map(|_| {
            let mut sim = Sim::new(config, &work.game, rx.clone(), Arc::clone(&stats))
                .expect("the game builds");
            sim.tick();
            sim
        })
        .collect();
    let after = crate::process::resident_bytes()?;
    drop(worlds);
    Some(after.saturating_sub(before) / EMPTY_ROOMS as u64)
}

/// Measures each room count with `clients` clients per room, and the memory of an empty room.
#[must_use]
pub fn run_rooms(
    config: &Config,
    work: &Workload,
    clients: usize,
    room_counts: &[usize],
    ticks: usize,
    max_fraction: f64,
) -> RoomsReport {
    let empty_room_bytes = empty_room_bytes(config, work);
    let (rows, rooms_per_core) = sweep(
        room_counts,
        |k| measure_rooms(config, work, k, clients, ticks),
        |r: &RoomsRow| (r.rooms, r.budget_used_p99 <= max_fraction),
    );
    RoomsReport {
        visibility: visibility_name(config),
        budget_ms: 1000.0 / f64::from(config.tick_rate_hz),
        ticks,
        max_fraction,
        clients_per_room: clients,
        rows,
        rooms_per_core,
        empty_room_bytes,
    }
}

impl RoomsReport {
    /// The report as a text table.
    #[must_use]
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "headroom for rooms: {} visibility, {} clients per room, {} tick periods per row, \
             budget {:.1} ms per tick, all rooms on one thread",
            self.visibility, self.clients_per_room, self.ticks, self.budget_ms
        );
        let _ = writeln!(
            s,
            "{:>6} {:>26} {:>8} {:>9}",
            "rooms", "period p50/p99/max (ms)", "budget", "verified"
        );
        for r in &self.rows {
            let q = &r.period;
            let _ = writeln!(
                s,
                "{:>6} {:>26} {:>7.1}% {:>9}",
                r.rooms,
                format!("{:.3}/{:.3}/{:.3}", q.p50_ms, q.p99_ms, q.max_ms),
                r.budget_used_p99 * 100.0,
                r.snapshots_verified
            );
        }
        let _ = match self.rooms_per_core {
            Some(k) => writeln!(
                s,
                "rooms per core with the p99 period under {:.0}% of the budget: {k} (of those \
                 measured)",
                self.max_fraction * 100.0
            ),
            None => writeln!(
                s,
                "no room count measured kept the p99 period under {:.0}% of the budget",
                self.max_fraction * 100.0
            ),
        };
        let _ = match self.empty_room_bytes {
            Some(b) => writeln!(s, "memory of an empty room: {:.1} KiB", b as f64 / 1024.0),
            None => writeln!(s, "memory of an empty room: not readable on this system"),
        };
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_reports_every_phase_and_a_verdict() {
        let config = Config::default();
        let work = crate::sim::tests::workload();
        let report = run(&config, &work, &[10, 5], 20, 0.5);
        assert_eq!(report.rows.len(), 2);
        assert_eq!(report.rows[0].clients, 5);
        assert_eq!(report.rows[0].phases.len(), PHASES.len());
        assert!(report.rows.iter().all(|r| r.tick.max_ms > 0.0));
        // Every client's every snapshot was verified in the checking run: 5 clients, 90 + 30
        // ticks.
        assert!(
            report.rows[0].snapshots_verified >= 5 * (WARMUP_TICKS + CHECK_TICKS - 2) as u64,
            "{report:?}"
        );
        let mut h = Harness::new(&config, &work, 3);
        let before = h.wakeups();
        h.step();
        assert_eq!(
            h.wakeups() - before,
            3,
            "hand-off wakes each waiting session"
        );
        // Tiny worlds fit any sane budget; the verdict is the larger count.
        assert_eq!(report.max_clients_under_fraction, Some(10));
        let table = report.table();
        assert!(table.contains("replicate p50/p99/max"), "{table}");
        let json = serde_json::to_string(&report).expect("serializes");
        assert!(json.contains("\"max_clients_under_fraction\":10"), "{json}");
    }

    #[test]
    fn views_built_on_several_threads_verify_at_every_client() {
        for aoi_views in [
            crate::config::AoiViews::Exact,
            crate::config::AoiViews::Cells,
        ] {
            views_on_threads(aoi_views);
        }
    }

    fn views_on_threads(aoi_views: crate::config::AoiViews) {
        let config = Config {
            replicate_threads: 3,
            parallel_views_min_clients: 5,
            aoi_views,
            ..Config::default()
        };
        let work = crate::sim::tests::workload();
        // Verifies every frame of every client while warming up: a body that does not apply,
        // or a view whose checksum differs, panics.
        let mut h = Harness::new(&config, &work, 12);
        for _ in 0..CHECK_TICKS {
            h.step();
        }
        assert!(
            h.verified >= 12 * (WARMUP_TICKS + CHECK_TICKS - 2) as u64,
            "{}",
            h.verified
        );
        let parallel = h.replication().parallel_ticks();
        assert!(
            parallel >= (WARMUP_TICKS + CHECK_TICKS - 2) as u64,
            "built on several threads from the first ticks: {parallel}"
        );
        // Under the bound, the tick thread builds them alone.
        let config = Config {
            parallel_views_min_clients: 13,
            ..config
        };
        let mut h = Harness::new(&config, &work, 12);
        h.step();
        assert_eq!(h.replication().parallel_ticks(), 0);
    }

    #[test]
    fn a_small_rooms_run_verifies_every_room_and_reports_rooms_per_core() {
        let config = Config::default();
        let work = crate::sim::tests::workload();
        let report = run_rooms(&config, &work, 4, &[3, 1], 10, 0.5);
        assert_eq!(report.rows.len(), 2);
        assert_eq!(report.rows[0].rooms, 1);
        assert_eq!(report.rows[1].rooms, 3);
        // Every room's clients verified every snapshot of the checking run.
        assert!(
            report.rows[1].snapshots_verified >= 3 * 4 * (WARMUP_TICKS + CHECK_TICKS - 2) as u64,
            "{report:?}"
        );
        assert!(report.rows.iter().all(|r| r.period.max_ms > 0.0));
        assert_eq!(
            report.rooms_per_core,
            Some(3),
            "tiny rooms fit any sane budget"
        );
        // The figure itself is for the headroom command (tests share the process's memory).
        if cfg!(target_os = "linux") {
            assert!(report.empty_room_bytes.is_some(), "{report:?}");
        }
        let table = report.table();
        assert!(table.contains("rooms per core"), "{table}");
    }
}
