//! Simulation tests: the world driven by manual ticks through the same channels the sessions
//! use, with no sockets. Every frame a client gets is applied to a replica and verified.

use super::Sim;
use super::components::{MAX_HP, Net, Player, Position, Projectile};
use super::map::Map;
use crate::boundary::{ClientEvent, ClientId, JoinRequest, LeaveReason};
use crate::config::Config;
use crate::harness::SimClient;
use crate::stats::ServerStats;
use bevy_ecs::prelude::*;
use crossbeam_channel::Sender;
use glam::{IVec2, Vec2};
use std::sync::Arc;
use tickwire_protocol::codec::decode_server;
use tickwire_protocol::{Input, NetId, ServerMsg};

type TestClient = SimClient;

/// What the tests do with a client after each tick.
trait ReceiveAndAck {
    /// Applies every queued frame to the replica (verifying it) and acks the newest snapshot.
    fn receive_and_ack(&mut self);
}

impl ReceiveAndAck for SimClient {
    fn receive_and_ack(&mut self) {
        let got = self.receive(true).expect("replica matches the server");
        if let Some(t) = got.newest {
            self.send(ClientEvent::Ack(t));
        }
    }
}

struct Harness {
    sim: Sim,
    joins: Sender<JoinRequest>,
    stats: Arc<ServerStats>,
    next: u64,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(&Config::default())
    }

    fn with(config: &Config) -> Harness {
        let (joins, rx) = crossbeam_channel::bounded(16);
        let stats = Arc::new(ServerStats::default());
        let sim = Sim::new(
            config,
            Map::load(None).expect("map"),
            rx,
            Arc::clone(&stats),
        );
        Harness {
            sim,
            joins,
            stats,
            next: 0,
        }
    }

    fn join(&mut self) -> TestClient {
        self.join_with_outbox(64)
    }

    fn join_with_outbox(&mut self, outbox_len: usize) -> TestClient {
        self.next += 1;
        let (mut c, join) = SimClient::new(
            ClientId(self.next),
            &format!("t{}", self.next),
            16,
            outbox_len,
        );
        self.joins.try_send(join).expect("join queue has room");
        self.sim.tick();
        c.receive_and_ack();
        assert_ne!(c.player, NetId(0), "welcomed");
        c
    }

    fn entity(&mut self, id: NetId) -> Option<Entity> {
        let world = self.sim.world_mut();
        let mut q = world.query::<(Entity, &Net)>();
        q.iter(world).find(|(_, n)| n.0 == id).map(|(e, _)| e)
    }

    /// Puts a player at a position given in world units.
    fn place(&mut self, id: NetId, p: Vec2) {
        let e = self.entity(id).expect("entity exists");
        self.sim
            .world_mut()
            .get_mut::<Position>(e)
            .expect("has position")
            .0 = (p * tickwire_protocol::quant::POS_SCALE).round().as_ivec2();
    }

    /// A player's position (position units) and state.
    fn player(&mut self, id: NetId) -> (IVec2, Player) {
        let e = self.entity(id).expect("entity exists");
        let w = self.sim.world();
        let pos = w.get::<Position>(e).expect("position").0;
        (pos, w.get::<Player>(e).expect("player").clone())
    }

    fn projectile_count(&mut self) -> usize {
        let world = self.sim.world_mut();
        world.query::<&Projectile>().iter(world).count()
    }
}

#[test]
fn shots_damage_kill_score_and_the_dead_respawn() {
    let mut h = Harness::new();
    let mut a = h.join();
    let mut b = h.join();
    h.place(a.player, Vec2::new(1300.0, 1300.0));
    h.place(b.player, Vec2::new(1500.0, 1300.0));
    let rules_respawn = Config::default().ms_to_ticks(Config::default().game.respawn_delay_ms);

    let mut saw_projectile = false;
    let mut died_at = None;
    for tick in 0..400 {
        // A holds still, aims east and presses fire every tick; B does nothing.
        a.send_input(Input {
            aim: 0.0,
            fire: true,
            ..Input::default()
        });
        h.sim.tick();
        a.receive_and_ack();
        b.receive_and_ack();
        saw_projectile |= h.projectile_count() > 0;
        let (_, victim) = h.player(b.player);
        if died_at.is_none() && victim.hp == 0 {
            died_at = Some(tick);
            let (_, shooter) = h.player(a.player);
            assert_eq!(shooter.score, 1, "the kill scores for the shooter");
        }
        if let Some(t) = died_at
            && tick == t + rules_respawn
        {
            break;
        }
    }
    assert!(saw_projectile);
    assert!(died_at.is_some(), "four hits of 25 kill");
    let (pos, victim) = h.player(b.player);
    assert_eq!(victim.hp, MAX_HP, "respawned with full hit points");
    assert!(
        h.sim
            .world()
            .resource::<Map>()
            .is_free(pos, tickwire_protocol::quant::to_q(16.0))
    );
    // Both replicas saw the projectiles come and go and still match the server exactly.
    assert!(a.frames > 50 && b.frames > 50);
}

#[test]
fn walls_stop_players_flush() {
    let mut h = Harness::new();
    let mut c = h.join();
    // West of the central cross's vertical bar (x 1900..2100, y 1500..2500).
    h.place(c.player, Vec2::new(1700.0, 1700.0));
    for _ in 0..90 {
        c.send_input(Input {
            move_x: 1.0,
            ..Input::default()
        });
        h.sim.tick();
        c.receive_and_ack();
    }
    let (pos, _) = h.player(c.player);
    assert_eq!(
        pos.x,
        tickwire_protocol::quant::to_q(1900.0 - 16.0),
        "stopped flush against the vertical bar"
    );
    assert_eq!(pos.y, tickwire_protocol::quant::to_q(1700.0));
    let Some(tickwire_protocol::EntityState::Player(state)) = c
        .replica
        .latest()
        .and_then(|v| v.entities.get(&c.player))
        .copied()
    else {
        panic!("own player in replica");
    };
    assert_eq!((i32::from(state.x), i32::from(state.y)), (pos.x, pos.y));
}

#[test]
fn a_closed_session_removes_its_player_with_its_reason() {
    let mut h = Harness::new();
    let mut stays = h.join();
    let mut leaves = h.join();
    *leaves.leave.lock() = Some(LeaveReason::PeerClosed);
    leaves.events = None; // The session drops its sender when it ends.
    h.sim.tick();
    assert!(h.entity(leaves.player).is_none());
    assert!(h.entity(stays.player).is_some());
    assert_eq!(h.stats.leaves.get(), 1);
    h.sim.tick();
    stays.receive_and_ack();
    let view = stays.replica.latest().expect("view");
    assert!(
        !view.entities.contains_key(&leaves.player),
        "removal replicated"
    );
    assert!(view.entities.contains_key(&stays.player));
    drop(leaves.outbox);
}

#[test]
fn a_client_that_stops_reading_skips_snapshots_and_catches_up() {
    let mut h = Harness::new();
    let mut c = h.join();
    // Outbox of 64 in this harness: 100 ticks without reading overflow it.
    for _ in 0..100 {
        h.sim.tick();
    }
    assert!(h.stats.snapshots_dropped.get() > 0);
    // Reading again: every queued frame applies, then deltas resume.
    c.receive_and_ack();
    for _ in 0..5 {
        h.sim.tick();
        c.receive_and_ack();
    }
    let latest = c.replica.latest().expect("view").tick;
    assert_eq!(latest, h.sim.current_tick().minus(1));
}

#[test]
fn clients_whose_acks_lag_several_ticks_still_get_deltas() {
    // Over a real network an ack arrives a few ticks after its snapshot was sent; a client
    // must not be stuck receiving full snapshots because of it.
    let mut h = Harness::new();
    let mut c = h.join();
    let mut received = Vec::new();
    let mut last_baseline_age = None;
    for _ in 0..40 {
        h.sim.tick();
        while let Ok(bytes) = c.outbox.try_recv() {
            if let ServerMsg::Snapshot(s) = decode_server(&bytes).expect("decodes") {
                c.replica
                    .apply(&s.header, &s.body)
                    .expect("replica matches the server");
                received.push(s.header.tick);
                last_baseline_age = s.header.baseline.map(|b| s.header.tick.since(b));
            }
        }
        // Ack the snapshot from three ticks ago.
        if received.len() >= 3 {
            let t = received[received.len() - 3];
            let events = c.events.as_ref().expect("connected");
            events.try_send(ClientEvent::Ack(t)).expect("room");
        }
    }
    assert_eq!(last_baseline_age, Some(3), "deltas against the lagging ack");
}

#[test]
fn a_client_that_skips_spread_out_snapshots_is_closed_4005() {
    let config = Config {
        skip_window_ticks: 60,
        max_skipped_fraction: 0.5,
        ..Config::default()
    };
    let mut h = Harness::with(&config);
    let mut steady = h.join();
    // An outbox of one frame, read every third tick: two skips in three, never 90 in a row.
    let mut slow = h.join_with_outbox(1);
    let mut kicked_at = None;
    for t in 0..200 {
        h.sim.tick();
        steady.receive_and_ack();
        if t % 3 == 0 {
            slow.receive_and_ack();
        }
        if let Some((code, reason)) = slow.kick.reason() {
            assert_eq!(code, tickwire_protocol::close::TOO_SLOW);
            assert!(reason.contains("of the last 60"), "{reason}");
            kicked_at = Some(t);
            break;
        }
    }
    let t = kicked_at.expect("closed for skipping, though never 90 in a row");
    // The join tick is the window's first snapshot; the loop's ticks count from the second.
    assert!(t + 2 >= 60, "judged only on a full window: {t}");
    assert_eq!(h.stats.slow_kicks.get(), 1);
    assert!(steady.kick.reason().is_none());
}

#[test]
fn a_client_that_never_acks_is_kicked_4006_and_one_that_acks_is_not() {
    let config = Config {
        ack_timeout_ms: 1000,
        ..Config::default()
    };
    let mut h = Harness::with(&config);
    let mut acks = h.join();
    let mut silent = h.join();
    for _ in 0..40 {
        h.sim.tick();
        acks.receive_and_ack();
        // Read but never ack.
        while silent.outbox.try_recv().is_ok() {}
    }
    let (code, reason) = silent.kick.reason().expect("kicked");
    assert_eq!(code, tickwire_protocol::close::NO_ACKS);
    assert!(reason.contains("no acks"), "{reason}");
    assert!(acks.kick.reason().is_none());
    assert_eq!(h.stats.no_ack_kicks.get(), 1);
}

#[test]
fn resync_sends_a_full_snapshot_and_refuses_older_acks() {
    let mut h = Harness::new();
    let mut c = h.join();
    for _ in 0..5 {
        h.sim.tick();
        c.receive_and_ack();
    }
    // The client drops its replica (as after a desync) and says so; an ack it sent before
    // that arrives after.
    let old = c.replica.latest().expect("view").tick;
    c.replica.clear();
    let events = c.events.as_ref().expect("connected");
    events.try_send(ClientEvent::Resync(old)).expect("room");
    events.try_send(ClientEvent::Ack(old)).expect("room");
    h.sim.tick();
    let mut baselines = Vec::new();
    while let Ok(bytes) = c.outbox.try_recv() {
        if let ServerMsg::Snapshot(s) = decode_server(&bytes).expect("decodes") {
            baselines.push(s.header.baseline);
            c.replica
                .apply(&s.header, &s.body)
                .expect("the full snapshot applies to an empty replica");
            c.events
                .as_ref()
                .expect("connected")
                .try_send(ClientEvent::Ack(s.header.tick))
                .expect("room");
        }
    }
    assert_eq!(baselines, vec![None], "the next snapshot is full");
    assert_eq!(h.stats.resyncs.get(), 1);
    assert!(h.stats.acks_ignored.get() >= 1, "the stale ack");
    // Deltas resume against the full snapshot.
    h.sim.tick();
    c.receive_and_ack();
    h.sim.tick();
    c.receive_and_ack();
    assert!(c.replica.latest().expect("view").tick > old);
}

#[test]
fn ids_after_the_wrap_skip_live_entities_and_baselines() {
    let mut h = Harness::new();
    let mut clients = vec![h.join(), h.join(), h.join()];
    let ids: Vec<NetId> = clients.iter().map(|c| c.player).collect();
    assert_eq!(ids, vec![NetId(1), NetId(2), NetId(3)]);
    for _ in 0..3 {
        h.sim.tick();
        for c in &mut clients {
            c.receive_and_ack();
        }
    }
    // Player 2 leaves: gone from the world, but still in the baselines of the last 32 ticks.
    let mut gone = clients.remove(1);
    *gone.leave.lock() = Some(LeaveReason::PeerClosed);
    gone.events = None;
    h.sim.tick();
    for c in &mut clients {
        c.receive_and_ack();
    }
    assert!(h.entity(NetId(2)).is_none());
    // Two ids before the wrap.
    h.sim
        .world_mut()
        .insert_resource(super::components::NetIds::starting_after(u32::MAX - 2));
    for _ in 0..4 {
        let c = h.join();
        clients.push(c);
        for c in &mut clients {
            c.receive_and_ack();
        }
    }
    let new: Vec<u32> = clients[2..].iter().map(|c| c.player.0).collect();
    assert_eq!(
        new,
        vec![u32::MAX - 1, u32::MAX, 4, 5],
        "1 and 3 are alive and 2 is in history: the wrap skips all three"
    );
    // Everyone keeps verifying every snapshot (receive applies and checks each).
    for _ in 0..10 {
        h.sim.tick();
        for c in &mut clients {
            c.receive_and_ack();
        }
    }
    drop(gone.outbox);
}
