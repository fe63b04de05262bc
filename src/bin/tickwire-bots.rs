//! `tickwire-bots`: runs a swarm of headless bots against a Tickwire server and reports.
//!
//! Exits 0 only if the run passed: every bot connected and stayed, every snapshot was applied
//! and verified (or was part of a documented desync recovery), none arrived out of order, and
//! every bot applied snapshots and sent inputs at `--min-rate-fraction` of the tick rate. Otherwise it exits 1
//! and the summary's FAILURE lines say what was seen.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tickwire_bots::{SwarmConfig, run_swarm};
use tracing_subscriber::EnvFilter;

/// Headless bot swarm for Tickwire: each bot plays the game the server announces (or
/// `--game`) with that game's bot behaviour (the arena's is "wander").
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Server WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:7777/ws")]
    url: String,
    /// Number of bots.
    #[arg(long, default_value_t = 10)]
    bots: u32,
    /// Length of the measured window in seconds, counted once every bot has joined.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Bots started per second during ramp-up.
    #[arg(long, default_value_t = 200.0)]
    ramp: f64,
    /// Seed of the bots' behaviour; bot i uses seed + i.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds each bot is allowed to connect and be welcomed.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Hide the live progress display.
    #[arg(long)]
    quiet: bool,
    /// PEM file of the CA that signed the server's certificate (for wss:// URLs).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Bots only open the WebSocket and hold it idle (no hello, no inputs), for memory figures.
    #[arg(long)]
    idle: bool,
    /// Also run N slow readers that join and read one message per second.
    #[arg(long, value_name = "N", default_value_t = 0)]
    slow: u32,
    /// Fraction of the tick rate every bot must apply and verify snapshots at, and send inputs
    /// at.
    #[arg(long, value_name = "F", default_value_t = 0.9)]
    min_rate_fraction: f64,
    /// The server's /metrics URL, read before and after the window for its CPU time
    /// [default: port 7778 of a loopback server]; "" turns it off.
    #[arg(long, value_name = "URL")]
    metrics_url: Option<String>,
    /// Connect every bot from 127.0.0.1 instead of spreading them over 127.0.0.0/8.
    #[arg(long)]
    no_spread: bool,
    /// The game whose bot behaviour to use [default: the game the server announces].
    #[arg(long, value_name = "NAME")]
    game: Option<String>,
    /// Mint each bot a join token (player id: the bot's name) with the private key in FILE,
    /// as `tickwire-server token new-key` wrote it; needs --game (the token names it).
    #[arg(long, value_name = "FILE", requires = "game")]
    token_key: Option<PathBuf>,
    /// Seconds until each bot's token expires.
    #[arg(long, default_value_t = 120)]
    token_ttl: u64,
    /// Spread the bots over K rooms (join or create; bot i asks for a room whose property
    /// `swarm` is i % K) [default: 0, every bot joins or creates with no filter].
    #[arg(long, value_name = "K", default_value_t = 0)]
    rooms: u32,
    /// Each bot drops its TCP connection without a close frame at about this interval
    /// (seconds) and resumes its player.
    #[arg(long, value_name = "SECS")]
    drop_every: Option<f64>,
    /// K bots (spread evenly over the swarm) apply and verify every snapshot; the others read
    /// only frame headers, acknowledge and count bytes, so one machine can run thousands
    /// [default: every bot in runs of up to 500, else 50]
    #[arg(long, value_name = "K")]
    verify: Option<u32>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    anyhow::ensure!(
        cli.duration > 0.0 && cli.duration.is_finite(),
        "--duration must be positive"
    );
    anyhow::ensure!(
        cli.ramp > 0.0 && cli.ramp.is_finite(),
        "--ramp must be positive"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&cli.min_rate_fraction),
        "--min-rate-fraction must be in 0..=1"
    );
    let tls = match &cli.ca {
        Some(path) => Some(tickwire_bots::client::tls_config_with_ca(path)?),
        None => None,
    };
    let tokens = match &cli.token_key {
        Some(path) => {
            use tickwire_server::token::{TokenSigner, unix_now};
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let signer = TokenSigner::from_key_text(&text)
                .with_context(|| format!("reading the key in {}", path.display()))?;
            let game = cli.game.clone().context("--token-key needs --game")?;
            let ttl = cli.token_ttl;
            // A probe: the only way minting fails is a name out of bounds, and bots' names
            // are shorter than this one.
            signer
                .mint("bot-4294967295-probe", &game, unix_now() + ttl)
                .context("minting a token")?;
            Some(tickwire_bots::swarm::TokenMinter(Arc::new(
                move |name: &str| {
                    signer
                        .mint(name, &game, unix_now() + ttl)
                        .unwrap_or_default()
                },
            )))
        }
        None => None,
    };
    let cfg = SwarmConfig {
        url: cli.url,
        bots: cli.bots,
        duration: Duration::from_secs_f64(cli.duration),
        ramp_per_s: cli.ramp,
        seed: cli.seed,
        connect_timeout: Duration::from_secs_f64(cli.connect_timeout.max(0.1)),
        progress: !cli.quiet,
        connect: tickwire_bots::client::ConnectOptions {
            tls,
            ..Default::default()
        },
        idle: cli.idle,
        slow_readers: cli.slow,
        min_rate_fraction: cli.min_rate_fraction,
        metrics_url: cli.metrics_url,
        spread_sources: !cli.no_spread,
        behaviours: tickwire::behaviours(),
        game: cli.game,
        tokens,
        rooms: cli.rooms,
        drop_every: cli
            .drop_every
            .filter(|s| *s > 0.0 && s.is_finite())
            .map(Duration::from_secs_f64),
        verify: cli.verify,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(run_swarm(cfg));
    #[allow(clippy::print_stdout)] // The summary is the program's output.
    {
        print!("{}", report.summary());
    }
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&report).context("serializing the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.ok() {
        std::process::exit(1);
    }
    Ok(())
}
