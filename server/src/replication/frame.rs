//! World frames: the replicated state of every entity at one tick, their history, and the
//! delta between two views of them.

use super::cells::{Aoi, CellIndex, SharedViews, ViewScratch, Viewpoint};
use super::records::{ChangeCache, CreatedCache};
use crate::config::AoiViews;
use bevy_ecs::resource::Resource;
use bytes::Bytes;
use glam::IVec2;
use std::collections::VecDeque;
use std::sync::Arc;
use tickwire_protocol::body::{BodyWriter, EncodedEntity, Layouts};
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
    /// In `aoi` mode, the entities by grid cell (filled when the frame is committed).
    pub cells: CellIndex,
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

/// What one walk found, for the lists written after `created`: reused between bodies.
#[derive(Debug, Default)]
pub(super) struct Walk {
    /// The merge walk's lists.
    pub(super) lists: WalkLists,
    /// Field layouts by component set.
    pub(super) layouts: Layouts,
    /// Created records of the newest frame's entities.
    pub(super) created: CreatedCache,
}

/// The lists one merge walk fills, reused between bodies.
#[derive(Debug, Default)]
pub(super) struct WalkLists {
    /// Entities in both views with the same components: their indices in the baseline's
    /// frame and in the newest frame.
    both: Vec<(u32, u32)>,
    /// Entities gone, or replaced.
    removed: Vec<NetId>,
}

/// Where [`write_changes`] takes an entity's created record and its change from.
pub(super) trait RecordSource {
    /// The created record of entity `ci` of the newest frame `cf`.
    fn created(&mut self, schema: &GameSchema, cf: &WorldFrame, ci: usize) -> &EncodedEntity;

    /// Writes into `w` the change of an entity with the same components at index `bi` of the
    /// baseline frame `bf` and `ci` of the newest frame `cf` (nothing if it did not change).
    fn write_change(
        &mut self,
        schema: &GameSchema,
        at: ((&WorldFrame, usize), (&WorldFrame, usize)),
        w: &mut BodyWriter,
    );
}

/// Records encoded on first use into caches the tick thread owns (`changes` given), or
/// changes written straight into the body (`None`: one body per baseline, as in `global` mode).
pub(super) struct Lazy<'a> {
    pub(super) layouts: &'a mut Layouts,
    pub(super) created: &'a mut CreatedCache,
    pub(super) changes: Option<&'a mut ChangeCache>,
}

impl RecordSource for Lazy<'_> {
    fn created(&mut self, schema: &GameSchema, cf: &WorldFrame, ci: usize) -> &EncodedEntity {
        self.created.record(schema, self.layouts, cf, ci)
    }

    fn write_change(
        &mut self,
        schema: &GameSchema,
        ((bf, bi), (cf, ci)): ((&WorldFrame, usize), (&WorldFrame, usize)),
        w: &mut BodyWriter,
    ) {
        let c = &cf.entities[ci];
        match self.changes.as_deref_mut() {
            Some(cache) => {
                if let Some(rec) = cache.change(schema, self.layouts, (bf, bi), (cf, ci)) {
                    w.changed(c.id, rec);
                }
            }
            None => {
                let layout = self.layouts.get(schema, c.mask);
                w.changed_from(c.id, layout, bf.words_of(&bf.entities[bi]), cf.words_of(c));
            }
        }
    }
}

/// Records read from caches filled before the clients' bodies are built ([`CreatedCache::fill`],
/// [`ChangeCache::fill`]), shared by the threads that build them. A record the caches lack
/// (none, when they were filled for this tick) is encoded into the thread's own spare.
pub(super) struct Ready<'a> {
    pub(super) created: &'a CreatedCache,
    pub(super) changes: Option<&'a ChangeCache>,
    pub(super) spare: &'a mut Spare,
}

/// One thread's own layouts and records, for what [`Ready`]'s caches lack.
#[derive(Debug, Default)]
pub(super) struct Spare {
    layouts: Layouts,
    entity: EncodedEntity,
}

impl RecordSource for Ready<'_> {
    fn created(&mut self, schema: &GameSchema, cf: &WorldFrame, ci: usize) -> &EncodedEntity {
        if let Some(rec) = self.created.get(ci) {
            return rec;
        }
        let c = &cf.entities[ci];
        let spare = &mut *self.spare;
        spare.entity.encode_with(
            spare.layouts.get(schema, c.mask),
            schema.components.len(),
            c.mask,
            cf.words_of(c),
        );
        &spare.entity
    }

    fn write_change(
        &mut self,
        schema: &GameSchema,
        ((bf, bi), (cf, ci)): ((&WorldFrame, usize), (&WorldFrame, usize)),
        w: &mut BodyWriter,
    ) {
        let c = &cf.entities[ci];
        match self.changes.and_then(|cache| cache.get(ci)) {
            Some(Some(rec)) => w.changed(c.id, rec),
            Some(None) => {}
            None => {
                let layout = self.spare.layouts.get(schema, c.mask);
                w.changed_from(c.id, layout, bf.words_of(&bf.entities[bi]), cf.words_of(c));
            }
        }
    }
}

/// Writes into `w` the changes from the view `base` (entities of frame `bf`) to the view `cur`
/// (entities of the newest frame `cf`, with their indices in it), each sorted by id. One merge
/// walk writes the created entities (new, or whose component set changed) and collects the
/// rest; then the field-level changes, then the removals (gone, or replaced), in the order the
/// body's bit stream has them. Records come from `src`.
pub(super) fn write_changes<'a>(
    schema: &GameSchema,
    (bf, base): (&WorldFrame, impl Iterator<Item = (usize, &'a FrameEntity)>),
    (cf, cur): (&WorldFrame, impl Iterator<Item = (usize, &'a FrameEntity)>),
    src: &mut impl RecordSource,
    lists: &mut WalkLists,
    w: &mut BodyWriter,
) {
    let WalkLists { both, removed } = lists;
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
                    w.created_from(c.id, src.created(schema, cf, *ci));
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
                w.created_from(c.id, src.created(schema, cf, *ci));
                cur.next();
            }
            (None, None) => break,
        }
    }
    for &(bi, ci) in both.iter() {
        src.write_change(schema, ((bf, bi as usize), (cf, ci as usize)), w);
    }
    // Removals in id order: gone ones and replaced ones were collected in one ascending walk.
    for id in removed.iter() {
        w.removed(*id);
    }
}

/// The entities of `frame` at `indices`, with their indices.
pub(super) fn subset<'a>(
    frame: &'a WorldFrame,
    indices: &'a [u32],
) -> impl Iterator<Item = (usize, &'a FrameEntity)> {
    indices
        .iter()
        .map(move |&i| (i as usize, &frame.entities[i as usize]))
}

/// The frame of `tick` in a history of consecutive ticks, oldest first.
pub(super) fn find_frame(history: &VecDeque<WorldFrame>, tick: Tick) -> Option<&WorldFrame> {
    let newest = history.back()?.tick;
    let age = usize::try_from(newest.since(tick)).ok()?;
    let idx = history.len().checked_sub(1 + age)?;
    history.get(idx).filter(|f| f.tick == tick)
}

/// What the threads building views share, from [`Replication::views_parallel`].
#[derive(Debug, Clone, Copy)]
pub struct ViewsBuild<'a> {
    schema: &'a GameSchema,
    history: &'a VecDeque<WorldFrame>,
    frame: &'a WorldFrame,
    shared: SharedViews<'a>,
    whole_cells: bool,
}

impl ViewsBuild<'_> {
    /// True when views are whole cells ([`ViewsBuild::encode_cells`]), false when exact
    /// ([`ViewsBuild::encode_exact`]).
    #[must_use]
    pub fn whole_cells(&self) -> bool {
        self.whole_cells
    }

    /// Exact views: fills `view` with the entities seen from `eye` now and `scratch.body` with
    /// the body from `base` (a tick and what the client saw then, or `None` for a full
    /// snapshot): the bytes [`Replication::visible`] and [`Replication::encode_exact`] give. A
    /// baseline whose frame left history falls back to a full snapshot, which the returned
    /// baseline reports.
    pub fn encode_exact(
        &self,
        base: Option<(Tick, &[u32])>,
        eye: Viewpoint,
        view: &mut Vec<u32>,
        scratch: &mut ViewScratch,
    ) -> Option<Tick> {
        let base = base.and_then(|(t, idx)| Some((t, find_frame(self.history, t)?, idx)));
        self.shared
            .exact(self.schema, self.frame, base, eye, view, scratch);
        base.map(|(t, _, _)| t)
    }

    /// Views of whole cells: builds into `scratch.body` the body from the view seen from
    /// `base`'s viewpoint at its tick (`None`: a full snapshot) to the view seen from `now`:
    /// the bytes [`Replication::encode_view`] gives. Returns the baseline used (a baseline
    /// whose frame left history falls back to a full snapshot), or `None`, with nothing built,
    /// if the sections it needs were not prepared (the tick thread then builds it alone).
    pub fn encode_cells(
        &self,
        base: Option<(Tick, Viewpoint)>,
        now: Viewpoint,
        scratch: &mut ViewScratch,
    ) -> Option<Option<Tick>> {
        let base = base.and_then(|(t, eye)| Some((t, find_frame(self.history, t)?, eye)));
        self.shared
            .cells(self.schema, self.frame, base, now, scratch)
            .then_some(base.map(|(t, _, _)| t))
    }
}

/// The history of world frames, the interest grid, and this tick's shared snapshot bodies.
#[derive(Resource, Debug)]
pub struct Replication {
    schema: Arc<GameSchema>,
    capacity: usize,
    history: VecDeque<WorldFrame>,
    /// A frame being filled for the current tick; reuses the evicted frame's buffer.
    pending: WorldFrame,
    /// In `aoi` mode, the grid and this tick's shared sections.
    aoi: Option<Aoi>,
    bodies: Vec<(Option<Tick>, Bytes)>,
    writer: BodyWriter,
    walk: Walk,
    encode_buf: Vec<u8>,
    /// Ticks whose views were prepared to be built on more than one thread.
    parallel_ticks: u64,
}

impl Replication {
    /// Keeps `capacity` ticks of history of a game with `schema`; `interest` (a radius and
    /// the world's extent, in interest units, and how views are cut) gives each client its own
    /// view, `None` one shared view.
    #[must_use]
    pub fn new(
        capacity: usize,
        schema: Arc<GameSchema>,
        interest: Option<(i32, IVec2, AoiViews)>,
    ) -> Replication {
        Replication {
            schema,
            aoi: interest.map(|(r, extent, views)| Aoi::new(r, extent, views)),
            capacity: capacity.max(1),
            history: VecDeque::with_capacity(capacity + 1),
            pending: WorldFrame::default(),
            bodies: Vec::new(),
            writer: BodyWriter::default(),
            walk: Walk::default(),
            encode_buf: Vec::new(),
            parallel_ticks: 0,
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
        let mut frame = std::mem::replace(&mut self.pending, recycled);
        self.walk.created.reset(frame.entities.len());
        if let Some(aoi) = &mut self.aoi {
            aoi.index(&mut frame);
            aoi.new_tick(frame.entities.len());
        }
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
        self.aoi.is_some()
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
        let Walk {
            lists,
            layouts,
            created,
        } = &mut self.walk;
        let mut src = Lazy {
            layouts,
            created,
            changes: None,
        };
        write_changes(
            &self.schema,
            (base, base.entities.iter().enumerate()),
            (cur, cur.entities.iter().enumerate()),
            &mut src,
            lists,
            &mut self.writer,
        );
        self.writer.finish(cur.checksum, out);
    }

    /// Forgets this tick's shared records and sections, so the next
    /// [`Replication::encode_view`] encodes everything afresh (benches time the cold and the
    /// warm case).
    pub fn clear_change_caches(&mut self) {
        let entities = self.history.back().map_or(0, |f| f.entities.len());
        self.walk.created.reset(entities);
        if let Some(aoi) = &mut self.aoi {
            aoi.new_tick(entities);
        }
    }

    /// AOI mode: where the player `own` looks from in the newest frame; `None` if it is not
    /// in it (or in global mode).
    #[must_use]
    pub fn viewpoint(&self, own: NetId) -> Option<Viewpoint> {
        self.aoi.as_ref()?;
        let frame = self.history.back()?;
        let i = frame.index_of(own)?;
        Some(Viewpoint(frame.entities[i].pos))
    }

    /// AOI mode: fills `out` with the indices (into the newest frame, ascending) of the
    /// entities seen from `eye`.
    pub fn visible(&mut self, eye: Viewpoint, out: &mut Vec<u32>) {
        out.clear();
        if let (Some(aoi), Some(frame)) = (&mut self.aoi, self.history.back()) {
            aoi.visible(frame, eye, out);
        }
    }

    /// AOI mode: true when views are whole grid cells ([`AoiViews::Cells`]), built with
    /// [`Replication::encode_view`]; false for exact views, built with
    /// [`Replication::encode_exact`] from the visible sets.
    #[must_use]
    pub fn whole_cells(&self) -> bool {
        self.aoi.as_ref().is_some_and(Aoi::whole_cells)
    }

    /// AOI mode, exact views: encodes into `out` the body from the view `base` (a tick and the
    /// indices visible then, in its frame, or `None` for a full snapshot) to the view `cur`
    /// (indices into the newest frame, ascending; see [`Replication::visible`]). One merge walk
    /// over the two views; change records are encoded once per baseline per tick and created
    /// records once per tick, shared by every client whose view has them. A baseline whose frame
    /// left history falls back to a full snapshot, which the returned baseline reports.
    pub fn encode_exact(
        &mut self,
        base: Option<(Tick, &[u32])>,
        cur: &[u32],
        out: &mut Vec<u8>,
    ) -> Option<Tick> {
        out.clear();
        let Replication {
            schema,
            history,
            aoi,
            writer,
            ..
        } = self;
        let (Some(aoi), Some(frame)) = (aoi.as_mut(), history.back()) else {
            return None;
        };
        let base = base.and_then(|(t, idx)| Some((t, find_frame(history, t)?, idx)));
        writer.clear();
        let (walk, cache) = aoi.walk_and_cache(base.map(|(t, bf, _)| (t, bf)), frame);
        let Walk {
            lists,
            layouts,
            created,
        } = walk;
        match base {
            Some((_, bf, idx)) => write_changes(
                schema,
                (bf, subset(bf, idx)),
                (frame, subset(frame, cur)),
                &mut Lazy {
                    layouts,
                    created,
                    changes: Some(cache),
                },
                lists,
                writer,
            ),
            None => write_changes(
                schema,
                (frame, std::iter::empty()),
                (frame, subset(frame, cur)),
                &mut Lazy {
                    layouts,
                    created,
                    changes: None,
                },
                lists,
                writer,
            ),
        }
        let checksum = subset(frame, cur).fold(0u32, |acc, (_, e)| acc.wrapping_add(e.hash));
        writer.finish(checksum, out);
        base.map(|(t, _, _)| t)
    }

    /// Ticks whose views were prepared to be built on more than one thread
    /// ([`Replication::views_parallel`]).
    #[must_use]
    pub fn parallel_ticks(&self) -> u64 {
        self.parallel_ticks
    }

    /// AOI mode, views built on several threads: encodes this tick's shared records (and for
    /// views of whole cells, every cell's sections) for the clients' `baselines` (each tick once
    /// is enough; `full` when some client gets a full snapshot; a baseline no longer in history
    /// counts as a full snapshot), then returns what every thread reads ([`ViewsBuild`]) and a
    /// scratch for each of `threads`. `None` outside `aoi` mode or before the first frame.
    pub fn views_parallel(
        &mut self,
        baselines: &[Tick],
        full: bool,
        threads: usize,
    ) -> Option<(ViewsBuild<'_>, &mut [ViewScratch])> {
        let Replication {
            schema,
            history,
            aoi,
            parallel_ticks,
            ..
        } = self;
        let (Some(aoi), Some(frame)) = (aoi.as_mut(), history.back()) else {
            return None;
        };
        if threads > 1 {
            *parallel_ticks += 1;
        }
        let history: &VecDeque<WorldFrame> = history;
        let frames: Vec<(Tick, &WorldFrame)> = baselines
            .iter()
            .filter_map(|t| Some((*t, find_frame(history, *t)?)))
            .collect();
        let full = full || frames.len() < baselines.len();
        let whole_cells = aoi.whole_cells();
        let (shared, scratch) = if whole_cells {
            let bases = frames.into_iter().map(Some).chain(full.then_some(None));
            aoi.prepare_cells(schema, frame, bases, threads)
        } else {
            aoi.prepare_exact(schema, frame, frames, threads)
        };
        let build = ViewsBuild {
            schema,
            history,
            frame,
            shared,
            whole_cells,
        };
        Some((build, scratch))
    }

    /// AOI mode, views of whole cells ([`AoiViews::Cells`]; exact views use
    /// [`Replication::encode_exact`]): encodes into `out` the body from the view seen from
    /// `base`'s viewpoint at its tick (or `None` for a full snapshot) to the view seen from `now`
    /// in the newest frame. The work is shared by cell and baseline between clients (see
    /// [`super::cells`]). A baseline whose frame left history falls back to a full snapshot,
    /// which the returned baseline reports.
    pub fn encode_view(
        &mut self,
        base: Option<(Tick, Viewpoint)>,
        now: Viewpoint,
        out: &mut Vec<u8>,
    ) -> Option<Tick> {
        out.clear();
        let Replication {
            schema,
            history,
            aoi,
            ..
        } = self;
        let (Some(aoi), Some(frame)) = (aoi.as_mut(), history.back()) else {
            return None;
        };
        debug_assert!(aoi.whole_cells(), "exact views are built by encode_exact");
        let base = base.and_then(|(t, eye)| Some((t, find_frame(history, t)?, eye)));
        aoi.encode(schema, frame, base, now, out);
        base.map(|(t, _, _)| t)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use tickwire_protocol::codec;
    use tickwire_protocol::replica::Replica;
    use tickwire_protocol::schema::{ComponentSchema, Delta, Encoding, Field};
    use tickwire_protocol::{ServerMsg, SnapshotHeader};

    /// A schema of two components: `Pos` (`x`, `y`: integers from -1000 to 5000, sent as
    /// small differences) and `Tag` (`t`: a varuint).
    pub(in crate::replication) fn schema() -> Arc<GameSchema> {
        let num = |n: &str| {
            Field::new(
                n,
                Encoding::Int {
                    min: -1000,
                    max: 5000,
                },
            )
            .delta(Delta::Diff { bits: 5 })
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

    /// Appends entity `id` of [`schema`] to a frame being filled: a `Pos` at `(x, y)`, and a
    /// `Tag` if `tag` is given; placed at `pos` for interest management.
    pub(in crate::replication) fn push_entity(
        frame: &mut WorldFrame,
        id: u32,
        (x, y): (i64, i64),
        tag: Option<i64>,
        pos: Option<IVec2>,
    ) {
        let start = frame.words.len() as u32;
        frame.words.extend([x, y]);
        frame.words.extend(tag);
        frame.entities.push(FrameEntity {
            id: NetId(id),
            mask: if tag.is_some() { 3 } else { 1 },
            start,
            len: frame.words.len() as u32 - start,
            hash: 0,
            pos,
        });
    }

    /// Entity `id` with a position, or (odd `x`) a tag too.
    fn fill(r: &mut Replication, tick: u32, ents: &[(u32, i64)]) {
        let frame = r.begin(Tick(tick));
        for &(id, x) in ents {
            push_entity(frame, id, (x, 4), (x % 2 == 1).then_some(9), None);
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

    /// What a thread's prepared caches lack (a created record, a change against a baseline
    /// not prepared) it encodes itself: the body is the one the tick thread's lazy caches give,
    /// and the one written with no caches at all.
    #[test]
    fn records_missing_from_prepared_caches_give_the_same_body() {
        let schema = schema();
        let frame = |ents: &[(u32, i64, Option<i64>)]| {
            let mut f = WorldFrame::default();
            for &(id, x, tag) in ents {
                push_entity(&mut f, id, (x, 4), tag, None);
            }
            f.seal();
            f
        };
        // 1 moves, 2 stays, 3 gains a tag (replaced), 4 goes, 5 comes.
        let bf = frame(&[(1, 0, None), (2, 5, Some(1)), (3, 8, None), (4, 1, None)]);
        let cf = frame(&[
            (1, 3, None),
            (2, 5, Some(1)),
            (3, 8, Some(2)),
            (5, 7, Some(3)),
        ]);
        let n = cf.entities.len();
        let body = |src: &mut dyn FnMut(&mut WalkLists, &mut BodyWriter)| {
            let mut w = BodyWriter::default();
            src(&mut WalkLists::default(), &mut w);
            let mut out = Vec::new();
            w.finish(cf.checksum, &mut out);
            out
        };
        let views = || {
            (
                (&bf, bf.entities.iter().enumerate()),
                (&cf, cf.entities.iter().enumerate()),
            )
        };
        let (mut layouts, mut created, mut changes) = (
            Layouts::default(),
            CreatedCache::default(),
            ChangeCache::default(),
        );
        created.reset(n);
        changes.reset(n);
        let lazy = body(&mut |lists, w| {
            let (base, cur) = views();
            let mut src = Lazy {
                layouts: &mut layouts,
                created: &mut created,
                changes: Some(&mut changes),
            };
            write_changes(&schema, base, cur, &mut src, lists, w);
        });
        // Caches started for this frame and never filled: every record comes from the spare.
        let (mut empty_created, mut empty_changes) =
            (CreatedCache::default(), ChangeCache::default());
        empty_created.reset(n);
        empty_changes.reset(n);
        let mut spare = Spare::default();
        for changes in [Some(&empty_changes), None] {
            let ready = body(&mut |lists, w| {
                let (base, cur) = views();
                let mut src = Ready {
                    created: &empty_created,
                    changes,
                    spare: &mut spare,
                };
                write_changes(&schema, base, cur, &mut src, lists, w);
            });
            assert_eq!(ready, lazy);
        }
        let (mut replica, mut base) = (Replica::new(Arc::clone(&schema)), Vec::new());
        let header = |tick, baseline| SnapshotHeader {
            tick: Tick(tick),
            baseline,
            last_input_seq: 0,
            input_lead: 0,
        };
        let mut full = WalkLists::default();
        let mut w = BodyWriter::default();
        let empty = WorldFrame::default();
        let mut base_created = CreatedCache::default();
        base_created.reset(bf.entities.len());
        write_changes(
            &schema,
            (&empty, empty.entities.iter().enumerate()),
            (&bf, bf.entities.iter().enumerate()),
            &mut Lazy {
                layouts: &mut Layouts::default(),
                created: &mut base_created,
                changes: None,
            },
            &mut full,
            &mut w,
        );
        w.finish(bf.checksum, &mut base);
        replica
            .apply(&header(1, None), &base)
            .expect("the full body applies");
        let view = replica
            .apply(&header(2, Some(Tick(1))), &lazy)
            .expect("the delta applies with the server's checksum");
        assert_eq!(view.entities.len(), 4);
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
}
