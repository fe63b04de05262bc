//! Tickwire wire protocol, shared by the server, the bot client and any other client.
//!
//! This crate does no I/O, reads no clock and spawns no threads, so it can be unit-tested, fuzzed
//! and benched alone. Data flows client -> server as [`ClientMsg`] and server -> client as
//! [`ServerMsg`], each one WebSocket binary frame encoded by [`codec`].
//!
//! Modules:
//! - [`tick`]: the [`Tick`] newtype with wrap-aware ordering.
//! - [`msg`]: every message.
//! - [`schema`]: a game's schema (components, fields, encodings, delta modes, input, static
//!   records) and the [`schema::Replicate`] trait a game implements for its types.
//! - [`state`]: entity state as schema words, its hash and the view checksum.
//! - [`bits`]: bit-level writing and reading.
//! - [`body`]: the schema-driven snapshot body: written by servers, applied by clients.
//! - [`codec`]: the only place that calls bincode; every decode is bounded by a size limit.
//! - [`replica`]: a client's replica of any game, fed by snapshot bodies and verified.
//! - [`input`]: validation of input against the schema, shared by the server and clients.
//! - [`behaviour`]: what a bot of some game does each tick (each game implements it).
//! - [`close`]: the WebSocket close codes the server uses, with their meaning.

pub mod behaviour;
pub mod bits;
pub mod body;
pub mod close;
pub mod codec;
pub mod input;
pub mod msg;
pub mod replica;
pub mod schema;
pub mod state;
pub mod tick;

pub use codec::CodecError;
pub use input::{InputError, InputWords};
pub use msg::{
    ClientMsg, EventRecord, EventsMsg, InputMsg, NetId, RoomRequest, ServerMsg, Snapshot,
    SnapshotHeader, StaticRecord, Visibility, Welcome,
};
pub use replica::{ApplyError, Replica, View};
pub use schema::{Delta, Encoding, Field, GameSchema, Replicate};
pub use state::{EntityState, Words};
pub use tick::Tick;

/// Version of the protocol described in `docs/PROTOCOL.md`; a client must send it in its hello.
pub const PROTOCOL_VERSION: u16 = 10;

/// The unit of [`SnapshotHeader::input_lead`], microseconds.
pub const INPUT_LEAD_UNIT_US: i64 = 100;
