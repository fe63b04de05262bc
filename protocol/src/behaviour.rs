//! What a bot does each tick. Each game implements [`Behaviour`] for its bots; the bot swarm
//! and the server's headless harness drive any of them the same way, so the swarm, its
//! verification and its report know no game.

use crate::msg::Welcome;
use crate::replica::View;

/// What a bot knows when it picks its next input.
#[derive(Debug, Clone, Copy)]
pub struct BotView<'a> {
    /// The welcome: the bot's player, the game's schema and static data.
    pub welcome: &'a Welcome,
    /// The newest verified view of the world, when the bot keeps a replica.
    pub view: Option<&'a View>,
}

/// A bot's behaviour in one game.
pub trait Behaviour: Send {
    /// Writes the words of the next input (one per tick, a record of the schema's input) into
    /// `out`, which is empty.
    fn next_input(&mut self, bot: &BotView<'_>, out: &mut Vec<i64>);

    /// An event to send this tick, if any: writes its words into `out` (which is empty) and
    /// returns the name of its type (one of the schema's `client_events`). Called once per tick
    /// after [`Behaviour::next_input`]; by default the bot sends none.
    fn next_event(&mut self, _bot: &BotView<'_>, _out: &mut Vec<i64>) -> Option<&'static str> {
        None
    }
}

/// Makes the behaviour of one bot from its seed and its welcome. All of a bot's randomness
/// comes from the seed, so a run can be repeated.
pub type BehaviourFactory = fn(seed: u64, welcome: &Welcome) -> Box<dyn Behaviour>;
