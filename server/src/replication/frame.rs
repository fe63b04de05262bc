//! World frames: the replicated state of every entity at one tick, their history, and the
//! delta between two of them.

use bevy_ecs::resource::Resource;
use bytes::Bytes;
use std::collections::VecDeque;
use tickwire_protocol::codec::encode_snapshot_body;
use tickwire_protocol::{EntityState, EntityUpdate, NetId, SnapshotBody, Tick, entity_hash};

/// Every replicated entity at one tick, sorted by net id.
#[derive(Debug, Default, Clone)]
pub struct WorldFrame {
    /// The tick.
    pub tick: Tick,
    /// Entities, sorted by id.
    pub entities: Vec<(NetId, EntityState)>,
    /// Wrapping sum of the entities' hashes: the checksum of a view that sees them all.
    pub checksum: u32,
}

impl WorldFrame {
    /// Sorts the entities and computes the checksum; call after filling `entities`.
    pub fn seal(&mut self) {
        self.entities.sort_unstable_by_key(|(id, _)| *id);
        self.checksum = self
            .entities
            .iter()
            .fold(0u32, |acc, (id, s)| acc.wrapping_add(entity_hash(*id, s)));
    }
}

/// True if two states are identical bit for bit (`-0.0` and `0.0` differ here, as they do in
/// the checksum).
fn same_bits(a: &EntityState, b: &EntityState) -> bool {
    a.kind == b.kind
        && a.x.to_bits() == b.x.to_bits()
        && a.y.to_bits() == b.y.to_bits()
        && a.aim.to_bits() == b.aim.to_bits()
        && a.hp == b.hp
        && a.score == b.score
        && a.owner == b.owner
}

/// Fills `out` with the changes from `base` (or from nothing) to `cur`: a merge walk over the
/// two sorted entity lists.
pub fn diff(base: Option<&WorldFrame>, cur: &WorldFrame, out: &mut SnapshotBody) {
    out.created.clear();
    out.changed.clear();
    out.removed.clear();
    out.checksum = cur.checksum;
    let empty: &[(NetId, EntityState)] = &[];
    let old = base.map_or(empty, |b| b.entities.as_slice());
    let new = cur.entities.as_slice();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some((oid, os)), Some((nid, ns))) if oid == nid => {
                if !same_bits(os, ns) {
                    out.changed.push(EntityUpdate {
                        id: *nid,
                        state: *ns,
                    });
                }
                i += 1;
                j += 1;
            }
            (Some((oid, _)), Some((nid, _))) if oid < nid => {
                out.removed.push(*oid);
                i += 1;
            }
            (Some((oid, _)), None) => {
                out.removed.push(*oid);
                i += 1;
            }
            (_, Some((nid, ns))) => {
                out.created.push(EntityUpdate {
                    id: *nid,
                    state: *ns,
                });
                j += 1;
            }
            (None, None) => unreachable!("loop condition"),
        }
    }
}

/// The frame of `tick` in a history of consecutive ticks, oldest first.
fn find_frame(history: &VecDeque<WorldFrame>, tick: Tick) -> Option<&WorldFrame> {
    let newest = history.back()?.tick;
    let age = usize::try_from(newest.since(tick)).ok()?;
    let idx = history.len().checked_sub(1 + age)?;
    history.get(idx).filter(|f| f.tick == tick)
}

/// The history of world frames and this tick's encoded snapshot bodies.
#[derive(Resource, Debug)]
pub struct Replication {
    capacity: usize,
    history: VecDeque<WorldFrame>,
    /// A frame being filled for the current tick; reuses the evicted frame's buffer.
    pending: WorldFrame,
    bodies: Vec<(Option<Tick>, Bytes)>,
    scratch: SnapshotBody,
    encode_buf: Vec<u8>,
}

impl Replication {
    /// Keeps `capacity` ticks of history.
    #[must_use]
    pub fn new(capacity: usize) -> Replication {
        Replication {
            capacity: capacity.max(1),
            history: VecDeque::with_capacity(capacity + 1),
            pending: WorldFrame::default(),
            bodies: Vec::new(),
            scratch: SnapshotBody::default(),
            encode_buf: Vec::new(),
        }
    }

    /// Starts the frame of `tick`: returns the empty entity list to fill.
    pub fn begin(&mut self, tick: Tick) -> &mut Vec<(NetId, EntityState)> {
        self.pending.tick = tick;
        self.pending.entities.clear();
        self.bodies.clear();
        &mut self.pending.entities
    }

    /// Seals the frame started by [`Replication::begin`] and makes it the newest in history.
    pub fn commit(&mut self) {
        self.pending.seal();
        let recycled = if self.history.len() >= self.capacity {
            self.history.pop_front().unwrap_or_default()
        } else {
            WorldFrame::default()
        };
        let frame = std::mem::replace(&mut self.pending, recycled);
        self.history.push_back(frame);
    }

    /// The newest frame.
    #[must_use]
    pub fn latest(&self) -> Option<&WorldFrame> {
        self.history.back()
    }

    /// The frame of `tick`, if still in history.
    #[must_use]
    pub fn frame(&self, tick: Tick) -> Option<&WorldFrame> {
        find_frame(&self.history, tick)
    }

    /// The encoded body from `baseline` (or a full snapshot for `None`) to the newest frame.
    /// Built once per distinct baseline per tick; later calls share the bytes. A baseline not
    /// in history falls back to a full snapshot, which the returned baseline reports.
    pub fn body(&mut self, baseline: Option<Tick>) -> (Option<Tick>, Bytes) {
        let baseline = baseline.filter(|b| self.frame(*b).is_some());
        if let Some((_, bytes)) = self.bodies.iter().find(|(b, _)| *b == baseline) {
            return (baseline, bytes.clone());
        }
        let Some(cur) = self.history.back() else {
            return (None, Bytes::new());
        };
        let base = baseline.and_then(|b| find_frame(&self.history, b));
        diff(base, cur, &mut self.scratch);
        self.encode_buf.clear();
        encode_snapshot_body(&self.scratch, &mut self.encode_buf);
        let bytes = Bytes::copy_from_slice(&self.encode_buf);
        self.bodies.push((baseline, bytes.clone()));
        (baseline, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_protocol::view::Replica;
    use tickwire_protocol::{EntityKind, SnapshotHeader, codec};

    fn st(x: f32) -> EntityState {
        EntityState {
            kind: EntityKind::Player,
            x,
            y: 1.0,
            aim: 0.0,
            hp: 100,
            score: 0,
            owner: NetId(0),
        }
    }

    fn fill(r: &mut Replication, tick: u32, ents: &[(u32, f32)]) {
        let list = r.begin(Tick(tick));
        list.extend(ents.iter().map(|(id, x)| (NetId(*id), st(*x))));
        r.commit();
    }

    fn apply(replica: &mut Replica, r: &mut Replication, tick: u32, baseline: Option<u32>) {
        let (used, bytes) = r.body(baseline.map(Tick));
        let mut frame = Vec::new();
        let header = SnapshotHeader {
            tick: Tick(tick),
            baseline: used,
            last_input_seq: 0,
        };
        codec::encode_snapshot_frame(&header, &bytes, &mut frame);
        let tickwire_protocol::ServerMsg::Snapshot(s) =
            codec::decode_server(&frame).expect("decodes")
        else {
            panic!("not a snapshot");
        };
        replica.apply(&s.header, &s.body).expect("applies cleanly");
    }

    #[test]
    fn deltas_reproduce_the_world_including_sign_of_zero() {
        let mut r = Replication::new(4);
        let mut replica = Replica::new();
        fill(&mut r, 1, &[(1, 0.0), (2, 5.0), (3, 7.0)]);
        apply(&mut replica, &mut r, 1, None);
        fill(&mut r, 2, &[(1, -0.0), (3, 8.0), (4, 1.0)]);
        apply(&mut replica, &mut r, 2, Some(1));
        fill(&mut r, 3, &[(0, 1.0), (4, 1.0), (9, 2.0)]);
        apply(&mut replica, &mut r, 3, Some(1));
        let latest = replica.latest().expect("has view");
        assert_eq!(latest.entities.len(), 3);
        assert_eq!(latest.checksum(), r.latest().expect("frame").checksum);
    }

    #[test]
    fn bodies_are_shared_per_baseline_and_old_baselines_fall_back_to_full() {
        let mut r = Replication::new(2);
        fill(&mut r, 1, &[(1, 0.0)]);
        fill(&mut r, 2, &[(1, 1.0)]);
        let (b1, x1) = r.body(Some(Tick(1)));
        let (_, x2) = r.body(Some(Tick(1)));
        assert_eq!(b1, Some(Tick(1)));
        assert_eq!(x1.as_ptr(), x2.as_ptr(), "same bytes shared");
        fill(&mut r, 3, &[(1, 2.0)]);
        // Tick 1 has been evicted: a full snapshot.
        let (b, _) = r.body(Some(Tick(1)));
        assert_eq!(b, None);
        assert!(r.frame(Tick(2)).is_some());
        assert!(r.frame(Tick(1)).is_none());
    }

    #[test]
    fn diff_lists_each_kind_of_change() {
        let mut a = WorldFrame {
            tick: Tick(1),
            entities: vec![(NetId(1), st(1.0)), (NetId(2), st(2.0))],
            checksum: 0,
        };
        a.seal();
        let mut b = WorldFrame {
            tick: Tick(2),
            entities: vec![(NetId(3), st(3.0)), (NetId(2), st(2.5))],
            checksum: 0,
        };
        b.seal();
        let mut out = SnapshotBody::default();
        diff(Some(&a), &b, &mut out);
        assert_eq!(out.removed, vec![NetId(1)]);
        assert_eq!(out.changed.len(), 1);
        assert_eq!(out.changed[0].id, NetId(2));
        assert_eq!(out.created.len(), 1);
        assert_eq!(out.created[0].id, NetId(3));
        assert_eq!(out.checksum, b.checksum);
    }
}
