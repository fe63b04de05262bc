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

/// Starts a server with `config`.
pub async fn start(config: Config) -> Server {
    Server::start(config).await.expect("server starts")
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
