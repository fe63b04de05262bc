//! [`Server`]: binds, starts the tick thread, accepts connections under the connection caps,
//! serves the admin port, and shuts everything down.
//!
//! The accept loop never waits for a session: after each `accept` it takes a place under
//! `max_connections` and under `max_connections_per_ip` for the peer's address, without
//! waiting. A connection that finds no place is answered `503` with a reason in one
//! non-blocking write (nothing for a TLS listener, where no HTTP can be spoken yet) and closed
//! at once, with no task spawned and nothing read but what is already buffered, so a flood of
//! connections costs the server a few syscalls each and never stalls the loop. The place is
//! held by the session until its socket closes, whatever phase it reached.

use super::admin;
use super::session::{self, Shared};
use crate::config::Config;
use crate::error::ServerError;
use crate::sim::Sim;
use crate::sim::driver::TickLoop;
use crate::sim::map::Map;
use crate::stats::ServerStats;
use crate::telemetry::Telemetry;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// Longest pause after a failed `accept` (for example when out of file descriptors).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

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
    /// Validates the config, raises the open-file limit, loads the map, binds the game port
    /// (and the admin port, if configured), and starts the tick thread and accept loops.
    pub async fn start(config: Config) -> Result<Server, ServerError> {
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
        let map = Map::load(config.map.as_deref())?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(super::tls::acceptor(cert, key)?),
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
        let admin_addr = admin.as_ref().map(|(_, a)| *a);
        let admin_task = admin.map(|(listener, _)| {
            tokio::spawn(admin::serve(
                listener,
                Arc::clone(&telemetry),
                config.allowed_hosts.clone(),
                shutdown_rx.clone(),
            ))
        });
        let shared = Arc::new(Shared::new(config, join_tx, Arc::clone(&stats), tls));
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

/// The places under the connection caps.
struct Caps {
    total: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    per_ip_max: usize,
    stats: Arc<ServerStats>,
}

/// One connection's place under the caps, given back when dropped.
struct Place {
    _total: OwnedSemaphorePermit,
    ip: IpAddr,
    caps: Arc<Caps>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut map = self.caps.per_ip.lock();
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
        self.caps.stats.connections.fetch_sub(1, Relaxed);
    }
}

impl Caps {
    /// A place for a connection from `ip`, or why there is none.
    fn take(self: &Arc<Caps>, ip: IpAddr) -> Result<Place, &'static str> {
        let Ok(total) = Arc::clone(&self.total).try_acquire_owned() else {
            ServerStats::add(&self.stats.refused_connection_cap, 1);
            return Err("server at its connection cap; try again later\n");
        };
        {
            let mut map = self.per_ip.lock();
            let n = map.entry(ip).or_insert(0);
            if *n >= self.per_ip_max {
                ServerStats::add(&self.stats.refused_per_ip_cap, 1);
                return Err("too many connections from your address; try again later\n");
            }
            *n += 1;
        }
        ServerStats::add(&self.stats.connections, 1);
        Ok(Place {
            _total: total,
            ip,
            caps: Arc::clone(self),
        })
    }
}

/// Answers a connection over a cap with 503 and closes it, without waiting for anything.
fn refuse_now(stream: TcpStream, why: &str, tls: bool) {
    if !tls {
        let body = super::http::refusal_response(&super::http::Refusal {
            status: 503,
            body: why.to_owned(),
            headers: vec!["Retry-After: 1".into()],
        });
        // A fresh socket's send buffer takes the whole answer; if not, the peer gets less.
        let _ = stream.try_write(&body);
        // Reading what the peer already sent lets the close be a FIN, not a reset that could
        // discard our answer before the peer reads it.
        let mut sink = [0u8; 2048];
        while matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {}
    }
    drop(stream);
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let caps = Arc::new(Caps {
        total: Arc::new(Semaphore::new(shared.config.max_connections)),
        per_ip: Mutex::new(HashMap::new()),
        per_ip_max: shared.config.max_connections_per_ip,
        stats: Arc::clone(&shared.stats),
    });
    let tls = shared.tls_enabled();
    let mut sessions = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    match caps.take(peer.ip()) {
                        Ok(place) => {
                            let shared = Arc::clone(&shared);
                            let rx = shutdown.clone();
                            sessions.spawn(session::run(stream, peer, shared, rx, place));
                        }
                        Err(why) => {
                            debug!(%peer, reason = why.trim_end(), "connection refused at accept");
                            refuse_now(stream, why, tls);
                        }
                    }
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
