//! The stock Tickwire binaries' list of bundled games: `tickwire-server` runs one of them
//! (`--game`, default the first), `tickwire-bots` drives any of them. This package also holds
//! the workspace-wide integration tests (`tests/`) and benches (`benches/`).
//!
//! The engine crates (`tickwire-protocol`, `tickwire-server`, `tickwire-bots`) know no game;
//! this is the one place above both the engine and the games (see `STYLE.md`'s house).

use tickwire_protocol::behaviour::BehaviourFactory;
use tickwire_server::GameDef;
use tickwire_server::headroom::Workload;

/// One bundled game: its definition for the server and its bots' behaviour.
#[derive(Debug, Clone, Copy)]
pub struct Bundled {
    /// The game.
    pub game: GameDef,
    /// Its bots' behaviour.
    pub behaviour: BehaviourFactory,
}

impl Bundled {
    /// The game and its bots, for the headless harness.
    #[must_use]
    pub fn workload(&self) -> Workload {
        Workload {
            game: self.game,
            behaviour: self.behaviour,
        }
    }
}

/// Every game the stock binaries bundle; the first is the default.
#[must_use]
pub fn bundled() -> Vec<Bundled> {
    vec![
        Bundled {
            game: GameDef::of::<tickwire_arena::Arena>(),
            behaviour: tickwire_arena::Wander::boxed,
        },
        Bundled {
            game: GameDef::of::<tickwire_whiteboard::Whiteboard>(),
            behaviour: tickwire_whiteboard::Scribble::boxed,
        },
    ]
}

/// The bundled game named `name`, or the default (the first) for an empty name.
///
/// # Errors
/// No bundled game has that name; the message lists those that do.
pub fn find(name: &str) -> Result<Bundled, String> {
    let all = bundled();
    if name.is_empty() {
        return Ok(all[0]);
    }
    all.iter()
        .find(|b| b.game.name() == name)
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|b| b.game.name()).collect();
            format!(
                "no game {name:?} in this binary (it has: {})",
                names.join(", ")
            )
        })
}

/// The bots' behaviours of every bundled game, by name.
#[must_use]
pub fn behaviours() -> Vec<(String, BehaviourFactory)> {
    bundled()
        .iter()
        .map(|b| (b.game.name().to_owned(), b.behaviour))
        .collect()
}
