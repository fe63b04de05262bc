//! Tickwire server: WebSocket sessions feeding a fixed-tick `bevy_ecs` world that replicates
//! per-client snapshot deltas.
//!
//! Data flows: socket -> [`net`] session (decode, validate) -> bounded channel -> [`sim`] tick
//! thread (ingest, simulate) -> [`replication`] (delta per client against its acknowledged
//! baseline) -> bounded outbox -> session -> socket.
//!
//! - [`game`]: the game API: [`Game`], [`GameApp`] (what a game registers), [`GameDef`], and
//!   the components a game touches ([`Net`], [`Controls`], [`Clock`]).
//! - [`server`]: [`Server`], the composition root: start (validate, build the game, bind,
//!   spawn) and shutdown.
//! - [`config`]: the one [`Config`] struct, every limit and default.
//! - [`boundary`]: the contract between sessions and the tick thread (joins, client events,
//!   frames, kicks, leave reasons).
//! - [`net`]: the listeners (the game port's accept loop with its connection caps, the admin
//!   port), one session per socket, and shutdown.
//! - [`sim`]: the world, the engine's systems in tick order, and the pool of tick threads.
//! - [`replication`]: world frames, their history, deltas, interest, and per-client state.
//! - [`spatial`]: the one spatial grid (interest management here; games may use it too).
//! - [`stats`]: counters shared by every part.
//! - [`telemetry`]: tick and phase histograms, health, and the `/metrics` text.
//! - [`token`]: signed join tokens (Ed25519): minting, checking, single use.
//! - [`process`]: the process's CPU time, memory and open-file limit.
//! - [`error`]: the crate's error type.
//! - [`rooms`]: the registry of rooms (running instances of the game): seats, join-or-create,
//!   caps, disposal, listings.
//! - [`harness`]: a socket-less client of the simulation, shared by tests, benches and headroom.
//! - [`headroom`]: N socket-less clients around a real simulation, and the "how many players
//!   fit" and "how many rooms per core" reports.

pub mod boundary;
pub mod config;
pub mod error;
pub mod game;
pub mod harness;
pub mod headroom;
pub mod net;
pub mod process;
pub mod replication;
pub mod rooms;
pub mod server;
pub mod sim;
pub mod spatial;
pub mod stats;
pub mod telemetry;
pub mod token;

pub use config::{AoiViews, Config, VisibilityMode};
pub use error::ServerError;
pub use game::{
    Clock, Controls, Game, GameApp, GameDef, Held, Inbox, Joined, Net, Room, ServerEvents,
};
pub use net::web::Asset;
pub use rooms::{RoomInfo, Rooms};
pub use server::Server;
pub use stats::ServerStats;
