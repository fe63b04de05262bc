//! The edge's hardening over real sockets: connection caps before the hello (total and per
//! address), 1007 for invalid UTF-8, control frames charged to a budget and not refreshing the
//! idle timer, shutdown reaching every phase, leave reasons, clients that never ack, and
//! fragmented messages after the join (read by the session, not the lane).

mod common;

use common::*;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tickwire_bots::Client;
use tickwire_bots::client::ConnectOptions;
use tickwire_protocol::codec::encode_client;
use tickwire_protocol::{ClientMsg, PROTOCOL_VERSION, close};
use tickwire_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

async fn connect_from(server: &tickwire_server::Server, source: IpAddr) -> Client {
    let opts = ConnectOptions {
        source_ip: Some(source),
        ..ConnectOptions::default()
    };
    bounded(
        "connect",
        Client::connect_with(&server.ws_url(), "player", &opts),
    )
    .await
    .expect("a fresh player joins")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_upgrades_cannot_lock_players_out() {
    let server = start(Config {
        max_clients: 16,
        max_connections: 40,
        max_connections_per_ip: 20,
        hello_timeout_ms: 600_000,
        ..test_config()
    })
    .await;
    let addr = server.local_addr();
    // One address floods idle upgrades until its cap refuses it.
    let mut flood = Vec::new();
    for _ in 0..20 {
        let mut tcp = tcp_from(addr, ip(2)).await;
        assert_eq!(raw_upgrade(&mut tcp, addr).await, 101);
        flood.push(tcp);
    }
    let mut over = tcp_from(addr, ip(2)).await;
    over.write_all(raw_upgrade_request(addr).as_bytes())
        .await
        .expect("write");
    let (status, text) = read_response(&mut over).await;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("too many connections from your address"),
        "{text}"
    );
    // A player from another address still joins and plays.
    let mut player = connect_from(&server, ip(3)).await;
    snapshots(&mut player, 3).await;

    // A second address fills the total cap: now anyone new gets 503 at once, and the accept
    // loop keeps answering.
    for _ in 0..19 {
        let mut tcp = tcp_from(addr, ip(4)).await;
        assert_eq!(raw_upgrade(&mut tcp, addr).await, 101);
        flood.push(tcp);
    }
    for _ in 0..5 {
        let mut refused = tcp_from(addr, ip(5)).await;
        refused
            .write_all(raw_upgrade_request(addr).as_bytes())
            .await
            .expect("write");
        let (status, text) = read_response(&mut refused).await;
        assert_eq!(status, 503, "{text}");
        assert!(text.contains("connection cap"), "{text}");
    }
    let stats = server.stats();
    assert!(stats.refused_per_ip_cap.get() >= 1);
    assert!(stats.refused_connection_cap.get() >= 5);
    assert_eq!(stats.connections.get(), 40);
    // The joined player was never disturbed.
    snapshots(&mut player, 3).await;
    // Places come back when the flood goes away.
    flood.truncate(10);
    eventually("places to be released", || stats.connections.get() <= 31).await;
    let mut late = connect_from(&server, ip(6)).await;
    snapshots(&mut late, 1).await;
    drop(flood);
    server.shutdown().await;
}

#[tokio::test]
async fn past_the_lingering_refusals_a_refusal_is_one_write_and_a_close() {
    let server = start(Config {
        max_connections: 2,
        max_clients: 2,
        max_lingering_refusals: 0,
        hello_timeout_ms: 600_000,
        ..test_config()
    })
    .await;
    let addr = server.local_addr();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = tcp_from(addr, ip(2)).await;
        assert_eq!(raw_upgrade(&mut tcp, addr).await, 101);
        held.push(tcp);
    }
    // A client that has sent nothing yet still reads the answer (nothing unread, so a FIN).
    let mut refused = tcp_from(addr, ip(3)).await;
    let (status, text) = read_response(&mut refused).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("Retry-After: 1"), "{text}");
    assert_eq!(server.stats().refused_connection_cap.get(), 1);
    drop(held);
    server.shutdown().await;
}

/// Upgrades a raw connection and says hello (binary), so the session is joined.
async fn raw_joined(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let mut tcp = tcp_from(addr, ip(1)).await;
    assert_eq!(raw_upgrade(&mut tcp, addr).await, 101);
    let mut hello = Vec::new();
    encode_client(
        &ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            name: "raw".into(),
            room: tickwire_protocol::RoomRequest::default(),
        },
        &mut hello,
    );
    tcp.write_all(&masked_frame(0x2, &hello))
        .await
        .expect("hello");
    tcp
}

/// An upgraded raw connection, joined (hello sent) or not.
async fn raw_session(addr: std::net::SocketAddr, joined: bool) -> tokio::net::TcpStream {
    if joined {
        return raw_joined(addr).await;
    }
    let mut tcp = tcp_from(addr, ip(1)).await;
    assert_eq!(raw_upgrade(&mut tcp, addr).await, 101);
    tcp
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_1007() {
    let server = start(test_config()).await;
    let addr = server.local_addr();
    for joined in [false, true] {
        let mut tcp = raw_session(addr, joined).await;
        tcp.write_all(&masked_frame(0x1, &[b'{', 0xff, 0xfe, b'}']))
            .await
            .expect("write");
        assert_eq!(
            raw_close_code(&mut tcp).await,
            Some(close::INVALID_PAYLOAD),
            "joined: {joined}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_ping_flood_is_closed_1008() {
    let server = start(test_config()).await;
    let addr = server.local_addr();
    for joined in [false, true] {
        let mut tcp = raw_session(addr, joined).await;
        let ping = masked_frame(0x9, b"x");
        let burst: Vec<u8> = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * 2000)
            .collect();
        // The server may close before it has read everything: a failed write is fine.
        let _ = tcp.write_all(&burst).await;
        assert_eq!(
            raw_close_code(&mut tcp).await,
            Some(close::POLICY_VIOLATION),
            "joined: {joined}"
        );
    }
    assert!(server.stats().rate_limited.get() > 0);
    server.shutdown().await;
}

#[tokio::test]
async fn pings_from_the_client_do_not_keep_a_silent_session_alive() {
    let server = start(Config {
        ping_interval_ms: 100,
        idle_timeout_ms: 600,
        ..test_config()
    })
    .await;
    let mut tcp = raw_joined(server.local_addr()).await;
    // Within the control budget (5 per second), but pings are not something the protocol
    // expects, and this peer never answers the server's pings.
    let (mut rd, mut wr) = tcp.split();
    let pinger = async {
        for _ in 0..100 {
            if wr.write_all(&masked_frame(0x9, b"p")).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let mut bytes = Vec::new();
    let reader = async {
        let mut buf = [0u8; 8192];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    };
    bounded("the idle close", async {
        tokio::select! {
            _ = reader => {}
            _ = pinger => panic!("still open after 25 s of pings"),
        }
    })
    .await;
    let code = frames(&bytes)
        .into_iter()
        .find(|(op, _)| *op == 0x8)
        .map(|(_, p)| u16::from_be_bytes([p[0], p[1]]));
    assert_eq!(code, Some(close::IDLE_TIMEOUT));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reaches_every_phase() {
    let server = start(Config {
        hello_timeout_ms: 600_000,
        handshake_timeout_ms: 600_000,
        shutdown_grace_ms: 3000,
        ..test_config()
    })
    .await;
    let addr = server.local_addr();
    // In the HTTP phase: half a request head.
    let mut http = tcp_from(addr, ip(1)).await;
    http.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // Upgraded, no hello yet.
    let mut upgraded = tcp_from(addr, ip(1)).await;
    assert_eq!(raw_upgrade(&mut upgraded, addr).await, 101);
    // Joined and playing.
    let mut player = connect(&server, "p").await;
    snapshots(&mut player, 2).await;
    eventually("three connections", || {
        server.stats().connections.get() == 3
    })
    .await;

    let stats = std::sync::Arc::clone(server.stats());
    let started = std::time::Instant::now();
    let stop = tokio::spawn(server.shutdown());
    let (status, text) = read_response(&mut http).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("shutting down"), "{text}");
    assert_eq!(raw_close_code(&mut upgraded).await, Some(close::GOING_AWAY));
    let (code, reason) = close_of(&mut player).await;
    assert_eq!(code, Some(close::GOING_AWAY), "{reason}");
    bounded("shutdown", stop).await.expect("shutdown completes");
    assert!(
        started.elapsed() < Duration::from_millis(3000),
        "within the grace period: {:?}",
        started.elapsed()
    );
    assert_eq!(stats.connections.get(), 0);
    let reasons: Vec<_> = stats.leaves_by_reason().collect();
    assert!(reasons.contains(&("shutdown", 1)), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_leave_arrives_with_its_reason() {
    // A dropped connection's player is held this long for a resume, then leaves.
    let server = start(Config {
        resume_grace_ms: 200,
        ..test_config()
    })
    .await;
    let addr = server.local_addr();
    // A clean close.
    let mut a = connect(&server, "a").await;
    snapshots(&mut a, 2).await;
    bounded("close", a.close()).await.expect("closes");
    // A violation: an undecodable message.
    let mut b = connect(&server, "b").await;
    snapshots(&mut b, 2).await;
    b.send_raw(tokio_tungstenite::tungstenite::Message::Binary(
        vec![0xff, 0xff, 0xff].into(),
    ))
    .await
    .expect("send");
    let (code, _) = close_of(&mut b).await;
    assert_eq!(code, Some(close::INVALID_PAYLOAD));
    // A dropped connection: TCP closes with no close frame.
    let mut c = raw_joined(addr).await;
    let mut first = [0u8; 16];
    let n = bounded("the welcome", c.read(&mut first))
        .await
        .expect("read");
    assert!(n > 0);
    drop(c);
    let stats = server.stats();
    eventually("three leaves", || stats.leaves.get() == 3).await;
    assert_eq!(stats.holds.get(), 1, "the dropped one was held first");
    assert_eq!(stats.holds_expired.get(), 1);
    let reasons: Vec<_> = stats.leaves_by_reason().collect();
    assert_eq!(
        reasons,
        vec![
            ("peer_closed", 1),
            ("connection_lost", 1),
            ("violation", 1),
            ("shutdown", 0)
        ]
    );
    assert!(stats.connections_reset.get() >= 1, "counted as a reset");
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_acks_is_closed_4006() {
    let server = start(Config {
        ack_timeout_ms: 500,
        ..test_config()
    })
    .await;
    let mut quiet = connect(&server, "no-acks").await;
    let mut good = connect(&server, "acks").await;
    // `recv` applies snapshots but sends no ack; `next_snapshot` acks.
    let watcher = async {
        loop {
            match quiet.recv().await {
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    };
    let player = async {
        loop {
            good.next_snapshot()
                .await
                .expect("the acking client keeps playing");
        }
    };
    let err = bounded("the no-ack close", async {
        tokio::select! {
            e = watcher => e,
            _ = player => unreachable!(),
        }
    })
    .await;
    assert!(is_close(&err, close::NO_ACKS), "{err}");
    assert_eq!(server.stats().no_ack_kicks.get(), 1);
    snapshots(&mut good, 3).await;
    server.shutdown().await;
}

/// A masked client frame; `fin: false` starts (or continues) a fragmented message.
fn masked_fragment(opcode: u8, payload: &[u8], fin: bool) -> Vec<u8> {
    let mut frame = masked_frame(opcode, payload);
    if !fin {
        frame[0] &= 0x7F;
    }
    frame
}

/// Reads server frames from a raw connection until `wanted` picks one out of them.
async fn raw_until<T>(
    tcp: &mut tokio::net::TcpStream,
    bytes: &mut Vec<u8>,
    mut wanted: impl FnMut(u8, &[u8]) -> Option<T>,
) -> T {
    bounded("a frame from the server", async {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(found) = frames(bytes).iter().find_map(|(op, p)| wanted(*op, p)) {
                return found;
            }
            let n = tcp.read(&mut buf).await.expect("reads");
            assert!(n > 0, "the server closed the connection");
            bytes.extend_from_slice(&buf[..n]);
        }
    })
    .await
}

#[tokio::test]
async fn fragments_and_control_frames_between_them_are_read_as_rfc_6455_says() {
    use tickwire_protocol::codec::decode_server;
    use tickwire_protocol::{InputMsg, ServerMsg};
    let server = start(test_config()).await;
    let mut tcp = raw_joined(server.local_addr()).await;
    let mut seen = Vec::new();
    // Joined once the welcome is here: from then on its reads are the lane's.
    let schema = raw_until(&mut tcp, &mut seen, |op, p| match decode_server(p) {
        Ok(ServerMsg::Welcome(w)) if op == 0x2 => Some(w.schema),
        _ => None,
    })
    .await;
    let input = |seq: u32| {
        let mut fields = Vec::new();
        let idle = vec![0; schema.input.len()];
        tickwire_protocol::body::write_record(&schema.input, &idle, &mut fields);
        let mut bytes = Vec::new();
        let msg = ClientMsg::Input(InputMsg {
            seq,
            ack: None,
            tick: None,
            events_ack: 0,
            fields,
        });
        encode_client(&msg, &mut bytes);
        bytes
    };

    // Input 1 in two fragments with a ping between them, then input 2 whole, in one write.
    let one = input(1);
    let (head, tail) = one.split_at(one.len() / 2);
    let mut burst = masked_fragment(0x2, head, false);
    burst.extend(masked_frame(0x9, b"between"));
    burst.extend(masked_fragment(0x0, tail, true));
    burst.extend(masked_frame(0x2, &input(2)));
    tcp.write_all(&burst).await.expect("writes");
    raw_until(&mut tcp, &mut seen, |op, p| {
        (op == 0xA && p == b"between").then_some(())
    })
    .await;
    eventually("both inputs taken", || {
        server.stats().inputs_received.get() == 2
    })
    .await;
    assert_eq!(server.stats().inputs_rejected.get(), 0);

    // A whole data frame inside a fragmented message (after a ping, again) is a protocol
    // error: neither input is taken.
    let three = input(3);
    let (head, _) = three.split_at(three.len() / 2);
    let mut burst = masked_fragment(0x2, head, false);
    burst.extend(masked_frame(0x9, b"again"));
    burst.extend(masked_frame(0x2, &input(4)));
    tcp.write_all(&burst).await.expect("writes");
    assert_eq!(raw_close_code(&mut tcp).await, Some(close::PROTOCOL_ERROR));
    assert_eq!(server.stats().inputs_received.get(), 2);
    server.shutdown().await;
}
