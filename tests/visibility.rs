//! Interest management over real sockets: entities enter and leave a client's area of interest
//! at its edge, projectiles cross it, and every snapshot still reproduces the server's view
//! (the replica verifies the checksum of each one).

mod common;

use common::*;
use glam::Vec2;
use tickwire_arena::components::{ArenaInput, POS_SCALE, Position, Shot, world};
use tickwire_bots::Client;
use tickwire_protocol::{NetId, Tick, Visibility};
use tickwire_server::{Config, VisibilityMode};

const RADIUS: f32 = 250.0;

/// A 1000 x 1000 arena without walls, so walks are straight and short.
fn open_map() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tickwire-vis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("open.toml");
    std::fs::write(&path, "name = 'open'\nwidth = 1000.0\nheight = 1000.0\n").expect("write map");
    path
}

fn pos(c: &Client) -> Vec2 {
    world(c.own::<Position>().expect("own player").0)
}

fn sees(c: &Client, id: NetId) -> bool {
    c.replica
        .latest()
        .is_some_and(|v| v.entities.contains_key(&id))
}

/// One step of the scenario: `walker` moves along `dir` (or stands), then every client reads
/// (and verifies, and acks) its next snapshot. Returns the tick reached.
async fn step(walker: &mut Client, dir: Vec2, others: &mut [&mut Client]) -> Tick {
    walker
        .input(&ArenaInput::new(dir, 0.0, false))
        .await
        .expect("send");
    let h = walker
        .next_snapshot()
        .await
        .expect("walker's snapshot verifies");
    for c in others.iter_mut() {
        snapshot_at_least(c, h.tick).await;
    }
    h.tick
}

fn projectile_at(p: &Shot, tick: Tick) -> Vec2 {
    p.position_at(tick).as_vec2() / POS_SCALE
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_enter_and_leave_at_the_aoi_edge_without_desyncs() {
    let server = start(Config {
        visibility: VisibilityMode::Aoi,
        aoi_radius: RADIUS,
        games: arena_map(open_map()),
        seed: 5,
        ..test_config()
    })
    .await;
    let mut a = connect(&server, "watcher").await;
    let mut b = connect(&server, "walker").await;
    assert_eq!(a.welcome.visibility, Visibility::Aoi { radius: RADIUS });
    snapshots(&mut a, 1).await;
    snapshots(&mut b, 1).await;

    bounded(
        "the walker enters, leaves and enters the watcher's view",
        async {
            for round in 0..2 {
                // Walk towards the watcher until it sees the walker: the walker must be inside the
                // radius then, and must not have been one tick's walk earlier.
                while !sees(&a, b.welcome.player) {
                    let dir = (pos(&a) - pos(&b)).normalize_or_zero();
                    step(&mut b, dir, &mut [&mut a]).await;
                }
                let d = pos(&a).distance(pos(&b));
                assert!(
                    d <= RADIUS && d > RADIUS - 20.0,
                    "round {round}: entered at {d}"
                );
                // Walk away until the watcher stops seeing the walker.
                while sees(&a, b.welcome.player) {
                    let away = (pos(&b) - pos(&a)).normalize_or_zero();
                    // Walls of the arena: turn along them rather than stop.
                    let dir = if away == Vec2::ZERO { Vec2::X } else { away };
                    step(&mut b, dir, &mut [&mut a]).await;
                }
                let d = pos(&a).distance(pos(&b));
                assert!(
                    d > RADIUS && d < RADIUS + 20.0,
                    "round {round}: left at {d}"
                );
            }
        },
    )
    .await;

    // Walk on until the two views are disjoint along the line between them, towards the corner
    // farthest from the watcher (at least 707 units away, so this ends).
    let corner = {
        let w = pos(&a);
        Vec2::new(
            if w.x < 500.0 { 990.0 } else { 10.0 },
            if w.y < 500.0 { 990.0 } else { 10.0 },
        )
    };
    bounded("the walker moves away", async {
        while pos(&a).distance(pos(&b)) < 2.0 * RADIUS + 30.0 {
            let dir = (corner - pos(&b)).normalize_or_zero();
            step(&mut b, dir, &mut [&mut a]).await;
        }
    })
    .await;
    // The watcher fires at the walker: the projectile leaves the watcher's view and later
    // enters the walker's.
    let target = pos(&b);
    let aim = (target - pos(&a)).to_angle();
    a.input(&ArenaInput::new(Vec2::ZERO, aim, true))
        .await
        .expect("send");
    let mut fired: Option<(NetId, Shot)> = None;
    let mut left_watcher = false;
    let mut entered_walker = false;
    bounded("the projectile crosses from one view to the other", async {
        while !(left_watcher && entered_walker) {
            step(&mut b, Vec2::ZERO, &mut [&mut a]).await;
            let view_a = a.replica.latest().expect("view");
            if fired.is_none() {
                let schema = a.replica.schema();
                fired = view_a.entities.iter().find_map(|(id, s)| {
                    s.get::<Shot>(schema)
                        .filter(|p| p.owner == a.welcome.player)
                        .map(|p| (*id, p))
                });
            }
            let Some((id, proj)) = fired else { continue };
            if !left_watcher && !view_a.entities.contains_key(&id) {
                let d = projectile_at(&proj, view_a.tick).distance(pos(&a));
                assert!(d > RADIUS, "left the watcher's view at distance {d}");
                left_watcher = true;
            }
            let view_b = b.replica.latest().expect("view");
            if !entered_walker
                && let Some(p) = view_b
                    .entities
                    .get(&id)
                    .and_then(|s| s.get::<Shot>(b.replica.schema()))
            {
                let p = &p;
                assert_eq!(*p, proj, "the same static state in both views");
                assert!(
                    p.born < view_b.tick,
                    "it entered the view; it was not fired there"
                );
                let d = projectile_at(p, view_b.tick).distance(pos(&b));
                assert!(d <= RADIUS, "entered the walker's view at distance {d}");
                entered_walker = true;
            }
        }
    })
    .await;
    server.shutdown().await;
}
