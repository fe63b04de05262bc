//! The one spatial index of the server: a uniform grid of square cells over a world, in integer
//! units, rebuilt each time it is used (buffers keep their capacity, so a steady-state rebuild
//! does not allocate). Interest management indexes every entity of a world frame in it for
//! `aoi` visibility; games may use it for their own queries (collisions, hits).

use glam::IVec2;

/// Items (with their positions) bucketed by grid cell.
#[derive(Debug)]
pub struct CellGrid<T> {
    cell_q: i32,
    cols: i32,
    rows: i32,
    /// Per cell: each item and its position, inline so a scan reads memory in order.
    cells: Vec<Vec<(T, IVec2)>>,
}

impl<T: Copy> CellGrid<T> {
    /// A grid of `cell_q`-sized squares covering `0..=size_q` (position units).
    #[must_use]
    pub fn new(size_q: IVec2, cell_q: i32) -> CellGrid<T> {
        let cell_q = cell_q.max(1);
        let cols = (size_q.x / cell_q + 1).max(1);
        let rows = (size_q.y / cell_q + 1).max(1);
        CellGrid {
            cell_q,
            cols,
            rows,
            cells: (0..cols * rows).map(|_| Vec::new()).collect(),
        }
    }

    /// The side of a cell, position units.
    #[must_use]
    pub fn cell_q(&self) -> i32 {
        self.cell_q
    }

    /// Empties every cell, keeping capacity.
    pub fn clear(&mut self) {
        for c in &mut self.cells {
            c.clear();
        }
    }

    /// The cell of a point; points outside the world land in the border cells.
    fn cell(&self, p: IVec2) -> (i32, i32) {
        (
            (p.x.div_euclid(self.cell_q)).clamp(0, self.cols - 1),
            (p.y.div_euclid(self.cell_q)).clamp(0, self.rows - 1),
        )
    }

    /// Adds an item at a point.
    pub fn insert(&mut self, item: T, p: IVec2) {
        let (cx, cy) = self.cell(p);
        self.cells[(cy * self.cols + cx) as usize].push((item, p));
    }

    /// Calls `f` with the contents of every cell that overlaps the box `min..=max`, row by row.
    #[inline]
    pub fn for_each_cell(&self, min: IVec2, max: IVec2, mut f: impl FnMut(&[(T, IVec2)])) {
        let (x0, y0) = self.cell(min);
        let (x1, y1) = self.cell(max);
        for y in y0..=y1 {
            let row = y * self.cols;
            for x in x0..=x1 {
                f(&self.cells[(row + x) as usize]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_find_the_items_of_the_cells_they_touch() {
        let mut g = CellGrid::<u32>::new(IVec2::splat(2000), 200);
        g.insert(1, IVec2::new(100, 100));
        g.insert(2, IVec2::new(1900, 1900));
        g.insert(3, IVec2::new(-50, 2500)); // outside: the border cell
        let collect = |g: &CellGrid<u32>, min: IVec2, max: IVec2| {
            let mut v = Vec::new();
            g.for_each_cell(min, max, |c| v.extend(c.iter().map(|(i, _)| *i)));
            v.sort_unstable();
            v
        };
        assert_eq!(collect(&g, IVec2::ZERO, IVec2::splat(240)), vec![1]);
        assert_eq!(
            collect(&g, IVec2::splat(-10), IVec2::splat(5000)),
            vec![1, 2, 3]
        );
        assert_eq!(
            collect(&g, IVec2::new(0, 1990), IVec2::new(10, 2000)),
            vec![3]
        );
        g.clear();
        assert!(collect(&g, IVec2::splat(-10), IVec2::splat(5000)).is_empty());
    }
}
