//! Bad input over real sockets: each case gets a clear answer, nothing panics, and a bystander
//! session keeps receiving verified snapshots throughout.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::SinkExt;
use tickwire_bots::Client;
use tickwire_protocol::codec::encode_client;
use tickwire_protocol::{ClientMsg, Input, close};
use tickwire_server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

type Raw =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw(server: &Server) -> Raw {
    let (ws, _) = bounded(
        "raw connect",
        tokio_tungstenite::connect_async(server.ws_url()),
    )
    .await
    .expect("upgrade succeeds");
    ws
}

fn encoded(msg: &ClientMsg) -> Message {
    let mut buf = Vec::new();
    encode_client(msg, &mut buf);
    Message::Binary(Bytes::from(buf))
}

async fn hello(ws: &mut Raw) {
    ws.send(encoded(&ClientMsg::Hello {
        version: tickwire_protocol::PROTOCOL_VERSION,
        name: "raw".into(),
    }))
    .await
    .expect("send hello");
}

/// Receives snapshots until one acknowledges input `seq`.
async fn until_input_applied(c: &mut Client, seq: u32) -> tickwire_protocol::SnapshotHeader {
    bounded("input applied", async {
        loop {
            let h = c.next_snapshot().await.expect("applies");
            if h.last_input_seq == seq {
                return h;
            }
        }
    })
    .await
}

/// A bystander that must keep receiving verified snapshots while others misbehave.
async fn bystander_keeps_going(b: &mut Client) {
    let before = b.replica.latest().expect("has a view").tick;
    let h = snapshots(b, 5).await;
    assert!(h.tick > before);
}

#[tokio::test]
async fn undecodable_binary_closes_1007_and_others_continue() {
    let server = start(test_config()).await;
    let mut bystander = connect(&server, "bystander").await;
    snapshots(&mut bystander, 2).await;

    let mut ws = raw(&server).await;
    hello(&mut ws).await;
    ws.send(Message::Binary(Bytes::from_static(&[
        0xFF, 0xFE, 0xFD, 0x00,
    ])))
    .await
    .expect("send garbage");
    let (code, reason, error) = close_frame(&mut ws).await;
    assert_eq!(code, close::INVALID_PAYLOAD);
    assert!(reason.starts_with("undecodable message"), "{reason}");
    assert!(error.is_some(), "an error message precedes the close");

    // Garbage before the hello too.
    let mut ws = raw(&server).await;
    ws.send(Message::Binary(Bytes::from_static(&[9, 9, 9])))
        .await
        .expect("send");
    assert_eq!(close_frame(&mut ws).await.0, close::INVALID_PAYLOAD);

    bystander_keeps_going(&mut bystander).await;
    assert!(server.stats().protocol_closes.get() >= 2);
    server.shutdown().await;
}

#[tokio::test]
async fn text_frame_closes_1003() {
    let server = start(test_config()).await;
    let mut bystander = connect(&server, "bystander").await;
    snapshots(&mut bystander, 2).await;

    let mut ws = raw(&server).await;
    hello(&mut ws).await;
    ws.send(Message::text("{\"hello\":1}"))
        .await
        .expect("send text");
    let (code, reason, _) = close_frame(&mut ws).await;
    assert_eq!(code, close::UNSUPPORTED_DATA);
    assert!(reason.contains("binary"), "{reason}");

    bystander_keeps_going(&mut bystander).await;
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_version_closes_4001_with_both_versions_named() {
    let server = start(test_config()).await;
    let mut ws = raw(&server).await;
    ws.send(encoded(&ClientMsg::Hello {
        version: 999,
        name: "future".into(),
    }))
    .await
    .expect("send");
    let (code, reason, _) = close_frame(&mut ws).await;
    assert_eq!(code, close::VERSION_MISMATCH);
    let ours = tickwire_protocol::PROTOCOL_VERSION.to_string();
    assert!(reason.contains("999") && reason.contains(&ours), "{reason}");
    assert_eq!(server.stats().joins.get(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn out_of_order_messages_close_4002() {
    let server = start(test_config()).await;
    // An input before any hello.
    let mut ws = raw(&server).await;
    ws.send(encoded(&ClientMsg::Input(Input::default())))
        .await
        .expect("send");
    assert_eq!(close_frame(&mut ws).await.0, close::UNEXPECTED_MESSAGE);
    // A second hello.
    let mut c = connect(&server, "twice").await;
    c.send(&ClientMsg::Hello {
        version: tickwire_protocol::PROTOCOL_VERSION,
        name: "again".into(),
    })
    .await
    .expect("send");
    let (code, reason) = close_of(&mut c).await;
    assert_eq!(code, Some(close::UNEXPECTED_MESSAGE));
    assert!(reason.contains("hello"), "{reason}");
    server.shutdown().await;
}

#[tokio::test]
async fn unfair_inputs_are_rejected_or_clamped_never_trusted() {
    let server = start(test_config()).await;
    let mut bystander = connect(&server, "bystander").await;
    let mut c = connect(&server, "cheater").await;
    snapshots(&mut c, 2).await;
    let me = c.welcome.player;
    let dt = 1.0 / f32::from(c.welcome.tick_rate_hz);
    let speed = c.welcome.arena.player_speed;
    snapshots(&mut bystander, 1).await;
    let bystander_start = *bystander.own_state().expect("own state");

    // Non-finite values: rejected, the player stays put with finite coordinates.
    let start = *c.own_state().expect("own state");
    for (i, bad) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY]
        .into_iter()
        .enumerate()
    {
        let seq = 1 + i as u32 * 3;
        for input in [
            Input {
                seq,
                move_x: bad,
                ..Input::default()
            },
            Input {
                seq: seq + 1,
                move_y: bad,
                ..Input::default()
            },
            Input {
                seq: seq + 2,
                aim: bad,
                ..Input::default()
            },
        ] {
            c.send_input(input).await.expect("send");
        }
    }
    let h = snapshots(&mut c, 6).await;
    let now = *c.own_state().expect("own state");
    assert_eq!(
        (now.x, now.y),
        (start.x, start.y),
        "non-finite input moved the player"
    );
    assert_eq!(h.last_input_seq, 0, "rejected inputs are not acknowledged");
    assert!(server.stats().inputs_rejected.get() >= 9);

    // A move vector of length 1000 is clamped to length 1: at most one speed step per tick.
    c.send_input(Input {
        seq: 100,
        move_x: 600.0,
        move_y: 800.0,
        ..Input::default()
    })
    .await
    .expect("send");
    let from = *c.own_state().expect("own state");
    let from_tick = c.replica.latest().expect("view").tick;
    let h = until_input_applied(&mut c, 100).await;
    let h2 = snapshots(&mut c, 10).await;
    let to = *c.own_state().expect("own state");
    let ticks = h2.tick.since(from_tick) as f32;
    let q = |v: u16| tickwire_protocol::quant::from_q(i32::from(v));
    let moved = ((q(to.x) - q(from.x)).powi(2) + (q(to.y) - q(from.y)).powi(2)).sqrt();
    // Each tick's step is rounded to whole position units: at most 0.36 units longer.
    assert!(
        moved <= (speed * dt + 0.4) * ticks,
        "moved {moved} in {ticks} ticks"
    );
    assert!(moved > 0.0, "a clamped input still moves");
    assert_eq!(h.last_input_seq, 100);

    // A sequence number going backwards is ignored: stop (seq 200), then a stale "move"
    // (seq 150) that must not be applied.
    c.send_input(Input {
        seq: 200,
        ..Input::default()
    })
    .await
    .expect("send");
    c.send_input(Input {
        seq: 150,
        move_x: 1.0,
        ..Input::default()
    })
    .await
    .expect("send");
    let h = until_input_applied(&mut c, 200).await;
    let still = *c.own_state().expect("own state");
    let after = snapshots(&mut c, 6).await;
    let later = *c.own_state().expect("own state");
    assert_eq!(
        after.last_input_seq, 200,
        "acknowledged sequence never goes back"
    );
    assert_eq!(
        (later.x, later.y),
        (still.x, still.y),
        "stale input was applied"
    );
    assert!(after.tick > h.tick);

    // Only its own player moved: the bystander, who sent nothing, is where it was.
    snapshot_at_least(&mut bystander, after.tick).await;
    let b = bystander.own_state().expect("own state");
    assert_eq!((b.x, b.y), (bystander_start.x, bystander_start.y));
    assert_ne!(bystander.welcome.player, me);
    server.shutdown().await;
}

#[tokio::test]
async fn other_paths_get_404_and_shutdown_closes_1001() {
    let server = start(test_config()).await;
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("tcp");
    let req = format!(
        "GET /nope HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.local_addr()
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 512];
    let n = bounded("404", tcp.read(&mut buf)).await.expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    let mut c = connect(&server, "stays").await;
    snapshots(&mut c, 2).await;
    let shutdown = tokio::spawn(server.shutdown());
    let (code, reason) = close_of(&mut c).await;
    assert_eq!(code, Some(close::GOING_AWAY));
    assert!(reason.contains("shutting down"), "{reason}");
    bounded("shutdown", shutdown).await.expect("shutdown task");
}

#[tokio::test]
async fn oversized_message_closes_1009() {
    let server = start(test_config()).await;
    let mut bystander = connect(&server, "bystander").await;
    snapshots(&mut bystander, 2).await;
    let mut ws = raw(&server).await;
    hello(&mut ws).await;
    let big = vec![0u8; tickwire_server::Config::default().max_message_bytes + 1];
    ws.send(Message::Binary(Bytes::from(big)))
        .await
        .expect("send");
    let (code, reason, _) = close_frame(&mut ws).await;
    assert_eq!(code, close::MESSAGE_TOO_BIG);
    assert!(reason.contains("exceeds"), "{reason}");
    bystander_keeps_going(&mut bystander).await;
    server.shutdown().await;
}
