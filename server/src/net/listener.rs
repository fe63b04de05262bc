//! The game port's accept loop and its connection caps.
//!
//! The accept loop never waits for a session: after each `accept` it takes a place under
//! `max_connections` and under `max_connections_per_ip` for the peer's address, without
//! waiting. A connection that finds no place is answered `503` with a reason in one
//! non-blocking write (nothing for a TLS listener, where no HTTP can be spoken yet) and closed
//! at once, with no task spawned and nothing read but what is already buffered, so a flood of
//! connections costs the server a few syscalls each and never stalls the loop. The place is
//! held by the session until its socket closes, whatever phase it reached.

use super::session::{self, Shared};
use crate::stats::ServerStats;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Longest pause after a failed `accept` (for example when out of file descriptors).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

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

/// Accepts connections until shutdown, then waits (at most `shutdown_grace_ms`) for every
/// session to close.
pub(crate) async fn accept_loop(
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
