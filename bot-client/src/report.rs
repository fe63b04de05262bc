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
    /// Bots that could not connect or were not welcomed.
    pub failed: u64,
    /// Connected bots whose connection ended before the run did.
    pub dropped: u64,
    /// Snapshots whose result differed from the server's view (checksum or structure).
    pub desyncs: u64,
    /// Snapshots against a baseline the bot no longer held.
    pub missing_baselines: u64,
    /// Length of the measured window, seconds.
    pub duration_s: f64,
    /// Snapshots received per connected bot per second.
    pub snapshots_per_bot_per_s: f64,
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
    /// Mean number of players in a bot's replica.
    pub visible_players_per_bot: f64,
    /// Snapshot payload bytes per visible player per snapshot (players are the moving
    /// entities that deltas carry; projectiles cost bytes only when they appear and vanish).
    pub bytes_per_visible_player_per_snapshot: f64,
    /// Full (non-delta) snapshots received, all bots, whole run.
    pub full_snapshots: u64,
    /// Projectile creations seen, all bots, whole run.
    pub projectiles_seen: u64,
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
}

impl Report {
    /// True if every bot connected and stayed, and none desynced.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.connected == self.bots && self.failed == 0 && self.dropped == 0 && self.desyncs == 0
    }

    /// A readable multi-line summary.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let verdict = if self.ok() { "OK" } else { "FAILED" };
        let _ = writeln!(s, "tickwire-bots: {verdict} ({})", self.url);
        let _ = writeln!(
            s,
            "  bots       {} asked, {} connected, {} failed, {} dropped, {} desyncs",
            self.bots, self.connected, self.failed, self.dropped, self.desyncs
        );
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
            "  input rtt  p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            q.p50, q.p95, q.p99, q.max
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
            "  other      {} full snapshots, {} missing baselines, {} projectiles seen",
            self.full_snapshots, self.missing_baselines, self.projectiles_seen
        );
        for o in &self.slow_reader_outcomes {
            let _ = writeln!(s, "  slow       {o}");
        }
        for e in &self.errors {
            let _ = writeln!(s, "  error      {e}");
        }
        s
    }
}
