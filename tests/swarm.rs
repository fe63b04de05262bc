//! End to end: bots on real sockets against a real server, with players joining and leaving
//! and projectiles spawning and vanishing throughout, and zero desyncs.

mod common;

use common::*;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tickwire_bots::{SwarmConfig, run_swarm};
use tickwire_protocol::EntityState;
use tickwire_server::ServerStats;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_see_no_desyncs_through_churn_and_projectiles() {
    let server = start(test_config()).await;
    let url = server.ws_url();

    // 24 wandering, firing bots for a 4 s window.
    let swarm = tokio::spawn(run_swarm(SwarmConfig {
        url: url.clone(),
        bots: 24,
        duration: Duration::from_secs(4),
        ramp_per_s: 100.0,
        seed: 7,
        ..SwarmConfig::default()
    }));

    // Meanwhile, 12 short-lived clients join, verify a few snapshots each, and leave, so the
    // swarm's views see players created and removed.
    let mut churn_projectiles_removed = 0usize;
    for i in 0..12 {
        let mut c = connect(&server, &format!("churn-{i}")).await;
        snapshots(&mut c, 10).await;
        let view = c.replica.latest().expect("has a view");
        assert!(view.entities.contains_key(&c.welcome.player));
        churn_projectiles_removed += view
            .entities
            .values()
            .filter(|s| matches!(s, EntityState::Projectile(_)))
            .count();
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
        report.projectiles_seen > 24,
        "projectiles must spawn: {}",
        report.summary()
    );

    let stats = server.stats();
    assert_eq!(ServerStats::read(&stats.joins), 36);
    assert!(ServerStats::read(&stats.leaves) >= 12);
    assert!(stats.ticks_total.load(Relaxed) > 0);
    let _ = churn_projectiles_removed;
    server.shutdown().await;
}
