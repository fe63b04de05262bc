//! Signed join tokens over real sockets: a server with `join_token_public_key` set refuses
//! upgrades without a valid, unused token for its game, each with an HTTP status and the
//! reason, and accepts one in the query string or as a subprotocol; bots mint their own.

mod common;

use common::*;
use std::sync::Arc;
use std::time::Duration;
use tickwire_bots::client::ConnectOptions;
use tickwire_bots::swarm::TokenMinter;
use tickwire_bots::{Client, SwarmConfig, run_swarm};
use tickwire_server::token::{TokenSigner, unix_now};
use tickwire_server::{Config, Server};
use tokio::io::AsyncWriteExt;

fn signer() -> TokenSigner {
    TokenSigner::from_key_text(&TokenSigner::generate().expect("a key")).expect("reads back")
}

async fn token_server(signer: &TokenSigner) -> Server {
    start(Config {
        join_token_public_key: signer.public_key(),
        ..test_config()
    })
    .await
}

/// Sends an upgrade request for `target` with `extra` header lines, expecting a refusal;
/// returns the status and the whole response (the server closes after it).
async fn refusal(server: &Server, target: &str, extra: &str) -> (u16, String) {
    let addr = server.local_addr();
    let mut tcp = bounded("connect", tokio::net::TcpStream::connect(addr))
        .await
        .expect("tcp connect");
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    read_response(&mut tcp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_get_a_status_and_a_reason() {
    let s = signer();
    let server = token_server(&s).await;
    let game = "arena";
    let now = unix_now();
    let cases = [
        ("/ws".to_owned(), 401, "join token is required"),
        ("/ws?token=%%%".to_owned(), 400, "malformed"),
        (
            format!(
                "/ws?token={}",
                signer().mint("p", game, now + 60).expect("mints")
            ),
            401,
            "signature",
        ),
        (
            format!("/ws?token={}", s.mint("p", game, now - 5).expect("mints")),
            401,
            "expired",
        ),
        (
            format!(
                "/ws?token={}",
                s.mint("p", game, now + 3600).expect("mints")
            ),
            401,
            "300 s ahead",
        ),
        (
            format!(
                "/ws?token={}",
                s.mint("p", "whiteboard", now + 60).expect("mints")
            ),
            403,
            "this server runs \"arena\"",
        ),
    ];
    for (target, status, reason) in &cases {
        let (got, text) = refusal(&server, target, "").await;
        assert_eq!(got, *status, "{target}: {text}");
        assert!(text.contains(reason), "{target}: {text}");
    }
    assert_eq!(
        server.stats().token_refusals.get(),
        cases.len() as u64,
        "each refusal counted"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_accepted_once_in_the_query_or_as_a_subprotocol() {
    let s = signer();
    let server = token_server(&s).await;
    let url = server.ws_url();
    let token = s.mint("alice", "arena", unix_now() + 60).expect("mints");

    // In the query string.
    let opts = ConnectOptions {
        token: Some(token.clone()),
        ..ConnectOptions::default()
    };
    let mut c = bounded("connect", Client::connect_with(&url, "alice", &opts))
        .await
        .expect("a good token is accepted");
    snapshots(&mut c, 5).await;
    c.close().await.expect("closes");

    // The same token again: refused.
    let (status, text) = refusal(&server, &format!("/ws?token={token}"), "").await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("already used"), "{text}");

    // As a subprotocol beside the format, as a browser sends it; only the format is echoed.
    let second = s.mint("alice", "arena", unix_now() + 60).expect("mints");
    let opts = ConnectOptions {
        subprotocols: vec!["tickwire.v1".into(), format!("tickwire.token.{second}")],
        ..ConnectOptions::default()
    };
    let (_ws, protocol) = bounded("open", tickwire_bots::client::open(&url, &opts))
        .await
        .expect("upgraded");
    assert_eq!(protocol.as_deref(), Some("tickwire.v1"));
    // A token subprotocol with no format is refused (a browser would fail the handshake).
    let third = s.mint("alice", "arena", unix_now() + 60).expect("mints");
    let (status, text) = refusal(
        &server,
        "/ws",
        &format!("Sec-WebSocket-Protocol: tickwire.token.{third}\r\n"),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_token_admits_its_room_only() {
    use tickwire_protocol::{RoomRequest, close};
    let s = signer();
    let server = token_server(&s).await;
    let url = server.ws_url();
    // A room, made by a player with a game token.
    let opts = ConnectOptions {
        token: Some(s.mint("host", "arena", unix_now() + 60).expect("mints")),
        room: RoomRequest::Create {
            game: String::new(),
            props: vec![("private".into(), "yes".into())],
        },
        ..ConnectOptions::default()
    };
    let host = bounded("connect", Client::connect_with(&url, "host", &opts))
        .await
        .expect("a game token admits any room of the game");
    let room = host.welcome.room.clone();
    let ticket = |player: &str, room: &str| ConnectOptions {
        token: Some(
            s.mint_scoped(player, "arena", Some(room), unix_now() + 60)
                .expect("mints"),
        ),
        ..ConnectOptions::default()
    };
    // A token for this room, used for another room or for join-or-create: 4009.
    let wrong = [
        RoomRequest::Join {
            id: "elsewhere".into(),
        },
        RoomRequest::default(),
        RoomRequest::Create {
            game: String::new(),
            props: Vec::new(),
        },
    ];
    for (i, request) in wrong.into_iter().enumerate() {
        let opts = ConnectOptions {
            room: request,
            ..ticket(&format!("guest-{i}"), &room)
        };
        match bounded("connect", Client::connect_with(&url, "guest", &opts)).await {
            Err(e) => {
                assert!(is_close(&e, close::NOT_PERMITTED), "{e}");
                assert!(e.to_string().contains(&room), "names the room: {e}");
            }
            Ok(_) => panic!("a room token admitted another room"),
        }
    }
    // The same kind of token, joining the room by id: welcomed, into that room.
    let opts = ConnectOptions {
        room: RoomRequest::Join { id: room.clone() },
        ..ticket("guest", &room)
    };
    let mut guest = bounded("connect", Client::connect_with(&url, "guest", &opts))
        .await
        .expect("the room's token admits it");
    assert_eq!(guest.welcome.room, room);
    snapshots(&mut guest, 3).await;
    assert_eq!(server.stats().room_refusals.get(), 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_mint_their_own_tokens() {
    let s = signer();
    let server = token_server(&s).await;
    let minter = Arc::new(s);
    let report = bounded(
        "swarm",
        run_swarm(SwarmConfig {
            url: server.ws_url(),
            bots: 6,
            duration: Duration::from_secs(2),
            ramp_per_s: 100.0,
            behaviours: tickwire::behaviours(),
            tokens: Some(TokenMinter(Arc::new(move |name: &str| {
                minter
                    .mint(name, "arena", unix_now() + 60)
                    .expect("bot names fit a token")
            }))),
            ..SwarmConfig::default()
        }),
    )
    .await;
    assert_eq!(report.connected, 6, "{}", report.summary());
    assert_eq!(report.failed, 0, "{}", report.summary());
    assert_eq!(report.desyncs, 0, "{}", report.summary());
    assert_eq!(server.stats().token_refusals.get(), 0);
    server.shutdown().await;
}

#[test]
fn the_token_command_makes_keys_and_mints_tokens() {
    use std::process::Command;
    let dir = std::env::temp_dir().join(format!("tickwire-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key = dir.join("key");
    let _ = std::fs::remove_file(&key);
    let bin = env!("CARGO_BIN_EXE_tickwire-server");
    let out = Command::new(bin)
        .args(["token", "new-key", "--out"])
        .arg(&key)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8(out.stdout).expect("utf-8");
    let public = line
        .trim()
        .strip_prefix("join_token_public_key = \"")
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("a config line: {line}"));
    // It refuses to overwrite a key.
    let again = Command::new(bin)
        .args(["token", "new-key", "--out"])
        .arg(&key)
        .output()
        .expect("runs");
    assert!(!again.status.success());
    let out = Command::new(bin)
        .args(["token", "mint", "--player", "carol", "--ttl", "30", "--key"])
        .arg(&key)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).expect("utf-8");
    let verifier =
        tickwire_server::token::TokenVerifier::new(public, 300, 10).expect("the printed key");
    let claims = verifier
        .check(token.trim(), "arena", unix_now())
        .expect("the minted token verifies");
    assert_eq!(claims.player, "carol");
    let _ = std::fs::remove_dir_all(&dir);
}
