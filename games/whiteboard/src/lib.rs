//! A shared whiteboard on Tickwire: the second game, of a different shape from the arena.
//!
//! Each player has a cursor (a name, a pen colour and width, a position that moves every tick).
//! Holding the pen down draws **strokes**: entities that are created once and never change, so
//! the board accumulates thousands of them and a late joiner receives them all in its first
//! snapshot. Anyone can **clear** the board, which removes every stroke at once. There is no
//! interest management (everyone sees the whole board) and a player cap. Nothing here needs an
//! engine change: it is written on the public API only.
//!
//! - [`Cursor`], [`Pen`], [`Name`], [`Stroke`]: the replicated components; [`Draw`]: the input;
//!   [`Board`]: the static record (the board's size and limits).
//! - [`WhiteboardConfig`]: the `[games.whiteboard]` settings.
//! - [`Scribble`]: the bot behaviour.
//!
//! The page in `games/whiteboard/web/` draws on it in a browser with the JavaScript SDK.

mod bot;

pub use bot::Scribble;

use bevy_ecs::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use tickwire_protocol::schema::{Delta, Encoding, Field, str_bytes, str_words};
use tickwire_protocol::{NetId, Replicate};
use tickwire_server::{Asset, Controls, Game, GameApp, Inbox, Joined, Net, ServerEvents};

/// Board units across and down: coordinates are `0..BOARD_SIZE`.
pub const BOARD_SIZE: i64 = 4096;
/// Pen colours: `0..COLOURS`.
pub const COLOURS: u32 = 16;
/// Widest pen, board units.
pub const MAX_WIDTH: u32 = 31;
/// Longest name shown on a cursor, bytes.
pub const NAME_BYTES: u8 = 16;

fn coordinate() -> Encoding {
    Encoding::Int {
        min: 0,
        max: BOARD_SIZE as i32 - 1,
    }
}

/// Where a player's cursor is.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Board units.
    pub x: i64,
    /// Board units.
    pub y: i64,
}

impl Replicate for Cursor {
    const NAME: &'static str = "Cursor";
    fn fields() -> Vec<Field> {
        vec![
            Field::new("x", coordinate()).delta(Delta::Diff { bits: 7 }),
            Field::new("y", coordinate()).delta(Delta::Diff { bits: 7 }),
        ]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.extend([self.x, self.y]);
    }
    fn read(w: &[i64]) -> Self {
        Cursor { x: w[0], y: w[1] }
    }
}

/// A player's pen: its colour, width, and whether it is down.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pen {
    /// Colour index.
    pub colour: u32,
    /// Width, board units.
    pub width: u32,
    /// Drawing.
    pub down: bool,
}

impl Replicate for Pen {
    const NAME: &'static str = "Pen";
    fn fields() -> Vec<Field> {
        vec![
            Field::new("colour", Encoding::UInt { max: COLOURS - 1 }),
            Field::new("width", Encoding::UInt { max: MAX_WIDTH }),
            Field::new("down", Encoding::Bool),
        ]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.extend([
            i64::from(self.colour),
            i64::from(self.width),
            i64::from(self.down),
        ]);
    }
    fn read(w: &[i64]) -> Self {
        Pen {
            colour: w[0] as u32,
            width: w[1] as u32,
            down: w[2] != 0,
        }
    }
}

/// A player's display name, shown on its cursor.
#[derive(Component, Debug, Clone, PartialEq, Eq, Default)]
pub struct Name(pub String);

impl Replicate for Name {
    const NAME: &'static str = "Name";
    fn fields() -> Vec<Field> {
        vec![Field::new(
            "name",
            Encoding::Str {
                max_bytes: NAME_BYTES,
            },
        )]
    }
    fn write(&self, out: &mut Vec<i64>) {
        str_words(&self.0, NAME_BYTES, out);
    }
    fn read(w: &[i64]) -> Self {
        Name(String::from_utf8_lossy(&str_bytes(w).unwrap_or_default()).into_owned())
    }
}

/// Longest chat line, in bytes of UTF-8.
pub const CHAT_BYTES: u8 = 48;

fn chat_text() -> Field {
    Field::new(
        "text",
        Encoding::Str {
            max_bytes: CHAT_BYTES,
        },
    )
}

/// A chat line a player says (a client event: reliable and in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Say(pub String);

impl Replicate for Say {
    const NAME: &'static str = "Say";
    fn fields() -> Vec<Field> {
        vec![chat_text()]
    }
    fn write(&self, out: &mut Vec<i64>) {
        str_words(&self.0, CHAT_BYTES, out);
    }
    fn read(w: &[i64]) -> Self {
        Say(String::from_utf8_lossy(&str_bytes(w).unwrap_or_default()).into_owned())
    }
}

/// A chat line as everyone on the board gets it (a server event): who said it and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    /// The player who said it.
    pub from: NetId,
    /// What they said.
    pub text: String,
}

impl Replicate for Chat {
    const NAME: &'static str = "Chat";
    fn fields() -> Vec<Field> {
        vec![Field::new("from", Encoding::EntityRef), chat_text()]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.push(i64::from(self.from.0));
        str_words(&self.text, CHAT_BYTES, out);
    }
    fn read(w: &[i64]) -> Self {
        Chat {
            from: NetId(u32::try_from(w[0]).unwrap_or(0)),
            text: String::from_utf8_lossy(&str_bytes(&w[1..]).unwrap_or_default()).into_owned(),
        }
    }
}

/// Says every chat line a player sent this tick to everyone on the board, in order.
fn chat(players: Query<(&Net, &Inbox)>, mut events: ResMut<ServerEvents>) {
    for (net, inbox) in &players {
        for Say(text) in inbox.read::<Say>() {
            events.broadcast(&Chat { from: net.0, text });
        }
    }
}

/// One straight piece of a pen stroke. It never changes after it is drawn.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stroke {
    /// Start, board units.
    pub from: (i64, i64),
    /// End, board units.
    pub to: (i64, i64),
    /// Colour index.
    pub colour: u32,
    /// Width, board units.
    pub width: u32,
    /// The player who drew it (its cursor entity's id).
    pub author: NetId,
}

impl Replicate for Stroke {
    const NAME: &'static str = "Stroke";
    fn fields() -> Vec<Field> {
        vec![
            Field::new("x0", coordinate()),
            Field::new("y0", coordinate()),
            Field::new("x1", coordinate()),
            Field::new("y1", coordinate()),
            Field::new("colour", Encoding::UInt { max: COLOURS - 1 }),
            Field::new("width", Encoding::UInt { max: MAX_WIDTH }),
            Field::new("author", Encoding::EntityRef),
        ]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.extend([
            self.from.0,
            self.from.1,
            self.to.0,
            self.to.1,
            i64::from(self.colour),
            i64::from(self.width),
            i64::from(self.author.0),
        ]);
    }
    fn read(w: &[i64]) -> Self {
        Stroke {
            from: (w[0], w[1]),
            to: (w[2], w[3]),
            colour: w[4] as u32,
            width: w[5] as u32,
            author: NetId(w[6] as u32),
        }
    }
}

/// One tick of a player's controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Draw {
    /// Cursor position, board units.
    pub x: i64,
    /// Cursor position, board units.
    pub y: i64,
    /// The pen is down.
    pub down: bool,
    /// Pen colour.
    pub colour: u32,
    /// Pen width (0 is drawn as 1).
    pub width: u32,
    /// Clear the whole board.
    pub clear: bool,
}

impl Replicate for Draw {
    const NAME: &'static str = "Draw";
    fn fields() -> Vec<Field> {
        vec![
            Field::new("x", coordinate()),
            Field::new("y", coordinate()),
            Field::new("down", Encoding::Bool),
            Field::new("colour", Encoding::UInt { max: COLOURS - 1 }),
            Field::new("width", Encoding::UInt { max: MAX_WIDTH }),
            Field::new("clear", Encoding::Bool),
        ]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.extend([
            self.x,
            self.y,
            i64::from(self.down),
            i64::from(self.colour),
            i64::from(self.width),
            i64::from(self.clear),
        ]);
    }
    fn read(w: &[i64]) -> Self {
        Draw {
            x: w[0],
            y: w[1],
            down: w[2] != 0,
            colour: w[3] as u32,
            width: w[4] as u32,
            clear: w[5] != 0,
        }
    }
}

/// The board, sent once in the welcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Board {
    /// Board units across (and down).
    pub size: i64,
    /// Strokes kept at most; the oldest go first.
    pub max_strokes: u32,
    /// Players at most.
    pub max_players: u32,
}

impl Replicate for Board {
    const NAME: &'static str = "Board";
    fn fields() -> Vec<Field> {
        vec![
            Field::new("size", Encoding::VarUInt),
            Field::new("max_strokes", Encoding::VarUInt),
            Field::new("max_players", Encoding::VarUInt),
        ]
    }
    fn write(&self, out: &mut Vec<i64>) {
        out.extend([
            self.size,
            i64::from(self.max_strokes),
            i64::from(self.max_players),
        ]);
    }
    fn read(w: &[i64]) -> Self {
        Board {
            size: w[0],
            max_strokes: w[1] as u32,
            max_players: w[2] as u32,
        }
    }
}

/// The whiteboard's settings: the `[games.whiteboard]` section of the server's TOML file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhiteboardConfig {
    /// Players on the board at most; one more is refused with 1013. Default 32.
    pub max_players: u32,
    /// Strokes kept at most (memory and full-snapshot size are bounded by it); past it the
    /// oldest stroke is removed for each new one. Default 20000.
    pub max_strokes: u32,
}

impl Default for WhiteboardConfig {
    fn default() -> Self {
        WhiteboardConfig {
            max_players: 32,
            max_strokes: 20_000,
        }
    }
}

/// Where a player's pen was down last tick, to draw the next piece from.
#[derive(Component, Debug, Default)]
struct LastPoint(Option<(i64, i64)>);

/// Every stroke, oldest first, and the cap.
#[derive(Resource, Debug)]
struct Strokes {
    order: VecDeque<Entity>,
    max: usize,
}

/// A clear was asked for this tick.
#[derive(Resource, Debug, Default)]
struct ClearRequested(bool);

/// The whiteboard game.
#[derive(Debug)]
pub struct Whiteboard;

/// The whiteboard's browser page (the SDK is served beside it).
pub const PAGE: &[Asset] = &[
    Asset::html("/", include_str!("../web/index.html")),
    Asset::script("/app.js", include_str!("../web/app.js")),
];

impl Game for Whiteboard {
    const NAME: &'static str = "whiteboard";
    type Config = WhiteboardConfig;

    fn build(app: &mut GameApp, config: &WhiteboardConfig) -> Result<(), String> {
        if config.max_players == 0 || config.max_strokes == 0 {
            return Err("max_players and max_strokes must be positive".into());
        }
        app.world_mut().insert_resource(Strokes {
            order: VecDeque::new(),
            max: config.max_strokes as usize,
        });
        app.world_mut().insert_resource(ClearRequested::default());
        app.replicate::<Cursor>()
            .replicate::<Pen>()
            .replicate::<Name>()
            .replicate::<Stroke>()
            .input::<Draw>()
            .client_event::<Say>()
            .server_event::<Chat>()
            .statics([Board {
                size: BOARD_SIZE,
                max_strokes: config.max_strokes,
                max_players: config.max_players,
            }])
            .player_cap(config.max_players as usize)
            .add_systems((draw, clear, chat).chain())
            .on_join(join)
            .on_leave(leave)
            .page(PAGE);
        Ok(())
    }
}

/// A cursor in the middle of the board, pen up.
fn join(world: &mut World, joined: &Joined) -> Entity {
    world
        .spawn((
            Cursor {
                x: BOARD_SIZE / 2,
                y: BOARD_SIZE / 2,
            },
            Pen {
                colour: 0,
                width: 3,
                down: false,
            },
            Name(joined.name.clone()),
            LastPoint::default(),
        ))
        .id()
}

/// The player's cursor goes; its strokes stay on the board.
fn leave(world: &mut World, entity: Entity) {
    world.despawn(entity);
}

/// Moves cursors to their inputs and draws a piece of stroke for every move with the pen down.
fn draw(
    mut commands: Commands,
    mut players: Query<(&Net, &Controls, &mut Cursor, &mut Pen, &mut LastPoint)>,
    mut strokes: ResMut<Strokes>,
    mut clear: ResMut<ClearRequested>,
) {
    for (net, controls, mut cursor, mut pen, mut last) in &mut players {
        for input in controls.this_tick::<Draw>() {
            let at = (input.x, input.y);
            cursor.set_if_neq(Cursor { x: at.0, y: at.1 });
            pen.set_if_neq(Pen {
                colour: input.colour,
                width: input.width.max(1),
                down: input.down,
            });
            if input.down
                && let Some(from) = last.0
                && from != at
            {
                let e = commands
                    .spawn(Stroke {
                        from,
                        to: at,
                        colour: input.colour,
                        width: input.width.max(1),
                        author: net.0,
                    })
                    .id();
                strokes.order.push_back(e);
                if strokes.order.len() > strokes.max
                    && let Some(oldest) = strokes.order.pop_front()
                {
                    commands.entity(oldest).despawn();
                }
            }
            last.0 = input.down.then_some(at);
            clear.0 |= input.clear;
        }
    }
}

/// Removes every stroke at once when anyone asked for it this tick.
fn clear(mut commands: Commands, mut strokes: ResMut<Strokes>, mut clear: ResMut<ClearRequested>) {
    if !std::mem::take(&mut clear.0) {
        return;
    }
    for e in strokes.order.drain(..) {
        commands.entity(e).despawn();
    }
}

#[cfg(test)]
mod tests;
