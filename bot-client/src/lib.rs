//! Tickwire client library and headless bot swarm.
//!
//! Data flows: [`client::Client`] connects, says hello and reads the welcome (with the game's
//! schema); each snapshot it receives is decoded through the schema into its
//! [`tickwire_protocol::Replica`] and verified against the server's checksum, and its
//! acknowledgement rides on the next input. A [`bot`] drives one client with its game's
//! [`tickwire_protocol::behaviour::Behaviour`] and measures it; [`swarm`] runs many bots and
//! folds their measurements into a [`report::Report`]. Nothing here knows a game: the stock
//! `tickwire-bots` binary passes the behaviours of the games it bundles.
//!
//! - [`client`]: one connection: hello/welcome, inputs, snapshots applied and verified, acks.
//! - [`bot`]: one bot's loop and its measurements (round trip, bytes, snapshot rate).
//! - [`swarm`]: ramp-up, measured window, live progress, and the report.
//! - [`report`]: the report's fields, its JSON form, its readable summary, and why a run
//!   failed.
//! - [`scrape`]: the server's `/metrics`, read around the window for its CPU time.

pub mod bot;
pub mod client;
pub mod report;
pub mod scrape;
pub mod swarm;
pub mod timing;

pub use client::{Client, ClientError, Event};
pub use report::Report;
pub use swarm::{SwarmConfig, run_swarm};
