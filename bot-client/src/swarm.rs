//! A swarm of bots: ramp-up, a measured window once all have joined, live progress on stderr,
//! and the report.

use crate::bot::{
    BotEnd, BotOutcome, BotParams, Live, RoundTrips, Window, run_bot, run_idle, run_slow,
};
use crate::client::ConnectOptions;
use crate::report::{BotRow, MeanP99, MinMean, Quantiles, Report};
use crate::scrape;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tickwire_protocol::behaviour::BehaviourFactory;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How often the progress display refreshes.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Time allowed for bots to finish after the window ends.
const WIND_DOWN: Duration = Duration::from_secs(10);
/// Runs of up to this many bots verify every snapshot in every bot unless told otherwise.
pub const FULL_VERIFY_UP_TO: u32 = 500;
/// Bots that verify in a larger run unless told otherwise.
pub const DEFAULT_VERIFY_SAMPLE: u32 = 50;

/// What to run.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Server URL, `ws://host:port/ws`.
    pub url: String,
    /// Number of bots.
    pub bots: u32,
    /// Length of the measured window.
    pub duration: Duration,
    /// Bots started per second during ramp-up.
    pub ramp_per_s: f64,
    /// Seed; bot `i` uses `seed + i`.
    pub seed: u64,
    /// Time each bot is allowed to connect.
    pub connect_timeout: Duration,
    /// Show live progress on stderr.
    pub progress: bool,
    /// TLS and socket options for every bot.
    pub connect: ConnectOptions,
    /// Bots only open the WebSocket and hold it (no hello, no inputs): for memory figures.
    pub idle: bool,
    /// Extra clients that join and then read one message per second, acking nothing.
    pub slow_readers: u32,
    /// Fraction of the tick rate every bot must apply and verify snapshots at, and send inputs
    /// at, over the window, or the run fails. Default 0.9.
    pub min_rate_fraction: f64,
    /// The server's `/metrics`, read before and after the window for its CPU time. `None`
    /// uses the admin port (7778) of a loopback server (see
    /// [`scrape::default_metrics_url`]); `Some("")` turns it off. An explicit URL that cannot
    /// be read fails the run; the default only warns.
    pub metrics_url: Option<String>,
    /// Spread the bots' source addresses over 127.0.0.0/8 when the server is on 127.0.0.1, so
    /// the server's per-address connection cap applies to each bot alone. Default true.
    pub spread_sources: bool,
    /// Bot behaviours by game name (the stock binary passes its games'). Default none.
    pub behaviours: Vec<(String, BehaviourFactory)>,
    /// The game whose behaviour the bots use; `None`: the game the server announces.
    pub game: Option<String>,
    /// Mints a join token for a bot's name, for servers that require them. Default none.
    pub tokens: Option<TokenMinter>,
    /// Spread the bots over this many rooms: bot `i` joins or creates a room whose property
    /// `swarm` is `i % rooms`. 0: every bot joins or creates with no filter (one room while
    /// it has seats). Default 0.
    pub rooms: u32,
    /// Each bot drops its connection (no close frame) at about this interval and resumes its
    /// player; `resumes` and `resume_failures` count them. Default none.
    pub drop_every: Option<Duration>,
    /// How many bots apply and verify every snapshot; the others read only the headers,
    /// acknowledge and count bytes (see [`verifies`] for which). `None`: every bot in runs of
    /// up to [`FULL_VERIFY_UP_TO`], else [`DEFAULT_VERIFY_SAMPLE`].
    pub verify: Option<u32>,
}

impl SwarmConfig {
    /// How many bots verify, after the default.
    #[must_use]
    pub fn verifying_bots(&self) -> u32 {
        self.verify
            .unwrap_or(if self.bots <= FULL_VERIFY_UP_TO {
                self.bots
            } else {
                DEFAULT_VERIFY_SAMPLE
            })
            .min(self.bots)
    }
}

/// Whether bot `i` of `n` is one of the `k` that verify: spread evenly over the swarm (so over
/// the ramp and, with `--rooms`, over the rooms), exactly `k` of them.
#[must_use]
pub fn verifies(i: u32, k: u32, n: u32) -> bool {
    let (i, k, n) = (u64::from(i), u64::from(k), u64::from(n.max(1)));
    (i + 1) * k / n != i * k / n
}

/// Mints a join token for the bot of the given name.
#[derive(Clone)]
pub struct TokenMinter(pub Arc<dyn Fn(&str) -> String + Send + Sync>);

impl std::fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenMinter")
    }
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            url: "ws://127.0.0.1:7777/ws".into(),
            bots: 10,
            duration: Duration::from_secs(10),
            ramp_per_s: 200.0,
            seed: 1,
            connect_timeout: Duration::from_secs(10),
            progress: false,
            connect: ConnectOptions::default(),
            idle: false,
            slow_readers: 0,
            min_rate_fraction: 0.9,
            metrics_url: None,
            spread_sources: true,
            behaviours: Vec::new(),
            game: None,
            tokens: None,
            rooms: 0,
            drop_every: None,
            verify: None,
        }
    }
}

/// A distinct loopback source address for bot `i`: 127.100.0.1 onwards, never .0 or .255.
#[must_use]
pub fn loopback_source(i: u32) -> std::net::IpAddr {
    let a = 100 + (i / (250 * 250)) % 150;
    let b = (i / 250) % 250 + 1;
    let c = i % 250 + 1;
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, a as u8, b as u8, c as u8))
}

/// The room request of bot `i` when the swarm is spread over `rooms` rooms.
fn swarm_room(rooms: u32, i: u32) -> Option<tickwire_protocol::RoomRequest> {
    (rooms > 0).then(|| tickwire_protocol::RoomRequest::JoinOrCreate {
        game: String::new(),
        filter: vec![("swarm".into(), (i % rooms).to_string())],
    })
}

/// True if `url`'s host is an IPv4 loopback address (so any 127.x.y.z can reach it).
fn targets_ipv4_loopback(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split(['/', ':']).next())
        .and_then(|h| h.parse::<std::net::Ipv4Addr>().ok())
        .is_some_and(|ip| ip.is_loopback())
}

/// Runs the swarm to the end and reports.
pub async fn run_swarm(cfg: SwarmConfig) -> Report {
    let live = Arc::new(Live::default());
    let window = Arc::new(Window::new(cfg.duration));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut bots = JoinSet::new();
    let verifying = cfg.verifying_bots();
    let ramp_start = tokio::time::Instant::now();
    let per_bot = Duration::from_secs_f64(1.0 / cfg.ramp_per_s.max(0.001));
    let spread = cfg.spread_sources && targets_ipv4_loopback(&cfg.url);
    let source = |i: u32| {
        if spread {
            Some(loopback_source(i))
        } else {
            cfg.connect.source_ip
        }
    };
    let round_trips = RoundTrips::new();
    for i in 0..cfg.bots {
        let name = format!("bot-{i}");
        let params = BotParams {
            url: cfg.url.clone(),
            seed: cfg.seed.wrapping_add(u64::from(i)),
            connect_timeout: cfg.connect_timeout,
            connect: ConnectOptions {
                source_ip: source(i),
                token: cfg.tokens.as_ref().map(|mint| (mint.0)(&name)),
                room: swarm_room(cfg.rooms, i).unwrap_or_else(|| cfg.connect.room.clone()),
                ..cfg.connect.clone()
            },
            name,
            behaviours: cfg.behaviours.clone(),
            game: cfg.game.clone(),
            drop_every: cfg.drop_every,
            verify: verifies(i, verifying, cfg.bots),
            round_trips: round_trips.clone(),
        };
        let (live, window, stop) = (Arc::clone(&live), Arc::clone(&window), stop_rx.clone());
        let start_at = ramp_start + per_bot * i;
        let idle = cfg.idle;
        bots.spawn(async move {
            tokio::time::sleep_until(start_at).await;
            if idle {
                run_idle(params, &live, stop).await
            } else {
                run_bot(params, &window, &live, stop).await
            }
        });
    }
    let mut slow = JoinSet::new();
    for i in 0..cfg.slow_readers {
        let name = format!("slow-{i}");
        let params = BotParams {
            url: cfg.url.clone(),
            seed: 0,
            connect_timeout: cfg.connect_timeout,
            connect: ConnectOptions {
                recv_buffer_bytes: Some(4096),
                source_ip: source(cfg.bots + i),
                token: cfg.tokens.as_ref().map(|mint| (mint.0)(&name)),
                ..cfg.connect.clone()
            },
            name,
            behaviours: Vec::new(),
            game: None,
            drop_every: None,
            verify: true,
            // Slow readers send no inputs: nothing is recorded.
            round_trips: round_trips.clone(),
        };
        slow.spawn(run_slow(params, Duration::from_secs(1), stop_rx.clone()));
    }

    let bar = if cfg.progress {
        ProgressBar::new(u64::from(cfg.bots))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
            .expect("static template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix("joining");
    // Ramp-up: until every bot has joined or failed, bounded by the ramp time plus the timeout.
    let ramp_deadline =
        Instant::now() + per_bot * cfg.bots + cfg.connect_timeout + Duration::from_secs(1);
    loop {
        let (c, f) = (live.connected.load(Relaxed), live.failed.load(Relaxed));
        bar.set_position(c + f);
        bar.set_message(format!("{c} connected, {f} failed"));
        if c + f >= u64::from(cfg.bots) || Instant::now() >= ramp_deadline {
            break;
        }
        tokio::time::sleep(PROGRESS_EVERY).await;
    }

    let explicit_metrics = cfg.metrics_url.is_some();
    let metrics_url = match &cfg.metrics_url {
        Some(u) if u.is_empty() => None,
        Some(u) => Some(u.clone()),
        None => scrape::default_metrics_url(&cfg.url),
    };
    let mut scrape_errors = Vec::new();
    let before = match &metrics_url {
        Some(url) => scrape::scrape(url)
            .await
            .map_err(|e| scrape_errors.push(e))
            .ok(),
        None => None,
    };
    let cpu_before = own_cpu_time();
    let start = Instant::now();
    let _ = window.start.set(start);
    let snaps_at_start = live.snapshots.load(Relaxed);
    bar.set_prefix("measuring");
    bar.set_length(cfg.duration.as_secs().max(1));
    bar.set_position(0);
    while start.elapsed() < cfg.duration {
        let secs = start.elapsed().as_secs_f64().max(0.001);
        let snaps = (live.snapshots.load(Relaxed) - snaps_at_start) as f64;
        let connected = live.connected.load(Relaxed).max(1) as f64;
        bar.set_position(start.elapsed().as_secs());
        bar.set_message(format!(
            "{:.1} snapshots/bot/s, {} dropped, {} desyncs",
            snaps / connected / secs,
            live.dropped.load(Relaxed),
            live.desyncs.load(Relaxed)
        ));
        let left = cfg.duration.saturating_sub(start.elapsed());
        tokio::time::sleep(left.min(PROGRESS_EVERY)).await;
    }
    let cpu_after = own_cpu_time();
    let cpu_wall = start.elapsed();
    let measured = start.elapsed().min(cfg.duration);
    let after = match (&metrics_url, &before) {
        (Some(url), Some(_)) => scrape::scrape(url)
            .await
            .map_err(|e| scrape_errors.push(e))
            .ok(),
        _ => None,
    };
    bar.finish_and_clear();
    let _ = stop_tx.send(true);

    let mut outcomes = Vec::with_capacity(cfg.bots as usize);
    let _ = tokio::time::timeout(WIND_DOWN, async {
        while let Some(res) = bots.join_next().await {
            if let Ok(o) = res {
                outcomes.push(o);
            }
        }
    })
    .await;
    bots.abort_all();
    let mut slow_outcomes = Vec::new();
    let _ = tokio::time::timeout(WIND_DOWN, async {
        while let Some(res) = slow.join_next().await {
            if let Ok(o) = res {
                slow_outcomes.push(o);
            }
        }
    })
    .await;
    slow.abort_all();
    let tick_rate_hz = u16::try_from(live.tick_rate_hz.load(Relaxed)).unwrap_or(u16::MAX);
    let rtt = round_trips.with_pending(outcomes.iter().map(|o| &o.metrics.rtt_us));
    let mut report = build_report(&cfg, &outcomes, rtt, measured, &window, tick_rate_hz);
    report.slow_readers = u64::from(cfg.slow_readers);
    report.slow_reader_outcomes = slow_outcomes;
    report.tick_rate_hz = tick_rate_hz;
    report.metrics_url.clone_from(&metrics_url);
    if let (Some(b), Some(a)) = (cpu_before, cpu_after) {
        report.bots_cpu_pct =
            Some(100.0 * a.saturating_sub(b).as_secs_f64() / cpu_wall.as_secs_f64().max(1e-9));
    }
    if let (Some(b), Some(a)) = (&before, &after) {
        if let Some(cost) = scrape::cost(b, a) {
            report.server_cpu_pct = Some(cost.cpu_pct);
            report.server_cpu_us_per_client_tick = Some(cost.cpu_us_per_client_tick);
            report.server_resident_bytes = cost.resident_bytes;
        } else {
            scrape_errors.push("the server sent no snapshots during the window".into());
        }
    }
    for e in scrape_errors {
        let line = format!("server metrics: {e}");
        if explicit_metrics {
            report.failures.push(line);
        } else {
            report.warnings.push(line);
        }
    }
    report.mode = if live.aoi.load(Relaxed) == 1 {
        "aoi"
    } else {
        "global"
    }
    .to_owned();
    report
}

/// CPU time (user and system) this process has used, where the platform tells.
fn own_cpu_time() -> Option<Duration> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let us = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    Some(us(usage.user_time()) + us(usage.system_time()))
}

fn build_report(
    cfg: &SwarmConfig,
    outcomes: &[BotOutcome],
    rtt: Histogram<u64>,
    measured: Duration,
    window: &Window,
    tick_rate_hz: u16,
) -> Report {
    let mut down = Vec::new();
    let mut up = Vec::new();
    let mut rooms = std::collections::HashSet::new();
    let mut r = Report {
        url: cfg.url.clone(),
        bots: u64::from(cfg.bots),
        seed: cfg.seed,
        duration_s: measured.as_secs_f64(),
        ..Report::default()
    };
    let mut rows: Vec<BotRow> = Vec::with_capacity(outcomes.len());
    let mut snapshots = 0u64;
    let mut verified_snapshots = 0u64;
    let mut margin_us = 0u64;
    let mut visible = 0u64;
    let mut visible_players = 0u64;
    let mut snapshot_bytes = 0u64;
    let whole_seconds = window.seconds().min(measured.as_secs() as usize).max(1);
    for o in outcomes {
        let m = &o.metrics;
        match &o.end {
            BotEnd::Failed(why) => {
                r.failed += 1;
                note_error(&mut r.errors, why);
                continue;
            }
            BotEnd::Dropped(why) => {
                r.dropped += 1;
                note_error(&mut r.errors, why);
            }
            BotEnd::Finished => {}
        }
        r.connected += 1;
        r.desyncs += m.desyncs;
        r.missing_baselines += m.missing_baselines;
        r.unverified_snapshots += m.unverified;
        r.out_of_order += m.out_of_order;
        let secs = measured.as_secs_f64().max(1e-9);
        let ticks_elapsed_per_s = match m.window_ticks {
            Some(((t0, at0), (t1, at1))) if at1 > at0 => {
                f64::from(t1.since(t0).max(0)) / at1.duration_since(at0).as_secs_f64()
            }
            _ => 0.0,
        };
        r.verifying_bots += u64::from(m.verifies);
        rows.push(BotRow {
            name: m.name.clone(),
            verifies: m.verifies,
            applied_per_s: m.snapshots as f64 / secs,
            ticks_elapsed_per_s,
            inputs_per_s: m.inputs as f64 / secs,
            desyncs: m.desyncs,
            unverified: m.unverified,
        });
        r.full_snapshots += m.full_snapshots;
        r.entities_created += m.entities_created;
        rooms.insert(m.room.clone());
        r.resumes += m.resumes;
        r.resume_failures += m.resume_failures;
        r.events_sent += m.events_sent;
        r.events_received += m.events_received;
        r.events_lost += m.events_lost;
        r.late_inputs += m.late_inputs;
        margin_us += m.input_margin_us;
        r.timed_inputs += m.timed_inputs;
        snapshots += m.snapshots;
        // What a view holds is known only to the bots that decode it.
        if m.verifies {
            verified_snapshots += m.snapshots;
            visible += m.visible_sum;
            visible_players += m.visible_players_sum;
            snapshot_bytes += m.snapshot_bytes;
        }
        down.extend_from_slice(&m.down_per_s[..whole_seconds.min(m.down_per_s.len())]);
        up.extend_from_slice(&m.up_per_s[..whole_seconds.min(m.up_per_s.len())]);
    }
    r.rooms = rooms.len() as u64;
    r.input_margin_ms = margin_us as f64 / 1000.0 / r.connected.max(1) as f64;
    // Bots that never reported (aborted at wind-down) count as dropped.
    let missing = u64::from(cfg.bots).saturating_sub(outcomes.len() as u64);
    r.dropped += missing;
    r.connected += missing;
    let secs = r.duration_s.max(1e-9);
    r.snapshots_per_bot_per_s = snapshots as f64 / r.connected.max(1) as f64 / secs;
    let per_snapshot = |v: u64| {
        if verified_snapshots > 0 {
            v as f64 / verified_snapshots as f64
        } else {
            0.0
        }
    };
    r.visible_entities_per_bot = per_snapshot(visible);
    r.visible_players_per_bot = per_snapshot(visible_players);
    r.bytes_per_visible_player_per_snapshot = if visible_players > 0 {
        snapshot_bytes as f64 / visible_players as f64
    } else {
        0.0
    };
    let ms = |us: u64| us as f64 / 1000.0;
    if !rtt.is_empty() {
        r.rtt_ms = Quantiles {
            p50: ms(rtt.value_at_quantile(0.50)),
            p95: ms(rtt.value_at_quantile(0.95)),
            p99: ms(rtt.value_at_quantile(0.99)),
            max: ms(rtt.max()),
        };
    }
    r.down_bytes_per_bot_per_s = mean_p99(&mut down);
    r.up_bytes_per_bot_per_s = mean_p99(&mut up);
    let applied: Vec<f64> = rows.iter().map(|b| b.applied_per_s).collect();
    r.min_snapshots_per_bot_per_s = MinMean::of(&applied).min;
    r.ticks_elapsed_per_s = MinMean::of(
        &rows
            .iter()
            .map(|b| b.ticks_elapsed_per_s)
            .collect::<Vec<_>>(),
    );
    r.inputs_per_bot_per_s = MinMean::of(&rows.iter().map(|b| b.inputs_per_s).collect::<Vec<_>>());
    r.min_rate_floor = cfg.min_rate_fraction * f64::from(tick_rate_hz);
    rows.sort_by(|a, b| a.applied_per_s.total_cmp(&b.applied_per_s));
    r.failures = failures(cfg, &r, &rows, tick_rate_hz);
    r.per_bot = rows;
    r
}

/// Every reason the run fails, each with what was seen.
fn failures(cfg: &SwarmConfig, r: &Report, rows: &[BotRow], tick_rate_hz: u16) -> Vec<String> {
    let mut f = Vec::new();
    if r.bots == 0 {
        f.push("no bots ran".to_owned());
    }
    if r.failed > 0 {
        f.push(format!("{} of {} bots could not connect", r.failed, r.bots));
    }
    if r.dropped > 0 {
        f.push(format!("{} bots were dropped before the end", r.dropped));
    }
    if r.desyncs > 0 {
        f.push(format!(
            "{} desyncs: snapshots whose result did not match the server's checksum \
             (each followed by a resync; {} snapshots unverified while recovering)",
            r.desyncs, r.unverified_snapshots
        ));
    }
    if r.missing_baselines > 0 {
        f.push(format!(
            "{} snapshots named a baseline their bot did not hold (not during a recovery)",
            r.missing_baselines
        ));
    }
    if r.out_of_order > 0 {
        f.push(format!("{} snapshots arrived out of order", r.out_of_order));
    }
    if r.events_lost > 0 {
        f.push(format!(
            "{} server events lost or repeated (gaps or repeats in the bots' sequences)",
            r.events_lost
        ));
    }
    if r.resume_failures > 0 {
        f.push(format!(
            "{} of {} dropped connections could not be resumed",
            r.resume_failures,
            r.resumes + r.resume_failures
        ));
    }
    if !cfg.idle {
        let floor = r.min_rate_floor;
        let pct = cfg.min_rate_fraction * 100.0;
        if let Some(names) = below_floor(rows, floor, |b| b.applied_per_s) {
            f.push(format!(
                "{names}: fewer snapshots taken (applied and verified, or counted by a \
                 header-only bot) than the floor of {floor:.1}/s ({pct:.0}% of {tick_rate_hz} Hz)"
            ));
        }
        // A run that verified nothing cannot say the state was right.
        if r.connected > r.dropped && r.verifying_bots == 0 {
            f.push(
                "no bot verified what it received (every connected bot read headers only); \
                 use --verify 1 or more"
                    .to_owned(),
            );
        }
        // The scenario sends one input per tick: bots too starved of CPU to do that are not
        // running it, whatever they received.
        if let Some(names) = below_floor(rows, floor, |b| b.inputs_per_s) {
            f.push(format!(
                "{names}: fewer inputs sent than the floor of {floor:.1}/s (the scenario sends \
                 one per tick; the bots may be starved of CPU)"
            ));
        }
    }
    f
}

/// "N bots (lowest first: name rate/s, ...)" for the bots whose `rate` is under `floor`, or
/// `None` if there are none.
fn below_floor(rows: &[BotRow], floor: f64, rate: impl Fn(&BotRow) -> f64) -> Option<String> {
    let mut below: Vec<&BotRow> = rows.iter().filter(|b| rate(b) < floor).collect();
    if below.is_empty() {
        return None;
    }
    below.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    let names: Vec<String> = below
        .iter()
        .take(5)
        .map(|b| format!("{} {:.1}/s", b.name, rate(b)))
        .collect();
    let more = if below.len() > 5 { ", ..." } else { "" };
    Some(format!(
        "{} bots (lowest first: {}{more})",
        below.len(),
        names.join(", ")
    ))
}

fn note_error(errors: &mut Vec<String>, why: &str) {
    if errors.len() < 10 && !errors.iter().any(|e| e == why) {
        errors.push(why.to_owned());
    }
}

fn mean_p99(samples: &mut [u64]) -> MeanP99 {
    if samples.is_empty() {
        return MeanP99::default();
    }
    samples.sort_unstable();
    let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64;
    let idx = ((samples.len() as f64 * 0.99).ceil() as usize).clamp(1, samples.len()) - 1;
    MeanP99 {
        mean,
        p99: samples[idx] as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, applied: f64, inputs: f64) -> BotRow {
        BotRow {
            name: name.into(),
            verifies: true,
            applied_per_s: applied,
            ticks_elapsed_per_s: 30.0,
            inputs_per_s: inputs,
            desyncs: 0,
            unverified: 0,
        }
    }

    #[test]
    fn starved_bots_fail_the_run_by_name_on_either_rate() {
        let cfg = SwarmConfig::default();
        let r = Report {
            bots: 3,
            connected: 3,
            verifying_bots: 3,
            min_rate_floor: 27.0,
            ..Report::default()
        };
        let rows = [
            row("bot-0", 30.0, 30.0),
            row("bot-1", 29.9, 1.6),
            row("bot-2", 12.0, 30.0),
        ];
        let f = failures(&cfg, &r, &rows, 30);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            f[0].contains("snapshots taken") && f[0].contains("bot-2 12.0/s"),
            "{f:?}"
        );
        assert!(
            f[1].contains("inputs") && f[1].contains("bot-1 1.6/s"),
            "{f:?}"
        );
        assert!(failures(&cfg, &r, &rows[..1], 30).is_empty());
    }

    #[test]
    fn a_run_that_verified_nothing_fails() {
        let cfg = SwarmConfig::default();
        let r = Report {
            bots: 2,
            connected: 2,
            verifying_bots: 0,
            min_rate_floor: 27.0,
            ..Report::default()
        };
        let rows = [row("bot-0", 30.0, 30.0), row("bot-1", 30.0, 30.0)];
        let f = failures(&cfg, &r, &rows, 30);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("no bot verified"), "{f:?}");
    }

    #[test]
    fn the_verifying_sample_is_exact_and_spread() {
        for (n, k) in [(1000, 50), (500, 500), (7, 3), (2000, 1), (10, 0), (3, 9)] {
            let picked: Vec<u32> = (0..n).filter(|&i| verifies(i, k.min(n), n)).collect();
            assert_eq!(picked.len() as u32, k.min(n), "{n} {k}");
            // Evenly spread: gaps differ by at most one.
            let gaps: Vec<u32> = picked.windows(2).map(|w| w[1] - w[0]).collect();
            if let (Some(lo), Some(hi)) = (gaps.iter().min(), gaps.iter().max()) {
                assert!(hi - lo <= 1, "{n} {k}: {gaps:?}");
            }
        }
        let cfg = |bots, verify| SwarmConfig {
            bots,
            verify,
            ..SwarmConfig::default()
        };
        assert_eq!(cfg(500, None).verifying_bots(), 500);
        assert_eq!(cfg(501, None).verifying_bots(), DEFAULT_VERIFY_SAMPLE);
        assert_eq!(cfg(2000, Some(50)).verifying_bots(), 50);
        assert_eq!(cfg(20, Some(50)).verifying_bots(), 20);
    }

    #[test]
    fn mean_and_p99() {
        let mut v: Vec<u64> = (1..=100).collect();
        let m = mean_p99(&mut v);
        assert_eq!(m.mean, 50.5);
        assert_eq!(m.p99, 99.0);
        assert_eq!(mean_p99(&mut []).mean, 0.0);
    }
}
