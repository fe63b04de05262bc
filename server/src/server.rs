//! [`Server`]: the composition root. It validates the configuration, raises the open-file
//! limit, loads the map, binds the game port and the admin port, starts the tick thread and
//! the accept loops, and shuts everything down in order.

use crate::config::Config;
use crate::error::ServerError;
use crate::game::GameDef;
use crate::net::admin;
use crate::net::listener::accept_loop;
use crate::net::session::Shared;
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
    tick: TickLoop,
}

impl Server {
    /// Validates the config, raises the open-file limit, builds `game`, binds the game port
    /// (and the admin port, if configured), and starts the tick thread and accept loops.
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
        let (join_tx, join_rx) = crossbeam_channel::bounded(config.join_queue_len);
        let sim = Sim::new(&config, &game, join_rx.clone(), Arc::clone(&stats))?;
        let remake: crate::sim::driver::Remake = {
            let (config, stats) = (config.clone(), Arc::clone(&stats));
            Box::new(move || Sim::new(&config, &game, join_rx.clone(), Arc::clone(&stats)))
        };
        let schema = Arc::clone(sim.schema());
        let page = sim.page();
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
        let tick = TickLoop::spawn(
            sim,
            remake,
            &config,
            Arc::clone(&stats),
            Arc::clone(&telemetry),
        )?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let ws_path = config.ws_path.clone();
        let admin_addr = admin.as_ref().map(|(_, a)| *a);
        let admin_task = admin.map(|(listener, _)| {
            tokio::spawn(admin::serve(
                listener,
                Arc::clone(&telemetry),
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
            join_tx,
            Arc::clone(&stats),
            tls,
            schema,
            page,
            tokens,
        ));
        let accept_task = tokio::spawn(accept_loop(listener, shared, shutdown_rx));
        info!(%local_addr, scheme, %ws_path, "listening");
        if let Some(addr) = admin_addr {
            info!(%addr, "admin endpoints /metrics and /healthz listening");
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
        })
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

    /// Injects faults into what the tick thread sends, for tests of the verifier (see
    /// [`crate::sim::Faults`]).
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
        let tick = self.tick;
        if tokio::task::spawn_blocking(move || tick.stop())
            .await
            .is_err()
        {
            warn!("could not join the tick thread");
        }
        info!("shut down");
    }
}
