//! Checksum of a client's view of the world.
//!
//! Each entity hashes to a `u32` with MurmurHash3's 32-bit mixing over eight words: the id, the
//! kind (0 player, 1 projectile), the IEEE-754 bits of x, y and aim, hp, score and owner. The view
//! checksum is the wrapping sum of its entities' hashes, so it does not depend on order and the
//! server can hash each entity once per tick whatever the number of clients. Everything is 32-bit
//! integer arithmetic so a JavaScript client can reproduce it with `Math.imul`.

use crate::msg::{EntityKind, EntityState, NetId};

const SEED: u32 = 0x7469_636b;
const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

fn mix(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

fn finish(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Hash of one entity's id and state.
#[must_use]
pub fn entity_hash(id: NetId, s: &EntityState) -> u32 {
    let kind = match s.kind {
        EntityKind::Player => 0,
        EntityKind::Projectile => 1,
    };
    let words = [
        id.0,
        kind,
        s.x.to_bits(),
        s.y.to_bits(),
        s.aim.to_bits(),
        u32::from(s.hp),
        s.score,
        s.owner.0,
    ];
    let h = words.iter().fold(SEED, |h, &w| mix(h, w));
    finish(h ^ 32)
}

/// Checksum of a whole view: the wrapping sum of its entities' hashes.
pub fn view_checksum<'a>(entities: impl IntoIterator<Item = (NetId, &'a EntityState)>) -> u32 {
    entities
        .into_iter()
        .fold(0u32, |acc, (id, s)| acc.wrapping_add(entity_hash(id, s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(x: f32) -> EntityState {
        EntityState {
            kind: EntityKind::Player,
            x,
            y: 2.0,
            aim: 0.5,
            hp: 100,
            score: 1,
            owner: NetId(1),
        }
    }

    #[test]
    fn known_value_pins_the_algorithm() {
        // Pinned so that other-language clients can test against the same number.
        assert_eq!(entity_hash(NetId(1), &state(1.0)), 0x83c0_9b0d);
    }

    #[test]
    fn order_independent_and_sensitive_to_every_field() {
        let a = (NetId(1), state(1.0));
        let b = (NetId(2), state(3.0));
        let ab = view_checksum([(a.0, &a.1), (b.0, &b.1)]);
        let ba = view_checksum([(b.0, &b.1), (a.0, &a.1)]);
        assert_eq!(ab, ba);
        let base = entity_hash(NetId(1), &state(1.0));
        let variants = [
            EntityState {
                kind: EntityKind::Projectile,
                ..state(1.0)
            },
            state(1.0001),
            EntityState {
                y: 2.5,
                ..state(1.0)
            },
            EntityState {
                aim: 0.6,
                ..state(1.0)
            },
            EntityState {
                hp: 99,
                ..state(1.0)
            },
            EntityState {
                score: 2,
                ..state(1.0)
            },
            EntityState {
                owner: NetId(9),
                ..state(1.0)
            },
        ];
        for v in variants {
            assert_ne!(entity_hash(NetId(1), &v), base, "{v:?}");
        }
        assert_ne!(entity_hash(NetId(2), &state(1.0)), base);
    }
}
