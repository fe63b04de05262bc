//! The engine's systems, in the order the phases run them:
//! ingest (joins through the game's join hook, then each client's inputs and acks, then
//! departures through the game's leave hook) -> simulate (the game's systems) -> capture the
//! world frame -> replicate (a delta per client) -> hand off (each frame to its session,
//! without waiting).

use super::components::*;
use crate::boundary::{ClientEvent, JoinRequest, LeaveReason, Outgoing};
use crate::game::{Capture, JoinHook, Joined, LeaveHook, Locate, Slots};
use crate::replication::{
    ClientLink, FrameEntity, Replication, ViewScratch, Viewpoint, ViewsBuild,
};
use bevy_ecs::prelude::*;
use bytes::Bytes;
use crossbeam_channel::{Receiver, TryRecvError};
use glam::IVec2;
use std::sync::Arc;
use std::time::Instant;
use tickwire_protocol::codec::{FrameHead, encode_server};
use tickwire_protocol::{
    GameSchema, NetId, PROTOCOL_VERSION, ServerMsg, SnapshotHeader, StaticRecord, Welcome,
};
use tickwire_protocol::{INPUT_LEAD_UNIT_US, Tick};
use tracing::{debug, info};

/// Join requests from sessions.
#[derive(Resource)]
pub struct Joins(pub Receiver<crate::boundary::JoinRequest>);

/// The game's registrations, as the engine's systems use them.
#[derive(Resource)]
pub struct GameHooks {
    /// The schema, sent in every welcome.
    pub schema: Arc<GameSchema>,
    /// The static records, sent in every welcome.
    pub statics: Arc<Vec<StaticRecord>>,
    /// Names of the client event types, for each player's [`crate::game::Inbox`].
    pub client_events: Arc<Vec<String>>,
    pub(crate) on_join: Option<JoinHook>,
    pub(crate) on_leave: Option<LeaveHook>,
    pub(crate) captures: Vec<Box<dyn Capture>>,
    pub(crate) locate: Vec<Box<dyn Locate>>,
    /// The game's cap on players, if any, and the players in the game now.
    player_cap: Option<usize>,
    players: usize,
    /// Scratch: entities found without a net id; (id, entity) pairs in id order.
    unnamed: Vec<Entity>,
    order: Vec<(NetId, Entity)>,
    nets: Option<QueryState<(Entity, &'static Net)>>,
    /// Scratch for capture, by position in `order`: the slots, the component masks, where
    /// the words start, a write cursor, and interest places.
    slots: Slots,
    masks: Vec<u32>,
    starts: Vec<u32>,
    cursor: Vec<u32>,
    places: Vec<Option<IVec2>>,
}

impl GameHooks {
    pub(crate) fn new(
        app: crate::game::GameApp,
    ) -> (
        GameHooks,
        World,
        Schedule,
        &'static [crate::net::web::Asset],
    ) {
        let page = app.page;
        let client_events = Arc::new(
            app.schema
                .client_events
                .iter()
                .map(|c| c.name.clone())
                .collect(),
        );
        let hooks = GameHooks {
            client_events,
            schema: Arc::new(app.schema),
            statics: Arc::new(app.statics),
            on_join: app.on_join,
            on_leave: app.on_leave,
            captures: app.captures,
            locate: app.interest.map(|i| i.locate).unwrap_or_default(),
            player_cap: app.player_cap,
            players: 0,
            unnamed: Vec::new(),
            order: Vec::new(),
            nets: None,
            slots: Slots::default(),
            masks: Vec::new(),
            starts: Vec::new(),
            cursor: Vec::new(),
            places: Vec::new(),
        };
        (hooks, app.world, app.simulate, page)
    }

    /// The game's own cap on players, if it set one.
    #[must_use]
    pub fn player_cap(&self) -> Option<usize> {
        self.player_cap
    }
}

/// Entities whose client left this tick, with why.
#[derive(Resource, Default)]
pub struct Departed(pub Vec<(Entity, NetId, LeaveReason)>);

/// The players held for a resume, with their secrets' keys: if the game despawns one, its
/// seat is given back at once rather than waiting for a resume that cannot come.
#[derive(Resource, Default)]
pub struct HeldPlayers(pub Vec<(Entity, crate::rooms::SecretKey)>);

/// The room registry a world's room is in (dangling for a world outside one): the world gives
/// back the seat of a held player it gives up on.
#[derive(Resource)]
pub struct Registry(pub std::sync::Weak<crate::rooms::Rooms>);

/// The welcome for `player`, encoded.
fn welcome(
    world: &World,
    hooks: &GameHooks,
    player: NetId,
    secret: Option<&str>,
    events_received: u32,
) -> Outgoing {
    let clock = world.resource::<Clock>();
    let welcome = ServerMsg::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        player,
        tick_rate_hz: clock.tick_rate_hz,
        tick: clock.tick,
        room: world.resource::<crate::game::Room>().id().to_owned(),
        resume: secret.unwrap_or_default().to_owned(),
        events_received,
        visibility: world.resource::<Rules>().visibility,
        schema: (*hooks.schema).clone(),
        statics: (*hooks.statics).clone(),
    });
    let mut buf = Vec::new();
    encode_server(&welcome, &mut buf);
    Outgoing::whole(Bytes::from(buf))
}

/// Hands a held (or dropping) player to the connection that resumed it, or refuses the resume
/// if the player is gone.
fn resume_player(world: &mut World, hooks: &GameHooks, mut join: JoinRequest) {
    let Some(resume) = join.resume.take() else {
        return;
    };
    let key = crate::rooms::secret_key(&resume.secret);
    let found = world
        .query::<(Entity, &Net, &Link)>()
        .iter(world)
        .find(|(_, _, link)| link.0.secret == Some(key))
        .map(|(entity, net, link)| (entity, net.0, link.0.reliable.taken_in));
    let stats = Arc::clone(&world.resource::<Stats>().0);
    let refuse = |why: &str| {
        stats.resume_refusals.inc();
        join.kick
            .kick(tickwire_protocol::close::RESUME_REFUSED, why.to_owned());
    };
    let Some((entity, id, taken_in)) = found else {
        refuse("resume refused: the player is gone");
        return;
    };
    // An event could not be kept for it while it was away: resuming would lose it. The
    // player leaves on this tick's ingest instead.
    if world
        .get::<Link>(entity)
        .is_some_and(|l| l.0.reliable.overflowed)
    {
        refuse("resume refused: more events were missed while away than the server keeps");
        return;
    }
    // A fresh outbox (or wire) has room.
    let _ = crate::replication::link::hand(
        &join.outbox,
        join.wire.as_ref(),
        welcome(world, hooks, id, join.secret.as_deref(), taken_in),
    );
    let lag = world.resource::<Rules>().lag;
    info!(
        client = join.client.0,
        player = id.0,
        last_tick = ?resume.last_tick.map(|t| t.0),
        "player resumed"
    );
    if let Some(mut link) = world.get_mut::<Link>(entity) {
        link.0.rebind(join, resume.last_tick, &lag);
        link.0.reliable.resume(resume.events_received);
    }
    world.entity_mut(entity).remove::<crate::game::Held>();
    world
        .resource_mut::<HeldPlayers>()
        .0
        .retain(|(e, _)| *e != entity);
    stats.resumes.inc();
}

/// Creates a player for each join request through the game's join hook and sends it the
/// welcome; hands a resumed player to its new connection.
pub fn ingest_joins(world: &mut World) {
    world.resource_scope(|world, mut hooks: Mut<GameHooks>| {
        let rules = world.resource::<Rules>().clone();
        let clock = *world.resource::<Clock>();
        let joins: Vec<_> = world
            .resource::<Joins>()
            .0
            .try_iter()
            .take(rules.joins_per_tick)
            .collect();
        for join in joins {
            if join.resume.is_some() {
                resume_player(world, &hooks, join);
                continue;
            }
            if let Some(cap) = hooks.player_cap
                && hooks.players >= cap
            {
                info!(
                    client = join.client.0,
                    cap, "join refused: the game is full"
                );
                join.kick.kick(
                    tickwire_protocol::close::TRY_AGAIN_LATER,
                    format!("game full: {cap} players"),
                );
                continue;
            }
            hooks.players += 1;
            let id = world.resource_scope(|world, mut ids: Mut<NetIds>| {
                let replication = world.resource::<Replication>();
                ids.allocate(|id| replication.holds_id(id))
            });
            let joined = Joined {
                net: id,
                name: join.name.clone(),
                player_id: join.player_id.clone(),
            };
            let entity = match hooks.on_join.as_mut() {
                Some(hook) => hook(world, &joined),
                None => world.spawn_empty().id(),
            };
            // A fresh outbox has room; if the session is already gone the send fails and the
            // player is removed next tick when its event channel reports the disconnect.
            let _ = crate::replication::link::hand(
                &join.outbox,
                join.wire.as_ref(),
                welcome(world, &hooks, id, join.secret.as_deref(), 0),
            );
            info!(client = join.client.0, player = id.0, name = %join.name, "player joined");
            let link = ClientLink::new(join, clock.tick, rules.history_ticks, &rules.lag);
            let inbox = crate::game::Inbox::new(Arc::clone(&hooks.client_events));
            match world.get_entity_mut(entity) {
                Ok(mut e) => {
                    e.insert((Net(id), Controls::default(), inbox, Link(link)));
                }
                Err(_) => {
                    // The hook returned an entity it did not spawn: the client gets a player
                    // the engine owns, so it still joins.
                    world.spawn((Net(id), Controls::default(), inbox, Link(link)));
                }
            }
            let stats = &world.resource::<Stats>().0;
            stats.joins.inc();
            stats.clients.inc();
        }
    });
}

/// How early an input received at `received` arrived for the tick it `named` (the tick being
/// ingested, `now`, if it named none), in the header's units ([`INPUT_LEAD_UNIT_US`]), and
/// whether it is late: it named a tick that has already taken its inputs, so it applies at
/// this one. The moment a tick takes its inputs is this call's; earlier ticks took theirs a
/// whole period apart.
pub(super) fn input_lead(
    now: Tick,
    named: Option<Tick>,
    received: Option<Instant>,
    period_us: i64,
) -> (i16, bool) {
    let Some(received) = received else {
        return (0, false);
    };
    let ticks_ahead = i64::from(named.map_or(0, |k| k.since(now)));
    let waited = i64::try_from(received.elapsed().as_micros()).unwrap_or(i64::MAX);
    let late = ticks_ahead < 0;
    let mut lead_us = waited.saturating_add(ticks_ahead.saturating_mul(period_us));
    if late {
        // Late by the ticks it missed, whatever it waited in the queue.
        lead_us = lead_us.min(-INPUT_LEAD_UNIT_US);
    }
    let units = (lead_us / INPUT_LEAD_UNIT_US).clamp(i64::from(i16::MIN), i64::from(i16::MAX));
    (i16::try_from(units).unwrap_or(0), late)
}

/// Closes a client whose events (or acknowledgement of ours) broke the order, with 4012.
fn kick_events_out_of_order(
    link: &ClientLink,
    stats: &crate::stats::ServerStats,
    e: &crate::replication::EventsError,
) {
    stats.event_kicks.inc();
    link.kick.kick(
        tickwire_protocol::close::EVENTS_BEHIND,
        format!("events out of order: {e:?}"),
    );
}

/// Drains each client's queue: inputs go to its player's [`Controls`], acks move its
/// baseline; a disconnected queue marks the player as departed, or as [`Held`] for a resume
/// when its connection dropped and resume is on. A held player whose grace period is over
/// departs, and its seat is given back.
///
/// [`Held`]: crate::game::Held
#[allow(clippy::too_many_arguments)]
pub fn ingest_client_events(
    mut players: Query<(
        Entity,
        &Net,
        &mut Link,
        &mut Controls,
        &mut crate::game::Inbox,
    )>,
    rules: Res<Rules>,
    stats: Res<Stats>,
    clock: Res<Clock>,
    registry: Res<Registry>,
    mut departed: ResMut<Departed>,
    mut held_players: ResMut<HeldPlayers>,
    mut hooks: ResMut<GameHooks>,
    mut commands: Commands,
) {
    let period_us = 1_000_000 / i64::from(clock.tick_rate_hz.max(1));
    // A held player the game despawned (or whose link it removed) has left: its seat is
    // given back now, not at the end of a grace period no resume can use.
    if !held_players.0.is_empty() {
        let rooms = registry.0.upgrade();
        held_players.0.retain(|(e, key)| {
            if players.get(*e).is_ok() {
                return true;
            }
            if let Some(rooms) = &rooms {
                rooms.forget(key);
            }
            hooks.players = hooks.players.saturating_sub(1);
            stats.0.record_leave(&LeaveReason::ConnectionLost);
            stats.0.clients.dec();
            false
        });
    }
    for (entity, net, mut link, mut controls, mut inbox) in &mut players {
        let link = &mut link.0;
        controls.begin_tick();
        inbox.begin_tick();
        if let Some(since) = link.held {
            let over = clock.tick.since(since)
                > i32::try_from(rules.resume_grace_ticks).unwrap_or(i32::MAX);
            if over || link.reliable.overflowed {
                stats.0.holds_expired.inc();
                departed
                    .0
                    .push((entity, net.0, LeaveReason::ConnectionLost));
                if let (Some(rooms), Some(secret)) = (registry.0.upgrade(), &link.secret) {
                    rooms.forget(secret);
                }
                held_players.0.retain(|(e, _)| *e != entity);
            }
            continue;
        }
        let mut disconnected = false;
        for _ in 0..rules.events_per_tick {
            match link.events.try_recv() {
                Ok(ClientEvent::Input {
                    seq,
                    ack,
                    tick,
                    received,
                    events_ack,
                    words,
                }) => {
                    // Sessions forward only strictly increasing sequence numbers, in order
                    // (that rule lives in the session alone): the last one drained is the
                    // newest.
                    link.last_input_seq = seq;
                    let (lead, late) = input_lead(clock.tick, tick, received, period_us);
                    link.input_lead = lead;
                    if received.is_some() {
                        stats.0.record_input_lead(lead);
                    }
                    if late {
                        stats.0.inputs_late.inc();
                    }
                    controls.push(seq, words, rules.events_per_tick);
                    if let Some(tick) = ack
                        && !link.acknowledge(tick)
                    {
                        stats.0.acks_ignored.inc();
                    }
                    if events_ack > 0
                        && let Err(e) = link.reliable.acknowledge(events_ack)
                    {
                        kick_events_out_of_order(link, &stats.0, &e);
                    }
                }
                Ok(ClientEvent::Ack(tick)) => {
                    if !link.acknowledge(tick) {
                        stats.0.acks_ignored.inc();
                    }
                }
                Ok(ClientEvent::Resync(tick)) => {
                    debug!(client = link.client.0, tick = tick.0, "client resyncs");
                    link.resync();
                    stats.0.resyncs.inc();
                }
                Ok(ClientEvent::Events(msg)) => match link.reliable.take(msg) {
                    Ok(events) => {
                        stats.0.events_in.inc_by(events.len() as u64);
                        for e in events {
                            inbox.push(e);
                        }
                    }
                    Err(e) => kick_events_out_of_order(link, &stats.0, &e),
                },
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        if disconnected {
            let reason = link
                .leave
                .lock()
                .clone()
                .unwrap_or(LeaveReason::ConnectionLost);
            if reason == LeaveReason::ConnectionLost
                && link.secret.is_some()
                && rules.resume_grace_ticks > 0
            {
                debug!(
                    client = link.client.0,
                    player = net.0.0,
                    "player held for a resume"
                );
                link.held = Some(clock.tick);
                stats.0.holds.inc();
                commands.entity(entity).insert(crate::game::Held);
                if let Some(key) = link.secret {
                    held_players.0.push((entity, key));
                }
            } else {
                departed.0.push((entity, net.0, reason));
            }
        }
    }
}

/// Hands each departed player to the game's leave hook (by default: despawned), after taking
/// away its link and controls.
pub fn depart(world: &mut World) {
    let departed = std::mem::take(&mut world.resource_mut::<Departed>().0);
    if departed.is_empty() {
        return;
    }
    world.resource_scope(|world, mut hooks: Mut<GameHooks>| {
        for (entity, net, reason) in departed {
            // The game's own systems may have despawned the player already.
            let Some(Link(link)) = world
                .get_entity_mut(entity)
                .ok()
                .and_then(|mut e| e.take::<Link>())
            else {
                continue;
            };
            world.entity_mut(entity).remove::<Controls>();
            info!(
                client = link.client.0,
                player = net.0,
                ?reason,
                "player left"
            );
            match hooks.on_leave.as_mut() {
                Some(hook) => hook(world, entity),
                None => {
                    world.despawn(entity);
                }
            }
            hooks.players = hooks.players.saturating_sub(1);
            let stats = &world.resource::<Stats>().0;
            stats.record_leave(&reason);
            stats.clients.dec();
        }
    });
}

/// Captures every replicated entity into this tick's world frame: entities new to the engine
/// get a net id first; each entity's words are its registered components', in registration
/// order; its interest position comes from the game.
pub fn capture_world(world: &mut World) {
    world.resource_scope(|world, mut hooks: Mut<GameHooks>| {
        let hooks = &mut *hooks;
        hooks.unnamed.clear();
        for c in &mut hooks.captures {
            c.prepare(world);
            c.find_unnamed(world, &mut hooks.unnamed);
        }
        hooks.unnamed.sort_unstable();
        hooks.unnamed.dedup();
        for &e in &hooks.unnamed {
            let id = world.resource_scope(|world, mut ids: Mut<NetIds>| {
                let replication = world.resource::<Replication>();
                ids.allocate(|id| replication.holds_id(id))
            });
            world.entity_mut(e).insert(Net(id));
        }
        world.resource_mut::<NetIds>().captured();
        if !hooks.unnamed.is_empty() {
            // New entities got a component: the queries must see their new archetypes.
            for c in &mut hooks.captures {
                c.prepare(world);
            }
        }
        for l in &mut hooks.locate {
            l.prepare(world);
        }
        let nets = hooks.nets.get_or_insert_with(|| world.query());
        hooks.order.clear();
        hooks
            .order
            .extend(nets.iter(world).map(|(e, net)| (net.0, e)));
        hooks.order.sort_unstable_by_key(|(id, _)| *id);
        let tick = world.resource::<Clock>().tick;
        // Each component's query runs once over its entities (dense, in table order), writing
        // into the slots of the id-sorted order: first which components each entity has, then
        // where its words go, then the words, then the places.
        let n = hooks.order.len();
        hooks.slots.fill(hooks.order.iter().map(|(_, e)| *e));
        hooks.masks.clear();
        hooks.masks.resize(n, 0);
        for (i, c) in hooks.captures.iter().enumerate() {
            c.mark(world, &hooks.slots, 1 << i, &mut hooks.masks);
        }
        hooks.starts.clear();
        let mut total = 0u32;
        // Words of an entity: the words of each component it has.
        let mut component_words = [0u32; 32];
        for (w, c) in component_words.iter_mut().zip(&hooks.captures) {
            *w = c.words() as u32;
        }
        for &mask in &hooks.masks {
            hooks.starts.push(total);
            let mut words = 0;
            let mut m = mask;
            while m != 0 {
                words += component_words[m.trailing_zeros() as usize];
                m &= m - 1;
            }
            total += words;
        }
        hooks.places.clear();
        hooks.places.resize(n, None);
        for l in &hooks.locate {
            l.locate(world, &hooks.slots, &mut hooks.places);
        }
        world.resource_scope(|world, mut replication: Mut<Replication>| {
            let frame = replication.begin(tick);
            frame.words.resize(total as usize, 0);
            hooks.cursor.clone_from(&hooks.starts);
            for c in &mut hooks.captures {
                c.write(world, &hooks.slots, &mut hooks.cursor, &mut frame.words);
            }
            frame
                .entities
                .extend(hooks.order.iter().enumerate().map(|(s, &(id, _))| {
                    let start = hooks.starts[s];
                    FrameEntity {
                        id,
                        mask: hooks.masks[s],
                        start,
                        len: hooks.cursor[s] - start,
                        hash: 0,
                        pos: hooks.places[s],
                    }
                }));
            replication.commit();
        });
        hooks.slots.clear(hooks.order.iter().map(|(_, e)| *e));
    });
}

/// Builds each client's snapshot against its acknowledged baseline and leaves it on the link
/// for [`hand_off`]. In `global` mode bodies are shared between clients with the same
/// baseline; in `aoi` mode each client's view is diffed against its own view at its baseline.
pub fn replicate(
    mut links: Query<(&Net, &mut Link)>,
    mut replication: ResMut<Replication>,
    clock: Res<Clock>,
    rules: Res<Rules>,
) {
    let threads = view_threads(
        rules.replicate_threads,
        rules.parallel_views_min_clients,
        links.iter().len(),
    );
    if threads > 1 && replication.per_client_views() {
        replicate_parallel(&mut links, &mut replication, clock.tick, threads);
        return;
    }
    let mut body = Vec::new();
    for (net, mut link) in &mut links {
        let link = &mut link.0;
        if link.held.is_some() {
            // Nobody to send to: what it saw before the drop stays for the resume's delta.
            continue;
        }
        if replication.per_client_views() {
            if let Some(eye) = replication.viewpoint(net.0) {
                replicate_view(link, eye, &mut replication, clock.tick, &mut body);
            }
            continue;
        }
        // Shared by every client with this baseline: only the header is the client's own.
        let (baseline, body) = replication.body(link.acked);
        leave_snapshot(link, clock.tick, baseline, body);
    }
}

/// The threads that build the views of a room of `clients`: one more for each `per` clients,
/// up to `most` in all. A room of a few hundred does not start a thread per core (on a server
/// with many rooms, many cores are already busy with the others).
pub(crate) fn view_threads(most: usize, per: usize, clients: usize) -> usize {
    most.min(1 + clients / per.max(1)).max(1)
}

/// Builds a client's `aoi` view seen from `eye` and its body on the tick thread, and leaves
/// the snapshot on its link; `body` is a buffer.
fn replicate_view(
    link: &mut ClientLink,
    eye: Viewpoint,
    replication: &mut Replication,
    tick: Tick,
    body: &mut Vec<u8>,
) {
    let baseline = if replication.whole_cells() {
        let base = link.acked.and_then(|t| Some((t, link.viewpoint_at(t)?)));
        let baseline = replication.encode_view(base, eye, body);
        link.push_view(tick, eye, Vec::new());
        baseline
    } else {
        let mut view = link.take_visible_buffer();
        replication.visible(eye, &mut view);
        let base = link.acked.and_then(|t| Some((t, link.visible_at(t)?)));
        let baseline = replication.encode_exact(base, &view, body);
        link.push_view(tick, eye, view);
        baseline
    };
    leave_snapshot(link, tick, baseline, Bytes::copy_from_slice(body));
}

/// Leaves the snapshot of `tick` (against `baseline`, with `body`) on the link for
/// [`hand_off`], under the client's own header.
fn leave_snapshot(link: &mut ClientLink, tick: Tick, baseline: Option<Tick>, body: Bytes) {
    let head = FrameHead::snapshot(&SnapshotHeader {
        tick,
        baseline,
        last_input_seq: link.last_input_seq,
        input_lead: link.input_lead,
    });
    link.pending = Some((Outgoing::framed(head, body), baseline.is_none()));
}

/// [`replicate`] for `aoi` views on `threads` threads: what every client's body is assembled
/// from (created and change records, and for views of whole cells every cell's sections) is
/// encoded first, once, for every baseline in use; then the tick thread and `threads - 1`
/// scoped threads each build the views and bodies of a share of the clients from it. Each
/// body is byte for byte the one the tick thread alone would build.
fn replicate_parallel(
    links: &mut Query<(&Net, &mut Link)>,
    replication: &mut Replication,
    tick: Tick,
    threads: usize,
) {
    let mut jobs = Vec::new();
    let mut baselines = Vec::new();
    let mut full = false;
    for (net, link) in links.iter_mut() {
        if link.0.held.is_some() {
            // Nobody to send to: what it saw before the drop stays for the resume's delta.
            continue;
        }
        let Some(eye) = replication.viewpoint(net.0) else {
            continue;
        };
        match link.0.acked {
            Some(t) => baselines.push(t),
            None => full = true,
        }
        jobs.push(Job {
            eye,
            link,
            built: false,
        });
    }
    baselines.sort_unstable_by_key(|t| t.0);
    baselines.dedup();
    if let Some((build, scratch)) = replication.views_parallel(&baselines, full, threads)
        && let Some((own, others)) = scratch.split_first_mut()
    {
        // Small shares taken in turn, not one share a thread: a thread that starts late (or is
        // preempted) leaves its shares to the others instead of holding up the tick.
        let shares = parking_lot::Mutex::new(jobs.chunks_mut(VIEWS_PER_SHARE));
        let take = || shares.lock().next();
        std::thread::scope(|s| {
            for scratch in others {
                // A thread the system will not start (out of threads or memory) is not needed:
                // the shares it would have taken are left to the others.
                let started = std::thread::Builder::new()
                    .name("tickwire-views".into())
                    .spawn_scoped(s, || {
                        while let Some(clients) = take() {
                            build_views(&build, clients, scratch, tick);
                        }
                    });
                if let Err(e) = started {
                    debug!(error = %e, "a thread to build views did not start");
                    break;
                }
            }
            while let Some(clients) = take() {
                build_views(&build, clients, own, tick);
            }
        });
    }
    // What the threads could not build from what was prepared (nothing, unless a baseline
    // was missed), the tick thread builds alone.
    let mut body = Vec::new();
    for job in jobs.iter_mut().filter(|j| !j.built) {
        replicate_view(&mut job.link.0, job.eye, replication, tick, &mut body);
    }
}

/// One client whose view is built on the threads of [`replicate_parallel`].
struct Job<'w> {
    eye: Viewpoint,
    link: Mut<'w, Link>,
    built: bool,
}

/// Clients whose views a thread builds at a time when views are built on several threads.
const VIEWS_PER_SHARE: usize = 16;

/// Builds the views and bodies of `clients`, leaving each snapshot on its link for
/// [`hand_off`].
fn build_views(
    build: &ViewsBuild<'_>,
    clients: &mut [Job<'_>],
    scratch: &mut ViewScratch,
    tick: Tick,
) {
    for job in clients {
        let (link, eye) = (&mut job.link.0, job.eye);
        let baseline = if build.whole_cells() {
            let base = link.acked.and_then(|t| Some((t, link.viewpoint_at(t)?)));
            let Some(baseline) = build.encode_cells(base, eye, scratch) else {
                continue;
            };
            link.push_view(tick, eye, Vec::new());
            baseline
        } else {
            let mut view = link.take_visible_buffer();
            let base = link.acked.and_then(|t| Some((t, link.visible_at(t)?)));
            let baseline = build.encode_exact(base, eye, &mut view, scratch);
            link.push_view(tick, eye, view);
            baseline
        };
        job.built = true;
        leave_snapshot(link, tick, baseline, Bytes::copy_from_slice(&scratch.body));
    }
}

/// Queues the events the game sent this tick ([`crate::game::ServerEvents`]) on their clients'
/// links, numbered; a client over the bounds on unacknowledged events is closed with 4012 (a
/// held one stops being held).
pub fn deliver_events(
    mut events: ResMut<crate::game::ServerEvents>,
    mut links: Query<&mut Link>,
    rules: Res<Rules>,
    stats: Res<Stats>,
) {
    if events.pending.is_empty() {
        return;
    }
    let (max, max_bytes) = (rules.max_pending_events, rules.max_pending_event_bytes);
    // Once per client: a client over the bound is being closed (or its hold ends), and what
    // the game sends it meanwhile is not queued.
    let over = |link: &mut crate::replication::ClientLink| {
        if link.reliable.overflowed {
            return;
        }
        link.reliable.overflowed = true;
        stats.0.event_kicks.inc();
        if link.held.is_none() {
            let n = link.reliable.pending();
            link.kick.kick(
                tickwire_protocol::close::EVENTS_BEHIND,
                format!("too far behind on events: {n} unacknowledged"),
            );
        }
    };
    // Each event is encoded once, whoever gets it.
    let encode = |e: &tickwire_protocol::EventRecord| {
        let mut b = Vec::new();
        tickwire_protocol::codec::encode_event(e, &mut b);
        Bytes::from(b)
    };
    let mut broadcasts = Vec::new();
    for (to, event) in events.pending.drain(..) {
        match to {
            Some(entity) => {
                if let Ok(mut link) = links.get_mut(entity)
                    && !link.0.reliable.push(encode(&event), max, max_bytes)
                {
                    over(&mut link.0);
                }
            }
            None => broadcasts.push(encode(&event)),
        }
    }
    if broadcasts.is_empty() {
        return;
    }
    // One batch for every client: each keeps a reference to it, not a copy of each event.
    let batch = Arc::new(crate::replication::link::EventBatch::new(&broadcasts));
    for mut link in &mut links {
        if !link.0.reliable.push_batch(&batch, max, max_bytes) {
            over(&mut link.0);
        }
    }
}

/// Most events in one message to a client.
const MAX_EVENTS_PER_MESSAGE: usize = 64;

/// Hands each client's snapshot to its session with `try_send`, never waiting: a full outbox
/// means the client skips this snapshot, and one that stays behind too long is closed. Events
/// not yet handed over go first, in their own message, kept until the session takes them.
pub fn hand_off(
    mut links: Query<(&Net, &mut Link)>,
    clock: Res<Clock>,
    rules: Res<Rules>,
    stats: Res<Stats>,
    mut hooks: ResMut<FaultHooks>,
    mut batch: Local<crate::net::wire::HandBatch>,
) {
    let (mut sent, mut dropped, mut full, mut bytes_out) = (0u64, 0u64, 0u64, 0u64);
    let mut events_out = 0u64;
    // Fault injection (tests only): three relaxed loads per tick when idle.
    let mut starve = hooks.starved.is_none() && hooks.faults.starve_requested();
    let mut corrupt = hooks.faults.take_corruptions();
    let drop = hooks.faults.drop_requested();
    for (net, mut link) in &mut links {
        let link = &mut link.0;
        if drop != 0 && net.0.0 == drop {
            hooks.faults.drop_taken();
            link.kick.kick(crate::boundary::ABORT, String::new());
        }
        let Some((mut frame, is_full)) = link.pending.take() else {
            continue;
        };
        // The events go with the snapshot, in the same write; handed over only if it is.
        let events = link.reliable.next_message(MAX_EVENTS_PER_MESSAGE);
        if starve {
            starve = false;
            hooks.faults.starve_taken();
            hooks.starved = Some(link.client);
        }
        if hooks.starved == Some(link.client) {
            if let Some((head, body, n)) = events
                && link.hand(Outgoing::framed(head, body)).is_ok()
            {
                events_out += u64::from(n);
                link.reliable.handed(n);
            }
            continue;
        }
        let handed_events = events.map(|(head, body, n)| {
            frame.events = Some((head, body));
            n
        });
        if corrupt > 0 {
            corrupt -= 1;
            // The checksum is the frame's last four bytes.
            let mut bytes = frame.body.to_vec();
            if let Some(last) = bytes.last_mut() {
                *last ^= 0xff;
            }
            frame.body = Bytes::from(bytes);
        }
        let len = frame.len() as u64;
        let ok = match link.hand_in(frame, &mut batch) {
            Ok(()) => {
                if let Some(n) = handed_events {
                    events_out += u64::from(n);
                    link.reliable.handed(n);
                }
                sent += 1;
                bytes_out += len;
                full += u64::from(is_full);
                true
            }
            Err(crate::replication::link::Handed::Full) => {
                dropped += 1;
                false
            }
            // The session is gone; the player is removed when its event queue disconnects.
            Err(crate::replication::link::Handed::Closed) => false,
        };
        if let Some((code, reason)) = link.handed_off(clock.tick, ok, &rules.lag) {
            debug!(client = link.client.0, code, %reason, "closing a client");
            if code == tickwire_protocol::close::NO_ACKS {
                stats.0.no_ack_kicks.inc();
            } else {
                stats.0.slow_kicks.inc();
            }
            link.kick.kick(code, reason);
        }
    }
    // The lanes get the tick's frames now, each in one go.
    batch.flush();
    hooks.faults.return_corruptions(corrupt);
    let s = &stats.0;
    s.snapshots_sent.inc_by(sent);
    s.snapshots_dropped.inc_by(dropped);
    s.full_snapshots.inc_by(full);
    s.bytes_out.inc_by(bytes_out);
    s.events_out.inc_by(events_out);
    if dropped > 0 {
        debug!(
            dropped,
            tick = clock.tick.0,
            "snapshots skipped: outboxes full"
        );
    }
}
