//! One connection to a Tickwire server, as a game client sees it.

use crate::timing::InputClock;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tickwire_protocol::body::write_record;
use tickwire_protocol::codec::{
    MAX_SERVER_MSG_BYTES, decode_server, encode_client, peek_snapshot_header,
};
use tickwire_protocol::{
    ApplyError, ClientMsg, EventRecord, EventsMsg, GameSchema, InputMsg, NetId, PROTOCOL_VERSION,
    Replica, Replicate, RoomRequest, ServerMsg, SnapshotHeader, Tick, Welcome,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

/// A byte stream a WebSocket can run over: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The WebSocket type every client uses.
pub type Ws = WebSocketStream<Box<dyn Io>>;

/// How to connect.
#[derive(Clone, Default, Debug)]
pub struct ConnectOptions {
    /// TLS settings, required for `wss://` URLs (see [`tls_config_with_ca`]).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// `SO_RCVBUF` for the socket (small values make a slow reader push back sooner).
    pub recv_buffer_bytes: Option<u32>,
    /// Subprotocols to offer in `Sec-WebSocket-Protocol`; empty offers none.
    pub subprotocols: Vec<String>,
    /// `Origin` header to send, as a browser would.
    pub origin: Option<String>,
    /// Local address to connect from (any port); `None` lets the kernel choose. The swarm
    /// spreads its bots over 127.0.0.0/8 with this when it targets loopback.
    pub source_ip: Option<std::net::IpAddr>,
    /// A join token, sent as the URL's query parameter `token` (for servers that require
    /// them; see `docs/PROTOCOL.md`, "Join tokens").
    pub token: Option<String>,
    /// Which room the hello asks for. Default: any room of the server's game with a free
    /// seat.
    pub room: RoomRequest,
}

/// True if an events message decodes within the server's limit on a client message.
fn fits(msg: &EventsMsg) -> bool {
    let mut buf = Vec::new();
    encode_client(&ClientMsg::Events(msg.clone()), &mut buf);
    tickwire_protocol::codec::decode_client(&buf).is_ok()
}

/// True for a close the client must not retry with the same secret.
fn is_final(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Closed { code: Some(c), .. } if *c == tickwire_protocol::close::RESUME_REFUSED
    )
}

/// A TLS client configuration that trusts the CA certificates in a PEM file.
pub fn tls_config_with_ca(
    ca_pem: &std::path::Path,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let tls_err =
        |e: &dyn std::fmt::Display| ClientError::Tls(format!("{}: {e}", ca_pem.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).map_err(|e| tls_err(&e))? {
        roots
            .add(cert.map_err(|e| tls_err(&e))?)
            .map_err(|e| tls_err(&e))?;
    }
    if roots.is_empty() {
        return Err(tls_err(&"no certificate found"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Opens a WebSocket to `url` (`ws://` or `wss://`) without saying hello: for clients and for
/// tests that speak the protocol by hand. Returns the socket and the negotiated subprotocol.
pub async fn open(url: &str, opts: &ConnectOptions) -> Result<(Ws, Option<String>), ClientError> {
    let url = match &opts.token {
        // Tokens are URL-safe base64: no escaping needed.
        Some(token) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}token={token}")
        }
        None => url.to_owned(),
    };
    let mut request = url.into_client_request()?;
    if !opts.subprotocols.is_empty() {
        let list = HeaderValue::from_str(&opts.subprotocols.join(", "))
            .map_err(|e| ClientError::Tls(format!("bad subprotocol list: {e}")))?;
        request.headers_mut().insert("Sec-WebSocket-Protocol", list);
    }
    if let Some(origin) = &opts.origin {
        let origin = HeaderValue::from_str(origin)
            .map_err(|e| ClientError::Tls(format!("bad origin: {e}")))?;
        request.headers_mut().insert("Origin", origin);
    }
    let uri = request.uri().clone();
    let secure = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        other => {
            return Err(ClientError::Tls(format!(
                "unsupported URL scheme {other:?}"
            )));
        }
    };
    let host = uri
        .host()
        .unwrap_or("127.0.0.1")
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .ok_or_else(|| ClientError::Tls(format!("{host} does not resolve")))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(n) = opts.recv_buffer_bytes {
        socket.set_recv_buffer_size(n)?;
    }
    if let Some(ip) = opts.source_ip
        && ip.is_ipv4() == addr.is_ipv4()
    {
        socket.bind(std::net::SocketAddr::new(ip, 0))?;
    }
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn Io> = if secure {
        let config = opts
            .tls
            .clone()
            .ok_or_else(|| ClientError::Tls("wss:// needs a CA (--ca FILE)".into()))?;
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| ClientError::Tls(format!("{host}: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    // tungstenite zero-fills up to this many bytes of its buffer before every read, the one
    // that finds the socket empty after each frame included: 16 KiB made that zeroing a
    // tenth of a 500-bot swarm's CPU. A snapshot is a few hundred bytes to a few KiB; a larger
    // one (a full snapshot) takes more reads.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_SERVER_MSG_BYTES))
        .max_frame_size(Some(MAX_SERVER_MSG_BYTES));
    let (ws, resp) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
    let protocol = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((ws, protocol))
}

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
    /// A socket operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// TLS or URL setup failed.
    #[error("setup: {0}")]
    Tls(String),
    /// The operation took too long.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// An event could not be sent.
    #[error("events: {0}")]
    Events(String),
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
    /// A snapshot only counted, not applied (the client does not verify: see
    /// [`Client::set_verify`]); it is acknowledged like an applied one.
    Counted {
        /// Its header.
        header: SnapshotHeader,
    },
    /// Answer to a ping.
    Pong {
        /// The ping's nonce.
        nonce: u64,
        /// The server's tick.
        tick: Tick,
    },
    /// Server events, each taken exactly once and in order: their sequence numbers and records
    /// (types index the schema's `server_events`).
    Events(Vec<(u32, EventRecord)>),
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
}

/// A connected, welcomed client.
pub struct Client {
    ws: Ws,
    /// The server's welcome.
    pub welcome: Welcome,
    /// The client's view of the world, decoded through the game's schema and verified
    /// against the server's checksums.
    pub replica: Replica,
    /// Sequence number of the last input sent.
    pub seq: u32,
    /// The newest snapshot tick applied, and whether it has been acknowledged yet.
    applied: Option<(Tick, bool)>,
    /// WebSocket payload bytes received.
    pub bytes_down: u64,
    /// WebSocket payload bytes sent.
    pub bytes_up: u64,
    last_error: Option<(u16, String)>,
    buf: Vec<u8>,
    /// Where and how it connected, to resume there.
    url: String,
    opts: ConnectOptions,
    /// Reliable events: ours until the server has them, and how far we took the server's.
    pub events: ClientEvents,
    /// Applies and verifies snapshots (the default), or only reads their headers.
    verify: bool,
    /// When to send inputs, from the server's reports on how early they arrive.
    pub input_clock: InputClock,
}

/// A client's reliable events (see `docs/PROTOCOL.md`, "Events").
#[derive(Debug, Default)]
pub struct ClientEvents {
    /// Events sent and not yet acknowledged, with their sequence numbers.
    out: VecDeque<(u32, EventRecord)>,
    /// Sequence number of the newest event sent.
    last_out: u32,
    /// The newest server event taken.
    pub taken: u32,
    /// Server events taken since the last acknowledgement sent.
    ack_owed: bool,
    /// Events sent (the first time).
    pub sent: u64,
    /// Server events taken.
    pub received: u64,
    /// Server events that never arrived (gaps in the sequence) or arrived twice: must stay 0.
    pub lost: u64,
}

/// Most bytes tungstenite asks the socket for in one read (and zero-fills before it).
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Most of its own events a client keeps unacknowledged.
pub const MAX_UNACKED_EVENTS: usize = 256;

/// How [`Client::reconnect`] retries: `tries` attempts, waiting `first_backoff` before the
/// second and doubling up to `max_backoff`, each wait with up to a quarter added at random so
/// that clients dropped together do not come back in lockstep.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Attempts at most (at least 1).
    pub tries: u32,
    /// Wait before the second attempt.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            tries: 6,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(3),
        }
    }
}

impl Client {
    /// Connects to `url` (`ws://host:port/ws`), says hello as `name`, and waits for the welcome.
    pub async fn connect(url: &str, name: &str) -> Result<Client, ClientError> {
        Client::connect_with(url, name, &ConnectOptions::default()).await
    }

    /// [`Client::connect`] with options (TLS, socket buffer).
    pub async fn connect_with(
        url: &str,
        name: &str,
        opts: &ConnectOptions,
    ) -> Result<Client, ClientError> {
        let (ws, _) = open(url, opts).await?;
        let mut client = Client::from_ws(ws);
        client.url = url.to_owned();
        client.opts = opts.clone();
        client
            .send(&ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                name: name.to_owned(),
                room: opts.room.clone(),
            })
            .await?;
        match client.next_server_msg().await? {
            ServerMsg::Welcome(w) => {
                client.replica = Replica::new(Arc::new(w.schema.clone()));
                client.input_clock = InputClock::new(w.tick_rate_hz);
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

    /// A client on an open WebSocket that has said nothing yet and has no welcome (for tests
    /// that speak first themselves; [`Client::connect`] is the normal way in).
    #[must_use]
    pub fn from_ws(ws: Ws) -> Client {
        Client {
            ws,
            welcome: Welcome {
                version: 0,
                player: NetId(0),
                tick_rate_hz: 0,
                tick: Tick(0),
                room: String::new(),
                resume: String::new(),
                events_received: 0,
                visibility: tickwire_protocol::Visibility::Global,
                schema: GameSchema::default(),
                statics: Vec::new(),
            },
            replica: Replica::new(Arc::new(GameSchema::default())),
            seq: 0,
            applied: None,
            bytes_down: 0,
            bytes_up: 0,
            last_error: None,
            buf: Vec::new(),
            url: String::new(),
            opts: ConnectOptions::default(),
            events: ClientEvents::default(),
            verify: true,
            input_clock: InputClock::new(30),
        }
    }

    /// Sends a game event of type `E` (one of the schema's `client_events`), reliably: it is
    /// kept until the server acknowledges it and sent again after a resume. Returns its
    /// sequence number.
    ///
    /// # Errors
    /// `E` is not a client event of the game, [`MAX_UNACKED_EVENTS`] are unacknowledged, or
    /// the connection failed.
    pub async fn send_event<E: Replicate>(&mut self, event: &E) -> Result<u32, ClientError> {
        let mut words = Vec::new();
        event.write(&mut words);
        self.send_event_words(E::NAME, words).await
    }

    /// [`Client::send_event`] with the type's name and its words.
    ///
    /// # Errors
    /// As [`Client::send_event`].
    pub async fn send_event_words(
        &mut self,
        name: &str,
        words: Vec<i64>,
    ) -> Result<u32, ClientError> {
        let kind = self
            .welcome
            .schema
            .client_event_index(name)
            .ok_or_else(|| ClientError::Events(format!("{name} is not a client event")))?;
        if self.events.out.len() >= MAX_UNACKED_EVENTS {
            return Err(ClientError::Events(format!(
                "{MAX_UNACKED_EVENTS} events unacknowledged"
            )));
        }
        let record = EventRecord {
            kind: u16::try_from(kind).unwrap_or(u16::MAX),
            words,
        };
        let probe = EventsMsg {
            ack: 0,
            first: 1,
            events: vec![record.clone()],
        };
        if !fits(&probe) {
            return Err(ClientError::Events(format!(
                "a {name} event is larger than a client message may be"
            )));
        }
        self.events.last_out += 1;
        let seq = self.events.last_out;
        self.events.out.push_back((seq, record.clone()));
        self.events.sent += 1;
        self.events.ack_owed = false;
        let ack = self.events.taken;
        self.send(&ClientMsg::Events(EventsMsg {
            ack,
            first: seq,
            events: vec![record],
        }))
        .await?;
        Ok(seq)
    }

    /// Acknowledges the server events taken, if that is owed, in an `Events` message of its
    /// own (for a client that sends no inputs: otherwise the acknowledgement rides on the next
    /// input, [`Client::send_input`]).
    pub async fn flush_event_ack(&mut self) -> Result<(), ClientError> {
        if let Some(msg) = self.owed_event_ack() {
            self.send(&msg).await?;
        }
        Ok(())
    }

    /// The `Events` message that acknowledges the server events taken, if that is owed; taking
    /// it clears the debt.
    fn owed_event_ack(&mut self) -> Option<ClientMsg> {
        if !std::mem::take(&mut self.events.ack_owed) {
            return None;
        }
        Some(ClientMsg::Events(EventsMsg {
            ack: self.events.taken,
            first: self.events.last_out + 1,
            events: Vec::new(),
        }))
    }

    /// Takes a server events message: frees ours it acknowledges, and returns the events that
    /// come next in order (counting any gap or repeat as lost).
    fn take_events(&mut self, msg: EventsMsg) -> Vec<(u32, EventRecord)> {
        let e = &mut self.events;
        while e.out.front().is_some_and(|(seq, _)| *seq <= msg.ack) {
            e.out.pop_front();
        }
        let mut taken = Vec::new();
        for (i, event) in msg.events.into_iter().enumerate() {
            let seq = msg.first + u32::try_from(i).unwrap_or(u32::MAX);
            if seq <= e.taken {
                e.lost += 1;
                continue;
            }
            e.lost += u64::from(seq - e.taken - 1);
            e.taken = seq;
            e.received += 1;
            e.ack_owed = true;
            taken.push((seq, event));
        }
        taken
    }

    /// Drops the connection the way a failing network does: the TCP connection is shut down
    /// with no WebSocket close frame. [`Client::resume`] takes the player back.
    pub async fn drop_connection(&mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = self.ws.get_mut().shutdown().await;
    }

    /// Takes the player back on a new connection (after [`Client::drop_connection`], or when
    /// the connection failed): opens the URL again with `resume=1` (no join token needed), sends
    /// the welcome's resume secret and the newest tick applied, and waits for the new welcome.
    /// The replica is kept: the first snapshot is a delta against that tick while the server
    /// still holds it, else a full one that replaces the replica's state. One attempt; see
    /// [`Client::reconnect`] for retries.
    ///
    /// # Errors
    /// The connection failed, or the server refused the resume (close 4010: do not retry).
    pub async fn resume(&mut self) -> Result<(), ClientError> {
        if self.welcome.resume.is_empty() {
            return Err(ClientError::Closed {
                code: Some(tickwire_protocol::close::RESUME_REFUSED),
                reason: "the server does not resume players".into(),
            });
        }
        let sep = if self.url.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}resume=1", self.url);
        let opts = ConnectOptions {
            token: None,
            ..self.opts.clone()
        };
        let (ws, _) = open(&url, &opts).await?;
        // The old connection goes now, whatever state it was in.
        self.ws = ws;
        self.last_error = None;
        let last_tick = self.applied.map(|(tick, _)| tick);
        self.send(&ClientMsg::Resume {
            version: PROTOCOL_VERSION,
            secret: self.welcome.resume.clone(),
            last_tick,
            events_received: self.events.taken,
        })
        .await?;
        match self.next_server_msg().await? {
            ServerMsg::Welcome(w) => {
                // Its ack went with the resume: the server takes the last tick as the baseline.
                self.applied = last_tick.map(|t| (t, true));
                // Ours the server has are done; the rest go again, in order.
                let had = w.events_received;
                self.welcome = w;
                while self.events.out.front().is_some_and(|(seq, _)| *seq <= had) {
                    self.events.out.pop_front();
                }
                // As many to a message as the server's 512-byte decode limit takes.
                let mut msg: Option<EventsMsg> = None;
                let again: Vec<(u32, EventRecord)> = self.events.out.iter().cloned().collect();
                for (seq, event) in again {
                    let ack = self.events.taken;
                    let m = msg.get_or_insert_with(|| EventsMsg {
                        ack,
                        first: seq,
                        events: Vec::new(),
                    });
                    m.events.push(event.clone());
                    if !fits(m) && m.events.len() > 1 {
                        m.events.pop();
                        let full = msg.replace(EventsMsg {
                            ack,
                            first: seq,
                            events: vec![event],
                        });
                        if let Some(full) = full {
                            self.send(&ClientMsg::Events(full)).await?;
                        }
                    }
                }
                if let Some(m) = msg {
                    self.send(&ClientMsg::Events(m)).await?;
                }
                Ok(())
            }
            ServerMsg::Error { code, message } => Err(ClientError::Closed {
                code: Some(code),
                reason: message,
            }),
            other => Err(ClientError::NoWelcome(format!("{other:?}"))),
        }
    }

    /// [`Client::resume`] with retries and backoff; stops at once on a refusal the server says
    /// not to retry (4010). Returns the attempts made.
    ///
    /// # Errors
    /// The last attempt's error.
    pub async fn reconnect(&mut self, backoff: Backoff) -> Result<u32, ClientError> {
        let mut wait = backoff.first_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.resume().await {
                Ok(()) => return Ok(attempt),
                Err(e) if is_final(&e) || attempt >= backoff.tries.max(1) => return Err(e),
                Err(e) => {
                    tracing::debug!(attempt, error = %e, "resume failed; retrying");
                }
            }
            let jitter = wait.mul_f64(fastrand::f64() / 4.0);
            tokio::time::sleep(wait + jitter).await;
            wait = (wait * 2).min(backoff.max_backoff);
        }
    }

    /// Sends one message as a binary frame.
    pub async fn send(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        self.feed(msg).await?;
        self.ws.flush().await?;
        Ok(())
    }

    /// Queues a message to go with the next flush (so that several go in one write, and one
    /// TCP segment).
    async fn feed(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        self.buf.clear();
        encode_client(msg, &mut self.buf);
        self.bytes_up += self.buf.len() as u64;
        let bytes = Bytes::copy_from_slice(&self.buf);
        self.ws.feed(Message::Binary(bytes)).await?;
        Ok(())
    }

    /// Sends a raw WebSocket message (for tests of bad input).
    pub async fn send_raw(&mut self, msg: Message) -> Result<(), ClientError> {
        self.ws.send(msg).await?;
        Ok(())
    }

    /// Sends an input (its words, a record of the schema's input) with the next sequence
    /// number; the acknowledgement of the newest snapshot applied rides on it if it has not
    /// been sent yet. Returns the sequence number.
    pub async fn send_input(&mut self, words: &[i64]) -> Result<u32, ClientError> {
        let mut fields = Vec::new();
        write_record(&self.welcome.schema.input, words, &mut fields);
        self.seq += 1;
        let ack = match self.applied {
            Some((tick, false)) => {
                self.applied = Some((tick, true));
                Some(tick)
            }
            _ => None,
        };
        let seq = self.seq;
        let now = std::time::Instant::now();
        let (_, tick) = self.input_clock.next(now);
        // The owed acknowledgement of the server's events rides here too: one message a tick.
        let events_ack = if std::mem::take(&mut self.events.ack_owed) {
            self.events.taken
        } else {
            0
        };
        self.send(&ClientMsg::Input(InputMsg {
            seq,
            ack,
            tick: Some(tick),
            events_ack,
            fields,
        }))
        .await?;
        self.input_clock.sent(seq, now, tick);
        Ok(seq)
    }

    /// Sends the game's typed input ([`Client::send_input`]).
    pub async fn input<I: Replicate>(&mut self, input: &I) -> Result<u32, ClientError> {
        let mut words = Vec::new();
        input.write(&mut words);
        self.send_input(&words).await
    }

    /// Acknowledges a snapshot tick on its own (a client with no input to send; otherwise the
    /// acknowledgement rides on the next input).
    pub async fn ack(&mut self, tick: Tick) -> Result<(), ClientError> {
        if let Some((t, sent)) = &mut self.applied
            && *t == tick
        {
            *sent = true;
        }
        self.feed(&ClientMsg::Ack { tick }).await?;
        if let Some(msg) = self.owed_event_ack() {
            self.feed(&msg).await?;
        }
        self.ws.flush().await?;
        Ok(())
    }

    /// Tells the server this client dropped its replica after the snapshot of `tick` failed,
    /// so the next snapshot is full.
    pub async fn resync(&mut self, tick: Tick) -> Result<(), ClientError> {
        self.send(&ClientMsg::Resync { tick }).await
    }

    /// Waits for the next server message and processes it: snapshots are applied to the replica
    /// and verified. Cancel-safe: nothing is lost if the future is dropped before it completes.
    pub async fn recv(&mut self) -> Result<Event, ClientError> {
        let bytes = self.next_binary().await?;
        if !self.verify
            && let Some(header) = peek_snapshot_header(&bytes)
        {
            let header = header?;
            self.applied = Some((header.tick, false));
            self.input_clock.snapshot(&header);
            return Ok(Event::Counted { header });
        }
        match decode_server(&bytes)? {
            ServerMsg::Snapshot(s) => {
                let [created, changed, removed] =
                    tickwire_protocol::body::counts(&s.body).unwrap_or_default();
                let counts = SnapshotCounts {
                    created: created as usize,
                    changed: changed as usize,
                    removed: removed as usize,
                };
                self.input_clock.snapshot(&s.header);
                let outcome = self.replica.apply(&s.header, &s.body).map(|_| ());
                if outcome.is_ok() {
                    self.applied = Some((s.header.tick, false));
                }
                Ok(Event::Snapshot {
                    header: s.header,
                    counts,
                    outcome,
                })
            }
            ServerMsg::Pong { nonce, tick } => Ok(Event::Pong { nonce, tick }),
            ServerMsg::Events(msg) => Ok(Event::Events(self.take_events(msg))),
            ServerMsg::Error { code, message } => {
                self.last_error = Some((code, message.clone()));
                Ok(Event::Error { code, message })
            }
            ServerMsg::Welcome(_) => Err(ClientError::NoWelcome("a second welcome".into())),
        }
    }

    /// Receives until the next snapshot that applies (or is counted, when the client does not
    /// verify), acks it and returns its header. Snapshots that fail to apply are returned as
    /// errors.
    pub async fn next_snapshot(&mut self) -> Result<SnapshotHeader, ClientError> {
        loop {
            match self.recv().await? {
                Event::Snapshot {
                    header, outcome, ..
                } => match outcome {
                    Ok(()) => {
                        self.ack(header.tick).await?;
                        return Ok(header);
                    }
                    Err(e) => return Err(e.into()),
                },
                Event::Counted { header } => {
                    self.ack(header.tick).await?;
                    return Ok(header);
                }
                Event::Pong { .. } | Event::Events(_) | Event::Error { .. } => {}
            }
        }
    }

    /// Whether snapshots are applied to the replica and verified against the server's
    /// checksum (`true`, the default), or only their headers read and acknowledged (`false`):
    /// [`Client::recv`] then returns [`Event::Counted`] for each, the replica stays empty, and
    /// the client costs little more than its socket. For load generators that sample
    /// verification (`tickwire-bots --verify K`); a game client keeps it on.
    pub fn set_verify(&mut self, verify: bool) {
        self.verify = verify;
    }

    /// When the next input should be sent so that it reaches the server a small margin before
    /// the tick that applies it ([`InputClock`]): a client sending one input per tick sends
    /// each at this moment. [`Client::send_input`] names that tick.
    #[must_use]
    pub fn next_input_at(&self) -> std::time::Instant {
        self.input_clock.next(std::time::Instant::now()).0
    }

    /// Whether snapshots are applied and verified ([`Client::set_verify`]).
    #[must_use]
    pub fn verifies(&self) -> bool {
        self.verify
    }

    /// Component `C` of this client's own player, as the replica sees it.
    #[must_use]
    pub fn own<C: Replicate>(&self) -> Option<C> {
        self.replica.get::<C>(self.welcome.player)
    }

    /// `"global"` or `"aoi"`, as the server announced.
    #[must_use]
    pub fn mode(&self) -> &'static str {
        match self.welcome.visibility {
            tickwire_protocol::Visibility::Global => "global",
            tickwire_protocol::Visibility::Aoi { .. } => "aoi",
        }
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

    /// Reads one server message without processing it (for tests and slow readers).
    pub async fn recv_raw(&mut self) -> Result<ServerMsg, ClientError> {
        self.next_server_msg().await
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
        let bytes = self.next_binary().await?;
        Ok(decode_server(&bytes)?)
    }

    /// The next binary message's payload (pings are answered by the WebSocket layer).
    async fn next_binary(&mut self) -> Result<Bytes, ClientError> {
        loop {
            let Some(msg) = self.ws.next().await else {
                return Err(self.closed_error(None));
            };
            match msg? {
                Message::Binary(bytes) => {
                    self.bytes_down += bytes.len() as u64;
                    return Ok(bytes);
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
