//! The whiteboard simulated with no sockets, every frame verified by the client's replica.

use super::*;
use std::sync::Arc;
use tickwire_server::boundary::{ClientEvent, ClientId};
use tickwire_server::harness::SimClient;
use tickwire_server::sim::Sim;
use tickwire_server::{Config, GameDef, ServerStats};

fn sim(
    config: &Config,
) -> (
    Sim,
    crossbeam_channel::Sender<tickwire_server::boundary::JoinRequest>,
) {
    let (tx, rx) = crossbeam_channel::bounded(8);
    let sim = Sim::new(
        config,
        &GameDef::of::<Whiteboard>(),
        rx,
        Arc::new(ServerStats::default()),
    )
    .expect("builds");
    (sim, tx)
}

fn receive(c: &mut SimClient) {
    let got = c.receive(true).expect("verifies");
    if let Some(t) = got.newest {
        c.send(ClientEvent::Ack(t));
    }
}

fn send(c: &mut SimClient, d: Draw) {
    let mut w = Vec::new();
    d.write(&mut w);
    assert!(c.send_input(&w, None));
}

fn strokes(c: &SimClient) -> Vec<Stroke> {
    let r = c.replica.as_ref().expect("welcomed");
    r.each::<Stroke>().map(|(_, s)| s).collect()
}

#[test]
fn pen_moves_draw_strokes_that_everyone_sees_and_clear_removes_them_all() {
    let (mut sim, joins) = sim(&Config::default());
    let (mut a, ja) = SimClient::new(ClientId(1), "alice", 16, 64);
    let (mut b, jb) = SimClient::new(ClientId(2), "bob", 16, 64);
    joins.send(ja).expect("room");
    joins.send(jb).expect("room");
    sim.tick();
    receive(&mut a);
    receive(&mut b);
    let board: Vec<Board> = a.welcome.as_ref().expect("w").statics::<Board>().collect();
    assert_eq!(board[0].size, BOARD_SIZE);
    // A draws a line of 10 pieces.
    for i in 0..11 {
        send(
            &mut a,
            Draw {
                x: 100 + 10 * i,
                y: 200,
                down: true,
                colour: 3,
                width: 5,
                clear: false,
            },
        );
        sim.tick();
        receive(&mut a);
        receive(&mut b);
    }
    let seen = strokes(&b);
    assert_eq!(seen.len(), 10);
    assert!(seen.iter().all(|s| s.author == a.player && s.colour == 3));
    let r = b.replica.as_ref().expect("r");
    assert_eq!(r.get::<Name>(a.player), Some(Name("alice".into())));
    assert_eq!(r.get::<Cursor>(a.player), Some(Cursor { x: 200, y: 200 }));
    // B clears: every stroke goes in one snapshot.
    send(
        &mut b,
        Draw {
            clear: true,
            ..Draw::default()
        },
    );
    sim.tick();
    receive(&mut a);
    assert!(strokes(&a).is_empty());
}

#[test]
fn the_stroke_cap_drops_the_oldest_and_the_player_cap_refuses() {
    let mut games = tickwire_server::Config::default().games;
    let mut section = toml::Table::new();
    section.insert("max_strokes".into(), toml::Value::Integer(5));
    section.insert("max_players".into(), toml::Value::Integer(1));
    games.insert("whiteboard".into(), toml::Value::Table(section));
    let (mut sim, joins) = sim(&Config {
        games,
        ..Config::default()
    });
    let (mut a, ja) = SimClient::new(ClientId(1), "a", 16, 64);
    let (b, jb) = SimClient::new(ClientId(2), "b", 16, 64);
    joins.send(ja).expect("room");
    joins.send(jb).expect("room");
    sim.tick();
    receive(&mut a);
    let (code, reason) = b.kick.reason().expect("refused");
    assert_eq!(code, tickwire_protocol::close::TRY_AGAIN_LATER);
    assert!(reason.contains("full"), "{reason}");
    for i in 0..9 {
        send(
            &mut a,
            Draw {
                x: 10 * i,
                y: 0,
                down: true,
                ..Draw::default()
            },
        );
        sim.tick();
        receive(&mut a);
    }
    let kept = strokes(&a);
    assert_eq!(kept.len(), 5, "the cap");
    assert!(kept.iter().all(|s| s.from.0 >= 30), "the oldest went first");
}
