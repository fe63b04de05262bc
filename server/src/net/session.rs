//! One connection, from the first byte to the close.
//!
//! A session optionally completes TLS, reads and routes the HTTP request ([`super::http`]),
//! upgrades to WebSocket, waits for a hello with the right protocol version, asks the tick
//! thread for a player, and then runs one loop that `select!`s over the socket, the client's
//! outbox, kicks from the tick thread, the ping timer and the shutdown signal. On the fast path
//! (plain-TCP binary) the lane reads the joined player's inputs instead, and the session reads
//! only what the lane hands back ([`super::wire`]). Everything the peer sends is size-limited,
//! rate-limited, decoded and validated (by the connection's [`Gate`]) before it can reach the
//! world. A peer that breaks a rule gets a [`ServerMsg::Error`] and a close frame with a code
//! from [`close`] and a reason.

use super::gate::Gate;
use super::http::{self, Head, Route, Subprotocol};
use super::rate::{Kind, Limiter};
use crate::boundary::{ClientId, JoinRequest, Kick, LeaveReason, LeaveSlot, Outgoing, Resume};
use crate::config::Config;
use crate::rooms::{Rooms, Seat};
use crate::sim::driver::GAME_FAILED_REASON;
use crate::stats::ServerStats;
use crate::token::{Claims, TokenError, TokenVerifier, unix_now};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tickwire_protocol::codec::{
    decode_client, decode_client_json, decode_server, encode_server, encode_server_json,
};
use tickwire_protocol::input::{sanitize_name, validate_room_request};
use tickwire_protocol::{ClientMsg, GameSchema, RoomRequest, ServerMsg, Tick, close};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{
    CloseFrame, Role, WebSocketConfig, frame::coding::CloseCode,
};
use tokio_tungstenite::tungstenite::{
    Error as WsError, Message,
    error::{CapacityError, ProtocolError},
};
use tracing::{Instrument, debug, info, info_span};

/// Longest close reason a close frame can carry, in bytes (RFC 6455: 125 minus the code).
const MAX_CLOSE_REASON_BYTES: usize = 123;

/// State shared by all sessions of one server.
/// Bytes the WebSocket layer collects before it writes without being flushed: more than a
/// tick's frames for one client, so they leave in one write.
const WRITE_BATCH_BYTES: usize = 16 * 1024;

pub(crate) struct Shared {
    pub(crate) config: Config,
    /// The rooms: every join goes through them.
    rooms: Arc<Rooms>,
    pub(crate) stats: Arc<ServerStats>,
    next_id: AtomicU64,
    ws_config: WebSocketConfig,
    policy: http::Policy,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The game's schema: every input is checked against it.
    schema: Arc<GameSchema>,
    /// Checks join tokens, when they are on.
    tokens: Option<TokenVerifier>,
    /// The fast send path's lanes, one per network thread (plain-TCP binary sessions).
    lanes: Arc<super::wire::Lanes>,
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        rooms: Arc<Rooms>,
        stats: Arc<ServerStats>,
        tls: Option<tokio_rustls::TlsAcceptor>,
        schema: Arc<GameSchema>,
        page: &'static [super::web::Asset],
        tokens: Option<TokenVerifier>,
    ) -> Shared {
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(config.read_buffer_bytes)
            // Frames written with `feed` collect in the buffer until a flush: a tick's events
            // and snapshot leave in one system call. `send` (feed and flush) writes at once.
            .write_buffer_size(WRITE_BATCH_BYTES.min(config.max_write_buffer_bytes / 2))
            .max_write_buffer_size(config.max_write_buffer_bytes)
            .max_message_size(Some(config.max_message_bytes))
            .max_frame_size(Some(config.max_message_bytes));
        let policy = http::Policy {
            ws_path: config.ws_path.clone(),
            json: config.json_protocol,
            web_client: config.web_client,
            origins: http::OriginPolicy {
                allowed: config.allowed_origins.clone(),
                hosts: config.allowed_hosts.clone(),
            },
            page,
            room_listing: config.room_listing,
        };
        let lanes =
            super::wire::Lanes::spawn(tokio::runtime::Handle::current().metrics().num_workers());
        Shared {
            config,
            rooms,
            stats,
            next_id: AtomicU64::new(1),
            ws_config,
            policy,
            tls,
            schema,
            tokens,
            lanes,
        }
    }

    /// True if the game port speaks only TLS.
    pub(crate) fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    fn ms(&self, ms: u64) -> Duration {
        Duration::from_millis(ms)
    }
}

/// How a session ends.
#[derive(Debug)]
pub(crate) enum End {
    /// The peer sent a close frame.
    PeerClosed,
    /// The connection dropped, failed, or stopped taking our writes.
    Lost,
    /// The peer reset the connection (or ended it without a close frame): nothing can reach it.
    Reset,
    /// We close: code, reason, and whether it counts as the peer's fault.
    Close {
        code: u16,
        reason: String,
        violation: bool,
    },
}

impl End {
    pub(crate) fn violation(code: u16, reason: impl Into<String>) -> End {
        End::Close {
            code,
            reason: reason.into(),
            violation: true,
        }
    }

    pub(crate) fn server(code: u16, reason: impl Into<String>) -> End {
        End::Close {
            code,
            reason: reason.into(),
            violation: false,
        }
    }

    pub(crate) fn shutdown() -> End {
        End::server(close::GOING_AWAY, "server shutting down")
    }
}

/// Runs one accepted TCP connection to its end. Never panics on anything the peer sends.
/// `_permit` holds this connection's place under the connection caps until it ends.
pub(crate) async fn run<P: Send>(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    _permit: P,
) {
    let id = ClientId(shared.next_id.fetch_add(1, Relaxed));
    let span = info_span!(
        "session",
        client = id.0,
        %peer,
        room = tracing::field::Empty
    );
    async move {
        // Snapshots are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        if let Some(n) = shared.config.send_buffer_bytes {
            let _ = socket2::SockRef::from(&stream).set_send_buffer_size(n);
        }
        let deadline = Instant::now() + shared.ms(shared.config.handshake_timeout_ms);
        match shared.tls.clone() {
            None => serve_plain(stream, deadline, id, shared, shutdown).await,
            Some(acceptor) => {
                let mut stop = shutdown.clone();
                let handshake = tokio::time::timeout_at(deadline, acceptor.accept(stream));
                tokio::select! {
                    r = handshake => match r {
                        Ok(Ok(tls)) => serve(tls, deadline, id, shared, shutdown).await,
                        Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
                        Err(_) => debug!("TLS handshake timed out"),
                    },
                    // No HTTP can be spoken before TLS is up: the connection just closes.
                    _ = stop.changed() => debug!("shutdown during the TLS handshake"),
                }
            }
        }
    }
    .instrument(span)
    .await;
}

/// A plain-TCP connection: the HTTP request and the upgrade, then the session; a binary
/// session writes through a [`Wire`](super::wire::Wire) and its lane.
async fn serve_plain(
    stream: TcpStream,
    deadline: Instant,
    id: ClientId,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let Some((stream, up)) = handshake(stream, deadline, &shared, &shutdown).await else {
        return;
    };
    if up.protocol == Subprotocol::Binary {
        let mut up = up;
        let lane = usize::try_from(id.0).unwrap_or(0);
        // The wire reads the WebSocket stream from its first byte, so the lane can take over.
        let (wire, io) = super::wire::Wire::new(
            stream,
            std::mem::take(&mut up.leftover),
            Arc::clone(&shared.lanes),
            lane,
            shared.config.max_write_buffer_bytes,
            super::wire::ReadLimits {
                max_message: shared.config.max_message_bytes,
                read_chunk: shared.config.read_buffer_bytes,
            },
            Arc::clone(&shared.stats),
        );
        start_session(io, Some(wire), up, id, shared, shutdown).await;
    } else {
        start_session(stream, None, up, id, shared, shutdown).await;
    }
}

/// The HTTP request, the upgrade, then the WebSocket session.
async fn serve<S>(
    stream: S,
    deadline: Instant,
    id: ClientId,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Some((stream, up)) = handshake(stream, deadline, &shared, &shutdown).await else {
        return;
    };
    start_session(stream, None, up, id, shared, shutdown).await;
}

/// What the upgrade agreed.
struct Upgraded {
    protocol: Subprotocol,
    claims: Option<Claims>,
    resume_only: bool,
    leftover: Vec<u8>,
}

/// The HTTP request and the upgrade (refusals answered here): the stream, ready for the
/// WebSocket, and what was agreed.
async fn handshake<S>(
    mut stream: S,
    deadline: Instant,
    shared: &Arc<Shared>,
    shutdown: &watch::Receiver<bool>,
) -> Option<(S, Upgraded)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut stop = shutdown.clone();
    let upgraded = tokio::select! {
        r = tokio::time::timeout_at(deadline, upgrade(&mut stream, shared)) => Some(r),
        _ = stop.changed() => None,
    };
    let (protocol, claims, resume_only, leftover) = match upgraded {
        Some(Ok(Some(up))) => up,
        Some(Ok(None)) => return None,
        Some(Err(_)) => {
            debug!("handshake timed out");
            return None;
        }
        None => {
            // Still in the HTTP phase: answer 503 rather than leave the request hanging.
            let refusal = http::Refusal {
                status: 503,
                body: "server shutting down\n".into(),
                headers: vec!["Retry-After: 5".into()],
            };
            let timeout = shared.ms(shared.config.close_timeout_ms);
            let _ =
                tokio::time::timeout(timeout, refuse(&mut stream, &refusal, &shared.stats)).await;
            return None;
        }
    };
    Some((
        stream,
        Upgraded {
            protocol,
            claims,
            resume_only,
            leftover,
        },
    ))
}

/// The WebSocket session on an upgraded stream.
async fn start_session<S>(
    stream: S,
    wire: Option<Arc<super::wire::Wire>>,
    up: Upgraded,
    id: ClientId,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Upgraded {
        protocol,
        claims,
        resume_only,
        leftover,
    } = up;
    let ws = WebSocketStream::from_partially_read(
        stream,
        leftover,
        Role::Server,
        Some(shared.ws_config),
    )
    .await;
    shared.stats.sessions.inc();
    let now = Instant::now();
    let limiter = Limiter::new(
        shared.config.input_rate_per_s,
        shared.config.input_burst,
        shared.config.abuse_drops_per_s,
        now.into_std(),
    )
    .with_control(
        shared.config.control_rate_per_s,
        shared.config.control_burst,
        now.into_std(),
    );
    let gate = Gate::new(
        Arc::clone(&shared.stats),
        Arc::clone(&shared.schema),
        limiter,
        now.into_std(),
    );
    let mut session = Session {
        id,
        ws,
        protocol,
        shared: Arc::clone(&shared),
        shutdown,
        gate: Arc::new(Mutex::new(gate)),
        claims,
        resume_only,
        wire,
    };
    session.run().await;
    shared.stats.sessions.dec();
}

/// Checks the join token when tokens are on: what it grants, or why it is refused.
fn check_token(shared: &Shared, token: Option<&str>) -> Result<Option<Claims>, TokenError> {
    let Some(verifier) = &shared.tokens else {
        return Ok(None);
    };
    let token = token.ok_or(TokenError::Missing)?;
    verifier
        .check(token, &shared.schema.game, unix_now())
        .map(Some)
}

/// Reads and routes the request; answers refusals itself. Returns the subprotocol, what the
/// join token grants (when tokens are on), whether the connection may only resume (`?resume=1`:
/// no token is needed, the resume secret stands for it) and any bytes read past the request
/// head.
async fn upgrade<S>(
    stream: &mut S,
    shared: &Shared,
) -> Option<(Subprotocol, Option<Claims>, bool, Vec<u8>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let refusal = match http::read_head(stream, &mut buf).await {
        Ok(Head::Complete(len)) => match http::route(&buf[..len], &shared.policy) {
            Route::Upgrade(up) => match if up.resume {
                Ok(None)
            } else {
                check_token(shared, up.token.as_deref())
            } {
                Ok(claims) => {
                    http::write_all(stream, &http::upgrade_response(&up))
                        .await
                        .ok()?;
                    debug!(
                        protocol = up.protocol.name(),
                        resume = up.resume,
                        "upgraded"
                    );
                    return Some((up.protocol, claims, up.resume, buf.split_off(len)));
                }
                Err(e) => {
                    shared.stats.token_refusals.inc();
                    debug!(reason = %e, "join token refused");
                    let mut refusal = http::Refusal {
                        status: e.status(),
                        body: format!("{e}\n"),
                        headers: Vec::new(),
                    };
                    if e.status() == 503 {
                        refusal.headers.push("Retry-After: 5".into());
                    }
                    refusal
                }
            },
            Route::Rooms => {
                let headers = ["Cache-Control: no-store".to_owned()];
                let listing = shared.rooms.public_listing();
                let bytes = http::response(200, "application/json", &headers, &listing);
                let _ = http::write_all(stream, &bytes).await;
                let _ = stream.shutdown().await;
                return None;
            }
            Route::Asset(asset) => {
                let bytes = http::response(200, asset.content_type, &[], asset.body);
                let _ = http::write_all(stream, &bytes).await;
                let _ = stream.shutdown().await;
                return None;
            }
            Route::Refuse(refusal) => refusal,
        },
        Ok(Head::TooLarge) => http::Refusal {
            status: 431,
            body: format!("request head over {} bytes\n", http::MAX_HEAD_BYTES),
            headers: Vec::new(),
        },
        Ok(Head::Eof) | Err(_) => return None,
    };
    refuse(stream, &refusal, &shared.stats).await;
    None
}

/// Answers a request with a refusal, counts it, and closes the stream for writing.
async fn refuse<S: AsyncWrite + Unpin>(
    stream: &mut S,
    refusal: &http::Refusal,
    stats: &ServerStats,
) {
    stats.http_refusals.inc();
    debug!(status = refusal.status, "request refused");
    let _ = http::write_all(stream, &http::refusal_response(refusal)).await;
    let _ = stream.shutdown().await;
}

struct Session<S> {
    id: ClientId,
    ws: WebSocketStream<S>,
    protocol: Subprotocol,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    /// The rate budget, the input rules and the events backlog (shared with the lane).
    gate: Arc<Mutex<Gate>>,
    /// What the client's join token grants, when tokens are on.
    claims: Option<Claims>,
    /// Opened with `?resume=1` (no join token needed): only a resume may follow.
    resume_only: bool,
    /// The fast path (plain-TCP binary sessions): the world's frames come through the lane,
    /// not the outbox, and once joined the lane reads the client's messages; this session
    /// flushes what the lane could not write and reads what the lane hands back.
    wire: Option<Arc<super::wire::Wire>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    async fn run(&mut self) {
        let end = self.serve().await;
        // Nothing from the world may follow the close frame, and the session reads the rest.
        if let Some(wire) = &self.wire {
            wire.close_lane();
            wire.take_reads();
        }
        let stats = &self.shared.stats;
        match end {
            End::PeerClosed => {
                info!("peer closed");
                stats.record_close(close::NORMAL);
                self.finish_close().await;
            }
            End::Lost => {
                info!("connection lost");
                stats.connections_lost.inc();
            }
            End::Reset => {
                info!("connection reset by peer");
                stats.connections_reset.inc();
                stats.connections_lost.inc();
            }
            End::Close {
                code,
                reason,
                violation,
            } => {
                stats.record_close(code);
                if violation {
                    self.shared.stats.protocol_closes.inc();
                }
                info!(code, %reason, "closing");
                self.close(code, &reason).await;
            }
        }
    }

    /// Hello, join, then the main loop. Returns how the session should end.
    async fn serve(&mut self) -> End {
        let shared = Arc::clone(&self.shared);
        let cfg = &shared.config;
        let mut stop = self.shutdown.clone();
        let hello = tokio::time::timeout(shared.ms(cfg.hello_timeout_ms), self.hello());
        let first = tokio::select! {
            r = hello => match r {
                Err(_) => return End::violation(close::HELLO_TIMEOUT, "no hello within the timeout"),
                Ok(Err(end)) => return end,
                Ok(Ok(first)) => first,
            },
            _ = stop.changed() => return End::shutdown(),
        };
        let resuming = cfg.resume_grace_ms > 0;
        // The seat is held until the session ends (after the world is told it left), or
        // handed to the registry for a resume if the connection drops.
        let (seat, name, resume) = match first {
            First::Hello { name, room } => {
                if self.resume_only {
                    return End::violation(
                        close::UNEXPECTED_MESSAGE,
                        "a connection opened with ?resume=1 must send a resume",
                    );
                }
                let token_room = self.claims.as_ref().and_then(|c| c.room.as_deref());
                match shared.rooms.join(&room, token_room) {
                    Ok(seat) => (seat, name, None),
                    Err(refusal) => {
                        shared.stats.room_refusals.inc();
                        debug!(%refusal, "no room for the hello");
                        return End::server(refusal.code(), refusal.to_string());
                    }
                }
            }
            First::Resume(resume) => {
                let refused = |code: u16, why: String| {
                    shared.stats.resume_refusals.inc();
                    debug!(%why, "resume refused");
                    End::server(code, why)
                };
                if !resuming {
                    return refused(
                        close::RESUME_REFUSED,
                        "resume refused: this server does not hold players".into(),
                    );
                }
                let wait = shared.ms(cfg.close_timeout_ms);
                let key = crate::rooms::secret_key(&resume.secret);
                match shared.rooms.resume(&key, wait).await {
                    Ok(seat) => (seat, String::new(), Some(resume)),
                    Err(e) => return refused(e.code(), e.to_string()),
                }
            }
        };
        tracing::Span::current().record("room", seat.room().id());
        let secret = resuming.then(new_secret);
        let key = secret.as_deref().map(crate::rooms::secret_key);

        let (events_tx, events_rx) = crossbeam_channel::bounded(cfg.input_queue_len);
        let (outbox_tx, mut outbox) = mpsc::channel(cfg.outbox_len);
        let kick = Arc::new(Kick::default());
        let leave = LeaveSlot::default();
        let join = JoinRequest {
            client: self.id,
            name,
            events: events_rx,
            outbox: outbox_tx,
            wire: self
                .wire
                .as_ref()
                .map(|w| super::wire::WireHandle::new(w, cfg.outbox_len)),
            leave: Arc::clone(&leave),
            kick: Arc::clone(&kick),
            player_id: self.claims.take().map(|c| c.player),
            secret: secret.clone(),
            resume,
        };
        // Known before the welcome that carries it can reach the client.
        if let Some(key) = &key {
            shared.rooms.register_live(key, Arc::clone(&kick));
        }
        if seat.joins().try_send(join).is_err() {
            if let Some(key) = &key {
                shared.rooms.forget(key);
            }
            return End::server(
                close::TRY_AGAIN_LATER,
                "server busy: too many joins at once",
            );
        }
        debug!("join requested");
        self.gate.lock().joined(events_tx);
        let end = if *self.shutdown.borrow() {
            End::shutdown()
        } else {
            self.play(&seat, &kick, &mut outbox).await
        };
        if let Some(wire) = &self.wire {
            wire.take_reads();
        }
        // The reason goes in before the sender is dropped: the tick thread reads it only after
        // it sees the channel disconnect, so it always finds it.
        let reason = match &end {
            End::PeerClosed => LeaveReason::PeerClosed,
            // Dropped, silent past the idle timeout, or taken over by a resume: the client may
            // come back.
            End::Lost | End::Reset => LeaveReason::ConnectionLost,
            End::Close { code, .. } if *code == close::REPLACED || *code == close::IDLE_TIMEOUT => {
                LeaveReason::ConnectionLost
            }
            End::Close { code, .. } if *code == close::GOING_AWAY => LeaveReason::Shutdown,
            End::Close { code, .. } => LeaveReason::Violation { code: *code },
        };
        // The seat waits for a resume before the world can see the player go, so a resume
        // always finds either the live session or the held seat.
        match &key {
            Some(key) if reason == LeaveReason::ConnectionLost => {
                shared.rooms.hold(key, seat);
            }
            Some(key) => {
                shared.rooms.forget(key);
                drop(seat);
            }
            None => drop(seat),
        }
        *leave.lock() = Some(reason);
        self.gate.lock().leave();
        end
    }

    /// The joined session's loop: snapshots out, messages in, pings, kicks and shutdown.
    async fn play(
        &mut self,
        seat: &Seat,
        kick: &Kick,
        outbox: &mut mpsc::Receiver<Outgoing>,
    ) -> End {
        let shared = Arc::clone(&self.shared);
        let cfg = &shared.config;
        let mut ping = tokio::time::interval(shared.ms(cfg.ping_interval_ms));
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ping.reset();
        let idle = shared.ms(cfg.idle_timeout_ms);
        let retry = Duration::from_micros(1_000_000 / u64::from(cfg.tick_rate_hz.max(1)));
        // Made once, not on each turn of the loop: each turn is a message read, 30 a second.
        // Only these futures wait on the kick and the wire (each wakes one waiter).
        let mut stop = self.shutdown.clone();
        let stopped = stop.changed();
        tokio::pin!(stopped);
        let kick_requested = kick.requested();
        tokio::pin!(kick_requested);
        let wire = self.wire.clone();
        let flush_wanted = wants_flush(wire.as_deref());
        tokio::pin!(flush_wanted);
        // From here on the lane reads the player's messages, until it hands a frame back.
        if let Some(w) = &wire {
            w.lend_reads(&self.gate);
        }
        loop {
            let mut between_messages = false;
            let result = tokio::select! {
                biased;
                _ = &mut stopped => Err(End::shutdown()),
                (code, reason) = &mut kick_requested => Err(kicked(code, reason)),
                out = outbox.recv() => match out {
                    // A peer that stopped reading blocks this write: a kick must still get through.
                    // The same kick future: `notify_one` wakes one waiter.
                    Some(frame) => tokio::select! {
                        r = self.send_queued(frame, outbox) => r,
                        (code, reason) = &mut kick_requested => Err(kicked(code, reason)),
                    },
                    // The world let go of this client without a kick: it is shutting down,
                    // or its game panicked before the client's player was made.
                    None if *self.shutdown.borrow() => Err(End::shutdown()),
                    None => Err(End::server(close::INTERNAL_ERROR, GAME_FAILED_REASON)),
                },
                // The lane left bytes the socket would not take, or the connection failed:
                // write them as the socket drains, bounded by the write timeout (a kick still
                // gets through).
                () = &mut flush_wanted => {
                    flush_wanted.set(wants_flush(wire.as_deref()));
                    tokio::select! {
                        r = self.flush_wire() => r,
                        (code, reason) = &mut kick_requested => Err(kicked(code, reason)),
                    }
                }
                frame = read_turn(
                    &mut self.ws,
                    wire.as_deref(),
                    &self.gate,
                    self.protocol,
                    &shared.stats,
                    retry,
                ) => match frame {
                    Ok(Incoming::Msg(msg)) => {
                        self.gate.lock().last_seen = std::time::Instant::now();
                        between_messages = true;
                        self.handle(msg, seat).await
                    }
                    Ok(Incoming::Pong) => {
                        self.gate.lock().last_seen = std::time::Instant::now();
                        self.charge_control()
                    }
                    Ok(Incoming::Ping) => self.charge_control(),
                    // Not a frame: the events backlog is tried again after this turn.
                    Ok(Incoming::Retry) => Ok(()),
                    Err(end) => Err(end),
                },
                _ = ping.tick() => {
                    if self.gate.lock().last_seen.elapsed() >= idle {
                        Err(End::violation(
                            close::IDLE_TIMEOUT,
                            format!("idle timeout: nothing received for {} ms", idle.as_millis()),
                        ))
                    } else {
                        self.send(Message::Ping(Bytes::new())).await
                    }
                }
            };
            if let Err(end) = result.and_then(|()| self.gate.lock().flush_events()) {
                return end;
            }
            // After a data message tungstenite holds no part of one: the lane may read again,
            // unless events wait for the world (the session tries them each tick).
            if let (true, Some(w)) = (between_messages, &wire)
                && !self.gate.lock().has_backlog()
            {
                w.lend_reads(&self.gate);
            }
        }
    }

    /// Charges one control frame (ping or pong) to the connection's budget.
    fn charge_control(&mut self) -> Result<(), End> {
        self.gate.lock().charge(Kind::Control).map(|_| ())
    }

    /// Waits for the hello (or a resume) and checks it.
    async fn hello(&mut self) -> Result<First, End> {
        loop {
            match next_frame(&mut self.ws, self.protocol, &self.shared.stats).await? {
                Incoming::Ping | Incoming::Pong => self.charge_control()?,
                // Only `read_turn` waits for the backlog; nothing is owed before the join.
                Incoming::Retry => {}
                Incoming::Msg(ClientMsg::Hello {
                    version,
                    name,
                    room,
                }) => {
                    check_version(version)?;
                    if let Err(e) = validate_room_request(&room) {
                        return Err(End::violation(close::POLICY_VIOLATION, e.to_string()));
                    }
                    return Ok(First::Hello {
                        name: sanitize_name(&name),
                        room,
                    });
                }
                Incoming::Msg(ClientMsg::Resume {
                    version,
                    secret,
                    last_tick,
                    events_received,
                }) => {
                    check_version(version)?;
                    if secret.len() > MAX_SECRET_BYTES {
                        return Err(End::violation(
                            close::POLICY_VIOLATION,
                            "resume secret too long",
                        ));
                    }
                    return Ok(First::Resume(Resume {
                        secret,
                        last_tick,
                        events_received,
                    }));
                }
                Incoming::Msg(_) => {
                    return Err(End::violation(
                        close::UNEXPECTED_MESSAGE,
                        "the first message must be a hello",
                    ));
                }
            }
        }
    }

    /// Handles one message after the hello: the gate takes what goes to the world, the
    /// session answers the rest.
    async fn handle(&mut self, msg: ClientMsg, seat: &Seat) -> Result<(), End> {
        let taken = self.gate.lock().take(msg)?;
        match taken {
            None => Ok(()),
            Some(ClientMsg::Ping { nonce }) => {
                let pong = ServerMsg::Pong {
                    nonce,
                    tick: Tick(seat.room().tick()),
                };
                self.send_msg(&pong).await
            }
            Some(_) => Err(End::violation(
                close::UNEXPECTED_MESSAGE,
                "hello sent twice",
            )),
        }
    }

    /// Writes what the lane left in the wire, giving up (connection lost) after the write
    /// timeout.
    async fn flush_wire(&mut self) -> Result<(), End> {
        let Some(wire) = self.wire.clone() else {
            return Ok(());
        };
        let timeout = self.shared.ms(self.shared.config.write_timeout_ms);
        match tokio::time::timeout(timeout, std::future::poll_fn(|cx| wire.poll_flush(cx))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(write_failed(WsError::Io(e))),
            Err(_) => {
                debug!("write timed out");
                Err(End::Lost)
            }
        }
    }

    /// Sends a frame, giving up (connection lost) after the write timeout.
    async fn send(&mut self, msg: Message) -> Result<(), End> {
        let timeout = self.shared.ms(self.shared.config.write_timeout_ms);
        match tokio::time::timeout(timeout, self.ws.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(write_failed(e)),
            Err(_) => {
                debug!("write timed out");
                Err(End::Lost)
            }
        }
    }

    /// Sends a message in the session's format.
    async fn send_msg(&mut self, msg: &ServerMsg) -> Result<(), End> {
        let frame = match self.protocol {
            Subprotocol::Binary => {
                let mut buf = Vec::new();
                encode_server(msg, &mut buf);
                Message::Binary(Bytes::from(buf))
            }
            Subprotocol::Json => Message::text(encode_server_json(msg)),
        };
        self.send(frame).await
    }

    /// Writes `first` and every frame the tick thread has already queued behind it (a tick's
    /// events and snapshot) with one flush, so they leave in one write: one system call per
    /// client per tick. Gives up (connection lost) after the write timeout, like [`Self::send`].
    async fn send_queued(
        &mut self,
        first: Outgoing,
        outbox: &mut mpsc::Receiver<Outgoing>,
    ) -> Result<(), End> {
        let timeout = self.shared.ms(self.shared.config.write_timeout_ms);
        let protocol = self.protocol;
        let ws = &mut self.ws;
        let write = async {
            let mut next = Some(first);
            while let Some(frame) = next {
                for bytes in frame.into_messages() {
                    ws.feed(encoded_message(protocol, bytes)?)
                        .await
                        .map_err(write_failed)?;
                }
                next = outbox.try_recv().ok();
            }
            ws.flush().await.map_err(write_failed)
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(r) => r,
            Err(_) => {
                debug!("write timed out");
                Err(End::Lost)
            }
        }
    }

    /// Sends an error message and a close frame, then waits (bounded) for the peer's close.
    async fn close(&mut self, code: u16, reason: &str) {
        let timeout = self.shared.ms(self.shared.config.close_timeout_ms);
        let error = ServerMsg::Error {
            code,
            message: reason.to_owned(),
        };
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: truncate(reason, MAX_CLOSE_REASON_BYTES).into(),
        };
        let _ = tokio::time::timeout(timeout, async {
            let _ = self.send_msg(&error).await;
            self.ws.close(Some(frame)).await?;
            while let Some(Ok(_)) = self.ws.next().await {}
            Ok::<(), WsError>(())
        })
        .await;
    }

    /// After the peer's close frame: flush our reply and wait (bounded) for the TCP close.
    async fn finish_close(&mut self) {
        let timeout = self.shared.ms(self.shared.config.close_timeout_ms);
        let ws = &mut self.ws;
        let _ = tokio::time::timeout(timeout, async {
            let _ = ws.flush().await;
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
}

/// Longest resume secret accepted, in bytes (the server's are 22).
const MAX_SECRET_BYTES: usize = 64;

/// The first message of a session.
enum First {
    /// Join a room.
    Hello { name: String, room: RoomRequest },
    /// Take over a held player.
    Resume(Resume),
}

/// A fresh resume secret: 16 random bytes, URL-safe base64.
fn new_secret() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // The system's random source failing is not something a peer can cause; fall back to
        // a weaker source rather than refusing every join.
        for b in &mut bytes {
            *b = fastrand::u8(..);
        }
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// How a kick ends the session: a close with its code, or for [`crate::boundary::ABORT`] the
/// socket simply dropped.
fn kicked(code: u16, reason: String) -> End {
    if code == crate::boundary::ABORT {
        End::Lost
    } else {
        End::server(code, reason)
    }
}

/// Refuses a version other than this server's.
fn check_version(version: u16) -> Result<(), End> {
    if version == tickwire_protocol::PROTOCOL_VERSION {
        return Ok(());
    }
    Err(End::violation(
        close::VERSION_MISMATCH,
        format!(
            "unsupported protocol version {version}; this server speaks {}",
            tickwire_protocol::PROTOCOL_VERSION
        ),
    ))
}

/// What the peer sent: a message, or a control frame (which the budget charges).
enum Incoming {
    /// A decoded message.
    Msg(ClientMsg),
    /// A ping (tungstenite answers it); not something the protocol expects.
    Ping,
    /// A pong, the answer to our ping.
    Pong,
    /// Nothing yet, but a tick has passed with events waiting for the world.
    Retry,
}

/// The next frame from the peer. Errors say how the session ends.
async fn next_frame<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    protocol: Subprotocol,
    stats: &ServerStats,
) -> Result<Incoming, End> {
    let Some(frame) = ws.next().await else {
        return Err(End::Lost);
    };
    let undecodable = |e: tickwire_protocol::CodecError| {
        End::violation(close::INVALID_PAYLOAD, format!("undecodable message: {e}"))
    };
    match (frame, protocol) {
        (Ok(Message::Binary(bytes)), Subprotocol::Binary) => {
            stats.messages_in.inc();
            stats.bytes_in.inc_by(bytes.len() as u64);
            decode_client(&bytes)
                .map(Incoming::Msg)
                .map_err(undecodable)
        }
        (Ok(Message::Text(text)), Subprotocol::Json) => {
            stats.messages_in.inc();
            stats.bytes_in.inc_by(text.len() as u64);
            decode_client_json(&text)
                .map(Incoming::Msg)
                .map_err(undecodable)
        }
        (Ok(Message::Text(_)), Subprotocol::Binary) => Err(End::violation(
            close::UNSUPPORTED_DATA,
            "text frames are not supported; send binary frames (or negotiate tickwire.v1.json)",
        )),
        (Ok(Message::Binary(_)), Subprotocol::Json) => Err(End::violation(
            close::UNSUPPORTED_DATA,
            "binary frames are not supported by tickwire.v1.json; send text frames",
        )),
        (Ok(Message::Close(_)), _) => Err(End::PeerClosed),
        (Ok(Message::Ping(_)), _) => Ok(Incoming::Ping),
        (Ok(Message::Pong(_)), _) => Ok(Incoming::Pong),
        // tungstenite never yields raw frames when reading; treat one as a protocol error.
        (Ok(Message::Frame(_)), _) => Err(End::violation(
            close::PROTOCOL_ERROR,
            "websocket protocol error: unexpected raw frame",
        )),
        (Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })), _) => {
            Err(End::violation(
                close::MESSAGE_TOO_BIG,
                format!("message of {size} bytes exceeds the limit of {max_size}"),
            ))
        }
        (Err(WsError::Utf8(e)), _) => Err(End::violation(
            close::INVALID_PAYLOAD,
            format!("text frame is not valid UTF-8: {e}"),
        )),
        (Err(e), _) if is_reset(&e) => Err(End::Reset),
        (Err(WsError::Protocol(e)), _) => Err(End::violation(
            close::PROTOCOL_ERROR,
            format!("websocket protocol error: {e}"),
        )),
        (Err(_), _) => Err(End::Lost),
    }
}

/// The next frame for the session, once the reads are its: on the fast path the lane reads
/// until it hands a frame back, or a fault it found (which ends the session).
async fn read_turn<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    wire: Option<&super::wire::Wire>,
    gate: &Mutex<Gate>,
    protocol: Subprotocol,
    stats: &ServerStats,
    retry: Duration,
) -> Result<Incoming, End> {
    if let Some(wire) = wire {
        wire.session_turn().await;
        if let Some(end) = gate.lock().fault.take() {
            return Err(end);
        }
    }
    if gate.lock().has_backlog() {
        // Events wait for room in the queue to the world: they are tried again each tick even
        // when nothing else wakes this session (its frames go by the lane).
        return tokio::select! {
            frame = next_frame(ws, protocol, stats) => frame,
            () = tokio::time::sleep(retry) => Ok(Incoming::Retry),
        };
    }
    next_frame(ws, protocol, stats).await
}

/// Ready when the wire, if any, has bytes for the session to write; never without a wire.
async fn wants_flush(wire: Option<&super::wire::Wire>) {
    match wire {
        Some(w) => w.wants_flush().await,
        None => std::future::pending().await,
    }
}

/// How a failed write ends the session.
fn write_failed(e: WsError) -> End {
    debug!(error = %e, "write failed");
    if is_reset(&e) { End::Reset } else { End::Lost }
}

/// A frame the tick thread encoded (bincode) as the session's message, transcoded for JSON
/// sessions.
fn encoded_message(protocol: Subprotocol, bytes: Bytes) -> Result<Message, End> {
    match protocol {
        Subprotocol::Binary => Ok(Message::Binary(bytes)),
        Subprotocol::Json => match decode_server(&bytes) {
            Ok(msg) => Ok(Message::text(encode_server_json(&msg))),
            Err(e) => Err(End::server(close::INTERNAL_ERROR, format!("internal: {e}"))),
        },
    }
}

/// True if the peer reset the connection or went away without a close frame.
fn is_reset(e: &WsError) -> bool {
    match e {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => true,
        WsError::Io(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("ééé", 4), "éé");
    }
}
