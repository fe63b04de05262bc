//! The static map: arena bounds and walls, loaded from TOML (by default the embedded
//! `assets/maps/arena.toml`), plus the collision queries the systems need.

use crate::error::ServerError;
use bevy_ecs::resource::Resource;
use glam::Vec2;
use serde::Deserialize;
use std::path::Path;
use tickwire_protocol::Rect;

/// The default map, embedded so the server runs with no files around it.
pub const DEFAULT_MAP_TOML: &str = include_str!("../../../assets/maps/arena.toml");

/// Slack, in world units, when deciding whether a mover started outside a wall; covers f32
/// rounding of positions that were clamped exactly onto a wall's edge.
const EDGE_EPSILON: f32 = 1e-3;

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

/// The arena: bounds and walls.
#[derive(Debug, Clone, Resource)]
pub struct Map {
    /// Name from the map file.
    pub name: String,
    /// Width; x lies in `[0, width]`.
    pub width: f32,
    /// Height; y lies in `[0, height]`.
    pub height: f32,
    /// Axis-aligned walls.
    pub walls: Vec<Rect>,
}

impl Map {
    /// Parses and validates a map; `source_name` names it in errors.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Map, ServerError> {
        let err = |message: String| ServerError::Map {
            source_name: source_name.to_owned(),
            message,
        };
        let file: MapFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let ok = |v: f32| v.is_finite() && (1.0..=1_000_000.0).contains(&v);
        if !ok(file.width) || !ok(file.height) {
            return Err(err("width and height must be in 1..=1e6".into()));
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
        Ok(Map {
            name: file.name,
            width: file.width,
            height: file.height,
            walls,
        })
    }

    /// Loads the map file, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Map, ServerError> {
        match path {
            None => Map::from_toml(DEFAULT_MAP_TOML, "embedded arena.toml"),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ServerError::ReadFile {
                    path: p.to_owned(),
                    source,
                })?;
                Map::from_toml(&text, &p.display().to_string())
            }
        }
    }

    /// True if a square of half-size `r` centred on `p` lies inside the bounds and touches no wall.
    #[must_use]
    pub fn is_free(&self, p: Vec2, r: f32) -> bool {
        p.x >= r
            && p.y >= r
            && p.x <= self.width - r
            && p.y <= self.height - r
            && !self.walls.iter().any(|w| {
                p.x + r > w.min_x && p.x - r < w.max_x && p.y + r > w.min_y && p.y - r < w.max_y
            })
    }

    /// Moves a square of half-size `r` from `from` by `delta`, one axis at a time, stopping it
    /// flush against walls and the arena bounds. Exact at any speed: a wall between the start and
    /// the end always stops the mover. Returns the new position.
    #[must_use]
    pub fn slide(&self, from: Vec2, delta: Vec2, r: f32) -> Vec2 {
        let mut p = from;
        p.x = self.slide_axis(p, delta.x, 0, r);
        p.y = self.slide_axis(p, delta.y, 1, r);
        p
    }

    /// The new coordinate on `axis` (0 = x, 1 = y) of a square of half-size `r` at `p` moved by
    /// `d` along that axis, clamped to the bounds and stopped flush at the first wall in the way.
    fn slide_axis(&self, p: Vec2, d: f32, axis: usize, r: f32) -> f32 {
        let other = 1 - axis;
        let limit = if axis == 0 { self.width } else { self.height };
        let mut v = (p[axis] + d).clamp(r, limit - r);
        for w in &self.walls {
            let (lo, hi) = (Vec2::new(w.min_x, w.min_y), Vec2::new(w.max_x, w.max_y));
            if p[other] + r <= lo[other] || p[other] - r >= hi[other] {
                continue;
            }
            if d > 0.0 && p[axis] + r <= lo[axis] + EDGE_EPSILON && v + r > lo[axis] {
                v = v.min(lo[axis] - r);
            } else if d < 0.0 && p[axis] - r >= hi[axis] - EDGE_EPSILON && v - r < hi[axis] {
                v = v.max(hi[axis] + r);
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

    /// A uniformly random position where a player of radius `r` is free, or `None` if
    /// `attempts` tries found none.
    pub fn random_free_position(
        &self,
        rng: &mut fastrand::Rng,
        r: f32,
        attempts: u32,
    ) -> Option<Vec2> {
        (0..attempts).find_map(|_| {
            let p = Vec2::new(
                r + rng.f32() * (self.width - 2.0 * r),
                r + rng.f32() * (self.height - 2.0 * r),
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
        let r = 16.0;
        // A huge step to the right stops flush against the wall at x = 400.
        let p = m.slide(Vec2::new(100.0, 500.0), Vec2::new(10_000.0, 0.0), r);
        assert_eq!(p.x, 400.0 - r);
        // Pushing again from flush does not enter the wall, even many times.
        let mut q = p;
        for _ in 0..100 {
            q = m.slide(q, Vec2::new(8.333, 0.0), r);
            assert!(q.x + r <= 400.0 + EDGE_EPSILON, "{q}");
        }
        // Bounds clamp.
        let q = m.slide(Vec2::new(100.0, 500.0), Vec2::new(-500.0, 2000.0), r);
        assert_eq!(q, Vec2::new(r, 1000.0 - r));
        // Moving along the wall is free.
        let q = m.slide(p, Vec2::new(0.0, 100.0), r);
        assert_eq!(q, Vec2::new(p.x, 600.0));
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
            let p = m.random_free_position(&mut rng, 16.0, 64).expect("found");
            assert!(m.is_free(p, 16.0));
        }
    }
}
