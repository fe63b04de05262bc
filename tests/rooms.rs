//! Rooms on the real server: isolation between rooms, join-or-create under concurrency never
//! passing a room's cap, the process caps, joins by id, operator-made rooms, the listings, the
//! per-room metrics, disposal of empty rooms, and a game that panics in one room while a swarm
//! in another keeps its full snapshot rate with every snapshot verified.

mod common;

#[path = "support/fragile.rs"]
mod fragile;
#[path = "../examples/minimal_game.rs"]
mod minimal_game;

use common::*;
use minimal_game::{Dots, Steer};
use std::collections::HashMap;
use std::time::Duration;
use tickwire_bots::client::ConnectOptions;
use tickwire_bots::swarm::{SwarmConfig, run_swarm};
use tickwire_bots::{Client, ClientError};
use tickwire_protocol::behaviour::{Behaviour, BotView};
use tickwire_protocol::{Replicate, RoomRequest, Welcome, close};
use tickwire_server::sim::driver::GAME_FAILED_REASON;
use tickwire_server::{Config, GameDef, Server};

fn filter(pairs: &[(&str, &str)]) -> RoomRequest {
    RoomRequest::JoinOrCreate {
        game: String::new(),
        filter: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

async fn join(server: &Server, name: &str, room: RoomRequest) -> Result<Client, ClientError> {
    let opts = ConnectOptions {
        room,
        ..ConnectOptions::default()
    };
    bounded(
        "connect",
        Client::connect_with(&server.ws_url(), name, &opts),
    )
    .await
}

/// The close a hello for `room` gets (failing the test if it is welcomed).
async fn refused(server: &Server, name: &str, room: RoomRequest) -> ClientError {
    match join(server, name, room).await {
        Ok(_) => panic!("{name} was welcomed"),
        Err(e) => e,
    }
}

async fn dots(config: Config) -> Server {
    Server::start(config, GameDef::of::<Dots>())
        .await
        .expect("starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_entity_of_one_room_ever_reaches_a_client_of_another() {
    let server = dots(test_config()).await;
    let mut a1 = join(&server, "a1", filter(&[("m", "a")]))
        .await
        .expect("a1");
    let mut a2 = join(&server, "a2", filter(&[("m", "a")]))
        .await
        .expect("a2");
    let mut b = join(&server, "b", filter(&[("m", "b")])).await.expect("b");
    assert_eq!(
        a1.welcome.room, a2.welcome.room,
        "the same filter, one room"
    );
    assert_ne!(
        a1.welcome.room, b.welcome.room,
        "another filter, another room"
    );
    assert_eq!(server.rooms().len(), 2);
    // Each world numbers its own entities, so ids collide across rooms: what must hold is
    // that a client's view is exactly its own room's players, every snapshot, verified. Room
    // a's snapshots have both players from a2's join on.
    let both = a2.welcome.tick;
    for c in [&mut a1, &mut a2] {
        snapshot_at_least(c, both).await;
    }
    let ids = |c: &Client| {
        let mut v: Vec<_> = c
            .replica
            .latest()
            .expect("a view")
            .entities
            .keys()
            .copied()
            .collect();
        v.sort();
        v
    };
    let mut room_a = vec![a1.welcome.player, a2.welcome.player];
    room_a.sort();
    snapshots(&mut b, 1).await;
    let b_before = b.replica.latest().map(|v| v.entities.clone());
    let a1_seen_by_a2 = |a2: &Client, player| {
        let view = a2.replica.latest().expect("view");
        view.entities.get(&player).map(|state| state.words.clone())
    };
    let start = a1_seen_by_a2(&a2, a1.welcome.player);
    // a1 steers: its dot moves for a2, and nothing moves in room b.
    for _ in 0..45 {
        a1.input(&Steer { dx: 1.0, dy: 1.0 }).await.expect("input");
        for c in [&mut a1, &mut a2, &mut b] {
            bounded("snapshot", c.next_snapshot())
                .await
                .expect("applies");
        }
        assert_eq!(ids(&a1), room_a);
        assert_eq!(ids(&a2), room_a);
        assert_eq!(ids(&b), vec![b.welcome.player], "room b holds b alone");
    }
    assert_ne!(
        a1_seen_by_a2(&a2, a1.welcome.player),
        start,
        "a1 moved in room a"
    );
    let b_after = b.replica.latest().map(|v| v.entities.clone());
    assert_eq!(b_after, b_before, "nothing moved in room b");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_join_or_create_never_exceeds_a_rooms_cap() {
    let server = dots(Config {
        room_max_players: 3,
        ..test_config()
    })
    .await;
    let url = server.ws_url();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let url = url.clone();
        tasks.spawn(async move {
            Client::connect_with(&url, &format!("c{i}"), &ConnectOptions::default()).await
        });
    }
    let mut clients = Vec::new();
    while let Some(r) = bounded("joins", tasks.join_next()).await {
        clients.push(r.expect("task").expect("every client gets a seat"));
    }
    let mut per_room: HashMap<String, usize> = HashMap::new();
    for c in &clients {
        *per_room.entry(c.welcome.room.clone()).or_default() += 1;
    }
    assert!(per_room.values().all(|&n| n <= 3), "{per_room:?}");
    // Join-or-create fills the open room before making one: 6 full rooms and one of 2.
    assert_eq!(per_room.len(), 7, "{per_room:?}");
    let rooms = server.rooms();
    assert_eq!(rooms.players(), 20);
    for info in rooms.list() {
        assert_eq!(info.players(), per_room[info.id()], "{}", info.id());
        assert_eq!(info.locked(), info.players() == 3);
    }
    // A join by id of a full room is refused with 4008; of an open one, accepted.
    let full = per_room
        .iter()
        .find(|(_, n)| **n == 3)
        .expect("a full room")
        .0;
    let e = refused(&server, "late", RoomRequest::Join { id: full.clone() }).await;
    assert!(is_close(&e, close::ROOM_FULL), "{e}");
    let open = per_room
        .iter()
        .find(|(_, n)| **n == 2)
        .expect("an open room")
        .0;
    let c = join(&server, "late", RoomRequest::Join { id: open.clone() })
        .await
        .expect("a seat is free");
    assert_eq!(&c.welcome.room, open);
    // The public listing says the same, on the game port.
    let (status, body) = request(server.local_addr(), "GET", "/rooms").await;
    assert_eq!(status, 200, "{body}");
    let listing: serde_json::Value = serde_json::from_str(&body).expect("json");
    let listed = listing.as_array().expect("an array");
    assert_eq!(listed.len(), 7);
    for r in listed {
        assert_eq!(r["game"], "dots");
        assert_eq!(r["cap"], 3);
        assert_eq!(r["players"], 3, "every room is full now: {r}");
        assert_eq!(r["locked"], true);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_caps_and_bad_requests_get_clear_refusals() {
    let server = dots(Config {
        max_rooms: 2,
        max_clients: 3,
        room_max_players: 1,
        ..test_config()
    })
    .await;
    let _a = join(&server, "a", RoomRequest::default()).await.expect("a");
    let _b = join(&server, "b", RoomRequest::default()).await.expect("b");
    // Both rooms full, and no third may be made.
    let e = refused(&server, "c", RoomRequest::default()).await;
    assert!(is_close(&e, close::TRY_AGAIN_LATER), "{e}");
    assert!(e.to_string().contains("2 rooms open"), "{e}");
    let e = refused(&server, "d", RoomRequest::Join { id: "nope".into() }).await;
    assert!(is_close(&e, close::NO_SUCH_ROOM), "{e}");
    let other_game = RoomRequest::JoinOrCreate {
        game: "chess".into(),
        filter: Vec::new(),
    };
    let e = refused(&server, "e", other_game).await;
    assert!(is_close(&e, close::NO_SUCH_ROOM), "{e}");
    assert!(e.to_string().contains("dots"), "says what it runs: {e}");
    let too_many = RoomRequest::Create {
        game: String::new(),
        props: (0..9).map(|i| (format!("k{i}"), String::new())).collect(),
    };
    let e = refused(&server, "f", too_many).await;
    assert!(is_close(&e, close::POLICY_VIOLATION), "{e}");
    let stats = server.stats();
    assert_eq!(stats.room_refusals.get(), 3);
    assert_eq!(stats.rooms.get(), 2);
    server.shutdown().await;

    // The players cap holds over all rooms.
    let server = dots(Config {
        max_clients: 2,
        ..test_config()
    })
    .await;
    let _a = join(&server, "a", filter(&[("r", "1")])).await.expect("a");
    let _b = join(&server, "b", filter(&[("r", "2")])).await.expect("b");
    let e = refused(&server, "c", filter(&[("r", "3")])).await;
    assert!(is_close(&e, close::TRY_AGAIN_LATER), "{e}");
    assert!(e.to_string().contains("2 players"), "{e}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_rooms_are_disposed_after_the_grace_period_and_their_series_go_with_them() {
    let server = dots(Config {
        room_empty_grace_ms: 200,
        ..test_config()
    })
    .await;
    let admin = server.admin_addr().expect("admin");
    // The operator makes a room; a client joins it by id, plays, and leaves.
    let (status, body) = request(admin, "POST", "/rooms?mode=duel&map=big%20one").await;
    assert_eq!(status, 201, "{body}");
    let made: serde_json::Value = serde_json::from_str(&body).expect("json");
    let id = made["id"].as_str().expect("an id").to_owned();
    assert_eq!(made["props"]["map"], "big one");
    let mut c = join(&server, "p", RoomRequest::Join { id: id.clone() })
        .await
        .expect("joins the operator's room");
    snapshots(&mut c, 10).await;
    let (status, body) = request(admin, "GET", &format!("/rooms/{id}")).await;
    assert_eq!(status, 200, "{body}");
    let detail: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(detail["players"], 1);
    assert!(detail["ticks"].as_u64().expect("ticks") >= 10, "{detail}");
    let (_, metrics) = request(admin, "GET", "/metrics").await;
    let series = format!("tickwire_room_players{{room=\"{id}\",game=\"dots\"}}");
    assert_eq!(sample(&metrics, &series), 1.0);
    c.close().await.expect("closes");

    // Empty now: disposed after the grace period.
    let rooms = std::sync::Arc::clone(server.rooms());
    eventually("the empty room disposed", || rooms.get(&id).is_none()).await;
    let stats = server.stats();
    assert_eq!(stats.rooms_disposed.get(), 1);
    assert_eq!(stats.rooms.get(), 0);
    let (_, metrics) = request(admin, "GET", "/metrics").await;
    assert!(
        !metrics.contains(&format!("room=\"{id}\"")),
        "its series are gone"
    );
    let (status, _) = request(admin, "GET", &format!("/rooms/{id}")).await;
    assert_eq!(status, 404);
    let e = refused(&server, "q", RoomRequest::Join { id }).await;
    assert!(is_close(&e, close::NO_SUCH_ROOM), "{e}");
    // With no room open the idle server is healthy.
    let (status, body) = request(admin, "GET", "/healthz").await;
    assert_eq!(status, 200, "{body}");
    server.shutdown().await;
}

/// A bot of the dots: steers in a circle.
struct Circler(u64);

impl Behaviour for Circler {
    fn next_input(&mut self, _bot: &BotView<'_>, out: &mut Vec<i64>) {
        self.0 += 1;
        let a = self.0 as f32 / 10.0;
        Steer {
            dx: a.cos(),
            dy: a.sin(),
        }
        .write(out);
    }
}

fn circler(seed: u64, _: &Welcome) -> Box<dyn Behaviour> {
    Box::new(Circler(seed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_panic_in_one_room_leaves_the_bots_of_another_at_full_rate() {
    let server = Server::start(test_config(), GameDef::of::<fragile::Fragile>())
        .await
        .expect("starts");
    let swarm = tokio::spawn(run_swarm(SwarmConfig {
        url: server.ws_url(),
        bots: 10,
        duration: Duration::from_secs(4),
        metrics_url: Some(String::new()),
        behaviours: vec![("fragile".into(), circler)],
        connect: ConnectOptions {
            room: filter(&[("calm", "yes")]),
            ..ConnectOptions::default()
        },
        ..SwarmConfig::default()
    }));
    let rooms = std::sync::Arc::clone(server.rooms());
    eventually("the swarm seated", || {
        rooms.list().iter().any(|r| r.players() == 10)
    })
    .await;
    // Another room, two players in it, then the bomb.
    let fragile = filter(&[("fragile", "yes")]);
    let mut victim = join(&server, "victim", fragile.clone()).await.expect("v");
    snapshots(&mut victim, 5).await;
    let bomber = join(&server, "boom", fragile).await;
    let (code, reason) = close_of(&mut victim).await;
    assert_eq!((code, reason.as_str()), (Some(1011), GAME_FAILED_REASON));
    if let Err(e) = bomber {
        assert!(is_close(&e, 1011), "{e}");
    }
    let stats = server.stats();
    assert_eq!(stats.game_panics.get(), 1);
    eventually("the panicked room gone", || rooms.len() == 1).await;

    let report = bounded("swarm", swarm).await.expect("swarm task");
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.connected, 10);
    assert_eq!(report.rooms, 1);
    assert_eq!(report.desyncs, 0);
    assert!(
        report.min_snapshots_per_bot_per_s >= 27.0,
        "{}",
        report.summary()
    );
    server.shutdown().await;
}
