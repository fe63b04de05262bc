//! Every message of the protocol.
//!
//! Messages are named by direction: [`ClientMsg`] travels client -> server, [`ServerMsg`]
//! server -> client. `docs/PROTOCOL.md` gives the byte layout of each.

use crate::schema::{GameSchema, Replicate};
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
        /// Which room to join (see [`RoomRequest`]).
        room: RoomRequest,
    },
    /// The player's controls for one tick, with the client's latest acknowledgement riding
    /// along (one upstream message per tick).
    Input(InputMsg),
    /// The client has applied the snapshot of this tick and may receive deltas against it;
    /// sent alone only when there is no input to carry it.
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
    /// Instead of a hello, first message of a connection that takes over a player whose
    /// connection dropped: the server answers with a welcome for the same player and room (and
    /// a new secret), then snapshots from the client's last applied tick on.
    Resume {
        /// Must equal [`crate::PROTOCOL_VERSION`].
        version: u16,
        /// The resume secret of the last welcome.
        secret: String,
        /// The newest snapshot tick the client applied, if any: the first snapshot is a delta
        /// against it while the room still holds it, else full.
        last_tick: Option<Tick>,
        /// Sequence number of the newest server event the client received (0: none): the
        /// server sends the ones after it again.
        events_received: u32,
    },
    /// Events of the game's `client_events` types, and the acknowledgement of the server's
    /// events.
    Events(EventsMsg),
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
    /// Events of the game's `server_events` types, and the acknowledgement of the client's
    /// events.
    Events(EventsMsg),
}

/// Reliable ordered events one way, and the acknowledgement of the other way's.
///
/// Each direction numbers its events 1, 2, 3, ... for the player's whole life, across resumes.
/// A receiver takes event `n` only after `n - 1`, ignores one it already has, and acknowledges
/// the newest it has taken; a sender keeps every event until it is acknowledged, and sends
/// again the ones after what the other side reports on a resume.
#[derive(Clone, PartialEq, Eq, Debug, Default, Encode, Decode, Serialize, Deserialize)]
pub struct EventsMsg {
    /// The newest event of the other direction taken so far (0: none).
    pub ack: u32,
    /// Sequence number of `events[0]`.
    pub first: u32,
    /// The events, in order.
    pub events: Vec<EventRecord>,
}

/// One event: its type (an index into the schema's `client_events` or `server_events`) and its
/// words.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct EventRecord {
    /// Index of its type.
    pub kind: u16,
    /// Its words.
    pub words: Vec<i64>,
}

/// One tick of player controls: written by hand in the codec (see `docs/PROTOCOL.md`, "Input").
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct InputMsg {
    /// Strictly increasing per connection; echoed in snapshots as `last_input_seq`.
    pub seq: u32,
    /// The newest snapshot tick the client has applied, if any.
    pub ack: Option<Tick>,
    /// The tick the client means this input for (see `docs/PROTOCOL.md`, "Input timing"): the
    /// server reports how early it arrived for that tick, or counts it late. `None`: the next
    /// tick to run, never late.
    #[serde(default)]
    pub tick: Option<Tick>,
    /// The newest server event the client has taken, when it owes the server that
    /// acknowledgement (see `docs/PROTOCOL.md`, "Events"); 0: nothing to acknowledge. It rides
    /// here so that a client that takes events every tick still sends one message a tick.
    #[serde(default)]
    pub events_ack: u32,
    /// The input's fields as a record of the game's input schema
    /// ([`crate::body::write_record`]).
    pub fields: Vec<u8>,
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
    /// The id of the room the client joined.
    pub room: String,
    /// The secret that resumes this player after a dropped connection
    /// ([`ClientMsg::Resume`]); a new one with every welcome; empty when the server does not
    /// hold dropped players.
    pub resume: String,
    /// Sequence number of the newest client event the server has taken from this player (0 on
    /// a join): after a resume the client sends the ones after it again.
    pub events_received: u32,
    /// Which entities this client is sent.
    pub visibility: Visibility,
    /// The game: its components, input and static record types.
    pub schema: GameSchema,
    /// The game's static data: records of the schema's static types.
    pub statics: Vec<StaticRecord>,
}

impl Welcome {
    /// The static records of type `S`, typed.
    pub fn statics<S: Replicate>(&self) -> impl Iterator<Item = S> + '_ {
        let kind = self.schema.static_index(S::NAME);
        self.statics
            .iter()
            .filter(move |r| Some(usize::from(r.kind)) == kind)
            .map(|r| S::read(&r.words))
    }
}

/// Which room a hello asks for. A room is one running instance of the server's game.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub enum RoomRequest {
    /// A room of `game` that has a free seat and whose properties include every pair of
    /// `filter`; if there is none, a new room with `filter` as its properties. An empty `game`
    /// means the server's game.
    JoinOrCreate {
        /// The game's name (as in its schema), or empty.
        game: String,
        /// Properties the room must have, as (key, value) pairs.
        filter: Vec<(String, String)>,
    },
    /// The room with this id (from a listing, or shared by another player).
    Join {
        /// The room's id.
        id: String,
    },
    /// A new room of `game` with these properties (a private match: it is joined by id).
    Create {
        /// The game's name (as in its schema), or empty.
        game: String,
        /// The new room's properties, as (key, value) pairs.
        props: Vec<(String, String)>,
    },
}

impl Default for RoomRequest {
    /// Any room of the server's game with a free seat.
    fn default() -> Self {
        RoomRequest::JoinOrCreate {
            game: String::new(),
            filter: Vec::new(),
        }
    }
}

/// One static record: its type (an index into the schema's `statics`) and its words.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct StaticRecord {
    /// Index of its type in [`GameSchema::statics`].
    pub kind: u16,
    /// Its words.
    pub words: Vec<i64>,
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

/// A snapshot: the per-client header, then the body (see [`crate::body`]), which is decoded
/// against the client's baseline view by [`crate::replica::Replica::apply`].
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// Tick, baseline and input acknowledgement.
    pub header: SnapshotHeader,
    /// The encoded body: the rest of the frame.
    pub body: Vec<u8>,
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
    /// How long before the tick it named that input arrived, in units of
    /// [`INPUT_LEAD_UNIT_US`](crate::INPUT_LEAD_UNIT_US) (0.1 ms); negative if it arrived after
    /// that tick had taken its inputs (a late input, applied at the next tick). Clients time
    /// their inputs with it (`docs/PROTOCOL.md`, "Input timing"). 0 before any input.
    #[serde(default)]
    pub input_lead: i16,
}
