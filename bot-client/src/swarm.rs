//! A swarm of bots: ramp-up, a measured window once all have joined, live progress on stderr,
//! and the report.

use crate::bot::{BotEnd, BotOutcome, BotParams, Live, Window, run_bot, run_idle, run_slow};
use crate::client::ConnectOptions;
use crate::report::{MeanP99, Quantiles, Report};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How often the progress display refreshes.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Time allowed for bots to finish after the window ends.
const WIND_DOWN: Duration = Duration::from_secs(10);

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
        }
    }
}

/// Runs the swarm to the end and reports.
pub async fn run_swarm(cfg: SwarmConfig) -> Report {
    let live = Arc::new(Live::default());
    let window = Arc::new(Window::new(cfg.duration));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut bots = JoinSet::new();
    let ramp_start = tokio::time::Instant::now();
    let per_bot = Duration::from_secs_f64(1.0 / cfg.ramp_per_s.max(0.001));
    for i in 0..cfg.bots {
        let params = BotParams {
            url: cfg.url.clone(),
            name: format!("bot-{i}"),
            seed: cfg.seed.wrapping_add(u64::from(i)),
            connect_timeout: cfg.connect_timeout,
            connect: cfg.connect.clone(),
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
        let params = BotParams {
            url: cfg.url.clone(),
            name: format!("slow-{i}"),
            seed: 0,
            connect_timeout: cfg.connect_timeout,
            connect: ConnectOptions {
                recv_buffer_bytes: Some(4096),
                ..cfg.connect.clone()
            },
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
    let measured = start.elapsed().min(cfg.duration);
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
    let mut report = build_report(&cfg, &outcomes, measured, &window);
    report.slow_readers = u64::from(cfg.slow_readers);
    report.slow_reader_outcomes = slow_outcomes;
    report.tick_rate_hz = u16::try_from(live.tick_rate_hz.load(Relaxed)).unwrap_or(u16::MAX);
    report.mode = if live.aoi.load(Relaxed) == 1 {
        "aoi"
    } else {
        "global"
    }
    .to_owned();
    report
}

fn build_report(
    cfg: &SwarmConfig,
    outcomes: &[BotOutcome],
    measured: Duration,
    window: &Window,
) -> Report {
    let mut rtt = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("static bounds");
    let mut down = Vec::new();
    let mut up = Vec::new();
    let mut r = Report {
        url: cfg.url.clone(),
        bots: u64::from(cfg.bots),
        seed: cfg.seed,
        duration_s: measured.as_secs_f64(),
        ..Report::default()
    };
    let mut snapshots = 0u64;
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
        r.full_snapshots += m.full_snapshots;
        r.projectiles_seen += m.projectiles_seen;
        snapshots += m.snapshots;
        visible += m.visible_sum;
        visible_players += m.visible_players_sum;
        snapshot_bytes += m.snapshot_bytes;
        let _ = rtt.add(&m.rtt_us);
        down.extend_from_slice(&m.down_per_s[..whole_seconds.min(m.down_per_s.len())]);
        up.extend_from_slice(&m.up_per_s[..whole_seconds.min(m.up_per_s.len())]);
    }
    // Bots that never reported (aborted at wind-down) count as dropped.
    let missing = u64::from(cfg.bots).saturating_sub(outcomes.len() as u64);
    r.dropped += missing;
    r.connected += missing;
    let secs = r.duration_s.max(1e-9);
    r.snapshots_per_bot_per_s = snapshots as f64 / r.connected.max(1) as f64 / secs;
    let per_snapshot = |v: u64| {
        if snapshots > 0 {
            v as f64 / snapshots as f64
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
    r
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
    use super::mean_p99;

    #[test]
    fn mean_and_p99() {
        let mut v: Vec<u64> = (1..=100).collect();
        let m = mean_p99(&mut v);
        assert_eq!(m.mean, 50.5);
        assert_eq!(m.p99, 99.0);
        assert_eq!(mean_p99(&mut []).mean, 0.0);
    }
}
