//! What stands between a connection's messages and the world: the rate budget, the stale-input
//! rule and the schema's ranges, and the bounded backlog of client events waiting for room in
//! the queue to the tick thread.
//!
//! One [`Gate`] per connection, shared by its session and (on the fast path) its lane, which
//! reads inputs straight off the socket ([`super::wire`]). Whichever of them reads a message
//! passes it through the same gate, so the rules hold however the message arrived.

use super::rate::{Kind, Limiter, Verdict};
use super::session::End;
use crate::boundary::ClientEvent;
use crate::stats::ServerStats;
use crossbeam_channel::{Sender, TrySendError};
use std::sync::Arc;
use std::time::Instant;
use tickwire_protocol::input::validate_input;
use tickwire_protocol::{ClientMsg, EventsMsg, GameSchema, close};
use tracing::debug;

/// Most client events a connection holds for the world while its queue is full.
const MAX_QUEUED_EVENTS: usize = 256;

/// One connection's admission state.
#[derive(Debug)]
pub(crate) struct Gate {
    stats: Arc<ServerStats>,
    /// Every input and event is checked against it.
    schema: Arc<GameSchema>,
    limiter: Limiter,
    /// Sequence number of the newest input accepted: older ones are stale.
    last_seq: u32,
    /// When the peer last sent a message or a pong (the idle timeout).
    pub(crate) last_seen: Instant,
    /// Client events (and the newest acknowledgement) the world's queue had no room for yet.
    events_backlog: Option<EventsMsg>,
    /// The queue to the world, once the player is joined.
    events: Option<Sender<ClientEvent>>,
    /// How the lane found the connection must end (the session closes it).
    pub(crate) fault: Option<End>,
}

impl Gate {
    pub(crate) fn new(
        stats: Arc<ServerStats>,
        schema: Arc<GameSchema>,
        limiter: Limiter,
        now: Instant,
    ) -> Gate {
        Gate {
            stats,
            schema,
            limiter,
            last_seq: 0,
            last_seen: now,
            events_backlog: None,
            events: None,
            fault: None,
        }
    }

    /// From now on accepted messages go to the world through `events`.
    pub(crate) fn joined(&mut self, events: Sender<ClientEvent>) {
        self.events = Some(events);
    }

    /// The player has left: the queue to the world is let go (the world sees it close).
    pub(crate) fn leave(&mut self) {
        self.events = None;
    }

    /// True if events wait for room in the world's queue.
    pub(crate) fn has_backlog(&self) -> bool {
        self.events_backlog.is_some()
    }

    /// True for the messages [`Self::take`] returns for the session to answer (a ping, a
    /// hello or a resume): the lane leaves them to the session, unread.
    pub(crate) fn answered_by_session(msg: &ClientMsg) -> bool {
        matches!(
            msg,
            ClientMsg::Hello { .. } | ClientMsg::Resume { .. } | ClientMsg::Ping { .. }
        )
    }

    /// Charges one message or frame to its budget: `Ok(true)` to handle it, `Ok(false)` to
    /// drop it (counted), or the 1008 close once the drops amount to abuse.
    pub(crate) fn charge(&mut self, kind: Kind) -> Result<bool, End> {
        let verdict = self.limiter.check(kind, Instant::now());
        if verdict != Verdict::Accept {
            self.stats.rate_limited.inc();
        }
        match verdict {
            Verdict::Accept => Ok(true),
            Verdict::Drop => Ok(false),
            Verdict::Abuse => Err(End::violation(
                close::POLICY_VIOLATION,
                match kind {
                    Kind::Control => "control frame rate limit exceeded (ping flood)",
                    Kind::Input | Kind::Other => "input rate limit exceeded",
                },
            )),
        }
    }

    /// Takes one message of the joined player: charges it, then hands an input, an ack, a
    /// resync or events to the world (validated; events in order, never dropped). Returns the
    /// message when it is the session's to answer (a ping, a second hello), `None` when it is
    /// dealt with or dropped over budget.
    pub(crate) fn take(&mut self, msg: ClientMsg) -> Result<Option<ClientMsg>, End> {
        let kind = if matches!(msg, ClientMsg::Input(_)) {
            Kind::Input
        } else {
            Kind::Other
        };
        if !self.charge(kind)? {
            if matches!(&msg, ClientMsg::Events(m) if !m.events.is_empty()) {
                // Events are never dropped: over the budget, the connection is closed instead
                // (a bare acknowledgement may go: the next one covers it).
                return Err(End::violation(
                    close::POLICY_VIOLATION,
                    "event rate limit exceeded (events are never dropped)",
                ));
            }
            return Ok(None);
        }
        let event = match msg {
            // The messages of `answered_by_session`.
            ClientMsg::Hello { .. } | ClientMsg::Resume { .. } | ClientMsg::Ping { .. } => {
                return Ok(Some(msg));
            }
            ClientMsg::Ack { tick } => ClientEvent::Ack(tick),
            // Reliable: never dropped. When the queue to the world is full (a burst), they wait
            // in the bounded backlog and go with the next try.
            ClientMsg::Events(msg) => {
                check_events(&self.schema, &msg)?;
                self.queue_events(msg)?;
                self.flush_events()?;
                return Ok(None);
            }
            ClientMsg::Resync { tick } => ClientEvent::Resync(tick),
            // The one place the stale-input rule and the schema's ranges are enforced.
            ClientMsg::Input(input) => match validate_input(&self.schema, &input, self.last_seq) {
                Err(e) => {
                    debug!(error = %e, "input rejected");
                    self.stats.inputs_rejected.inc();
                    // Its acks are still good news: a client whose inputs are refused must not
                    // also starve of deltas, nor fall behind on events. The events ack goes the
                    // way an `Events` message's does.
                    self.keep_events_ack(input.events_ack)?;
                    match input.ack {
                        Some(tick) => ClientEvent::Ack(tick),
                        None => return Ok(None),
                    }
                }
                Ok(words) => {
                    self.last_seq = input.seq;
                    self.stats.inputs_received.inc();
                    ClientEvent::Input {
                        seq: input.seq,
                        ack: input.ack,
                        tick: input.tick,
                        received: Some(Instant::now()),
                        events_ack: input.events_ack,
                        words,
                    }
                }
            },
        };
        let Some(events) = &self.events else {
            return Err(End::shutdown());
        };
        match events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(dropped)) => {
                self.stats.inputs_dropped.inc();
                // An input may go, its acknowledgement of events may not (the client will not
                // send it again): it waits in the events backlog, as an `Events` would.
                if let ClientEvent::Input { events_ack, .. } = dropped {
                    self.keep_events_ack(events_ack)?;
                }
            }
            Err(TrySendError::Disconnected(_)) => return Err(End::shutdown()),
        }
        // Whatever waits in the backlog goes first when there is room.
        self.flush_events()?;
        Ok(None)
    }

    /// Adds a client's events message to the backlog for the world: acknowledgements merge,
    /// events queue in order (a resend of ones already queued is skipped).
    fn queue_events(&mut self, msg: EventsMsg) -> Result<(), End> {
        let backlog = self.events_backlog.get_or_insert_with(|| EventsMsg {
            ack: 0,
            first: msg.first,
            events: Vec::new(),
        });
        backlog.ack = backlog.ack.max(msg.ack);
        if msg.events.is_empty() {
            return Ok(());
        }
        if backlog.events.is_empty() {
            backlog.first = msg.first;
        }
        let next = backlog
            .first
            .wrapping_add(u32::try_from(backlog.events.len()).unwrap_or(u32::MAX));
        // Events before `next` are already queued (a resend): skipped. A gap after queued
        // events is refused here as the world would refuse it; with nothing queued, the world
        // judges (it knows what it has taken).
        let skip = next.saturating_sub(msg.first) as usize;
        if msg.first > next && !backlog.events.is_empty() {
            return Err(End::violation(
                close::EVENTS_BEHIND,
                format!("events out of order: {} after {}", msg.first, next - 1),
            ));
        }
        backlog.events.extend(msg.events.into_iter().skip(skip));
        if backlog.events.len() > MAX_QUEUED_EVENTS {
            return Err(End::violation(
                close::EVENTS_BEHIND,
                format!("more than {MAX_QUEUED_EVENTS} events in flight to the world"),
            ));
        }
        Ok(())
    }

    /// Keeps the acknowledgement of the server's events an input carried (0: none) when the
    /// world will not get that input: it goes with the events backlog, as an `Events`
    /// message's would.
    fn keep_events_ack(&mut self, ack: u32) -> Result<(), End> {
        if ack == 0 {
            return Ok(());
        }
        self.queue_events(EventsMsg {
            ack,
            first: 0,
            events: Vec::new(),
        })
    }

    /// Hands the events backlog to the world if its queue has room; otherwise it waits for
    /// the next try (the session tries at least once a tick while it waits).
    pub(crate) fn flush_events(&mut self) -> Result<(), End> {
        let Some(backlog) = self.events_backlog.take() else {
            return Ok(());
        };
        let Some(events) = &self.events else {
            self.events_backlog = Some(backlog);
            return Ok(());
        };
        match events.try_send(ClientEvent::Events(backlog)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(ClientEvent::Events(backlog))) => {
                self.events_backlog = Some(backlog);
                Ok(())
            }
            Err(_) => Err(End::shutdown()),
        }
    }
}

/// Checks a client's events against the schema's `client_events`: known types, words in range.
/// (How many fit in one message is bounded by the codec's 512-byte limit, checked before.)
fn check_events(schema: &GameSchema, msg: &EventsMsg) -> Result<(), End> {
    for e in &msg.events {
        let Some(kind) = schema.client_events.get(usize::from(e.kind)) else {
            return Err(End::violation(
                close::POLICY_VIOLATION,
                format!("unknown client event type {}", e.kind),
            ));
        };
        if let Err(why) = GameSchema::check_words(&kind.fields, &e.words) {
            return Err(End::violation(
                close::POLICY_VIOLATION,
                format!("event {}: {why}", kind.name),
            ));
        }
    }
    Ok(())
}
