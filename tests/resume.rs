//! Resume after a dropped connection, on the real server: the room holds the player, the client
//! takes it back with its secret and its last applied tick, and its replica is then exactly
//! that of a client that never dropped; a delta while the room still holds the tick, a full
//! snapshot that replaces the replica after it; expired and reused secrets refused with 4010;
//! a resume while the old connection is still open replaces it (4011); bots that drop every
//! second all resume, verified.

mod common;

#[path = "../examples/minimal_game.rs"]
mod minimal_game;

use common::*;
use minimal_game::{Dot, Dots, Steer};
use std::time::Duration;
use tickwire_bots::client::ConnectOptions;
use tickwire_bots::{Client, SwarmConfig, run_swarm};
use tickwire_protocol::{ClientMsg, PROTOCOL_VERSION, ServerMsg, SnapshotHeader, Tick, close};
use tickwire_server::{Config, GameDef, Server};

async fn dots(config: Config) -> Server {
    Server::start(config, GameDef::of::<Dots>())
        .await
        .expect("starts")
}

/// Reads snapshots on whichever of the two is behind until both have applied the same tick,
/// at or after `at_least`; returns it.
async fn same_tick(a: &mut Client, b: &mut Client, at_least: Tick) -> Tick {
    bounded("the same tick", async {
        let tick = |c: &Client| c.replica.latest().map_or(Tick(0), |v| v.tick);
        loop {
            let (ta, tb) = (tick(a), tick(b));
            if ta == tb && ta >= at_least {
                return ta;
            }
            if ta < at_least || ta < tb {
                a.next_snapshot().await.expect("a applies");
            } else {
                b.next_snapshot().await.expect("b applies");
            }
        }
    })
    .await
}

/// The first snapshot after a resume, applied.
async fn first_after_resume(c: &mut Client) -> SnapshotHeader {
    bounded("the first snapshot after the resume", c.next_snapshot())
        .await
        .expect("applies against the kept replica")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_client_has_exactly_the_replica_of_one_that_never_dropped() {
    let server = dots(test_config()).await;
    let mut steady = connect(&server, "steady").await;
    let mut mover = connect(&server, "mover").await;
    let player = mover.welcome.player;
    let secret = mover.welcome.resume.clone();
    assert_eq!(secret.len(), 22, "16 random bytes, base64");
    for _ in 0..10 {
        mover
            .input(&Steer { dx: 1.0, dy: 0.0 })
            .await
            .expect("input");
        mover.next_snapshot().await.expect("applies");
    }
    let last = mover.replica.latest().expect("a view").tick;

    mover.drop_connection().await;
    let stats = std::sync::Arc::clone(server.stats());
    eventually("the player held", || stats.holds.get() == 1).await;
    // Meanwhile the player stays in the world, stopped, for the others.
    let held_at = snapshots(&mut steady, 3).await.tick;
    let seen = steady
        .replica
        .get::<Dot>(player)
        .expect("the held player is still there");

    mover.resume().await.expect("resumes");
    assert_eq!(mover.welcome.player, player, "the same player entity");
    assert_ne!(mover.welcome.resume, secret, "a new secret every time");
    let first = first_after_resume(&mut mover).await;
    assert_eq!(
        first.baseline,
        Some(last),
        "a delta against the last tick applied, still in the room's history"
    );
    assert_eq!(stats.resumes.get(), 1);

    // At a later tick both replicas are the same, entity for entity, word for word.
    for _ in 0..15 {
        mover
            .input(&Steer { dx: 0.0, dy: 1.0 })
            .await
            .expect("input");
        mover.next_snapshot().await.expect("applies");
    }
    let at = same_tick(&mut steady, &mut mover, held_at).await;
    let (a, b) = (
        steady.replica.latest().expect("view"),
        mover.replica.latest().expect("view"),
    );
    assert_eq!(a.tick, at);
    assert_eq!(a.entities, b.entities, "the resumed replica is exact");
    let now = mover.own::<Dot>().expect("its own dot");
    assert!(now.y > seen.y, "it moves again after the resume");
    // The old secret is spent.
    let mut stale = connect(&server, "stale").await;
    let e = resume_with(&server, &secret).await;
    assert!(is_close(&e, close::RESUME_REFUSED), "{e}");
    snapshots(&mut stale, 1).await;
    server.shutdown().await;
}

/// Opens a connection with `?resume=1` and resumes `secret`; returns how it was refused.
async fn resume_with(server: &Server, secret: &str) -> tickwire_bots::ClientError {
    let url = format!("{}?resume=1", server.ws_url());
    let (ws, _) = tickwire_bots::client::open(&url, &ConnectOptions::default())
        .await
        .expect("upgrades");
    let mut c = Client::from_ws(ws);
    c.send(&ClientMsg::Resume {
        version: PROTOCOL_VERSION,
        secret: secret.to_owned(),
        last_tick: None,
        events_received: 0,
    })
    .await
    .expect("sends");
    let (code, reason) = close_of(&mut c).await;
    tickwire_bots::ClientError::Closed { code, reason }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_history_a_full_snapshot_replaces_the_replica_with_no_ghosts() {
    let server = dots(test_config()).await;
    let mut steady = connect(&server, "steady").await;
    let mut mover = connect(&server, "mover").await;
    let ghost = connect(&server, "ghost").await;
    let ghost_id = ghost.welcome.player;
    let last = snapshots(&mut mover, 5).await.tick;
    assert!(
        mover
            .replica
            .latest()
            .expect("view")
            .entities
            .contains_key(&ghost_id),
        "the mover sees the ghost before the drop"
    );
    mover.drop_connection().await;
    // While the mover is away the ghost leaves, and the room moves on past its history.
    ghost.close().await.expect("closes");
    let history = Config::default().history_ticks;
    snapshot_at_least(&mut steady, Tick(last.0 + history + 10)).await;
    assert!(
        !steady
            .replica
            .latest()
            .expect("view")
            .entities
            .contains_key(&ghost_id),
        "the ghost is gone"
    );
    mover
        .resume()
        .await
        .expect("resumes within the grace period");
    let first = first_after_resume(&mut mover).await;
    assert_eq!(
        first.baseline, None,
        "its last tick left the history: a full snapshot"
    );
    let view = mover.replica.latest().expect("view");
    assert!(
        !view.entities.contains_key(&ghost_id),
        "the full snapshot replaced the replica: no ghost"
    );
    let at = same_tick(&mut steady, &mut mover, first.tick).await;
    assert_eq!(
        steady.replica.latest().expect("view").entities,
        mover.replica.latest().expect("view").entities,
        "exact at tick {at:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_unknown_secret_is_refused_with_4010_and_the_player_leaves() {
    let server = dots(Config {
        resume_grace_ms: 300,
        ..test_config()
    })
    .await;
    let mut steady = connect(&server, "steady").await;
    let mut mover = connect(&server, "mover").await;
    let player = mover.welcome.player;
    snapshots(&mut mover, 3).await;
    mover.drop_connection().await;
    let stats = std::sync::Arc::clone(server.stats());
    eventually("the hold expired", || stats.holds_expired.get() == 1).await;
    let e = mover.resume().await.expect_err("expired");
    assert!(is_close(&e, close::RESUME_REFUSED), "{e}");
    // Expired for good: reconnect gives up at once instead of retrying.
    let e = mover
        .reconnect(tickwire_bots::client::Backoff::default())
        .await
        .expect_err("expired");
    assert!(is_close(&e, close::RESUME_REFUSED), "{e}");
    // The player left through the leave hook: gone from the others' view from the tick after.
    let gone_by = Tick(server.rooms().list()[0].tick() + 2);
    snapshot_at_least(&mut steady, gone_by).await;
    assert!(
        steady.replica.get::<Dot>(player).is_none(),
        "the player left"
    );
    let e = resume_with(&server, "never-given").await;
    assert!(is_close(&e, close::RESUME_REFUSED), "{e}");
    assert_eq!(server.rooms().players(), 1, "the held seat was given back");
    assert_eq!(
        server.rooms().tickets(),
        1,
        "only the steady client's secret"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_while_the_old_connection_is_open_replaces_it_with_4011() {
    let server = dots(test_config()).await;
    let mut old = connect(&server, "roaming").await;
    let last = snapshots(&mut old, 3).await.tick;
    // A new network: the old connection has not failed yet as far as the server knows.
    let url = format!("{}?resume=1", server.ws_url());
    let (ws, _) = tickwire_bots::client::open(&url, &ConnectOptions::default())
        .await
        .expect("upgrades");
    let mut new = Client::from_ws(ws);
    new.send(&ClientMsg::Resume {
        version: PROTOCOL_VERSION,
        secret: old.welcome.resume.clone(),
        last_tick: Some(last),
        events_received: 0,
    })
    .await
    .expect("sends");
    let (code, reason) = close_of(&mut old).await;
    assert_eq!(code, Some(close::REPLACED), "{reason}");
    match bounded("the welcome", new.recv_raw())
        .await
        .expect("a message")
    {
        ServerMsg::Welcome(w) => assert_eq!(w.player, old.welcome.player),
        other => panic!("expected a welcome, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_needs_no_join_token_but_a_resume_connection_must_resume() {
    use tickwire_server::token::{TokenSigner, unix_now};
    let signer =
        TokenSigner::from_key_text(&TokenSigner::generate().expect("key")).expect("reads back");
    let server = Server::start(
        Config {
            join_token_public_key: signer.public_key(),
            ..test_config()
        },
        GameDef::of::<Dots>(),
    )
    .await
    .expect("starts");
    let opts = ConnectOptions {
        token: Some(signer.mint("p", "dots", unix_now() + 60).expect("mints")),
        ..ConnectOptions::default()
    };
    let mut c = bounded(
        "connect",
        Client::connect_with(&server.ws_url(), "p", &opts),
    )
    .await
    .expect("joins with a token");
    snapshots(&mut c, 3).await;
    c.drop_connection().await;
    c.resume()
        .await
        .expect("the secret stands in for the spent token");
    snapshots(&mut c, 3).await;
    // A hello on a resume connection is refused.
    let url = format!("{}?resume=1", server.ws_url());
    let (ws, _) = tickwire_bots::client::open(&url, &ConnectOptions::default())
        .await
        .expect("upgrades");
    let mut sneaky = Client::from_ws(ws);
    sneaky
        .send(&ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            name: "sneaky".into(),
            room: tickwire_protocol::RoomRequest::default(),
        })
        .await
        .expect("sends");
    let (code, _) = close_of(&mut sneaky).await;
    assert_eq!(code, Some(close::UNEXPECTED_MESSAGE));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_that_drop_every_second_all_resume_verified() {
    let server = common::start(test_config()).await;
    let report = bounded(
        "the swarm",
        run_swarm(SwarmConfig {
            url: server.ws_url(),
            bots: 12,
            duration: Duration::from_secs(5),
            drop_every: Some(Duration::from_secs(1)),
            metrics_url: server.metrics_url(),
            behaviours: tickwire::behaviours(),
            ..SwarmConfig::default()
        }),
    )
    .await;
    assert!(report.ok(), "{}", report.summary());
    assert!(report.resumes >= 12, "{}", report.summary());
    assert_eq!(report.resume_failures, 0);
    assert_eq!(report.desyncs, 0);
    assert_eq!(report.dropped, 0);
    assert_eq!(server.stats().resumes.get(), report.resumes);
    server.shutdown().await;
}

/// The dots, but a player held for a resume vanishes at once (a game may do what it likes with
/// a held player, this one despawns it).
struct Vanishing;

impl tickwire_server::Game for Vanishing {
    const NAME: &'static str = "vanishing";
    type Config = ();

    fn build(app: &mut tickwire_server::GameApp, _: &()) -> Result<(), String> {
        app.replicate::<Dot>()
            .input::<Steer>()
            .add_systems(vanish)
            .on_join(|world, _| world.spawn(Dot { x: 1.0, y: 1.0 }).id());
        Ok(())
    }
}

fn vanish(
    mut commands: bevy_ecs::prelude::Commands,
    held: bevy_ecs::prelude::Query<
        bevy_ecs::prelude::Entity,
        bevy_ecs::prelude::Added<tickwire_server::Held>,
    >,
) {
    for e in &held {
        commands.entity(e).despawn();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_player_the_game_despawns_gives_its_seat_back_at_once() {
    let server = Server::start(
        Config {
            resume_grace_ms: 60_000,
            ..test_config()
        },
        GameDef::of::<Vanishing>(),
    )
    .await
    .expect("starts");
    let mut c = connect(&server, "gone").await;
    snapshots(&mut c, 3).await;
    c.drop_connection().await;
    let rooms = std::sync::Arc::clone(server.rooms());
    // Long before the minute of grace: the seat and the secret go with the entity.
    eventually("the seat given back", || {
        rooms.players() == 0 && rooms.tickets() == 0
    })
    .await;
    let stats = server.stats();
    eventually("the player counted out", || stats.clients.get() == 0).await;
    assert_eq!(stats.leaves.get(), 1);
    let e = c.resume().await.expect_err("nothing to resume");
    assert!(is_close(&e, close::RESUME_REFUSED), "{e}");
    server.shutdown().await;
}
