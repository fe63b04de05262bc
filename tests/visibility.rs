//! Interest management over real sockets: entities enter and leave a client's area of interest
//! at its edge, projectiles cross it, and every snapshot still reproduces the server's view
//! (the replica verifies the checksum of each one).

mod common;

use common::*;
use glam::Vec2;
use tickwire_bots::Client;
use tickwire_protocol::quant::{POS_SCALE, from_q};
use tickwire_protocol::{EntityState, Input, NetId, ProjectileState, Tick, Visibility};
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
    let p = c.own_state().expect("own player");
    Vec2::new(from_q(i32::from(p.x)), from_q(i32::from(p.y)))
}

fn sees(c: &Client, id: NetId) -> bool {
    c.replica
        .latest()
        .is_some_and(|v| v.entities.contains_key(&id))
}

/// One step of the scenario: `walker` moves along `dir` (or stands), then every client reads
/// (and verifies, and acks) its next snapshot. Returns the tick reached.
async fn step(walker: &mut Client, seq: &mut u32, dir: Vec2, others: &mut [&mut Client]) -> Tick {
    *seq += 1;
    walker
        .send_input(Input {
            seq: *seq,
            move_x: dir.x,
            move_y: dir.y,
            ..Input::default()
        })
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

fn projectile_at(p: &ProjectileState, tick: Tick) -> Vec2 {
    let (x, y) = p.position_at(tick);
    Vec2::new(x as f32, y as f32) / POS_SCALE
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_enter_and_leave_at_the_aoi_edge_without_desyncs() {
    let server = start(Config {
        visibility: VisibilityMode::Aoi,
        aoi_radius: RADIUS,
        map: Some(open_map()),
        seed: 5,
        ..test_config()
    })
    .await;
    let mut a = connect(&server, "watcher").await;
    let mut b = connect(&server, "walker").await;
    assert_eq!(a.welcome.visibility, Visibility::Aoi { radius: RADIUS });
    snapshots(&mut a, 1).await;
    snapshots(&mut b, 1).await;
    let mut seq = 0;

    bounded(
        "the walker enters, leaves and enters the watcher's view",
        async {
            for round in 0..2 {
                // Walk towards the watcher until it sees the walker: the walker must be inside the
                // radius then, and must not have been one tick's walk earlier.
                while !sees(&a, b.welcome.player) {
                    let dir = (pos(&a) - pos(&b)).normalize_or_zero();
                    step(&mut b, &mut seq, dir, &mut [&mut a]).await;
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
                    step(&mut b, &mut seq, dir, &mut [&mut a]).await;
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
            step(&mut b, &mut seq, dir, &mut [&mut a]).await;
        }
    })
    .await;
    // The watcher fires at the walker: the projectile leaves the watcher's view and later
    // enters the walker's.
    let target = pos(&b);
    let aim = (target - pos(&a)).to_angle();
    a.send_input(Input {
        seq: 1,
        aim,
        fire: true,
        ..Input::default()
    })
    .await
    .expect("send");
    let mut fired: Option<(NetId, ProjectileState)> = None;
    let mut left_watcher = false;
    let mut entered_walker = false;
    bounded("the projectile crosses from one view to the other", async {
        while !(left_watcher && entered_walker) {
            step(&mut b, &mut seq, Vec2::ZERO, &mut [&mut a]).await;
            let view_a = a.replica.latest().expect("view");
            if fired.is_none() {
                fired = view_a.entities.iter().find_map(|(id, s)| match s {
                    EntityState::Projectile(p) if p.owner == a.welcome.player => Some((*id, *p)),
                    _ => None,
                });
            }
            let Some((id, proj)) = fired else { continue };
            if !left_watcher && !view_a.entities.contains_key(&id) {
                let d = projectile_at(&proj, view_a.tick).distance(pos(&a));
                assert!(d > RADIUS, "left the watcher's view at distance {d}");
                left_watcher = true;
            }
            let view_b = b.replica.latest().expect("view");
            if !entered_walker && let Some(EntityState::Projectile(p)) = view_b.entities.get(&id) {
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
