//! The systems of one tick, in the order the phases run them:
//! ingest (joins, then each client's inputs and acks) -> simulate (players move, weapons fire,
//! projectiles fly and hit, the dead respawn) -> capture the world frame -> replicate (a delta
//! per client) -> hand off (each frame to its session, without waiting).
//!
//! Positions are whole position units and aims whole angle steps, the forms clients receive
//! (see [`tickwire_protocol::quant`]), so the authoritative state is exactly what is replicated.

use super::components::*;
use super::map::Map;
use crate::boundary::{ClientEvent, LeaveReason};
use crate::replication::{ClientLink, FrameEntity, Replication};
use bevy_ecs::prelude::*;
use bytes::Bytes;
use crossbeam_channel::{Receiver, TryRecvError};
use glam::{IVec2, Vec2};
use tickwire_protocol::codec::{encode_server, encode_snapshot_frame};
use tickwire_protocol::quant::{POS_SCALE, aim_from_q, aim_to_q, from_q};
use tickwire_protocol::{
    ArenaInfo, EntityState, PROTOCOL_VERSION, PlayerState, ProjectileState, ServerMsg,
    SnapshotHeader, Welcome,
};
use tracing::{debug, info};

/// Attempts at finding a free spawn point before falling back to the arena centre.
const SPAWN_ATTEMPTS: u32 = 256;

/// Join requests from sessions.
#[derive(Resource)]
pub struct Joins(pub Receiver<crate::boundary::JoinRequest>);

fn spawn_point(map: &Map, rng: &mut fastrand::Rng, r: i32) -> IVec2 {
    map.random_free_position(rng, r, SPAWN_ATTEMPTS)
        // Only a map that is nearly all wall gets here.
        .unwrap_or(map.size_q / 2)
}

fn world(p: IVec2) -> Vec2 {
    Vec2::new(from_q(p.x), from_q(p.y))
}

/// Creates a player for each join request and sends it the welcome.
#[allow(clippy::too_many_arguments)] // A system's parameters are its declared data access.
pub fn ingest_joins(
    mut commands: Commands,
    joins: Res<Joins>,
    clock: Res<Clock>,
    rules: Res<Rules>,
    map: Res<Map>,
    mut ids: ResMut<NetIds>,
    mut rng: ResMut<SimRng>,
    stats: Res<Stats>,
    replication: Res<Replication>,
) {
    for join in joins.0.try_iter().take(rules.joins_per_tick) {
        let id = ids.allocate(|id| replication.holds_id(id));
        let pos = spawn_point(&map, &mut rng.0, rules.player_radius_q);
        let welcome = ServerMsg::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            player: id,
            tick_rate_hz: rules.tick_rate_hz,
            tick: clock.tick,
            arena: ArenaInfo {
                width: map.width,
                height: map.height,
                walls: map.walls.clone(),
                player_radius: rules.game.player_radius,
                projectile_radius: rules.game.projectile_radius,
                player_speed: rules.game.player_speed,
                projectile_speed: rules.game.projectile_speed,
            },
            visibility: rules.visibility,
        });
        let mut buf = Vec::new();
        encode_server(&welcome, &mut buf);
        // A fresh outbox has room; if the session is already gone the send fails and the player
        // is removed next tick when its event channel reports the disconnect.
        let _ = join.outbox.try_send(Bytes::from(buf));
        info!(client = join.client.0, player = id.0, name = %join.name, "player joined");
        commands.spawn((
            Net(id),
            Position(pos),
            Aim(0),
            Player {
                name: join.name.clone(),
                hp: MAX_HP,
                score: 0,
                input: Default::default(),
                fire_pressed: false,
                cooldown_ticks: 0,
                respawn_ticks: 0,
            },
            Link(ClientLink::new(
                join,
                clock.tick,
                rules.history_ticks,
                &rules.lag,
            )),
        ));
        stats.0.joins.inc();
        stats.0.clients.inc();
    }
}

/// Drains each client's queue: inputs update the player's controls, acks move its baseline;
/// a disconnected queue removes the player.
pub fn ingest_client_events(
    mut commands: Commands,
    mut players: Query<(Entity, &Net, &mut Link, &mut Player)>,
    rules: Res<Rules>,
    stats: Res<Stats>,
) {
    for (entity, net, mut link, mut player) in &mut players {
        let link = &mut link.0;
        let mut disconnected = false;
        for _ in 0..rules.events_per_tick {
            match link.events.try_recv() {
                Ok(ClientEvent::Input(input)) => {
                    // Sessions forward only strictly increasing sequence numbers, in order
                    // (that rule lives in the session alone): the last one drained is the
                    // newest.
                    link.last_input_seq = input.seq;
                    player.fire_pressed |= input.fire;
                    player.input = input;
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
            info!(
                client = link.client.0,
                player = net.0.0,
                ?reason,
                "player left"
            );
            commands.entity(entity).despawn();
            stats.0.record_leave(&reason);
            stats.0.clients.dec();
        }
    }
}

/// Moves living players along their input direction, stopping at walls; applies aim.
pub fn move_players(
    mut players: Query<(&mut Position, &mut Aim, &Player)>,
    map: Res<Map>,
    rules: Res<Rules>,
) {
    for (mut pos, mut aim, player) in &mut players {
        if !player.alive() {
            continue;
        }
        aim.0 = aim_to_q(player.input.aim);
        let dir = Vec2::new(player.input.move_x, player.input.move_y);
        if dir != Vec2::ZERO {
            // Sanitized inputs have length <= 1; the step is rounded to whole position units.
            let delta = (dir * rules.player_step_q).round().as_ivec2();
            pos.0 = map.slide(pos.0, delta, rules.player_radius_q);
        }
    }
}

/// Spawns a projectile for each living player that pressed fire and is off cooldown.
pub fn fire_weapons(
    mut commands: Commands,
    mut players: Query<(Entity, &Net, &Position, &Aim, &mut Player)>,
    map: Res<Map>,
    rules: Res<Rules>,
    clock: Res<Clock>,
    mut ids: ResMut<NetIds>,
    replication: Res<Replication>,
) {
    let g = &rules.game;
    for (entity, net, pos, aim, mut player) in &mut players {
        player.cooldown_ticks = player.cooldown_ticks.saturating_sub(1);
        let pressed = std::mem::take(&mut player.fire_pressed);
        if !pressed || !player.alive() || player.cooldown_ticks > 0 {
            continue;
        }
        player.cooldown_ticks = rules.cooldown_ticks;
        let dir = Vec2::from_angle(aim_from_q(aim.0));
        let muzzle_offset = dir * (g.player_radius + g.projectile_radius + 1.0) * POS_SCALE;
        let muzzle = pos.0 + muzzle_offset.round().as_ivec2();
        if map.segment_blocked(world(pos.0), world(muzzle), g.projectile_radius) {
            continue; // Firing into a wall at point blank: the shot is absorbed.
        }
        commands.spawn((
            Net(ids.allocate(|id| replication.holds_id(id))),
            Position(muzzle),
            Projectile {
                owner: net.0,
                owner_entity: entity,
                origin: muzzle,
                velocity: (dir * rules.projectile_step_q).round().as_ivec2(),
                born: clock.tick,
                ticks_left: rules.projectile_ticks,
            },
        ));
    }
}

/// Indexes living players by grid cell for the projectile system.
pub fn index_players(mut grid: ResMut<PlayerGrid>, players: Query<(Entity, &Position, &Player)>) {
    grid.0.clear();
    for (e, pos, player) in &players {
        if player.alive() {
            grid.0.insert(e, pos.0);
        }
    }
}

/// Distance from `p` to the segment `a -> b`.
fn segment_distance(a: Vec2, b: Vec2, p: Vec2) -> f32 {
    let d = b - a;
    let len_sq = d.length_squared();
    let t = if len_sq > 0.0 {
        ((p - a).dot(d) / len_sq).clamp(0.0, 1.0)
    } else {
        0.0
    };
    p.distance(a + d * t)
}

/// Moves projectiles to where their fixed trajectory puts them at this tick; one that hits a
/// living player (not its owner) on the way damages it and vanishes, as does one that hits a
/// wall, leaves the arena or runs out of time. A kill scores for the owner and starts the
/// victim's respawn timer.
#[allow(clippy::too_many_arguments)] // A system's parameters are its declared data access.
pub fn move_projectiles(
    mut commands: Commands,
    mut projectiles: Query<(Entity, &mut Position, &mut Projectile), Without<Player>>,
    mut players: Query<(&Net, &mut Player), Without<Projectile>>,
    grid: Res<PlayerGrid>,
    map: Res<Map>,
    rules: Res<Rules>,
    clock: Res<Clock>,
) {
    let g = &rules.game;
    let reach = g.player_radius + g.projectile_radius;
    for (entity, mut pos, mut proj) in &mut projectiles {
        let from = world(pos.0);
        let now = proj.position_at(clock.tick);
        let to = world(now);
        // The nearest living player (other than the owner) along the path, if any.
        let (lo, hi) = (
            from.min(to) - Vec2::splat(reach),
            from.max(to) + Vec2::splat(reach),
        );
        let to_q = |v: Vec2, round: fn(f32) -> f32| {
            IVec2::new(round(v.x * POS_SCALE) as i32, round(v.y * POS_SCALE) as i32)
        };
        let mut hit: Option<(f32, Entity)> = None;
        grid.0
            .for_each_cell(to_q(lo, f32::floor), to_q(hi, f32::ceil), |cell| {
                for &(target, tq) in cell {
                    let tpos = world(tq);
                    if target == proj.owner_entity || segment_distance(from, to, tpos) > reach {
                        continue;
                    }
                    let along = from.distance_squared(tpos);
                    if hit.is_none_or(|(best, _)| along < best) {
                        hit = Some((along, target));
                    }
                }
            });
        if let Some((_, target)) = hit
            && let Ok((victim_net, mut victim)) = players.get_mut(target)
            && victim.alive()
        {
            victim.hp = victim.hp.saturating_sub(g.projectile_damage);
            if victim.hp == 0 {
                victim.respawn_ticks = rules.respawn_ticks;
                debug!(
                    victim = victim_net.0.0,
                    killer = proj.owner.0,
                    "player killed"
                );
                if let Ok((_, mut killer)) = players.get_mut(proj.owner_entity) {
                    killer.score = killer.score.saturating_add(1);
                }
            }
            commands.entity(entity).despawn();
            continue;
        }
        proj.ticks_left = proj.ticks_left.saturating_sub(1);
        if proj.ticks_left == 0 || map.segment_blocked(from, to, g.projectile_radius) {
            commands.entity(entity).despawn();
        } else {
            pos.0 = now;
        }
    }
}

/// Counts down dead players' timers and respawns them at a random free position.
pub fn respawn_players(
    mut players: Query<(&mut Position, &mut Player)>,
    map: Res<Map>,
    rules: Res<Rules>,
    mut rng: ResMut<SimRng>,
) {
    for (mut pos, mut player) in &mut players {
        if player.respawn_ticks == 0 {
            continue;
        }
        player.respawn_ticks -= 1;
        if player.respawn_ticks == 0 {
            player.hp = MAX_HP;
            player.cooldown_ticks = 0;
            pos.0 = spawn_point(&map, &mut rng.0, rules.player_radius_q);
        }
    }
}

/// Position units as a wire coordinate; positions stay inside the arena, which is validated to
/// fit.
fn coord(v: i32) -> u16 {
    u16::try_from(v).unwrap_or(if v < 0 { 0 } else { u16::MAX })
}

/// Captures every replicated entity into this tick's world frame.
pub fn capture_world(
    mut replication: ResMut<Replication>,
    mut ids: ResMut<NetIds>,
    clock: Res<Clock>,
    players: Query<(&Net, &Position, &Aim, &Player)>,
    projectiles: Query<(&Net, &Position, &Projectile)>,
) {
    ids.captured();
    let list = replication.begin(clock.tick);
    list.extend(players.iter().map(|(net, pos, aim, p)| FrameEntity {
        id: net.0,
        state: EntityState::Player(PlayerState {
            x: coord(pos.0.x),
            y: coord(pos.0.y),
            aim: aim.0,
            hp: p.hp,
            score: p.score,
        }),
        hash: 0,
        pos: pos.0,
    }));
    list.extend(projectiles.iter().map(|(net, pos, p)| FrameEntity {
        id: net.0,
        state: EntityState::Projectile(ProjectileState {
            x: coord(p.origin.x),
            y: coord(p.origin.y),
            vx: p.velocity.x as i16,
            vy: p.velocity.y as i16,
            born: p.born,
            owner: p.owner,
        }),
        hash: 0,
        pos: pos.0,
    }));
    replication.commit();
}

/// Builds each client's snapshot against its acknowledged baseline and leaves it on the link
/// for [`hand_off`]. In `global` mode bodies are shared between clients with the same
/// baseline; in `aoi` mode each client's view is diffed against its own view at its baseline.
pub fn replicate(
    mut links: Query<(&Net, &mut Link)>,
    mut replication: ResMut<Replication>,
    clock: Res<Clock>,
) {
    let mut body = Vec::new();
    for (net, mut link) in &mut links {
        let link = &mut link.0;
        let mut frame = Vec::new();
        let baseline = if replication.per_client_views() {
            let mut view = link.take_visible_buffer();
            if replication.visible_set(net.0, &mut view).is_none() {
                continue;
            }
            let base = link.acked.and_then(|t| Some((t, link.visible_at(t)?)));
            let baseline = replication.encode_view(base, &view, &mut body);
            link.push_visible(clock.tick, view);
            let header = SnapshotHeader {
                tick: clock.tick,
                baseline,
                last_input_seq: link.last_input_seq,
            };
            frame.reserve(16 + body.len());
            encode_snapshot_frame(&header, &body, &mut frame);
            baseline
        } else {
            let (baseline, shared) = replication.body(link.acked);
            let header = SnapshotHeader {
                tick: clock.tick,
                baseline,
                last_input_seq: link.last_input_seq,
            };
            frame.reserve(16 + shared.len());
            encode_snapshot_frame(&header, &shared, &mut frame);
            baseline
        };
        link.pending = Some((Bytes::from(frame), baseline.is_none()));
    }
}

/// Hands each client's snapshot to its session with `try_send`, never waiting: a full outbox
/// means the client skips this snapshot, and one that stays behind too long is closed.
pub fn hand_off(
    mut links: Query<&mut Link>,
    clock: Res<Clock>,
    rules: Res<Rules>,
    stats: Res<Stats>,
    mut hooks: ResMut<FaultHooks>,
) {
    let (mut sent, mut dropped, mut full, mut bytes_out) = (0u64, 0u64, 0u64, 0u64);
    // Fault injection (tests only): two relaxed loads per tick when idle.
    let mut starve = hooks.starved.is_none() && hooks.faults.starve_requested();
    let mut corrupt = hooks.faults.take_corruptions();
    for mut link in &mut links {
        let link = &mut link.0;
        let Some((mut frame, is_full)) = link.pending.take() else {
            continue;
        };
        if starve {
            starve = false;
            hooks.faults.starve_taken();
            hooks.starved = Some(link.client);
        }
        if hooks.starved == Some(link.client) {
            continue;
        }
        if corrupt > 0 {
            corrupt -= 1;
            // The checksum is the frame's last four bytes.
            let mut bytes = frame.to_vec();
            if let Some(last) = bytes.last_mut() {
                *last ^= 0xff;
            }
            frame = Bytes::from(bytes);
        }
        let len = frame.len() as u64;
        let ok = match link.outbox.try_send(frame) {
            Ok(()) => {
                sent += 1;
                bytes_out += len;
                full += u64::from(is_full);
                true
            }
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                dropped += 1;
                false
            }
            // The session is gone; the player is removed when its event queue disconnects.
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
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
    hooks.faults.return_corruptions(corrupt);
    let s = &stats.0;
    s.snapshots_sent.inc_by(sent);
    s.snapshots_dropped.inc_by(dropped);
    s.full_snapshots.inc_by(full);
    s.bytes_out.inc_by(bytes_out);
    if dropped > 0 {
        debug!(
            dropped,
            tick = clock.tick.0,
            "snapshots skipped: outboxes full"
        );
    }
}
