//! The snapshot body, driven by the game's schema (see `docs/PROTOCOL.md`, "Snapshot body").
//!
//! A body turns a client's baseline view into its view at the snapshot's tick:
//!
//! ```text
//! varint created_count, changed_count, removed_count   (totals over the sections)
//! varint section_count
//! section_count times, each padded with zero bits to a whole byte:
//!        gamma(created + 1), gamma(changed + 1), gamma(removed + 1)   (this section's counts)
//!        created:  gamma(id gap), component mask (one bit per component type),
//!                  then every field of those components in full
//!        changed:  gamma(id gap), 1 bit "same field mask as the previous change of this
//!                  section", else the field mask (one bit per field of the entity), then each
//!                  changed field: in full (Absolute) or a flag bit and a small difference
//!                  (Diff, AngleDiff; flag 0: in full)
//!        removed:  gamma(id gap)
//!        zero bits to a whole byte
//! u32 checksum (little-endian) of the whole view after applying
//! ```
//!
//! Ids in each list of a section are ascending; the first gap is the id itself. An entity is in
//! at most one changed or removed record of a body. An entity whose component mask changed is
//! removed and created again. Decoding a changed record needs the entity's component mask, so a
//! body is decoded *against* the baseline view ([`apply_body`]). Sections let a server encode
//! each part of the world once and build every client's body from the parts it sees
//! ([`Section`], [`BodyBuilder`]); a body of the whole world has one section.

use crate::bits::{BitReader, BitWriter, OutOfBits, unzigzag, zigzag};
use crate::msg::NetId;
use crate::schema::{Delta, Encoding, Field, GameSchema, fixed};
use crate::state::{Entities, EntityState, Words, fields_of};
use smallvec::SmallVec;
use thiserror::Error;

/// Why a body could not be applied to a view: each means the client and server disagree, or
/// the bytes are not a body.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The bytes end early, a count or gap is malformed, or padding is not zero.
    #[error("malformed snapshot body")]
    Malformed,
    /// A created entity already exists.
    #[error("created entity {0:?} already exists")]
    DuplicateCreate(NetId),
    /// A changed or removed entity is not in the baseline.
    #[error("entity {0:?} is not in the baseline")]
    UnknownEntity(NetId),
    /// A value is outside its field's range, or a mask names what the schema lacks.
    #[error("entity {0:?}: a value does not fit the schema")]
    BadValue(NetId),
}

impl From<OutOfBits> for BodyError {
    fn from(_: OutOfBits) -> Self {
        BodyError::Malformed
    }
}

/// Writes one value in full.
fn write_full(w: &mut BitWriter, enc: &Encoding, words: &[i64]) {
    match *enc {
        Encoding::VarUInt | Encoding::EntityRef => w.gamma(words[0] as u64 + 1),
        Encoding::VarInt => w.gamma(zigzag(words[0]) + 1),
        Encoding::Str { max_bytes } => {
            let len = words[0] as usize;
            w.put(len as u64, crate::schema::bits_for(u64::from(max_bytes)));
            for i in 0..len {
                w.put((words[1 + i / 4] as u64) >> (8 * (i % 4)), 8);
            }
        }
        _ => {
            let (lo, _) = enc.range();
            let bits = enc.fixed_bits().unwrap_or(32);
            w.put((words[0] - lo) as u64, bits);
        }
    }
}

/// Reads one value in full into `out`, checking its range.
/// The words of one value: a short string takes up to 17.
type ValueWords = SmallVec<[i64; 17]>;

fn read_full(
    r: &mut BitReader<'_>,
    enc: &Encoding,
    out: &mut impl Extend<i64>,
) -> Result<bool, OutOfBits> {
    let (lo, hi) = enc.range();
    let v = match *enc {
        Encoding::VarUInt | Encoding::EntityRef => r.gamma()? as i64 - 1,
        Encoding::VarInt => unzigzag(r.gamma()? - 1),
        Encoding::Str { max_bytes } => {
            let len = r.get(crate::schema::bits_for(u64::from(max_bytes)))? as usize;
            let mut bytes = [0u8; crate::schema::MAX_STR_BYTES as usize];
            for b in bytes.iter_mut().take(len.min(usize::from(max_bytes))) {
                *b = r.get(8)? as u8;
            }
            let mut words = ValueWords::new();
            words.push(len as i64);
            for c in bytes[..usize::from(max_bytes).div_ceil(4) * 4].chunks_exact(4) {
                words.push(i64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
            }
            let ok = enc.check(&words);
            out.extend(words);
            return Ok(ok);
        }
        _ => r.get(enc.fixed_bits().unwrap_or(32))? as i64 + lo,
    };
    out.extend(std::iter::once(v));
    Ok((lo..=hi).contains(&v))
}

/// The all-ones value of a small difference of `bits` bits: "the full value follows".
fn escape(bits: u8) -> u64 {
    (1 << bits) - 1
}

/// One entity's change record without its id gap and mask header: encoded once per entity and
/// baseline, then written into the body of every client that needs it.
#[derive(Clone, Debug, Default)]
pub struct EncodedChange {
    /// Which of the entity's fields changed.
    mask: u64,
    /// Fields the entity has.
    fields: u8,
    payload: BitWriter,
}

impl EncodedChange {
    /// The change from `old` to `new` words of an entity with component mask `mask`, or
    /// `None` if no field changed.
    #[must_use]
    pub fn new(schema: &GameSchema, mask: u32, old: &[i64], new: &[i64]) -> Option<EncodedChange> {
        let mut c = EncodedChange::default();
        c.encode(schema, mask, old, new).then_some(c)
    }

    /// Encodes into this record (reusing its buffer); false if no field changed.
    pub fn encode(&mut self, schema: &GameSchema, mask: u32, old: &[i64], new: &[i64]) -> bool {
        self.encode_with(&Layout::new(schema, mask), old, new)
    }

    /// [`EncodedChange::encode`] with the entity's layout already worked out (the server keeps
    /// them in [`Layouts`]).
    ///
    /// # Panics
    /// If `old` or `new` is shorter than the layout's words.
    pub fn encode_with(&mut self, layout: &Layout, old: &[i64], new: &[i64]) -> bool {
        self.payload.clear();
        self.mask = layout.changed_fields(old, new);
        self.fields = layout.fields.len() as u8;
        layout.write_changes(&mut self.payload, self.mask, old, new);
        self.mask != 0
    }
}

/// One entity's created record without its id gap: its component mask and every field in
/// full, encoded once per entity and tick, then written into the body of every client that
/// newly sees it.
#[derive(Clone, Debug, Default)]
pub struct EncodedEntity {
    payload: BitWriter,
}

impl EncodedEntity {
    /// Encodes an entity with the components in `mask` (of a game with `components` component
    /// types, laid out as `layout`) into this record, reusing its buffer.
    ///
    /// # Panics
    /// If `words` is shorter than the layout's words.
    pub fn encode_with(&mut self, layout: &Layout, components: usize, mask: u32, words: &[i64]) {
        self.payload.clear();
        self.payload.put(u64::from(mask), components as u32);
        layout.write_all(&mut self.payload, words);
    }
}

/// How a field is written in full, worked out once per layout.
#[derive(Clone, Copy, Debug)]
enum Full {
    /// `bits` bits of the value minus `lo` (the fixed-width encodings).
    Bits { lo: i64, bits: u32 },
    /// Gamma of the value plus one (varuint, entity ref).
    Gamma,
    /// Gamma of the zigzagged value plus one (varint).
    GammaZigzag,
    /// A short string: several words, always absolute.
    Str(Encoding),
}

/// One field of an entity's layout: where its words are and how it is written, worked out once.
#[derive(Clone, Copy, Debug)]
struct FieldPlan {
    at: u16,
    words: u8,
    full: Full,
    /// Bits of the small difference (0: written in full), and the angle's steps for an
    /// `AngleDiff` (0 otherwise).
    diff_bits: u8,
    steps: u32,
    /// The value's range, checked on every value read.
    lo: i64,
    hi: i64,
    /// The steps of an `Angle` encoding (0 otherwise): a value read as a difference wraps
    /// around them, whatever the delta mode.
    wrap: u32,
}

impl FieldPlan {
    /// Writes a one-word value in full.
    #[inline(always)]
    fn write_full(&self, w: &mut BitWriter, v: i64) {
        match self.full {
            Full::Bits { lo, bits } => w.put((v - lo) as u64, bits),
            Full::Gamma => w.gamma(v as u64 + 1),
            Full::GammaZigzag => w.gamma(zigzag(v) + 1),
            Full::Str(_) => unreachable!("a layout writes strings whole"),
        }
    }

    /// Reads a one-word value written in full; `None` if it is out of range.
    #[inline(always)]
    fn read_full(&self, r: &mut BitReader<'_>) -> Result<Option<i64>, OutOfBits> {
        let v = match self.full {
            Full::Bits { lo, bits } => r.get(bits)? as i64 + lo,
            Full::Gamma => r.gamma()? as i64 - 1,
            Full::GammaZigzag => unzigzag(r.gamma()? - 1),
            // Layouts read strings whole, with `read_full` over their encoding.
            Full::Str(_) => return Ok(None),
        };
        Ok((self.lo..=self.hi).contains(&v).then_some(v))
    }

    /// Reads the change of a one-word field from `old`, as [`FieldPlan::write_change`] writes
    /// it; `None` if the new value is out of range.
    #[inline(always)]
    fn read_change(&self, r: &mut BitReader<'_>, old: i64) -> Result<Option<i64>, OutOfBits> {
        if self.diff_bits > 0 {
            let z = r.get(u32::from(self.diff_bits))?;
            if z != escape(self.diff_bits) {
                let v = old + unzigzag(z + 1);
                let v = if self.wrap > 0 {
                    v.rem_euclid(i64::from(self.wrap))
                } else {
                    v
                };
                return Ok((self.lo..=self.hi).contains(&v).then_some(v));
            }
        }
        self.read_full(r)
    }

    /// Writes the change of a one-word field from `old` to `new`.
    #[inline(always)]
    fn write_change(&self, w: &mut BitWriter, old: i64, new: i64) {
        if self.diff_bits == 0 {
            return self.write_full(w, new);
        }
        let d = if self.steps > 0 {
            fixed::turn(old, new, self.steps)
        } else {
            new - old
        };
        let escape = escape(self.diff_bits);
        match zigzag(d).checked_sub(1) {
            Some(z) if z < escape => w.put(z, u32::from(self.diff_bits)),
            _ => {
                w.put(escape, u32::from(self.diff_bits));
                self.write_full(w, new);
            }
        }
    }
}

/// The fields of an entity with a given component set, in word order, with how each is written.
#[derive(Clone, Debug)]
pub struct Layout {
    fields: Vec<FieldPlan>,
    /// True when no field is a string, so field `i` is word `i`.
    one_word_fields: bool,
}

impl Layout {
    /// The layout of an entity with the components in `mask`.
    #[must_use]
    pub fn new(schema: &GameSchema, mask: u32) -> Layout {
        let mut at = 0u16;
        let fields: Vec<FieldPlan> = fields_of(schema, mask)
            .map(|f| {
                let (diff_bits, steps) = match (f.delta, f.encoding) {
                    (Delta::Absolute, _) | (_, Encoding::Str { .. }) => (0, 0),
                    (Delta::Diff { bits }, _) => (bits, 0),
                    (Delta::AngleDiff { bits }, Encoding::Angle { steps }) => (bits, steps),
                    (Delta::AngleDiff { .. }, _) => (0, 0),
                };
                let full = match f.encoding {
                    Encoding::VarUInt | Encoding::EntityRef => Full::Gamma,
                    Encoding::VarInt => Full::GammaZigzag,
                    Encoding::Str { .. } => Full::Str(f.encoding),
                    enc => Full::Bits {
                        lo: enc.range().0,
                        bits: enc.fixed_bits().unwrap_or(32),
                    },
                };
                let (lo, hi) = f.encoding.range();
                let wrap = match f.encoding {
                    Encoding::Angle { steps } => steps,
                    _ => 0,
                };
                let plan = FieldPlan {
                    at,
                    words: f.words() as u8,
                    full,
                    diff_bits,
                    steps,
                    lo,
                    hi,
                    wrap,
                };
                at += f.words() as u16;
                plan
            })
            .collect();
        let one_word_fields = fields.iter().all(|f| f.words == 1);
        Layout {
            fields,
            one_word_fields,
        }
    }

    /// Words of an entity with this layout.
    #[inline]
    fn words(&self) -> usize {
        self.fields
            .last()
            .map_or(0, |f| usize::from(f.at) + usize::from(f.words))
    }

    /// True if the entity's words can be read by this layout with no slicing per field.
    #[inline]
    fn one_word(&self, old: &[i64], new: &[i64]) -> bool {
        self.one_word_fields && old.len() == self.fields.len() && new.len() == old.len()
    }

    /// The mask of the fields whose words differ between `old` and `new`.
    ///
    /// # Panics
    /// If `old` or `new` is shorter than the layout's words.
    #[inline]
    fn changed_fields(&self, old: &[i64], new: &[i64]) -> u64 {
        let mut mask = 0u64;
        if self.one_word(old, new) {
            // Field `i` is word `i`: one comparison per word.
            for (i, (o, v)) in old.iter().zip(new).enumerate() {
                mask |= u64::from(o != v) << i;
            }
        } else {
            for (i, f) in self.fields.iter().enumerate() {
                let (at, len) = (usize::from(f.at), usize::from(f.words));
                mask |= u64::from(old[at..at + len] != new[at..at + len]) << i;
            }
        }
        mask
    }

    /// Writes the fields in `mask` as changes from `old` to `new`.
    #[inline]
    fn write_changes(&self, w: &mut BitWriter, mask: u64, old: &[i64], new: &[i64]) {
        if self.one_word(old, new) {
            for (f, (&o, &v)) in self.fields.iter().zip(old.iter().zip(new)) {
                if o != v {
                    f.write_change(w, o, v);
                }
            }
            return;
        }
        let mut m = mask;
        while m != 0 {
            let f = &self.fields[m.trailing_zeros() as usize];
            m &= m - 1;
            let at = usize::from(f.at);
            match f.full {
                Full::Str(enc) => write_full(w, &enc, &new[at..at + usize::from(f.words)]),
                _ => f.write_change(w, old[at], new[at]),
            }
        }
    }

    /// Writes every field of `words` in full.
    #[inline]
    fn write_all(&self, w: &mut BitWriter, words: &[i64]) {
        for f in &self.fields {
            let at = usize::from(f.at);
            match f.full {
                Full::Str(enc) => write_full(w, &enc, &words[at..at + usize::from(f.words)]),
                _ => f.write_full(w, words[at]),
            }
        }
    }
}

/// Layouts by component set, worked out on first use: the server's encoders keep one.
#[derive(Clone, Debug, Default)]
pub struct Layouts {
    by_mask: Vec<(u32, Layout)>,
    /// The index of the last one asked for: entities of one kind tend to come together.
    last: usize,
}

impl Layouts {
    /// The layout of an entity with the components in `mask`.
    #[inline]
    pub fn get(&mut self, schema: &GameSchema, mask: u32) -> &Layout {
        if self.by_mask.get(self.last).is_none_or(|(m, _)| *m != mask) {
            self.last = match self.by_mask.iter().position(|(m, _)| *m == mask) {
                Some(i) => i,
                None => {
                    self.by_mask.push((mask, Layout::new(schema, mask)));
                    self.by_mask.len() - 1
                }
            };
        }
        &self.by_mask[self.last].1
    }
}

/// Builds one section of a body from its parts, so that a server can assemble each client's
/// body from records it encoded once ([`EncodedChange`]). The lists go straight into one bit
/// stream, so they must come in order: every created entity, then every change, then every
/// removal, each list in ascending id order. [`BodyWriter::finish`] makes a one-section body,
/// the bytes of [`write_diff`] for the same views; [`BodyWriter::section_into`] keeps the
/// section to be put into many bodies ([`BodyBuilder`]).
#[derive(Debug, Default)]
pub struct BodyWriter {
    bits: BitWriter,
    counts: [u32; 3],
    /// The list being written, and the previous id written in it.
    list: usize,
    prev: u32,
    /// The previous change's field mask and field count.
    prev_change: Option<(u64, u8)>,
    /// A buffer for the bits of a section ([`BodyWriter::finish`], [`BodyWriter::section_into`]),
    /// kept between sections.
    body: BitWriter,
}

const CREATED: usize = 0;
const CHANGED: usize = 1;
const REMOVED: usize = 2;

impl BodyWriter {
    /// Empties the writer, keeping its buffer.
    pub fn clear(&mut self) {
        self.bits.clear();
        self.counts = [0; 3];
        self.list = CREATED;
        self.prev = 0;
        self.prev_change = None;
    }

    /// True if nothing was written since the last [`BodyWriter::clear`].
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.counts == [0; 3]
    }

    /// Writes the gap from the previous id of `list`.
    ///
    /// # Panics
    /// If a list comes after a later one, or ids are not strictly increasing within a list (a
    /// bug in the caller's walk).
    #[inline(always)]
    fn gap(&mut self, list: usize, id: NetId) {
        if list != self.list {
            self.start_list(list);
        }
        // Also refuses id 0: `prev` starts at 0.
        assert!(
            id.0 > self.prev,
            "snapshot lists are written in ascending id order, without id 0"
        );
        let gap = id.0 - self.prev;
        self.prev = id.0;
        self.counts[list] += 1;
        self.bits.gamma(u64::from(gap));
    }

    /// Moves on to the next list.
    #[cold]
    fn start_list(&mut self, list: usize) {
        assert!(
            list > self.list,
            "body lists are written created, changed, removed"
        );
        self.list = list;
        self.prev = 0;
    }

    /// Adds an entity to `created`: its component mask and words.
    pub fn created(&mut self, schema: &GameSchema, id: NetId, mask: u32, words: &[i64]) {
        let mut e = EncodedEntity::default();
        e.encode_with(
            &Layout::new(schema, mask),
            schema.components.len(),
            mask,
            words,
        );
        self.created_from(id, &e);
    }

    /// Adds an entity to `created` from its encoded record.
    #[inline]
    pub fn created_from(&mut self, id: NetId, e: &EncodedEntity) {
        self.gap(CREATED, id);
        self.bits.append(&e.payload);
    }

    /// Adds an entity's change to `changed`.
    #[inline]
    pub fn changed(&mut self, id: NetId, c: &EncodedChange) {
        self.change_header(id, c.mask, c.fields);
        self.bits.append(&c.payload);
    }

    /// Adds an entity's change from `old` to `new` words to `changed`, written straight into
    /// the body (no record to share): false, writing nothing, if no field changed.
    ///
    /// # Panics
    /// If `old` or `new` is shorter than the layout's words.
    pub fn changed_from(&mut self, id: NetId, layout: &Layout, old: &[i64], new: &[i64]) -> bool {
        let mask = layout.changed_fields(old, new);
        if mask == 0 {
            return false;
        }
        self.change_header(id, mask, layout.fields.len() as u8);
        layout.write_changes(&mut self.bits, mask, old, new);
        true
    }

    /// A changed record's id gap and field mask (or the bit that says it is the previous one).
    #[inline(always)]
    fn change_header(&mut self, id: NetId, mask: u64, fields: u8) {
        self.gap(CHANGED, id);
        let w = &mut self.bits;
        if self.prev_change == Some((mask, fields)) {
            w.put(1, 1);
        } else {
            w.put(0, 1);
            let n = u32::from(fields);
            w.put(mask & 0xFFFF_FFFF, n.min(32));
            if n > 32 {
                w.put(mask >> 32, n - 32);
            }
            self.prev_change = Some((mask, fields));
        }
    }

    /// Adds an entity to `removed`.
    pub fn removed(&mut self, id: NetId) {
        self.gap(REMOVED, id);
    }

    /// Keeps what was written as a [`Section`] (its counts, then its lists, padded to a whole
    /// byte), to be put into many bodies; `s`'s buffer is reused.
    pub fn section_into(&mut self, s: &mut Section) {
        s.counts = self.counts;
        s.bytes.clear();
        write_section(&mut self.body, self.counts, &self.bits, &mut s.bytes);
    }

    /// Appends the finished body, with `checksum`, to `out`: one section, or none if nothing
    /// was written.
    pub fn finish(&mut self, checksum: u32, out: &mut Vec<u8>) {
        for n in self.counts {
            crate::codec::varint_into(u64::from(n), out);
        }
        crate::codec::varint_into(u64::from(!self.is_empty()), out);
        if !self.is_empty() {
            write_section(&mut self.body, self.counts, &self.bits, out);
        }
        out.extend_from_slice(&checksum.to_le_bytes());
    }
}

/// Appends to `out` a section: its counts (gamma of each plus one), then its lists, padded to a
/// whole byte; `scratch` is a buffer for the bits.
fn write_section(scratch: &mut BitWriter, counts: [u32; 3], lists: &BitWriter, out: &mut Vec<u8>) {
    scratch.clear();
    for n in counts {
        scratch.gamma(u64::from(n) + 1);
    }
    scratch.append(lists);
    scratch.finish_into(out);
}

/// One section of a body, encoded once and put into the bodies of many clients: a server
/// encodes each grid cell's changes against a baseline as one section and builds each client's
/// body from the sections of the cells it sees ([`BodyBuilder`]).
#[derive(Clone, Debug, Default)]
pub struct Section {
    counts: [u32; 3],
    /// The counts, then the lists, padded to a whole byte: copied into bodies as they are.
    bytes: Vec<u8>,
}

impl Section {
    /// True if the section creates, changes and removes nothing (it is left out of bodies).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.counts == [0; 3]
    }

    /// How many entities it creates, changes and removes.
    #[must_use]
    pub fn counts(&self) -> [u32; 3] {
        self.counts
    }
}

/// Assembles a body from sections: the totals, the section count, then each section's bytes
/// one after the other, then the checksum.
#[derive(Debug, Default)]
pub struct BodyBuilder {
    bytes: Vec<u8>,
    /// A buffer for the bits of sections written straight in.
    bits: BitWriter,
    counts: [u32; 3],
    sections: u32,
}

impl BodyBuilder {
    /// Empties the builder, keeping its buffer.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.counts = [0; 3];
        self.sections = 0;
    }

    /// Adds the totals of a section.
    fn count(&mut self, counts: [u32; 3]) {
        for (t, n) in self.counts.iter_mut().zip(counts) {
            *t += n;
        }
        self.sections += 1;
    }

    /// Adds a section encoded before; an empty one is left out.
    #[inline]
    pub fn push(&mut self, s: &Section) {
        if s.is_empty() {
            return;
        }
        self.count(s.counts);
        self.bytes.extend_from_slice(&s.bytes);
    }

    /// Adds what `w` wrote as one section; nothing if it wrote nothing.
    pub fn push_writer(&mut self, w: &BodyWriter) {
        if w.is_empty() {
            return;
        }
        self.count(w.counts);
        write_section(&mut self.bits, w.counts, &w.bits, &mut self.bytes);
    }

    /// How many sections were added.
    #[must_use]
    pub fn sections(&self) -> u32 {
        self.sections
    }

    /// Appends the finished body, with `checksum`, to `out`.
    pub fn finish(&self, checksum: u32, out: &mut Vec<u8>) {
        for n in self.counts {
            crate::codec::varint_into(u64::from(n), out);
        }
        crate::codec::varint_into(u64::from(self.sections), out);
        out.extend_from_slice(&self.bytes);
        out.extend_from_slice(&checksum.to_le_bytes());
    }
}

/// Writes the body that turns `base` into `cur` (a merge walk): the reference encoder, used by
/// clients' tests, golden vectors and tools; the server has its own walk with shared records.
pub fn write_diff(
    schema: &GameSchema,
    base: &Entities,
    cur: &Entities,
    checksum: u32,
    out: &mut Vec<u8>,
) {
    let mut w = BodyWriter::default();
    let mut rec = EncodedChange::default();
    // New, or replaced (its components changed; removed below too).
    for (id, s) in cur {
        if base.get(id).is_none_or(|old| old.mask != s.mask) {
            w.created(schema, *id, s.mask, &s.words);
        }
    }
    for (id, s) in cur {
        if let Some(old) = base.get(id)
            && old.mask == s.mask
            && rec.encode(schema, s.mask, &old.words, &s.words)
        {
            w.changed(*id, &rec);
        }
    }
    // Gone, or replaced: ascending, like the base.
    for (id, old) in base {
        if cur.get(id).is_none_or(|s| s.mask != old.mask) {
            w.removed(*id);
        }
    }
    w.finish(checksum, out);
}

/// How many entities a body creates, changes and removes (read from its first bytes).
#[must_use]
pub fn counts(bytes: &[u8]) -> Option<[u32; 3]> {
    let mut out = [0u32; 3];
    let mut rest = bytes;
    for c in &mut out {
        let (v, used) = crate::codec::varint_from(rest)?;
        *c = u32::try_from(v).ok()?;
        rest = &rest[used..];
    }
    Some(out)
}

/// How many sections a body has (read from its first bytes).
#[must_use]
pub fn section_count(bytes: &[u8]) -> Option<u32> {
    let mut rest = bytes;
    for _ in 0..3 {
        rest = &rest[crate::codec::varint_from(rest)?.1..];
    }
    u32::try_from(crate::codec::varint_from(rest)?.0).ok()
}

/// Applies a body to the baseline view `base` (empty for a full snapshot): returns the new view
/// and the checksum the server sent. The view is the baseline's copy with the changes made in
/// place, the removals taken out and the creations merged in, so it costs one allocation and
/// one copy.
pub fn apply_body(
    schema: &GameSchema,
    base: &Entities,
    bytes: &[u8],
) -> Result<(Entities, u32), BodyError> {
    let mut totals = [0u32; 4];
    let mut rest = bytes;
    for c in &mut totals {
        let (v, used) = crate::codec::varint_from(rest).ok_or(BodyError::Malformed)?;
        *c = u32::try_from(v).map_err(|_| BodyError::Malformed)?;
        rest = &rest[used..];
    }
    let [created_total, changed_total, removed_total, sections] = totals;
    let mut r = BitReader::new(rest);
    // Every record takes at least one bit and every section a byte: forged counts cannot make
    // us loop or allocate.
    let records = [created_total, changed_total, removed_total]
        .iter()
        .map(|c| *c as usize)
        .sum::<usize>();
    if records > r.remaining() || sections as usize * 8 > r.remaining() {
        return Err(BodyError::Malformed);
    }
    let next = |r: &mut BitReader<'_>, prev: &mut u32| -> Result<NetId, BodyError> {
        let gap = u32::try_from(r.gamma()?).map_err(|_| BodyError::Malformed)?;
        *prev = prev.checked_add(gap).ok_or(BodyError::Malformed)?;
        Ok(NetId(*prev))
    };
    let count = |r: &mut BitReader<'_>| -> Result<u32, BodyError> {
        u32::try_from(r.gamma()? - 1).map_err(|_| BodyError::Malformed)
    };
    let ncomp = schema.components.len() as u32;
    let entries = base.as_slice();
    // The index of `id` in the baseline, searched from `from`: the ids of a list ascend, so
    // the next one is usually near. A gallop (1, 2, 4... ahead) then a binary search within
    // the last step keeps the walk over the baseline's entries sequential for a dense list
    // and logarithmic for a sparse one.
    let find = |from: usize, id: NetId| -> Result<usize, BodyError> {
        let n = entries.len();
        let (mut lo, mut step) = (from, 1);
        let at = loop {
            if lo >= n || entries[lo].0 >= id {
                break lo;
            }
            let probe = lo + step;
            if probe >= n || entries[probe].0 >= id {
                let hi = probe.min(n);
                break lo + 1 + entries[lo + 1..hi].partition_point(|(e, _)| *e < id);
            }
            lo = probe;
            step *= 2;
        };
        match entries.get(at) {
            Some((e, _)) if *e == id => Ok(at),
            _ => Err(BodyError::UnknownEntity(id)),
        }
    };

    let mut out: Vec<(NetId, EntityState)> =
        Vec::with_capacity(entries.len() + created_total as usize);
    out.extend_from_slice(entries);
    // Baseline entries already changed or removed by this body.
    let mut touched = vec![false; entries.len()];
    let mut created = Vec::with_capacity(created_total as usize);
    let mut removed = Vec::with_capacity(removed_total as usize);
    let mut seen = [0u32; 3];
    let mut scratch = ValueWords::new();
    let mut layouts = Layouts::default();
    for _ in 0..sections {
        let counts = [count(&mut r)?, count(&mut r)?, count(&mut r)?];
        for (s, c) in seen.iter_mut().zip(counts) {
            *s = s.checked_add(c).ok_or(BodyError::Malformed)?;
        }
        if seen[CREATED] > created_total
            || seen[CHANGED] > changed_total
            || seen[REMOVED] > removed_total
        {
            return Err(BodyError::Malformed);
        }

        let mut prev = 0;
        for _ in 0..counts[CREATED] {
            let id = next(&mut r, &mut prev)?;
            let mask = r.get(ncomp)? as u32;
            let mut words = Words::new();
            for f in fields_of(schema, mask) {
                if !read_full(&mut r, &f.encoding, &mut words)? {
                    return Err(BodyError::BadValue(id));
                }
            }
            created.push((id, EntityState { mask, words }));
        }

        let (mut prev, mut cursor) = (0, 0);
        let mut prev_mask: Option<(u64, usize)> = None;
        for _ in 0..counts[CHANGED] {
            let id = next(&mut r, &mut prev)?;
            let at = find(cursor, id)?;
            cursor = at + 1;
            if std::mem::replace(&mut touched[at], true) {
                return Err(BodyError::Malformed);
            }
            let state = &mut out[at].1;
            let layout = layouts.get(schema, state.mask);
            let nfields = layout.fields.len();
            if state.words.len() != layout.words() {
                return Err(BodyError::Malformed);
            }
            let mask = if r.get(1)? == 1 {
                match prev_mask {
                    Some((m, n)) if n == nfields => m,
                    _ => return Err(BodyError::Malformed),
                }
            } else {
                let n = nfields as u32;
                let m = r.get(n.min(32))? | r.get(n.saturating_sub(32))? << 32;
                prev_mask = Some((m, nfields));
                m
            };
            if mask == 0 {
                return Err(BodyError::Malformed);
            }
            // The changed fields, in field order, each read by its layout's plan.
            let mut m = mask;
            while m != 0 {
                let f = &layout.fields[m.trailing_zeros() as usize];
                m &= m - 1;
                let at = usize::from(f.at);
                if let Full::Str(enc) = f.full {
                    // Strings are written whole.
                    scratch.clear();
                    if !read_full(&mut r, &enc, &mut scratch)? {
                        return Err(BodyError::BadValue(id));
                    }
                    state.words[at..at + usize::from(f.words)].copy_from_slice(&scratch);
                } else {
                    state.words[at] = f
                        .read_change(&mut r, state.words[at])?
                        .ok_or(BodyError::BadValue(id))?;
                }
            }
        }

        let (mut prev, mut cursor) = (0, 0);
        for _ in 0..counts[REMOVED] {
            let id = next(&mut r, &mut prev)?;
            let at = find(cursor, id)?;
            cursor = at + 1;
            if std::mem::replace(&mut touched[at], true) {
                return Err(BodyError::Malformed);
            }
            removed.push(at);
        }
        r.align()?;
    }
    if seen != [created_total, changed_total, removed_total] {
        return Err(BodyError::Malformed);
    }
    let tail = r.finish()?;
    let checksum: [u8; 4] = tail.try_into().map_err(|_| BodyError::Malformed)?;
    if !removed.is_empty() {
        removed.sort_unstable();
        let mut k = 0;
        let mut i = 0;
        out.retain(|_| {
            let gone = k < removed.len() && removed[k] == i;
            k += usize::from(gone);
            i += 1;
            !gone
        });
    }
    // Sections each list their creations in id order; together they need a sort.
    if !created.windows(2).all(|w| w[0].0 < w[1].0) {
        created.sort_unstable_by_key(|(id, _)| *id);
        if let Some(w) = created.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(BodyError::DuplicateCreate(w[0].0));
        }
    }
    merge_created(&mut out, created)?;
    Ok((Entities::from_sorted(out), u32::from_le_bytes(checksum)))
}

/// Merges `created` (sorted by id) into `out` (sorted by id), from the back, in place.
fn merge_created(
    out: &mut Vec<(NetId, EntityState)>,
    created: Vec<(NetId, EntityState)>,
) -> Result<(), BodyError> {
    if created.is_empty() {
        return Ok(());
    }
    let old = out.len();
    out.resize_with(old + created.len(), Default::default);
    let (mut i, mut w) = (old, old + created.len());
    for c in created.into_iter().rev() {
        while i > 0 && out[i - 1].0 > c.0 {
            out.swap(i - 1, w - 1);
            i -= 1;
            w -= 1;
        }
        if i > 0 && out[i - 1].0 == c.0 {
            return Err(BodyError::DuplicateCreate(c.0));
        }
        out[w - 1] = c;
        w -= 1;
    }
    Ok(())
}

/// Writes a record's words in full, field after field, padded to a whole byte: the form of an
/// input's fields.
pub fn write_record(fields: &[Field], words: &[i64], out: &mut Vec<u8>) {
    let mut w = BitWriter::new();
    let mut at = 0;
    for f in fields {
        let len = f.words();
        write_full(&mut w, &f.encoding, &words[at..at + len]);
        at += len;
    }
    w.finish_into(out);
}

/// Reads a record written by [`write_record`] into `out`, checking every value against its
/// field; the bytes must hold exactly the record.
pub fn read_record(
    fields: &[Field],
    bytes: &[u8],
    out: &mut impl Extend<i64>,
) -> Result<(), BodyError> {
    let mut r = BitReader::new(bytes);
    for f in fields {
        if !read_full(&mut r, &f.encoding, out)? {
            return Err(BodyError::BadValue(NetId(0)));
        }
    }
    if r.finish()?.is_empty() {
        Ok(())
    } else {
        Err(BodyError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ComponentSchema, str_words};
    use crate::state::view_checksum;

    pub(crate) fn schema() -> GameSchema {
        GameSchema {
            game: "test".into(),
            components: vec![
                ComponentSchema {
                    name: "Body".into(),
                    fields: vec![
                        Field::new(
                            "x",
                            Encoding::Fixed {
                                scale: 2.0,
                                min: 0,
                                max: 8000,
                            },
                        )
                        .delta(Delta::Diff { bits: 6 }),
                        Field::new(
                            "y",
                            Encoding::Fixed {
                                scale: 2.0,
                                min: 0,
                                max: 8000,
                            },
                        )
                        .delta(Delta::Diff { bits: 6 }),
                        Field::new("turn", Encoding::Angle { steps: 1024 })
                            .delta(Delta::AngleDiff { bits: 5 }),
                        Field::new("level", Encoding::UInt { max: 100 }),
                        Field::new("count", Encoding::VarUInt).delta(Delta::Diff { bits: 2 }),
                    ],
                },
                ComponentSchema {
                    name: "Tag".into(),
                    fields: vec![
                        Field::new("name", Encoding::Str { max_bytes: 8 }),
                        Field::new("owner", Encoding::EntityRef),
                        Field::new("on", Encoding::Bool),
                        Field::new("v", Encoding::VarInt),
                        Field::new(
                            "t",
                            Encoding::Int {
                                min: -300,
                                max: 300,
                            },
                        )
                        .delta(Delta::Diff { bits: 3 }),
                    ],
                },
            ],
            input: vec![],
            statics: vec![],
            ..GameSchema::default()
        }
    }

    fn body(x: i64, turn: i64, level: i64, count: i64) -> EntityState {
        EntityState {
            mask: 1,
            words: [x, 100, turn, level, count].into_iter().collect(),
        }
    }

    fn tag(name: &str, v: i64) -> EntityState {
        let mut words = Vec::new();
        str_words(name, 8, &mut words);
        words.extend([3, 1, v, -299]);
        EntityState {
            mask: 2,
            words: words.into_iter().collect(),
        }
    }

    fn both() -> EntityState {
        let mut s = body(1, 2, 3, 4);
        s.mask = 3;
        s.words.extend(tag("x", 0).words);
        s
    }

    /// The body from `base` to `cur` through the server's paths (shared created records,
    /// changes written straight into the body), where `write_diff` goes through change records.
    fn direct_body(s: &GameSchema, base: &Entities, cur: &Entities) -> Vec<u8> {
        let mut layouts = Layouts::default();
        let mut w = BodyWriter::default();
        for (id, st) in cur {
            if base.get(id).is_none_or(|old| old.mask != st.mask) {
                let mut e = EncodedEntity::default();
                e.encode_with(
                    layouts.get(s, st.mask),
                    s.components.len(),
                    st.mask,
                    &st.words,
                );
                w.created_from(*id, &e);
            }
        }
        for (id, st) in cur {
            if let Some(old) = base.get(id).filter(|old| old.mask == st.mask) {
                w.changed_from(*id, layouts.get(s, st.mask), &old.words, &st.words);
            }
        }
        for (id, old) in base {
            if cur.get(id).is_none_or(|st| st.mask != old.mask) {
                w.removed(*id);
            }
        }
        let mut out = Vec::new();
        w.finish(view_checksum(cur), &mut out);
        out
    }

    fn round_trip(s: &GameSchema, base: &Entities, cur: &Entities) -> usize {
        let mut out = Vec::new();
        write_diff(s, base, cur, view_checksum(cur), &mut out);
        assert_eq!(
            direct_body(s, base, cur),
            out,
            "the direct paths write the same bytes"
        );
        let (view, sum) = apply_body(s, base, &out).expect("applies");
        assert_eq!(&view, cur);
        assert_eq!(sum, view_checksum(cur));
        out.len()
    }

    #[test]
    fn every_encoding_and_delta_mode_round_trips() {
        let s = schema();
        s.validate().expect("valid");
        let base = Entities::from_iter([
            (NetId(1), body(10, 1020, 100, 7)),
            (NetId(2), tag("héllo", -5)),
            (NetId(3), body(8000, 0, 0, 0)),
            (NetId(9), both()),
        ]);
        let full = round_trip(&s, &Entities::new(), &base);
        assert!(full > 10);
        let mut cur = base.clone();
        cur.insert(NetId(1), body(42, 4, 99, 4_000_000_000)); // Small x diff, wrap, abs.
        cur.insert(NetId(2), tag("", i64::from(i32::MIN)));
        cur.insert(NetId(3), body(0, 512, 0, 1)); // Big jump: in full.
        cur.remove(&NetId(9));
        cur.insert(NetId(70_000), body(5, 5, 5, 5));
        round_trip(&s, &base, &cur);
        // A mask change replaces the entity.
        let mut replaced = cur.clone();
        replaced.insert(NetId(2), body(1, 1, 1, 1));
        round_trip(&s, &cur, &replaced);
    }

    #[test]
    fn moving_entities_cost_under_three_bytes_each() {
        let s = schema();
        let base: Entities = (1..=200)
            .map(|i| (NetId(i), body(i64::from(i) * 10, 0, 100, 0)))
            .collect();
        let cur: Entities = (1..=200)
            .map(|i| (NetId(i), body(i64::from(i) * 10 + 16, 8, 100, 0)))
            .collect();
        let len = round_trip(&s, &base, &cur);
        // 200 records of 1 (gap) + 1 (same mask) + 7 + 6 bits, plus counts and checksum.
        assert!(len <= 200 * 15 / 8 + 12, "{len} bytes");
    }

    #[test]
    fn records_round_trip_and_are_checked() {
        let s = schema();
        let fields = &s.components[1].fields;
        let words = tag("ab", 77).words.to_vec();
        let mut bytes = Vec::new();
        write_record(fields, &words, &mut bytes);
        let mut back = Vec::new();
        read_record(fields, &bytes, &mut back).expect("reads");
        assert_eq!(back, words);
        let mut long = bytes.clone();
        long.push(0);
        assert!(read_record(fields, &long, &mut Vec::new()).is_err());
        assert!(read_record(fields, &bytes[..bytes.len() - 1], &mut Vec::new()).is_err());
        // Int -300..=300 is 10 bits: 1000 is out of range.
        let t = &s.components[1].fields[4..];
        let mut w = BitWriter::new();
        w.put(1000, 10);
        let mut raw = Vec::new();
        w.finish_into(&mut raw);
        assert!(read_record(t, &raw, &mut Vec::new()).is_err());
    }

    #[test]
    fn hostile_bodies_are_refused() {
        let s = schema();
        let base = Entities::from_iter([(NetId(1), body(10, 0, 100, 0))]);
        let cur = Entities::from_iter([(NetId(1), body(11, 0, 100, 0))]);
        let mut good = Vec::new();
        write_diff(&s, &base, &cur, 7, &mut good);
        for cut in 0..good.len() {
            assert!(apply_body(&s, &base, &good[..cut]).is_err(), "cut {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(apply_body(&s, &base, &long), Err(BodyError::Malformed));
        // A forged count far beyond the bytes.
        assert_eq!(
            apply_body(&s, &base, &[0xFC, 0xFF, 0xFF, 0xFF, 0x0F, 0, 0, 0, 0, 0, 0]),
            Err(BodyError::Malformed)
        );
        // A forged section count far beyond the bytes (no records, a billion sections; 252
        // starts a bincode varint's four-byte form).
        assert_eq!(
            apply_body(
                &s,
                &base,
                &[0, 0, 0, 252, 0x00, 0xCA, 0x9A, 0x3B, 0, 0, 0, 0]
            ),
            Err(BodyError::Malformed)
        );
        // A change to an entity the view lacks.
        assert_eq!(
            apply_body(&s, &Entities::new(), &good),
            Err(BodyError::UnknownEntity(NetId(1)))
        );
        // Every single-bit flip is either refused or yields a different view.
        for i in 0..(good.len() - 4) * 8 {
            let mut bad = good.clone();
            bad[i / 8] ^= 1 << (i % 8);
            if let Ok((v, _)) = apply_body(&s, &base, &bad) {
                assert_ne!(v, cur, "bit {i} flipped yet the same view");
            }
        }
        // Removing an id that is not there, and creating one that is.
        let mut w = BodyWriter::default();
        w.removed(NetId(7));
        let mut b = Vec::new();
        w.finish(0, &mut b);
        assert_eq!(
            apply_body(&s, &base, &b),
            Err(BodyError::UnknownEntity(NetId(7)))
        );
        let mut w = BodyWriter::default();
        w.created(&s, NetId(1), 1, &[5, 5, 5, 5, 5]);
        let mut b = Vec::new();
        w.finish(0, &mut b);
        assert_eq!(
            apply_body(&s, &base, &b),
            Err(BodyError::DuplicateCreate(NetId(1)))
        );
    }

    /// The body from `base` to `cur` in sections: the ids split by `group`, each group a
    /// section (as a server builds them per grid cell).
    fn sectioned(
        s: &GameSchema,
        base: &Entities,
        cur: &Entities,
        groups: u32,
        group: impl Fn(NetId) -> u32,
    ) -> Vec<u8> {
        let mut body = BodyBuilder::default();
        let mut section = Section::default();
        let mut rec = EncodedChange::default();
        for g in 0..groups {
            let mut w = BodyWriter::default();
            let mine = |id: &NetId| group(*id) == g;
            for (id, st) in cur.iter().filter(|(id, _)| mine(id)) {
                if base.get(id).is_none_or(|old| old.mask != st.mask) {
                    w.created(s, *id, st.mask, &st.words);
                }
            }
            for (id, st) in cur.iter().filter(|(id, _)| mine(id)) {
                if let Some(old) = base.get(id).filter(|old| old.mask == st.mask)
                    && rec.encode(s, st.mask, &old.words, &st.words)
                {
                    w.changed(*id, &rec);
                }
            }
            for (id, old) in base.iter().filter(|(id, _)| mine(id)) {
                if cur.get(id).is_none_or(|st| st.mask != old.mask) {
                    w.removed(*id);
                }
            }
            // Half the groups as kept sections, half written straight in.
            if g % 2 == 0 {
                w.section_into(&mut section);
                body.push(&section);
            } else {
                body.push_writer(&w);
            }
        }
        let mut out = Vec::new();
        body.finish(view_checksum(cur), &mut out);
        out
    }

    #[test]
    fn bodies_in_sections_apply_like_one_section() {
        let s = schema();
        let base: Entities = (1..=60)
            .map(|i| (NetId(i), body(i64::from(i) * 10, 0, 100, 0)))
            .collect();
        let mut cur = base.clone();
        for i in (1..=60).step_by(3) {
            cur.insert(NetId(i), body(i64::from(i) * 10 + 4, 8, 100, 1));
        }
        for i in (2..=60).step_by(7) {
            cur.remove(&NetId(i));
        }
        cur.insert(NetId(5), tag("re", 1)); // replaced
        for i in 61..70 {
            cur.insert(NetId(i), tag("new", i64::from(i)));
        }
        let mut one = Vec::new();
        write_diff(&s, &base, &cur, view_checksum(&cur), &mut one);
        for groups in [1, 2, 5, 13] {
            let bytes = sectioned(&s, &base, &cur, groups, |id| (id.0 * 7) % groups);
            let (view, sum) = apply_body(&s, &base, &bytes).expect("applies");
            assert_eq!(view, cur, "{groups} sections");
            assert_eq!(sum, view_checksum(&cur));
            assert_eq!(counts(&bytes), counts(&one), "totals");
            assert_eq!(
                section_count(&bytes),
                Some(groups.min(13)),
                "non-empty groups"
            );
        }
        // One section is the reference encoder's body.
        assert_eq!(sectioned(&s, &base, &cur, 1, |_| 0), one);
        // Nothing to say: no section at all.
        let mut empty = Vec::new();
        write_diff(&s, &base, &base, 9, &mut empty);
        assert_eq!(empty, [0, 0, 0, 0, 9, 0, 0, 0]);
    }

    #[test]
    fn sections_that_repeat_an_entity_are_refused() {
        let s = schema();
        let base = Entities::from_iter([(NetId(1), body(10, 0, 100, 0))]);
        let twice = |f: &dyn Fn(&mut BodyWriter)| {
            let mut body = BodyBuilder::default();
            for _ in 0..2 {
                let mut w = BodyWriter::default();
                f(&mut w);
                body.push_writer(&w);
            }
            let mut out = Vec::new();
            body.finish(0, &mut out);
            apply_body(&s, &base, &out)
        };
        let mut rec = EncodedChange::default();
        assert!(rec.encode(
            &s,
            1,
            &base.get(&NetId(1)).expect("in").words,
            &[11, 100, 0, 100, 0]
        ));
        assert_eq!(
            twice(&|w| w.changed(NetId(1), &rec)),
            Err(BodyError::Malformed)
        );
        assert_eq!(twice(&|w| w.removed(NetId(1))), Err(BodyError::Malformed));
        assert_eq!(
            twice(&|w| w.created(&s, NetId(4), 1, &[5, 5, 5, 5, 5])),
            Err(BodyError::DuplicateCreate(NetId(4)))
        );
        // Totals that disagree with the sections.
        let mut w = BodyWriter::default();
        w.removed(NetId(1));
        let mut b = Vec::new();
        w.finish(0, &mut b);
        assert_eq!(b[2], 1, "one removal");
        b[2] = 2;
        assert_eq!(apply_body(&s, &base, &b), Err(BodyError::Malformed));
    }
}
