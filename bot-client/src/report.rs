//! The swarm report: the fields `SCENARIO.md` asks for, as JSON and as a readable summary.

use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// Round-trip quantiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// Mean and 99th percentile of a per-bot, per-second rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeanP99 {
    /// Mean over bots and seconds.
    pub mean: f64,
    /// 99th percentile over bot-seconds.
    pub p99: f64,
}

/// Minimum and mean of a per-bot figure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MinMean {
    /// The lowest bot's figure.
    pub min: f64,
    /// The mean over bots.
    pub mean: f64,
}

impl MinMean {
    /// Min and mean of `values` (zeros for none).
    #[must_use]
    pub fn of(values: &[f64]) -> MinMean {
        if values.is_empty() {
            return MinMean::default();
        }
        MinMean {
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            mean: values.iter().sum::<f64>() / values.len() as f64,
        }
    }
}

/// One bot's figures over the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BotRow {
    /// The bot's name.
    pub name: String,
    /// Whether it verified every snapshot (else it read headers only).
    #[serde(default)]
    pub verifies: bool,
    /// Snapshots taken per second (each a distinct tick): applied and verified, or counted by
    /// a header-only bot.
    pub applied_per_s: f64,
    /// Server ticks that passed per second, from the ticks of its first and last snapshot.
    pub ticks_elapsed_per_s: f64,
    /// Inputs sent per second.
    pub inputs_per_s: f64,
    /// Desyncs, whole run.
    pub desyncs: u64,
    /// Snapshots left unverified while recovering from a desync, whole run.
    pub unverified: u64,
}

/// The result of a swarm run. Rates are over the measured window, which starts once every bot
/// has joined or failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Server URL.
    pub url: String,
    /// Bots asked for.
    pub bots: u64,
    /// Bots that were welcomed.
    pub connected: u64,
    /// Connected bots that applied and verified every snapshot; the others read only the
    /// headers, acknowledged and counted bytes (`--verify`).
    #[serde(default)]
    pub verifying_bots: u64,
    /// Inputs late (they missed the tick they named and were applied at the next), whole run:
    /// reported late by the server, or missing from a snapshot of the tick they named (a late
    /// input applied with the next one is not reported on).
    #[serde(default)]
    pub late_inputs: u64,
    /// Inputs sent naming their tick (on the input clock), whole run.
    #[serde(default)]
    pub timed_inputs: u64,
    /// The margin the bots' input clocks kept before each tick at the end, mean, milliseconds.
    #[serde(default)]
    pub input_margin_ms: f64,
    /// The swarm process's own CPU over the window, percent of one core (user and system).
    #[serde(default)]
    pub bots_cpu_pct: Option<f64>,
    /// Distinct rooms the connected bots joined.
    pub rooms: u64,
    /// Connections the bots dropped on purpose (`--drop-every`) and resumed.
    pub resumes: u64,
    /// Resumes that failed after every retry.
    pub resume_failures: u64,
    /// Game events the bots sent.
    pub events_sent: u64,
    /// Server events the bots took, each once and in order.
    pub events_received: u64,
    /// Server events missing from a bot's sequence or received twice (must be 0).
    pub events_lost: u64,
    /// Bots that could not connect or were not welcomed.
    pub failed: u64,
    /// Connected bots whose connection ended before the run did.
    pub dropped: u64,
    /// Snapshots whose result differed from the server's view (checksum or structure).
    pub desyncs: u64,
    /// Snapshots against a baseline the bot no longer held, outside a desync recovery.
    pub missing_baselines: u64,
    /// Snapshots that could not be verified because their bot was recovering from a desync
    /// (deltas against the replica it had just dropped, before the full snapshot it asked for).
    pub unverified_snapshots: u64,
    /// Snapshots whose tick was not after the newest one applied.
    pub out_of_order: u64,
    /// Length of the measured window, seconds.
    pub duration_s: f64,
    /// Snapshots applied and verified per connected bot per second, mean over bots.
    pub snapshots_per_bot_per_s: f64,
    /// The lowest bot's applied-and-verified snapshots per second.
    pub min_snapshots_per_bot_per_s: f64,
    /// The floor every bot's applied rate must reach: `min_rate_fraction` of the tick rate.
    pub min_rate_floor: f64,
    /// Server ticks elapsed per second as the bots saw them (min and mean over bots).
    pub ticks_elapsed_per_s: MinMean,
    /// Inputs sent per bot per second (min and mean over bots).
    pub inputs_per_bot_per_s: MinMean,
    /// The server's CPU time over the window as a percentage of one core (from its
    /// `/metrics`), or null if it could not be read.
    pub server_cpu_pct: Option<f64>,
    /// The server's CPU microseconds per connected client per tick over the window.
    pub server_cpu_us_per_client_tick: Option<f64>,
    /// The server's resident memory at the end of the window, bytes.
    pub server_resident_bytes: Option<f64>,
    /// The metrics URL read, if any.
    pub metrics_url: Option<String>,
    /// Time from sending input seq S to the first snapshot acknowledging S.
    pub rtt_ms: Quantiles,
    /// WebSocket payload bytes received per bot per second.
    pub down_bytes_per_bot_per_s: MeanP99,
    /// WebSocket payload bytes sent per bot per second.
    pub up_bytes_per_bot_per_s: MeanP99,
    /// Visibility mode the server announced: `global` or `aoi`.
    pub mode: String,
    /// Mean number of entities in a bot's replica.
    pub visible_entities_per_bot: f64,
    /// Mean number of players (entities with the same components as the bot's own player)
    /// in a bot's replica.
    pub visible_players_per_bot: f64,
    /// Snapshot payload bytes per visible player per snapshot (players are the entities that
    /// change every tick and that deltas carry; entities that never change cost bytes only when
    /// they appear and vanish).
    pub bytes_per_visible_player_per_snapshot: f64,
    /// Full (non-delta) snapshots received, all bots, whole run.
    pub full_snapshots: u64,
    /// Entity creations seen, all bots, whole run.
    pub entities_created: u64,
    /// Seed of the bots' behaviour.
    pub seed: u64,
    /// Tick rate announced by the server.
    pub tick_rate_hz: u16,
    /// Up to ten distinct reasons bots failed or were dropped.
    pub errors: Vec<String>,
    /// Slow readers run beside the bots (`--slow`), not counted above.
    pub slow_readers: u64,
    /// How each slow reader ended.
    pub slow_reader_outcomes: Vec<String>,
    /// Why the run failed; empty if it passed.
    pub failures: Vec<String>,
    /// What could not be measured, without failing the run (e.g. an unreachable default
    /// metrics URL).
    pub warnings: Vec<String>,
    /// Each bot's figures over the window.
    pub per_bot: Vec<BotRow>,
}

impl Report {
    /// True if the run passed: every bot connected and stayed, every snapshot was applied and
    /// verified (or was part of a documented recovery), none was out of order, and every bot
    /// applied snapshots at the floor rate. See [`Report::failures`].
    #[must_use]
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// A readable multi-line summary.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let verdict = if self.ok() { "OK" } else { "FAILED" };
        let _ = writeln!(s, "tickwire-bots: {verdict} ({})", self.url);
        let _ = writeln!(
            s,
            "  bots       {} asked, {} connected in {} rooms, {} failed, {} dropped, {} desyncs",
            self.bots, self.connected, self.rooms, self.failed, self.dropped, self.desyncs
        );
        let header_only = self.connected.saturating_sub(self.verifying_bots);
        let _ = writeln!(
            s,
            "  verifying  {} bots apply and verify every snapshot, {header_only} read headers only",
            self.verifying_bots
        );
        let _ = writeln!(
            s,
            "  snapshots  {:.2}/bot/s mean, {:.2} min (floor {:.1}); ticks elapsed {:.2}/s; \
             inputs {:.2}/bot/s mean, {:.2} min",
            self.snapshots_per_bot_per_s,
            self.min_snapshots_per_bot_per_s,
            self.min_rate_floor,
            self.ticks_elapsed_per_s.mean,
            self.inputs_per_bot_per_s.mean,
            self.inputs_per_bot_per_s.min
        );
        let _ = writeln!(
            s,
            "  recovery   {} unverified snapshots (after desyncs, each resynced), {} out of order, \
             {} missing baselines",
            self.unverified_snapshots, self.out_of_order, self.missing_baselines
        );
        let _ = match (self.server_cpu_pct, self.server_cpu_us_per_client_tick) {
            (Some(pct), Some(us)) => writeln!(
                s,
                "  server     {pct:.1}% of a core, {us:.1} us CPU per client per tick, {:.1} MiB resident",
                self.server_resident_bytes.unwrap_or(0.0) / (1024.0 * 1024.0)
            ),
            _ => writeln!(s, "  server     CPU not measured (no metrics URL answered)"),
        };
        if let Some(pct) = self.bots_cpu_pct {
            let _ = writeln!(
                s,
                "  swarm      {pct:.1}% of a core (the bots' own process, over the window)"
            );
        }
        let _ = writeln!(
            s,
            "  window     {:.1} s at {} Hz, {} mode; {:.2} snapshots/bot/s",
            self.duration_s, self.tick_rate_hz, self.mode, self.snapshots_per_bot_per_s
        );
        let _ = writeln!(
            s,
            "  visible    {:.1} entities/bot ({:.1} players); {:.2} bytes per visible player per snapshot",
            self.visible_entities_per_bot,
            self.visible_players_per_bot,
            self.bytes_per_visible_player_per_snapshot
        );
        let q = &self.rtt_ms;
        let _ = writeln!(
            s,
            "  input rtt  p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} of {} inputs late, margin {:.1} ms",
            q.p50, q.p95, q.p99, q.max, self.late_inputs, self.timed_inputs, self.input_margin_ms
        );
        let _ = writeln!(
            s,
            "  down       {:.0} B/bot/s mean, {:.0} p99   up {:.0} B/bot/s mean, {:.0} p99",
            self.down_bytes_per_bot_per_s.mean,
            self.down_bytes_per_bot_per_s.p99,
            self.up_bytes_per_bot_per_s.mean,
            self.up_bytes_per_bot_per_s.p99
        );
        let _ = writeln!(
            s,
            "  other      {} full snapshots, {} entities created; {} resumes, {} resume failures",
            self.full_snapshots, self.entities_created, self.resumes, self.resume_failures
        );
        let _ = writeln!(
            s,
            "  events     {} sent, {} received, {} lost",
            self.events_sent, self.events_received, self.events_lost
        );
        for o in &self.slow_reader_outcomes {
            let _ = writeln!(s, "  slow       {o}");
        }
        for e in &self.errors {
            let _ = writeln!(s, "  error      {e}");
        }
        for w in &self.warnings {
            let _ = writeln!(s, "  warning    {w}");
        }
        for f in &self.failures {
            let _ = writeln!(s, "  FAILURE    {f}");
        }
        s
    }
}
