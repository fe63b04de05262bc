//! The compact encoding of snapshots, written by hand (see `docs/PROTOCOL.md`, "Snapshot
//! encoding"): ids as gaps in sorted lists, player changes either as 3 bytes (the common case:
//! a small move and turn) or as a field mask plus signed differences, fixed-width fields where
//! a varint would be longer.

use crate::msg::{
    EntityState, EntityUpdate, NetId, PlayerDelta, PlayerState, ProjectileState, SnapshotBody,
    SnapshotHeader,
};
use crate::tick::Tick;
use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::enc::write::Writer;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};

const KIND_PLAYER: u8 = 0;
const KIND_PROJECTILE: u8 = 1;

const MASK_X: u8 = 1;
const MASK_Y: u8 = 2;
const MASK_AIM: u8 = 4;
const MASK_HP: u8 = 8;
const MASK_SCORE: u8 = 16;
const MASK_ALL: u8 = 31;
/// First byte of a masked change: `0`, a 2-bit id gap (1 to 3; 0: the gap follows as a varint),
/// the 5-bit field mask.
const MASKED_GAP_SHIFT: u8 = 5;
const MASKED_MAX_GAP: u32 = 3;
/// First byte of a compact change: `1`, a 3-bit id gap (1 to 7; 0: the gap follows as a
/// varint), then the top 4 of 20 payload bits; two more bytes carry the low 16 (little-endian).
/// The payload packs `dx + 64` (7 bits), `dy + 64` (7 bits) and `daim + 32` (6 bits), from the
/// low end.
const COMPACT_FLAG: u8 = 0x80;
const COMPACT_GAP_SHIFT: u8 = 4;
const COMPACT_MAX_GAP: u32 = 7;
const COMPACT_D: std::ops::RangeInclusive<i32> = -64..=63;
const COMPACT_AIM: std::ops::RangeInclusive<i16> = -32..=31;

/// The compact payload of a change, if it has that form and the compact form is no longer than
/// the masked one (a player that only turns is shorter masked).
fn compact_payload(c: &PlayerDelta) -> Option<u32> {
    let fits = c.hp.is_none()
        && c.score.is_none()
        && COMPACT_D.contains(&c.dx)
        && COMPACT_D.contains(&c.dy)
        && COMPACT_AIM.contains(&c.daim);
    // Masked, every small field costs 1 byte after the head; compact, 2 bytes carry all three.
    let masked_fields = [c.dx != 0, c.dy != 0, c.daim != 0]
        .iter()
        .filter(|b| **b)
        .count();
    (fits && masked_fields >= 2).then(|| {
        (c.dx + 64) as u32 | ((c.dy + 64) as u32) << 7 | ((i32::from(c.daim) + 32) as u32) << 14
    })
}

fn bad(what: &'static str) -> DecodeError {
    DecodeError::Other(what)
}

fn u16_fixed<D: Decoder>(d: &mut D) -> Result<u16, DecodeError> {
    Ok(u16::from_le_bytes(<[u8; 2]>::decode(d)?))
}

fn u32_fixed<D: Decoder>(d: &mut D) -> Result<u32, DecodeError> {
    Ok(u32::from_le_bytes(<[u8; 4]>::decode(d)?))
}

/// The gap from the previous id of a sorted list (the first gap is the id itself).
fn gap(prev: u32, id: NetId) -> Result<u32, EncodeError> {
    match id.0.checked_sub(prev) {
        Some(g) if g > 0 => Ok(g),
        _ => Err(EncodeError::Other(
            "snapshot lists must be sorted by id, without repeats or id 0",
        )),
    }
}

fn next_id(prev: u32, gap: u32) -> Result<u32, DecodeError> {
    if gap == 0 {
        return Err(bad("id gap of 0"));
    }
    prev.checked_add(gap).ok_or_else(|| bad("id overflow"))
}

fn count<D: Decoder, T>(d: &mut D) -> Result<usize, DecodeError> {
    let n = u32::decode(d)? as usize;
    // Charges the decoder's size limit before allocating, so a forged count cannot allocate.
    d.claim_container_read::<T>(n)?;
    Ok(n)
}

impl Encode for SnapshotHeader {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        self.tick.0.to_le_bytes().encode(e)?;
        let age: u8 = match self.baseline {
            None => 0,
            Some(b) => u8::try_from(self.tick.since(b))
                .ok()
                .filter(|a| *a > 0)
                .ok_or(EncodeError::Other("a baseline must be 1 to 255 ticks old"))?,
        };
        age.encode(e)?;
        self.last_input_seq.encode(e)
    }
}

impl<C> Decode<C> for SnapshotHeader {
    fn decode<D: Decoder<Context = C>>(d: &mut D) -> Result<Self, DecodeError> {
        let tick = Tick(u32_fixed(d)?);
        let age = u8::decode(d)?;
        Ok(SnapshotHeader {
            tick,
            baseline: (age > 0).then(|| tick.minus(u32::from(age))),
            last_input_seq: u32::decode(d)?,
        })
    }
}
bincode::impl_borrow_decode!(SnapshotHeader);

fn encode_state<E: Encoder>(s: &EntityState, e: &mut E) -> Result<(), EncodeError> {
    match s {
        EntityState::Player(p) => {
            KIND_PLAYER.encode(e)?;
            p.x.to_le_bytes().encode(e)?;
            p.y.to_le_bytes().encode(e)?;
            p.aim.to_le_bytes().encode(e)?;
            p.hp.encode(e)?;
            p.score.encode(e)
        }
        EntityState::Projectile(p) => {
            KIND_PROJECTILE.encode(e)?;
            p.x.to_le_bytes().encode(e)?;
            p.y.to_le_bytes().encode(e)?;
            p.vx.encode(e)?;
            p.vy.encode(e)?;
            p.born.0.to_le_bytes().encode(e)?;
            p.owner.0.encode(e)
        }
    }
}

fn decode_state<D: Decoder>(d: &mut D) -> Result<EntityState, DecodeError> {
    match u8::decode(d)? {
        KIND_PLAYER => Ok(EntityState::Player(PlayerState {
            x: u16_fixed(d)?,
            y: u16_fixed(d)?,
            aim: u16_fixed(d)?,
            hp: u8::decode(d)?,
            score: u32::decode(d)?,
        })),
        KIND_PROJECTILE => Ok(EntityState::Projectile(ProjectileState {
            x: u16_fixed(d)?,
            y: u16_fixed(d)?,
            vx: i16::decode(d)?,
            vy: i16::decode(d)?,
            born: Tick(u32_fixed(d)?),
            owner: NetId(u32::decode(d)?),
        })),
        _ => Err(bad("unknown entity kind")),
    }
}

/// Most bytes a masked change's fields take: dx and dy as i32 varints (5 each), daim as an i16
/// varint (3), hp (1), score as a u32 varint (5).
const MAX_CHANGE_FIELD_BYTES: usize = 19;

/// Writes bincode's standard unsigned varint of `v` (see `docs/PROTOCOL.md`) through `push`:
/// the hot path of snapshot building, where a call into bincode per field costs more than the
/// field. The golden-byte and round-trip tests hold it to bincode's own encoding.
fn varint(v: u64, push: &mut impl FnMut(&[u8])) {
    if v < 251 {
        push(&[v as u8]);
    } else if v <= u64::from(u16::MAX) {
        push(&[0xFB]);
        push(&(v as u16).to_le_bytes());
    } else if v <= u64::from(u32::MAX) {
        push(&[0xFC]);
        push(&(v as u32).to_le_bytes());
    } else {
        push(&[0xFD]);
        push(&v.to_le_bytes());
    }
}

/// bincode's zigzag mapping of a signed value before its varint.
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Appends a varint to a buffer.
fn varint_vec(v: u64, out: &mut Vec<u8>) {
    varint(v, &mut |b| out.extend_from_slice(b));
}

/// Encodes a field's varint into `bytes` at `at` and advances `at`.
fn put(v: u64, bytes: &mut [u8], at: &mut usize) {
    // MAX_CHANGE_FIELD_BYTES covers every field at its longest.
    varint(v, &mut |b| {
        bytes[*at..*at + b.len()].copy_from_slice(b);
        *at += b.len();
    });
}

/// One player's change record without its id gap: computed once per player and baseline, then
/// written into the body of every client that needs it (the gap differs per client).
#[derive(Clone, Copy, Debug)]
pub struct EncodedChange {
    /// Compact: payload bits 16..19. Masked: the field mask.
    first: u8,
    compact: bool,
    len: u8,
    /// Compact: payload bits 0..15 (little-endian). Masked: the fields.
    bytes: [u8; MAX_CHANGE_FIELD_BYTES],
}

impl EncodedChange {
    /// Encodes a player delta in whichever form is shorter.
    #[must_use]
    pub fn new(c: &PlayerDelta) -> EncodedChange {
        let mut bytes = [0u8; MAX_CHANGE_FIELD_BYTES];
        if let Some(p) = compact_payload(c) {
            bytes[..2].copy_from_slice(&((p & 0xFFFF) as u16).to_le_bytes());
            return EncodedChange {
                first: (p >> 16) as u8,
                compact: true,
                len: 2,
                bytes,
            };
        }
        let (mut mask, mut at) = (0, 0);
        if c.dx != 0 {
            put(zigzag(i64::from(c.dx)), &mut bytes, &mut at);
            mask |= MASK_X;
        }
        if c.dy != 0 {
            put(zigzag(i64::from(c.dy)), &mut bytes, &mut at);
            mask |= MASK_Y;
        }
        if c.daim != 0 {
            put(zigzag(i64::from(c.daim)), &mut bytes, &mut at);
            mask |= MASK_AIM;
        }
        if let Some(hp) = c.hp {
            // A u8 is written as is, not as a varint.
            bytes[at] = hp;
            at += 1;
            mask |= MASK_HP;
        }
        if let Some(score) = c.score {
            put(u64::from(score), &mut bytes, &mut at);
            mask |= MASK_SCORE;
        }
        EncodedChange {
            first: mask,
            compact: false,
            len: at as u8,
            bytes,
        }
    }
}

/// Builds a snapshot body from its parts in id order, so that a server can assemble each
/// client's body from records it encoded once ([`EncodedChange`]). The bytes are identical to
/// encoding the equivalent [`SnapshotBody`].
#[derive(Debug, Default)]
pub struct BodyWriter {
    created: Vec<u8>,
    changed: Vec<u8>,
    removed: Vec<u8>,
    counts: [u32; 3],
    prev: [u32; 3],
}

impl BodyWriter {
    /// Empties the writer, keeping its buffers.
    pub fn clear(&mut self) {
        self.created.clear();
        self.changed.clear();
        self.removed.clear();
        self.counts = [0; 3];
        self.prev = [0; 3];
    }

    /// The gap from the previous id of list `list`.
    ///
    /// # Panics
    /// If ids are not strictly increasing within a list (a bug in the caller's merge walk).
    fn gap(&mut self, list: usize, id: NetId) -> u32 {
        let g = gap(self.prev[list], id).expect("snapshot lists are written in id order");
        self.prev[list] = id.0;
        self.counts[list] += 1;
        g
    }

    /// Adds an entity to `created`.
    pub fn created(&mut self, id: NetId, state: &EntityState) {
        let g = self.gap(0, id);
        varint_vec(u64::from(g), &mut self.created);
        super::encode_into(&StateRef(state), &mut self.created);
    }

    /// Adds a player change to `changed`.
    pub fn changed(&mut self, id: NetId, c: &EncodedChange) {
        let g = self.gap(1, id);
        let out = &mut self.changed;
        let (flag, shift, max) = if c.compact {
            (COMPACT_FLAG, COMPACT_GAP_SHIFT, COMPACT_MAX_GAP)
        } else {
            (0, MASKED_GAP_SHIFT, MASKED_MAX_GAP)
        };
        let inline = if g <= max { g as u8 } else { 0 };
        out.push(flag | inline << shift | c.first);
        if inline == 0 {
            varint_vec(u64::from(g), out);
        }
        out.extend_from_slice(&c.bytes[..usize::from(c.len)]);
    }

    /// Adds an entity to `removed`.
    pub fn removed(&mut self, id: NetId) {
        let g = self.gap(2, id);
        varint_vec(u64::from(g), &mut self.removed);
    }

    /// Appends the finished body, with `checksum`, to `out`.
    pub fn finish(&self, checksum: u32, out: &mut Vec<u8>) {
        for (count, bytes) in self
            .counts
            .iter()
            .zip([&self.created, &self.changed, &self.removed])
        {
            varint_vec(u64::from(*count), out);
            out.extend_from_slice(bytes);
        }
        out.extend_from_slice(&checksum.to_le_bytes());
    }
}

/// Encodes an entity state (a kind byte, then its fields).
struct StateRef<'a>(&'a EntityState);

impl Encode for StateRef<'_> {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        encode_state(self.0, e)
    }
}

impl Encode for SnapshotBody {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        fn sorted(mut ids: impl Iterator<Item = NetId>) -> bool {
            let mut prev = 0;
            ids.all(|id| {
                let ok = id.0 > prev;
                prev = id.0;
                ok
            })
        }
        if !sorted(self.created.iter().map(|u| u.id))
            || !sorted(self.changed.iter().map(|c| c.id))
            || !sorted(self.removed.iter().copied())
        {
            return Err(EncodeError::Other(
                "snapshot lists must be sorted by id, without repeats or id 0",
            ));
        }
        let mut w = BodyWriter::default();
        for u in &self.created {
            w.created(u.id, &u.state);
        }
        for c in &self.changed {
            w.changed(c.id, &EncodedChange::new(c));
        }
        for id in &self.removed {
            w.removed(*id);
        }
        let mut bytes = Vec::new();
        w.finish(self.checksum, &mut bytes);
        e.writer().write(&bytes)
    }
}

impl<C> Decode<C> for SnapshotBody {
    fn decode<D: Decoder<Context = C>>(d: &mut D) -> Result<Self, DecodeError> {
        let n = count::<_, EntityUpdate>(d)?;
        let mut created = Vec::with_capacity(n);
        let mut prev = 0;
        for _ in 0..n {
            prev = next_id(prev, u32::decode(d)?)?;
            created.push(EntityUpdate {
                id: NetId(prev),
                state: decode_state(d)?,
            });
        }

        let n = count::<_, PlayerDelta>(d)?;
        let mut changed = Vec::with_capacity(n);
        let mut prev = 0;
        for _ in 0..n {
            let head = u8::decode(d)?;
            if head & COMPACT_FLAG != 0 {
                let inline = u32::from((head & !COMPACT_FLAG) >> COMPACT_GAP_SHIFT);
                let g = if inline == 0 { u32::decode(d)? } else { inline };
                prev = next_id(prev, g)?;
                let low = u16::from_le_bytes(<[u8; 2]>::decode(d)?);
                let p = u32::from(head & 0x0F) << 16 | u32::from(low);
                changed.push(PlayerDelta {
                    id: NetId(prev),
                    dx: (p & 0x7F) as i32 - 64,
                    dy: ((p >> 7) & 0x7F) as i32 - 64,
                    daim: ((p >> 14) & 0x3F) as i16 - 32,
                    hp: None,
                    score: None,
                });
                continue;
            }
            let mask = head & MASK_ALL;
            let inline = u32::from(head >> MASKED_GAP_SHIFT);
            let g = if inline == 0 { u32::decode(d)? } else { inline };
            prev = next_id(prev, g)?;
            let mut c = PlayerDelta {
                id: NetId(prev),
                ..PlayerDelta::default()
            };
            if mask & MASK_X != 0 {
                c.dx = i32::decode(d)?;
            }
            if mask & MASK_Y != 0 {
                c.dy = i32::decode(d)?;
            }
            if mask & MASK_AIM != 0 {
                c.daim = i16::decode(d)?;
            }
            if mask & MASK_HP != 0 {
                c.hp = Some(u8::decode(d)?);
            }
            if mask & MASK_SCORE != 0 {
                c.score = Some(u32::decode(d)?);
            }
            changed.push(c);
        }

        let n = count::<_, NetId>(d)?;
        let mut removed = Vec::with_capacity(n);
        let mut prev = 0;
        for _ in 0..n {
            prev = next_id(prev, u32::decode(d)?)?;
            removed.push(NetId(prev));
        }
        Ok(SnapshotBody {
            created,
            changed,
            removed,
            checksum: u32_fixed(d)?,
        })
    }
}
bincode::impl_borrow_decode!(SnapshotBody);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_varints_match_bincode() {
        let edges = [
            0u64,
            1,
            250,
            251,
            255,
            65_535,
            65_536,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ];
        for v in edges {
            let mut ours = Vec::new();
            varint_vec(v, &mut ours);
            let mut theirs = Vec::new();
            crate::codec::encode_into(&v, &mut theirs);
            assert_eq!(ours, theirs, "u64 {v}");
        }
        for v in [
            0i32,
            1,
            -1,
            62,
            -63,
            125,
            -126,
            40_000,
            -40_000,
            i32::MAX,
            i32::MIN,
        ] {
            let mut ours = Vec::new();
            varint_vec(zigzag(i64::from(v)), &mut ours);
            let mut theirs = Vec::new();
            crate::codec::encode_into(&v, &mut theirs);
            assert_eq!(ours, theirs, "i32 {v}");
        }
    }
}
