//! Memory per idle connection: the small per-connection read buffer keeps 10,000 idle
//! connections well under 200 MiB, i.e. under 20 KiB each. Measured as the growth of this
//! process's resident memory while a real server holds idle upgraded WebSocket connections
//! (raw sockets on the client side, so the client adds almost nothing). Its own test binary,
//! so no other test allocates meanwhile. Linux only (reads /proc).

mod common;

use common::*;
use tickwire_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections held open.
const CONNECTIONS: usize = 400;
/// The budget per connection: 200 MiB over 10,000 connections.
const BUDGET_BYTES: usize = 200 * 1024 * 1024 / 10_000;

fn rss_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

async fn idle_connection(addr: std::net::SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.expect("tcp");
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before the 101");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101"));
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cost_under_20_kib_each() {
    let Some(_) = rss_bytes() else {
        eprintln!("no /proc/self/status: skipping the memory measurement");
        return;
    };
    let server = start(Config {
        hello_timeout_ms: 600_000,
        // All from 127.0.0.1: the per-address cap is not what this test measures.
        max_connections_per_ip: 10_000,
        ..test_config()
    })
    .await;
    let addr = server.local_addr();
    // Warm up allocator pools and the runtime with a first batch, then measure a second one.
    let mut warm = Vec::new();
    for _ in 0..50 {
        warm.push(bounded("warm-up connection", idle_connection(addr)).await);
    }
    let before = rss_bytes().expect("rss");
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        conns.push(bounded("idle connection", idle_connection(addr)).await);
    }
    let after = rss_bytes().expect("rss");
    let per = after.saturating_sub(before) / CONNECTIONS;
    eprintln!("{per} bytes of resident memory per idle connection");
    assert!(
        per < BUDGET_BYTES,
        "{per} bytes per idle connection, budget {BUDGET_BYTES}"
    );
    drop(conns);
    drop(warm);
    server.shutdown().await;
}
