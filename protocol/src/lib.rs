//! Tickwire wire protocol, shared by the server, the bot client and any other client.
//!
//! This crate does no I/O, reads no clock and spawns no threads, so it can be unit-tested, fuzzed
//! and benched alone. Data flows client -> server as [`ClientMsg`] and server -> client as
//! [`ServerMsg`], each one WebSocket binary frame encoded by [`codec`].
//!
//! Modules:
//! - [`tick`]: the [`Tick`] newtype with wrap-aware ordering.
//! - [`msg`]: every message and the entity state that is replicated.
//! - [`quant`]: the fixed-point forms of positions, velocities and angles.
//! - [`scenario`]: the reference bot behaviour "wander", pure and seeded.
//! - [`codec`]: the only place that calls bincode; every decode is bounded by a size limit.
//! - [`delta`]: field-level player deltas, made by the server and applied by clients.
//! - [`checksum`]: the hash of a client's view of the world, used to detect desyncs.
//! - [`view`]: a client's replica of the world and how a snapshot delta is applied to it.
//! - [`input`]: validation of player input, shared by the server (enforcing) and clients.
//! - [`schema`]: a game's schema (components, fields, encodings, delta modes, input, static
//!   records) and the [`schema::Replicate`] trait a game implements for its types.
//! - [`state`]: entity state as schema words, its hash and the view checksum.
//! - [`bits`]: bit-level writing and reading.
//! - [`body`]: the schema-driven snapshot body: written by servers, applied by clients.
//! - [`replica`]: a client's replica of any game, fed by snapshot bodies and verified.
//! - [`close`]: the WebSocket close codes the server uses, with their meaning.

pub mod bits;
pub mod body;
pub mod checksum;
pub mod close;
pub mod codec;
pub mod delta;
pub mod input;
pub mod msg;
pub mod quant;
pub mod replica;
pub mod scenario;
pub mod schema;
pub mod state;
pub mod tick;
pub mod view;

pub use checksum::{entity_hash, view_checksum};
pub use codec::CodecError;
pub use input::InputError;
pub use msg::{
    ArenaInfo, ClientMsg, EntityState, EntityUpdate, Input, NetId, PlayerDelta, PlayerState,
    ProjectileState, Rect, ServerMsg, Snapshot, SnapshotBody, SnapshotHeader, Visibility, Welcome,
};
pub use tick::Tick;
pub use view::{ApplyError, View};

/// Version of the protocol described in `docs/PROTOCOL.md`; a client must send it in its hello.
pub const PROTOCOL_VERSION: u16 = 3;
