//! Server configuration: one [`Config`] with documented defaults, read from an optional TOML
//! file and overridden by command-line flags. Every limit the server enforces lives here.

use crate::error::ServerError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything the server can be told. `Config::default()` is a complete, working setup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:7777`; use port 0 for any free port.
    pub bind: SocketAddr,
    /// Address of the admin listener, which serves `GET /metrics` (Prometheus text) and
    /// `GET /healthz` and nothing else; an empty string turns it off. Keep it off the public
    /// network (scrape it from inside the host or the cluster). Default `127.0.0.1:7778`.
    pub admin_bind: String,
    /// Sockets open at once on the game port, in any phase (TLS, HTTP, before or after the
    /// hello). A connection over the cap is answered `503` at once and closed, without a task or
    /// a read; with TLS it is closed. At start-up the process raises its open-file limit toward
    /// the hard limit and refuses to start if this cap cannot fit. Default 4096.
    pub max_connections: usize,
    /// Refusals at the connection caps answered with a lingering close at once (the 503 is
    /// sent, the socket half-closed, and what the peer still sends read and discarded for at
    /// most `refusal_linger_ms`, so the answer is not lost to a reset); beyond this, a refusal
    /// is one write and a close. Their sockets come out of the open-file reserve. Default 32.
    pub max_lingering_refusals: usize,
    /// How long a lingering refusal waits for the peer, in milliseconds. Default 1000.
    pub refusal_linger_ms: u64,
    /// Requests the admin listener serves at once; more wait in the kernel's accept queue.
    /// Default 16.
    pub admin_max_connections: usize,
    /// Time an admin request may take to arrive and be answered, in milliseconds. Default 5000.
    pub admin_timeout_ms: u64,
    /// Sockets open at once from one IP address, in any phase; more are answered `503` and
    /// closed. Default 256, generous for players behind one NAT; the bot swarm spreads its
    /// source addresses over 127.0.0.0/8 when it targets loopback, so thousands of bots from one
    /// machine stay under it.
    pub max_connections_per_ip: usize,
    /// Host names (the `Host` header without its port) this server answers to as itself, besides
    /// IP literals. A browser page is same-origin only if its `Origin` equals `Host` and `Host`
    /// names an IP address or one of these: so a DNS-rebinding page (whose `Host` is the
    /// attacker's name) is refused, and the admin listener refuses such a `Host` with 403.
    /// Default `["localhost"]` (with IP literals, `http://127.0.0.1:7777/` and
    /// `http://localhost:7777/` work out of the box); a public deployment adds its domain.
    pub allowed_hosts: Vec<String>,
    /// Simulation ticks per second; one snapshot per client per tick. Default 30.
    pub tick_rate_hz: u16,
    /// Most players connected at once; a client over the cap is closed with 1013. Default 2048.
    pub max_clients: usize,
    /// Ticks of world history kept for delta baselines; a client whose acknowledged tick is
    /// older gets a full snapshot. Default 32 (about 1 s at 30 Hz).
    pub history_ticks: u32,
    /// Client messages (inputs, acks) queued per client between its session and the tick
    /// thread; more are dropped and counted. Default 16.
    pub input_queue_len: usize,
    /// Outgoing frames per client handed over and not yet written (queued for its session, or
    /// on the fast send path handed to its lane and not yet out of its buffer); while that
    /// many wait, the client skips snapshots. Default 4.
    pub outbox_len: usize,
    /// Join requests queued for each room's world; when full, new clients are closed with
    /// 1013. Default 256.
    pub join_queue_len: usize,
    /// Largest WebSocket message (and frame) accepted from a client, in bytes. Default 1024.
    pub max_message_bytes: usize,
    /// Per-connection WebSocket read buffer, in bytes: the most one read takes from the
    /// socket. tungstenite zeroes this much before every read, and every connection holds it,
    /// so it is sized to the largest message (a larger one takes more reads). 64 to 1 MiB.
    /// Default 1024.
    pub read_buffer_bytes: usize,
    /// Time allowed for the TLS handshake and the HTTP upgrade together, in milliseconds; a
    /// client that trickles its request is dropped after it. Default 3000.
    pub handshake_timeout_ms: u64,
    /// Time allowed between the upgrade and the hello, in milliseconds. Default 5000.
    pub hello_timeout_ms: u64,
    /// Time allowed for the peer to answer our close frame, in milliseconds. Default 1000.
    pub close_timeout_ms: u64,
    /// Path of the WebSocket endpoint; other paths get 404. Default `/ws`.
    pub ws_path: String,
    /// Offer the `tickwire.v1.json` subprotocol (the same messages as JSON text frames) beside
    /// the binary `tickwire.v1`. Default true.
    pub json_protocol: bool,
    /// Serve the browser client (`GET /`) on the same port. Default true.
    pub web_client: bool,
    /// Origins (besides the server's own) allowed to open a WebSocket, matched exactly, e.g.
    /// `https://game.example`; `*` allows any. Requests with no `Origin` header (native
    /// clients, bots) are always allowed; any other origin gets HTTP 403. Default empty.
    pub allowed_origins: Vec<String>,
    /// Ed25519 public key (URL-safe base64 without padding, as `tickwire-server token new-key`
    /// prints it) that join tokens must be signed with. Set, every WebSocket upgrade must carry
    /// a valid, unused token for this server's game, or it gets an HTTP 400, 401, 403 or 503
    /// with the reason (see `docs/PROTOCOL.md`, "Join tokens"). Default empty: no tokens.
    pub join_token_public_key: String,
    /// Furthest ahead a join token's expiry may be, in seconds. Default 300.
    pub join_token_max_ttl_s: u64,
    /// Most unexpired used tokens remembered, each to refuse its replay; when it is full new
    /// tokens get 503 until some expire (so a flood of tokens cannot grow memory). Default
    /// 65536.
    pub join_token_memory: usize,
    /// Interval between the server's WebSocket pings, in milliseconds. Default 5000.
    pub ping_interval_ms: u64,
    /// A client that sends nothing the protocol expects (a message or a pong) for this long is
    /// closed with 4004 and its player removed, in milliseconds; pings it sends do not count.
    /// Default 15000.
    pub idle_timeout_ms: u64,
    /// Sustained WebSocket control frames (pings and pongs) per second accepted from one
    /// connection; more are counted as rate-limited, and `abuse_drops_per_s` of them within a
    /// second close the connection with 1008. Default 5.
    pub control_rate_per_s: u32,
    /// Control frames a client may send at once above the sustained rate. Default 10.
    pub control_burst: u32,
    /// Time one frame may take to write before the connection counts as lost (a peer that
    /// stopped reading, a half-open TCP connection), in milliseconds. Default 5000.
    pub write_timeout_ms: u64,
    /// Most bytes buffered for writing per connection inside the WebSocket layer. Together
    /// with `outbox_len` frames this bounds the memory of a client that reads slowly.
    /// Default 1048576 (1 MiB).
    pub max_write_buffer_bytes: usize,
    /// `SO_SNDBUF` for client sockets, in bytes (Linux doubles it); `None` keeps the kernel's
    /// auto-tuning, which lets one slow reader hold up to `tcp_wmem` max (often 4 MiB) of
    /// snapshots in the kernel before it pushes back. Default 131072 (128 KiB): several times
    /// the bandwidth-delay product of a 150 KB/s snapshot stream at 200 ms round trip.
    pub send_buffer_bytes: Option<usize>,
    /// Sustained inputs per second accepted from one client; more are dropped and counted.
    /// Acks and pings have a budget of the same size. Default 60 (twice the tick rate).
    pub input_rate_per_s: u32,
    /// Messages a client may send at once above the sustained rate. Default 30.
    pub input_burst: u32,
    /// Messages dropped by the rate limit within one second that close the connection with
    /// 1008. Default 120 (a client sending 10x the tick rate trips it within a second).
    pub abuse_drops_per_s: u32,
    /// Snapshots a client may skip in a row (its outbox full because it reads too slowly)
    /// before it is closed with 4005. Default 90 (3 s at 30 Hz).
    pub max_lag_ticks: u32,
    /// Length of the sliding window over which skipped snapshots are counted, in ticks.
    /// Default 150 (5 s at 30 Hz).
    pub skip_window_ticks: u32,
    /// Fraction of the snapshots in the sliding window a client may skip (outbox full) before
    /// it is closed with 4005, whether the skips came in a row or spread out. Default 0.5.
    pub max_skipped_fraction: f32,
    /// A client that has been sent snapshots for this long without acknowledging any of the
    /// recent ones is closed with 4006 (it would otherwise be sent full snapshots forever), in
    /// milliseconds. Default 5000.
    pub ack_timeout_ms: u64,
    /// PEM certificate chain; with `tls_key` the server speaks only TLS (`wss://`).
    /// Default none.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching `tls_cert`. Default none.
    pub tls_key: Option<PathBuf>,
    /// Time allowed for all sessions to close on shutdown, in milliseconds. Default 3000.
    pub shutdown_grace_ms: u64,
    /// Ticks the loop may run late before it stops catching up and skips ahead (counted as
    /// skipped ticks), so an overload never spirals. Default 3.
    pub max_catchup_ticks: u32,
    /// Interval of the stats log line, in milliseconds. Default 5000.
    pub stats_interval_ms: u64,
    /// Tick threads that step the server's worlds, each world on its own deadlines; 0: one
    /// per core, at most 8. Default 0.
    pub tick_threads: usize,
    /// Most rooms open at once; a hello that would create one more is refused with 1013.
    /// Default 512.
    pub max_rooms: usize,
    /// Most players in one room; 0: the game's own cap, else `max_clients`. A full room is
    /// locked: join-or-create passes it by, a join by id is refused with 4008. Default 0.
    pub room_max_players: usize,
    /// How long a room stays open with no player in it before it is disposed, in ms.
    /// Default 30000.
    pub room_empty_grace_ms: u64,
    /// Whether the game port answers `GET /rooms` with the public lobby listing. Default true.
    pub room_listing: bool,
    /// Most server events kept per client until it acknowledges them; a client further behind
    /// is closed with 4012. Default 256.
    pub max_pending_events: usize,
    /// Most bytes of server events (encoded) kept per client until it acknowledges them; a
    /// client further behind is closed with 4012. Default 65536.
    pub max_pending_event_bytes: usize,
    /// How long a room holds the player of a connection that dropped (no close frame, or a
    /// network error) for the client to resume it, in ms; 0 turns resume off. Default 20000.
    pub resume_grace_ms: u64,
    /// Which entities each client is sent: `aoi` (those within `aoi_radius` of its player, and
    /// the player itself) or `global` (all). Default `aoi`.
    pub visibility: VisibilityMode,
    /// Radius of a client's area of interest in `aoi` mode, world units. Default 800.
    pub aoi_radius: f32,
    /// How `aoi` views are cut: `exact` (the entities within `aoi_radius`: fewest bytes) or
    /// `cells` (every grid cell the radius touches: a cell's changes are encoded once and shared
    /// by everyone who sees it, so the tick costs less per client, but a view holds up to a
    /// cell's diagonal more, about 1.7 times the entities and bytes). Default `exact`.
    pub aoi_views: AoiViews,
    /// Most threads that build a room's `aoi` views (exact or of whole cells): a room of at
    /// least `parallel_views_min_clients` clients has them built by the tick thread and one
    /// more thread for each `parallel_views_min_clients` clients, up to this many in all, each
    /// thread building the views and bodies of a share of the clients from records (and cell
    /// sections) encoded once for all; 0: one per core, at most 8; 1: the tick thread alone.
    /// `global` bodies are shared and built by the tick thread. Default 0.
    pub replicate_threads: usize,
    /// Clients a room needs before its `aoi` views are built on more than one thread, and the
    /// clients each further thread is given (see `replicate_threads`): under it, starting a
    /// thread costs more than it saves (at 200 clients of the reference game, two threads built
    /// the views no faster than one and used a third more of the tick's CPU;
    /// `docs/PERFORMANCE.md`). Default 256.
    pub parallel_views_min_clients: usize,
    /// Seed of the game's random numbers. Default 1.
    pub seed: u64,
    /// Which of the binary's games to run, by name; empty runs the first one it bundles.
    /// Default empty.
    pub game: String,
    /// Each game's own settings, in the section `[games.<name>]`, read and checked by that game
    /// (see its documentation; `--print-config` shows the defaults). Default: none, so every
    /// game runs on its defaults.
    pub games: toml::Table,
}

/// How the server chooses the entities each client is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum VisibilityMode {
    /// Every client sees every entity.
    Global,
    /// A client sees the entities within `aoi_radius` of its player.
    Aoi,
}

/// How `aoi` views are cut (see [`Config::aoi_views`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AoiViews {
    /// The entities within the radius.
    #[default]
    Exact,
    /// The entities of every grid cell (half a radius wide) the radius touches.
    Cells,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 7777)),
            admin_bind: "127.0.0.1:7778".into(),
            max_connections: 4096,
            max_connections_per_ip: 256,
            max_lingering_refusals: 32,
            refusal_linger_ms: 1000,
            admin_max_connections: 16,
            admin_timeout_ms: 5000,
            allowed_hosts: vec!["localhost".into()],
            tick_rate_hz: 30,
            max_clients: 2048,
            history_ticks: 32,
            input_queue_len: 16,
            outbox_len: 4,
            join_queue_len: 256,
            max_message_bytes: 1024,
            read_buffer_bytes: 1024,
            handshake_timeout_ms: 3000,
            hello_timeout_ms: 5000,
            close_timeout_ms: 1000,
            ws_path: "/ws".into(),
            json_protocol: true,
            web_client: true,
            allowed_origins: Vec::new(),
            join_token_public_key: String::new(),
            join_token_max_ttl_s: 300,
            join_token_memory: 65536,
            ping_interval_ms: 5000,
            idle_timeout_ms: 15000,
            control_rate_per_s: 5,
            control_burst: 10,
            write_timeout_ms: 5000,
            max_write_buffer_bytes: 1024 * 1024,
            send_buffer_bytes: Some(128 * 1024),
            input_rate_per_s: 60,
            input_burst: 30,
            abuse_drops_per_s: 120,
            max_lag_ticks: 90,
            skip_window_ticks: 150,
            max_skipped_fraction: 0.5,
            ack_timeout_ms: 5000,
            tls_cert: None,
            tls_key: None,
            shutdown_grace_ms: 3000,
            max_catchup_ticks: 3,
            stats_interval_ms: 5000,
            tick_threads: 0,
            max_rooms: 512,
            room_max_players: 0,
            room_empty_grace_ms: 30_000,
            room_listing: true,
            resume_grace_ms: 20_000,
            max_pending_events: 256,
            max_pending_event_bytes: 64 * 1024,
            visibility: VisibilityMode::Aoi,
            aoi_radius: 800.0,
            aoi_views: AoiViews::Exact,
            replicate_threads: 0,
            parallel_views_min_clients: 256,
            seed: 1,
            game: String::new(),
            games: toml::Table::new(),
        }
    }
}

impl Config {
    /// The join-token verifier, if `join_token_public_key` is set.
    ///
    /// # Errors
    /// If the key does not parse.
    pub fn token_verifier(
        &self,
    ) -> Result<Option<crate::token::TokenVerifier>, crate::token::KeyError> {
        if self.join_token_public_key.is_empty() {
            return Ok(None);
        }
        crate::token::TokenVerifier::new(
            &self.join_token_public_key,
            self.join_token_max_ttl_s,
            self.join_token_memory,
        )
        .map(Some)
    }

    /// Reads a TOML file; fields it does not set keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServerError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|e| ServerError::Config {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(cfg)
    }

    /// Checks the values that would make the server misbehave.
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |what: &str| {
            Err(ServerError::InvalidConfig {
                message: what.to_owned(),
            })
        };
        if !(1..=240).contains(&self.tick_rate_hz) {
            return bad("tick_rate_hz must be in 1..=240");
        }
        if self.max_clients == 0 {
            return bad("max_clients must be at least 1");
        }
        if self.max_connections < self.max_clients || self.max_connections_per_ip == 0 {
            return bad(
                "max_connections must be at least max_clients, and max_connections_per_ip at least 1",
            );
        }
        self.admin_addr()?;
        if self.max_lingering_refusals > 48 || self.admin_max_connections == 0 {
            return bad(
                "max_lingering_refusals must be at most 48 (they use the open-file reserve) and \
                 admin_max_connections at least 1",
            );
        }
        if self.control_rate_per_s == 0 || self.control_burst == 0 {
            return bad("control_rate_per_s and control_burst must be at least 1");
        }
        let fraction_ok = self.max_skipped_fraction > 0.0 && self.max_skipped_fraction <= 1.0;
        if !((1..=4096).contains(&self.skip_window_ticks) && fraction_ok) {
            return bad("skip_window_ticks must be in 1..=4096 and max_skipped_fraction in (0, 1]");
        }
        if self.ack_timeout_ms == 0 {
            return bad("ack_timeout_ms must be positive");
        }
        if !(2..=64).contains(&self.history_ticks) {
            return bad("history_ticks must be in 2..=64");
        }
        if self.input_queue_len == 0 || self.outbox_len == 0 || self.join_queue_len == 0 {
            return bad("queue lengths must be at least 1");
        }
        if self.max_message_bytes < tickwire_protocol::codec::MAX_CLIENT_MSG_BYTES {
            return bad("max_message_bytes must fit the largest client message (256)");
        }
        if !self.ws_path.starts_with('/') || self.ws_path.contains(['?', '#', ' ']) {
            return bad("ws_path must be a path starting with '/'");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert and tls_key go together");
        }
        if self.ping_interval_ms == 0 || self.idle_timeout_ms < self.ping_interval_ms {
            return bad("ping_interval_ms must be positive and at most idle_timeout_ms");
        }
        if !(self.aoi_radius.is_finite() && self.aoi_radius > 0.0) {
            return bad("aoi_radius must be finite and positive");
        }
        if self.max_lag_ticks == 0 || self.write_timeout_ms == 0 {
            return bad("max_lag_ticks and write_timeout_ms must be positive");
        }
        if !(64..=1024 * 1024).contains(&self.read_buffer_bytes) {
            return bad("read_buffer_bytes must be in 64..=1048576");
        }
        if self.max_write_buffer_bytes < 64 * 1024 {
            return bad("max_write_buffer_bytes must be at least 65536");
        }
        if !self.join_token_public_key.is_empty() && self.token_verifier().is_err() {
            return bad(
                "join_token_public_key must be a 32-byte Ed25519 public key in URL-safe base64",
            );
        }
        if self.max_rooms == 0 {
            return bad("max_rooms must be at least 1");
        }
        if self.tick_threads > 64 {
            return bad("tick_threads must be at most 64 (0: one per core)");
        }
        if self.replicate_threads > 64 {
            return bad("replicate_threads must be at most 64 (0: one per core)");
        }
        if self.join_token_max_ttl_s == 0 || self.join_token_memory == 0 {
            return bad("join_token_max_ttl_s and join_token_memory must be positive");
        }
        Ok(())
    }

    /// The admin listener's address, or `None` when `admin_bind` is empty (turned off).
    pub fn admin_addr(&self) -> Result<Option<SocketAddr>, ServerError> {
        let text = self.admin_bind.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse()
            .map(Some)
            .map_err(|_| ServerError::InvalidConfig {
                message: format!("admin_bind {text:?} is not an address (IP:port) or empty"),
            })
    }

    /// The visibility announced to clients.
    #[must_use]
    pub fn visibility(&self) -> tickwire_protocol::Visibility {
        match self.visibility {
            VisibilityMode::Global => tickwire_protocol::Visibility::Global,
            VisibilityMode::Aoi => tickwire_protocol::Visibility::Aoi {
                radius: self.aoi_radius,
            },
        }
    }

    /// A duration in milliseconds as a whole number of ticks, at least 1.
    #[must_use]
    pub fn ms_to_ticks(&self, ms: impl Into<u64>) -> u32 {
        ms_to_ticks(ms.into(), self.tick_rate_hz)
    }
}

/// A duration in milliseconds as a whole number of ticks at `tick_rate_hz`, rounded up, at
/// least 1.
#[must_use]
pub fn ms_to_ticks(ms: u64, tick_rate_hz: u16) -> u32 {
    let ticks = ms.saturating_mul(u64::from(tick_rate_hz)).div_ceil(1000);
    u32::try_from(ticks).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_a_partial_file_keeps_them() {
        Config::default().validate().expect("defaults valid");
        let cfg: Config =
            toml::from_str("tick_rate_hz = 60\n[games.g]\nspeed = 300.0\n").expect("parses");
        assert_eq!(cfg.tick_rate_hz, 60);
        assert_eq!(
            cfg.games["g"].get("speed").and_then(toml::Value::as_float),
            Some(300.0)
        );
        assert_eq!(cfg.max_clients, Config::default().max_clients);
        assert!(toml::from_str::<Config>("no_such_field = 1").is_err());
    }

    #[test]
    fn the_token_and_tick_thread_settings_are_checked() {
        let with = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate()
        };
        assert!(with(|c| c.join_token_public_key = "not a key".into()).is_err());
        assert!(with(|c| c.join_token_max_ttl_s = 0).is_err());
        assert!(with(|c| c.join_token_memory = 0).is_err());
        assert!(with(|c| c.tick_threads = 65).is_err());
        assert!(with(|c| c.tick_threads = 2).is_ok());
        assert!(with(|c| c.replicate_threads = 65).is_err());
        assert!(with(|c| c.replicate_threads = 4).is_ok());
        assert!(with(|c| c.max_rooms = 0).is_err());
        assert!(with(|c| c.room_max_players = 10).is_ok());
        assert!(with(|c| c.read_buffer_bytes = 63).is_err());
        assert!(with(|c| c.read_buffer_bytes = 64).is_ok());
        assert!(with(|c| c.read_buffer_bytes = 1024 * 1024 + 1).is_err());
        let key = crate::token::TokenSigner::from_key_text(
            &crate::token::TokenSigner::generate().expect("a key"),
        )
        .expect("reads back")
        .public_key();
        let cfg = Config {
            join_token_public_key: key,
            ..Config::default()
        };
        cfg.validate().expect("a real key is accepted");
        assert!(cfg.token_verifier().expect("parses").is_some());
        assert!(Config::default().token_verifier().expect("off").is_none());
    }

    #[test]
    fn ms_to_ticks_rounds_up() {
        let cfg = Config::default();
        assert_eq!(cfg.ms_to_ticks(1000u32), 30);
        assert_eq!(cfg.ms_to_ticks(250u32), 8);
        assert_eq!(cfg.ms_to_ticks(0u32), 1);
        assert_eq!(cfg.ms_to_ticks(5000u64), 150);
        assert_eq!(cfg.ms_to_ticks(u64::MAX), u32::MAX);
    }
}
