//! The arena simulated with no sockets: the engine's socket-less clients drive the real world,
//! and every frame they get is applied to a replica and verified.

use crate::Arena;
use crate::components::*;
use crate::map::Map;
use bevy_ecs::prelude::*;
use crossbeam_channel::Sender;
use glam::{IVec2, Vec2};
use std::sync::Arc;
use tickwire_protocol::{NetId, Replicate};
use tickwire_server::boundary::{ClientEvent, ClientId, JoinRequest};
use tickwire_server::harness::SimClient;
use tickwire_server::sim::Sim;
use tickwire_server::{Config, GameDef, Net, ServerStats};

struct Harness {
    sim: Sim,
    joins: Sender<JoinRequest>,
    next: u64,
}

fn receive_and_ack(c: &mut SimClient) {
    let got = c.receive(true).expect("replica matches the server");
    if let Some(t) = got.newest {
        c.send(ClientEvent::Ack(t));
    }
}

impl Harness {
    fn new() -> Harness {
        let (joins, rx) = crossbeam_channel::bounded(16);
        let sim = Sim::new(
            &Config::default(),
            &GameDef::of::<Arena>(),
            rx,
            Arc::new(ServerStats::default()),
        )
        .expect("the arena builds");
        Harness {
            sim,
            joins,
            next: 0,
        }
    }

    fn join(&mut self) -> SimClient {
        self.next += 1;
        let (mut c, join) = SimClient::new(ClientId(self.next), "t", 16, 64);
        self.joins.try_send(join).expect("room");
        self.sim.tick();
        receive_and_ack(&mut c);
        assert_ne!(c.player, NetId(0), "welcomed");
        c
    }

    fn entity(&mut self, id: NetId) -> Entity {
        let world = self.sim.world_mut();
        let mut q = world.query::<(Entity, &Net)>();
        q.iter(world)
            .find(|(_, n)| n.0 == id)
            .map(|(e, _)| e)
            .expect("entity exists")
    }

    /// Puts a player at a position given in world units.
    fn place(&mut self, id: NetId, p: Vec2) {
        let e = self.entity(id);
        self.sim
            .world_mut()
            .get_mut::<Position>(e)
            .expect("has position")
            .0 = (p * POS_SCALE).round().as_ivec2();
    }

    fn player(&mut self, id: NetId) -> (IVec2, Vitals) {
        let e = self.entity(id);
        let w = self.sim.world();
        (
            w.get::<Position>(e).expect("position").0,
            *w.get::<Vitals>(e).expect("vitals"),
        )
    }

    fn projectile_count(&mut self) -> usize {
        let world = self.sim.world_mut();
        world.query::<&Shot>().iter(world).count()
    }
}

fn send(c: &mut SimClient, input: ArenaInput) {
    let mut w = Vec::new();
    input.write(&mut w);
    assert!(c.send_input(&w, None));
}

#[test]
fn bad_settings_in_the_arena_section_stop_start_up_with_the_reason() {
    let refusal = |section: &str| {
        let mut config = Config::default();
        config.games.insert(
            "arena".into(),
            toml::Value::Table(toml::from_str(section).expect("toml")),
        );
        let (_, rx) = crossbeam_channel::bounded(1);
        Sim::new(
            &config,
            &GameDef::of::<Arena>(),
            rx,
            Arc::new(ServerStats::default()),
        )
        .err()
        .expect("refused")
        .to_string()
    };
    let err = refusal("player_speeed = 3.0");
    assert!(
        err.contains("[games.arena]") && err.contains("player_speeed"),
        "{err}"
    );
    let err = refusal("projectile_speed = 9000.0");
    assert!(err.contains("too fast"), "{err}");
    let err = refusal("map = '/no/such/map.toml'");
    assert!(err.contains("cannot read map"), "{err}");
}

#[test]
fn the_welcome_carries_the_schema_walls_and_rules() {
    let mut h = Harness::new();
    let c = h.join();
    let w = c.welcome.as_ref().expect("welcomed");
    assert_eq!(w.schema.game, "arena");
    let names: Vec<_> = w
        .schema
        .components
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["Position", "Aim", "Vitals", "Shot"]);
    let map = Map::load(None).expect("map");
    let walls: Vec<Rect> = w.statics::<Rect>().collect();
    assert_eq!(walls, map.walls);
    let rules: Vec<Rules> = w.statics::<Rules>().collect();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].width, map.width);
    assert_eq!(rules[0].player_speed, 250.0);
}

#[test]
fn shots_damage_kill_score_and_the_dead_respawn() {
    let mut h = Harness::new();
    let mut a = h.join();
    let mut b = h.join();
    h.place(a.player, Vec2::new(1300.0, 1300.0));
    h.place(b.player, Vec2::new(1500.0, 1300.0));
    let respawn_ticks = 45;

    let mut saw_projectile = false;
    let mut died_at = None;
    for tick in 0..400 {
        // A holds still, aims east and presses fire every tick; B does nothing.
        send(&mut a, ArenaInput::new(Vec2::ZERO, 0.0, true));
        h.sim.tick();
        receive_and_ack(&mut a);
        receive_and_ack(&mut b);
        saw_projectile |= h.projectile_count() > 0;
        let (_, victim) = h.player(b.player);
        if died_at.is_none() && victim.hp == 0 {
            died_at = Some(tick);
            let (_, shooter) = h.player(a.player);
            assert_eq!(shooter.score, 1, "the kill scores for the shooter");
        }
        if let Some(t) = died_at
            && tick == t + respawn_ticks
        {
            break;
        }
    }
    assert!(saw_projectile);
    assert!(died_at.is_some(), "four hits of 25 kill");
    let (pos, victim) = h.player(b.player);
    assert_eq!(victim.hp, MAX_HP, "respawned with full hit points");
    assert!(h.sim.world().resource::<Map>().is_free(pos, to_q(16.0)));
    // Both replicas saw the projectiles come and go and still match the server exactly.
    assert!(a.frames > 50 && b.frames > 50);
    let replica = a.replica.as_ref().expect("replica");
    assert_eq!(replica.get::<Vitals>(a.player).map(|v| v.score), Some(1));
    // The kill went out on the kill feed, once, to both.
    let kill = Kill {
        killer: a.player,
        victim: b.player,
    };
    for c in [&a, &b] {
        let feed: Vec<Kill> = c
            .server_events
            .iter()
            .map(|(_, e)| Kill::read(&e.words))
            .collect();
        assert_eq!(feed, vec![kill], "exactly one kill on the feed");
        assert_eq!(c.server_events[0].0, 1, "the first event");
    }
}

#[test]
fn walls_stop_players_flush() {
    let mut h = Harness::new();
    let mut c = h.join();
    // West of the central cross's vertical bar (x 1900..2100, y 1500..2500).
    h.place(c.player, Vec2::new(1700.0, 1700.0));
    for _ in 0..90 {
        send(&mut c, ArenaInput::new(Vec2::X, 0.0, false));
        h.sim.tick();
        receive_and_ack(&mut c);
    }
    let (pos, _) = h.player(c.player);
    assert_eq!(
        pos.x,
        to_q(1900.0 - 16.0),
        "stopped flush against the vertical bar"
    );
    assert_eq!(pos.y, to_q(1700.0));
    let replica = c.replica.as_ref().expect("replica");
    assert_eq!(replica.get::<Position>(c.player), Some(Position(pos)));
}
