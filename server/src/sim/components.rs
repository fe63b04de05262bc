//! The engine's components and resources in the simulation world. The game's own live in the
//! game crate; [`crate::game`] has the ones a game touches ([`Net`], [`Controls`], [`Clock`]).

use crate::replication::{ClientLink, LagLimits};
use crate::stats::ServerStats;
use bevy_ecs::prelude::*;
use std::sync::Arc;
use tickwire_protocol::{NetId, Visibility};

pub use crate::game::{Clock, Controls, Net};

/// The connection of the client that controls this entity. Only the engine's ingest adds or
/// removes it.
#[derive(Component)]
pub struct Link(pub ClientLink);

/// The engine's settings, converted to ticks.
#[derive(Resource, Debug, Clone)]
pub struct Rules {
    /// Which entities each client is sent (announced in the welcome).
    pub visibility: Visibility,
    /// Join requests handled per tick at most.
    pub joins_per_tick: usize,
    /// Client messages handled per client per tick at most (the queue length).
    pub events_per_tick: usize,
    /// How far behind a client may fall before it is closed.
    pub lag: LagLimits,
    /// Ticks of views remembered per client (the world history length).
    pub history_ticks: usize,
    /// Ticks a dropped player is held for a resume (0: resume is off).
    pub resume_grace_ticks: u32,
    /// Server events kept per client until acknowledged, at most (count, bytes).
    pub max_pending_events: usize,
    /// See `max_pending_events`.
    pub max_pending_event_bytes: usize,
    /// Threads that build `aoi` views (1: the tick thread alone), and the clients a
    /// room needs before it uses them.
    pub replicate_threads: usize,
    /// See `replicate_threads`.
    pub parallel_views_min_clients: usize,
}

/// Allocator of network ids. Ids count up from 1; after 2^32 - 1 allocations they wrap, and
/// from then on an id is handed out only if no entity holds it: not one alive now, not one
/// allocated since the last capture, and not one in any frame of the world history (so in no
/// client's baseline window either).
#[derive(Resource, Debug, Default)]
pub struct NetIds {
    next: u32,
    wrapped: bool,
    /// Ids allocated since the last capture (after the wrap only): alive, but in no frame yet.
    since_capture: Vec<NetId>,
}

impl NetIds {
    /// An allocator whose next id is `next + 1` (tests start it near the wrap).
    #[must_use]
    pub fn starting_after(next: u32) -> NetIds {
        NetIds {
            next,
            ..NetIds::default()
        }
    }

    /// A fresh id, never 0 and never one that `in_history` reports in use.
    pub fn allocate(&mut self, in_history: impl Fn(NetId) -> bool) -> NetId {
        loop {
            self.next = match self.next.checked_add(1) {
                Some(n) => n,
                None => {
                    self.wrapped = true;
                    1
                }
            };
            let id = NetId(self.next);
            if !self.wrapped {
                return id;
            }
            // Terminates: fewer ids are in use than there are ids.
            if !in_history(id) && !self.since_capture.contains(&id) {
                self.since_capture.push(id);
                return id;
            }
        }
    }

    /// The world was captured: every live entity is in the newest frame now.
    pub fn captured(&mut self) {
        self.since_capture.clear();
    }
}

/// The fault-injection hook, and the client being starved, if any.
#[derive(Resource, Debug)]
pub struct FaultHooks {
    /// Requests from the test.
    pub faults: Arc<super::Faults>,
    /// The client being starved.
    pub starved: Option<crate::boundary::ClientId>,
}

/// Counters shared with the network side.
#[derive(Resource, Clone)]
pub struct Stats(pub Arc<ServerStats>);
