//! The network edge over real sockets: routing, origin policy, subprotocols, limits, the
//! connection cap, keepalive, rate limits, slow clients, shutdown and TLS. Each test starts its
//! own server on 127.0.0.1:0.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tickwire_arena::components::ArenaInput;
use tickwire_bots::client::{ConnectOptions, open, tls_config_with_ca};
use tickwire_bots::{Client, ClientError, SwarmConfig, run_swarm};
use tickwire_protocol::codec::{
    decode_server, decode_server_json, encode_client, encode_client_json,
};
use tickwire_protocol::{ClientMsg, PROTOCOL_VERSION, ServerMsg, close};
use tickwire_server::{Config, Server, VisibilityMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Sends a raw HTTP request and returns the whole response (the server closes after refusals).
async fn http(server: &Server, request: &str) -> String {
    let mut tcp = TcpStream::connect(server.local_addr()).await.expect("tcp");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    bounded("http response", tcp.read_to_end(&mut out))
        .await
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

fn upgrade_request(server: &Server, extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n",
        server.local_addr()
    )
}

#[tokio::test]
async fn routing_gives_404_and_426_and_upgrades_only_ws() {
    let server = start(test_config()).await;
    let host = server.local_addr();
    let r = http(
        &server,
        &format!("GET /no-such-page HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = http(
        &server,
        &format!("GET /ws HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 426"), "{r}");
    assert!(r.contains("WebSocket"), "{r}");
    let r = http(
        &server,
        &format!("POST /ws HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    // And a real client still upgrades.
    let mut c = connect(&server, "ok").await;
    snapshots(&mut c, 1).await;
    assert!(server.stats().http_refusals.get() >= 3);
    server.shutdown().await;
}

#[tokio::test]
async fn the_browser_client_is_served_on_the_same_port() {
    let server = start(test_config()).await;
    let host = server.local_addr();
    let page = http(&server, &format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("text/html") && page.contains("<canvas"),
        "{page}"
    );
    for (path, needle) in [
        ("/app.js", "new TickwireClient("),
        ("/sdk/tickwire.js", "export function decodeServer"),
    ] {
        let r = http(
            &server,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        )
        .await;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.contains("text/javascript"),
            "{path}: {r}"
        );
        assert!(r.contains(needle), "{path}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn origin_policy_refuses_foreign_sites_with_403() {
    let server = start(Config {
        allowed_origins: vec!["https://game.example".into()],
        ..test_config()
    })
    .await;
    let r = http(
        &server,
        &upgrade_request(&server, "Origin: https://evil.example\r\n"),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    for origin in [
        None,
        Some(format!("http://{}", server.local_addr())),
        Some("https://game.example".to_string()),
    ] {
        let opts = ConnectOptions {
            origin: origin.clone(),
            ..Default::default()
        };
        let mut c = bounded(
            "connect",
            Client::connect_with(&server.ws_url(), "o", &opts),
        )
        .await
        .unwrap_or_else(|e| panic!("origin {origin:?} refused: {e}"));
        snapshots(&mut c, 1).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn subprotocols_binary_json_and_unknown() {
    let server = start(test_config()).await;
    // Only unknown ones offered: 400 naming the supported ones.
    let r = http(
        &server,
        &upgrade_request(&server, "Sec-WebSocket-Protocol: mqtt, chat\r\n"),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(
        r.contains("tickwire.v1") && r.contains("tickwire.v1.json"),
        "{r}"
    );

    // Binary by name.
    let opts = ConnectOptions {
        subprotocols: vec!["tickwire.v1".into()],
        ..Default::default()
    };
    let mut c = bounded(
        "connect",
        Client::connect_with(&server.ws_url(), "bin", &opts),
    )
    .await
    .expect("binary subprotocol");
    snapshots(&mut c, 1).await;

    // JSON: the same session in text frames.
    let opts = ConnectOptions {
        subprotocols: vec!["chat".into(), "tickwire.v1.json".into()],
        ..Default::default()
    };
    let (mut ws, protocol) = bounded("open", open(&server.ws_url(), &opts))
        .await
        .expect("open");
    assert_eq!(protocol.as_deref(), Some("tickwire.v1.json"));
    let hello = ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        name: "json".into(),
        room: tickwire_protocol::RoomRequest::default(),
    };
    ws.send(Message::text(encode_client_json(&hello)))
        .await
        .expect("send");
    let mut welcomed = None;
    let mut welcome = None;
    let mut snapshot = None;
    bounded("json welcome and snapshot", async {
        while snapshot.is_none() {
            let Some(Ok(Message::Text(t))) = ws.next().await else {
                panic!("expected text frames");
            };
            match decode_server_json(&t).expect("valid JSON message") {
                ServerMsg::Welcome(w) => {
                    welcomed = Some(w.player);
                    welcome = Some(w);
                }
                ServerMsg::Snapshot(s) => snapshot = Some(s),
                _ => {}
            }
        }
    })
    .await;
    let me = welcomed.expect("welcome before snapshots");
    let s = snapshot.expect("snapshot");
    // The body is opaque bytes in JSON too; decoded against the schema it holds the player.
    let welcome = welcome.expect("welcome");
    let mut replica = tickwire_protocol::Replica::new(std::sync::Arc::new(welcome.schema));
    let view = replica
        .apply(&s.header, &s.body)
        .expect("the full snapshot verifies");
    assert!(view.entities.contains_key(&me));
    let ack = ClientMsg::Ack {
        tick: s.header.tick,
    };
    ws.send(Message::text(encode_client_json(&ack)))
        .await
        .expect("send ack");
    // A binary frame on a JSON session is refused with 1003.
    let mut buf = Vec::new();
    encode_client(&ClientMsg::Ping { nonce: 1 }, &mut buf);
    ws.send(Message::Binary(Bytes::from(buf)))
        .await
        .expect("send");
    let code = close_frame(&mut ws).await.0;
    assert_eq!(code, close::UNSUPPORTED_DATA);
    server.shutdown().await;
}

#[tokio::test]
async fn connection_cap_closes_1013_server_full() {
    let server = start(Config {
        max_clients: 2,
        ..test_config()
    })
    .await;
    let a = connect(&server, "a").await;
    let _b = connect(&server, "b").await;
    let err = bounded("third", Client::connect(&server.ws_url(), "c"))
        .await
        .err()
        .expect("third client refused");
    assert!(is_close(&err, close::TRY_AGAIN_LATER), "{err}");
    assert!(err.to_string().contains("server full"), "{err}");
    // A slot frees when a player leaves.
    a.close().await.expect("close");
    let mut d = bounded("retry", async {
        loop {
            match Client::connect(&server.ws_url(), "d").await {
                Ok(c) => return c,
                Err(e) if is_close(&e, close::TRY_AGAIN_LATER) => tokio::task::yield_now().await,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    snapshots(&mut d, 1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn slow_handshake_is_dropped() {
    let server = start(Config {
        handshake_timeout_ms: 300,
        ..test_config()
    })
    .await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.expect("tcp");
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    // The server hangs up; the bound here is far above the configured 300 ms.
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("dropped within the handshake timeout")
        .unwrap_or(0);
    assert_eq!(n, 0, "no response to an incomplete request, just a close");
    server.shutdown().await;
}

#[tokio::test]
async fn silent_peer_is_pinged_then_closed_4004_and_its_player_removed() {
    let server = start(Config {
        ping_interval_ms: 100,
        idle_timeout_ms: 500,
        // A silent peer may be a dropped one: its player is held this long for a resume.
        resume_grace_ms: 300,
        // The bystander must see the silent player wherever it spawns.
        visibility: VisibilityMode::Global,
        ..test_config()
    })
    .await;
    let mut bystander = connect(&server, "bystander").await;
    snapshots(&mut bystander, 1).await;

    // A raw client: upgrade, one masked hello frame, then total silence (like a half-open peer).
    let mut tcp = TcpStream::connect(server.local_addr()).await.expect("tcp");
    tcp.write_all(upgrade_request(&server, "").as_bytes())
        .await
        .expect("write");
    let mut hello = Vec::new();
    encode_client(
        &ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            name: "silent".into(),
            room: tickwire_protocol::RoomRequest::default(),
        },
        &mut hello,
    );
    let mut frame = vec![
        0x82,
        0x80 | u8::try_from(hello.len()).expect("small"),
        0,
        0,
        0,
        0,
    ];
    frame.extend_from_slice(&hello); // A zero mask leaves the payload as is.
    tcp.write_all(&frame).await.expect("write hello");

    // The bystander sees the silent player join and then be removed.
    let mut silent_id = None;
    bounded("silent player removed", async {
        loop {
            bystander.next_snapshot().await.expect("applies");
            let view = bystander.replica.latest().expect("view");
            let others: Vec<_> = view
                .entities
                .iter()
                .filter(|(id, s)| {
                    let own = view.entities.get(&bystander.welcome.player).map(|o| o.mask);
                    **id != bystander.welcome.player && Some(s.mask) == own
                })
                .map(|(id, _)| *id)
                .collect();
            match (silent_id, others.first()) {
                (None, Some(id)) => silent_id = Some(*id),
                (Some(id), _) if !others.contains(&id) => return,
                _ => {}
            }
        }
    })
    .await;

    // What the silent client was sent: pings, then an error message and close 4004.
    let mut bytes = Vec::new();
    bounded("server hangs up", tcp.read_to_end(&mut bytes))
        .await
        .expect("read");
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("101 response")
        + 4;
    assert!(bytes.starts_with(b"HTTP/1.1 101"));
    let fs = frames(&bytes[head_end..]);
    assert!(fs.iter().any(|(op, _)| *op == 0x9), "server pinged");
    let close_frame = fs.iter().find(|(op, _)| *op == 0x8).expect("close frame");
    assert_eq!(
        u16::from_be_bytes([close_frame.1[0], close_frame.1[1]]),
        close::IDLE_TIMEOUT
    );
    assert!(String::from_utf8_lossy(&close_frame.1[2..]).contains("idle timeout"));
    server.shutdown().await;
}

#[tokio::test]
async fn input_floods_are_dropped_then_closed_1008() {
    let server = start(test_config()).await;
    let mut bystander = connect(&server, "bystander").await;
    snapshots(&mut bystander, 1).await;

    // A burst of 50 inputs at once: the burst allowance (30) passes, the rest is dropped and
    // counted, and the connection stays.
    let mut c = connect(&server, "bursty").await;
    for _ in 1..=50 {
        c.input(&ArenaInput::default()).await.expect("send");
    }
    snapshots(&mut c, 3).await;
    let limited = server.stats().rate_limited.get();
    assert!(limited >= 10, "rate-limited {limited}");

    // Hundreds at once (far beyond 10x the tick rate for a second): closed with 1008.
    let mut f = connect(&server, "flooder").await;
    for _ in 1..=600 {
        if f.input(&ArenaInput::default()).await.is_err() {
            break;
        }
    }
    let (code, reason) = close_of(&mut f).await;
    assert_eq!(code, Some(close::POLICY_VIOLATION));
    assert!(reason.contains("rate limit"), "{reason}");

    // The others never noticed.
    let before = bystander.replica.latest().expect("view").tick;
    let h = snapshots(&mut bystander, 10).await;
    assert!(h.tick > before);
    snapshots(&mut c, 2).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_closed_4005_and_others_keep_their_rate() {
    let server = start(Config {
        outbox_len: 2,
        max_lag_ticks: 10,
        send_buffer_bytes: Some(4096),
        // The watcher must see the slow player wherever it spawns.
        visibility: VisibilityMode::Global,
        ..test_config()
    })
    .await;
    let swarm = tokio::spawn(run_swarm(SwarmConfig {
        url: server.ws_url(),
        bots: 10,
        duration: Duration::from_secs(3),
        seed: 3,
        metrics_url: server.metrics_url(),
        behaviours: tickwire::behaviours(),
        ..SwarmConfig::default()
    }));
    let mut watcher = connect(&server, "watcher").await;
    snapshots(&mut watcher, 1).await;

    // Joins with a tiny receive buffer and never reads again.
    let opts = ConnectOptions {
        recv_buffer_bytes: Some(4096),
        ..Default::default()
    };
    let mut slow = bounded(
        "slow connect",
        Client::connect_with(&server.ws_url(), "slow", &opts),
    )
    .await
    .expect("connects");
    let slow_id = slow.welcome.player;
    let mut seen = false;
    bounded("slow player removed", async {
        loop {
            watcher.next_snapshot().await.expect("applies");
            let present = watcher
                .replica
                .latest()
                .expect("view")
                .entities
                .contains_key(&slow_id);
            seen |= present;
            if seen && !present {
                return;
            }
        }
    })
    .await;
    assert_eq!(server.stats().slow_kicks.get(), 1);

    let report = bounded("swarm", swarm).await.expect("swarm task");
    assert_eq!(
        report.dropped + report.failed + report.desyncs,
        0,
        "{}",
        report.summary()
    );
    assert!(
        report.snapshots_per_bot_per_s > 25.0,
        "{}",
        report.summary()
    );

    // The slow client drains what was buffered and finds the connection gone: a close frame
    // with 4005 if it arrived in time, or the end of the stream.
    let end = bounded("slow drains", async {
        loop {
            if let Err(e) = slow.recv_raw().await {
                return e;
            }
        }
    })
    .await;
    match &end {
        ClientError::Closed { code: Some(c), .. } => assert_eq!(*c, close::TOO_SLOW, "{end}"),
        ClientError::Closed { code: None, .. } | ClientError::WebSocket(_) => {}
        other => panic!("unexpected end: {other}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_1001_and_stops_accepting() {
    let server = start(test_config()).await;
    let addr = server.local_addr();
    let mut clients = Vec::new();
    for i in 0..5 {
        let mut c = connect(&server, &format!("c{i}")).await;
        snapshots(&mut c, 1).await;
        clients.push(c);
    }
    let shutdown = tokio::spawn(server.shutdown());
    for c in &mut clients {
        let (code, reason) = close_of(c).await;
        assert_eq!(code, Some(close::GOING_AWAY));
        assert!(reason.contains("shutting down"));
    }
    bounded("shutdown", shutdown).await.expect("shutdown task");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

/// A certificate for 127.0.0.1 and localhost, written as PEM files in a fresh temp directory.
fn self_signed() -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "tickwire-tls-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_play_over_wss_with_a_private_ca() {
    let (cert, key) = self_signed();
    let server = start(Config {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key),
        ..test_config()
    })
    .await;
    assert!(server.ws_url().starts_with("wss://"));
    let tls = tls_config_with_ca(&cert).expect("CA loads");
    let report = run_swarm(SwarmConfig {
        url: server.ws_url(),
        bots: 20,
        duration: Duration::from_secs(2),
        seed: 11,
        connect: ConnectOptions {
            tls: Some(tls),
            ..Default::default()
        },
        metrics_url: server.metrics_url(),
        // A debug build on a shared 2-core machine: the floor guards against starved bots,
        // not against a slow test machine (release runs use the default 0.9).
        min_rate_fraction: 0.5,
        behaviours: tickwire::behaviours(),
        ..SwarmConfig::default()
    })
    .await;
    assert!(report.ok(), "{}", report.summary());
    assert!(
        report.snapshots_per_bot_per_s > 20.0,
        "{}",
        report.summary()
    );
    // Plain ws:// to a TLS port fails to upgrade.
    let plain = format!("ws://{}/ws", server.local_addr());
    assert!(
        bounded("plain", Client::connect(&plain, "plain"))
            .await
            .is_err()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn no_hello_closes_4003() {
    let server = start(Config {
        hello_timeout_ms: 200,
        ..test_config()
    })
    .await;
    let (mut ws, _) = bounded("open", open(&server.ws_url(), &ConnectOptions::default()))
        .await
        .expect("upgrade");
    let code = close_frame(&mut ws).await.0;
    assert_eq!(code, close::HELLO_TIMEOUT);
    server.shutdown().await;
}

#[tokio::test]
async fn a_websocket_protocol_violation_gets_a_close_frame_1002() {
    let server = start(test_config()).await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.expect("tcp");
    tcp.write_all(upgrade_request(&server, "").as_bytes())
        .await
        .expect("write");
    // A binary frame without the mask RFC 6455 requires of clients.
    tcp.write_all(&[0x82, 0x03, 1, 2, 3])
        .await
        .expect("write frame");
    let mut bytes = Vec::new();
    bounded("server hangs up", tcp.read_to_end(&mut bytes))
        .await
        .expect("read");
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("101")
        + 4;
    let close_frame = frames(&bytes[head_end..])
        .into_iter()
        .find(|(op, _)| *op == 0x8)
        .expect("a close frame, not a dropped socket");
    assert_eq!(
        u16::from_be_bytes([close_frame.1[0], close_frame.1[1]]),
        close::PROTOCOL_ERROR
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_oversized_request_head_gets_431() {
    let server = start(test_config()).await;
    let padding = "X-Padding: ".to_owned() + &"a".repeat(9 * 1024) + "\r\n";
    let r = http(&server, &upgrade_request(&server, &padding)).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{}", &r[..r.len().min(200)]);
    // Too many header lines, each short, also gets 431.
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = http(&server, &upgrade_request(&server, &many)).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{}", &r[..r.len().min(200)]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_full_join_queue_closes_1013_server_busy() {
    let server = start(Config {
        join_queue_len: 2,
        ..test_config()
    })
    .await;
    // With the tick loop stalled nobody is let in, so joins queue up.
    server.set_tick_paused(true);
    let hello = || {
        let mut buf = Vec::new();
        encode_client(
            &ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                name: "queued".into(),
                room: tickwire_protocol::RoomRequest::default(),
            },
            &mut buf,
        );
        Message::Binary(Bytes::from(buf))
    };
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = bounded("open", open(&server.ws_url(), &ConnectOptions::default()))
            .await
            .expect("upgrade");
        ws.send(hello()).await.expect("send hello");
        clients.push(ws);
    }
    // The queue holds two joins and nothing drains it: exactly one of the three, whichever
    // session got to the queue last, is refused.
    let (refused, (code, reason, _)) = {
        let waits = clients
            .iter_mut()
            .map(|ws| Box::pin(close_frame(ws)))
            .collect::<Vec<_>>();
        let (closed, idx, _) = bounded(
            "one join to be refused",
            futures_util::future::select_all(waits),
        )
        .await;
        (idx, closed)
    };
    assert_eq!(code, close::TRY_AGAIN_LATER);
    assert!(reason.contains("busy"), "{reason}");
    // Once the loop runs again the two queued clients are welcomed.
    server.set_tick_paused(false);
    for (i, ws) in clients
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| *i != refused)
    {
        bounded("welcome", async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        if let Ok(ServerMsg::Welcome(_)) = decode_server(&b) {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("client {i}: no welcome: {other:?}"),
                }
            }
        })
        .await;
    }
    server.shutdown().await;
}
