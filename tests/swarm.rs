//! End to end: bots on real sockets against a real server, with players joining and leaving
//! and projectiles spawning and vanishing throughout, and zero desyncs.

mod common;

use common::*;
use std::time::Duration;
use tickwire_bots::{Report, SwarmConfig, run_swarm};
use tickwire_server::{Config, VisibilityMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_mode_bots_see_no_desyncs_through_churn_and_projectiles() {
    let report = churn_and_swarm(VisibilityMode::Global).await;
    assert_eq!(report.mode, "global");
    // Everyone sees everyone: the 24 bots and the churning client of the moment.
    assert!(
        report.visible_players_per_bot >= 24.0,
        "{}",
        report.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aoi_mode_bots_see_no_desyncs_through_churn_and_projectiles() {
    let report = churn_and_swarm(VisibilityMode::Aoi).await;
    assert_eq!(report.mode, "aoi");
    // 24 players on 4000 x 4000 with an 800 radius: each sees a few, not all.
    assert!(
        report.visible_players_per_bot < 20.0,
        "{}",
        report.summary()
    );
    assert!(
        report.visible_players_per_bot >= 1.0,
        "{}",
        report.summary()
    );
}

/// 24 wandering, firing bots for a 4 s window while 12 short-lived clients join, verify a few
/// snapshots each, and leave. Asserts what holds in both modes and returns the report.
async fn churn_and_swarm(visibility: VisibilityMode) -> Report {
    let server = start(Config {
        visibility,
        ..test_config()
    })
    .await;
    let url = server.ws_url();

    // 24 wandering, firing bots for a 4 s window.
    let swarm = tokio::spawn(run_swarm(SwarmConfig {
        url: url.clone(),
        bots: 24,
        duration: Duration::from_secs(4),
        ramp_per_s: 100.0,
        seed: 7,
        metrics_url: server.metrics_url(),
        behaviours: tickwire::behaviours(),
        ..SwarmConfig::default()
    }));

    // Meanwhile, 12 short-lived clients join, verify a few snapshots each, and leave, so the
    // swarm's views see players created and removed.
    for i in 0..12 {
        let mut c = connect(&server, &format!("churn-{i}")).await;
        snapshots(&mut c, 10).await;
        let view = c.replica.latest().expect("has a view");
        assert!(view.entities.contains_key(&c.welcome.player));
        c.close().await.expect("closes cleanly");
    }

    let report = bounded("swarm", swarm).await.expect("swarm task");
    assert_eq!(report.connected, 24, "{}", report.summary());
    assert_eq!(report.failed, 0, "{}", report.summary());
    assert_eq!(report.dropped, 0, "{}", report.summary());
    assert_eq!(report.desyncs, 0, "{}", report.summary());
    assert_eq!(report.missing_baselines, 0, "{}", report.summary());
    assert!(
        report.snapshots_per_bot_per_s > 20.0,
        "{}",
        report.summary()
    );
    assert!(
        report.entities_created > 24,
        "projectiles must spawn: {}",
        report.summary()
    );

    let stats = server.stats();
    assert_eq!(stats.joins.get(), 36);
    assert!(stats.leaves.get() >= 12);
    assert!(stats.ticks_total.get() > 0);
    server.shutdown().await;
    report
}

/// `--verify K`: K bots decode and verify, the rest read headers, acknowledge and count bytes.
/// The header-only bots still take every snapshot (checked for order and for baselines they
/// received), send their inputs and take their events; the report says how many verified,
/// and its view figures come from the verifying bots alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifying_sample_with_header_only_bots() {
    let server = start(Config {
        visibility: VisibilityMode::Global,
        ..test_config()
    })
    .await;
    let report = bounded(
        "swarm",
        tokio::spawn(run_swarm(SwarmConfig {
            url: server.ws_url(),
            bots: 12,
            verify: Some(3),
            duration: Duration::from_secs(3),
            ramp_per_s: 100.0,
            seed: 11,
            metrics_url: server.metrics_url(),
            behaviours: tickwire::behaviours(),
            ..SwarmConfig::default()
        })),
    )
    .await
    .expect("swarm task");
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.connected, 12, "{}", report.summary());
    assert_eq!(report.verifying_bots, 3, "{}", report.summary());
    assert_eq!(
        report.per_bot.iter().filter(|b| b.verifies).count(),
        3,
        "{}",
        report.summary()
    );
    // Every bot, header-only or not, took snapshots and sent inputs at the tick rate.
    assert!(
        report.min_snapshots_per_bot_per_s >= 27.0,
        "{}",
        report.summary()
    );
    assert!(
        report.inputs_per_bot_per_s.min >= 27.0,
        "{}",
        report.summary()
    );
    assert_eq!(report.missing_baselines, 0, "{}", report.summary());
    assert_eq!(report.out_of_order, 0, "{}", report.summary());
    // The verifying bots see all 12 players; header-only bots do not dilute it.
    assert!(
        report.visible_players_per_bot >= 12.0,
        "{}",
        report.summary()
    );
    // Only the joins were full snapshots: the header-only bots' acks keep deltas coming.
    assert_eq!(report.full_snapshots, 12, "{}", report.summary());
    let cpu = report.bots_cpu_pct.expect("the swarm measures its own CPU");
    assert!(cpu > 0.0, "{}", report.summary());
    server.shutdown().await;
}
