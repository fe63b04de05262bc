//! Replication: what each client is told about the world each tick.
//!
//! Data flows one way through it: the tick captures the world once into a [`WorldFrame`]
//! (sorted by net id, hashed once per entity) and keeps the last `history_ticks` frames. For each
//! client it then picks a baseline (the newest tick the client acknowledged that is still in
//! history, or none), takes the encoded delta body for that baseline (built once per distinct
//! baseline per tick and shared between clients), prefixes the client's own header and hands the
//! frame to the client's session without waiting.
//!
//! - [`link`]: the per-client replication state (the client's channels from
//!   [`crate::boundary`], acknowledged tick, ticks sent and skipped, recent views).
//! - [`frame`]: world frames, their history, and delta building.
//! - [`interest`]: the grid that finds each client's visible set in `aoi` mode.
//!
//! In `aoi` mode each client's view is the entities within the radius of its player; the
//! indices it saw at its acknowledged tick and every tick since are kept on its link (older
//! views are never a baseline again: the acknowledged tick only moves forward), so its next
//! delta is built between its view at its acknowledged tick and its view now (cost per client:
//! what it sees).

pub mod cells;
pub mod frame;
pub mod link;
mod records;

pub use cells::{ViewScratch, Viewpoint};
pub use frame::{FrameEntity, Replication, ViewsBuild, WorldFrame};
pub use link::{ClientLink, EventsError, LagLimits, SkipWindow};
