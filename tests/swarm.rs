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
