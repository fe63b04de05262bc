//! The arena's settings: the `[games.arena]` section of the server's TOML file.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Gameplay constants of the arena and its map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArenaConfig {
    /// Map file; none uses the embedded `assets/maps/arena.toml`. Default none.
    pub map: Option<PathBuf>,
    /// Player speed, world units per second. Default 250.
    pub player_speed: f32,
    /// Player radius, world units: a circle for hits, a square of this half-size for walls.
    /// Default 16.
    pub player_radius: f32,
    /// Projectile speed, world units per second. Default 900.
    pub projectile_speed: f32,
    /// Projectile radius, world units. Default 4.
    pub projectile_radius: f32,
    /// Projectile lifetime, milliseconds. Default 1000.
    pub projectile_lifetime_ms: u32,
    /// Hit points a projectile takes. Default 25.
    pub projectile_damage: u8,
    /// Minimum time between two shots of one player, milliseconds. Default 250.
    pub fire_cooldown_ms: u32,
    /// Time a dead player waits before respawning, milliseconds. Default 1500.
    pub respawn_delay_ms: u32,
}

impl Default for ArenaConfig {
    fn default() -> Self {
        ArenaConfig {
            map: None,
            player_speed: 250.0,
            player_radius: 16.0,
            projectile_speed: 900.0,
            projectile_radius: 4.0,
            projectile_lifetime_ms: 1000,
            projectile_damage: 25,
            fire_cooldown_ms: 250,
            respawn_delay_ms: 1500,
        }
    }
}

impl ArenaConfig {
    /// Checks the ranges.
    ///
    /// # Errors
    /// Which value is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            self.player_speed,
            self.player_radius,
            self.projectile_speed,
            self.projectile_radius,
        ];
        if positive.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err("speeds and radii must be finite and positive".into());
        }
        if self.projectile_damage == 0 {
            return Err("projectile_damage must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_a_partial_section_keeps_them() {
        ArenaConfig::default().validate().expect("valid");
        let c: ArenaConfig = toml::from_str("player_speed = 300.0").expect("parses");
        assert_eq!(c.player_speed, 300.0);
        assert_eq!(c.projectile_speed, 900.0);
        assert!(toml::from_str::<ArenaConfig>("speed = 1.0").is_err());
        let bad = ArenaConfig {
            player_radius: f32::NAN,
            ..ArenaConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
