//! One connection, from the WebSocket upgrade to the close.
//!
//! A session upgrades the socket (only at `/ws`), waits for a hello with the right protocol
//! version, asks the tick thread for a player, and then runs one loop that `select!`s over the
//! socket, the client's outbox and the shutdown signal. Everything the peer sends is decoded with
//! a size limit and validated here, before it can reach the world. A peer that breaks the rules
//! gets a [`ServerMsg::Error`] and a close frame with a code from [`close`] and a reason.

use crate::config::Config;
use crate::replication::{ClientEvent, ClientId, JoinRequest, LeaveReason, LeaveSlot, Outgoing};
use crate::stats::ServerStats;
use bytes::Bytes;
use crossbeam_channel::TrySendError;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;
use tickwire_protocol::codec::{decode_client, encode_server};
use tickwire_protocol::{ClientMsg, ServerMsg, Tick, close, input::sanitize_name};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::{
    CloseFrame, WebSocketConfig, frame::coding::CloseCode,
};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::CapacityError};
use tracing::{Instrument, debug, info, info_span};

/// Path of the WebSocket endpoint.
pub const WS_PATH: &str = "/ws";

/// Longest close reason a close frame can carry, in bytes (RFC 6455: 125 minus the code).
const MAX_CLOSE_REASON_BYTES: usize = 123;

/// State shared by all sessions of one server.
pub(crate) struct Shared {
    pub(crate) config: Config,
    joins: crossbeam_channel::Sender<JoinRequest>,
    stats: Arc<ServerStats>,
    next_id: AtomicU64,
    players: AtomicUsize,
    ws_config: WebSocketConfig,
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        joins: crossbeam_channel::Sender<JoinRequest>,
        stats: Arc<ServerStats>,
    ) -> Shared {
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(config.read_buffer_bytes)
            .write_buffer_size(0)
            .max_message_size(Some(config.max_message_bytes))
            .max_frame_size(Some(config.max_message_bytes));
        Shared {
            config,
            joins,
            stats,
            next_id: AtomicU64::new(1),
            players: AtomicUsize::new(0),
            ws_config,
        }
    }
}

/// How a session ended.
#[derive(Debug)]
enum End {
    /// The peer sent a close frame.
    PeerClosed,
    /// The connection dropped without a close frame.
    Lost,
    /// We close: code, reason, and whether it counts as the peer's fault.
    Close {
        code: u16,
        reason: String,
        violation: bool,
    },
}

impl End {
    fn violation(code: u16, reason: impl Into<String>) -> End {
        End::Close {
            code,
            reason: reason.into(),
            violation: true,
        }
    }

    fn server(code: u16, reason: impl Into<String>) -> End {
        End::Close {
            code,
            reason: reason.into(),
            violation: false,
        }
    }

    fn shutdown() -> End {
        End::server(close::GOING_AWAY, "server shutting down")
    }
}

/// Runs one connection to its end. Never panics on anything the peer sends.
pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let id = ClientId(shared.next_id.fetch_add(1, Relaxed));
    let span = info_span!("session", client = id.0, %peer);
    async move {
        // Snapshots are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let handshake = tokio_tungstenite::accept_hdr_async_with_config(
            stream,
            check_request,
            Some(shared.ws_config),
        );
        let timeout = Duration::from_millis(shared.config.handshake_timeout_ms);
        let ws = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                debug!(error = %e, "handshake failed");
                return;
            }
            Err(_) => {
                debug!("handshake timed out");
                return;
            }
        };
        ServerStats::add(&shared.stats.sessions, 1);
        let mut session = Session {
            id,
            ws,
            shared: Arc::clone(&shared),
            shutdown,
            last_seq: 0,
        };
        session.run().await;
        shared.stats.sessions.fetch_sub(1, Relaxed);
    }
    .instrument(span)
    .await;
}

/// Handshake callback: only the WebSocket path upgrades.
#[allow(clippy::result_large_err)] // The signature is tungstenite's `Callback`.
fn check_request(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() == WS_PATH {
        return Ok(resp);
    }
    let mut err = ErrorResponse::new(Some(format!(
        "not found: the WebSocket endpoint is {WS_PATH}\n"
    )));
    *err.status_mut() = StatusCode::NOT_FOUND;
    Err(err)
}

struct Session {
    id: ClientId,
    ws: WebSocketStream<TcpStream>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    last_seq: u32,
}

/// Releases a player slot when the session ends, however it ends.
struct PlayerSlot<'a>(&'a AtomicUsize);

impl Drop for PlayerSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Session {
    async fn run(&mut self) {
        let leave = LeaveSlot::default();
        let end = self.serve(&leave).await;
        let reason = match &end {
            End::PeerClosed => LeaveReason::PeerClosed,
            End::Lost => LeaveReason::ConnectionLost,
            End::Close { code, .. } if *code == close::GOING_AWAY => LeaveReason::Shutdown,
            End::Close { code, .. } => LeaveReason::Violation { code: *code },
        };
        // Recorded before the event sender is dropped (it was, when serve returned), but the
        // tick thread reads it only after seeing the disconnect, which this lock orders.
        *leave.lock() = Some(reason);
        match end {
            End::PeerClosed => {
                info!("peer closed");
                self.finish_close().await;
            }
            End::Lost => info!("connection lost"),
            End::Close {
                code,
                reason,
                violation,
            } => {
                if violation {
                    ServerStats::add(&self.shared.stats.protocol_closes, 1);
                }
                info!(code, %reason, "closing");
                self.close(code, &reason).await;
            }
        }
    }

    /// Hello, join, then the main loop. Returns how the session should end.
    async fn serve(&mut self, leave: &LeaveSlot) -> End {
        let hello_timeout = Duration::from_millis(self.shared.config.hello_timeout_ms);
        let stats = Arc::clone(&self.shared.stats);
        let name = match tokio::time::timeout(hello_timeout, next_msg(&mut self.ws, &stats)).await {
            Err(_) => return End::violation(close::HELLO_TIMEOUT, "no hello within the timeout"),
            Ok(Err(end)) => return end,
            Ok(Ok(ClientMsg::Hello { version, name })) => {
                if version != tickwire_protocol::PROTOCOL_VERSION {
                    return End::violation(
                        close::VERSION_MISMATCH,
                        format!(
                            "unsupported protocol version {version}; this server speaks {}",
                            tickwire_protocol::PROTOCOL_VERSION
                        ),
                    );
                }
                sanitize_name(&name)
            }
            Ok(Ok(_)) => {
                return End::violation(
                    close::UNEXPECTED_MESSAGE,
                    "the first message must be a hello",
                );
            }
        };

        let shared = Arc::clone(&self.shared);
        let players = &shared.players;
        let max = self.shared.config.max_clients;
        if players
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .is_err()
        {
            return End::server(close::TRY_AGAIN_LATER, "server full");
        }
        let _slot = PlayerSlot(players);

        let (events_tx, events_rx) = crossbeam_channel::bounded(self.shared.config.input_queue_len);
        let (outbox_tx, mut outbox) = mpsc::channel(self.shared.config.outbox_len);
        let join = JoinRequest {
            client: self.id,
            name,
            events: events_rx,
            outbox: outbox_tx,
            leave: Arc::clone(leave),
        };
        if self.shared.joins.try_send(join).is_err() {
            return End::server(
                close::TRY_AGAIN_LATER,
                "server busy: too many joins at once",
            );
        }
        debug!("join requested");
        if *self.shutdown.borrow() {
            return End::shutdown();
        }
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => return End::shutdown(),
                out = outbox.recv() => match out {
                    Some(Outgoing::Frame(bytes)) => {
                        if self.ws.send(Message::Binary(bytes)).await.is_err() {
                            return End::Lost;
                        }
                    }
                    Some(Outgoing::Close { code, reason }) => return End::server(code, reason),
                    None => return End::shutdown(),
                },
                msg = next_msg(&mut self.ws, &stats) => match msg {
                    Err(end) => return end,
                    Ok(msg) => {
                        if let Some(end) = self.handle(msg, &events_tx).await {
                            return end;
                        }
                    }
                },
            }
        }
    }

    /// Handles one message after the hello; `Some` ends the session.
    async fn handle(
        &mut self,
        msg: ClientMsg,
        events: &crossbeam_channel::Sender<ClientEvent>,
    ) -> Option<End> {
        let stats = &self.shared.stats;
        let event = match msg {
            ClientMsg::Hello { .. } => {
                return Some(End::violation(
                    close::UNEXPECTED_MESSAGE,
                    "hello sent twice",
                ));
            }
            ClientMsg::Ping { nonce } => {
                let pong = ServerMsg::Pong {
                    nonce,
                    tick: Tick(stats.tick.load(Relaxed)),
                };
                let mut buf = Vec::new();
                encode_server(&pong, &mut buf);
                return match self.ws.send(Message::Binary(Bytes::from(buf))).await {
                    Ok(()) => None,
                    Err(_) => Some(End::Lost),
                };
            }
            ClientMsg::Ack { tick } => ClientEvent::Ack(tick),
            ClientMsg::Input(input) => match input.sanitize() {
                Err(e) => {
                    debug!(error = %e, "input rejected");
                    ServerStats::add(&stats.inputs_rejected, 1);
                    return None;
                }
                Ok(input) if input.seq <= self.last_seq => {
                    debug!(
                        seq = input.seq,
                        last = self.last_seq,
                        "stale input sequence rejected"
                    );
                    ServerStats::add(&stats.inputs_rejected, 1);
                    return None;
                }
                Ok(input) => {
                    self.last_seq = input.seq;
                    ServerStats::add(&stats.inputs_received, 1);
                    ClientEvent::Input(input)
                }
            },
        };
        match events.try_send(event) {
            Ok(()) => None,
            Err(TrySendError::Full(_)) => {
                ServerStats::add(&stats.inputs_dropped, 1);
                None
            }
            Err(TrySendError::Disconnected(_)) => Some(End::shutdown()),
        }
    }

    /// Sends an error message and a close frame, then waits (bounded) for the peer's close.
    async fn close(&mut self, code: u16, reason: &str) {
        let timeout = Duration::from_millis(self.shared.config.close_timeout_ms);
        let mut buf = Vec::new();
        encode_server(
            &ServerMsg::Error {
                code,
                message: reason.to_owned(),
            },
            &mut buf,
        );
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: truncate(reason, MAX_CLOSE_REASON_BYTES).into(),
        };
        let ws = &mut self.ws;
        let _ = tokio::time::timeout(timeout, async {
            ws.send(Message::Binary(Bytes::from(buf))).await?;
            ws.close(Some(frame)).await?;
            while let Some(Ok(_)) = ws.next().await {}
            Ok::<(), WsError>(())
        })
        .await;
    }

    /// After the peer's close frame: flush our reply and wait (bounded) for the TCP close.
    async fn finish_close(&mut self) {
        let timeout = Duration::from_millis(self.shared.config.close_timeout_ms);
        let ws = &mut self.ws;
        let _ = tokio::time::timeout(timeout, async {
            let _ = ws.flush().await;
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
}

/// The next protocol message, skipping control frames. Errors say how to end.
async fn next_msg(
    ws: &mut WebSocketStream<TcpStream>,
    stats: &ServerStats,
) -> Result<ClientMsg, End> {
    loop {
        let Some(frame) = ws.next().await else {
            return Err(End::Lost);
        };
        match frame {
            Ok(Message::Binary(bytes)) => {
                ServerStats::add(&stats.bytes_in, bytes.len() as u64);
                return decode_client(&bytes).map_err(|e| {
                    End::violation(close::INVALID_PAYLOAD, format!("undecodable message: {e}"))
                });
            }
            Ok(Message::Text(_)) => {
                return Err(End::violation(
                    close::UNSUPPORTED_DATA,
                    "text frames are not supported; send binary frames",
                ));
            }
            Ok(Message::Close(_)) => return Err(End::PeerClosed),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
            Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
                return Err(End::violation(
                    close::MESSAGE_TOO_BIG,
                    format!("message of {size} bytes exceeds the limit of {max_size}"),
                ));
            }
            Err(WsError::Protocol(e)) => {
                return Err(End::violation(
                    close::PROTOCOL_ERROR,
                    format!("websocket protocol error: {e}"),
                ));
            }
            Err(_) => return Err(End::Lost),
        }
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
