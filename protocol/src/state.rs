//! Replicated entity state in the schema's words, and the checksum of a view.
//!
//! The checksum of a view is the wrapping sum of its entities' hashes, so it does not depend on
//! order and the server can compute it once per entity per tick. An entity's hash is a
//! MurmurHash3-style mix of the 32-bit words `id, mask, word count, words...` (each word taken
//! modulo 2^32), seeded with `0x7469636b`; `docs/PROTOCOL.md` spells it out and the JavaScript
//! SDK computes the same.

use crate::msg::NetId;
use crate::schema::{Field, GameSchema, Replicate};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// An entity's words: up to eight inline (most entities have fewer), so a
/// client's views, rebuilt every snapshot, allocate nothing per entity.
pub type Words = SmallVec<[i64; 8]>;

/// One entity's replicated state: which components it has (bit `i` for the schema's component
/// `i`) and their words, in component order.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct EntityState {
    /// Components present.
    pub mask: u32,
    /// The components' words.
    pub words: Words,
}

impl EntityState {
    /// [`entity_hash`] of this state under `id`.
    #[must_use]
    pub fn hash(&self, id: NetId) -> u32 {
        entity_hash(id, self.mask, &self.words)
    }

    /// The words of component `index`, if the entity has it.
    #[must_use]
    pub fn component_words<'a>(&'a self, schema: &GameSchema, index: usize) -> Option<&'a [i64]> {
        if index >= 32 || self.mask & (1 << index) == 0 {
            return None;
        }
        let at: usize = schema
            .components
            .iter()
            .take(index)
            .enumerate()
            .filter(|(i, _)| self.mask & (1 << i) != 0)
            .map(|(_, c)| c.words())
            .sum();
        let len = schema.components[index].words();
        self.words.get(at..at + len)
    }

    /// Component `C` of this entity, typed, if the entity has it.
    #[must_use]
    pub fn get<C: Replicate>(&self, schema: &GameSchema) -> Option<C> {
        let index = schema.component_index(C::NAME)?;
        self.component_words(schema, index).map(C::read)
    }
}

/// The fields of the components in `mask`, in word order.
pub fn fields_of(schema: &GameSchema, mask: u32) -> impl Iterator<Item = &Field> {
    schema
        .components
        .iter()
        .enumerate()
        .filter(move |(i, _)| mask & (1 << i) != 0)
        .flat_map(|(_, c)| c.fields.iter())
}

/// Words of an entity with the components in `mask`.
#[must_use]
pub fn words_of(schema: &GameSchema, mask: u32) -> usize {
    fields_of(schema, mask).map(Field::words).sum()
}

const SEED: u32 = 0x7469_636b;
const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline]
fn mix(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline]
fn finish(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The hash of one entity: id, component mask and words.
#[must_use]
pub fn entity_hash(id: NetId, mask: u32, words: &[i64]) -> u32 {
    let mut h = mix(mix(mix(SEED, id.0), mask), words.len() as u32);
    for &w in words {
        h = mix(h, w as u32);
    }
    finish(h)
}

/// The checksum of a view: the wrapping sum of its entities' hashes.
pub fn view_checksum<'a>(entities: impl IntoIterator<Item = (&'a NetId, &'a EntityState)>) -> u32 {
    entities
        .into_iter()
        .fold(0u32, |acc, (id, s)| acc.wrapping_add(s.hash(*id)))
}

/// A view's entities, sorted by id. A sorted vector rather than a tree: a client clones or
/// rebuilds a view for every snapshot, and a vector is one allocation and one copy where a
/// tree is one per node.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Entities(Vec<(NetId, EntityState)>);

impl Entities {
    /// No entities.
    #[must_use]
    pub fn new() -> Entities {
        Entities::default()
    }

    /// Number of entities.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, id: NetId) -> Result<usize, usize> {
        self.0.binary_search_by_key(&id, |(i, _)| *i)
    }

    /// The state of entity `id`.
    #[must_use]
    pub fn get(&self, id: &NetId) -> Option<&EntityState> {
        self.find(*id).ok().map(|i| &self.0[i].1)
    }

    /// The state of entity `id`, to change it.
    pub fn get_mut(&mut self, id: &NetId) -> Option<&mut EntityState> {
        self.find(*id).ok().map(|i| &mut self.0[i].1)
    }

    /// True if entity `id` is in the view.
    #[must_use]
    pub fn contains_key(&self, id: &NetId) -> bool {
        self.find(*id).is_ok()
    }

    /// Puts an entity in (replacing and returning its old state, if any). Linear in the view's
    /// size: for building views one by one; a snapshot is applied in one merge.
    pub fn insert(&mut self, id: NetId, state: EntityState) -> Option<EntityState> {
        match self.find(id) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, state)),
            Err(i) => {
                self.0.insert(i, (id, state));
                None
            }
        }
    }

    /// Takes an entity out. Linear in the view's size.
    pub fn remove(&mut self, id: &NetId) -> Option<EntityState> {
        self.find(*id).ok().map(|i| self.0.remove(i).1)
    }

    /// The entities in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&NetId, &EntityState)> {
        self.0.iter().map(|(id, s)| (id, s))
    }

    /// The ids in order.
    pub fn keys(&self) -> impl Iterator<Item = &NetId> {
        self.0.iter().map(|(id, _)| id)
    }

    /// The states in id order.
    pub fn values(&self) -> impl Iterator<Item = &EntityState> {
        self.0.iter().map(|(_, s)| s)
    }

    /// The entries, sorted by id.
    #[must_use]
    pub fn as_slice(&self) -> &[(NetId, EntityState)] {
        &self.0
    }

    /// Takes entries already sorted by id, without repeats (checked in debug builds).
    #[must_use]
    pub fn from_sorted(entries: Vec<(NetId, EntityState)>) -> Entities {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        Entities(entries)
    }
}

impl FromIterator<(NetId, EntityState)> for Entities {
    /// Sorts by id; of repeated ids the last wins.
    fn from_iter<T: IntoIterator<Item = (NetId, EntityState)>>(iter: T) -> Self {
        let mut v: Vec<_> = iter.into_iter().collect();
        v.reverse();
        v.sort_by_key(|(id, _)| *id);
        v.dedup_by_key(|(id, _)| *id);
        Entities(v)
    }
}

impl<'a> IntoIterator for &'a Entities {
    type Item = (&'a NetId, &'a EntityState);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (NetId, EntityState)>,
        fn(&'a (NetId, EntityState)) -> (&'a NetId, &'a EntityState),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(id, s)| (id, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ComponentSchema, Encoding};

    #[test]
    fn known_values_pin_the_hash() {
        // The JavaScript SDK's tests pin the same two values.
        assert_eq!(entity_hash(NetId(1), 1, &[4, 8, 256]), 0x76f1_a890);
        assert_eq!(
            entity_hash(NetId(9), 3, &[-120, 4_000_000_000]),
            0x8a8d_75da
        );
    }

    #[test]
    fn order_independent_and_sensitive_to_every_part() {
        let a = EntityState {
            mask: 1,
            words: [4, 8].into_iter().collect(),
        };
        let b = EntityState {
            mask: 1,
            words: [5, 8].into_iter().collect(),
        };
        let m = Entities::from_iter([(NetId(1), a.clone()), (NetId(2), b.clone())]);
        let sum = a.hash(NetId(1)).wrapping_add(b.hash(NetId(2)));
        assert_eq!(view_checksum(&m), sum);
        let base = a.hash(NetId(1));
        assert_ne!(a.hash(NetId(2)), base);
        assert_ne!(b.hash(NetId(1)), base);
        let other_mask = EntityState {
            mask: 2,
            ..a.clone()
        };
        assert_ne!(other_mask.hash(NetId(1)), base);
        let longer = EntityState {
            mask: 1,
            words: [4, 8, 0].into_iter().collect(),
        };
        assert_ne!(longer.hash(NetId(1)), base);
    }

    #[test]
    fn entities_stay_sorted_like_a_map() {
        let st = |w: i64| EntityState {
            mask: 1,
            words: [w].into_iter().collect(),
        };
        let mut e = Entities::from_iter([(NetId(5), st(1)), (NetId(2), st(2)), (NetId(5), st(3))]);
        assert_eq!(e.keys().copied().collect::<Vec<_>>(), [NetId(2), NetId(5)]);
        assert_eq!(
            e.get(&NetId(5)),
            Some(&st(3)),
            "the last of a repeated id wins"
        );
        assert_eq!(e.insert(NetId(3), st(4)), None);
        assert_eq!(e.insert(NetId(3), st(5)), Some(st(4)));
        assert_eq!(e.remove(&NetId(2)), Some(st(2)));
        assert!(e.remove(&NetId(2)).is_none());
        assert_eq!(e.len(), 2);
        assert!(e.contains_key(&NetId(3)) && !e.contains_key(&NetId(4)));
        e.get_mut(&NetId(3)).expect("there").mask = 2;
        assert_eq!(e.values().map(|s| s.mask).collect::<Vec<_>>(), [2, 1]);
    }

    #[test]
    fn component_words_follow_the_mask() {
        let schema = GameSchema {
            game: "g".into(),
            components: vec![
                ComponentSchema {
                    name: "A".into(),
                    fields: vec![crate::schema::Field::new("a", Encoding::Bool)],
                },
                ComponentSchema {
                    name: "B".into(),
                    fields: vec![
                        crate::schema::Field::new("b", Encoding::VarInt),
                        crate::schema::Field::new("c", Encoding::VarInt),
                    ],
                },
            ],
            ..GameSchema::default()
        };
        let s = EntityState {
            mask: 0b10,
            words: [7, 9].into_iter().collect(),
        };
        assert_eq!(s.component_words(&schema, 1), Some(&[7i64, 9][..]));
        assert_eq!(s.component_words(&schema, 0), None);
        let both = EntityState {
            mask: 0b11,
            words: [1, 7, 9].into_iter().collect(),
        };
        assert_eq!(both.component_words(&schema, 1), Some(&[7i64, 9][..]));
        assert_eq!(words_of(&schema, 0b11), 3);
        assert_eq!(fields_of(&schema, 0b10).count(), 2);
    }
}
