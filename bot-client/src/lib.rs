//! Tickwire client library and headless bot swarm.
//!
//! Data flows: [`client::Client`] connects, says hello and reads the welcome; each snapshot it
//! receives is applied to its [`tickwire_protocol::view::Replica`] and verified against the
//! server's checksum, and the caller acks it. A [`bot`] drives one client with the scenario's
//! "wander" behaviour and measures it; [`swarm`] runs many bots and folds their measurements
//! into a [`report::Report`].
//!
//! - [`client`]: one connection: hello/welcome, inputs, snapshots applied and verified, acks.
//! - [`wander`]: the reference bot behaviour of the "arena" scenario, seeded.
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

/// The scenario's "wander" behaviour (it lives in the protocol crate, so the server's headless
/// harness uses the same one).
pub mod wander {
    pub use tickwire_protocol::scenario::Wander;
}

pub use client::{Client, ClientError, Event};
pub use report::Report;
pub use swarm::{SwarmConfig, run_swarm};
