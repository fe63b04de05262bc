//! The arena's components, input and static records, each declared once with its wire fields
//! ([`Replicate`]), and the fixed-point units they use.
//!
//! Positions are whole position units (half world units) and aims whole steps of 1/1024 turn,
//! the forms clients receive, so the authoritative state is exactly what is replicated.

use bevy_ecs::prelude::*;
use glam::{IVec2, Vec2};
use std::f32::consts::TAU;
use tickwire_protocol::schema::{Delta, Encoding, Field, fixed};
use tickwire_protocol::{NetId, Replicate, Tick};

/// Position units per world unit.
pub const POS_SCALE: f32 = 2.0;
/// Largest world coordinate a position can hold (position units are `u16` on the wire).
pub const MAX_WORLD_COORD: f32 = u16::MAX as f32 / POS_SCALE;
/// Angle steps per turn.
pub const AIM_STEPS: u32 = 1024;
/// Hit points of a fresh player.
pub const MAX_HP: u8 = 100;
/// Largest projectile step per tick, position units (the `Shot` velocity's range).
pub const MAX_SHOT_STEP: i32 = 511;
/// Input move components are integers in `-MOVE_SCALE..=MOVE_SCALE` (a unit vector is
/// `MOVE_SCALE` long).
pub const MOVE_SCALE: i64 = 127;

/// World units as position units, rounded.
#[must_use]
pub fn to_q(v: f32) -> i32 {
    (v * POS_SCALE).round() as i32
}

/// Position units as world units.
#[must_use]
pub fn from_q(q: i32) -> f32 {
    q as f32 / POS_SCALE
}

/// A position in position units as world units.
#[must_use]
pub fn world(p: IVec2) -> Vec2 {
    Vec2::new(from_q(p.x), from_q(p.y))
}

/// Aim steps as radians.
#[must_use]
pub fn aim_radians(steps: u16) -> f32 {
    f32::from(steps) * TAU / AIM_STEPS as f32
}

fn coordinate() -> Encoding {
    Encoding::Fixed {
        scale: POS_SCALE,
        min: 0,
        max: i32::from(u16::MAX),
    }
}

/// Where a player is, position units.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position(pub IVec2);

impl Replicate for Position {
    const NAME: &'static str = "Position";
    fn fields() -> Vec<Field> {
        // A step at full speed is about 17 position units: 7 bits of difference hold up to
        // three of them, so deltas against a baseline acked a few ticks late stay small.
        vec![
            Field::new("x", coordinate()).delta(Delta::Diff { bits: 7 }),
            Field::new("y", coordinate()).delta(Delta::Diff { bits: 7 }),
        ]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.extend([i64::from(self.0.x), i64::from(self.0.y)]);
    }
    fn read(w: &[i64]) -> Self {
        Position(IVec2::new(w[0] as i32, w[1] as i32))
    }
}

/// Where a player aims, in steps of 1/1024 turn.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aim(pub u16);

impl Replicate for Aim {
    const NAME: &'static str = "Aim";
    fn fields() -> Vec<Field> {
        vec![
            // Up to 32 steps (a quarter of a turn per second for three ticks).
            Field::new("aim", Encoding::Angle { steps: AIM_STEPS })
                .delta(Delta::AngleDiff { bits: 6 }),
        ]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.push(i64::from(self.0));
    }
    fn read(w: &[i64]) -> Self {
        Aim(w[0] as u16)
    }
}

/// A player's hit points and kills.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vitals {
    /// Hit points; 0 while dead.
    pub hp: u8,
    /// Kills.
    pub score: u32,
}

impl Replicate for Vitals {
    const NAME: &'static str = "Vitals";
    fn fields() -> Vec<Field> {
        vec![
            Field::new(
                "hp",
                Encoding::UInt {
                    max: u32::from(MAX_HP),
                },
            ),
            Field::new("score", Encoding::VarUInt).delta(Delta::Diff { bits: 2 }),
        ]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.extend([i64::from(self.hp), i64::from(self.score)]);
    }
    fn read(w: &[i64]) -> Self {
        Vitals {
            hp: w[0] as u8,
            score: w[1] as u32,
        }
    }
}

/// A projectile as clients see it. It never changes: its position at tick `t` is
/// `origin + velocity * (t - born)`, computed the same way by the server and every client.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shot {
    /// Where it was at `born`, position units.
    pub origin: IVec2,
    /// Position units per tick.
    pub velocity: IVec2,
    /// The tick it was fired.
    pub born: Tick,
    /// The player that fired it.
    pub owner: NetId,
}

impl Shot {
    /// Position at `tick`, position units (may lie outside the arena).
    #[must_use]
    pub fn position_at(&self, tick: Tick) -> IVec2 {
        self.origin + self.velocity * tick.since(self.born)
    }
}

impl Replicate for Shot {
    const NAME: &'static str = "Shot";
    fn fields() -> Vec<Field> {
        // Position units per tick: up to 511 is a projectile speed of 7665 world units per
        // second at 30 Hz (the settings are checked against it).
        let v = Encoding::Int {
            min: -MAX_SHOT_STEP,
            max: MAX_SHOT_STEP,
        };
        vec![
            Field::new("x", coordinate()),
            Field::new("y", coordinate()),
            Field::new("vx", v),
            Field::new("vy", v),
            Field::new("born", Encoding::VarUInt),
            Field::new("owner", Encoding::EntityRef),
        ]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.extend([
            i64::from(self.origin.x),
            i64::from(self.origin.y),
            i64::from(self.velocity.x),
            i64::from(self.velocity.y),
            i64::from(self.born.0),
            i64::from(self.owner.0),
        ]);
    }
    fn read(w: &[i64]) -> Self {
        Shot {
            origin: IVec2::new(w[0] as i32, w[1] as i32),
            velocity: IVec2::new(w[2] as i32, w[3] as i32),
            born: Tick(w[4] as u32),
            owner: NetId(w[5] as u32),
        }
    }
}

/// A player's own state that clients are not sent.
#[derive(Component, Debug, Clone)]
pub struct Pilot {
    /// Display name.
    pub name: String,
    /// The latest input (movement and aim persist until the next one).
    pub input: ArenaInput,
    /// A fire press arrived this tick.
    pub fire_pressed: bool,
    /// Ticks until the player may fire again.
    pub cooldown_ticks: u32,
    /// Ticks until a dead player respawns; 0 while alive.
    pub respawn_ticks: u32,
}

impl Pilot {
    /// True while the player can move, fire and be hit.
    #[must_use]
    pub fn alive(&self) -> bool {
        self.respawn_ticks == 0
    }
}

/// A projectile's own state that clients are not sent.
#[derive(Component, Debug, Clone, Copy)]
pub struct Flight {
    /// Where it is now, position units (for hits and interest).
    pub now: IVec2,
    /// The owner's entity, for scoring; it may have left since.
    pub owner_entity: Entity,
    /// Ticks before it vanishes.
    pub ticks_left: u32,
}

/// One tick of a player's controls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArenaInput {
    /// Move direction, x, in `-127..=127` (127: a unit step); the vector is scaled down to
    /// length 127 when longer.
    pub move_x: i8,
    /// Move direction, y.
    pub move_y: i8,
    /// Aim, steps of 1/1024 turn.
    pub aim: u16,
    /// The fire button is held.
    pub fire: bool,
}

impl ArenaInput {
    /// The input for a move direction (any length; longer than 1 is scaled down) and an aim
    /// in radians.
    #[must_use]
    pub fn new(dir: Vec2, aim: f32, fire: bool) -> ArenaInput {
        let dir = if dir.length_squared() > 1.0 {
            dir.normalize_or_zero()
        } else {
            dir
        };
        let m = MOVE_SCALE as f32;
        let q = |v: f32| fixed::to_fixed(v, m, -(MOVE_SCALE as i32), MOVE_SCALE as i32) as i8;
        ArenaInput {
            move_x: q(dir.x),
            move_y: q(dir.y),
            aim: fixed::to_steps(aim, AIM_STEPS) as u16,
            fire,
        }
    }

    /// The move direction, length at most 1.
    #[must_use]
    pub fn direction(&self) -> Vec2 {
        let d = Vec2::new(f32::from(self.move_x), f32::from(self.move_y)) / MOVE_SCALE as f32;
        if d.length_squared() > 1.0 {
            d.normalize_or_zero()
        } else {
            d
        }
    }
}

impl Replicate for ArenaInput {
    const NAME: &'static str = "Input";
    fn fields() -> Vec<Field> {
        let m = Encoding::Fixed {
            scale: MOVE_SCALE as f32,
            min: -(MOVE_SCALE as i32),
            max: MOVE_SCALE as i32,
        };
        vec![
            Field::new("move_x", m),
            Field::new("move_y", m),
            Field::new("aim", Encoding::Angle { steps: AIM_STEPS }),
            Field::new("fire", Encoding::Bool),
        ]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.extend([
            i64::from(self.move_x),
            i64::from(self.move_y),
            i64::from(self.aim),
            i64::from(self.fire),
        ]);
    }
    fn read(w: &[i64]) -> Self {
        ArenaInput {
            move_x: w[0] as i8,
            move_y: w[1] as i8,
            aim: w[2] as u16,
            fire: w[3] != 0,
        }
    }
}

/// An axis-aligned rectangle in world units: `min` corner inclusive, `max` corner inclusive.
/// Sent to clients as a static record (the map's walls).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left edge.
    pub min_x: f32,
    /// Top edge.
    pub min_y: f32,
    /// Right edge.
    pub max_x: f32,
    /// Bottom edge.
    pub max_y: f32,
}

impl Replicate for Rect {
    const NAME: &'static str = "Wall";
    fn fields() -> Vec<Field> {
        ["min_x", "min_y", "max_x", "max_y"]
            .iter()
            .map(|n| Field::new(n, coordinate()))
            .collect()
    }
    fn write(&self, out: &mut Vec<i64>) {
        for v in [self.min_x, self.min_y, self.max_x, self.max_y] {
            out.push(i64::from(to_q(v).clamp(0, i32::from(u16::MAX))));
        }
    }
    fn read(w: &[i64]) -> Self {
        let f = |q: i64| from_q(q as i32);
        Rect {
            min_x: f(w[0]),
            min_y: f(w[1]),
            max_x: f(w[2]),
            max_y: f(w[3]),
        }
    }
}

/// The arena's size and constants, sent to clients as one static record (for drawing,
/// prediction and bots).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Width, world units.
    pub width: f32,
    /// Height, world units.
    pub height: f32,
    /// Player radius, world units.
    pub player_radius: f32,
    /// Projectile radius, world units.
    pub projectile_radius: f32,
    /// Player speed, world units per second.
    pub player_speed: f32,
    /// Projectile speed, world units per second.
    pub projectile_speed: f32,
}

impl Replicate for Rules {
    const NAME: &'static str = "Rules";
    fn fields() -> Vec<Field> {
        let size = coordinate();
        let small = Encoding::Fixed {
            scale: POS_SCALE,
            min: 0,
            max: 1 << 20,
        };
        vec![
            Field::new("width", size),
            Field::new("height", size),
            Field::new("player_radius", small),
            Field::new("projectile_radius", small),
            Field::new("player_speed", small),
            Field::new("projectile_speed", small),
        ]
    }
    fn write(&self, out: &mut Vec<i64>) {
        for v in [
            self.width,
            self.height,
            self.player_radius,
            self.projectile_radius,
            self.player_speed,
            self.projectile_speed,
        ] {
            out.push(i64::from(to_q(v)));
        }
    }
    fn read(w: &[i64]) -> Self {
        let f = |q: i64| from_q(q as i32);
        Rules {
            width: f(w[0]),
            height: f(w[1]),
            player_radius: f(w[2]),
            projectile_radius: f(w[3]),
            player_speed: f(w[4]),
            projectile_speed: f(w[5]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_quantize_and_clamp() {
        let i = ArenaInput::new(Vec2::new(3.0, 4.0), -std::f32::consts::FRAC_PI_2, true);
        assert_eq!((i.move_x, i.move_y), (76, 102));
        assert_eq!(i.aim, 768);
        assert!((i.direction().length() - 1.0).abs() < 0.01);
        let mut w = Vec::new();
        i.write(&mut w);
        assert_eq!(ArenaInput::read(&w), i);
        // The corner of the square is longer than 1 and is scaled back.
        let corner = ArenaInput::read(&[127, 127, 0, 0]);
        assert!(corner.direction().length() <= 1.0 + 1e-6);
    }

    #[test]
    fn every_type_round_trips_through_its_words() {
        let shot = Shot {
            origin: IVec2::new(1, 2),
            velocity: IVec2::new(-60, 3),
            born: Tick(70_000),
            owner: NetId(3),
        };
        let mut w = Vec::new();
        shot.write(&mut w);
        assert_eq!(Shot::read(&w), shot);
        tickwire_protocol::GameSchema::check_words(&Shot::fields(), &w).expect("in range");
        assert_eq!(shot.position_at(Tick(70_002)), IVec2::new(-119, 8));
        let v = Vitals { hp: 75, score: 9 };
        w.clear();
        v.write(&mut w);
        assert_eq!(Vitals::read(&w), v);
    }
}

/// The kill feed: a server event to every client in the room when a player is killed (reliable
/// and in order, like every event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    /// Who fired the shot.
    pub killer: NetId,
    /// Who died.
    pub victim: NetId,
}

impl Replicate for Kill {
    const NAME: &'static str = "Kill";
    fn fields() -> Vec<Field> {
        vec![
            Field::new("killer", Encoding::EntityRef),
            Field::new("victim", Encoding::EntityRef),
        ]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.extend([i64::from(self.killer.0), i64::from(self.victim.0)]);
    }
    fn read(words: &[i64]) -> Self {
        let id = |w: i64| NetId(u32::try_from(w).unwrap_or(0));
        Kill {
            killer: id(words[0]),
            victim: id(words[1]),
        }
    }
}
