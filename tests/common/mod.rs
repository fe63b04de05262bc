//! Shared helpers for the integration tests: a real server on 127.0.0.1:0 and bounded waits.

#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::future::Future;
use std::time::Duration;
use tickwire_bots::{Client, ClientError};
use tickwire_protocol::{SnapshotHeader, Tick};
use tickwire_server::{Config, Server};

/// Upper bound on any single wait in a test; reaching it fails the test instead of hanging.
pub const WAIT: Duration = Duration::from_secs(20);

/// A test configuration: any free port for the game and the admin listener, otherwise
/// defaults.
pub fn test_config() -> Config {
    Config {
        bind: "127.0.0.1:0".parse().expect("valid address"),
        admin_bind: "127.0.0.1:0".into(),
        ..Config::default()
    }
}

/// The `games` table of a config that runs the arena on the map file at `path`.
pub fn arena_map(path: std::path::PathBuf) -> toml::Table {
    let mut arena = toml::Table::new();
    arena.insert(
        "map".into(),
        toml::Value::String(path.display().to_string()),
    );
    let mut games = toml::Table::new();
    games.insert("arena".into(), toml::Value::Table(arena));
    games
}

/// Starts a server with `config`, playing the game it names (default: the arena).
pub async fn start(config: Config) -> Server {
    let game = tickwire::find(&config.game).expect("a bundled game").game;
    Server::start(config, game).await.expect("server starts")
}

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Connects a client named `name`.
pub async fn connect(server: &Server, name: &str) -> Client {
    bounded("connect", Client::connect(&server.ws_url(), name))
        .await
        .expect("client connects")
}

/// Receives and acks snapshots until one at or after `tick` applies.
pub async fn snapshot_at_least(client: &mut Client, tick: Tick) -> SnapshotHeader {
    bounded("snapshot", async {
        loop {
            let h = client.next_snapshot().await.expect("snapshot applies");
            if h.tick >= tick {
                return h;
            }
        }
    })
    .await
}

/// Receives and acks `n` snapshots, returning the last header.
pub async fn snapshots(client: &mut Client, n: usize) -> SnapshotHeader {
    bounded("snapshots", async {
        let mut last = None;
        for _ in 0..n {
            last = Some(client.next_snapshot().await.expect("snapshot applies"));
        }
        last.expect("n > 0")
    })
    .await
}

/// Reads until the server closes the connection; returns the close code and reason.
pub async fn close_of(client: &mut Client) -> (Option<u16>, String) {
    bounded("close", client.closed()).await
}

/// True if the error is a close with this code.
pub fn is_close(e: &ClientError, code: u16) -> bool {
    matches!(e, ClientError::Closed { code: Some(c), .. } if *c == code)
}

/// Reads a raw WebSocket until its close frame; returns the code, the reason, and the message of
/// the `ServerMsg::Error` that preceded it, if one was seen. Fails the test if the connection
/// ends without a close frame.
pub async fn close_frame<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
) -> (u16, String, Option<String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    use tickwire_protocol::ServerMsg;
    use tokio_tungstenite::tungstenite::Message;
    bounded("close frame", async {
        let mut error = None;
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(Some(f))) => {
                    return (u16::from(f.code), f.reason.to_string(), error);
                }
                Ok(Message::Binary(b)) => {
                    if let Ok(ServerMsg::Error { message, .. }) =
                        tickwire_protocol::codec::decode_server(&b)
                    {
                        error = Some(message);
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("connection failed before a close frame: {e}"),
            }
        }
        panic!("connection ended without a close frame");
    })
    .await
}

/// A raw TCP connection to `addr` from `source` (any port), for tests that speak HTTP and
/// WebSocket frames by hand.
pub async fn tcp_from(
    addr: std::net::SocketAddr,
    source: std::net::IpAddr,
) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::new(source, 0))
        .expect("bind the source address");
    bounded("tcp connect", socket.connect(addr))
        .await
        .expect("tcp connect")
}

/// Reads a whole HTTP response (the server closes after a refusal); returns status and text.
pub async fn read_response(tcp: &mut tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    bounded("a response", tcp.read_to_end(&mut out))
        .await
        .expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

/// A WebSocket upgrade request for `/ws` on `addr`.
pub fn raw_upgrade_request(addr: std::net::SocketAddr) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// Sends an upgrade request and reads the response head; returns the status code.
pub async fn raw_upgrade(tcp: &mut tokio::net::TcpStream, addr: std::net::SocketAddr) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(raw_upgrade_request(addr).as_bytes())
        .await
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    bounded("response head", async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before a response: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text}"))
}

/// A client-to-server (masked) frame with this opcode and payload (under 126 bytes).
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Parses server-to-client (unmasked) frames from raw bytes: (opcode, payload) pairs.
pub fn frames(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 2 {
        let op = b[0] & 0x0F;
        let (len, hdr) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => (
                usize::try_from(u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")))
                    .expect("fits"),
                10,
            ),
            n if n < 126 => (usize::from(n), 2),
            _ => break,
        };
        if b.len() < hdr + len {
            break;
        }
        out.push((op, b[hdr..hdr + len].to_vec()));
        b = &b[hdr + len..];
    }
    out
}

/// Reads an upgraded raw connection until the server closes it; returns the close frame's
/// code, or `None` if the connection ended without one.
pub async fn raw_close_code(tcp: &mut tokio::net::TcpStream) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    bounded("the server to close", async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    frames(&bytes)
        .into_iter()
        .find(|(op, _)| *op == 0x8)
        .map(|(_, p)| u16::from_be_bytes([p[0], p[1]]))
}

/// Polls `cond` every 10 ms until it holds, failing the test after [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    bounded(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// The value of one sample (`series`: its name and labels, as rendered) in Prometheus text.
///
/// # Panics
/// If the text has no such sample: the test fails, showing the text.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// GETs `path` from the admin listener; returns the status code and the body.
pub async fn get(server: &Server, path: &str) -> (u16, String) {
    let admin = server.admin_addr().expect("the admin listener is on");
    get_at(admin, path, &admin.to_string()).await
}

/// GETs `path` from `addr` with this `Host`; returns the status code and the body.
pub async fn get_at(addr: std::net::SocketAddr, path: &str, host: &str) -> (u16, String) {
    request_with_host(addr, "GET", path, host).await
}

/// Sends a `method` request for `path` to `addr` (its `Host`) with no body, and reads the whole
/// response; returns the status code and the body.
pub async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    request_with_host(addr, method, path, &addr.to_string()).await
}

async fn request_with_host(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    host: &str,
) -> (u16, String) {
    use tokio::io::AsyncWriteExt;
    let mut tcp = bounded("tcp", tokio::net::TcpStream::connect(addr))
        .await
        .expect("tcp");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    let (status, text) = read_response(&mut tcp).await;
    let (_, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an incomplete response: {text:?}"));
    (status, body.to_owned())
}
