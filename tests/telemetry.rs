//! `/metrics` and `/healthz` on the real server: valid Prometheus text with the tick and phase
//! histograms and the counters, and a health check that fails while the tick loop stalls.

mod common;

use common::*;
use std::collections::HashSet;
use tickwire_server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GETs `path`; returns the status code and the body.
async fn get(server: &Server, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(server.local_addr()).await.expect("tcp");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.local_addr()
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    bounded("response", tcp.read_to_end(&mut out))
        .await
        .expect("read");
    let text = String::from_utf8(out).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// Checks the Prometheus text exposition format line by line: `# HELP`/`# TYPE` comments,
/// and samples `name{label="value",...} number`. Returns the sample names.
fn parse_prometheus(text: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            let kind = rest.split(' ').next().expect("comment kind");
            assert!(
                ["HELP", "TYPE", "EOF", "UNIT"].contains(&kind),
                "bad comment: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value in {line}"
        );
        let name = series.split('{').next().expect("a name");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name in {line}"
        );
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(
                labels.starts_with('{') && labels.ends_with('}'),
                "bad labels: {line}"
            );
        }
        names.insert(name.to_owned());
    }
    names
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text_with_the_tick_histogram() {
    let server = start(test_config()).await;
    let mut c = connect(&server, "m").await;
    snapshots(&mut c, 5).await;
    let (status, body) = get(&server, "/metrics").await;
    assert_eq!(status, 200);
    let names = parse_prometheus(&body);
    for want in [
        "tickwire_tick_duration_seconds_bucket",
        "tickwire_tick_duration_seconds_count",
        "tickwire_tick_phase_duration_seconds_bucket",
        "tickwire_tick_lag_ticks",
        "tickwire_clients",
        "tickwire_bytes_out_total",
        "tickwire_messages_in_total",
        "tickwire_snapshots_dropped_total",
        "tickwire_rate_limited_total",
        "tickwire_closes_total",
    ] {
        assert!(names.contains(want), "{want} missing from:\n{body}");
    }
    for phase in ["ingest", "simulate", "capture", "replicate", "handoff"] {
        assert!(
            body.contains(&format!("phase=\"{phase}\"")),
            "phase {phase} missing"
        );
    }
    assert!(body.contains("tickwire_clients 1\n"), "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn healthz_fails_while_the_tick_loop_stalls() {
    let server = start(test_config()).await;
    let mut c = connect(&server, "h").await;
    snapshots(&mut c, 2).await;
    assert_eq!(get(&server, "/healthz").await, (200, "ok\n".to_owned()));

    server.set_tick_paused(true);
    let (status, why) = bounded("healthz to fail", async {
        loop {
            let r = get(&server, "/healthz").await;
            if r.0 != 200 {
                return r;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(status, 503);
    assert!(why.contains("stalled"), "{why}");
    // Stay stalled past the catch-up allowance (3 ticks, 100 ms), so that on resuming the loop
    // must skip ticks rather than run them back to back.
    bounded("a long stall", async {
        loop {
            let (_, why) = get(&server, "/healthz").await;
            let ms: u64 = why
                .split_whitespace()
                .find_map(|w| w.parse().ok())
                .expect("the stall length in ms");
            if ms >= 400 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;

    server.set_tick_paused(false);
    bounded("healthz to recover", async {
        while get(&server, "/healthz").await.0 != 200 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // The loop skipped the ticks it missed instead of running them all.
    let (_, metrics) = get(&server, "/metrics").await;
    let skipped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tickwire_ticks_skipped_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("skipped ticks counter");
    assert!(skipped > 0.0, "{metrics}");
    snapshots(&mut c, 2).await;
    server.shutdown().await;
}
