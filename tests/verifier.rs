//! The bot swarm as the project's proof of correctness: a clean run passes and reports the
//! server's CPU, and a server that misbehaves (one corrupted checksum, one client starved of
//! snapshots, injected through the server's test hook) makes the run fail and say what it saw.

mod common;

use common::*;
use std::time::Duration;
use tickwire_bots::{Report, SwarmConfig, run_swarm};
use tickwire_server::Server;

const BOTS: u32 = 8;

/// Runs `BOTS` bots for a 3 s window; `fault` is applied once they have all joined. Returns
/// the report and the resync requests the server received.
async fn swarm_with(fault: impl FnOnce(&Server)) -> (Report, u64) {
    let server = start(test_config()).await;
    let swarm = tokio::spawn(run_swarm(SwarmConfig {
        url: server.ws_url(),
        bots: BOTS,
        duration: Duration::from_secs(3),
        metrics_url: server.metrics_url(),
        // A debug build on a shared 2-core machine: the floor here guards against starved
        // bots, not against a slow test machine (release runs use the default 0.9).
        min_rate_fraction: 0.5,
        behaviours: tickwire::behaviours(),
        ..SwarmConfig::default()
    }));
    let stats = std::sync::Arc::clone(server.stats());
    eventually("every bot to join", || {
        stats.clients.get() == i64::from(BOTS)
    })
    .await;
    fault(&server);
    let report = bounded("the swarm", swarm).await.expect("swarm task");
    let resyncs = stats.resyncs.get();
    server.shutdown().await;
    (report, resyncs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_run_passes_and_reports_the_server_cpu() {
    let (report, resyncs) = swarm_with(|_| {}).await;
    assert!(report.ok(), "{}", report.summary());
    assert!(report.failures.is_empty() && report.warnings.is_empty());
    assert_eq!(report.unverified_snapshots, 0);
    assert_eq!(resyncs, 0);
    assert_eq!(report.per_bot.len(), BOTS as usize);
    assert!(report.min_snapshots_per_bot_per_s >= report.min_rate_floor);
    assert!(report.min_snapshots_per_bot_per_s <= report.snapshots_per_bot_per_s);
    assert!(
        report.inputs_per_bot_per_s.min > 10.0,
        "{}",
        report.summary()
    );
    assert!(
        report.ticks_elapsed_per_s.mean > 20.0,
        "{}",
        report.summary()
    );
    let cpu = report.server_cpu_pct.expect("server CPU measured");
    assert!(cpu > 0.0 && cpu < 400.0, "{cpu}");
    assert!(
        report
            .server_cpu_us_per_client_tick
            .expect("per client tick")
            > 0.0
    );
    let json = serde_json::to_value(&report).expect("serializes");
    for key in [
        "server_cpu_pct",
        "server_cpu_us_per_client_tick",
        "min_snapshots_per_bot_per_s",
        "unverified_snapshots",
        "per_bot",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from the JSON");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_checksum_fails_the_run_and_the_bot_resyncs() {
    let (report, resyncs) = swarm_with(|s| s.faults().corrupt_checksums(1)).await;
    assert!(!report.ok(), "{}", report.summary());
    assert_eq!(report.desyncs, 1, "{}", report.summary());
    assert_eq!(
        resyncs,
        1,
        "the bot asked for a full snapshot: {}",
        report.summary()
    );
    assert!(
        report.failures.iter().any(|f| f.contains("1 desyncs")),
        "{:?}",
        report.failures
    );
    // The resync worked: the bot went on verifying snapshots, so nothing else failed.
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert_eq!(report.missing_baselines, 0);
    let bot = report
        .per_bot
        .iter()
        .find(|b| b.desyncs == 1)
        .expect("the bot that saw it");
    assert!(bot.applied_per_s >= report.min_rate_floor, "{bot:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_bot_fails_the_run_by_name() {
    let (report, _) = swarm_with(|s| s.faults().starve_one_client()).await;
    assert!(!report.ok(), "{}", report.summary());
    assert_eq!(report.desyncs, 0);
    assert_eq!(
        report.dropped,
        0,
        "starved, not closed: {}",
        report.summary()
    );
    let starved = &report.per_bot[0];
    assert!(starved.applied_per_s < 1.0, "{starved:?}");
    let failure = report
        .failures
        .iter()
        .find(|f| f.contains("floor"))
        .unwrap_or_else(|| panic!("{:?}", report.failures));
    assert!(failure.contains(&starved.name), "{failure}");
    assert!(report.summary().contains("FAILURE"));
}
