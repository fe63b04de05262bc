//! The guide's minimal game (`examples/minimal_game.rs`, shown whole in `docs/GAME_API.md`)
//! runs: the real server plays it over real sockets, two Rust clients decode it through the
//! schema in their welcome with typed access, steer their dots, see each other move, and every
//! snapshot verifies. And the guide shows exactly the code that runs.

mod common;

#[path = "../examples/minimal_game.rs"]
mod minimal_game;

use common::*;
use minimal_game::{Dot, Dots, Steer};
use tickwire_server::{GameDef, Server};

#[test]
fn the_guide_shows_the_example_verbatim() {
    let guide = include_str!("../docs/GAME_API.md");
    let code = include_str!("../examples/minimal_game.rs");
    assert!(
        guide.contains(code),
        "docs/GAME_API.md must contain examples/minimal_game.rs verbatim, in a ```rust block"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minimal_game_plays_over_real_sockets() {
    let server = Server::start(test_config(), GameDef::of::<Dots>())
        .await
        .expect("the minimal game starts");
    let mut a = connect(&server, "a").await;
    let mut b = connect(&server, "b").await;
    assert_eq!(a.welcome.schema.game, "dots");
    assert_eq!(a.welcome.schema.components[0].name, "Dot");
    snapshots(&mut a, 2).await;
    snapshots(&mut b, 2).await;
    assert_eq!(a.own::<Dot>(), Some(Dot { x: 500.0, y: 500.0 }));

    // A steers right for 20 inputs: 3 units a tick, 60 in all (B sees it too).
    for _ in 0..20 {
        a.input(&Steer { dx: 1.0, dy: 0.0 }).await.expect("send");
        snapshots(&mut a, 1).await;
    }
    let seq = a.seq;
    let h = bounded("the last input applied", async {
        loop {
            let h = a.next_snapshot().await.expect("verifies");
            if h.last_input_seq >= seq {
                return h;
            }
        }
    })
    .await;
    assert_eq!(a.own::<Dot>(), Some(Dot { x: 560.0, y: 500.0 }));
    snapshot_at_least(&mut b, h.tick).await;
    assert_eq!(b.replica.get::<Dot>(a.welcome.player), a.own::<Dot>());
    assert_eq!(
        b.own::<Dot>(),
        Some(Dot { x: 500.0, y: 500.0 }),
        "b did not move"
    );
    server.shutdown().await;
}
