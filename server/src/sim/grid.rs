//! A uniform grid over the arena used to find the players near a point without scanning them all.
//! Rebuilt each tick; buffers keep their capacity, so a steady-state rebuild does not allocate.

use bevy_ecs::entity::Entity;
use glam::Vec2;

/// Buckets of entities by grid cell.
#[derive(Debug, Default)]
pub struct Grid {
    cell: f32,
    cols: usize,
    rows: usize,
    cells: Vec<Vec<(Entity, Vec2)>>,
}

impl Grid {
    /// A grid of `cell`-sized squares covering `width` x `height`.
    #[must_use]
    pub fn new(width: f32, height: f32, cell: f32) -> Grid {
        let cols = ((width / cell).ceil() as usize).max(1);
        let rows = ((height / cell).ceil() as usize).max(1);
        Grid {
            cell,
            cols,
            rows,
            cells: (0..cols * rows).map(|_| Vec::new()).collect(),
        }
    }

    /// Empties every cell, keeping capacity.
    pub fn clear(&mut self) {
        for c in &mut self.cells {
            c.clear();
        }
    }

    fn coord(&self, v: f32, n: usize) -> usize {
        // Positions outside the arena land in the border cells.
        ((v / self.cell).max(0.0) as usize).min(n - 1)
    }

    /// Adds an entity at a point.
    pub fn insert(&mut self, e: Entity, p: Vec2) {
        let (cx, cy) = (self.coord(p.x, self.cols), self.coord(p.y, self.rows));
        self.cells[cy * self.cols + cx].push((e, p));
    }

    /// Every entity in the cells that overlap the box `min..=max`.
    pub fn query(&self, min: Vec2, max: Vec2) -> impl Iterator<Item = (Entity, Vec2)> + '_ {
        let (x0, x1) = (self.coord(min.x, self.cols), self.coord(max.x, self.cols));
        let (y0, y1) = (self.coord(min.y, self.rows), self.coord(max.y, self.rows));
        (y0..=y1).flat_map(move |y| {
            (x0..=x1).flat_map(move |x| self.cells[y * self.cols + x].iter().copied())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_finds_neighbours_only() {
        let mut g = Grid::new(1000.0, 1000.0, 100.0);
        let a = Entity::from_raw_u32(1).expect("valid index");
        let b = Entity::from_raw_u32(2).expect("valid index");
        g.insert(a, Vec2::new(50.0, 50.0));
        g.insert(b, Vec2::new(950.0, 950.0));
        let near: Vec<_> = g
            .query(Vec2::new(0.0, 0.0), Vec2::new(120.0, 120.0))
            .collect();
        assert_eq!(near.len(), 1);
        assert_eq!(near[0].0, a);
        let all: Vec<_> = g.query(Vec2::splat(-5.0), Vec2::splat(5000.0)).collect();
        assert_eq!(all.len(), 2);
        g.clear();
        assert_eq!(g.query(Vec2::splat(0.0), Vec2::splat(1000.0)).count(), 0);
    }
}
