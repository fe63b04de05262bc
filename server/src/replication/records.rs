//! Records encoded once per tick and shared by every client that needs them: an entity's
//! created record (its state in full) and its change record against one baseline. Buffers are
//! kept from tick to tick, so a steady-state tick does not allocate for them.

use super::frame::WorldFrame;
use tickwire_protocol::GameSchema;
use tickwire_protocol::body::{EncodedChange, EncodedEntity, Layouts};

/// Records encoded this tick, their buffers kept from tick to tick.
#[derive(Debug)]
pub(super) struct Records<R> {
    all: Vec<R>,
    /// The first `used` are this tick's.
    used: usize,
}

impl<R: Default> Records<R> {
    pub(super) fn new() -> Records<R> {
        Records {
            all: Vec::new(),
            used: 0,
        }
    }

    /// Forgets this tick's records (keeping their buffers).
    pub(super) fn clear(&mut self) {
        self.used = 0;
    }

    /// A buffer for the next record; [`Records::keep`] counts it as one of this tick's.
    pub(super) fn next(&mut self) -> &mut R {
        if self.all.len() == self.used {
            self.all.push(R::default());
        }
        &mut self.all[self.used]
    }

    /// Keeps the record [`Records::next`] gave; returns its index.
    pub(super) fn keep(&mut self) -> u32 {
        self.used += 1;
        (self.used - 1) as u32
    }

    pub(super) fn get(&self, i: u32) -> &R {
        &self.all[i as usize]
    }
}

impl<R: Default> Default for Records<R> {
    fn default() -> Self {
        Records::new()
    }
}

/// The newest frame's created records, by entity index: each entity is encoded in full once
/// per tick, however many clients newly see it.
#[derive(Debug, Default)]
pub(super) struct CreatedCache {
    /// Per entity: its record's index, or `u32::MAX` if not encoded yet.
    slots: Vec<u32>,
    records: Records<EncodedEntity>,
}

impl CreatedCache {
    /// Forgets the records: a new frame with `entities` entities is the newest.
    pub(super) fn reset(&mut self, entities: usize) {
        self.records.clear();
        self.slots.clear();
        self.slots.resize(entities, u32::MAX);
    }

    /// The record of entity `idx` of the newest frame `cf`, encoded on first use.
    pub(super) fn record(
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

    /// Encodes every entity of the newest frame `cf` not encoded yet, so that
    /// [`CreatedCache::get`] can answer for any of them without a `&mut` (replication in
    /// parallel reads the cache from several threads).
    pub(super) fn fill(&mut self, schema: &GameSchema, layouts: &mut Layouts, cf: &WorldFrame) {
        for idx in 0..cf.entities.len() {
            self.record(schema, layouts, cf, idx);
        }
    }

    /// The record of entity `idx` of the newest frame, if encoded (always, after
    /// [`CreatedCache::fill`]).
    pub(super) fn get(&self, idx: usize) -> Option<&EncodedEntity> {
        let slot = *self.slots.get(idx)?;
        (slot != u32::MAX).then(|| self.records.get(slot))
    }
}

/// What is known about one entity's change against one baseline this tick.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Not computed yet.
    Unknown,
    /// The same as at the baseline.
    Unchanged,
    /// Its change record, by index into the records.
    Changed(u32),
}

/// This tick's change records against one baseline, by entity index in the newest frame: each
/// is encoded once, however many clients' views contain it.
#[derive(Debug, Default)]
pub(super) struct ChangeCache {
    slots: Vec<Slot>,
    records: Records<EncodedChange>,
}

impl ChangeCache {
    /// Forgets the records: a new frame with `entities` entities is the newest.
    pub(super) fn reset(&mut self, entities: usize) {
        self.records.clear();
        self.slots.clear();
        self.slots.resize(entities, Slot::Unknown);
    }

    /// The change of an entity with the same components at index `bi` of the baseline frame
    /// `bf` and `ci` of the newest frame `cf`, encoded on first use; `None` if it did not
    /// change.
    pub(super) fn change(
        &mut self,
        schema: &GameSchema,
        layouts: &mut Layouts,
        (bf, bi): (&WorldFrame, usize),
        (cf, ci): (&WorldFrame, usize),
    ) -> Option<&EncodedChange> {
        if let Slot::Unknown = self.slots[ci] {
            let (b, c) = (&bf.entities[bi], &cf.entities[ci]);
            let (old, new) = (bf.words_of(b), cf.words_of(c));
            self.slots[ci] = if b.hash == c.hash && old == new {
                Slot::Unchanged
            } else {
                let rec = self.records.next();
                if rec.encode_with(layouts.get(schema, c.mask), old, new) {
                    Slot::Changed(self.records.keep())
                } else {
                    Slot::Unchanged
                }
            };
        }
        match self.slots[ci] {
            Slot::Changed(i) => Some(self.records.get(i)),
            _ => None,
        }
    }

    /// Encodes the change of every entity that is in both the baseline frame `bf` and the
    /// newest frame `cf` with the same components, so that [`ChangeCache::get`] can answer for
    /// any entity a client's views share without a `&mut`. One merge over the two frames
    /// (both sorted by id).
    pub(super) fn fill(
        &mut self,
        schema: &GameSchema,
        layouts: &mut Layouts,
        bf: &WorldFrame,
        cf: &WorldFrame,
    ) {
        let (mut bi, mut ci) = (0, 0);
        while bi < bf.entities.len() && ci < cf.entities.len() {
            let (b, c) = (&bf.entities[bi], &cf.entities[ci]);
            match b.id.cmp(&c.id) {
                std::cmp::Ordering::Less => bi += 1,
                std::cmp::Ordering::Greater => ci += 1,
                std::cmp::Ordering::Equal => {
                    if b.mask == c.mask {
                        self.change(schema, layouts, (bf, bi), (cf, ci));
                    }
                    bi += 1;
                    ci += 1;
                }
            }
        }
    }

    /// What is known of the change of entity `ci` of the newest frame: `Some(None)` if it did
    /// not change, `None` if it was not computed (never, after [`ChangeCache::fill`], for an
    /// entity in both frames with the same components).
    pub(super) fn get(&self, ci: usize) -> Option<Option<&EncodedChange>> {
        match self.slots.get(ci)? {
            Slot::Unknown => None,
            Slot::Unchanged => Some(None),
            Slot::Changed(i) => Some(Some(self.records.get(*i))),
        }
    }
}
