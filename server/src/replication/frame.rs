//! World frames: the replicated state of every entity at one tick, their history, and the
//! delta between two views of them.

use super::interest::Interest;
use bevy_ecs::resource::Resource;
use bytes::Bytes;
use glam::IVec2;
use std::collections::VecDeque;
use tickwire_protocol::codec::{BodyWriter, EncodedChange};
use tickwire_protocol::delta::player_delta;
use tickwire_protocol::{EntityState, NetId, Tick, Visibility, entity_hash};

/// One entity in a frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameEntity {
    /// Its id.
    pub id: NetId,
    /// Its replicated state.
    pub state: EntityState,
    /// [`entity_hash`] of id and state, computed once per tick.
    pub hash: u32,
    /// Where it is at the frame's tick, position units (for interest management).
    pub pos: IVec2,
}

/// Every replicated entity at one tick, sorted by id.
#[derive(Debug, Default, Clone)]
pub struct WorldFrame {
    /// The tick.
    pub tick: Tick,
    /// Entities, sorted by id.
    pub entities: Vec<FrameEntity>,
    /// Wrapping sum of the entities' hashes: the checksum of a view that sees them all.
    pub checksum: u32,
}

impl WorldFrame {
    /// Sorts the entities, hashes each one and sums the checksum; call after filling.
    pub fn seal(&mut self) {
        self.entities.sort_unstable_by_key(|e| e.id);
        let mut sum = 0u32;
        for e in &mut self.entities {
            e.hash = entity_hash(e.id, &e.state);
            sum = sum.wrapping_add(e.hash);
        }
        self.checksum = sum;
    }

    /// Index of an entity, by binary search.
    #[must_use]
    pub fn index_of(&self, id: NetId) -> Option<usize> {
        self.entities.binary_search_by_key(&id, |e| e.id).ok()
    }
}

/// What is known about one entity's change against one baseline this tick.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Not computed yet.
    Unknown,
    /// The same as at the baseline.
    Unchanged,
    /// Its change record.
    Changed(EncodedChange),
}

/// This tick's player change records against one baseline, by entity index in the newest
/// frame: each is encoded once, however many clients' views contain it.
#[derive(Debug)]
struct ChangeCache {
    baseline: Tick,
    slots: Vec<Slot>,
}

/// Most baselines cached per tick; clients whose baseline is not among them still get correct
/// frames, built without the cache.
const MAX_CACHED_BASELINES: usize = 8;

/// Writes into `w` the changes from the view `base` to the view `cur` (each sorted by id; `cur`
/// items carry their index in the newest frame): a merge walk. Players that changed get a
/// field-level record, taken from `cache` when given (and filled in when missing); any other
/// entity whose state changed is written as removed and created again.
fn write_changes<'a>(
    base: impl IntoIterator<Item = &'a FrameEntity>,
    cur: impl IntoIterator<Item = (usize, &'a FrameEntity)>,
    mut cache: Option<&mut ChangeCache>,
    w: &mut BodyWriter,
) {
    let mut base = base.into_iter().peekable();
    let mut cur = cur.into_iter().peekable();
    loop {
        match (base.peek(), cur.peek()) {
            (Some(b), Some((idx, c))) if b.id == c.id => {
                match (&b.state, &c.state) {
                    (EntityState::Player(old), EntityState::Player(new)) => {
                        let slot = cache.as_deref_mut().map(|cache| &mut cache.slots[*idx]);
                        let known = slot.as_deref().copied().unwrap_or(Slot::Unknown);
                        let record = match known {
                            Slot::Unknown => {
                                let fresh = match player_delta(c.id, old, new) {
                                    Some(d) => Slot::Changed(EncodedChange::new(&d)),
                                    None => Slot::Unchanged,
                                };
                                if let Some(slot) = slot {
                                    *slot = fresh;
                                }
                                fresh
                            }
                            known => known,
                        };
                        if let Slot::Changed(enc) = record {
                            w.changed(c.id, &enc);
                        }
                    }
                    (old, new) if old != new => {
                        w.removed(c.id);
                        w.created(c.id, new);
                    }
                    _ => {}
                }
                base.next();
                cur.next();
            }
            (Some(b), Some((_, c))) if b.id < c.id => {
                w.removed(b.id);
                base.next();
            }
            (Some(b), None) => {
                w.removed(b.id);
                base.next();
            }
            (_, Some((_, c))) => {
                w.created(c.id, &c.state);
                cur.next();
            }
            (None, None) => break,
        }
    }
}

/// The frame of `tick` in a history of consecutive ticks, oldest first.
fn find_frame(history: &VecDeque<WorldFrame>, tick: Tick) -> Option<&WorldFrame> {
    let newest = history.back()?.tick;
    let age = usize::try_from(newest.since(tick)).ok()?;
    let idx = history.len().checked_sub(1 + age)?;
    history.get(idx).filter(|f| f.tick == tick)
}

/// The entities of `frame` at `indices`, with their indices.
fn subset<'a>(
    frame: &'a WorldFrame,
    indices: &'a [u32],
) -> impl Iterator<Item = (usize, &'a FrameEntity)> {
    indices
        .iter()
        .map(move |&i| (i as usize, &frame.entities[i as usize]))
}

/// The history of world frames, the interest grid, and this tick's shared snapshot bodies.
#[derive(Resource, Debug)]
pub struct Replication {
    capacity: usize,
    history: VecDeque<WorldFrame>,
    /// A frame being filled for the current tick; reuses the evicted frame's buffer.
    pending: WorldFrame,
    /// In `aoi` mode, the grid of the newest frame's entities.
    interest: Option<Interest>,
    bodies: Vec<(Option<Tick>, Bytes)>,
    writer: BodyWriter,
    /// Change records of this tick, per baseline; the first `caches_used` are this tick's.
    caches: Vec<ChangeCache>,
    caches_used: usize,
    encode_buf: Vec<u8>,
}

impl Replication {
    /// Keeps `capacity` ticks of history; `visibility` chooses shared or per-client views, and
    /// `size_q` is the arena's size in position units.
    #[must_use]
    pub fn new(capacity: usize, visibility: Visibility, size_q: IVec2) -> Replication {
        let interest = match visibility {
            Visibility::Global => None,
            Visibility::Aoi { radius } => Some(Interest::new(radius, size_q)),
        };
        Replication {
            capacity: capacity.max(1),
            history: VecDeque::with_capacity(capacity + 1),
            pending: WorldFrame::default(),
            interest,
            bodies: Vec::new(),
            writer: BodyWriter::default(),
            caches: Vec::new(),
            caches_used: 0,
            encode_buf: Vec::new(),
        }
    }

    /// Starts the frame of `tick`: returns the empty entity list to fill.
    pub fn begin(&mut self, tick: Tick) -> &mut Vec<FrameEntity> {
        self.pending.tick = tick;
        self.pending.entities.clear();
        self.bodies.clear();
        &mut self.pending.entities
    }

    /// Seals the frame started by [`Replication::begin`], makes it the newest in history and
    /// indexes it for interest queries.
    pub fn commit(&mut self) {
        self.pending.seal();
        let recycled = if self.history.len() >= self.capacity {
            self.history.pop_front().unwrap_or_default()
        } else {
            WorldFrame::default()
        };
        let frame = std::mem::replace(&mut self.pending, recycled);
        if let Some(interest) = &mut self.interest {
            interest.index(&frame);
        }
        self.caches_used = 0;
        self.history.push_back(frame);
    }

    /// The newest frame.
    #[must_use]
    pub fn latest(&self) -> Option<&WorldFrame> {
        self.history.back()
    }

    /// True if an entity with this id is in any frame of the history (and so may be in some
    /// client's baseline): the id allocator skips such ids after it wraps.
    #[must_use]
    pub fn holds_id(&self, id: NetId) -> bool {
        self.history.iter().any(|f| f.index_of(id).is_some())
    }

    /// The frame of `tick`, if still in history.
    #[must_use]
    pub fn frame(&self, tick: Tick) -> Option<&WorldFrame> {
        find_frame(&self.history, tick)
    }

    /// True in `aoi` mode, where each client has its own view.
    #[must_use]
    pub fn per_client_views(&self) -> bool {
        self.interest.is_some()
    }

    /// Global mode: the encoded body from `baseline` (or a full snapshot for `None`) to the
    /// newest frame. Built once per distinct baseline per tick and shared between clients. A
    /// baseline not in history falls back to a full snapshot, which the returned baseline
    /// reports.
    pub fn body(&mut self, baseline: Option<Tick>) -> (Option<Tick>, Bytes) {
        let baseline = baseline.filter(|b| self.frame(*b).is_some());
        if let Some((_, bytes)) = self.bodies.iter().find(|(b, _)| *b == baseline) {
            return (baseline, bytes.clone());
        }
        let mut buf = std::mem::take(&mut self.encode_buf);
        self.encode_global(baseline, &mut buf);
        let bytes = Bytes::copy_from_slice(&buf);
        self.encode_buf = buf;
        self.bodies.push((baseline, bytes.clone()));
        (baseline, bytes)
    }

    /// Global mode, without the per-tick sharing: encodes the body from `baseline` (which must
    /// be in history, or `None`) to the newest frame into `out`.
    pub fn encode_global(&mut self, baseline: Option<Tick>, out: &mut Vec<u8>) {
        out.clear();
        let Some(cur) = self.history.back() else {
            return;
        };
        self.writer.clear();
        let base = baseline.and_then(|b| find_frame(&self.history, b));
        let base_entities = base.map_or(&[][..], |f| f.entities.as_slice());
        write_changes(
            base_entities,
            cur.entities.iter().enumerate(),
            None,
            &mut self.writer,
        );
        self.writer.finish(cur.checksum, out);
    }

    /// Forgets this tick's cached change records, so the next [`Replication::encode_view`]
    /// encodes every record afresh (benches time the cold and the warm case).
    pub fn clear_change_caches(&mut self) {
        self.caches_used = 0;
    }

    /// AOI mode: fills `visible` with the indices (into the newest frame, ascending) of what the
    /// player `own` sees now, and returns that frame's tick.
    pub fn visible_set(&mut self, own: NetId, visible: &mut Vec<u32>) -> Option<Tick> {
        let frame = self.history.back()?;
        let interest = self.interest.as_mut()?;
        let own_idx = frame.index_of(own)?;
        interest.query(frame, own_idx, visible);
        Some(frame.tick)
    }

    /// AOI mode: encodes the body from the view `base` (a tick and the indices visible then, or
    /// `None` for a full snapshot) to the view `cur` of the newest frame into `out`. Player
    /// change records are encoded once per baseline per tick and shared by every client whose
    /// view contains them. A baseline whose frame left history falls back to a full snapshot,
    /// which the returned baseline reports.
    pub fn encode_view(
        &mut self,
        base: Option<(Tick, &[u32])>,
        cur: &[u32],
        out: &mut Vec<u8>,
    ) -> Option<Tick> {
        let Replication {
            history,
            writer,
            caches,
            caches_used,
            ..
        } = self;
        let frame = history.back()?;
        let base = base.and_then(|(t, idx)| Some((t, find_frame(history, t)?, idx)));
        writer.clear();
        match base {
            Some((t, bf, idx)) => {
                let cache = change_cache(caches, caches_used, t, frame.entities.len());
                let base_entities = idx.iter().map(|&i| &bf.entities[i as usize]);
                write_changes(base_entities, subset(frame, cur), cache, writer);
            }
            None => write_changes([], subset(frame, cur), None, writer),
        }
        let checksum = subset(frame, cur).fold(0u32, |acc, (_, e)| acc.wrapping_add(e.hash));
        out.clear();
        writer.finish(checksum, out);
        base.map(|(t, _, _)| t)
    }
}

/// This tick's change cache for `baseline`, started if there is room.
fn change_cache<'a>(
    caches: &'a mut Vec<ChangeCache>,
    used: &mut usize,
    baseline: Tick,
    entities: usize,
) -> Option<&'a mut ChangeCache> {
    if let Some(i) = caches[..*used].iter().position(|c| c.baseline == baseline) {
        return Some(&mut caches[i]);
    }
    if *used == MAX_CACHED_BASELINES {
        return None;
    }
    if caches.len() == *used {
        caches.push(ChangeCache {
            baseline,
            slots: Vec::new(),
        });
    }
    let cache = &mut caches[*used];
    *used += 1;
    cache.baseline = baseline;
    cache.slots.clear();
    cache.slots.resize(entities, Slot::Unknown);
    Some(cache)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_protocol::view::Replica;
    use tickwire_protocol::{PlayerState, ProjectileState, SnapshotHeader, codec};

    fn player(x: u16) -> EntityState {
        EntityState::Player(PlayerState {
            x,
            y: 4,
            aim: 0,
            hp: 100,
            score: 0,
        })
    }

    fn ent(id: u32, state: EntityState) -> FrameEntity {
        FrameEntity {
            id: NetId(id),
            state,
            hash: 0,
            pos: IVec2::ZERO,
        }
    }

    fn fill(r: &mut Replication, tick: u32, ents: &[(u32, EntityState)]) {
        let list = r.begin(Tick(tick));
        list.extend(ents.iter().map(|(id, s)| ent(*id, *s)));
        r.commit();
    }

    fn apply(
        replica: &mut Replica,
        r: &mut Replication,
        tick: u32,
        baseline: Option<u32>,
    ) -> usize {
        let (used, bytes) = r.body(baseline.map(Tick));
        let mut frame = Vec::new();
        let header = SnapshotHeader {
            tick: Tick(tick),
            baseline: used,
            last_input_seq: 0,
        };
        codec::encode_snapshot_frame(&header, &bytes, &mut frame);
        let tickwire_protocol::ServerMsg::Snapshot(s) =
            codec::decode_server(&frame).expect("decodes")
        else {
            panic!("not a snapshot");
        };
        replica.apply(&s.header, &s.body).expect("applies cleanly");
        frame.len()
    }

    fn global() -> Replication {
        Replication::new(4, Visibility::Global, IVec2::splat(16_000))
    }

    #[test]
    fn deltas_reproduce_the_world_including_replaced_entities() {
        let mut r = global();
        let mut replica = Replica::new();
        let proj = |born: u32| {
            EntityState::Projectile(ProjectileState {
                x: 1,
                y: 2,
                vx: 3,
                vy: 4,
                born: Tick(born),
                owner: NetId(1),
            })
        };
        fill(&mut r, 1, &[(1, player(0)), (2, player(5)), (3, proj(1))]);
        apply(&mut replica, &mut r, 1, None);
        fill(&mut r, 2, &[(1, player(1)), (3, proj(2)), (4, player(1))]);
        apply(&mut replica, &mut r, 2, Some(1));
        fill(&mut r, 3, &[(4, player(9)), (5, proj(3)), (9, player(2))]);
        apply(&mut replica, &mut r, 3, Some(1));
        let latest = replica.latest().expect("has view");
        assert_eq!(latest.entities.len(), 3);
        assert_eq!(latest.checksum(), r.latest().expect("frame").checksum);
    }

    #[test]
    fn bodies_are_shared_per_baseline_and_old_baselines_fall_back_to_full() {
        let mut r = Replication::new(2, Visibility::Global, IVec2::splat(16_000));
        fill(&mut r, 1, &[(1, player(0))]);
        fill(&mut r, 2, &[(1, player(1))]);
        let (b1, x1) = r.body(Some(Tick(1)));
        let (_, x2) = r.body(Some(Tick(1)));
        assert_eq!(b1, Some(Tick(1)));
        assert_eq!(x1.as_ptr(), x2.as_ptr(), "same bytes shared");
        fill(&mut r, 3, &[(1, player(2))]);
        let (b, _) = r.body(Some(Tick(1)));
        assert_eq!(b, None, "tick 1 was evicted: a full snapshot");
        assert!(r.frame(Tick(2)).is_some());
        assert!(r.frame(Tick(1)).is_none());
    }

    #[test]
    fn changes_list_each_kind_and_cached_records_match_fresh_ones() {
        let a = [ent(1, player(1)), ent(2, player(2)), ent(4, player(4))];
        let b = [ent(2, player(3)), ent(3, player(3)), ent(4, player(4))];
        let mut cache = ChangeCache {
            baseline: Tick(1),
            slots: vec![Slot::Unknown; b.len()],
        };
        let decode = |w: &BodyWriter| {
            let mut body = Vec::new();
            w.finish(7, &mut body);
            let header = SnapshotHeader {
                tick: Tick(2),
                baseline: Some(Tick(1)),
                last_input_seq: 0,
            };
            let mut frame = Vec::new();
            codec::encode_snapshot_frame(&header, &body, &mut frame);
            match codec::decode_server(&frame).expect("decodes") {
                tickwire_protocol::ServerMsg::Snapshot(s) => s.body,
                other => panic!("{other:?}"),
            }
        };
        for pass in 0..2 {
            // The second pass takes every record from the cache.
            let mut w = BodyWriter::default();
            write_changes(&a, b.iter().enumerate(), Some(&mut cache), &mut w);
            let out = decode(&w);
            assert_eq!(out.removed, vec![NetId(1)], "pass {pass}");
            assert_eq!(out.changed.len(), 1);
            assert_eq!((out.changed[0].id, out.changed[0].dx), (NetId(2), 1));
            assert_eq!(out.created.len(), 1);
            assert_eq!(out.created[0].id, NetId(3));
            assert_eq!(out.checksum, 7);
        }
        assert!(matches!(cache.slots[0], Slot::Changed(_)));
        assert!(matches!(cache.slots[2], Slot::Unchanged));
    }
}
