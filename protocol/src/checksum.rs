//! Checksum of a client's view of the world.
//!
//! Each entity hashes to a `u32` with MurmurHash3's 32-bit mixing over eight words: for a player
//! the id, 0, x, y, aim, hp, score, 0; for a projectile the id, 1, x, y, vx and vy (as 16-bit
//! two's complement), born, owner. The view
//! checksum is the wrapping sum of its entities' hashes, so it does not depend on order and the
//! server can hash each entity once per tick whatever the number of clients. Everything is 32-bit
//! integer arithmetic so a JavaScript client can reproduce it with `Math.imul`.

use crate::msg::{EntityState, NetId};

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
    let words = match s {
        EntityState::Player(p) => [
            id.0,
            0,
            u32::from(p.x),
            u32::from(p.y),
            u32::from(p.aim),
            u32::from(p.hp),
            p.score,
            0,
        ],
        EntityState::Projectile(p) => [
            id.0,
            1,
            u32::from(p.x),
            u32::from(p.y),
            u32::from(p.vx as u16),
            u32::from(p.vy as u16),
            p.born.0,
            p.owner.0,
        ],
    };
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
    use crate::msg::{PlayerState, ProjectileState};
    use crate::tick::Tick;

    fn player(x: u16) -> EntityState {
        EntityState::Player(PlayerState {
            x,
            y: 8,
            aim: 256,
            hp: 100,
            score: 1,
        })
    }

    #[test]
    fn known_values_pin_the_algorithm() {
        // Pinned so that other-language clients can test against the same numbers.
        assert_eq!(entity_hash(NetId(1), &player(4)), PLAYER_VECTOR);
        let proj = EntityState::Projectile(ProjectileState {
            x: 400,
            y: 800,
            vx: -120,
            vy: 3,
            born: Tick(77),
            owner: NetId(1),
        });
        assert_eq!(entity_hash(NetId(9), &proj), PROJECTILE_VECTOR);
    }

    const PLAYER_VECTOR: u32 = 0xfd80_8e73;
    const PROJECTILE_VECTOR: u32 = 0xaf55_4b5b;

    #[test]
    fn order_independent_and_sensitive_to_every_field() {
        let a = (NetId(1), player(4));
        let b = (NetId(2), player(12));
        let ab = view_checksum([(a.0, &a.1), (b.0, &b.1)]);
        let ba = view_checksum([(b.0, &b.1), (a.0, &a.1)]);
        assert_eq!(ab, ba);
        let base = entity_hash(NetId(1), &player(4));
        let EntityState::Player(p) = player(4) else {
            unreachable!()
        };
        let variants = [
            PlayerState { x: 5, ..p },
            PlayerState { y: 9, ..p },
            PlayerState { aim: 257, ..p },
            PlayerState { hp: 99, ..p },
            PlayerState { score: 2, ..p },
        ];
        for v in variants {
            assert_ne!(
                entity_hash(NetId(1), &EntityState::Player(v)),
                base,
                "{v:?}"
            );
        }
        assert_ne!(entity_hash(NetId(2), &player(4)), base);
    }
}
