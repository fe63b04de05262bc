//! World frames: the replicated state of every entity at one tick, their history, and the
//! delta between two views of them.

use super::interest::Interest;
use bevy_ecs::resource::Resource;
use bytes::Bytes;
use glam::IVec2;
use std::collections::VecDeque;
use std::sync::Arc;
use tickwire_protocol::body::{BodyWriter, EncodedChange, EncodedEntity, Layouts};
use tickwire_protocol::state::entity_hash;
use tickwire_protocol::{GameSchema, NetId, Tick};

/// One entity in a frame; its words are `frame.words[start..start + len]`.
#[derive(Debug, Clone, Copy)]
pub struct FrameEntity {
    /// Its id.
    pub id: NetId,
    /// Which registered components it has.
    pub mask: u32,
    /// Where its words start in the frame's word list.
    pub start: u32,
    /// How many words it has.
    pub len: u32,
    /// [`entity_hash`] of id, mask and words, computed once per tick.
    pub hash: u32,
    /// Where the game places it for interest management, if anywhere.
    pub pos: Option<IVec2>,
}

/// Every replicated entity at one tick, sorted by id.
#[derive(Debug, Default, Clone)]
pub struct WorldFrame {
    /// The tick.
    pub tick: Tick,
    /// Entities, sorted by id.
    pub entities: Vec<FrameEntity>,
    /// The entities' words, one after the other.
    pub words: Vec<i64>,
    /// Wrapping sum of the entities' hashes: the checksum of a view that sees them all.
    pub checksum: u32,
}

impl WorldFrame {
    /// Hashes each entity and sums the checksum; call after filling (in id order: capture
    /// sorts once, so sealing does not sort again).
    pub fn seal(&mut self) {
        debug_assert!(
            self.entities.windows(2).all(|w| w[0].id < w[1].id),
            "frame entities are filled in ascending id order"
        );
        let mut sum = 0u32;
        for e in &mut self.entities {
            let words = &self.words[e.start as usize..(e.start + e.len) as usize];
            e.hash = entity_hash(e.id, e.mask, words);
            sum = sum.wrapping_add(e.hash);
        }
        self.checksum = sum;
    }

    /// The words of one of this frame's entities.
    #[must_use]
    pub fn words_of(&self, e: &FrameEntity) -> &[i64] {
        &self.words[e.start as usize..(e.start + e.len) as usize]
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
    /// Its change record, by index into the cache's records.
    Changed(u32),
}

/// Records encoded this tick, their buffers kept from tick to tick.
#[derive(Debug)]
struct Records<R> {
    all: Vec<R>,
    /// The first `used` are this tick's.
    used: usize,
}

impl<R: Default> Records<R> {
    fn new() -> Records<R> {
        Records {
            all: Vec::new(),
            used: 0,
        }
    }

    /// Forgets this tick's records (keeping their buffers).
    fn clear(&mut self) {
        self.used = 0;
    }

    /// A buffer for the next record; [`Records::keep`] counts it as one of this tick's.
    fn next(&mut self) -> &mut R {
        if self.all.len() == self.used {
            self.all.push(R::default());
        }
        &mut self.all[self.used]
    }

    /// Keeps the record [`Records::next`] gave; returns its index.
    fn keep(&mut self) -> u32 {
        self.used += 1;
        (self.used - 1) as u32
    }

    fn get(&self, i: u32) -> &R {
        &self.all[i as usize]
    }
}

impl<R: Default> Default for Records<R> {
    fn default() -> Self {
        Records::new()
    }
}

/// This tick's change records against one baseline, by entity index in the newest frame: each
/// is encoded once, however many clients' views contain it.
#[derive(Debug)]
struct ChangeCache {
    baseline: Tick,
    slots: Vec<Slot>,
    records: Records<EncodedChange>,
}

/// Most baselines cached per tick; clients whose baseline is not among them still get correct
/// frames, built without the cache.
const MAX_CACHED_BASELINES: usize = 8;

/// What one walk found, for the lists written after `created`: reused between bodies.
#[derive(Debug, Default)]
struct Walk {
    /// Entities in both views with the same components: their indices in the baseline's
    /// frame and in the newest frame.
    both: Vec<(u32, u32)>,
    /// Entities gone, or replaced.
    removed: Vec<NetId>,
    /// Field layouts by component set.
    layouts: Layouts,
    /// Created records of the newest frame's entities.
    created: CreatedCache,
}

/// The newest frame's created records, by entity index: each entity is encoded in full once
/// per tick, however many clients newly see it.
#[derive(Debug, Default)]
struct CreatedCache {
    /// Per entity: its record's index, or `u32::MAX` if not encoded yet.
    slots: Vec<u32>,
    records: Records<EncodedEntity>,
}

impl CreatedCache {
    /// Forgets the records: a new frame with `entities` entities is the newest.
    fn reset(&mut self, entities: usize) {
        self.records.clear();
        self.slots.clear();
        self.slots.resize(entities, u32::MAX);
    }

    /// The record of entity `idx` of the newest frame `cf`, encoded on first use.
    fn record(
        &mut self,
        schema: &GameSchema,
        layouts: &mut Layouts,
        cf: &WorldFrame,
        idx: usize,
    ) -> &EncodedEntity {
        if self.slots[idx] == u32::MAX {
            let c = &cf.entities[idx];
            self.records.next().encode_with(
                layouts.get(schema, c.mask),
                schema.components.len(),
                c.mask,
                cf.words_of(c),
            );
            self.slots[idx] = self.records.keep();
        }
        self.records.get(self.slots[idx])
    }
}

/// Writes into `w` the changes from the view `base` (entities of frame `bf`) to the view `cur`
/// (entities of the newest frame `cf`, with their indices in it), each sorted by id. One merge
/// walk writes the created entities (new, or whose component set changed) and collects the
/// rest; then the field-level records of entities that changed (taken from `cache` when given,
/// and filled in when missing), then the removals (gone, or replaced), in the order the body's
/// bit stream has them.
#[allow(clippy::too_many_arguments)] // Two frames and their views, a cache, the walk, output.
fn write_changes<'a>(
    schema: &GameSchema,
    bf: &WorldFrame,
    base: impl Iterator<Item = (usize, &'a FrameEntity)>,
    cf: &WorldFrame,
    cur: impl Iterator<Item = (usize, &'a FrameEntity)>,
    mut cache: Option<&mut ChangeCache>,
    walk: &mut Walk,
    w: &mut BodyWriter,
) {
    let Walk {
        both,
        removed,
        layouts,
        created,
    } = walk;
    both.clear();
    removed.clear();
    let mut base = base.peekable();
    let mut cur = cur.peekable();
    loop {
        match (base.peek(), cur.peek()) {
            (Some((bi, b)), Some((ci, c))) if b.id == c.id => {
                if b.mask == c.mask {
                    both.push((*bi as u32, *ci as u32));
                } else {
                    w.created_from(c.id, created.record(schema, layouts, cf, *ci));
                    removed.push(b.id);
                }
                base.next();
                cur.next();
            }
            (Some((_, b)), Some((_, c))) if b.id < c.id => {
                removed.push(b.id);
                base.next();
            }
            (Some((_, b)), None) => {
                removed.push(b.id);
                base.next();
            }
            (_, Some((ci, c))) => {
                w.created_from(c.id, created.record(schema, layouts, cf, *ci));
                cur.next();
            }
            (None, None) => break,
        }
    }
    for &(bi, ci) in both.iter() {
        let (b, c) = (&bf.entities[bi as usize], &cf.entities[ci as usize]);
        match cache.as_deref_mut() {
            Some(cache) => {
                let slot = match cache.slots[ci as usize] {
                    Slot::Unknown => {
                        let (old, new) = (bf.words_of(b), cf.words_of(c));
                        let fresh = if b.hash == c.hash && old == new {
                            Slot::Unchanged
                        } else {
                            let rec = cache.records.next();
                            if rec.encode_with(layouts.get(schema, c.mask), old, new) {
                                Slot::Changed(cache.records.keep())
                            } else {
                                Slot::Unchanged
                            }
                        };
                        cache.slots[ci as usize] = fresh;
                        fresh
                    }
                    known => known,
                };
                if let Slot::Changed(i) = slot {
                    w.changed(c.id, cache.records.get(i));
                }
            }
            None => {
                // No record to share: the change (if any) goes straight into the body.
                let layout = layouts.get(schema, c.mask);
                w.changed_from(c.id, layout, bf.words_of(b), cf.words_of(c));
            }
        }
    }
    // Removals in id order: gone ones and replaced ones were collected in one ascending walk.
    for id in removed.iter() {
        w.removed(*id);
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
    schema: Arc<GameSchema>,
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
    walk: Walk,
    encode_buf: Vec<u8>,
}

impl Replication {
    /// Keeps `capacity` ticks of history of a game with `schema`; `interest` (a radius and
    /// the world's extent, in interest units) gives each client its own view, `None` one
    /// shared view.
    #[must_use]
    pub fn new(
        capacity: usize,
        schema: Arc<GameSchema>,
        interest: Option<(i32, IVec2)>,
    ) -> Replication {
        Replication {
            schema,
            interest: interest.map(|(r, extent)| Interest::new(r, extent)),
            capacity: capacity.max(1),
            history: VecDeque::with_capacity(capacity + 1),
            pending: WorldFrame::default(),
            bodies: Vec::new(),
            writer: BodyWriter::default(),
            caches: Vec::new(),
            caches_used: 0,
            walk: Walk::default(),
            encode_buf: Vec::new(),
        }
    }

    /// Starts the frame of `tick`: returns the empty frame to fill (entities in ascending id
    /// order, each with its words appended to the frame's words).
    pub fn begin(&mut self, tick: Tick) -> &mut WorldFrame {
        self.pending.tick = tick;
        self.pending.entities.clear();
        self.pending.words.clear();
        self.bodies.clear();
        &mut self.pending
    }

    /// The game's schema.
    #[must_use]
    pub fn schema(&self) -> &Arc<GameSchema> {
        &self.schema
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
        self.walk.created.reset(frame.entities.len());
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
        let empty = WorldFrame::default();
        let base = baseline
            .and_then(|b| find_frame(&self.history, b))
            .unwrap_or(&empty);
        write_changes(
            &self.schema,
            base,
            base.entities.iter().enumerate(),
            cur,
            cur.entities.iter().enumerate(),
            None,
            &mut self.walk,
            &mut self.writer,
        );
        self.writer.finish(cur.checksum, out);
    }

    /// Forgets this tick's cached change and created records, so the next
    /// [`Replication::encode_view`] encodes every record afresh (benches time the cold and the warm case).
    pub fn clear_change_caches(&mut self) {
        self.caches_used = 0;
        let entities = self.history.back().map_or(0, |f| f.entities.len());
        self.walk.created.reset(entities);
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
            schema,
            history,
            writer,
            caches,
            caches_used,
            walk,
            ..
        } = self;
        let frame = history.back()?;
        let base = base.and_then(|(t, idx)| Some((t, find_frame(history, t)?, idx)));
        writer.clear();
        match base {
            Some((t, bf, idx)) => {
                let cache = change_cache(caches, caches_used, t, frame.entities.len());
                let base_entities = subset(bf, idx);
                write_changes(
                    schema,
                    bf,
                    base_entities,
                    frame,
                    subset(frame, cur),
                    cache,
                    walk,
                    writer,
                );
            }
            None => write_changes(
                schema,
                frame,
                std::iter::empty(),
                frame,
                subset(frame, cur),
                None,
                walk,
                writer,
            ),
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
            records: Records::new(),
        });
    }
    let cache = &mut caches[*used];
    *used += 1;
    cache.baseline = baseline;
    cache.records.clear();
    cache.slots.clear();
    cache.slots.resize(entities, Slot::Unknown);
    Some(cache)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_protocol::codec;
    use tickwire_protocol::replica::Replica;
    use tickwire_protocol::schema::{ComponentSchema, Delta, Encoding, Field};
    use tickwire_protocol::{ServerMsg, SnapshotHeader};

    fn schema() -> Arc<GameSchema> {
        let num = |n: &str| {
            Field::new(
                n,
                Encoding::Int {
                    min: -1000,
                    max: 1000,
                },
            )
            .delta(Delta::Diff { bits: 4 })
        };
        Arc::new(GameSchema {
            game: "test".into(),
            components: vec![
                ComponentSchema {
                    name: "Pos".into(),
                    fields: vec![num("x"), num("y")],
                },
                ComponentSchema {
                    name: "Tag".into(),
                    fields: vec![Field::new("t", Encoding::VarUInt)],
                },
            ],
            ..GameSchema::default()
        })
    }

    /// Entity `id` with a position, or (odd `x`) a tag too.
    fn fill(r: &mut Replication, tick: u32, ents: &[(u32, i64)]) {
        let frame = r.begin(Tick(tick));
        for &(id, x) in ents {
            let start = frame.words.len() as u32;
            frame.words.extend([x, 4]);
            let mask = if x % 2 == 1 {
                frame.words.push(9);
                3
            } else {
                1
            };
            frame.entities.push(FrameEntity {
                id: NetId(id),
                mask,
                start,
                len: frame.words.len() as u32 - start,
                hash: 0,
                pos: None,
            });
        }
        r.commit();
    }

    fn apply(replica: &mut Replica, r: &mut Replication, tick: u32, baseline: Option<u32>) {
        let (used, bytes) = r.body(baseline.map(Tick));
        let header = SnapshotHeader {
            tick: Tick(tick),
            baseline: used,
            last_input_seq: 0,
            input_lead: 0,
        };
        let mut frame = Vec::new();
        codec::encode_snapshot_frame(&header, &bytes, &mut frame);
        let ServerMsg::Snapshot(s) = codec::decode_server(&frame).expect("decodes") else {
            panic!("not a snapshot");
        };
        replica.apply(&s.header, &s.body).expect("applies cleanly");
    }

    #[test]
    fn deltas_reproduce_the_world_including_replaced_entities() {
        let mut r = Replication::new(4, schema(), None);
        let mut replica = Replica::new(schema());
        fill(&mut r, 1, &[(1, 0), (2, 5), (3, 8)]);
        apply(&mut replica, &mut r, 1, None);
        // 1 moves a little, 2 goes, 3 changes its component set, 4 comes.
        fill(&mut r, 2, &[(1, 2), (3, 9), (4, 1)]);
        apply(&mut replica, &mut r, 2, Some(1));
        fill(&mut r, 3, &[(1, 900), (4, 1), (9, 2)]);
        apply(&mut replica, &mut r, 3, Some(1));
        let latest = replica.latest().expect("has view");
        assert_eq!(latest.entities.len(), 3);
        assert_eq!(latest.checksum(), r.latest().expect("frame").checksum);
    }

    #[test]
    fn bodies_are_shared_per_baseline_and_old_baselines_fall_back_to_full() {
        let mut r = Replication::new(2, schema(), None);
        fill(&mut r, 1, &[(1, 0)]);
        fill(&mut r, 2, &[(1, 2)]);
        let (b1, x1) = r.body(Some(Tick(1)));
        let (_, x2) = r.body(Some(Tick(1)));
        assert_eq!(b1, Some(Tick(1)));
        assert_eq!(x1.as_ptr(), x2.as_ptr(), "same bytes shared");
        fill(&mut r, 3, &[(1, 4)]);
        let (b, _) = r.body(Some(Tick(1)));
        assert_eq!(b, None, "tick 1 was evicted: a full snapshot");
        assert!(r.frame(Tick(2)).is_some());
        assert!(r.frame(Tick(1)).is_none());
    }

    #[test]
    fn cached_records_match_fresh_ones() {
        let mut r = Replication::new(4, schema(), Some((100, IVec2::splat(1000))));
        fill(&mut r, 1, &[(1, 0), (2, 2), (4, 4)]);
        fill(&mut r, 2, &[(2, 6), (3, 3), (4, 4)]);
        let all = [0u32, 1, 2];
        let mut first = Vec::new();
        let mut second = Vec::new();
        // The second encode takes every record from the cache.
        r.encode_view(Some((Tick(1), &all)), &all, &mut first);
        r.encode_view(Some((Tick(1), &all)), &all, &mut second);
        assert_eq!(first, second);
        r.clear_change_caches();
        let mut cold = Vec::new();
        r.encode_view(Some((Tick(1), &all)), &all, &mut cold);
        assert_eq!(first, cold);
        let mut replica = Replica::new(schema());
        let mut full = Vec::new();
        r.encode_view(None, &all, &mut full);
        let header = |tick, baseline| SnapshotHeader {
            tick: Tick(tick),
            baseline,
            last_input_seq: 0,
            input_lead: 0,
        };
        // Replay: tick 1 in full, then the delta.
        let mut r1 = Replication::new(4, schema(), Some((100, IVec2::splat(1000))));
        fill(&mut r1, 1, &[(1, 0), (2, 2), (4, 4)]);
        let mut b1 = Vec::new();
        r1.encode_view(None, &all, &mut b1);
        replica.apply(&header(1, None), &b1).expect("full applies");
        replica
            .apply(&header(2, Some(Tick(1))), &first)
            .expect("delta applies");
        assert_eq!(
            replica.latest().expect("view").checksum(),
            r.latest().expect("frame").checksum
        );
    }
}
