//! Interest management in `aoi` mode, by grid cell.
//!
//! The world is cut into square cells, [`CELLS_PER_RADIUS`] to a radius, and each frame is
//! indexed by cell when it is committed: a counting sort, so a cell's entities stay in id
//! order, and each cell's checksum summed once. Entities the game gives no position are in a
//! bucket every view holds whole. A view is cut one of two ways ([`AoiViews`]):
//!
//! - **exact** (the default): the entities within the radius of the client's player, gathered
//!   from the cells the radius touches (a distance test each) and kept per tick on the client's
//!   link; the body is one merge walk from the client's view at its baseline to its view now
//!   ([`super::Replication::encode_exact`]), one section, its records (created once per tick,
//!   changed once per baseline) shared between clients.
//! - **cells**: every entity of every cell the radius touches (all within the radius, and up to
//!   a cell's diagonal beyond it). Then the work is shared by cell: for each cell, its
//!   *arrivals* (the changes since the baseline of the entities that were in this same cell
//!   then, and the entities new since then) and its *departures* (its entities at the baseline
//!   that no longer exist) are encoded once per tick per baseline as sections ([`Section`]),
//!   and a client's body is the sections of the cells it sees now and saw then. Only the
//!   entities that moved between cells since the baseline (a few per cent a tick), and the cells
//!   that came into the view or left it, are done entity by entity, into one section of the
//!   client's own. The checksum of a view is the sum of its cells' checksums. The cost per
//!   client is the cells it sees, not the entities in them; the price is a view of about 1.7
//!   times the entities at two cells per radius, so as many more bytes.

use super::frame::{
    Lazy, Ready, RecordSource, Spare, Walk, WalkLists, WorldFrame, subset, write_changes,
};
use super::records::{ChangeCache, CreatedCache, Records};
use crate::config::AoiViews;
use glam::IVec2;
use tickwire_protocol::body::{BodyBuilder, BodyWriter, Layouts, Section};
use tickwire_protocol::{GameSchema, Tick};

/// Cells per radius: smaller cells put more of a view in whole cells (shared) and less on its
/// rim (entity by entity), but cut each client's body into more sections, each a few bytes.
pub const CELLS_PER_RADIUS: i32 = 2;

/// No index.
const NONE: u32 = u32::MAX;

/// Where a client looks from at one tick: its player's position, if the game gives it one.
/// A player without a position sees only the entities without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewpoint(pub Option<IVec2>);

/// The grid: square cells of `cell_q` interest units, `cols x rows` of them over the world;
/// points outside the world land in the border cells. Cell `y * cols + x`; the cell after the
/// last one is the bucket of entities without a position.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    /// True for views of whole cells ([`AoiViews::Cells`]).
    whole_cells: bool,
    cell_q: i32,
    cols: i32,
    rows: i32,
    radius_q: i64,
}

impl Geometry {
    /// The grid for a radius of `radius_q` interest units over a world of `extent` units, for
    /// views cut as `views` says.
    #[must_use]
    pub fn new(radius_q: i32, extent: IVec2, views: AoiViews) -> Geometry {
        let radius_q = radius_q.max(1);
        let cell_q = (radius_q / CELLS_PER_RADIUS).max(1);
        Geometry {
            whole_cells: views == AoiViews::Cells,
            cell_q,
            cols: (extent.x.max(0) / cell_q + 1).max(1),
            rows: (extent.y.max(0) / cell_q + 1).max(1),
            radius_q: i64::from(radius_q),
        }
    }

    /// The side of a cell, interest units.
    #[must_use]
    pub fn cell_q(&self) -> i32 {
        self.cell_q
    }

    /// Number of cells, not counting the bucket of entities without a position.
    fn cells(&self) -> usize {
        (self.cols * self.rows) as usize
    }

    /// The bucket of entities without a position: in every view.
    fn everywhere(&self) -> u32 {
        self.cells() as u32
    }

    fn xy(&self, p: IVec2) -> (i32, i32) {
        (
            p.x.div_euclid(self.cell_q).clamp(0, self.cols - 1),
            p.y.div_euclid(self.cell_q).clamp(0, self.rows - 1),
        )
    }

    /// The cell of a position (the bucket for none).
    fn cell_of(&self, p: Option<IVec2>) -> u32 {
        match p {
            Some(p) => {
                let (x, y) = self.xy(p);
                (y * self.cols + x) as u32
            }
            None => self.everywhere(),
        }
    }

    /// Distance along one axis from `v` to column (or row) `i` of `n`, the border ones
    /// reaching without bound; capped just past the radius.
    fn gap(&self, v: i32, i: i32, n: i32) -> i64 {
        let v = i64::from(v);
        let cell = i64::from(self.cell_q);
        let d = if i > 0 && v < i64::from(i) * cell {
            i64::from(i) * cell - v
        } else if i < n - 1 && v >= i64::from(i + 1) * cell {
            v - (i64::from(i + 1) * cell - 1)
        } else {
            0
        };
        d.min(self.radius_q + 1)
    }

    /// True if the radius around `center` touches cell `(x, y)`.
    fn touches(&self, center: IVec2, x: i32, y: i32) -> bool {
        let dx = self.gap(center.x, x, self.cols);
        let dy = self.gap(center.y, y, self.rows);
        dx * dx + dy * dy <= self.radius_q * self.radius_q
    }

    /// True if a client looking from `eye` sees an entity at `pos`: placed nowhere, or within
    /// the radius (exact views), or in a cell the radius touches (views of whole cells).
    #[must_use]
    #[inline]
    pub fn contains(&self, eye: Viewpoint, pos: Option<IVec2>) -> bool {
        match (eye.0, pos) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(c), Some(p)) if self.whole_cells => {
                let (x, y) = self.xy(p);
                self.touches(c, x, y)
            }
            (Some(c), Some(p)) => {
                let d = (p - c).as_i64vec2();
                d.length_squared() <= self.radius_q * self.radius_q
            }
        }
    }

    /// The cells the radius around `eye` touches, row by row, and the bucket of entities
    /// without a position last.
    pub fn view(&self, eye: Viewpoint, out: &mut Vec<u32>) {
        out.clear();
        if let Some(c) = eye.0 {
            let r = IVec2::splat(self.radius_q as i32);
            let (x0, y0) = self.xy(c.saturating_sub(r));
            let (x1, y1) = self.xy(c.saturating_add(r));
            for y in y0..=y1 {
                for x in x0..=x1 {
                    if self.touches(c, x, y) {
                        out.push((y * self.cols + x) as u32);
                    }
                }
            }
        }
        out.push(self.everywhere());
    }
}

/// A frame's entities by cell.
#[derive(Debug, Default, Clone)]
pub struct CellIndex {
    /// Per entity of the frame: its cell.
    cell_of: Vec<u32>,
    /// The entities of cell `c` are `items[start[c]..start[c + 1]]`, ascending.
    start: Vec<u32>,
    items: Vec<u32>,
    /// Per cell: the wrapping sum of its entities' hashes.
    sums: Vec<u32>,
}

impl CellIndex {
    /// Indexes a sealed frame's entities (hashes computed), keeping the buffers.
    fn build(&mut self, geo: &Geometry, frame: &WorldFrame) {
        let buckets = geo.cells() + 1;
        self.cell_of.clear();
        self.cell_of
            .extend(frame.entities.iter().map(|e| geo.cell_of(e.pos)));
        self.start.clear();
        self.start.resize(buckets + 1, 0);
        self.sums.clear();
        self.sums.resize(buckets, 0);
        for (e, &c) in frame.entities.iter().zip(&self.cell_of) {
            self.start[c as usize + 1] += 1;
            self.sums[c as usize] = self.sums[c as usize].wrapping_add(e.hash);
        }
        for c in 1..=buckets {
            self.start[c] += self.start[c - 1];
        }
        // Fill each cell from its start, moving the start to its end; then shift back.
        self.items.clear();
        self.items.resize(frame.entities.len(), 0);
        for (i, &c) in self.cell_of.iter().enumerate() {
            let at = &mut self.start[c as usize];
            self.items[*at as usize] = i as u32;
            *at += 1;
        }
        for c in (1..=buckets).rev() {
            self.start[c] = self.start[c - 1];
        }
        self.start[0] = 0;
    }

    /// Cells indexed, the bucket of entities without a position included.
    fn buckets(&self) -> u32 {
        self.start.len().saturating_sub(1) as u32
    }

    /// The entities of a cell, ascending.
    fn cell(&self, c: u32) -> &[u32] {
        &self.items[self.start[c as usize] as usize..self.start[c as usize + 1] as usize]
    }
}

/// A section kept for one cell, with the entities it leaves to each client: those that moved
/// between cells since the baseline, `movers[start..end]` of the cache.
#[derive(Debug, Default)]
struct CellSection {
    section: Section,
    start: u32,
    end: u32,
}

/// This tick's shared work against one baseline (or none: full snapshots).
#[derive(Debug, Default)]
struct BaselineCache {
    baseline: Option<Tick>,
    /// Per entity of the newest frame: its index in the baseline frame, or [`NONE`].
    back: Vec<u32>,
    /// Per entity of the baseline frame: its index in the newest frame, or [`NONE`].
    fwd: Vec<u32>,
    /// Per cell of the newest frame: its arrivals, by index into `sections`, or [`NONE`].
    arrivals: Vec<u32>,
    /// Per cell of the baseline frame: its departures, likewise.
    departures: Vec<u32>,
    sections: Records<CellSection>,
    /// Entities that moved between cells, by section: indices in the newest frame for
    /// arrivals, in the baseline frame for departures.
    movers: Vec<u32>,
    changes: ChangeCache,
    /// Every change against this baseline is encoded ([`ChangeCache::fill`]).
    filled: bool,
}

impl BaselineCache {
    /// Starts this tick's cache for `base` (its tick and frame) and the newest frame `cf`;
    /// `maps` also maps the two frames' entities to each other and readies the cells' sections
    /// (views of whole cells; exact views need only the change records).
    fn start(
        &mut self,
        base: Option<(Tick, &WorldFrame)>,
        cf: &WorldFrame,
        buckets: usize,
        maps: bool,
    ) {
        self.baseline = base.map(|(t, _)| t);
        self.changes.reset(cf.entities.len());
        self.filled = false;
        if !maps {
            return;
        }
        self.back.clear();
        self.back.resize(cf.entities.len(), NONE);
        self.fwd.clear();
        if let Some((_, bf)) = base {
            self.fwd.resize(bf.entities.len(), NONE);
            // One merge over the two frames, both sorted by id.
            let (mut i, mut j) = (0, 0);
            while i < bf.entities.len() && j < cf.entities.len() {
                let (b, c) = (bf.entities[i].id, cf.entities[j].id);
                if b == c {
                    self.fwd[i] = j as u32;
                    self.back[j] = i as u32;
                }
                i += usize::from(b <= c);
                j += usize::from(c <= b);
            }
        }
        self.arrivals.clear();
        self.arrivals.resize(buckets, NONE);
        self.departures.clear();
        self.departures.resize(buckets, NONE);
        self.sections.clear();
        self.movers.clear();
    }
}

/// The frames a body is built between: the newest, and the baseline with the viewpoint then.
struct Frames<'a> {
    cf: &'a WorldFrame,
    base: Option<(&'a WorldFrame, Viewpoint)>,
}

/// The `aoi` mode's grid, this tick's shared sections and records, and scratch buffers.
#[derive(Debug)]
pub struct Aoi {
    geo: Geometry,
    /// This tick's caches, one per distinct baseline; the first `used` are this tick's.
    caches: Vec<BaselineCache>,
    used: usize,
    /// Field layouts and this tick's created records (and the exact views' merge walk).
    walk: Walk,
    /// The exact view being gathered.
    gather: IndexSet,
    /// The buffers of the view of whole cells being built on the tick thread.
    cells: CellsScratch,
    /// Per thread building views in parallel: its own buffers.
    scratch: Vec<ViewScratch>,
}

impl Aoi {
    /// Interest management with a radius of `radius_q` over a world of `extent` units, views
    /// cut as `views` says.
    #[must_use]
    pub fn new(radius_q: i32, extent: IVec2, views: AoiViews) -> Aoi {
        Aoi {
            geo: Geometry::new(radius_q, extent, views),
            caches: Vec::new(),
            used: 0,
            walk: Walk::default(),
            gather: IndexSet::default(),
            cells: CellsScratch::default(),
            scratch: Vec::new(),
        }
    }

    /// Indexes a sealed frame by cell.
    pub(super) fn index(&self, frame: &mut WorldFrame) {
        let mut cells = std::mem::take(&mut frame.cells);
        cells.build(&self.geo, frame);
        frame.cells = cells;
    }

    /// Forgets this tick's shared work: a frame with `entities` entities is the newest.
    pub(super) fn new_tick(&mut self, entities: usize) {
        self.used = 0;
        self.walk.created.reset(entities);
    }

    /// The indices (into `frame`, ascending) of the entities seen from `eye`.
    pub fn visible(&mut self, frame: &WorldFrame, eye: Viewpoint, out: &mut Vec<u32>) {
        gather(
            &self.geo,
            frame,
            eye,
            (&mut self.cells.cells_now, &mut self.gather),
            out,
        );
    }

    /// Exact views, built on several threads: fills this tick's created records of the newest
    /// frame `cf` and the change records against each baseline in `baselines` (each in
    /// `history`), then returns what the threads read, and one scratch for each of `threads`.
    pub(super) fn prepare_exact<'a>(
        &'a mut self,
        schema: &'a GameSchema,
        cf: &'a WorldFrame,
        baselines: impl IntoIterator<Item = (Tick, &'a WorldFrame)>,
        threads: usize,
    ) -> (SharedViews<'a>, &'a mut [ViewScratch]) {
        debug_assert!(!self.geo.whole_cells, "views of whole cells share by cell");
        self.walk.created.fill(schema, &mut self.walk.layouts, cf);
        for (t, bf) in baselines {
            let i = self.cache(Some((t, bf)), cf);
            if !self.caches[i].filled {
                self.caches[i]
                    .changes
                    .fill(schema, &mut self.walk.layouts, bf, cf);
                self.caches[i].filled = true;
            }
        }
        self.shared_views(threads)
    }

    /// True when views are whole cells.
    pub(super) fn whole_cells(&self) -> bool {
        self.geo.whole_cells
    }

    /// The merge walk's buffers and this tick's change records against `base`, for exact views.
    pub(super) fn walk_and_cache(
        &mut self,
        base: Option<(Tick, &WorldFrame)>,
        cf: &WorldFrame,
    ) -> (&mut Walk, &mut ChangeCache) {
        let i = self.cache(base, cf);
        (&mut self.walk, &mut self.caches[i].changes)
    }

    /// This tick's cache for `base`, started on first use.
    fn cache(&mut self, base: Option<(Tick, &WorldFrame)>, cf: &WorldFrame) -> usize {
        let baseline = base.map(|(t, _)| t);
        if let Some(i) = self.caches[..self.used]
            .iter()
            .rposition(|c| c.baseline == baseline)
        {
            return i;
        }
        if self.caches.len() == self.used {
            self.caches.push(BaselineCache::default());
        }
        let i = self.used;
        self.used += 1;
        let maps = self.geo.whole_cells;
        self.caches[i].start(base, cf, self.geo.cells() + 1, maps);
        i
    }

    /// Views of whole cells: encodes into `out` the body from the view seen from `then` at the
    /// baseline frame `bf` of tick `baseline` (or nothing: a full snapshot) to the view seen
    /// from `now` in the newest frame `cf`. The shared sections it needs are encoded on first
    /// use.
    pub(super) fn encode(
        &mut self,
        schema: &GameSchema,
        cf: &WorldFrame,
        base: Option<(Tick, &WorldFrame, Viewpoint)>,
        now: Viewpoint,
        out: &mut Vec<u8>,
    ) {
        let ci = self.cache(base.map(|(t, bf, _)| (t, bf)), cf);
        let frames = Frames {
            cf,
            base: base.map(|(_, bf, then)| (bf, then)),
        };
        let Aoi {
            geo,
            caches,
            walk,
            cells,
            ..
        } = self;
        let bufs = cells;
        bufs.look(geo, &frames, now);
        let cache = &mut caches[ci];
        let (layouts, created) = (&mut walk.layouts, &mut walk.created);
        // The sections of the cells seen now and then, encoded on first use.
        for &c in &bufs.cells_now {
            if bufs.shared_now(&frames, c) && cache.arrivals[c as usize] == NONE {
                arrivals(
                    schema,
                    layouts,
                    created,
                    &mut bufs.writer,
                    cache,
                    &frames,
                    c,
                );
            }
        }
        if frames.base.is_some() {
            for &c in &bufs.cells_then {
                if bufs.shared_then(&frames, c) && cache.departures[c as usize] == NONE {
                    departures(&mut bufs.writer, cache, &frames, c);
                }
            }
        }
        let (parts, changes) = cache.parts();
        let mut src = Lazy {
            layouts,
            created,
            changes: Some(changes),
        };
        let built = assemble(schema, &frames, &parts, &mut src, bufs, out);
        // Every section it needs was made above.
        debug_assert!(built, "a view of whole cells lacks a section made for it");
    }

    /// Views of whole cells, built on several threads: encodes this tick's created records,
    /// and for each of `baselines` (`None`: full snapshots) its change records and the
    /// sections of every cell, then returns what the threads read and one scratch for each of
    /// `threads`.
    pub(super) fn prepare_cells<'a>(
        &'a mut self,
        schema: &'a GameSchema,
        cf: &'a WorldFrame,
        baselines: impl IntoIterator<Item = Option<(Tick, &'a WorldFrame)>>,
        threads: usize,
    ) -> (SharedViews<'a>, &'a mut [ViewScratch]) {
        debug_assert!(self.geo.whole_cells, "exact views share by record");
        self.walk.created.fill(schema, &mut self.walk.layouts, cf);
        for base in baselines {
            let i = self.cache(base, cf);
            if self.caches[i].filled {
                continue;
            }
            let Aoi {
                caches,
                walk,
                cells,
                ..
            } = &mut *self;
            let cache = &mut caches[i];
            let (layouts, created) = (&mut walk.layouts, &mut walk.created);
            let writer = &mut cells.writer;
            // The viewpoint then plays no part in a cell's sections.
            let frames = Frames {
                cf,
                base: base.map(|(_, bf)| (bf, Viewpoint(None))),
            };
            // The change records first: the arrivals sections copy the stayers' from them.
            if let Some((_, bf)) = base {
                cache.changes.fill(schema, layouts, bf, cf);
            }
            for c in 0..cf.cells.buckets() {
                if !cf.cells.cell(c).is_empty() && cache.arrivals[c as usize] == NONE {
                    arrivals(schema, layouts, created, writer, cache, &frames, c);
                }
            }
            if let Some((_, bf)) = base {
                for c in 0..bf.cells.buckets() {
                    if !bf.cells.cell(c).is_empty() && cache.departures[c as usize] == NONE {
                        departures(writer, cache, &frames, c);
                    }
                }
            }
            cache.filled = true;
        }
        self.shared_views(threads)
    }

    /// What the threads building views read (this tick's records and sections, prepared), and
    /// one scratch for each of `threads`.
    fn shared_views(&mut self, threads: usize) -> (SharedViews<'_>, &mut [ViewScratch]) {
        let threads = threads.max(1);
        if self.scratch.len() < threads {
            self.scratch.resize_with(threads, ViewScratch::default);
        }
        let shared = SharedViews {
            geo: &self.geo,
            caches: &self.caches[..self.used],
            created: &self.walk.created,
        };
        (shared, &mut self.scratch[..threads])
    }
}

/// The buffers of one thread building views of whole cells (one body at a time).
#[derive(Debug, Default)]
pub struct CellsScratch {
    writer: BodyWriter,
    body: BodyBuilder,
    cells_now: Vec<u32>,
    cells_then: Vec<u32>,
    /// Per cell: the stamp of the last body whose view now (then) had it; a stamp per body,
    /// so "does this client see that cell" is one load.
    seen_now: Vec<u32>,
    seen_then: Vec<u32>,
    stamp: u32,
    /// Entities done one by one for this client: created and changed (by index in the newest
    /// frame) and removed.
    own_created: IndexSet,
    own_changed: IndexSet,
    /// By index in the baseline frame.
    own_removed: IndexSet,
}

impl CellsScratch {
    /// Finds the cells seen from `now` (and from the baseline's viewpoint), stamping them.
    fn look(&mut self, geo: &Geometry, frames: &Frames<'_>, now: Viewpoint) {
        let buckets = geo.cells() + 1;
        if self.seen_now.len() != buckets || self.stamp == u32::MAX {
            self.seen_now.clear();
            self.seen_now.resize(buckets, 0);
            self.seen_then.clear();
            self.seen_then.resize(buckets, 0);
            self.stamp = 0;
        }
        self.stamp += 1;
        geo.view(now, &mut self.cells_now);
        for &c in &self.cells_now {
            self.seen_now[c as usize] = self.stamp;
        }
        if let Some((_, then)) = frames.base {
            geo.view(then, &mut self.cells_then);
            for &c in &self.cells_then {
                self.seen_then[c as usize] = self.stamp;
            }
        }
    }

    /// True if cell `c`, seen now, comes in its shared arrivals section (it is not empty, and
    /// was seen at the baseline too, or there is no baseline).
    fn shared_now(&self, frames: &Frames<'_>, c: u32) -> bool {
        !frames.cf.cells.cell(c).is_empty()
            && (frames.base.is_none() || self.seen_then[c as usize] == self.stamp)
    }

    /// True if cell `c`, seen at the baseline, comes in its shared departures section (it was
    /// not empty, and is seen now too).
    fn shared_then(&self, frames: &Frames<'_>, c: u32) -> bool {
        frames
            .base
            .is_some_and(|(bf, _)| !bf.cells.cell(c).is_empty())
            && self.seen_now[c as usize] == self.stamp
    }
}

/// What a body of whole cells reads of one baseline's cache.
struct CellParts<'a> {
    back: &'a [u32],
    fwd: &'a [u32],
    arrivals: &'a [u32],
    departures: &'a [u32],
    sections: &'a Records<CellSection>,
    movers: &'a [u32],
}

impl BaselineCache {
    /// The sections and maps, apart from the change records.
    fn parts(&mut self) -> (CellParts<'_>, &mut ChangeCache) {
        let BaselineCache {
            back,
            fwd,
            arrivals,
            departures,
            sections,
            movers,
            changes,
            ..
        } = self;
        let parts = CellParts {
            back,
            fwd,
            arrivals,
            departures,
            sections,
            movers,
        };
        (parts, changes)
    }

    fn shared_parts(&self) -> CellParts<'_> {
        CellParts {
            back: &self.back,
            fwd: &self.fwd,
            arrivals: &self.arrivals,
            departures: &self.departures,
            sections: &self.sections,
            movers: &self.movers,
        }
    }
}

/// Builds into `out` the body of the view of whole cells [`CellsScratch::look`] found: the
/// shared sections of the cells seen now and at the baseline, and one section of the client's
/// own for the cells that came into or left its view and the entities that moved between
/// cells. False, with `out` left as it was, if a shared section it needs is not in `parts`
/// (never when they were made for this view, or for every cell).
#[must_use]
fn assemble(
    schema: &GameSchema,
    frames: &Frames<'_>,
    parts: &CellParts<'_>,
    src: &mut impl RecordSource,
    bufs: &mut CellsScratch,
    out: &mut Vec<u8>,
) -> bool {
    let cf = frames.cf;
    let CellsScratch {
        writer,
        body,
        cells_now,
        cells_then,
        seen_now,
        seen_then,
        stamp,
        own_created,
        own_changed,
        own_removed,
    } = bufs;
    let stamp = *stamp;
    body.clear();
    own_created.fit(cf.entities.len());
    own_changed.fit(cf.entities.len());
    own_removed.fit(frames.base.map_or(0, |(bf, _)| bf.entities.len()));
    let (seen_now, seen_then) = (&*seen_now, &*seen_then);
    let mut checksum = 0u32;
    // An entity of the newest frame in the view now, that was in the view at the baseline
    // (as entity `b` of the baseline frame) or not: changed, replaced or created.
    // Whether an entity was (is) in the view is whether its cell was (is) one of the view's:
    // a stamp's load, where the geometry would take two divisions and a distance.
    let mut arrive = |i: u32, b: u32| match frames.base {
        Some((bf, _)) if b != NONE && seen_then[bf.cells.cell_of[b as usize] as usize] == stamp => {
            if bf.entities[b as usize].mask == cf.entities[i as usize].mask {
                own_changed.insert(i);
            } else {
                own_created.insert(i);
                own_removed.insert(b);
            }
        }
        _ => own_created.insert(i),
    };
    for &c in cells_now.iter() {
        if cf.cells.cell(c).is_empty() {
            continue;
        }
        checksum = checksum.wrapping_add(cf.cells.sums[c as usize]);
        if frames.base.is_some() && seen_then[c as usize] != stamp {
            // A cell that came into view: every entity, one by one.
            for &i in cf.cells.cell(c) {
                arrive(i, parts.back[i as usize]);
            }
            continue;
        }
        let k = parts.arrivals[c as usize];
        if k == NONE {
            return bufs_missing(own_created, own_changed, own_removed);
        }
        let s = parts.sections.get(k);
        body.push(&s.section);
        for &i in &parts.movers[s.start as usize..s.end as usize] {
            arrive(i, parts.back[i as usize]);
        }
    }
    if let Some((bf, _)) = frames.base {
        // An entity of the baseline frame (`j`, now `i`) that was in the view then: removed
        // unless it is in the view now.
        let mut depart = |j: u32, i: u32| {
            if i == NONE || seen_now[cf.cells.cell_of[i as usize] as usize] != stamp {
                own_removed.insert(j);
            }
        };
        for &c in cells_then.iter() {
            if bf.cells.cell(c).is_empty() {
                continue;
            }
            if seen_now[c as usize] != stamp {
                // A cell that left the view: every entity, one by one.
                for &j in bf.cells.cell(c) {
                    depart(j, parts.fwd[j as usize]);
                }
                continue;
            }
            let k = parts.departures[c as usize];
            if k == NONE {
                return bufs_missing(own_created, own_changed, own_removed);
            }
            let s = parts.sections.get(k);
            body.push(&s.section);
            for &j in &parts.movers[s.start as usize..s.end as usize] {
                depart(j, parts.fwd[j as usize]);
            }
        }
    }
    if !(own_created.is_empty() && own_changed.is_empty() && own_removed.is_empty()) {
        // The sets yield their indices ascending, so in id order.
        writer.clear();
        own_created.drain(|i| {
            let rec = src.created(schema, cf, i as usize);
            writer.created_from(cf.entities[i as usize].id, rec);
        });
        if let Some((bf, _)) = frames.base {
            own_changed.drain(|i| {
                let b = parts.back[i as usize] as usize;
                src.write_change(schema, ((bf, b), (cf, i as usize)), writer);
            });
            own_removed.drain(|j| writer.removed(bf.entities[j as usize].id));
        }
        body.push_writer(writer);
    }
    out.clear();
    body.finish(checksum, out);
    true
}

/// A shared section [`assemble`] needs is missing: the client's own sets are emptied (as every
/// body leaves them) and no body is built.
fn bufs_missing(created: &mut IndexSet, changed: &mut IndexSet, removed: &mut IndexSet) -> bool {
    for set in [created, changed, removed] {
        set.drain(|_| {});
    }
    false
}

impl SharedViews<'_> {
    /// Builds into `scratch.body` the body from the view of whole cells seen from `then` at
    /// `base` (its tick and frame; `None` for a full snapshot) to the view seen from `now` in
    /// `cf`: the bytes [`Aoi::encode`] makes. False, with nothing built, if this baseline's
    /// sections were not prepared.
    pub(super) fn cells(
        &self,
        schema: &GameSchema,
        cf: &WorldFrame,
        base: Option<(Tick, &WorldFrame, Viewpoint)>,
        now: Viewpoint,
        scratch: &mut ViewScratch,
    ) -> bool {
        let baseline = base.map(|(t, _, _)| t);
        let Some(cache) = self
            .caches
            .iter()
            .find(|c| c.baseline == baseline && c.filled)
        else {
            return false;
        };
        let frames = Frames {
            cf,
            base: base.map(|(_, bf, then)| (bf, then)),
        };
        let ViewScratch {
            cells, spare, body, ..
        } = scratch;
        cells.look(self.geo, &frames, now);
        let parts = cache.shared_parts();
        let mut src = Ready {
            created: self.created,
            changes: Some(&cache.changes),
            spare,
        };
        // False never, for a prepared baseline; the tick thread then builds this view.
        assemble(schema, &frames, &parts, &mut src, cells, body)
    }
}

/// One thread's buffers for building views in parallel, exact or of whole cells.
#[derive(Debug, Default)]
pub struct ViewScratch {
    exact: ExactScratch,
    cells: CellsScratch,
    /// Records the prepared caches lack (none, when prepared for this tick).
    spare: Spare,
    /// The body last built.
    pub body: Vec<u8>,
}

/// Fills `out` with the indices (into `frame`, ascending) of the entities within the radius of
/// `eye`: the cells the radius touches, a distance test each; `cells` and `set` are buffers.
fn gather(
    geo: &Geometry,
    frame: &WorldFrame,
    eye: Viewpoint,
    (cells, set): (&mut Vec<u32>, &mut IndexSet),
    out: &mut Vec<u32>,
) {
    out.clear();
    geo.view(eye, cells);
    set.fit(frame.entities.len());
    for &c in cells.iter() {
        for &i in frame.cells.cell(c) {
            if geo.contains(eye, frame.entities[i as usize].pos) {
                set.insert(i);
            }
        }
    }
    set.drain(|i| out.push(i));
}

/// One thread's buffers for building exact views ([`SharedViews::exact`]).
#[derive(Debug, Default)]
pub struct ExactScratch {
    cells: Vec<u32>,
    set: IndexSet,
    lists: WalkLists,
    writer: BodyWriter,
}

/// What the threads building views read: the grid, and this tick's created records and change
/// records (one cache per baseline), and for views of whole cells every cell's sections, all
/// filled beforehand ([`Aoi::prepare_exact`], [`Aoi::prepare_cells`]).
#[derive(Debug, Clone, Copy)]
pub struct SharedViews<'a> {
    geo: &'a Geometry,
    caches: &'a [BaselineCache],
    created: &'a CreatedCache,
}

impl SharedViews<'_> {
    /// Fills `view` with the entities of the newest frame `cf` seen from `eye`, and
    /// `scratch.body` with the exact body from `base` (its tick, frame and the view then;
    /// `None` for a full snapshot) to it: the bytes [`super::Replication::encode_exact`] makes.
    pub(super) fn exact(
        &self,
        schema: &GameSchema,
        cf: &WorldFrame,
        base: Option<(Tick, &WorldFrame, &[u32])>,
        eye: Viewpoint,
        view: &mut Vec<u32>,
        scratch: &mut ViewScratch,
    ) {
        let ViewScratch {
            exact, spare, body, ..
        } = scratch;
        let ExactScratch {
            cells,
            set,
            lists,
            writer,
        } = exact;
        gather(self.geo, cf, eye, (cells, set), view);
        writer.clear();
        match base {
            Some((t, bf, idx)) => {
                let changes = self
                    .caches
                    .iter()
                    .find(|c| c.baseline == Some(t))
                    .map(|c| &c.changes);
                let mut src = Ready {
                    created: self.created,
                    changes,
                    spare,
                };
                write_changes(
                    schema,
                    (bf, subset(bf, idx)),
                    (cf, subset(cf, view)),
                    &mut src,
                    lists,
                    writer,
                );
            }
            None => {
                let mut src = Ready {
                    created: self.created,
                    changes: None,
                    spare,
                };
                write_changes(
                    schema,
                    (cf, std::iter::empty()),
                    (cf, subset(cf, view)),
                    &mut src,
                    lists,
                    writer,
                );
            }
        }
        let checksum = subset(cf, view).fold(0u32, |acc, (_, e)| acc.wrapping_add(e.hash));
        body.clear();
        writer.finish(checksum, body);
    }
}

/// A set of frame indices, as a bitset: inserting is a store, and draining yields them
/// ascending, visiting only the words between the lowest and highest index inserted.
#[derive(Debug)]
struct IndexSet {
    words: Vec<u64>,
    lo: usize,
    hi: usize,
}

impl Default for IndexSet {
    fn default() -> Self {
        IndexSet {
            words: Vec::new(),
            lo: usize::MAX,
            hi: 0,
        }
    }
}

impl IndexSet {
    /// Makes room for indices below `n`; the set is empty (every drain leaves it so).
    fn fit(&mut self, n: usize) {
        if self.words.len() < n.div_ceil(64) {
            self.words.resize(n.div_ceil(64), 0);
        }
    }

    fn insert(&mut self, i: u32) {
        let w = i as usize / 64;
        self.words[w] |= 1 << (i % 64);
        self.lo = self.lo.min(w);
        self.hi = self.hi.max(w);
    }

    fn is_empty(&self) -> bool {
        self.lo > self.hi
    }

    /// Calls `f` with each index, ascending, and empties the set.
    fn drain(&mut self, mut f: impl FnMut(u32)) {
        if self.is_empty() {
            return;
        }
        for w in self.lo..=self.hi {
            let mut bits = std::mem::take(&mut self.words[w]);
            while bits != 0 {
                f((w * 64) as u32 + bits.trailing_zeros());
                bits &= bits - 1;
            }
        }
        self.lo = usize::MAX;
        self.hi = 0;
    }
}

/// Encodes the arrivals of cell `c` of the newest frame against the cache's baseline: the
/// entities new since then (or with other components: removed and created) and the changes of
/// those that were in this cell then; the others in the cell moved here, and are kept as its
/// movers. Returns the section's index.
fn arrivals(
    schema: &GameSchema,
    layouts: &mut Layouts,
    created: &mut CreatedCache,
    writer: &mut BodyWriter,
    cache: &mut BaselineCache,
    frames: &Frames<'_>,
    c: u32,
) -> u32 {
    let cf = frames.cf;
    let items = cf.cells.cell(c);
    writer.clear();
    let start = cache.movers.len() as u32;
    // The baseline index of an entity that was in this cell then.
    let stayed = |cache: &BaselineCache, i: u32| {
        let b = cache.back[i as usize];
        frames
            .base
            .filter(|(bf, _)| b != NONE && bf.cells.cell_of[b as usize] == c)
            .map(|(bf, _)| (bf, b))
    };
    for &i in items {
        let e = &cf.entities[i as usize];
        match stayed(cache, i) {
            Some((bf, b)) if bf.entities[b as usize].mask == e.mask => {}
            Some(_) => writer.created_from(e.id, created.record(schema, layouts, cf, i as usize)),
            None if cache.back[i as usize] != NONE => cache.movers.push(i),
            None => writer.created_from(e.id, created.record(schema, layouts, cf, i as usize)),
        }
    }
    // A stayer's change: its record if the change records were filled first (views built on
    // several threads fill them before any section), else written straight in, no record kept
    // (on the tick thread alone, records are made only for the few views that need them).
    for &i in items {
        let e = &cf.entities[i as usize];
        if let Some((bf, b)) = stayed(cache, i) {
            let old = &bf.entities[b as usize];
            if old.mask != e.mask {
                continue;
            }
            match cache.changes.get(i as usize) {
                Some(Some(rec)) => writer.changed(e.id, rec),
                Some(None) => {}
                None => {
                    if !(old.hash == e.hash && bf.words_of(old) == cf.words_of(e)) {
                        let layout = layouts.get(schema, e.mask);
                        writer.changed_from(e.id, layout, bf.words_of(old), cf.words_of(e));
                    }
                }
            }
        }
    }
    for &i in items {
        if let Some((bf, b)) = stayed(cache, i)
            && bf.entities[b as usize].mask != cf.entities[i as usize].mask
        {
            writer.removed(cf.entities[i as usize].id);
        }
    }
    keep(cache, writer, start, |cache, k| {
        cache.arrivals[c as usize] = k
    })
}

/// Encodes the departures of cell `c` of the baseline frame: its entities then that no longer
/// exist; those now in another cell are kept as its movers. Returns the section's index.
fn departures(
    writer: &mut BodyWriter,
    cache: &mut BaselineCache,
    frames: &Frames<'_>,
    c: u32,
) -> u32 {
    let (cf, bf) = (
        frames.cf,
        frames.base.expect("departures need a baseline").0,
    );
    writer.clear();
    let start = cache.movers.len() as u32;
    for &j in bf.cells.cell(c) {
        match cache.fwd[j as usize] {
            NONE => writer.removed(bf.entities[j as usize].id),
            i if cf.cells.cell_of[i as usize] != c => cache.movers.push(j),
            _ => {}
        }
    }
    keep(cache, writer, start, |cache, k| {
        cache.departures[c as usize] = k
    })
}

/// Keeps what `writer` holds as a section of the cache, with the movers pushed since `start`;
/// `slot` records its index.
fn keep(
    cache: &mut BaselineCache,
    writer: &mut BodyWriter,
    start: u32,
    slot: impl FnOnce(&mut BaselineCache, u32),
) -> u32 {
    let end = cache.movers.len() as u32;
    let s = cache.sections.next();
    writer.section_into(&mut s.section);
    s.start = start;
    s.end = end;
    let k = cache.sections.keep();
    slot(cache, k);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::Replication;
    use crate::replication::frame::tests::{push_entity, schema};
    use std::collections::HashMap;
    use std::sync::Arc;
    use tickwire_protocol::NetId;
    use tickwire_protocol::body::{apply_body, section_count};
    use tickwire_protocol::state::{Entities, EntityState, Words};

    const EXTENT: i32 = 4000;
    const RADIUS: i32 = 600;

    /// One simulated entity: its position (none: seen everywhere) and whether it has a tag.
    #[derive(Clone, Copy)]
    struct Thing {
        pos: Option<IVec2>,
        tag: Option<i64>,
    }

    fn commit(r: &mut Replication, tick: u32, world: &std::collections::BTreeMap<u32, Thing>) {
        let frame = r.begin(Tick(tick));
        for (&id, t) in world {
            let p = t.pos.unwrap_or(IVec2::new(-1, -1));
            let xy = (i64::from(p.x), i64::from(p.y));
            push_entity(frame, id, xy, t.tag, t.pos);
        }
        r.commit();
    }

    /// The view seen from `eye` in the newest frame, by brute force over every entity.
    fn expected(r: &Replication, geo: &Geometry, eye: Viewpoint) -> Entities {
        expected_in(r.latest().expect("frame"), geo, eye)
    }

    /// The view seen from `eye` in frame `f`, by brute force over every entity.
    fn expected_in(f: &WorldFrame, geo: &Geometry, eye: Viewpoint) -> Entities {
        f.entities
            .iter()
            .filter(|e| geo.contains(eye, e.pos))
            .map(|e| {
                let words: Words = f.words_of(e).iter().copied().collect();
                (
                    e.id,
                    EntityState {
                        mask: e.mask,
                        words,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_view_has_every_cell_the_radius_touches_and_knows_which_it_holds_whole() {
        for views in [AoiViews::Exact, AoiViews::Cells] {
            views_of(views);
        }
    }

    fn views_of(views: AoiViews) {
        let geo = Geometry::new(RADIUS, IVec2::splat(EXTENT), views);
        let mut rng = fastrand::Rng::with_seed(11);
        let mut cells = Vec::new();
        let (mut whole, mut part) = (0, 0);
        let diag = f64::from(geo.cell_q()) * 2f64.sqrt();
        for _ in 0..3000 {
            let eye = Viewpoint(Some(IVec2::new(
                rng.i32(-50..EXTENT + 50),
                rng.i32(-50..EXTENT + 50),
            )));
            geo.view(eye, &mut cells);
            assert_eq!(cells.last(), Some(&geo.everywhere()));
            let p = IVec2::new(rng.i32(-100..EXTENT + 100), rng.i32(-100..EXTENT + 100));
            let entry = cells.iter().find(|c| **c == geo.cell_of(Some(p)));
            let d = f64::from((p - eye.0.expect("placed")).as_vec2().length());
            let seen = geo.contains(eye, Some(p));
            if d <= f64::from(RADIUS) {
                assert!(seen, "{p} is within the radius of {eye:?}");
            }
            match views {
                AoiViews::Exact => assert_eq!(seen, d <= f64::from(RADIUS) + 0.5, "{p} {eye:?}"),
                AoiViews::Cells => assert!(!seen || d <= f64::from(RADIUS) + diag + 1.0),
            }
            if seen {
                assert!(entry.is_some(), "{p} is seen: its cell is in the view");
            }
            // Views of whole cells see every entity of a cell in the view.
            match (views, entry) {
                (AoiViews::Cells, Some(_)) => {
                    whole += 1;
                    assert!(seen, "{p} is in a cell of the view");
                }
                (AoiViews::Exact, Some(_)) if !seen => part += 1,
                _ => {}
            }
        }
        match views {
            AoiViews::Exact => assert!(part > 50, "cells partly in the view: {part}"),
            AoiViews::Cells => assert!(whole > 50, "{whole}"),
        }
        // No position: only the bucket, which holds everything placed nowhere.
        geo.view(Viewpoint(None), &mut cells);
        assert_eq!(cells, [geo.everywhere()]);
        assert!(!geo.contains(Viewpoint(None), Some(IVec2::ONE)));
        assert!(geo.contains(Viewpoint(Some(IVec2::ONE)), None));
    }

    /// Clients with random baselines follow a world where entities walk, jump, are born, die,
    /// change components and lose or gain their position: every body applied to the client's
    /// view at its baseline gives exactly the view seen now, with the server's checksum.
    #[test]
    fn bodies_reproduce_every_view() {
        for views in [AoiViews::Exact, AoiViews::Cells] {
            bodies_of(views);
        }
    }

    /// A world of 400 entities that walk, jump, are born, die, change components and lose or
    /// gain their position; entities `1..=players` are players, never removed.
    struct RandomWorld {
        rng: fastrand::Rng,
        things: std::collections::BTreeMap<u32, Thing>,
        next_id: u32,
        players: u32,
    }

    impl RandomWorld {
        fn new(seed: u64, players: u32) -> RandomWorld {
            let mut w = RandomWorld {
                rng: fastrand::Rng::with_seed(seed),
                things: std::collections::BTreeMap::new(),
                next_id: 1,
                players,
            };
            for _ in 0..400 {
                w.spawn();
            }
            w
        }

        fn spawn(&mut self) {
            let rng = &mut self.rng;
            let pos = (rng.u8(..) > 10).then(|| IVec2::new(rng.i32(0..EXTENT), rng.i32(0..EXTENT)));
            let tag = rng.bool().then(|| i64::from(rng.u8(..)));
            self.things.insert(self.next_id, Thing { pos, tag });
            self.next_id += 1;
        }

        /// One tick of change, committed to `r` as the frame of `tick`.
        fn step(&mut self, r: &mut Replication, tick: u32) {
            let (rng, players) = (&mut self.rng, self.players);
            for (&id, t) in self.things.iter_mut() {
                if let Some(p) = &mut t.pos {
                    let step = if rng.u8(..) < 8 { 700 } else { 40 };
                    *p = (*p + IVec2::new(rng.i32(-step..=step), rng.i32(-step..=step)))
                        .clamp(IVec2::ZERO, IVec2::splat(EXTENT));
                }
                if id > players && rng.u8(..) < 4 {
                    t.pos = match t.pos {
                        Some(_) => None,
                        None => Some(IVec2::new(rng.i32(0..EXTENT), rng.i32(0..EXTENT))),
                    };
                }
                if rng.u8(..) < 6 {
                    t.tag = match t.tag {
                        Some(_) => None,
                        None => Some(7),
                    };
                }
            }
            let dead: Vec<u32> = self
                .things
                .keys()
                .copied()
                .filter(|&id| id > players && rng.u8(..) < 5)
                .collect();
            for id in dead {
                self.things.remove(&id);
            }
            for _ in 0..self.rng.usize(0..8) {
                self.spawn();
            }
            commit(r, tick, &self.things);
        }
    }

    /// A body that finds a shared section missing (arrivals or departures) builds nothing, and
    /// leaves its buffers as every body does: the next body built with them, for another
    /// client, is the one a fresh scratch builds.
    #[test]
    fn a_body_missing_a_shared_section_builds_nothing_and_leaves_its_buffers_clean() {
        let extent = IVec2::splat(EXTENT);
        let mut r = Replication::new(8, schema(), Some((RADIUS, extent, AoiViews::Cells)));
        let mut world = RandomWorld::new(4, 20);
        for tick in 1..=6 {
            world.step(&mut r, tick);
        }
        let schema = Arc::clone(r.schema());
        let (bf, cf) = (r.frame(Tick(5)).expect("kept"), r.latest().expect("frame"));
        // The client moved by half a radius: cells came into its view and left it.
        let (then, now) = (
            Viewpoint(Some(IVec2::new(1800, 2000))),
            Viewpoint(Some(IVec2::new(2100, 2000))),
        );
        let base = Some((Tick(5), bf, then));
        let mut aoi = Aoi::new(RADIUS, extent, AoiViews::Cells);
        aoi.new_tick(cf.entities.len());
        let _ = aoi.prepare_cells(&schema, cf, [Some((Tick(5), bf))], 1);
        let geo = aoi.geo;
        let (mut cells_now, mut cells_then) = (Vec::new(), Vec::new());
        geo.view(now, &mut cells_now);
        geo.view(then, &mut cells_then);
        // The last cell (in the order a body takes them) whose shared section each body needs.
        let last_shared = |cells: &[u32], other: &[u32], frame: &WorldFrame| {
            *cells
                .iter()
                .rfind(|&&c| other.contains(&c) && !frame.cells.cell(c).is_empty())
                .expect("a cell seen then and now")
        };
        let arriving = last_shared(&cells_now, &cells_then, cf);
        let departing = last_shared(&cells_then, &cells_now, bf);
        let mut fresh = ViewScratch::default();
        let (shared, _) = aoi.shared_views(1);
        assert!(shared.cells(&schema, cf, base, now, &mut fresh));
        let whole = fresh.body.clone();
        // Another client, far from the first: what the first left behind would show in its body.
        let elsewhere = Viewpoint(Some(IVec2::new(3400, 600)));
        let other = Some((Tick(5), bf, Viewpoint(Some(IVec2::new(3300, 600)))));
        let mut fresh = ViewScratch::default();
        assert!(shared.cells(&schema, cf, other, elsewhere, &mut fresh));
        let other_body = fresh.body.clone();
        let mut reused = ViewScratch::default();
        for (arrivals, c) in [(true, arriving), (false, departing)] {
            fn slot(aoi: &mut Aoi, arrivals: bool, c: u32) -> &mut u32 {
                let cache = &mut aoi.caches[0];
                let slots = if arrivals {
                    &mut cache.arrivals
                } else {
                    &mut cache.departures
                };
                &mut slots[c as usize]
            }
            let kept = std::mem::replace(slot(&mut aoi, arrivals, c), NONE);
            let (shared, _) = aoi.shared_views(1);
            reused.body = vec![0xAB];
            assert!(!shared.cells(&schema, cf, base, now, &mut reused));
            assert_eq!(reused.body, [0xAB], "nothing built");
            *slot(&mut aoi, arrivals, c) = kept;
            let (shared, _) = aoi.shared_views(1);
            assert!(shared.cells(&schema, cf, other, elsewhere, &mut reused));
            assert_eq!(reused.body, other_body, "the body a fresh scratch builds");
            assert!(shared.cells(&schema, cf, base, now, &mut reused));
            assert_eq!(reused.body, whole);
        }
        // The body is a real one: it turns the view then into the view now.
        let base_view: Entities = expected_in(bf, &geo, then);
        let (view, checksum) = apply_body(&schema, &base_view, &whole).expect("applies");
        assert_eq!(view, expected_in(cf, &geo, now));
        assert_eq!(checksum, tickwire_protocol::state::view_checksum(&view));
    }

    /// Views built on several threads from records and sections encoded beforehand are byte
    /// for byte the ones the tick thread builds alone, whatever the clients' baselines. A
    /// baseline left out of the preparation: an exact view's thread encodes its records itself
    /// (the same bytes); a view of whole cells is not built, and left to the tick thread.
    #[test]
    fn bodies_built_in_parallel_are_the_ones_built_alone() {
        for views in [AoiViews::Exact, AoiViews::Cells] {
            parallel_bodies_of(views);
        }
    }

    fn parallel_bodies_of(mode: AoiViews) {
        const CLIENTS: u32 = 30;
        const THREADS: usize = 3;
        let interest = Some((RADIUS, IVec2::splat(EXTENT), mode));
        let mut r = Replication::new(8, schema(), interest);
        let mut world = RandomWorld::new(9, CLIENTS);
        let mut rng = fastrand::Rng::with_seed(10);
        // Per client, by tick: where it looked from and what it saw.
        let mut seen: Vec<HashMap<u32, (Viewpoint, Vec<u32>)>> =
            (0..CLIENTS).map(|_| HashMap::new()).collect();
        let (mut compared, mut unfilled, mut left) = (0, 0, 0);
        for tick in 1..=40u32 {
            world.step(&mut r, tick);
            // Each client's viewpoint and baseline (one to ten ticks back, or none).
            let clients: Vec<(Viewpoint, Option<u32>)> = (0..CLIENTS)
                .map(|k| {
                    let eye = r.viewpoint(NetId(k + 1)).expect("the player is there");
                    let base = tick
                        .checked_sub(rng.u32(1..=10))
                        .filter(|t| rng.u8(..) > 20 && seen[k as usize].contains_key(t));
                    (eye, base)
                })
                .collect();
            let mut baselines: Vec<Tick> = clients.iter().filter_map(|c| c.1.map(Tick)).collect();
            baselines.sort_unstable_by_key(|t| t.0);
            baselines.dedup();
            let full = clients.iter().any(|c| c.1.is_none());
            // Every other tick, one baseline is left out of the preparation.
            let skipped = if tick % 2 == 0 { baselines.pop() } else { None };
            unfilled += usize::from(skipped.is_some());
            // Per client: its view, its body and the baseline used (`None`: not built).
            type Built = (Vec<u32>, Vec<u8>, Option<Option<Tick>>);
            let mut built: Vec<Built> = (0..CLIENTS)
                .map(|_| (Vec::new(), Vec::new(), None))
                .collect();
            {
                let (build, scratch) = r
                    .views_parallel(&baselines, full, THREADS)
                    .expect("aoi mode");
                assert_eq!(scratch.len(), THREADS);
                let share = built.len().div_ceil(THREADS);
                std::thread::scope(|s| {
                    for (((i, part), out), scratch) in clients
                        .chunks(share)
                        .enumerate()
                        .zip(built.chunks_mut(share))
                        .zip(scratch.iter_mut())
                    {
                        let seen = &seen;
                        s.spawn(move || {
                            for (j, ((eye, base), (view, body, used))) in
                                part.iter().zip(out.iter_mut()).enumerate()
                            {
                                let k = i * share + j;
                                let then = base.map(|t| (Tick(t), &seen[k][&t]));
                                *used = if build.whole_cells() {
                                    let base = then.map(|(t, (e, _))| (t, *e));
                                    build.encode_cells(base, *eye, scratch)
                                } else {
                                    let base = then.map(|(t, (_, v))| (t, v.as_slice()));
                                    Some(build.encode_exact(base, *eye, view, scratch))
                                };
                                body.clone_from(&scratch.body);
                            }
                        });
                    }
                });
            }
            for (k, ((eye, base), (view, body, used))) in clients.iter().zip(built).enumerate() {
                let then = base.map(|t| (Tick(t), &seen[k][&t]));
                let mut alone_view = Vec::new();
                let mut alone_body = Vec::new();
                let alone_used = match mode {
                    AoiViews::Exact => {
                        r.visible(*eye, &mut alone_view);
                        let base = then.map(|(t, (_, v))| (t, v.as_slice()));
                        r.encode_exact(base, &alone_view, &mut alone_body)
                    }
                    AoiViews::Cells => {
                        r.encode_view(then.map(|(t, (e, _))| (t, *e)), *eye, &mut alone_body)
                    }
                };
                match used {
                    Some(used) => {
                        assert_eq!(view, alone_view, "tick {tick} client {k}: the view");
                        assert_eq!(used, alone_used, "tick {tick} client {k}: the baseline");
                        assert_eq!(body, alone_body, "tick {tick} client {k}: the body");
                        compared += 1;
                    }
                    None => {
                        assert_eq!(mode, AoiViews::Cells, "exact views are always built");
                        assert_eq!(base.map(Tick), skipped, "only the baseline left out");
                        left += 1;
                    }
                }
                seen[k].insert(tick, (*eye, alone_view));
            }
        }
        assert!(unfilled >= 15, "a baseline was left out: {unfilled}");
        match mode {
            AoiViews::Exact => assert_eq!(compared, 40 * CLIENTS),
            AoiViews::Cells => {
                assert!(left > 0, "views left to the tick thread");
                assert_eq!(compared + left, 40 * CLIENTS);
            }
        }
    }

    fn bodies_of(views: AoiViews) {
        let schema = schema();
        let interest = Some((RADIUS, IVec2::splat(EXTENT), views));
        let mut r = Replication::new(8, Arc::clone(&schema), interest);
        let geo = Geometry::new(RADIUS, IVec2::splat(EXTENT), views);
        let mode = views;
        // Client k's player is entity k + 1 (never removed); its views by tick.
        const CLIENTS: u32 = 24;
        let mut world = RandomWorld::new(5, CLIENTS);
        let mut rng = fastrand::Rng::with_seed(6);
        // Per client, by tick: its view, where it looked from, and (exact) what it saw.
        type Seen = HashMap<u32, (Entities, Viewpoint, Vec<u32>)>;
        let mut views: Vec<Seen> = (0..CLIENTS).map(|_| HashMap::new()).collect();
        let (mut full, mut sections, mut bodies, mut most) = (0, 0u64, 0u64, 0u32);
        for tick in 1..=60u32 {
            world.step(&mut r, tick);
            for k in 0..CLIENTS {
                let eye = r.viewpoint(NetId(k + 1)).expect("the player is there");
                // Acks one to five ticks back, sometimes none (or one that left history).
                let lag = rng.u32(1..=10);
                let base = tick
                    .checked_sub(lag)
                    .filter(|_| rng.u8(..) > 20)
                    .and_then(|t| views[k as usize].get(&t).map(|(_, e, v)| (Tick(t), *e, v)));
                let mut body = Vec::new();
                let mut visible = Vec::new();
                let used = match mode {
                    AoiViews::Cells => r.encode_view(base.map(|(t, e, _)| (t, e)), eye, &mut body),
                    AoiViews::Exact => {
                        r.visible(eye, &mut visible);
                        let base = base.map(|(t, _, v)| (t, v.as_slice()));
                        r.encode_exact(base, &visible, &mut body)
                    }
                };
                let empty = Entities::new();
                let from = match used {
                    Some(t) => &views[k as usize][&t.0].0,
                    None => {
                        full += 1;
                        &empty
                    }
                };
                let (view, sum) = apply_body(&schema, from, &body)
                    .unwrap_or_else(|e| panic!("tick {tick} client {k} from {used:?}: {e}"));
                let want = expected(&r, &geo, eye);
                assert_eq!(view, want, "tick {tick} client {k} from {used:?}");
                assert_eq!(sum, tickwire_protocol::state::view_checksum(&want));
                let n = section_count(&body).expect("a body");
                sections += u64::from(n);
                most = most.max(n);
                bodies += 1;
                views[k as usize].insert(tick, (view, eye, visible));
            }
        }
        assert!(full >= u64::from(CLIENTS), "full snapshots were exercised");
        match mode {
            AoiViews::Exact => assert!(most <= 1, "{most} sections in one body"),
            AoiViews::Cells => assert!(sections > 2 * bodies, "built from many sections"),
        }
    }
}
