//! The static map: arena bounds and walls, loaded from TOML (by default the embedded
//! `assets/maps/arena.toml`), plus the collision queries the systems need.

use crate::components::{MAX_WORLD_COORD, Rect, to_q};
use bevy_ecs::resource::Resource;
use glam::{IVec2, Vec2};
use serde::Deserialize;
use std::path::Path;

/// The default map, embedded so the server runs with no files around it.
pub const DEFAULT_MAP_TOML: &str = include_str!("../../../assets/maps/arena.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    name: String,
    width: f32,
    height: f32,
    #[serde(default)]
    walls: Vec<WallFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WallFile {
    min: [f32; 2],
    max: [f32; 2],
}

/// An axis-aligned box in position units, edges inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QRect {
    /// Smaller corner.
    pub min: IVec2,
    /// Larger corner.
    pub max: IVec2,
}

/// The arena: bounds and walls, in world units (as sent to clients) and in position units (as
/// the simulation uses them: player positions are whole position units, see
/// [`crate::components::POS_SCALE`]).
#[derive(Debug, Clone, Resource)]
pub struct Map {
    /// Name from the map file.
    pub name: String,
    /// Width; x lies in `[0, width]`.
    pub width: f32,
    /// Height; y lies in `[0, height]`.
    pub height: f32,
    /// Axis-aligned walls, world units.
    pub walls: Vec<Rect>,
    /// Size in position units.
    pub size_q: IVec2,
    /// The walls in position units.
    pub walls_q: Vec<QRect>,
}

impl Map {
    /// Parses and validates a map; `source_name` names it in errors.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Map, String> {
        let err = |message: String| format!("map {source_name}: {message}");
        let file: MapFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let ok = |v: f32| v.is_finite() && (1.0..=MAX_WORLD_COORD).contains(&v);
        if !ok(file.width) || !ok(file.height) {
            return Err(err(format!(
                "width and height must be in 1..={MAX_WORLD_COORD}"
            )));
        }
        let mut walls = Vec::with_capacity(file.walls.len());
        for (i, w) in file.walls.iter().enumerate() {
            let r = Rect {
                min_x: w.min[0],
                min_y: w.min[1],
                max_x: w.max[0],
                max_y: w.max[1],
            };
            let finite = [r.min_x, r.min_y, r.max_x, r.max_y]
                .iter()
                .all(|v| v.is_finite());
            if !finite || r.min_x >= r.max_x || r.min_y >= r.max_y {
                return Err(err(format!("wall {i} must have finite min < max")));
            }
            walls.push(r);
        }
        let walls_q = walls
            .iter()
            .map(|w| QRect {
                min: IVec2::new(to_q(w.min_x), to_q(w.min_y)),
                max: IVec2::new(to_q(w.max_x), to_q(w.max_y)),
            })
            .collect();
        Ok(Map {
            name: file.name,
            width: file.width,
            height: file.height,
            walls,
            size_q: IVec2::new(to_q(file.width), to_q(file.height)),
            walls_q,
        })
    }

    /// Loads the map file, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Map, String> {
        match path {
            None => Map::from_toml(DEFAULT_MAP_TOML, "embedded arena.toml"),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read map {}: {e}", p.display()))?;
                Map::from_toml(&text, &p.display().to_string())
            }
        }
    }

    /// True if a square of half-size `r` centred on `p` (position units) lies inside the
    /// bounds and overlaps no wall.
    #[must_use]
    pub fn is_free(&self, p: IVec2, r: i32) -> bool {
        p.x >= r
            && p.y >= r
            && p.x <= self.size_q.x - r
            && p.y <= self.size_q.y - r
            && !self.walls_q.iter().any(|w| {
                p.x + r > w.min.x && p.x - r < w.max.x && p.y + r > w.min.y && p.y - r < w.max.y
            })
    }

    /// Moves a square of half-size `r` from `from` by `delta` (position units), one axis at a
    /// time, stopping it flush against walls and the arena bounds. Exact integer arithmetic: a
    /// wall between the start and the end always stops the mover, at any speed.
    #[must_use]
    pub fn slide(&self, from: IVec2, delta: IVec2, r: i32) -> IVec2 {
        let mut p = from;
        p.x = self.slide_axis(p, delta.x, 0, r);
        p.y = self.slide_axis(p, delta.y, 1, r);
        p
    }

    /// The new coordinate on `axis` (0 = x, 1 = y) of a square of half-size `r` at `p` moved by
    /// `d` along that axis, clamped to the bounds and stopped flush at the first wall in the way.
    fn slide_axis(&self, p: IVec2, d: i32, axis: usize, r: i32) -> i32 {
        let other = 1 - axis;
        let mut v = (p[axis] + d).clamp(r, self.size_q[axis] - r);
        for w in &self.walls_q {
            if p[other] + r <= w.min[other] || p[other] - r >= w.max[other] {
                continue;
            }
            if d > 0 && p[axis] + r <= w.min[axis] && v + r > w.min[axis] {
                v = v.min(w.min[axis] - r);
            } else if d < 0 && p[axis] - r >= w.max[axis] && v - r < w.max[axis] {
                v = v.max(w.max[axis] + r);
            }
        }
        v
    }

    /// True if the segment `a -> b`, thickened by `r`, leaves the arena or touches a wall.
    #[must_use]
    pub fn segment_blocked(&self, a: Vec2, b: Vec2, r: f32) -> bool {
        if b.x < r || b.y < r || b.x > self.width - r || b.y > self.height - r {
            return true;
        }
        self.walls.iter().any(|w| segment_hits_box(a, b, w, r))
    }

    /// A uniformly random position (position units) where a player of half-size `r` is free,
    /// or `None` if `attempts` tries found none.
    pub fn random_free_position(
        &self,
        rng: &mut fastrand::Rng,
        r: i32,
        attempts: u32,
    ) -> Option<IVec2> {
        if self.size_q.x < 2 * r || self.size_q.y < 2 * r {
            return None;
        }
        (0..attempts).find_map(|_| {
            let p = IVec2::new(
                rng.i32(r..=self.size_q.x - r),
                rng.i32(r..=self.size_q.y - r),
            );
            self.is_free(p, r).then_some(p)
        })
    }
}

/// Slab test of segment `a -> b` against the box `w` grown by `r` on every side.
fn segment_hits_box(a: Vec2, b: Vec2, w: &Rect, r: f32) -> bool {
    let (min, max) = (
        Vec2::new(w.min_x - r, w.min_y - r),
        Vec2::new(w.max_x + r, w.max_y + r),
    );
    let d = b - a;
    let (mut t0, mut t1) = (0.0f32, 1.0f32);
    for axis in 0..2 {
        let (o, dir, lo, hi) = (a[axis], d[axis], min[axis], max[axis]);
        if dir.abs() < f32::EPSILON {
            if o < lo || o > hi {
                return false;
            }
        } else {
            let (mut ta, mut tb) = ((lo - o) / dir, (hi - o) / dir);
            if ta > tb {
                std::mem::swap(&mut ta, &mut tb);
            }
            t0 = t0.max(ta);
            t1 = t1.min(tb);
            if t0 > t1 {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> Map {
        Map::from_toml(
            "name='t'\nwidth=1000.0\nheight=1000.0\n[[walls]]\nmin=[400.0,0.0]\nmax=[420.0,1000.0]\n",
            "test",
        )
        .expect("valid")
    }

    #[test]
    fn embedded_map_loads() {
        let m = Map::load(None).expect("embedded map is valid");
        assert_eq!((m.width, m.height), (4000.0, 4000.0));
        assert!(!m.walls.is_empty());
    }

    #[test]
    fn invalid_maps_are_rejected() {
        assert!(Map::from_toml("name='x'\nwidth=-1.0\nheight=10.0", "t").is_err());
        assert!(Map::from_toml("name='x'\nwidth=40000.0\nheight=10.0", "t").is_err());
        assert!(
            Map::from_toml(
                "name='x'\nwidth=10.0\nheight=10.0\n[[walls]]\nmin=[5.0,5.0]\nmax=[1.0,9.0]",
                "t"
            )
            .is_err()
        );
    }

    #[test]
    fn slide_never_tunnels_and_stops_flush() {
        let m = map();
        let s = crate::components::POS_SCALE as i32;
        let r = 16 * s;
        let q = |x: i32, y: i32| IVec2::new(x * s, y * s);
        // A huge step to the right stops flush against the wall at x = 400.
        let p = m.slide(q(100, 500), q(10_000, 0), r);
        assert_eq!(p.x, 400 * s - r);
        // Pushing again from flush does not enter the wall, however often.
        let mut pushed = p;
        for _ in 0..100 {
            pushed = m.slide(pushed, IVec2::new(17, 0), r);
            assert_eq!(pushed, p);
        }
        // Bounds clamp.
        assert_eq!(
            m.slide(q(100, 500), q(-500, 2000), r),
            IVec2::new(r, 1000 * s - r)
        );
        // Moving along the wall is free.
        assert_eq!(m.slide(p, q(0, 100), r), IVec2::new(p.x, 600 * s));
    }

    #[test]
    fn segments_hit_walls_and_bounds() {
        let m = map();
        assert!(m.segment_blocked(Vec2::new(390.0, 10.0), Vec2::new(430.0, 12.0), 4.0));
        assert!(!m.segment_blocked(Vec2::new(100.0, 100.0), Vec2::new(200.0, 200.0), 4.0));
        assert!(m.segment_blocked(Vec2::new(990.0, 10.0), Vec2::new(1010.0, 10.0), 4.0));
    }

    #[test]
    fn random_positions_are_free() {
        let m = Map::load(None).expect("valid");
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..1000 {
            let p = m.random_free_position(&mut rng, 32, 64).expect("found");
            assert!(m.is_free(p, 32));
        }
    }
}
