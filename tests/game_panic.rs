//! Game code can panic. A panic in a game system closes that room's clients with 1011 and a
//! reason, is counted, and the room is disposed; a new room of the same game takes new clients
//! at the full tick rate: the server does not die with its tick thread.

mod common;

#[path = "support/fragile.rs"]
mod fragile;
#[path = "../examples/minimal_game.rs"]
mod minimal_game;

use common::*;
use fragile::Fragile;
use tickwire_server::sim::driver::GAME_FAILED_REASON;
use tickwire_server::{GameDef, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_panic_closes_its_clients_with_1011_and_a_new_room_serves_new_ones() {
    let server = Server::start(test_config(), GameDef::of::<Fragile>())
        .await
        .expect("starts");
    let mut before = connect(&server, "calm").await;
    snapshots(&mut before, 10).await;

    // The bug fires on the tick that takes this join.
    let mut bomber = connect_or_closed(&server, "boom").await;
    for client in [&mut before].into_iter().chain(bomber.as_mut()) {
        let (code, reason) = bounded("the close", close_of(client)).await;
        assert_eq!(code, Some(1011), "{reason}");
        assert_eq!(reason, GAME_FAILED_REASON);
    }
    let stats = server.stats();
    assert_eq!(stats.game_panics.get(), 1);

    // A new room takes new clients and ticks at the full rate; the old one is gone.
    let mut after = connect(&server, "later").await;
    let first = snapshots(&mut after, 1).await.tick;
    let started = std::time::Instant::now();
    let last = snapshots(&mut after, 60).await.tick;
    let per_s = f64::from(last.0 - first.0) / started.elapsed().as_secs_f64();
    assert!(per_s > 20.0, "{per_s:.1} ticks per second");
    let view = after.replica.latest().expect("a view");
    assert_eq!(
        view.entities.len(),
        1,
        "only the new player: the old world is gone"
    );
    assert_eq!(stats.game_panics.get(), 1);
    assert_eq!(stats.clients.get(), 1);
    after.close().await.expect("closes");
    server.shutdown().await;
}

/// Connects `name`; the world may panic before its welcome arrives, in which case there is no
/// client to return (the session is closed all the same).
async fn connect_or_closed(server: &Server, name: &str) -> Option<tickwire_bots::Client> {
    bounded(
        "connect",
        tickwire_bots::Client::connect(&server.ws_url(), name),
    )
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_join_hook_closes_the_joining_client_with_1011_too() {
    let server = Server::start(test_config(), GameDef::of::<Fragile>())
        .await
        .expect("starts");
    let mut before = connect(&server, "calm").await;
    snapshots(&mut before, 5).await;
    // Its player is never made, so no kick reaches it: the world just lets go of it.
    let joining = bounded(
        "connect",
        tickwire_bots::Client::connect(&server.ws_url(), "boom-at-join"),
    )
    .await;
    let Err(e) = joining else {
        panic!("no welcome can come from a world that panicked while making the player");
    };
    assert!(is_close(&e, 1011), "{e}");
    let (code, reason) = bounded("the close", close_of(&mut before)).await;
    assert_eq!((code, reason.as_str()), (Some(1011), GAME_FAILED_REASON));
    assert_eq!(server.stats().game_panics.get(), 1);
    let mut after = connect(&server, "later").await;
    snapshots(&mut after, 10).await;
    server.shutdown().await;
}
