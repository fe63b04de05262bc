//! Simulation tests of the engine: the world driven by manual ticks through the same channels
//! the sessions use, with no sockets, running a small test game ("dots": a dot per player that
//! steps by its input, and short-lived sparks it may drop). Every frame a client gets is
//! applied to a replica and verified.

use super::Sim;
use crate::boundary::{ClientEvent, ClientId, JoinRequest, LeaveReason};
use crate::config::{Config, VisibilityMode};
use crate::game::{Controls, Game, GameApp, GameDef, Net};
use crate::harness::SimClient;
use crate::headroom::Workload;
use crate::stats::ServerStats;
use bevy_ecs::prelude::*;
use crossbeam_channel::Sender;
use glam::IVec2;
use std::sync::Arc;
use tickwire_protocol::behaviour::{Behaviour, BotView};
use tickwire_protocol::codec::decode_server;
use tickwire_protocol::schema::{Delta, Encoding, Field};
use tickwire_protocol::{NetId, Replicate, ServerMsg, Welcome};

/// A player's dot.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub(crate) struct Dot {
    pub x: i64,
    pub y: i64,
}

impl Replicate for Dot {
    const NAME: &'static str = "Dot";
    fn fields() -> Vec<Field> {
        let coord = Encoding::Int {
            min: 0,
            max: 10_000,
        };
        vec![
            Field::new("x", coord).delta(Delta::Diff { bits: 5 }),
            Field::new("y", coord).delta(Delta::Diff { bits: 5 }),
        ]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.extend([self.x, self.y]);
    }
    fn read(w: &[i64]) -> Self {
        Dot { x: w[0], y: w[1] }
    }
}

/// A spark: replicated, never changes, gone after a few ticks.
#[derive(Component, Debug, Clone, Copy)]
struct Spark {
    by: NetId,
    ticks_left: u32,
}

impl Replicate for Spark {
    const NAME: &'static str = "Spark";
    fn fields() -> Vec<Field> {
        vec![Field::new("by", Encoding::EntityRef)]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.push(i64::from(self.by.0));
    }
    fn read(w: &[i64]) -> Self {
        Spark {
            by: NetId(w[0] as u32),
            ticks_left: 0,
        }
    }
}

/// The input: a step and whether to drop a spark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Step {
    pub dx: i64,
    pub dy: i64,
    pub spark: bool,
}

impl Replicate for Step {
    const NAME: &'static str = "Step";
    fn fields() -> Vec<Field> {
        let d = Encoding::Int { min: -8, max: 8 };
        vec![
            Field::new("dx", d),
            Field::new("dy", d),
            Field::new("spark", Encoding::Bool),
        ]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.extend([self.dx, self.dy, i64::from(self.spark)]);
    }
    fn read(w: &[i64]) -> Self {
        Step {
            dx: w[0],
            dy: w[1],
            spark: w[2] != 0,
        }
    }
}

/// Where the test game's world ends.
const EDGE: i64 = 10_000;

struct Dots;

impl Game for Dots {
    const NAME: &'static str = "dots";
    type Config = ();
    fn build(app: &mut GameApp, _: &()) -> Result<(), String> {
        app.replicate::<Dot>()
            .replicate::<Spark>()
            .input::<Step>()
            .add_systems((step_dots, age_sparks).chain())
            .on_join(|world, joined| {
                let x = i64::from(joined.net.0) * 37 % EDGE;
                world.spawn(Dot { x, y: 50 }).id()
            })
            .interest::<Dot>(1.0, IVec2::splat(EDGE as i32), |d| {
                IVec2::new(d.x as i32, d.y as i32)
            });
        Ok(())
    }
}

fn step_dots(mut commands: Commands, mut dots: Query<(&Net, &Controls, &mut Dot)>) {
    for (net, controls, mut dot) in &mut dots {
        if let Some(s) = controls.latest::<Step>() {
            let next = Dot {
                x: (dot.x + s.dx).clamp(0, EDGE),
                y: (dot.y + s.dy).clamp(0, EDGE),
            };
            dot.set_if_neq(next);
        }
        for s in controls.this_tick::<Step>() {
            if s.spark {
                commands.spawn(Spark {
                    by: net.0,
                    ticks_left: 3,
                });
            }
        }
    }
}

fn age_sparks(mut commands: Commands, mut sparks: Query<(Entity, &mut Spark)>) {
    for (e, mut s) in &mut sparks {
        s.ticks_left -= 1;
        if s.ticks_left == 0 {
            commands.entity(e).despawn();
        }
    }
}

/// A bot of the test game: random steps, a spark now and then.
struct Walk(fastrand::Rng);

impl Behaviour for Walk {
    fn next_input(&mut self, _: &BotView<'_>, out: &mut Vec<i64>) {
        Step {
            dx: self.0.i64(-8..=8),
            dy: self.0.i64(-8..=8),
            spark: self.0.u32(0..10) == 0,
        }
        .write(out);
    }
}

fn walk(seed: u64, _: &Welcome) -> Box<dyn Behaviour> {
    Box::new(Walk(fastrand::Rng::with_seed(seed)))
}

/// The test game and its bots, for the engine's own tests (headroom included).
pub(crate) fn workload() -> Workload {
    Workload {
        game: GameDef::of::<Dots>(),
        behaviour: walk,
    }
}

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
        let sim = Sim::new(config, &workload().game, rx, Arc::clone(&stats)).expect("builds");
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

    fn dot(&mut self, id: NetId) -> Dot {
        let e = self.entity(id).expect("entity exists");
        *self.sim.world().get::<Dot>(e).expect("a dot")
    }
}

fn step(dx: i64, spark: bool) -> Vec<i64> {
    let mut w = Vec::new();
    Step { dx, dy: 0, spark }.write(&mut w);
    w
}

#[test]
fn inputs_steer_only_the_senders_entity_and_game_entities_get_ids() {
    let mut h = Harness::new();
    let mut a = h.join();
    let mut b = h.join();
    let (a0, b0) = (h.dot(a.player), h.dot(b.player));
    // Two inputs in one tick: the newest steers, both are seen by the game.
    assert!(a.send_input(&step(3, true), None));
    assert!(a.send_input(&step(5, true), None));
    h.sim.tick();
    a.receive_and_ack();
    b.receive_and_ack();
    assert_eq!(h.dot(a.player).x, a0.x + 5);
    assert_eq!(h.dot(b.player), b0, "b sent nothing and did not move");
    let view = b.replica.as_ref().and_then(|r| r.latest()).expect("view");
    let sparks: Vec<_> = view
        .entities
        .values()
        .filter_map(|s| s.get::<Spark>(b.replica.as_ref().expect("r").schema()))
        .collect();
    assert_eq!(sparks.len(), 2, "both inputs dropped a spark");
    assert!(sparks.iter().all(|s| s.by == a.player));
    // Sparks die after three ticks; the removals replicate.
    for _ in 0..4 {
        h.sim.tick();
        a.receive_and_ack();
        b.receive_and_ack();
    }
    let view = b.replica.as_ref().and_then(|r| r.latest()).expect("view");
    assert_eq!(view.entities.len(), 2);
    let replica = a.replica.as_ref().expect("welcomed");
    assert_eq!(replica.get::<Dot>(a.player), Some(h.dot(a.player)));
    assert_eq!(h.stats.joins.get(), 2);
}

#[test]
fn aoi_mode_sends_only_what_is_near() {
    let config = Config {
        visibility: VisibilityMode::Aoi,
        aoi_radius: 100.0,
        ..Config::default()
    };
    let mut h = Harness::with(&config);
    let mut clients: Vec<_> = (0..3).map(|_| h.join()).collect();
    // Dots start at x = 37 * id: 37, 74, 111. Move the third far away.
    for _ in 0..200 {
        clients[2].send_input(&step(8, false), None);
        h.sim.tick();
        for c in &mut clients {
            c.receive_and_ack();
        }
    }
    let sees = |c: &SimClient| {
        c.replica
            .as_ref()
            .and_then(|r| r.latest())
            .map(|v| v.entities.keys().copied().collect::<Vec<_>>())
            .expect("view")
    };
    assert_eq!(sees(&clients[0]), vec![NetId(1), NetId(2)]);
    assert_eq!(sees(&clients[2]), vec![NetId(3)]);
    let welcome = clients[0].welcome.as_ref().expect("welcomed");
    assert!(matches!(
        welcome.visibility,
        tickwire_protocol::Visibility::Aoi { radius } if radius == 100.0
    ));
}

#[test]
fn a_game_without_an_input_or_with_a_bad_schema_does_not_start() {
    struct NoInput;
    impl Game for NoInput {
        const NAME: &'static str = "no-input";
        type Config = ();
        fn build(app: &mut GameApp, _: &()) -> Result<(), String> {
            app.replicate::<Dot>();
            Ok(())
        }
    }
    /// Interest placed in two different units, and a static record out of its range.
    struct Inconsistent;
    impl Game for Inconsistent {
        const NAME: &'static str = "inconsistent";
        type Config = ();
        fn build(app: &mut GameApp, _: &()) -> Result<(), String> {
            app.replicate::<Dot>()
                .input::<Step>()
                .interest::<Dot>(1.0, IVec2::splat(100), |d| IVec2::new(d.x as i32, 0))
                .interest::<Dot>(2.0, IVec2::splat(100), |d| IVec2::new(d.x as i32, 0));
            Ok(())
        }
    }
    struct BadStatic;
    impl Game for BadStatic {
        const NAME: &'static str = "bad-static";
        type Config = ();
        fn build(app: &mut GameApp, _: &()) -> Result<(), String> {
            app.replicate::<Dot>()
                .input::<Step>()
                .statics([Dot { x: EDGE + 1, y: 0 }]);
            Ok(())
        }
    }
    let refusal = |game: GameDef| {
        let (_, rx) = crossbeam_channel::bounded(1);
        let stats = Arc::new(ServerStats::default());
        Sim::new(&Config::default(), &game, rx, stats)
            .err()
            .expect("refused")
            .to_string()
    };
    let err = refusal(GameDef::of::<NoInput>());
    assert!(err.contains("no input type"), "{err}");
    let err = refusal(GameDef::of::<Inconsistent>());
    assert!(err.contains("same units"), "{err}");
    let err = refusal(GameDef::of::<BadStatic>());
    assert!(
        err.contains("static Dot") && err.contains("out of range"),
        "{err}"
    );
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
    let view = stays
        .replica
        .as_ref()
        .and_then(|r| r.latest())
        .expect("view");
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
    let latest = c
        .replica
        .as_ref()
        .and_then(|r| r.latest())
        .expect("view")
        .tick;
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
        while let Ok(frame) = c.outbox.try_recv() {
            let bytes = frame.into_messages().last().expect("a message");
            if let ServerMsg::Snapshot(s) = decode_server(&bytes).expect("decodes") {
                c.replica
                    .as_mut()
                    .expect("welcomed")
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
    let old = c
        .replica
        .as_ref()
        .and_then(|r| r.latest())
        .expect("view")
        .tick;
    c.replica.as_mut().expect("welcomed").clear();
    let events = c.events.as_ref().expect("connected");
    events.try_send(ClientEvent::Resync(old)).expect("room");
    events.try_send(ClientEvent::Ack(old)).expect("room");
    h.sim.tick();
    let mut baselines = Vec::new();
    while let Ok(frame) = c.outbox.try_recv() {
        let bytes = frame.into_messages().last().expect("a message");
        if let ServerMsg::Snapshot(s) = decode_server(&bytes).expect("decodes") {
            baselines.push(s.header.baseline);
            c.replica
                .as_mut()
                .expect("welcomed")
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
    assert!(
        c.replica
            .as_ref()
            .and_then(|r| r.latest())
            .expect("view")
            .tick
            > old
    );
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

#[test]
fn the_game_sees_the_player_id_of_the_join_token() {
    /// The player ids the join hook was given, in join order.
    #[derive(Resource, Default)]
    struct Seen(Vec<Option<String>>);
    struct Accounts;
    impl Game for Accounts {
        const NAME: &'static str = "accounts";
        type Config = ();
        fn build(app: &mut GameApp, _: &()) -> Result<(), String> {
            app.world_mut().init_resource::<Seen>();
            app.replicate::<Dot>()
                .input::<Step>()
                .on_join(|world, joined| {
                    world
                        .resource_mut::<Seen>()
                        .0
                        .push(joined.player_id.clone());
                    world.spawn(Dot { x: 1, y: 1 }).id()
                });
            Ok(())
        }
    }
    let (joins, rx) = crossbeam_channel::bounded(4);
    let stats = Arc::new(ServerStats::default());
    let mut sim =
        Sim::new(&Config::default(), &GameDef::of::<Accounts>(), rx, stats).expect("builds");
    let (_with, mut join) = SimClient::new(ClientId(1), "shown name", 4, 4);
    join.player_id = Some("account-42".into());
    joins.try_send(join).expect("room");
    let (_without, join) = SimClient::new(ClientId(2), "guest", 4, 4);
    joins.try_send(join).expect("room");
    sim.tick();
    assert_eq!(
        sim.world().resource::<Seen>().0,
        vec![Some("account-42".to_owned()), None]
    );
}

/// Marks the player of a client named "boom" in [`Fragile`].
#[derive(Component)]
struct Bomb;

/// The test game with a bug: a system panics once a client named "boom" has joined.
struct Fragile;

impl Game for Fragile {
    const NAME: &'static str = "fragile";
    type Config = ();
    fn build(app: &mut GameApp, _: &()) -> Result<(), String> {
        app.replicate::<Dot>()
            .input::<Step>()
            .add_systems(explode)
            .on_join(|world, joined| {
                let mut player = world.spawn(Dot { x: 5, y: 5 });
                if joined.name == "boom" {
                    player.insert(Bomb);
                }
                player.id()
            });
        Ok(())
    }
}

fn explode(bombs: Query<&Bomb>) {
    assert!(bombs.is_empty(), "a bomb went off");
}

/// Polls `cond` until it holds, failing the test after 20 s.
fn poll(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn worlds_on_a_pool_of_tick_threads_keep_ticking_when_another_world_panics() {
    use super::driver::{GAME_FAILED_REASON, TickLoop};
    let config = Config {
        tick_threads: 2,
        ..Config::default()
    };
    let stats = Arc::new(ServerStats::default());
    let telemetry = Arc::new(crate::telemetry::Telemetry::new(Arc::clone(&stats), 30, 3));
    let world = |game: GameDef| {
        let (joins, rx) = crossbeam_channel::bounded(8);
        let sim = Sim::new(&config, &game, rx, Arc::clone(&stats)).expect("builds");
        (sim, joins)
    };
    let pool = TickLoop::spawn(&config, Arc::clone(&stats), telemetry).expect("starts");
    assert_eq!(pool.threads(), 2);
    let (steady, steady_joins) = world(workload().game);
    pool.add(steady, std::sync::Weak::new());
    let (fragile, fragile_joins) = world(GameDef::of::<Fragile>());
    pool.add(fragile, std::sync::Weak::new());

    let (mut calm, join) = SimClient::new(ClientId(1), "calm", 16, 64);
    steady_joins.try_send(join).expect("room");
    let (victim, join) = SimClient::new(ClientId(2), "victim", 16, 64);
    fragile_joins.try_send(join).expect("room");
    poll("the steady world's snapshots", || {
        calm.receive_and_ack();
        calm.frames >= 30
    });
    let (_boom, join) = SimClient::new(ClientId(3), "boom", 16, 64);
    fragile_joins.try_send(join).expect("room");
    // The tick thread counts the panic, then closes the world's clients: wait for the close.
    poll("the panicking world's clients closed", || {
        victim.kick.reason().is_some()
    });
    assert_eq!(
        victim.kick.reason(),
        Some((1011, GAME_FAILED_REASON.to_owned())),
        "the panicking world's clients are closed"
    );
    assert_eq!(stats.game_panics.get(), 1);
    // The other world keeps ticking, every snapshot verified.
    let before = calm.frames;
    poll("the steady world after the panic", || {
        calm.receive_and_ack();
        calm.frames >= before + 30
    });
    assert!(calm.kick.reason().is_none());
    // The panicked world is gone: nothing takes its joins any more.
    poll("the panicked world dropped", || {
        let (_late, join) = SimClient::new(ClientId(4), "late", 16, 64);
        matches!(
            fragile_joins.try_send(join),
            Err(crossbeam_channel::TrySendError::Disconnected(_))
        )
    });
    assert_eq!(stats.game_panics.get(), 1);
    pool.stop();
}

#[test]
fn an_inputs_lead_is_measured_against_the_tick_it_named() {
    use super::systems::input_lead;
    use std::time::{Duration, Instant};
    use tickwire_protocol::Tick;
    let period_us = 33_333;
    let now = Tick(100);
    // No network (the harness): 0, never late.
    assert_eq!(input_lead(now, Some(Tick(50)), None, period_us), (0, false));
    let received = Instant::now()
        .checked_sub(Duration::from_millis(2))
        .expect("the clock is past 2 ms");
    // Named for this tick, waited about 2 ms: about 20 units early.
    let (lead, late) = input_lead(now, Some(now), Some(received), period_us);
    assert!(!late && (20..40).contains(&lead), "{lead}");
    // No tick named: the tick that applies it.
    assert!(!input_lead(now, None, Some(received), period_us).1);
    // Named two ticks ahead: early by two more periods.
    let (lead, late) = input_lead(now, Some(Tick(102)), Some(received), period_us);
    assert!(!late && (686..720).contains(&lead), "{lead}");
    // Named for the tick before: late, and negative whatever it waited.
    let (lead, late) = input_lead(now, Some(Tick(99)), Some(received), period_us);
    assert!(late && lead < 0, "{lead}");
    let just = Instant::now();
    assert!(input_lead(now, Some(Tick(99)), Some(just), period_us).0 <= -1);
    // Far in the past or the future: clamped to the header's i16.
    assert_eq!(
        input_lead(now, Some(Tick(0)), Some(received), period_us),
        (i16::MIN, true)
    );
    assert_eq!(
        input_lead(now, Some(Tick(1000)), Some(received), period_us),
        (i16::MAX, false)
    );
}

#[test]
fn a_room_gets_one_more_thread_for_its_views_per_share_of_clients() {
    use super::systems::view_threads;
    assert_eq!(
        view_threads(8, 128, 127),
        1,
        "under the bound: the tick thread alone"
    );
    assert_eq!(view_threads(8, 128, 128), 2);
    assert_eq!(view_threads(8, 128, 300), 3);
    assert_eq!(view_threads(8, 128, 5000), 8, "at most replicate_threads");
    assert_eq!(
        view_threads(1, 128, 5000),
        1,
        "replicate_threads = 1: never"
    );
    assert_eq!(view_threads(4, 0, 10), 4, "a bound of 0 counts as 1");
}
