//! Every message of the protocol and the replicated entity state.
//!
//! Messages are named by direction: [`ClientMsg`] travels client -> server, [`ServerMsg`]
//! server -> client. `docs/PROTOCOL.md` gives the byte layout of each.

use crate::tick::Tick;
use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// Network identifier of a replicated entity; stable for the entity's lifetime, never reused
/// while any client could still hold it in a baseline.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Debug,
    Encode,
    Decode,
    Serialize,
    Deserialize,
)]
pub struct NetId(pub u32);

/// A message from a client to the server.
#[derive(Clone, PartialEq, Debug, Encode, Decode, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First message on a connection: the protocol version the client speaks and a display name.
    Hello {
        /// Must equal [`crate::PROTOCOL_VERSION`].
        version: u16,
        /// Display name, at most [`crate::input::MAX_NAME_BYTES`] bytes of UTF-8.
        name: String,
    },
    /// The player's controls for one tick.
    Input(Input),
    /// The client has applied the snapshot of this tick and may receive deltas against it.
    Ack {
        /// Tick of the snapshot applied.
        tick: Tick,
    },
    /// Round-trip probe; the server answers with [`ServerMsg::Pong`] carrying the same nonce.
    Ping {
        /// Opaque value echoed back.
        nonce: u64,
    },
    /// The client has dropped its replica (a snapshot failed to verify): the server forgets
    /// every acknowledgement so far and sends the next snapshot in full.
    Resync {
        /// Tick of the snapshot that failed (for the server's logs).
        tick: Tick,
    },
}

/// One tick of player controls.
#[derive(Clone, Copy, PartialEq, Debug, Default, Encode, Decode, Serialize, Deserialize)]
pub struct Input {
    /// Strictly increasing per connection; echoed in snapshots as `last_input_seq`.
    pub seq: u32,
    /// Move direction, x component; the vector's length is at most 1.
    pub move_x: f32,
    /// Move direction, y component.
    pub move_y: f32,
    /// Aim angle in radians.
    pub aim: f32,
    /// True while the fire button is held.
    pub fire: bool,
}

/// A message from the server to a client.
#[derive(Clone, PartialEq, Debug, Encode, Decode, Serialize, Deserialize)]
pub enum ServerMsg {
    /// Answer to a valid hello: who the client is and what the world looks like.
    Welcome(Welcome),
    /// The world as the client sees it, as a delta against a baseline or in full.
    Snapshot(Snapshot),
    /// Answer to [`ClientMsg::Ping`].
    Pong {
        /// The nonce of the ping.
        nonce: u64,
        /// The server's current tick.
        tick: Tick,
    },
    /// Sent just before the server closes the connection: the close code and a full reason.
    Error {
        /// The WebSocket close code that follows (see [`crate::close`]).
        code: u16,
        /// Human-readable reason; may be longer than a close frame allows.
        message: String,
    },
}

/// The server's answer to a valid hello.
#[derive(Clone, PartialEq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct Welcome {
    /// Protocol version of the server.
    pub version: u16,
    /// The entity this client controls.
    pub player: NetId,
    /// Simulation ticks per second.
    pub tick_rate_hz: u16,
    /// The server's tick when the client joined.
    pub tick: Tick,
    /// The static arena.
    pub arena: ArenaInfo,
    /// Which entities this client is sent.
    pub visibility: Visibility,
}

/// Which entities a client is sent.
#[derive(Clone, Copy, PartialEq, Debug, Encode, Decode, Serialize, Deserialize)]
pub enum Visibility {
    /// Every entity.
    Global,
    /// Entities within `radius` world units of the client's player, and the player itself.
    Aoi {
        /// The radius in world units.
        radius: f32,
    },
}

/// The static part of the world, sent once in the welcome.
#[derive(Clone, PartialEq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct ArenaInfo {
    /// Arena width in world units; x lies in `[0, width]`.
    pub width: f32,
    /// Arena height in world units; y lies in `[0, height]`.
    pub height: f32,
    /// Axis-aligned walls.
    pub walls: Vec<Rect>,
    /// Radius of a player's collision circle.
    pub player_radius: f32,
    /// Radius of a projectile.
    pub projectile_radius: f32,
    /// Player speed in world units per second.
    pub player_speed: f32,
    /// Projectile speed in world units per second.
    pub projectile_speed: f32,
}

/// An axis-aligned rectangle: `min` corner inclusive, `max` corner inclusive.
#[derive(Clone, Copy, PartialEq, Debug, Encode, Decode, Serialize, Deserialize)]
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

/// The replicated state of one entity, in the fixed-point forms of [`crate::quant`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum EntityState {
    /// A player-controlled avatar.
    Player(PlayerState),
    /// A projectile in flight.
    Projectile(ProjectileState),
}

/// A player: the only kind of entity whose state changes after it is created.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct PlayerState {
    /// Position, x, in position units.
    pub x: u16,
    /// Position, y, in position units.
    pub y: u16,
    /// Aim in angle steps (1024 per turn).
    pub aim: u16,
    /// Hit points `0..=100`; 0 while dead.
    pub hp: u8,
    /// Kills.
    pub score: u32,
}

/// A projectile. It never changes after it is created: its position at tick `t` is
/// `(x + vx * (t - born), y + vy * (t - born))` in position units, computed the same way by the
/// server and by every client.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ProjectileState {
    /// Position at `born`, x, in position units.
    pub x: u16,
    /// Position at `born`, y, in position units.
    pub y: u16,
    /// Velocity, x, in position units per tick.
    pub vx: i16,
    /// Velocity, y, in position units per tick.
    pub vy: i16,
    /// The tick it was fired.
    pub born: Tick,
    /// The player that fired it.
    pub owner: NetId,
}

impl ProjectileState {
    /// Position at `tick`, in position units (may lie outside the arena).
    #[must_use]
    pub fn position_at(&self, tick: Tick) -> (i32, i32) {
        let age = tick.since(self.born);
        (
            i32::from(self.x) + i32::from(self.vx) * age,
            i32::from(self.y) + i32::from(self.vy) * age,
        )
    }
}

/// One entity's id and full state, as carried by a snapshot's `created` list.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EntityUpdate {
    /// The entity.
    pub id: NetId,
    /// Its state at the snapshot's tick.
    pub state: EntityState,
}

/// How a player changed between the baseline and the snapshot: only the fields that changed,
/// as small differences where that is shorter.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct PlayerDelta {
    /// The player.
    pub id: NetId,
    /// Change of x in position units (0: unchanged).
    pub dx: i32,
    /// Change of y in position units (0: unchanged).
    pub dy: i32,
    /// Shortest turn of the aim in angle steps, in `-512..512` (0: unchanged).
    pub daim: i16,
    /// New hit points, if they changed.
    pub hp: Option<u8>,
    /// New score, if it changed.
    pub score: Option<u32>,
}

/// A snapshot: per-client header, then a body that may be shared by clients with the same view.
#[derive(Clone, PartialEq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct Snapshot {
    /// Tick, baseline and input acknowledgement.
    pub header: SnapshotHeader,
    /// The changes against the baseline and the checksum of the resulting view.
    pub body: SnapshotBody,
}

/// The per-client part of a snapshot.
#[derive(Clone, Copy, PartialEq, Debug, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// The tick this snapshot describes.
    pub tick: Tick,
    /// The acknowledged tick the body is a delta against, or `None` for a full snapshot.
    pub baseline: Option<Tick>,
    /// Sequence number of the latest input the server had applied at this tick (0 if none).
    pub last_input_seq: u32,
}

/// The changes that turn the baseline view into the view at the snapshot's tick. Each list is
/// sorted by id, ascending, without repeats (the encoding relies on it).
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct SnapshotBody {
    /// Entities that are in the view now but were not in the baseline (or were replaced).
    pub created: Vec<EntityUpdate>,
    /// Players in both whose state differs.
    pub changed: Vec<PlayerDelta>,
    /// Entities that were in the baseline and are gone now (or were replaced).
    pub removed: Vec<NetId>,
    /// [`crate::view_checksum`] of the whole view after applying this body.
    pub checksum: u32,
}
