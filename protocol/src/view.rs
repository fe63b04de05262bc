//! A client's replica of the world, and how snapshots are applied to it.
//!
//! The server sends each snapshot as a delta against the latest tick the client acknowledged,
//! which may be older than the latest tick the client has applied (acks are in flight). So the
//! [`Replica`] keeps the views of recent ticks and applies each delta to the view of its
//! baseline. Views older than the baseline of the newest delta applied can never be a baseline
//! again (the server's acknowledged tick only moves forward) and are dropped. A full snapshot
//! drops nothing: acks sent before it arrived may still become baselines.

use crate::checksum::view_checksum;
use crate::delta::apply_player_delta;
use crate::msg::{EntityState, NetId, SnapshotBody, SnapshotHeader};
use crate::tick::Tick;
use std::collections::{BTreeMap, VecDeque};
use thiserror::Error;

/// Most views a [`Replica`] keeps; a baseline older than this is treated as missing.
pub const MAX_REPLICA_HISTORY: usize = 128;

/// The world as one client sees it at one tick.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    /// The tick of this view.
    pub tick: Tick,
    /// Every entity in the view, by id.
    pub entities: BTreeMap<NetId, EntityState>,
}

impl View {
    /// [`view_checksum`] of this view.
    #[must_use]
    pub fn checksum(&self) -> u32 {
        view_checksum(self.entities.iter().map(|(id, s)| (*id, s)))
    }
}

/// Why a snapshot could not be applied: each means the client and server disagree.
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
    /// A created entity already existed in the baseline.
    #[error("created entity {0:?} already exists")]
    DuplicateCreate(NetId),
    /// A changed or removed entity did not exist in the baseline.
    #[error("entity {0:?} is not in the baseline")]
    UnknownEntity(NetId),
    /// A delta named an entity that is not a player, or moved it out of range.
    #[error("delta for entity {0:?} does not apply")]
    BadDelta(NetId),
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
    /// True if the error means the replica's content differs from the server's view (a desync),
    /// as opposed to a snapshot that could not be placed.
    #[must_use]
    pub fn is_desync(&self) -> bool {
        !matches!(
            self,
            ApplyError::MissingBaseline { .. } | ApplyError::OutOfOrder { .. }
        )
    }
}

/// The recent views of one client, newest last.
#[derive(Debug, Default)]
pub struct Replica {
    views: VecDeque<View>,
}

impl Replica {
    /// An empty replica; the first snapshot it can apply is a full one.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest view, if any snapshot has been applied.
    #[must_use]
    pub fn latest(&self) -> Option<&View> {
        self.views.back()
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

    /// Applies a snapshot and verifies its checksum; on success the new view is the latest.
    /// On error the replica is unchanged.
    pub fn apply(
        &mut self,
        header: &SnapshotHeader,
        body: &SnapshotBody,
    ) -> Result<&View, ApplyError> {
        if let Some(newest) = self.views.back()
            && header.tick <= newest.tick
        {
            return Err(ApplyError::OutOfOrder {
                tick: header.tick,
                newest: newest.tick,
            });
        }
        let mut view = match header.baseline {
            None => View::default(),
            Some(baseline) => self
                .views
                .iter()
                .find(|v| v.tick == baseline)
                .cloned()
                .ok_or(ApplyError::MissingBaseline { baseline })?,
        };
        view.tick = header.tick;
        for id in &body.removed {
            view.entities
                .remove(id)
                .ok_or(ApplyError::UnknownEntity(*id))?;
        }
        for d in &body.changed {
            let slot = view
                .entities
                .get_mut(&d.id)
                .ok_or(ApplyError::UnknownEntity(d.id))?;
            let EntityState::Player(p) = slot else {
                return Err(ApplyError::BadDelta(d.id));
            };
            *p = apply_player_delta(p, d).ok_or(ApplyError::BadDelta(d.id))?;
        }
        for u in &body.created {
            if view.entities.insert(u.id, u.state).is_some() {
                return Err(ApplyError::DuplicateCreate(u.id));
            }
        }
        let actual = view.checksum();
        if actual != body.checksum {
            return Err(ApplyError::ChecksumMismatch {
                tick: header.tick,
                expected: body.checksum,
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
    use crate::delta::player_delta;
    use crate::msg::{EntityUpdate, PlayerState};

    fn st(x: u16) -> EntityState {
        EntityState::Player(PlayerState {
            x,
            y: 0,
            aim: 0,
            hp: 100,
            score: 0,
        })
    }

    fn p(x: u16) -> PlayerState {
        let EntityState::Player(p) = st(x) else {
            unreachable!()
        };
        p
    }

    fn body(
        created: Vec<EntityUpdate>,
        changed: Vec<crate::msg::PlayerDelta>,
        removed: Vec<NetId>,
        expected: &BTreeMap<NetId, EntityState>,
    ) -> SnapshotBody {
        SnapshotBody {
            created,
            changed,
            removed,
            checksum: view_checksum(expected.iter().map(|(i, s)| (*i, s))),
        }
    }

    fn header(tick: u32, baseline: Option<u32>) -> SnapshotHeader {
        SnapshotHeader {
            tick: Tick(tick),
            baseline: baseline.map(Tick),
            last_input_seq: 0,
        }
    }

    fn delta(id: u32, from: u16, to: u16) -> crate::msg::PlayerDelta {
        player_delta(NetId(id), &p(from), &p(to)).expect("differs")
    }

    #[test]
    fn full_then_deltas_against_older_baselines() {
        let mut r = Replica::new();
        let mut world = BTreeMap::from([(NetId(1), st(10)), (NetId(2), st(20))]);
        let created: Vec<_> = world
            .iter()
            .map(|(id, s)| EntityUpdate { id: *id, state: *s })
            .collect();
        r.apply(&header(10, None), &body(created, vec![], vec![], &world))
            .expect("full snapshot applies");

        // Tick 11 against 10: entity 1 moves.
        let w11 = BTreeMap::from([(NetId(1), st(15)), (NetId(2), st(20))]);
        let b = body(vec![], vec![delta(1, 10, 15)], vec![], &w11);
        r.apply(&header(11, Some(10)), &b).expect("delta applies");

        // Tick 12 still against 10 (the ack for 11 is in flight): 1 moves again, 2 goes, 3 comes.
        world = BTreeMap::from([(NetId(1), st(17)), (NetId(3), st(30))]);
        let b = body(
            vec![EntityUpdate {
                id: NetId(3),
                state: st(30),
            }],
            vec![delta(1, 10, 17)],
            vec![NetId(2)],
            &world,
        );
        let v = r.apply(&header(12, Some(10)), &b).expect("delta applies");
        assert_eq!(v.entities, world);
        assert_eq!(r.history_len(), 3);

        // A delta against 12 prunes 10 and 11.
        let b = body(vec![], vec![], vec![], &world);
        r.apply(&header(13, Some(12)), &b).expect("delta applies");
        assert_eq!(r.history_len(), 2);
        assert_eq!(
            r.apply(&header(14, Some(10)), &b),
            Err(ApplyError::MissingBaseline { baseline: Tick(10) })
        );
    }

    #[test]
    fn inconsistent_snapshots_are_detected_and_leave_the_replica_unchanged() {
        let mut r = Replica::new();
        let world = BTreeMap::from([(NetId(1), st(10))]);
        let created = vec![EntityUpdate {
            id: NetId(1),
            state: st(10),
        }];
        r.apply(
            &header(1, None),
            &body(created.clone(), vec![], vec![], &world),
        )
        .expect("applies");
        let before = r.latest().cloned();

        let mut bad = body(vec![], vec![], vec![], &world);
        bad.checksum ^= 1;
        let err = r.apply(&header(2, Some(1)), &bad).expect_err("mismatch");
        assert!(err.is_desync());
        assert!(matches!(err, ApplyError::ChecksumMismatch { .. }));

        let dup = body(created, vec![], vec![], &world);
        assert_eq!(
            r.apply(&header(2, Some(1)), &dup),
            Err(ApplyError::DuplicateCreate(NetId(1)))
        );
        let unknown = body(vec![], vec![], vec![NetId(9)], &world);
        assert_eq!(
            r.apply(&header(2, Some(1)), &unknown),
            Err(ApplyError::UnknownEntity(NetId(9)))
        );
        let off_map = body(
            vec![],
            vec![crate::msg::PlayerDelta {
                id: NetId(1),
                dx: -100,
                ..Default::default()
            }],
            vec![],
            &world,
        );
        assert_eq!(
            r.apply(&header(2, Some(1)), &off_map),
            Err(ApplyError::BadDelta(NetId(1)))
        );
        let same_tick = body(vec![], vec![], vec![], &world);
        assert!(
            !r.apply(&header(1, Some(1)), &same_tick)
                .expect_err("out of order")
                .is_desync()
        );
        assert_eq!(r.latest().cloned(), before);
    }
}
