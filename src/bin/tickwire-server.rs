//! `tickwire-server`: runs the Tickwire game server.
//!
//! With no arguments it serves the arena (the first bundled game; `--game` picks another) on
//! `ws://127.0.0.1:7777/ws` using the embedded defaults. `--config FILE` reads a TOML file (every field optional, see `Config`), and flags
//! override both. `RUST_LOG` sets the log filter (default `info`). Ctrl-C or SIGTERM stops it
//! cleanly.

use anyhow::Context;
use clap::Parser;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use tickwire_server::{Config, Server};
use tracing_subscriber::EnvFilter;

/// Tickwire authoritative game server.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Run something other than the server.
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file; flags override its values.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7777].
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,
    /// Address of the admin listener (/metrics, /healthz); "" turns it off
    /// [default: 127.0.0.1:7778].
    #[arg(long, value_name = "ADDR")]
    admin_bind: Option<String>,
    /// Most sockets open at once on the game port, in any phase [default: 4096].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Simulation ticks (and snapshots) per second [default: 30].
    #[arg(long, value_name = "HZ")]
    tick_rate: Option<u16>,
    /// Most players at once, over all rooms [default: 2048].
    #[arg(long, value_name = "N")]
    max_clients: Option<usize>,
    /// Most rooms open at once [default: 512].
    #[arg(long, value_name = "N")]
    max_rooms: Option<usize>,
    /// Most players in one room [default: 0, the game's own cap, else --max-clients].
    #[arg(long, value_name = "N")]
    room_max_players: Option<usize>,
    /// Map file [default: the embedded assets/maps/arena.toml].
    #[arg(long, value_name = "FILE")]
    map: Option<PathBuf>,
    /// Which bundled game to run [default: arena; see --print-config for each game's section].
    #[arg(long, value_name = "NAME")]
    game: Option<String>,
    /// Which entities each client is sent [default: aoi].
    #[arg(long, value_enum)]
    visibility: Option<tickwire_server::VisibilityMode>,
    /// Area-of-interest radius in world units, in aoi mode [default: 800].
    #[arg(long, value_name = "UNITS")]
    aoi_radius: Option<f32>,
    /// How aoi views are cut: exact (within the radius) or cells (every grid cell the radius
    /// touches: less tick work per client, more bytes) [default: exact].
    #[arg(long, value_enum)]
    aoi_views: Option<tickwire_server::AoiViews>,
    /// Most threads that build aoi views in a large room (the tick thread and one more per
    /// `parallel_views_min_clients` clients, 256 by default, up to N); 0: one per core, at most
    /// 8; 1: the tick thread alone [default: 0].
    #[arg(long, value_name = "N")]
    replicate_threads: Option<usize>,
    /// Seed of the server's random numbers [default: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// PEM certificate chain: serve wss:// (needs --tls-key).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Time allowed between the upgrade and the hello, in ms [default: 5000].
    #[arg(long, value_name = "MS")]
    hello_timeout_ms: Option<u64>,
    /// Require join tokens signed with this Ed25519 public key (as `token new-key` prints it)
    /// [default: none, no tokens].
    #[arg(long, value_name = "KEY")]
    join_token_public_key: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Measure the tick budget headlessly with N simulated clients (no sockets): p50/p99/max per
    /// phase, the fraction of the budget used, and the largest N under a fraction of it. Uses
    /// the configuration (tick rate, visibility, map...) given by the other flags.
    Headroom {
        /// Client counts to measure, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "100,250,500,1000,2000")]
        clients: Vec<usize>,
        /// Ticks measured per client count (after 90 warm-up ticks).
        #[arg(long, default_value_t = 300)]
        ticks: usize,
        /// Fraction of the tick budget a p99 tick may use.
        #[arg(long, default_value_t = 0.5)]
        max_fraction: f64,
        /// Also write the report as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Rooms mode: measure these room counts (comma-separated), each room with the one
        /// --clients count, all stepped by one thread; reports rooms per core at
        /// --max-fraction and the memory of an empty room.
        #[arg(long, value_delimiter = ',', value_name = "K")]
        rooms: Vec<usize>,
    },
    /// Join tokens: make a signing key, or mint a token with one (see docs/PROTOCOL.md).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(clap::Subcommand, Debug)]
enum TokenAction {
    /// Write a new Ed25519 private key to FILE (which must not exist) and print the
    /// `join_token_public_key` line that servers verify with.
    NewKey {
        /// Where to write the private key (keep it secret: it mints tokens).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print a token that lets PLAYER join the server's game (or only its room ROOM) once,
    /// signed with the key in FILE.
    Mint {
        /// The private key written by `token new-key`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The player's id (1 to 64 bytes), as the game's backend knows it.
        #[arg(long)]
        player: String,
        /// Seconds until it expires (servers refuse more than join_token_max_ttl_s, 300 by
        /// default).
        #[arg(long, default_value_t = 60)]
        ttl: u64,
        /// Admit only this room (the client must join it by id).
        #[arg(long, value_name = "ID")]
        room: Option<String>,
    },
}

impl Cli {
    fn into_config(self) -> anyhow::Result<(Config, bool, Option<Command>)> {
        let mut cfg = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.bind {
            cfg.bind = v;
        }
        if let Some(v) = self.admin_bind {
            cfg.admin_bind = v;
        }
        if let Some(v) = self.max_connections {
            cfg.max_connections = v;
        }
        if let Some(v) = self.tick_rate {
            cfg.tick_rate_hz = v;
        }
        if let Some(v) = self.max_clients {
            cfg.max_clients = v;
        }
        if let Some(v) = self.max_rooms {
            cfg.max_rooms = v;
        }
        if let Some(v) = self.room_max_players {
            cfg.room_max_players = v;
        }
        if let Some(v) = self.game {
            cfg.game = v;
        }
        if let Some(v) = self.map {
            // A shortcut for the arena's own setting.
            let section = cfg
                .games
                .entry("arena")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let Some(t) = section.as_table_mut() {
                t.insert("map".into(), toml::Value::String(v.display().to_string()));
            }
        }
        if let Some(v) = self.seed {
            cfg.seed = v;
        }
        if let Some(v) = self.visibility {
            cfg.visibility = v;
        }
        if let Some(v) = self.aoi_radius {
            cfg.aoi_radius = v;
        }
        if let Some(v) = self.aoi_views {
            cfg.aoi_views = v;
        }
        if let Some(v) = self.replicate_threads {
            cfg.replicate_threads = v;
        }
        if let Some(v) = self.tls_cert {
            cfg.tls_cert = Some(v);
        }
        if let Some(v) = self.tls_key {
            cfg.tls_key = Some(v);
        }
        if let Some(v) = self.hello_timeout_ms {
            cfg.hello_timeout_ms = v;
        }
        if let Some(v) = self.join_token_public_key {
            cfg.join_token_public_key = v;
        }
        cfg.validate()?;
        Ok((cfg, self.print_config, self.command))
    }
}

fn main() -> anyhow::Result<()> {
    let (mut config, print, command) = Cli::parse().into_config()?;
    let bundled = tickwire::find(&config.game).map_err(anyhow::Error::msg)?;
    if let Some(Command::Headroom {
        clients,
        ticks,
        max_fraction,
        json,
        rooms,
    }) = command
    {
        anyhow::ensure!(
            !clients.is_empty() && ticks > 0,
            "--clients and --ticks must be given"
        );
        let (table, text) = if rooms.is_empty() {
            let report = tickwire_server::headroom::run(
                &config,
                &bundled.workload(),
                &clients,
                ticks,
                max_fraction,
            );
            (report.table(), serde_json::to_string_pretty(&report))
        } else {
            anyhow::ensure!(
                clients.len() == 1 && !rooms.contains(&0),
                "with --rooms, give one --clients count (clients per room) and room counts of \
                 at least 1"
            );
            let report = tickwire_server::headroom::run_rooms(
                &config,
                &bundled.workload(),
                clients[0],
                &rooms,
                ticks,
                max_fraction,
            );
            (report.table(), serde_json::to_string_pretty(&report))
        };
        #[allow(clippy::print_stdout)] // The report is the command's output.
        {
            print!("{table}");
        }
        if let Some(path) = json {
            let text = text.context("serializing the report")?;
            std::fs::write(&path, text + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
        return Ok(());
    }
    if let Some(Command::Token { action }) = command {
        return token_command(action, bundled.game.name());
    }
    if print {
        // Every bundled game's section, with its defaults where the file set nothing.
        for b in tickwire::bundled() {
            config
                .games
                .entry(b.game.name())
                .or_insert_with(|| b.game.default_config());
        }
        let text = toml::to_string_pretty(&config).context("serializing the config")?;
        #[allow(clippy::print_stdout)] // The requested output, not a log line.
        {
            println!("{text}");
        }
        return Ok(());
    }
    // Logs go through a bounded in-memory queue to a writer thread, so no thread of the server
    // (the tick thread least of all) blocks on a slow terminal or pipe; when the queue is full
    // lines are dropped and counted rather than waited for. Colour only on a terminal.
    let (writer, _flush_on_exit) = tracing_appender::non_blocking(std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(writer)
        .init();
    // A panic (game code can panic; the tick thread survives it) is logged like everything
    // else, with where it happened.
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        tracing::error!(
            location = %info.location().map_or_else(String::new, ToString::to_string),
            thread = std::thread::current().name().unwrap_or("unnamed"),
            message,
            "panic"
        );
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tickwire-net")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let server = Server::start(config, bundled.game).await?;
        tracing::info!(url = %server.ws_url(), "tickwire-server ready");
        wait_for_signal().await?;
        server.shutdown().await;
        Ok(())
    })
}

/// `tickwire-server token ...`: a new key, or a token minted with one, on stdout.
fn token_command(action: TokenAction, game: &str) -> anyhow::Result<()> {
    use tickwire_server::token::{TokenSigner, unix_now};
    let line = match action {
        TokenAction::NewKey { out } => {
            let text = TokenSigner::generate()?;
            let signer = TokenSigner::from_key_text(&text)?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&out)
                .with_context(|| format!("creating {} (it must not exist)", out.display()))?;
            std::io::Write::write_all(&mut file, format!("{text}\n").as_bytes())
                .with_context(|| format!("writing {}", out.display()))?;
            format!("join_token_public_key = \"{}\"", signer.public_key())
        }
        TokenAction::Mint {
            key,
            player,
            ttl,
            room,
        } => {
            let text = std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?;
            let signer = TokenSigner::from_key_text(&text)
                .with_context(|| format!("reading the key in {}", key.display()))?;
            signer.mint_scoped(&player, game, room.as_deref(), unix_now() + ttl)?
        }
    };
    #[allow(clippy::print_stdout)] // The command's output.
    {
        println!("{line}");
    }
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
