//! Interest management for `aoi` mode: a uniform grid over the game's world (positions in the
//! game's interest units), rebuilt once per tick, answers "what is within the radius of this
//! player" by looking at the 5 x 5 cells (each half a radius wide) around it. The cost per
//! client grows with what is near it, not with the number of entities. Entities the game gives
//! no position are seen by everyone. Results go through a bitset over the frame, which yields
//! them in id order without sorting.

use super::frame::WorldFrame;
use crate::spatial::CellGrid;
use glam::IVec2;

/// Cells per radius: a query touches `(2 * CELLS_PER_RADIUS + 1)^2` cells.
const CELLS_PER_RADIUS: i32 = 2;

/// Entity indices by grid cell.
#[derive(Debug)]
pub struct Interest {
    radius_q: i64,
    /// Entity indices of the indexed frame, with their positions.
    grid: CellGrid<u32>,
    /// Entities without a position: in every view.
    everywhere: Vec<u32>,
    /// One bit per entity of the indexed frame, for the query in progress.
    seen: Vec<u64>,
}

impl Interest {
    /// A grid for a radius of `radius_q` interest units over a world of `extent` units.
    #[must_use]
    pub fn new(radius_q: i32, extent: IVec2) -> Interest {
        let radius_q = radius_q.max(1);
        Interest {
            radius_q: i64::from(radius_q),
            grid: CellGrid::new(extent, (radius_q / CELLS_PER_RADIUS).max(1)),
            everywhere: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Rebuilds the grid for `frame` (keeps every cell's capacity).
    pub fn index(&mut self, frame: &WorldFrame) {
        self.grid.clear();
        self.everywhere.clear();
        for (i, e) in frame.entities.iter().enumerate() {
            match e.pos {
                Some(p) => self.grid.insert(i as u32, p),
                None => self.everywhere.push(i as u32),
            }
        }
        self.seen.clear();
        self.seen.resize(frame.entities.len().div_ceil(64), 0);
    }

    /// Fills `out` with the indices of the entities of `frame` (the frame last indexed) within
    /// the radius of entity `own`, which is always included; ascending, so in id order.
    pub fn query(&mut self, frame: &WorldFrame, own: usize, out: &mut Vec<u32>) {
        out.clear();
        let (mut lo, mut hi) = (usize::MAX, 0usize);
        for &i in &self.everywhere {
            let w = i as usize / 64;
            self.seen[w] |= 1u64 << (i % 64);
            lo = lo.min(w);
            hi = hi.max(w);
        }
        // An own entity without a position sees only what is everywhere (itself included).
        let center = frame.entities[own].pos;
        let r2 = self.radius_q * self.radius_q;
        // The cells within CELLS_PER_RADIUS of the centre's cell, as a box.
        let reach = IVec2::splat(CELLS_PER_RADIUS * self.grid.cell_q());
        let seen = &mut self.seen;
        if let Some(center) = center {
            self.grid
                .for_each_cell(center - reach, center + reach, |cell| {
                    for &(i, pos) in cell {
                        let d = (pos - center).as_i64vec2();
                        if d.length_squared() <= r2 {
                            let w = i as usize / 64;
                            seen[w] |= 1u64 << (i % 64);
                            lo = lo.min(w);
                            hi = hi.max(w);
                        }
                    }
                });
        }
        let own_word = own / 64;
        seen[own_word] |= 1u64 << (own % 64);
        lo = lo.min(own_word);
        hi = hi.max(own_word);
        for w in lo..=hi {
            let mut bits = std::mem::take(&mut self.seen[w]);
            while bits != 0 {
                out.push((w * 64) as u32 + bits.trailing_zeros());
                bits &= bits - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::frame::FrameEntity;
    use tickwire_protocol::NetId;

    #[test]
    fn query_matches_brute_force() {
        let mut rng = fastrand::Rng::with_seed(3);
        let size = IVec2::splat(16_000);
        let mut frame = WorldFrame::default();
        for id in 1..=500u32 {
            // Every tenth entity has no position: everyone sees it.
            let pos = (id % 10 != 0).then(|| IVec2::new(rng.i32(0..16_000), rng.i32(0..16_000)));
            frame.entities.push(FrameEntity {
                id: NetId(id),
                mask: 0,
                start: 0,
                len: 0,
                hash: 0,
                pos,
            });
        }
        let mut grid = Interest::new(1600, size);
        grid.index(&frame);
        let r = 1600i64;
        let r2 = r * r;
        let mut out = Vec::new();
        for own in [0usize, 17, 498] {
            grid.query(&frame, own, &mut out);
            let c = frame.entities[own].pos.expect("placed");
            let want: Vec<u32> = (0..500u32)
                .filter(|&i| {
                    frame.entities[i as usize]
                        .pos
                        .is_none_or(|p| (p - c).as_i64vec2().length_squared() <= r2)
                })
                .collect();
            assert_eq!(out, want);
            assert!(out.contains(&(own as u32)));
        }
    }
}
