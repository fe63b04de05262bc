//! The contract between the network and the simulation: what a session and the tick thread
//! hand each other, and nothing else. Both sides depend on this module; neither reaches into
//! the other.
//!
//! - session -> tick: a [`JoinRequest`] once on a shared bounded channel, then [`ClientEvent`]s
//!   on the client's own bounded channel, so a flooding client fills only its own queue.
//! - tick -> session: encoded frames ([`Outgoing`]) on a bounded tokio channel, written with
//!   `try_send` so the tick never waits (when it is full the client skips that snapshot), and a
//!   [`Kick`] to close the session, which bypasses the outbox.
//! - leaving: the session writes its [`LeaveReason`] into the [`LeaveSlot`] and only then drops
//!   its event sender; the tick thread sees the channel disconnect, so the reason is always
//!   there when it looks.

use bytes::Bytes;
use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use std::sync::Arc;
use tickwire_protocol::codec::FrameHead;
use tickwire_protocol::{InputWords, Tick};
use tokio::sync::mpsc;

/// One binary WebSocket message for one client, as the tick thread hands it over: the client's
/// own header (empty for a whole message) and a body that, in `global` mode, every client with
/// the same baseline shares. The tick copies nothing per client; the session joins the two
/// when it writes.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// The client's own part: a snapshot header, or nothing.
    pub head: FrameHead,
    /// The rest of the message.
    pub body: Bytes,
    /// The tick's events for the client (an events message: its head and body), written just
    /// before this message and in the same write, so a tick costs one system call per client.
    pub events: Option<(FrameHead, Bytes)>,
}

impl Outgoing {
    /// A message encoded whole (the welcome).
    #[must_use]
    pub fn whole(bytes: Bytes) -> Outgoing {
        Outgoing {
            head: FrameHead::default(),
            body: bytes,
            events: None,
        }
    }

    /// A message of a head the client's own and a body (shared between clients or not).
    #[must_use]
    pub fn framed(head: FrameHead, body: Bytes) -> Outgoing {
        Outgoing {
            head,
            body,
            events: None,
        }
    }

    /// Its length in bytes, with the events that go before it.
    #[must_use]
    pub fn len(&self) -> usize {
        let events = self
            .events
            .as_ref()
            .map_or(0, |(head, body)| head.as_bytes().len() + body.len());
        events + self.head.as_bytes().len() + self.body.len()
    }

    /// True for an empty message.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the events message that goes first, as one buffer.
    pub fn take_events(&mut self) -> Option<Bytes> {
        self.events.take().map(|(head, body)| join(&head, body))
    }

    /// The messages to write, in order, each as one buffer (copied once, unless it has no
    /// header): the events, if any, then this message.
    pub fn into_messages(mut self) -> impl Iterator<Item = Bytes> {
        let events = self.take_events();
        events
            .into_iter()
            .chain(std::iter::once(join(&self.head, self.body)))
    }
}

/// A head and a body as one buffer.
fn join(head: &FrameHead, body: Bytes) -> Bytes {
    let head = head.as_bytes();
    if head.is_empty() {
        return body;
    }
    let mut bytes = Vec::with_capacity(head.len() + body.len());
    bytes.extend_from_slice(head);
    bytes.extend_from_slice(&body);
    Bytes::from(bytes)
}

/// Identifies one connection for its whole life (used in logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId(pub u64);

/// What a session forwards to the tick thread.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// An input, checked against the game's schema, with the acknowledgement it carried.
    Input {
        /// Its sequence number, greater than every one before.
        seq: u32,
        /// The newest snapshot tick the client had applied, if any.
        ack: Option<Tick>,
        /// The tick the client meant it for, if it named one.
        tick: Option<Tick>,
        /// When the session received it, for the client's input timing (`None` where there is
        /// no network, as in the test harness: reported 0 early, never late).
        received: Option<std::time::Instant>,
        /// The newest server event the client has taken (0: no acknowledgement rode on it).
        events_ack: u32,
        /// Its fields.
        words: InputWords,
    },
    /// The client applied the snapshot of this tick.
    Ack(Tick),
    /// The client dropped its replica after a snapshot failed to apply at this tick: forget
    /// its acknowledgements and send it a full snapshot.
    Resync(Tick),
    /// Game events, checked against the schema's `client_events`, and the acknowledgement of
    /// the server's events.
    Events(tickwire_protocol::EventsMsg),
}

/// Why a player left the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveReason {
    /// The client closed the connection.
    PeerClosed,
    /// The connection failed (reset, I/O error, EOF without a close frame), or another
    /// connection resumed the player. The world holds the player for `resume_grace_ms` (when
    /// resume is on) before it leaves for this reason.
    ConnectionLost,
    /// The server closed the connection because of what the client sent.
    Violation {
        /// The close code used.
        code: u16,
    },
    /// The server is shutting down.
    Shutdown,
}

impl LeaveReason {
    /// The label of this reason in `/metrics` and logs.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            LeaveReason::PeerClosed => "peer_closed",
            LeaveReason::ConnectionLost => "connection_lost",
            LeaveReason::Violation { .. } => "violation",
            LeaveReason::Shutdown => "shutdown",
        }
    }
}

/// Where a session records why it ended; it writes the reason before it drops its event
/// sender, so the tick thread, which reads it only after seeing the channel disconnect, always
/// finds it.
pub type LeaveSlot = Arc<Mutex<Option<LeaveReason>>>;

/// The kick code that makes a session drop its socket without a close frame, as a failing
/// network would (fault injection for tests of resume).
pub const ABORT: u16 = 0;

/// A request from the tick thread to close a session with a code and reason. It does not go
/// through the outbox, which is full exactly when a slow client must be closed.
#[derive(Debug, Default)]
pub struct Kick {
    reason: Mutex<Option<(u16, String)>>,
    notify: tokio::sync::Notify,
}

impl Kick {
    /// Asks the session to close; the first request wins.
    pub fn kick(&self, code: u16, reason: String) {
        let mut slot = self.reason.lock();
        if slot.is_none() {
            *slot = Some((code, reason));
            self.notify.notify_one();
        }
    }

    /// The kick requested so far, if any.
    #[must_use]
    pub fn reason(&self) -> Option<(u16, String)> {
        self.reason.lock().clone()
    }

    /// Waits until a kick is requested; returns its code and reason.
    pub async fn requested(&self) -> (u16, String) {
        loop {
            if let Some(r) = self.reason.lock().clone() {
                return r;
            }
            // notify_one stores a permit when nobody waits, so a kick between the check above
            // and this await is not lost.
            self.notify.notified().await;
        }
    }
}

/// A session asking the tick thread to create its player.
#[derive(Debug)]
pub struct JoinRequest {
    /// The connection.
    pub client: ClientId,
    /// Sanitized display name.
    pub name: String,
    /// The client's inputs and acks.
    pub events: Receiver<ClientEvent>,
    /// Encoded frames for the client (each one binary WebSocket message); the welcome is the
    /// first. Unused for frames when `wire` is set, but closed when the world lets go.
    pub outbox: mpsc::Sender<Outgoing>,
    /// The fast send path of a plain-TCP binary session: frames go to its lane instead of the
    /// outbox ([`crate::net::wire`]).
    pub wire: Option<crate::net::wire::WireHandle>,
    /// Set by the session before it lets go of `events`.
    pub leave: LeaveSlot,
    /// Lets the tick thread close the session.
    pub kick: Arc<Kick>,
    /// The player id of the client's join token, when tokens are on.
    pub player_id: Option<String>,
    /// The resume secret the welcome gives the client; `None` when the server does not hold
    /// dropped players (`resume_grace_ms = 0`).
    pub secret: Option<String>,
    /// Set when this connection takes over a held player: that player's current secret and the
    /// newest tick the client applied.
    pub resume: Option<Resume>,
}

/// A connection taking over a player whose connection dropped.
#[derive(Debug, Clone)]
pub struct Resume {
    /// The secret of the player's last welcome.
    pub secret: String,
    /// The newest snapshot tick the client applied, if any.
    pub last_tick: Option<Tick>,
    /// The newest server event the client received.
    pub events_received: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_protocol::codec::{FrameHead, decode_server};
    use tickwire_protocol::{ServerMsg, SnapshotHeader, Tick};

    #[test]
    fn a_ticks_events_are_written_before_its_snapshot() {
        let header = SnapshotHeader {
            tick: Tick(9),
            baseline: Some(Tick(8)),
            last_input_seq: 3,
            input_lead: 0,
        };
        let mut frame = Outgoing::framed(FrameHead::snapshot(&header), Bytes::from_static(&[0]));
        assert_eq!(
            frame.len(),
            FrameHead::snapshot(&header).as_bytes().len() + 1
        );
        // Two events of no words: the event type index and an empty word list each.
        frame.events = Some((
            FrameHead::events(0, 1, 2),
            Bytes::from_static(&[0, 0, 1, 0]),
        ));
        let expected_len = frame.len();
        let messages: Vec<Bytes> = frame.into_messages().collect();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages.iter().map(Bytes::len).sum::<usize>(), expected_len);
        match decode_server(&messages[0]).expect("events decode") {
            ServerMsg::Events(e) => assert_eq!((e.first, e.events.len()), (1, 2)),
            other => panic!("events first, not {other:?}"),
        }
        assert!(matches!(
            decode_server(&messages[1]).expect("snapshot decodes"),
            ServerMsg::Snapshot(s) if s.header == header
        ));
    }
}
