//! [`Server`]: the composition root. It validates the configuration, raises the open-file
//! limit, checks that the game builds, binds the game port and the admin port, starts the pool
//! of tick threads, the room registry and the accept loops, and shuts everything down in
//! order. Rooms (worlds of the game) are created on demand by hellos, or by the operator.

use crate::config::Config;
use crate::error::ServerError;
use crate::game::GameDef;
use crate::net::admin;
use crate::net::listener::accept_loop;
use crate::net::session::Shared;
use crate::rooms::{RoomLimits, Rooms, StartRoom};
use crate::sim::Sim;
use crate::sim::driver::TickLoop;
use crate::stats::ServerStats;
use crate::telemetry::Telemetry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    scheme: &'static str,
    ws_path: String,
    stats: Arc<ServerStats>,
    telemetry: Arc<Telemetry>,
    shutdown: watch::Sender<bool>,
    accept_task: tokio::task::JoinHandle<()>,
    admin_task: Option<tokio::task::JoinHandle<()>>,
    tick: Arc<TickLoop>,
    rooms: Arc<Rooms>,
}

impl Server {
    /// Validates the config, raises the open-file limit, builds a world of `game` once (to check
    /// it and read its schema), binds the game port (and the admin port, if configured), and
    /// starts the tick threads, the room registry and the accept loops. No room is open yet.
    pub async fn start(config: Config, game: GameDef) -> Result<Server, ServerError> {
        config.validate()?;
        let admin_bind = config.admin_addr()?;
        let limit = crate::process::raise_file_limit(config.max_connections)?;
        info!(
            soft = limit.now,
            was = limit.before,
            hard = limit.hard,
            needed = config.max_connections as u64 + crate::process::FILE_RESERVE,
            "open-file limit"
        );
        let stats = Arc::new(ServerStats::default());
        // A first world, only to check the game and read what every room shares.
        let (_, no_joins) = crossbeam_channel::bounded(1);
        let probe = Sim::new(&config, &game, no_joins, Arc::new(ServerStats::default()))?;
        let schema = Arc::clone(probe.schema());
        let page = probe.page();
        let game_cap = probe.player_cap();
        drop(probe);
        info!(game = game.name(), "game built");
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(crate::net::tls::acceptor(cert, key)?),
            _ => None,
        };
        let bind = |addr: SocketAddr| async move {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| ServerError::Bind { addr, source })?;
            Ok::<_, ServerError>((listener, local))
        };
        let (listener, local_addr) = bind(config.bind).await?;
        let admin = match admin_bind {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let telemetry = Arc::new(Telemetry::new(
            Arc::clone(&stats),
            config.tick_rate_hz,
            config.max_catchup_ticks,
        ));
        let tick = Arc::new(TickLoop::spawn(
            &config,
            Arc::clone(&stats),
            Arc::clone(&telemetry),
        )?);
        let start: StartRoom = {
            let (config, stats, tick) = (config.clone(), Arc::clone(&stats), Arc::clone(&tick));
            Box::new(move |info, joins, registry| {
                let sim = Sim::in_room(
                    &config,
                    &game,
                    joins,
                    Arc::clone(&stats),
                    info,
                    registry.clone(),
                )?;
                tick.add(sim, registry);
                Ok(())
            })
        };
        let room_cap = match config.room_max_players {
            0 => game_cap.unwrap_or(config.max_clients),
            n => game_cap.map_or(n, |g| g.min(n)),
        }
        .min(config.max_clients);
        let rooms = Rooms::new(
            game.name(),
            RoomLimits {
                max_rooms: config.max_rooms,
                max_players: config.max_clients,
                room_cap,
                empty_grace: std::time::Duration::from_millis(config.room_empty_grace_ms),
                join_queue_len: config.join_queue_len,
            },
            Arc::clone(&stats),
            start,
        );
        telemetry.watch_rooms(Arc::downgrade(&rooms));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let ws_path = config.ws_path.clone();
        let admin_addr = admin.as_ref().map(|(_, a)| *a);
        let admin_task = admin.map(|(listener, _)| {
            tokio::spawn(admin::serve(
                listener,
                Arc::clone(&telemetry),
                Arc::clone(&rooms),
                config.allowed_hosts.clone(),
                config.admin_max_connections,
                std::time::Duration::from_millis(config.admin_timeout_ms),
                shutdown_rx.clone(),
            ))
        });
        let tokens = config
            .token_verifier()
            .map_err(|e| ServerError::InvalidConfig {
                message: format!("join_token_public_key: {e}"),
            })?;
        if tokens.is_some() {
            info!("join tokens required");
        }
        let shared = Arc::new(Shared::new(
            config,
            Arc::clone(&rooms),
            Arc::clone(&stats),
            tls,
            schema,
            page,
            tokens,
        ));
        let accept_task = tokio::spawn(accept_loop(listener, shared, shutdown_rx));
        info!(%local_addr, scheme, %ws_path, room_cap, "listening");
        if let Some(addr) = admin_addr {
            info!(%addr, "admin endpoints /metrics, /healthz and /rooms listening");
        }
        Ok(Server {
            local_addr,
            admin_addr,
            scheme,
            ws_path,
            stats,
            telemetry,
            shutdown,
            accept_task,
            admin_task,
            tick,
            rooms,
        })
    }

    /// The rooms.
    #[must_use]
    pub fn rooms(&self) -> &Arc<Rooms> {
        &self.rooms
    }

    /// The address actually bound (useful with port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin listener's address, if it is on.
    #[must_use]
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The WebSocket URL of this server.
    #[must_use]
    pub fn ws_url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.local_addr, self.ws_path)
    }

    /// The URL of `/metrics` on the admin listener, if it is on.
    #[must_use]
    pub fn metrics_url(&self) -> Option<String> {
        self.admin_addr.map(|a| format!("http://{a}/metrics"))
    }

    /// Live counters.
    #[must_use]
    pub fn stats(&self) -> &Arc<ServerStats> {
        &self.stats
    }

    /// Tick and phase timings, lag, health.
    #[must_use]
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Pauses or resumes the tick loop, as if it had stalled (a diagnostic hook: `/healthz`
    /// answers 503 while paused, and the loop skips the missed ticks when it resumes).
    pub fn set_tick_paused(&self, paused: bool) {
        self.tick.set_paused(paused);
    }

    /// Injects faults into what the tick threads send (in any room), for tests of the
    /// verifier (see [`crate::sim::Faults`]).
    #[must_use]
    pub fn faults(&self) -> &Arc<crate::sim::Faults> {
        self.tick.faults()
    }

    /// Stops accepting, answers connections still in the HTTP phase with 503, closes every
    /// upgraded session with 1001 (waiting at most `shutdown_grace_ms` for the close
    /// handshakes), then stops the admin listener and the tick thread.
    pub async fn shutdown(self) {
        info!("shutting down");
        let _ = self.shutdown.send(true);
        if let Err(e) = self.accept_task.await {
            warn!(error = %e, "accept loop ended abnormally");
        }
        if let Some(admin) = self.admin_task {
            let _ = admin.await;
        }
        // Seats held for a resume hold the registry: let them go with the worlds.
        self.rooms.clear_tickets();
        let tick = self.tick;
        // Worlds hold the registry only weakly, and the registry holds the pool: stopping the
        // pool drops every world.
        if tokio::task::spawn_blocking(move || tick.stop())
            .await
            .is_err()
        {
            warn!("could not join the tick thread");
        }
        info!("shut down");
    }
}
