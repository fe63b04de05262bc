//! Counters shared between the tick thread, the sessions and whoever watches the server
//! (the stats log line, tests, later a metrics endpoint). All are relaxed atomics: each is an
//! independent count, never used to order other memory.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::boundary::LeaveReason;

/// The close codes counted one by one; any other code counts as the last entry (1011).
pub const COUNTED_CLOSE_CODES: [u16; 15] = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1013, 4001, 4002, 4003, 4004, 4005, 4006, 1011,
];

/// The leave reasons counted, by label (see [`LeaveReason::label`]).
pub const LEAVE_REASONS: [&str; 4] = ["peer_closed", "connection_lost", "violation", "shutdown"];

/// Live counters of one server.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// The tick the simulation last completed.
    pub tick: AtomicU32,
    /// Ticks run since start.
    pub ticks_total: AtomicU64,
    /// Ticks that finished after their deadline.
    pub overruns: AtomicU64,
    /// Ticks skipped because the loop fell more than `max_catchup_ticks` behind.
    pub skipped_ticks: AtomicU64,
    /// Players in the world.
    pub clients: AtomicU64,
    /// Sessions open (upgraded WebSocket connections, joined or not).
    pub sessions: AtomicU64,
    /// Players that joined since start.
    pub joins: AtomicU64,
    /// Players that left since start.
    pub leaves: AtomicU64,
    /// Players that left, by reason (in the order of [`LEAVE_REASONS`]).
    leaves_by_reason: [AtomicU64; LEAVE_REASONS.len()],
    /// Sockets open on the game port, in any phase.
    pub connections: AtomicU64,
    /// Connections refused at accept because `max_connections` sockets were open.
    pub refused_connection_cap: AtomicU64,
    /// Connections refused at accept because their address had `max_connections_per_ip` open.
    pub refused_per_ip_cap: AtomicU64,
    /// Peers that reset their connection (no close frame can reach them).
    pub connections_reset: AtomicU64,
    /// Resync requests: clients that dropped their replica after a failed snapshot.
    pub resyncs: AtomicU64,
    /// Clients closed for receiving snapshots without acknowledging any (4006).
    pub no_ack_kicks: AtomicU64,
    /// Snapshot frames handed to sessions.
    pub snapshots_sent: AtomicU64,
    /// Snapshots skipped because a client's outbox was full.
    pub snapshots_dropped: AtomicU64,
    /// Full (non-delta) snapshots among those sent.
    pub full_snapshots: AtomicU64,
    /// Snapshot payload bytes handed to sessions.
    pub bytes_out: AtomicU64,
    /// Payload bytes received from clients.
    pub bytes_in: AtomicU64,
    /// Inputs accepted by sessions.
    pub inputs_received: AtomicU64,
    /// Inputs rejected as invalid (non-finite values, stale sequence numbers).
    pub inputs_rejected: AtomicU64,
    /// Inputs and acks dropped because a client's queue to the tick thread was full.
    pub inputs_dropped: AtomicU64,
    /// Acks that named a tick never sent to that client, or too old to use.
    pub acks_ignored: AtomicU64,
    /// Connections closed by the server because of something the peer sent.
    pub protocol_closes: AtomicU64,
    /// Messages dropped by the per-connection rate limit.
    pub rate_limited: AtomicU64,
    /// Clients closed for staying too many snapshots behind.
    pub slow_kicks: AtomicU64,
    /// Messages received from clients (binary or text frames).
    pub messages_in: AtomicU64,
    /// Sessions that ended without a close handshake (reset, EOF, write timeout).
    pub connections_lost: AtomicU64,
    /// Sessions that ended with a close frame, by code (see [`COUNTED_CLOSE_CODES`]).
    closes: [AtomicU64; COUNTED_CLOSE_CODES.len()],
    /// HTTP requests answered with an error status instead of an upgrade.
    pub http_refusals: AtomicU64,
}

impl ServerStats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Counts a session that ended with close `code`.
    pub fn record_close(&self, code: u16) {
        let i = COUNTED_CLOSE_CODES
            .iter()
            .position(|c| *c == code)
            .unwrap_or(COUNTED_CLOSE_CODES.len() - 1);
        self.closes[i].fetch_add(1, Relaxed);
    }

    /// Sessions ended per close code so far.
    pub fn closes_by_code(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        COUNTED_CLOSE_CODES
            .iter()
            .zip(&self.closes)
            .map(|(c, n)| (*c, n.load(Relaxed)))
    }

    /// Counts a player that left for `reason`.
    pub fn record_leave(&self, reason: &LeaveReason) {
        self.leaves.fetch_add(1, Relaxed);
        let i = LEAVE_REASONS
            .iter()
            .position(|l| *l == reason.label())
            .unwrap_or(LEAVE_REASONS.len() - 1);
        self.leaves_by_reason[i].fetch_add(1, Relaxed);
    }

    /// Players that left so far, per reason label.
    pub fn leaves_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        LEAVE_REASONS
            .iter()
            .zip(&self.leaves_by_reason)
            .map(|(l, n)| (*l, n.load(Relaxed)))
    }

    /// Reads a counter.
    #[must_use]
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}
