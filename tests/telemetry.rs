//! `/metrics` and `/healthz` on the real server's admin listener: valid Prometheus text with the
//! tick and phase histograms, the counters and the standard process metrics, a health check
//! that fails while the tick loop stalls, and neither on the public game port.

mod common;

use common::*;
use std::collections::HashSet;
use tickwire_server::Config;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

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
        "tickwire_connections",
        "tickwire_leaves_by_reason_total",
        "tickwire_input_lead_seconds_bucket",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
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
    assert!(sample(&body, "process_cpu_seconds_total") > 0.0, "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn admin_endpoints_are_not_on_the_game_port_and_refuse_a_rebinding_host() {
    let server = start(test_config()).await;
    let game = server.local_addr();
    for path in ["/metrics", "/healthz"] {
        let (status, body) = get_at(game, path, &game.to_string()).await;
        assert_eq!(status, 404, "{path} on the game port: {body}");
    }
    let admin = server.admin_addr().expect("on");
    let port = admin.port();
    assert_eq!(
        get_at(admin, "/healthz", &format!("localhost:{port}"))
            .await
            .0,
        200
    );
    let (status, body) = get_at(admin, "/metrics", &format!("evil.example:{port}")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("allowed_hosts"), "{body}");
    assert_eq!(get_at(admin, "/ws", &admin.to_string()).await.0, 404);
    server.shutdown().await;

    // Off when admin_bind is empty.
    let server = start(Config {
        admin_bind: String::new(),
        ..test_config()
    })
    .await;
    assert_eq!(server.admin_addr(), None);
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
    assert!(
        sample(&metrics, "tickwire_ticks_skipped_total") > 0.0,
        "{metrics}"
    );
    snapshots(&mut c, 2).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_serves_a_bounded_number_at_once_and_times_out_idle_ones() {
    let server = start(Config {
        admin_max_connections: 1,
        admin_timeout_ms: 300,
        ..test_config()
    })
    .await;
    let admin = server.admin_addr().expect("on");
    // A holds the only place and says nothing; B asks for /healthz behind it, so B cannot be
    // answered before A's 300 ms are up (a lower bound: a loaded machine only adds to it).
    let started = std::time::Instant::now();
    let mut a = TcpStream::connect(admin).await.expect("tcp");
    let b = tokio::spawn(async move { get_at(admin, "/healthz", &admin.to_string()).await });
    let mut rest = Vec::new();
    bounded(
        "the idle admin connection to time out",
        a.read_to_end(&mut rest),
    )
    .await
    .expect("closed, not reset");
    assert!(rest.is_empty(), "no answer to no request");
    let (status, _) = bounded("B's answer", b).await.expect("task");
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "B was served only once A's place was free"
    );
    server.shutdown().await;
}
