//! The game port's accept loop and its connection caps.
//!
//! The accept loop never waits for a session: after each `accept` it takes a place under
//! `max_connections` and under `max_connections_per_ip` for the peer's address, without
//! waiting. A connection that finds no place is answered `503` with a reason (nothing for a TLS
//! listener, where no HTTP can be spoken yet). Up to `max_lingering_refusals` refusals at a
//! time get a small task that sends the answer, half-closes, and reads what the peer still
//! sends for at most `refusal_linger_ms`, so that the peer's request arriving after the close
//! cannot turn it into a reset that destroys the answer; beyond that, during a flood, a refusal
//! is one non-blocking write and a close, costing a few syscalls. Either way the loop never
//! stalls. The place is held by the session until its socket closes, whatever phase it reached.

use super::session::{self, Shared};
use crate::stats::ServerStats;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Longest pause after a failed `accept` (for example when out of file descriptors).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// Most bytes a lingering refusal reads (and discards) from the peer.
const REFUSAL_READ_LIMIT: usize = 16 * 1024;

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
        self.caps.stats.connections.dec();
    }
}

impl Caps {
    /// A place for a connection from `ip`, or why there is none.
    fn take(self: &Arc<Caps>, ip: IpAddr) -> Result<Place, &'static str> {
        let Ok(total) = Arc::clone(&self.total).try_acquire_owned() else {
            self.stats.refused_connection_cap.inc();
            return Err("server at its connection cap; try again later\n");
        };
        {
            let mut map = self.per_ip.lock();
            let n = map.entry(ip).or_insert(0);
            if *n >= self.per_ip_max {
                self.stats.refused_per_ip_cap.inc();
                return Err("too many connections from your address; try again later\n");
            }
            *n += 1;
        }
        self.stats.connections.inc();
        Ok(Place {
            _total: total,
            ip,
            caps: Arc::clone(self),
        })
    }
}

fn refusal_bytes(why: &str) -> Vec<u8> {
    super::http::refusal_response(&super::http::Refusal {
        status: 503,
        body: why.to_owned(),
        headers: vec!["Retry-After: 1".into()],
    })
}

/// Answers a connection over a cap with 503 and closes it, without waiting for anything.
fn refuse_now(stream: TcpStream, why: &str, tls: bool) {
    if !tls {
        // A fresh socket's send buffer takes the whole answer; if not, the peer gets less.
        let _ = stream.try_write(&refusal_bytes(why));
        // Reading what the peer already sent lets the close be a FIN, not a reset that could
        // discard our answer before the peer reads it.
        let mut sink = [0u8; 2048];
        while matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {}
    }
    drop(stream);
}

/// Answers a connection over a cap with 503, half-closes, and reads (discarding, bounded in
/// bytes and time) until the peer closes too: a clean close the peer can read the answer from.
async fn refuse_lingering(mut stream: TcpStream, why: &'static str, linger: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(linger, async {
        stream.write_all(&refusal_bytes(why)).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 2048];
        let mut read = 0;
        while read < REFUSAL_READ_LIMIT {
            match stream.read(&mut sink).await? {
                0 => break,
                n => read += n,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
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
    let lingering = Arc::new(Semaphore::new(shared.config.max_lingering_refusals));
    let linger = Duration::from_millis(shared.config.refusal_linger_ms);
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
                            match Arc::clone(&lingering).try_acquire_owned() {
                                Ok(permit) if !tls => {
                                    tokio::spawn(async move {
                                        refuse_lingering(stream, why, linger).await;
                                        drop(permit);
                                    });
                                }
                                _ => refuse_now(stream, why, tls),
                            }
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
