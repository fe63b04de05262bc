//! A client's replica of any game's world, and how snapshots are applied to it.
//!
//! The server sends each snapshot as a delta against the latest tick the client acknowledged,
//! which may be older than the latest tick the client has applied (acks are in flight). So the
//! [`Replica`] keeps the views of recent ticks and applies each body to a copy of its
//! baseline's view. Views older than the baseline of the newest delta applied can never be a
//! baseline again (the server's acknowledged tick only moves forward) and are dropped. A full
//! snapshot drops nothing: acks sent before it arrived may still become baselines.

use crate::body::{BodyError, apply_body};
use crate::msg::{NetId, SnapshotHeader};
use crate::schema::{GameSchema, Replicate};
use crate::state::{Entities, EntityState, view_checksum};
use crate::tick::Tick;
use std::collections::VecDeque;
use std::sync::Arc;
use thiserror::Error;

/// Most views a [`Replica`] keeps; a baseline older than this is treated as missing.
pub const MAX_REPLICA_HISTORY: usize = 128;

/// The world as one client sees it at one tick.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    /// The tick of this view.
    pub tick: Tick,
    /// Every entity in the view, by id.
    pub entities: Entities,
}

impl View {
    /// [`view_checksum`] of this view.
    #[must_use]
    pub fn checksum(&self) -> u32 {
        view_checksum(&self.entities)
    }
}

/// Why a snapshot could not be applied.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// The snapshot is a delta against a tick the replica does not hold.
    #[error("baseline tick {baseline} is not in the replica")]
    MissingBaseline {
        /// The baseline named by the snapshot.
        baseline: Tick,
    },
    /// The snapshot's tick is not after the newest view held.
    #[error("snapshot tick {tick} is not after {newest}")]
    OutOfOrder {
        /// The snapshot's tick.
        tick: Tick,
        /// The newest tick already applied.
        newest: Tick,
    },
    /// The body does not apply to the baseline.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The view after applying differs from the server's.
    #[error("checksum mismatch at tick {tick}: server {expected:#010x}, replica {actual:#010x}")]
    ChecksumMismatch {
        /// The snapshot's tick.
        tick: Tick,
        /// Checksum sent by the server.
        expected: u32,
        /// Checksum of the replica.
        actual: u32,
    },
}

impl ApplyError {
    /// True if the error means the replica's content differs from the server's view (a
    /// desync), as opposed to a snapshot that could not be placed.
    #[must_use]
    pub fn is_desync(&self) -> bool {
        !matches!(
            self,
            ApplyError::MissingBaseline { .. } | ApplyError::OutOfOrder { .. }
        )
    }
}

/// The recent views of one client, newest last, decoded through the game's schema.
#[derive(Debug)]
pub struct Replica {
    schema: Arc<GameSchema>,
    views: VecDeque<View>,
}

impl Replica {
    /// An empty replica of a game with this schema; the first snapshot it can apply is a
    /// full one.
    #[must_use]
    pub fn new(schema: Arc<GameSchema>) -> Self {
        Replica {
            schema,
            views: VecDeque::new(),
        }
    }

    /// The game's schema.
    #[must_use]
    pub fn schema(&self) -> &Arc<GameSchema> {
        &self.schema
    }

    /// The newest view, if any snapshot has been applied.
    #[must_use]
    pub fn latest(&self) -> Option<&View> {
        self.views.back()
    }

    /// Component `C` of entity `id` in the newest view, typed.
    #[must_use]
    pub fn get<C: Replicate>(&self, id: NetId) -> Option<C> {
        self.latest()?.entities.get(&id)?.get::<C>(&self.schema)
    }

    /// Every entity of the newest view that has component `C`, typed.
    pub fn each<C: Replicate>(&self) -> impl Iterator<Item = (NetId, C)> + '_ {
        let index = self.schema.component_index(C::NAME);
        self.latest()
            .into_iter()
            .flat_map(|v| v.entities.iter())
            .filter_map(move |(id, s): (&NetId, &EntityState)| {
                Some((*id, C::read(s.component_words(&self.schema, index?)?)))
            })
    }

    /// Number of views held.
    #[must_use]
    pub fn history_len(&self) -> usize {
        self.views.len()
    }

    /// Forgets every view, so that only a full snapshot can be applied next.
    pub fn clear(&mut self) {
        self.views.clear();
    }

    /// Applies a snapshot body and verifies its checksum; on success the new view is the
    /// latest. On error the replica is unchanged.
    pub fn apply(&mut self, header: &SnapshotHeader, body: &[u8]) -> Result<&View, ApplyError> {
        if let Some(newest) = self.views.back()
            && header.tick <= newest.tick
        {
            return Err(ApplyError::OutOfOrder {
                tick: header.tick,
                newest: newest.tick,
            });
        }
        let empty = Entities::new();
        let base = match header.baseline {
            None => &empty,
            Some(baseline) => self
                .views
                .iter()
                .find(|v| v.tick == baseline)
                .map(|v| &v.entities)
                .ok_or(ApplyError::MissingBaseline { baseline })?,
        };
        let (entities, expected) = apply_body(&self.schema, base, body)?;
        let view = View {
            tick: header.tick,
            entities,
        };
        let actual = view.checksum();
        if actual != expected {
            return Err(ApplyError::ChecksumMismatch {
                tick: header.tick,
                expected,
                actual,
            });
        }
        // The server never again uses a baseline older than this one.
        if let Some(baseline) = header.baseline {
            self.views.retain(|v| v.tick >= baseline);
        }
        if self.views.len() >= MAX_REPLICA_HISTORY {
            self.views.pop_front();
        }
        self.views.push_back(view);
        Ok(self.views.back().expect("just pushed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::write_diff;
    use crate::schema::{ComponentSchema, Encoding, Field};

    /// A typed component, as a game would declare it.
    #[derive(Debug, PartialEq)]
    struct Pos {
        x: i64,
    }

    impl Replicate for Pos {
        const NAME: &'static str = "Pos";
        fn fields() -> Vec<Field> {
            vec![Field::new("x", Encoding::UInt { max: 1000 })]
        }
        fn write(&self, out: &mut Vec<i64>) {
            out.push(self.x);
        }
        fn read(words: &[i64]) -> Self {
            Pos { x: words[0] }
        }
    }

    fn schema() -> Arc<GameSchema> {
        Arc::new(GameSchema {
            game: "t".into(),
            components: vec![
                ComponentSchema {
                    name: "Other".into(),
                    fields: vec![Field::new("v", Encoding::Bool)],
                },
                Pos::schema(),
            ],
            ..GameSchema::default()
        })
    }

    fn st(x: i64) -> EntityState {
        EntityState {
            mask: 2,
            words: [x].into_iter().collect(),
        }
    }

    fn body(s: &GameSchema, base: &Entities, cur: &Entities) -> Vec<u8> {
        let mut out = Vec::new();
        write_diff(s, base, cur, view_checksum(cur), &mut out);
        out
    }

    fn header(tick: u32, baseline: Option<u32>) -> SnapshotHeader {
        SnapshotHeader {
            tick: Tick(tick),
            baseline: baseline.map(Tick),
            last_input_seq: 0,
            input_lead: 0,
        }
    }

    #[test]
    fn full_then_deltas_against_older_baselines() {
        let s = schema();
        let mut r = Replica::new(Arc::clone(&s));
        let w10 = Entities::from_iter([(NetId(1), st(10)), (NetId(2), st(20))]);
        r.apply(&header(10, None), &body(&s, &Entities::new(), &w10))
            .expect("full snapshot applies");
        assert_eq!(r.get::<Pos>(NetId(2)), Some(Pos { x: 20 }));
        assert_eq!(r.each::<Pos>().count(), 2);

        let w11 = Entities::from_iter([(NetId(1), st(15)), (NetId(2), st(20))]);
        r.apply(&header(11, Some(10)), &body(&s, &w10, &w11))
            .expect("delta applies");
        // Tick 12 still against 10 (the ack for 11 is in flight).
        let w12 = Entities::from_iter([(NetId(1), st(17)), (NetId(3), st(30))]);
        let v = r
            .apply(&header(12, Some(10)), &body(&s, &w10, &w12))
            .expect("delta applies");
        assert_eq!(v.entities, w12);
        assert_eq!(r.history_len(), 3);
        r.apply(&header(13, Some(12)), &body(&s, &w12, &w12))
            .expect("delta applies");
        assert_eq!(r.history_len(), 2, "10 and 11 pruned");
        assert_eq!(
            r.apply(&header(14, Some(10)), &body(&s, &w10, &w12)),
            Err(ApplyError::MissingBaseline { baseline: Tick(10) })
        );
    }

    #[test]
    fn inconsistent_snapshots_are_detected_and_leave_the_replica_unchanged() {
        let s = schema();
        let mut r = Replica::new(Arc::clone(&s));
        let w1 = Entities::from_iter([(NetId(1), st(10))]);
        r.apply(&header(1, None), &body(&s, &Entities::new(), &w1))
            .expect("applies");
        let before = r.latest().cloned();
        let mut bad = body(&s, &w1, &w1);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let err = r.apply(&header(2, Some(1)), &bad).expect_err("mismatch");
        assert!(err.is_desync());
        assert!(matches!(err, ApplyError::ChecksumMismatch { .. }));
        let dup = body(&s, &Entities::new(), &w1);
        assert_eq!(
            r.apply(&header(2, Some(1)), &dup),
            Err(ApplyError::Body(BodyError::DuplicateCreate(NetId(1))))
        );
        let same_tick = body(&s, &w1, &w1);
        assert!(
            !r.apply(&header(1, Some(1)), &same_tick)
                .expect_err("out of order")
                .is_desync()
        );
        assert_eq!(r.latest().cloned(), before);
    }
}
