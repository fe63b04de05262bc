//! One connection to a Tickwire server, as a game client sees it.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use thiserror::Error;
use tickwire_protocol::codec::{MAX_SERVER_MSG_BYTES, decode_server, encode_client};
use tickwire_protocol::view::{ApplyError, Replica};
use tickwire_protocol::{
    ClientMsg, EntityKind, EntityState, Input, PROTOCOL_VERSION, ServerMsg, SnapshotHeader, Tick,
    Welcome,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Why a client operation failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The WebSocket connection or handshake failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// The server sent bytes that do not decode.
    #[error("undecodable server message: {0}")]
    Codec(#[from] tickwire_protocol::CodecError),
    /// The server closed the connection.
    #[error("closed by server: code {code:?}, reason {reason:?}")]
    Closed {
        /// The close code, if the server sent a close frame.
        code: Option<u16>,
        /// The reason (from the close frame, or the error message before it).
        reason: String,
    },
    /// The server's first message was not a welcome.
    #[error("expected a welcome, got {0}")]
    NoWelcome(String),
    /// A snapshot did not apply to the replica (a desync or a missing baseline).
    #[error("snapshot did not apply: {0}")]
    Apply(#[from] ApplyError),
    /// The operation took too long.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Something the server sent, after the client has processed it.
#[derive(Debug)]
pub enum Event {
    /// A snapshot; on `Ok` the replica now holds its view, and it should be acked.
    Snapshot {
        /// Its header.
        header: SnapshotHeader,
        /// How many entities it created, changed and removed.
        counts: SnapshotCounts,
        /// Whether it applied cleanly.
        outcome: Result<(), ApplyError>,
    },
    /// Answer to a ping.
    Pong {
        /// The ping's nonce.
        nonce: u64,
        /// The server's tick.
        tick: Tick,
    },
    /// The server is about to close the connection and says why.
    Error {
        /// The close code that follows.
        code: u16,
        /// The reason.
        message: String,
    },
}

/// What one snapshot carried.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnapshotCounts {
    /// Entities created.
    pub created: usize,
    /// Entities changed.
    pub changed: usize,
    /// Entities removed.
    pub removed: usize,
    /// Projectiles among the created entities.
    pub created_projectiles: usize,
}

/// A connected, welcomed client.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The server's welcome.
    pub welcome: Welcome,
    /// The client's view of the world, verified against the server's checksums.
    pub replica: Replica,
    /// WebSocket payload bytes received.
    pub bytes_down: u64,
    /// WebSocket payload bytes sent.
    pub bytes_up: u64,
    last_error: Option<(u16, String)>,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `url` (`ws://host:port/ws`), says hello as `name`, and waits for the welcome.
    pub async fn connect(url: &str, name: &str) -> Result<Client, ClientError> {
        let config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_SERVER_MSG_BYTES))
            .max_frame_size(Some(MAX_SERVER_MSG_BYTES));
        let (ws, _resp) =
            tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
        let mut client = Client {
            ws,
            welcome: Welcome {
                version: 0,
                player: Default::default(),
                tick_rate_hz: 0,
                tick: Tick(0),
                arena: tickwire_protocol::ArenaInfo {
                    width: 0.0,
                    height: 0.0,
                    walls: Vec::new(),
                    player_radius: 0.0,
                    projectile_radius: 0.0,
                    player_speed: 0.0,
                },
            },
            replica: Replica::new(),
            bytes_down: 0,
            bytes_up: 0,
            last_error: None,
            buf: Vec::new(),
        };
        client
            .send(&ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                name: name.to_owned(),
            })
            .await?;
        match client.next_server_msg().await? {
            ServerMsg::Welcome(w) => {
                client.welcome = w;
                Ok(client)
            }
            ServerMsg::Error { code, message } => Err(ClientError::Closed {
                code: Some(code),
                reason: message,
            }),
            other => Err(ClientError::NoWelcome(format!("{other:?}"))),
        }
    }

    /// Sends one message as a binary frame.
    pub async fn send(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        self.buf.clear();
        encode_client(msg, &mut self.buf);
        self.bytes_up += self.buf.len() as u64;
        let bytes = Bytes::copy_from_slice(&self.buf);
        self.ws.send(Message::Binary(bytes)).await?;
        Ok(())
    }

    /// Sends a raw WebSocket message (for tests of bad input).
    pub async fn send_raw(&mut self, msg: Message) -> Result<(), ClientError> {
        self.ws.send(msg).await?;
        Ok(())
    }

    /// Sends an input.
    pub async fn send_input(&mut self, input: Input) -> Result<(), ClientError> {
        self.send(&ClientMsg::Input(input)).await
    }

    /// Acknowledges a snapshot tick.
    pub async fn ack(&mut self, tick: Tick) -> Result<(), ClientError> {
        self.send(&ClientMsg::Ack { tick }).await
    }

    /// Waits for the next server message and processes it: snapshots are applied to the replica
    /// and verified. Cancel-safe: nothing is lost if the future is dropped before it completes.
    pub async fn recv(&mut self) -> Result<Event, ClientError> {
        match self.next_server_msg().await? {
            ServerMsg::Snapshot(s) => {
                let counts = SnapshotCounts {
                    created: s.body.created.len(),
                    changed: s.body.changed.len(),
                    removed: s.body.removed.len(),
                    created_projectiles: s
                        .body
                        .created
                        .iter()
                        .filter(|u| u.state.kind == EntityKind::Projectile)
                        .count(),
                };
                let outcome = self.replica.apply(&s.header, &s.body).map(|_| ());
                Ok(Event::Snapshot {
                    header: s.header,
                    counts,
                    outcome,
                })
            }
            ServerMsg::Pong { nonce, tick } => Ok(Event::Pong { nonce, tick }),
            ServerMsg::Error { code, message } => {
                self.last_error = Some((code, message.clone()));
                Ok(Event::Error { code, message })
            }
            ServerMsg::Welcome(_) => Err(ClientError::NoWelcome("a second welcome".into())),
        }
    }

    /// Receives until the next snapshot that applies, acks it and returns its header.
    /// Snapshots that fail to apply are returned as errors.
    pub async fn next_snapshot(&mut self) -> Result<SnapshotHeader, ClientError> {
        loop {
            if let Event::Snapshot {
                header, outcome, ..
            } = self.recv().await?
            {
                match outcome {
                    Ok(()) => {
                        self.ack(header.tick).await?;
                        return Ok(header);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    /// This client's own player as the replica sees it.
    #[must_use]
    pub fn own_state(&self) -> Option<&EntityState> {
        self.replica.latest()?.entities.get(&self.welcome.player)
    }

    /// Closes the connection with code 1000 and waits (bounded) for the server's reply.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let close = tokio::time::timeout(Duration::from_secs(2), async {
            self.ws.close(None).await?;
            while let Some(Ok(_)) = self.ws.next().await {}
            Ok::<(), ClientError>(())
        });
        close
            .await
            .map_err(|_| ClientError::Timeout(Duration::from_secs(2)))?
    }

    /// Reads until the connection closes and returns the close code and reason (for tests of
    /// server-initiated closes).
    pub async fn closed(&mut self) -> (Option<u16>, String) {
        loop {
            match self.next_server_msg().await {
                Ok(ServerMsg::Error { code, message }) => self.last_error = Some((code, message)),
                Ok(_) => {}
                Err(ClientError::Closed { code, reason }) => return (code, reason),
                Err(_) => {
                    return self
                        .last_error
                        .clone()
                        .map_or((None, String::new()), |(c, m)| (Some(c), m));
                }
            }
        }
    }

    async fn next_server_msg(&mut self) -> Result<ServerMsg, ClientError> {
        loop {
            let Some(msg) = self.ws.next().await else {
                return Err(self.closed_error(None));
            };
            match msg? {
                Message::Binary(bytes) => {
                    self.bytes_down += bytes.len() as u64;
                    return Ok(decode_server(&bytes)?);
                }
                Message::Close(frame) => {
                    return Err(
                        self.closed_error(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
                    );
                }
                Message::Text(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    fn closed_error(&self, frame: Option<(u16, String)>) -> ClientError {
        let (code, reason) = match (frame, &self.last_error) {
            (Some((c, r)), _) => (Some(c), r),
            (None, Some((c, m))) => (Some(*c), m.clone()),
            (None, None) => (None, String::new()),
        };
        ClientError::Closed { code, reason }
    }
}
