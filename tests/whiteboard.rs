//! The second game over real sockets: scribbling bots fill the board with strokes that never
//! change; a late joiner receives them all in its first snapshot and verifies it; nobody ever
//! desyncs; a full board refuses a join with a clear close.

mod common;

use common::*;
use std::time::Duration;
use tickwire_bots::{ClientError, SwarmConfig, run_swarm};
use tickwire_protocol::close;
use tickwire_server::Config;
use tickwire_whiteboard::{Cursor, Draw, Stroke};

fn whiteboard() -> Config {
    Config {
        game: "whiteboard".into(),
        ..test_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_receives_and_verifies_a_thousand_strokes_and_bots_never_desync() {
    let server = start(whiteboard()).await;
    let mut watcher = connect(&server, "watcher").await;
    assert_eq!(watcher.welcome.schema.game, "whiteboard");
    let swarm = tokio::spawn(run_swarm(SwarmConfig {
        url: server.ws_url(),
        bots: 8,
        duration: Duration::from_secs(8),
        seed: 11,
        // Debug builds on a shared machine: the rate floor is for release load runs.
        min_rate_fraction: 0.5,
        metrics_url: server.metrics_url(),
        behaviours: tickwire::behaviours(),
        ..SwarmConfig::default()
    }));
    // The watcher follows the board until it holds 1,100 strokes.
    bounded("1,100 strokes on the board", async {
        loop {
            watcher.next_snapshot().await.expect("the watcher verifies");
            if watcher.replica.each::<Stroke>().count() >= 1100 {
                return;
            }
        }
    })
    .await;
    // The late joiner: its first snapshot is full, holds every stroke, and verifies.
    let mut late = connect(&server, "late").await;
    let first = bounded("the first snapshot", late.next_snapshot())
        .await
        .expect("the late joiner's first snapshot verifies");
    assert_eq!(first.baseline, None, "a full snapshot");
    let strokes = late.replica.each::<Stroke>().count();
    assert!(strokes >= 1000, "{strokes} strokes in the first snapshot");
    let view = late.replica.latest().expect("view");
    assert!(view.entities.len() > strokes, "cursors too");
    // Deltas against it keep verifying while the bots draw on.
    snapshots(&mut late, 15).await;
    assert!(late.replica.each::<Cursor>().count() >= 8);

    let report = bounded("the swarm", swarm).await.expect("swarm task");
    assert_eq!(report.connected, 8, "{}", report.summary());
    assert_eq!(report.failed + report.dropped, 0, "{}", report.summary());
    assert_eq!(report.desyncs, 0, "{}", report.summary());
    assert!(report.ok(), "{}", report.summary());

    // One clear removes every stroke at once.
    late.input(&Draw {
        clear: true,
        ..Draw::default()
    })
    .await
    .expect("send");
    bounded("the board to clear", async {
        loop {
            late.next_snapshot().await.expect("verifies");
            if late.replica.each::<Stroke>().count() == 0 {
                return;
            }
        }
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_full_board_is_locked_and_a_second_board_opens() {
    let mut config = whiteboard();
    let mut section = toml::Table::new();
    section.insert("max_players".into(), toml::Value::Integer(1));
    config
        .games
        .insert("whiteboard".into(), toml::Value::Table(section));
    let server = start(config).await;
    let mut first = connect(&server, "first").await;
    snapshots(&mut first, 1).await;
    // The game's cap is its rooms' cap: a join by id of the full board is refused...
    let opts = tickwire_bots::client::ConnectOptions {
        room: tickwire_protocol::RoomRequest::Join {
            id: first.welcome.room.clone(),
        },
        ..Default::default()
    };
    let refused = bounded(
        "the refusal",
        tickwire_bots::Client::connect_with(&server.ws_url(), "second", &opts),
    )
    .await;
    match refused {
        Err(ClientError::Closed { code, reason }) => {
            assert_eq!(code, Some(close::ROOM_FULL));
            assert!(reason.contains("full (1 players)"), "{reason}");
        }
        Ok(_) => panic!("joined a full board"),
        Err(e) => panic!("{e}"),
    }
    // ...and join-or-create opens a second board.
    let mut second = connect(&server, "second").await;
    assert_ne!(second.welcome.room, first.welcome.room);
    snapshots(&mut second, 1).await;
    assert_eq!(server.rooms().len(), 2);
    // The player on the board never noticed.
    snapshots(&mut first, 5).await;
    assert_eq!(
        first.own::<Cursor>().map(|c| c.x),
        Some(tickwire_whiteboard::BOARD_SIZE / 2)
    );
    server.shutdown().await;
}
