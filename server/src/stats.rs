//! Every counter and gauge of one server, declared once: each field's one-line doc is also its
//! `# HELP` text in `/metrics`, and [`ServerStats::register`] puts them all in the registry under
//! their metric names. They are prometheus-client's own types (atomics inside, shared by
//! cloning), updated from the tick thread and the sessions and read by scrapes, the stats log
//! line and tests. Each is an independent relaxed count, never used to order other memory.

use crate::boundary::LeaveReason;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tickwire_protocol::INPUT_LEAD_UNIT_US;

/// The close codes counted one by one; any other code is counted as `other`.
pub const COUNTED_CLOSE_CODES: [u16; 21] = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013, 4001, 4002, 4003, 4004, 4005, 4006, 4007,
    4008, 4009, 4010, 4011, 4012,
];

/// The leave reasons counted, by label (see [`LeaveReason::label`]).
pub const LEAVE_REASONS: [&str; 4] = ["peer_closed", "connection_lost", "violation", "shutdown"];

/// The label of a close counted by code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabel {
    code: &'static str,
}

/// The label of a leave counted by reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaveLabel {
    reason: &'static str,
}

/// The close codes as label values, in the order of [`COUNTED_CLOSE_CODES`].
const CLOSE_CODE_LABELS: [&str; 21] = [
    "1000", "1001", "1002", "1003", "1007", "1008", "1009", "1011", "1013", "4001", "4002", "4003",
    "4004", "4005", "4006", "4007", "4008", "4009", "4010", "4011", "4012",
];

/// Bucket bounds of `input_lead_seconds`: the first holds exactly the late inputs (a late one
/// is reported at least one unit late, an input on time at zero or more), the others the slack
/// an input arrived with, up to a 30 Hz tick period; an input that named a later tick (a whole
/// period ahead or more) lands past the last.
const INPUT_LEAD_BUCKETS: [f64; 12] = [
    -(INPUT_LEAD_UNIT_US as f64) / 1e6,
    0.0005,
    0.001,
    0.002,
    0.003,
    0.004,
    0.006,
    0.008,
    0.012,
    0.016,
    0.025,
    0.0333,
];

/// How early each timed input arrived: the distribution behind the `input_lead` of the
/// snapshot headers, which report only the newest input each tick applied.
#[derive(Debug, Clone)]
struct InputLeads(Histogram);

impl Default for InputLeads {
    fn default() -> Self {
        InputLeads(Histogram::new(INPUT_LEAD_BUCKETS))
    }
}

macro_rules! server_stats {
    (
        counters { $( #[doc = $chelp:literal] $cfield:ident => $cname:literal, )* }
        gauges { $( #[doc = $ghelp:literal] $gfield:ident => $gname:literal, )* }
    ) => {
        /// Live counters and gauges of one server (metric names in `/metrics` carry the
        /// `tickwire_` prefix, and counters the `_total` suffix).
        #[derive(Debug, Default)]
        pub struct ServerStats {
            $( #[doc = $chelp] pub $cfield: Counter, )*
            $( #[doc = $ghelp] pub $gfield: Gauge, )*
            closes: Family<CloseLabel, Counter>,
            leaves_by_reason: Family<LeaveLabel, Counter>,
            input_leads: InputLeads,
        }

        impl ServerStats {
            /// Registers every counter and gauge, with its name and help text, in `registry`.
            pub fn register(&self, registry: &mut Registry) {
                // Every labelled series exists from the start, at zero.
                for code in CLOSE_CODE_LABELS.iter().copied().chain(["other"]) {
                    let _ = self.closes.get_or_create(&CloseLabel { code });
                }
                for reason in LEAVE_REASONS {
                    let _ = self.leaves_by_reason.get_or_create(&LeaveLabel { reason });
                }
                $( registry.register($cname, $chelp.trim(), self.$cfield.clone()); )*
                $( registry.register($gname, $ghelp.trim(), self.$gfield.clone()); )*
                registry.register(
                    "closes",
                    "Connections the server closed, by WebSocket close code",
                    self.closes.clone(),
                );
                registry.register(
                    "leaves_by_reason",
                    "Players that left, by reason: peer_closed, connection_lost, violation, shutdown",
                    self.leaves_by_reason.clone(),
                );
                registry.register(
                    "input_lead_seconds",
                    "How early each timed input arrived before the tick it named took its inputs; a late one, by how late (negative: all in the first bucket, as counted in inputs_late)",
                    self.input_leads.0.clone(),
                );
            }
        }
    };
}

server_stats! {
    counters {
        /// Ticks run
        ticks_total => "ticks",
        /// Ticks that ended after their deadline
        overruns => "tick_overruns",
        /// Ticks skipped to catch up after an overload
        skipped_ticks => "ticks_skipped",
        /// Players that joined
        joins => "joins",
        /// Players that left
        leaves => "leaves",
        /// Connections refused at accept: max_connections sockets open
        refused_connection_cap => "connections_refused_cap",
        /// Connections refused at accept: max_connections_per_ip open from that address
        refused_per_ip_cap => "connections_refused_per_ip",
        /// Peers that reset their connection (no close frame can reach them)
        connections_reset => "connections_reset",
        /// Clients that dropped their replica after a failed snapshot and asked for a full one
        resyncs => "resyncs",
        /// Clients closed for receiving snapshots without acknowledging any (4006)
        no_ack_kicks => "no_ack_kicks",
        /// Snapshot frames handed to sessions
        snapshots_sent => "snapshots_sent",
        /// Snapshots skipped because a client's outbox was full
        snapshots_dropped => "snapshots_dropped",
        /// Full (non-delta) snapshots sent
        full_snapshots => "full_snapshots",
        /// Snapshot payload bytes handed to sessions
        bytes_out => "bytes_out",
        /// Payload bytes received from clients
        bytes_in => "bytes_in",
        /// Messages received from clients (binary or text frames)
        messages_in => "messages_in",
        /// Inputs accepted
        inputs_received => "inputs_received",
        /// Inputs rejected as invalid (non-finite values, stale sequence numbers)
        inputs_rejected => "inputs_rejected",
        /// Inputs and acks dropped because a client's queue to the tick thread was full
        inputs_dropped => "inputs_dropped",
        /// Inputs that arrived after the tick they named had taken its inputs (applied at the next tick)
        inputs_late => "inputs_late",
        /// Acks naming a tick never sent to that client
        acks_ignored => "acks_ignored",
        /// Connections closed because of something the peer sent
        protocol_closes => "protocol_closes",
        /// Messages and control frames dropped by the per-connection rate limits
        rate_limited => "rate_limited",
        /// Clients closed for reading too slowly (4005)
        slow_kicks => "slow_kicks",
        /// Sessions that ended without a close handshake (reset, EOF, write timeout)
        connections_lost => "connections_lost",
        /// HTTP requests refused
        http_refusals => "http_refusals",
        /// WebSocket upgrades refused for their join token (also counted in http_refusals)
        token_refusals => "token_refusals",
        /// Rooms disposed because the game panicked in them (their clients closed with 1011)
        game_panics => "game_panics",
        /// Rooms created (on demand by a hello, or by the operator)
        rooms_created => "rooms_created",
        /// Rooms disposed (empty for the grace period, or their game panicked)
        rooms_disposed => "rooms_disposed",
        /// Players held for a resume after their connection dropped
        holds => "holds",
        /// Players resumed by a new connection
        resumes => "resumes",
        /// Resumes refused (unknown or expired secret, or the player gone)
        resume_refusals => "resume_refusals",
        /// Held players given up on after resume_grace_ms (they left)
        holds_expired => "holds_expired",
        /// Client events taken by the game (each exactly once)
        events_in => "events_in",
        /// Server events handed to sessions (each once, or again after a resume)
        events_out => "events_out",
        /// Clients closed (4012), or holds ended, for falling too far behind on events or sending them out of order
        event_kicks => "event_kicks",
        /// Hellos refused a room: no such room or game, room full, rooms or players at the cap, or not permitted by the join token
        room_refusals => "room_refusals",
    }
    gauges {
        /// The last completed tick of any room
        tick => "tick",
        /// Players in the rooms' worlds
        clients => "clients",
        /// Rooms open (each one world of the game)
        rooms => "rooms",
        /// Open WebSocket sessions (upgraded, joined or not)
        sessions => "sessions",
        /// Sockets open on the game port, in any phase
        connections => "connections",
    }
}

impl ServerStats {
    /// Counts a session that ended with close `code`.
    pub fn record_close(&self, code: u16) {
        let label = COUNTED_CLOSE_CODES
            .iter()
            .position(|c| *c == code)
            .map_or("other", |i| CLOSE_CODE_LABELS[i]);
        self.closes.get_or_create(&CloseLabel { code: label }).inc();
    }

    /// Sessions the server closed with `code` so far.
    #[must_use]
    pub fn closes_with(&self, code: u16) -> u64 {
        COUNTED_CLOSE_CODES
            .iter()
            .position(|c| *c == code)
            .map_or(0, |i| {
                self.closes
                    .get_or_create(&CloseLabel {
                        code: CLOSE_CODE_LABELS[i],
                    })
                    .get()
            })
    }

    /// Counts a player that left for `reason`.
    pub fn record_leave(&self, reason: &LeaveReason) {
        self.leaves.inc();
        self.leaves_by_reason
            .get_or_create(&LeaveLabel {
                reason: reason.label(),
            })
            .inc();
    }

    /// Players that left so far, per reason label (every reason, in the order of
    /// [`LEAVE_REASONS`]).
    pub fn leaves_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        LEAVE_REASONS.iter().map(|&reason| {
            let n = self
                .leaves_by_reason
                .get_or_create(&LeaveLabel { reason })
                .get();
            (reason, n)
        })
    }

    /// Records how early a timed input arrived for the tick it named, in the snapshot
    /// header's units ([`INPUT_LEAD_UNIT_US`]; negative: late).
    pub fn record_input_lead(&self, units: i16) {
        let seconds = (i64::from(units) * INPUT_LEAD_UNIT_US) as f64 / 1e6;
        self.input_leads.0.observe(seconds);
    }

    /// The last completed tick.
    #[must_use]
    pub fn last_tick(&self) -> u32 {
        u32::try_from(self.tick.get()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::sample;

    #[test]
    fn every_metric_is_registered_once_with_its_help() {
        let stats = ServerStats::default();
        stats.joins.inc_by(3);
        stats.clients.set(2);
        stats.record_close(4005);
        stats.record_close(4999);
        stats.record_leave(&LeaveReason::PeerClosed);
        let mut registry = Registry::with_prefix("tickwire");
        stats.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains("# HELP tickwire_joins Players that joined.\n"),
            "{text}"
        );
        assert!(text.contains("tickwire_joins_total 3\n"), "{text}");
        assert!(text.contains("tickwire_clients 2\n"), "{text}");
        assert!(
            text.contains("tickwire_closes_total{code=\"4005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tickwire_closes_total{code=\"other\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tickwire_leaves_by_reason_total{reason=\"peer_closed\"} 1\n"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE tickwire_joins ").count(), 1);
        assert!(
            text.contains("tickwire_closes_total{code=\"1001\"} 0\n"),
            "{text}"
        );
        assert_eq!(stats.closes_with(4005), 1);
        assert_eq!(stats.leaves.get(), 1);
    }

    #[test]
    fn input_leads_put_the_late_ones_in_the_first_bucket_and_the_slack_in_the_others() {
        let stats = ServerStats::default();
        // 2.5 ms late, 0.1 ms late, on time at the last moment, 1.5 ms and 7 ms early, and
        // one named two ticks ahead (70 ms early).
        for units in [-25, -1, 0, 15, 70, 700] {
            stats.record_input_lead(units);
        }
        let mut registry = Registry::with_prefix("tickwire");
        stats.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        let bucket = |le: &str| {
            sample(
                &text,
                &format!("tickwire_input_lead_seconds_bucket{{le=\"{le}\"}}"),
            )
        };
        // Cumulative counts.
        assert_eq!(bucket("-0.0001"), 2.0, "the late ones");
        assert_eq!(bucket("0.0005"), 3.0);
        assert_eq!(bucket("0.002"), 4.0);
        assert_eq!(bucket("0.008"), 5.0);
        assert_eq!(bucket("0.0333"), 5.0);
        assert_eq!(bucket("+Inf"), 6.0);
        assert_eq!(sample(&text, "tickwire_input_lead_seconds_count"), 6.0);
        let sum = sample(&text, "tickwire_input_lead_seconds_sum");
        assert!((sum - 0.0759).abs() < 1e-9, "{sum}");
    }
}
