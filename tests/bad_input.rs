//! Bad input over real sockets: each case gets a clear answer, nothing panics, and a bystander
//! session keeps receiving verified snapshots throughout.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::SinkExt;
use tickwire_arena::components::{ArenaInput, Position, Rules, world};
use tickwire_bots::Client;
use tickwire_protocol::body::write_record;
use tickwire_protocol::codec::encode_client;
use tickwire_protocol::{ClientMsg, InputMsg, Replicate, close};
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
        room: tickwire_protocol::RoomRequest::default(),
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
        room: tickwire_protocol::RoomRequest::default(),
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
    ws.send(encoded(&ClientMsg::Input(InputMsg::default())))
        .await
        .expect("send");
    assert_eq!(close_frame(&mut ws).await.0, close::UNEXPECTED_MESSAGE);
    // A second hello.
    let mut c = connect(&server, "twice").await;
    c.send(&ClientMsg::Hello {
        version: tickwire_protocol::PROTOCOL_VERSION,
        name: "again".into(),
        room: tickwire_protocol::RoomRequest::default(),
    })
    .await
    .expect("send");
    let (code, reason) = close_of(&mut c).await;
    assert_eq!(code, Some(close::UNEXPECTED_MESSAGE));
    assert!(reason.contains("hello"), "{reason}");
    server.shutdown().await;
}

/// Sends an input message with raw fields and a chosen sequence number.
async fn send_raw_input(c: &mut Client, seq: u32, fields: Vec<u8>) {
    c.send(&ClientMsg::Input(InputMsg {
        seq,
        ack: None,
        tick: None,
        events_ack: 0,
        fields,
    }))
    .await
    .expect("send");
}

/// The fields of an arena input.
fn arena_fields(c: &Client, input: ArenaInput) -> Vec<u8> {
    let mut words = Vec::new();
    input.write(&mut words);
    let mut out = Vec::new();
    write_record(&c.welcome.schema.input, &words, &mut out);
    out
}

#[tokio::test]
async fn unfair_inputs_are_rejected_or_clamped_never_trusted() {
    let server = start(test_config()).await;
    let mut bystander = connect(&server, "bystander").await;
    let mut c = connect(&server, "cheater").await;
    snapshots(&mut c, 2).await;
    let me = c.welcome.player;
    let dt = 1.0 / f32::from(c.welcome.tick_rate_hz);
    let rules: Rules = c.welcome.statics::<Rules>().next().expect("rules");
    snapshots(&mut bystander, 1).await;
    let bystander_start = bystander.own::<Position>().expect("own position");

    // Fields that do not fit the schema: too short, too long, a value out of range (move_x
    // is -127..=127 in 8 bits, so 0xFF is 128). Rejected; the player stays put.
    let start = c.own::<Position>().expect("own position");
    let good = arena_fields(&c, ArenaInput::new(glam::Vec2::X, 0.0, false));
    let mut long = good.clone();
    long.push(0);
    let mut out_of_range = good.clone();
    out_of_range[0] = 0xFF;
    for (i, fields) in [vec![], good[..2].to_vec(), long, out_of_range]
        .into_iter()
        .enumerate()
    {
        send_raw_input(&mut c, 1 + i as u32, fields).await;
    }
    let h = snapshots(&mut c, 6).await;
    assert_eq!(
        c.own::<Position>(),
        Some(start),
        "a malformed input moved the player"
    );
    assert_eq!(h.last_input_seq, 0, "rejected inputs are not acknowledged");
    assert!(server.stats().inputs_rejected.get() >= 4);

    // The longest move vector the schema allows (127, 127: length 1.41) is scaled to
    // length 1: at most one speed step per tick.
    let corner = ArenaInput {
        move_x: 127,
        move_y: 127,
        aim: 0,
        fire: false,
    };
    let fields = arena_fields(&c, corner);
    send_raw_input(&mut c, 100, fields).await;
    let from = c.own::<Position>().expect("own position");
    let from_tick = c.replica.latest().expect("view").tick;
    let h = until_input_applied(&mut c, 100).await;
    let h2 = snapshots(&mut c, 10).await;
    let to = c.own::<Position>().expect("own position");
    let ticks = h2.tick.since(from_tick) as f32;
    let moved = world(to.0).distance(world(from.0));
    // Each tick's step is rounded to whole position units: at most 0.36 units longer.
    assert!(
        moved <= (rules.player_speed * dt + 0.4) * ticks,
        "moved {moved} in {ticks} ticks"
    );
    assert!(moved > 0.0, "a clamped input still moves");
    assert_eq!(h.last_input_seq, 100);

    // A sequence number going backwards is ignored: stop (seq 200), then a stale "move"
    // (seq 150) that must not be applied.
    let stop = arena_fields(&c, ArenaInput::default());
    send_raw_input(&mut c, 200, stop).await;
    let go = arena_fields(&c, ArenaInput::new(glam::Vec2::X, 0.0, false));
    send_raw_input(&mut c, 150, go).await;
    let h = until_input_applied(&mut c, 200).await;
    let still = c.own::<Position>().expect("own position");
    let after = snapshots(&mut c, 6).await;
    assert_eq!(
        after.last_input_seq, 200,
        "acknowledged sequence never goes back"
    );
    assert_eq!(c.own::<Position>(), Some(still), "stale input was applied");
    assert!(after.tick > h.tick);

    // Only its own player moved: the bystander, who sent nothing, is where it was.
    snapshot_at_least(&mut bystander, after.tick).await;
    assert_eq!(bystander.own::<Position>(), Some(bystander_start));
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
