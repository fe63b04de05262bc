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

impl Encode for SnapshotBody {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        let len = |n: usize| u32::try_from(n).map_err(|_| EncodeError::Other("list too long"));

        len(self.created.len())?.encode(e)?;
        let mut prev = 0;
        for u in &self.created {
            gap(prev, u.id)?.encode(e)?;
            prev = u.id.0;
            encode_state(&u.state, e)?;
        }

        len(self.changed.len())?.encode(e)?;
        let mut prev = 0;
        for c in &self.changed {
            let g = gap(prev, c.id)?;
            prev = c.id.0;
            if let Some(p) = compact_payload(c) {
                let inline = if g <= COMPACT_MAX_GAP { g as u8 } else { 0 };
                (COMPACT_FLAG | inline << COMPACT_GAP_SHIFT | (p >> 16) as u8).encode(e)?;
                if inline == 0 {
                    g.encode(e)?;
                }
                ((p & 0xFFFF) as u16).to_le_bytes().encode(e)?;
                continue;
            }
            let mask = (if c.dx != 0 { MASK_X } else { 0 })
                | (if c.dy != 0 { MASK_Y } else { 0 })
                | (if c.daim != 0 { MASK_AIM } else { 0 })
                | (if c.hp.is_some() { MASK_HP } else { 0 })
                | (if c.score.is_some() { MASK_SCORE } else { 0 });
            let inline = if g <= MASKED_MAX_GAP { g as u8 } else { 0 };
            (mask | inline << MASKED_GAP_SHIFT).encode(e)?;
            if inline == 0 {
                g.encode(e)?;
            }
            if c.dx != 0 {
                c.dx.encode(e)?;
            }
            if c.dy != 0 {
                c.dy.encode(e)?;
            }
            if c.daim != 0 {
                c.daim.encode(e)?;
            }
            if let Some(hp) = c.hp {
                hp.encode(e)?;
            }
            if let Some(score) = c.score {
                score.encode(e)?;
            }
        }

        len(self.removed.len())?.encode(e)?;
        let mut prev = 0;
        for id in &self.removed {
            gap(prev, *id)?.encode(e)?;
            prev = id.0;
        }
        self.checksum.to_le_bytes().encode(e)
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
