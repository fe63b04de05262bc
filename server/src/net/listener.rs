//! [`Server`]: binds, starts the tick thread, accepts connections, and shuts everything down.

use super::session::{self, Shared};
use crate::config::Config;
use crate::error::ServerError;
use crate::sim::Sim;
use crate::sim::driver::TickLoop;
use crate::sim::map::Map;
use crate::stats::ServerStats;
use crate::telemetry::Telemetry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

/// Longest pause after a failed `accept` (for example when out of file descriptors).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    scheme: &'static str,
    ws_path: String,
    stats: Arc<ServerStats>,
    telemetry: Arc<Telemetry>,
    shutdown: watch::Sender<bool>,
    accept_task: tokio::task::JoinHandle<()>,
    tick: TickLoop,
}

impl Server {
    /// Validates the config, loads the map, binds, and starts the tick thread and accept loop.
    pub async fn start(config: Config) -> Result<Server, ServerError> {
        config.validate()?;
        let map = Map::load(config.map.as_deref())?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(super::tls::acceptor(cert, key)?),
            _ => None,
        };
        let listener =
            TcpListener::bind(config.bind)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.bind,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.bind,
            source,
        })?;
        let stats = Arc::new(ServerStats::default());
        let (join_tx, join_rx) = crossbeam_channel::bounded(config.join_queue_len);
        let telemetry = Arc::new(Telemetry::new(
            Arc::clone(&stats),
            config.tick_rate_hz,
            config.max_catchup_ticks,
        ));
        let sim = Sim::new(&config, map, join_rx, Arc::clone(&stats));
        let tick = TickLoop::spawn(sim, &config, Arc::clone(&stats), Arc::clone(&telemetry))?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let ws_path = config.ws_path.clone();
        let shared = Arc::new(Shared::new(
            config,
            join_tx,
            Arc::clone(&stats),
            Arc::clone(&telemetry),
            tls,
        ));
        let accept_task = tokio::spawn(accept_loop(listener, shared, shutdown_rx));
        info!(%local_addr, scheme, %ws_path, "listening");
        Ok(Server {
            local_addr,
            scheme,
            ws_path,
            stats,
            telemetry,
            shutdown,
            accept_task,
            tick,
        })
    }

    /// The address actually bound (useful with port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The WebSocket URL of this server.
    #[must_use]
    pub fn ws_url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.local_addr, self.ws_path)
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

    /// Stops accepting, closes every session with 1001 (waiting at most `shutdown_grace_ms`
    /// for the close handshakes), then stops the tick thread.
    pub async fn shutdown(self) {
        info!("shutting down");
        let _ = self.shutdown.send(true);
        if let Err(e) = self.accept_task.await {
            warn!(error = %e, "accept loop ended abnormally");
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

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    let shared = Arc::clone(&shared);
                    let rx = shutdown.clone();
                    sessions.spawn(session::run(stream, peer, shared, rx));
                }
                Err(e) => {
                    // Usually EMFILE or a connection reset before accept: keep serving.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                }
            },
        }
        while sessions.try_join_next().is_some() {}
    }
    drop(listener);
    let grace = Duration::from_millis(shared.config.shutdown_grace_ms);
    let drained = tokio::time::timeout(grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            remaining = sessions.len(),
            "sessions still open after the grace period; aborting them"
        );
        sessions.abort_all();
        while sessions.join_next().await.is_some() {}
    }
}
