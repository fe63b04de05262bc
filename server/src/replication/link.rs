//! Per-client replication state on the tick thread: the channels of one client (see
//! [`crate::boundary`]), what it acknowledged, which ticks were sent to it, which it skipped, and
//! in `aoi` mode what it saw at recent ticks.

use super::cells::Viewpoint;
use crate::boundary::{ClientEvent, ClientId, JoinRequest, Kick, LeaveSlot, Outgoing};
use bytes::Bytes;
use crossbeam_channel::Receiver;
use std::collections::VecDeque;
use std::sync::Arc;
use tickwire_protocol::close::{NO_ACKS, TOO_SLOW};
use tickwire_protocol::codec::FrameHead;
use tickwire_protocol::{EventRecord, EventsMsg, Tick};
use tokio::sync::mpsc;

/// Number of recent ticks whose "sent" bit a [`ClientLink`] remembers.
const SENT_WINDOW: i32 = 64;

/// Per-client state the tick thread keeps: channels and what the client has acknowledged.
#[derive(Debug)]
pub struct ClientLink {
    /// The connection.
    pub client: ClientId,
    /// Inputs and acks from the session.
    pub events: Receiver<ClientEvent>,
    /// Frames to the session.
    pub outbox: mpsc::Sender<Outgoing>,
    /// Frames to the session's lane instead, on the fast send path.
    pub wire: Option<crate::net::wire::WireHandle>,
    /// Why the session ended, once it has.
    pub leave: LeaveSlot,
    /// Closes the session from the tick thread.
    pub kick: Arc<Kick>,
    /// Snapshots skipped in a row because the outbox was full.
    skipped_in_a_row: u32,
    /// Which of the recent snapshots were skipped (a sliding window).
    skips: SkipWindow,
    /// Snapshots handed to the session since the client last acknowledged one.
    sent_since_ack: u32,
    /// The link has already asked for the session to be closed.
    closing: bool,
    /// This tick's frame, between the replicate and hand-off phases, and whether it is full.
    pub pending: Option<(Outgoing, bool)>,
    /// Newest tick the client acknowledged that was sent to it.
    pub acked: Option<Tick>,
    /// Sequence number of the latest input applied.
    pub last_input_seq: u32,
    /// How early that input arrived for the tick it named, in the header's units (0.1 ms);
    /// negative if late.
    pub input_lead: i16,
    /// Bit `i` is set if the snapshot of tick `mask_tick - i` was handed to the session.
    sent_mask: u64,
    mask_tick: Tick,
    /// In `aoi` mode: where this client looked from at recent ticks, newest last, and (exact
    /// views) the frame indices it saw then.
    viewpoints: VecDeque<(Tick, Viewpoint, Vec<u32>)>,
    viewpoints_capacity: usize,
    /// The key of the secret that resumes this player (none when resume is off).
    pub secret: Option<crate::rooms::SecretKey>,
    /// Since when the player is held for a resume, its connection gone.
    pub held: Option<Tick>,
    /// Reliable game events both ways.
    pub reliable: EventLink,
}

/// Server events encoded back to back, shared by every client that is sent them (a tick's
/// broadcasts, or one event for one client): each client keeps a reference to the batch, not
/// a copy of each event, so a tick of broadcasts costs each client one entry, whatever the
/// number of events.
#[derive(Debug)]
pub struct EventBatch {
    /// The encodings, back to back.
    bytes: Bytes,
    /// Where each event's encoding ends in `bytes`, in order.
    ends: Vec<u32>,
}

impl EventBatch {
    /// A batch of these encoded events, in order.
    #[must_use]
    pub fn new(events: &[Bytes]) -> EventBatch {
        let mut bytes = Vec::with_capacity(events.iter().map(Bytes::len).sum());
        let mut ends = Vec::with_capacity(events.len());
        for e in events {
            bytes.extend_from_slice(e);
            ends.push(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        }
        EventBatch {
            bytes: Bytes::from(bytes),
            ends,
        }
    }

    /// A batch of one encoded event.
    #[must_use]
    pub fn one(event: Bytes) -> EventBatch {
        let end = u32::try_from(event.len()).unwrap_or(u32::MAX);
        EventBatch {
            bytes: event,
            ends: vec![end],
        }
    }

    /// Events in the batch.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True if the batch holds no event.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Where event `i` starts in `bytes`.
    fn start(&self, i: usize) -> usize {
        i.checked_sub(1).map_or(0, |p| self.ends[p] as usize)
    }

    /// The encodings of events `from..to`, shared (no copy).
    fn slice(&self, from: usize, to: usize) -> Bytes {
        self.bytes.slice(self.start(from)..self.start(to))
    }
}

/// Consecutive server events kept for a client, from one batch: events `from..to` of it,
/// numbered from `first`.
#[derive(Debug, Clone)]
struct Run {
    first: u32,
    batch: Arc<EventBatch>,
    from: usize,
    to: usize,
}

impl Run {
    fn count(&self) -> usize {
        self.to - self.from
    }

    /// The sequence number of its newest event.
    fn last(&self) -> u32 {
        self.first
            .wrapping_add(u32::try_from(self.count()).unwrap_or(u32::MAX))
            .wrapping_sub(1)
    }

    fn bytes(&self) -> usize {
        self.batch.start(self.to) - self.batch.start(self.from)
    }
}

/// One client's reliable events: the server's, encoded and kept until acknowledged, and how
/// far the client's have been taken.
#[derive(Debug, Default)]
pub struct EventLink {
    /// Unacknowledged server events, oldest first, in runs that share their batch's encoding.
    out: VecDeque<Run>,
    /// How many they are, and the bytes of their encodings.
    out_events: usize,
    out_bytes: usize,
    /// Sequence number of the newest server event queued (0: none yet).
    last_out: u32,
    /// Sequence number of the newest server event handed to the session.
    sent_out: u32,
    /// The newest client event taken.
    pub taken_in: u32,
    /// Client events were taken since the last acknowledgement sent.
    ack_owed: bool,
    /// Went over the bounds on unacknowledged events: the client is being closed (4012), or,
    /// held, its hold ends.
    pub overflowed: bool,
}

/// Why events from a client were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventsError {
    /// An event skipped a sequence number.
    Gap {
        /// The next one expected.
        expected: u32,
        /// The one that came.
        got: u32,
    },
    /// An acknowledgement of a server event never sent.
    BadAck {
        /// The acknowledgement.
        ack: u32,
        /// The newest sent.
        sent: u32,
    },
}

impl EventLink {
    /// Queues a server event (its encoding, shared); false (and nothing queued) if that would
    /// take the client over the bounds.
    pub fn push(&mut self, event: Bytes, max_events: usize, max_bytes: usize) -> bool {
        self.push_batch(&Arc::new(EventBatch::one(event)), max_events, max_bytes)
    }

    /// Queues a batch of server events (a tick's broadcasts), shared with every client that
    /// gets it: one entry, whatever the number of events. False (and nothing queued) if that
    /// would take the client over the bounds.
    pub fn push_batch(
        &mut self,
        batch: &Arc<EventBatch>,
        max_events: usize,
        max_bytes: usize,
    ) -> bool {
        let (n, bytes) = (batch.len(), batch.bytes.len());
        if n == 0 {
            return true;
        }
        if self.out_events + n > max_events || self.out_bytes + bytes > max_bytes {
            return false;
        }
        let first = self.last_out.wrapping_add(1);
        self.last_out = self
            .last_out
            .wrapping_add(u32::try_from(n).unwrap_or(u32::MAX));
        self.out_events += n;
        self.out_bytes += bytes;
        self.out.push_back(Run {
            first,
            batch: Arc::clone(batch),
            from: 0,
            to: n,
        });
        true
    }

    /// Unacknowledged server events queued.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.out_events
    }

    /// Takes a client's events message: its acknowledgement frees server events, and its
    /// events that come next in order are returned for the game (ones already taken are
    /// skipped: a resend after a resume).
    ///
    /// # Errors
    /// An event out of order, or an acknowledgement of an event never sent.
    pub fn take(&mut self, msg: EventsMsg) -> Result<Vec<EventRecord>, EventsError> {
        self.acknowledge(msg.ack)?;
        let mut taken = Vec::new();
        for (i, event) in msg.events.into_iter().enumerate() {
            let seq = msg.first.wrapping_add(u32::try_from(i).unwrap_or(u32::MAX));
            if seq <= self.taken_in {
                continue;
            }
            if seq != self.taken_in.wrapping_add(1) {
                return Err(EventsError::Gap {
                    expected: self.taken_in.wrapping_add(1),
                    got: seq,
                });
            }
            self.taken_in = seq;
            self.ack_owed = true;
            taken.push(event);
        }
        Ok(taken)
    }

    /// The client has every server event up to `ack`: they are freed.
    ///
    /// # Errors
    /// [`EventsError::BadAck`] if `ack` names an event never sent.
    pub fn acknowledge(&mut self, ack: u32) -> Result<(), EventsError> {
        if ack > self.sent_out {
            return Err(EventsError::BadAck {
                ack,
                sent: self.sent_out,
            });
        }
        while let Some(run) = self.out.front_mut() {
            if run.first > ack {
                break;
            }
            if run.last() <= ack {
                self.out_events -= run.count();
                self.out_bytes -= run.bytes();
                self.out.pop_front();
                continue;
            }
            // Acknowledged part way: the rest of the run stays.
            let done = (ack - run.first) as usize + 1;
            let freed = run.batch.start(run.from + done) - run.batch.start(run.from);
            run.from += done;
            run.first = ack.wrapping_add(1);
            self.out_events -= done;
            self.out_bytes -= freed;
            break;
        }
        Ok(())
    }

    /// The message to hand the session this tick, if there are events it has not been handed
    /// or an acknowledgement is owed (at most `max` events): its head (the client's own) and
    /// body (the events' encodings, shared with the batch when they are all from one, as a
    /// tick's broadcasts are, so a broadcast allocates nothing per client), and how many
    /// events it holds. Mark it handed with [`EventLink::handed`] once the session took it.
    #[must_use]
    pub fn next_message(&self, max: usize) -> Option<(FrameHead, Bytes, u32)> {
        let first = self.sent_out.wrapping_add(1);
        let unsent = self.last_out.wrapping_sub(self.sent_out) as usize;
        if unsent == 0 && !self.ack_owed {
            return None;
        }
        let n = unsent.min(max);
        // The runs from the first event not handed over: (run, index in its batch to start).
        let mut runs = self.out.iter().filter(|r| r.last() >= first).map(|r| {
            let skip = first.saturating_sub(r.first) as usize;
            (r, r.from + skip)
        });
        let body = match runs.next() {
            None => Bytes::new(),
            Some((r, from)) if r.to - from >= n => r.batch.slice(from, from + n),
            Some((r, from)) => {
                let mut b = Vec::new();
                b.extend_from_slice(&r.batch.slice(from, r.to));
                let mut left = n - (r.to - from);
                for (r, from) in runs {
                    if left == 0 {
                        break;
                    }
                    let to = r.to.min(from + left);
                    b.extend_from_slice(&r.batch.slice(from, to));
                    left -= to - from;
                }
                Bytes::from(b)
            }
        };
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        Some((FrameHead::events(self.taken_in, first, n), body, n))
    }

    /// The session took a message of `count` events.
    pub fn handed(&mut self, count: u32) {
        self.ack_owed = false;
        self.sent_out = self.sent_out.wrapping_add(count);
    }

    /// A resumed client has the server's events up to `received`: the ones after it go again.
    pub fn resume(&mut self, received: u32) {
        let received = received.min(self.sent_out);
        // Cannot fail: `received` is at most what was sent.
        let _ = self.acknowledge(received);
        self.sent_out = received;
        self.ack_owed = true;
    }
}

/// Why a frame was not handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handed {
    /// The client has its bound of frames not yet written (or a full outbox): skipped.
    Full,
    /// The session is gone.
    Closed,
}

/// Hands a frame to a session's lane (`wire`) or outbox; see [`ClientLink::hand`].
///
/// # Errors
/// [`Handed::Full`] or [`Handed::Closed`]; the frame is dropped.
pub fn hand(
    outbox: &mpsc::Sender<Outgoing>,
    wire: Option<&crate::net::wire::WireHandle>,
    frame: Outgoing,
) -> Result<(), Handed> {
    hand_in(outbox, wire, frame, None)
}

/// [`hand`], a lane's frame kept in `batch` (when given) until the batch is flushed.
fn hand_in(
    outbox: &mpsc::Sender<Outgoing>,
    wire: Option<&crate::net::wire::WireHandle>,
    frame: Outgoing,
    batch: Option<&mut crate::net::wire::HandBatch>,
) -> Result<(), Handed> {
    use tokio::sync::mpsc::error::TrySendError;
    match wire {
        Some(w) => match batch {
            Some(batch) => w.send_in(frame, batch),
            None => w.try_send(frame),
        }
        .map_err(|e| match e {
            crate::net::wire::HandError::Full => Handed::Full,
            crate::net::wire::HandError::Closed => Handed::Closed,
        }),
        None => outbox.try_send(frame).map_err(|e| match e {
            TrySendError::Full(_) => Handed::Full,
            TrySendError::Closed(_) => Handed::Closed,
        }),
    }
}

impl ClientLink {
    /// The link for a join request, at the current tick, remembering `history` ticks of views,
    /// and judging the client's pace by `limits`.
    #[must_use]
    pub fn new(join: JoinRequest, now: Tick, history: usize, limits: &LagLimits) -> ClientLink {
        ClientLink {
            client: join.client,
            events: join.events,
            outbox: join.outbox,
            wire: join.wire,
            leave: join.leave,
            kick: join.kick,
            skipped_in_a_row: 0,
            skips: SkipWindow::new(limits.skip_window),
            sent_since_ack: 0,
            closing: false,
            pending: None,
            acked: None,
            last_input_seq: 0,
            input_lead: 0,
            sent_mask: 0,
            mask_tick: now,
            viewpoints: VecDeque::with_capacity(history),
            viewpoints_capacity: history.max(1),
            secret: join.secret.as_deref().map(crate::rooms::secret_key),
            held: None,
            reliable: EventLink::default(),
        }
    }

    /// Hands the link to the connection that resumed its player: new channels and secret, the
    /// pace counters reset, and the baseline set to `last_tick`, the client's newest applied
    /// tick, if it was sent to this client (so the first snapshot is a delta against it while
    /// the world still holds that tick, else full). The views remembered from before the drop
    /// stay, for that delta.
    pub fn rebind(&mut self, join: JoinRequest, last_tick: Option<Tick>, limits: &LagLimits) {
        self.client = join.client;
        self.events = join.events;
        self.outbox = join.outbox;
        self.wire = join.wire;
        self.leave = join.leave;
        self.kick = join.kick;
        self.secret = join.secret.as_deref().map(crate::rooms::secret_key);
        self.held = None;
        self.skipped_in_a_row = 0;
        self.skips = SkipWindow::new(limits.skip_window);
        self.sent_since_ack = 0;
        self.closing = false;
        self.pending = None;
        self.acked = last_tick.filter(|t| self.was_sent(*t));
        self.reliable.overflowed = false;
    }

    /// Hands a frame to the session: to its lane on the fast send path, else to its outbox.
    /// Never waits.
    ///
    /// # Errors
    /// The frame is dropped: [`Handed::Full`] if the client has its bound of frames not yet
    /// written, [`Handed::Closed`] if the session is gone.
    pub fn hand(&self, frame: Outgoing) -> Result<(), Handed> {
        hand(&self.outbox, self.wire.as_ref(), frame)
    }

    /// [`Self::hand`], a lane's frame kept in `batch` until the tick's hand-off flushes it
    /// (an outbox's frame goes at once).
    ///
    /// # Errors
    /// As [`Self::hand`].
    pub fn hand_in(
        &self,
        frame: Outgoing,
        batch: &mut crate::net::wire::HandBatch,
    ) -> Result<(), Handed> {
        hand_in(&self.outbox, self.wire.as_ref(), frame, Some(batch))
    }

    /// True if the snapshot of `tick` was handed to this client (within the last 64 ticks it
    /// was sent anything).
    fn was_sent(&self, tick: Tick) -> bool {
        let age = self.mask_tick.since(tick);
        (0..SENT_WINDOW).contains(&age) && self.sent_mask & (1u64 << age) != 0
    }

    /// An empty index buffer for this tick's exact view: the newest of the views
    /// [`ClientLink::forget_stale_views`] drops, else a new one.
    pub fn take_visible_buffer(&mut self) -> Vec<u32> {
        let mut v = self.forget_stale_views().unwrap_or_default();
        v.clear();
        v
    }

    /// Remembers where the client looked from at `tick`, and what it saw (exact views; empty
    /// for views of whole cells, which the viewpoint gives).
    pub fn push_view(&mut self, tick: Tick, eye: Viewpoint, visible: Vec<u32>) {
        self.forget_stale_views();
        self.viewpoints.push_back((tick, eye, visible));
    }

    /// Forgets the views older than the acknowledged tick, and the oldest beyond
    /// `history_ticks - 1`; returns the buffer of the newest it forgot, the one most likely
    /// still in the cache. The acknowledged tick only moves forward
    /// ([`ClientLink::acknowledge`]), so those views are never a baseline again: a client that
    /// acknowledges every snapshot keeps a few, not `history_ticks`. (A resume that names an
    /// older tick gets a full snapshot.)
    fn forget_stale_views(&mut self) -> Option<Vec<u32>> {
        let mut spare = None;
        while let Some((t, _, _)) = self.viewpoints.front()
            && (self.viewpoints.len() >= self.viewpoints_capacity
                || self.acked.is_some_and(|a| *t < a))
        {
            spare = self.viewpoints.pop_front().map(|(_, _, v)| v);
        }
        spare
    }

    /// How many past views the client's link remembers.
    #[must_use]
    pub fn views_remembered(&self) -> usize {
        self.viewpoints.len()
    }

    /// Where the client looked from at `tick`, if remembered.
    #[must_use]
    pub fn viewpoint_at(&self, tick: Tick) -> Option<Viewpoint> {
        self.viewpoints
            .iter()
            .rev()
            .find(|(t, _, _)| *t == tick)
            .map(|(_, v, _)| *v)
    }

    /// What the client saw at `tick` (exact views), if remembered.
    #[must_use]
    pub fn visible_at(&self, tick: Tick) -> Option<&[u32]> {
        self.viewpoints
            .iter()
            .rev()
            .find(|(t, _, _)| *t == tick)
            .map(|(_, _, v)| v.as_slice())
    }

    /// Records the hand-off of the snapshot of `tick` (`sent`, or skipped because the outbox
    /// was full) and judges the client's pace: the first time it skipped too many snapshots
    /// (in a row, or over the window) or was sent too many without acking any, returns the
    /// close code and reason; never again after that.
    pub fn handed_off(
        &mut self,
        tick: Tick,
        sent: bool,
        limits: &LagLimits,
    ) -> Option<(u16, String)> {
        self.record_sent(tick, sent);
        self.skips.record(!sent);
        if sent {
            self.skipped_in_a_row = 0;
            self.sent_since_ack += 1;
        } else {
            self.skipped_in_a_row += 1;
        }
        if self.closing {
            return None;
        }
        let close = if self.skipped_in_a_row >= limits.max_in_a_row {
            let n = self.skipped_in_a_row;
            (
                TOO_SLOW,
                format!("too slow: {n} snapshots skipped in a row"),
            )
        } else if self.skips.exceeds(limits.max_skipped_fraction) {
            let (n, of) = (self.skips.skipped(), self.skips.len());
            (
                TOO_SLOW,
                format!("too slow: {n} of the last {of} snapshots skipped"),
            )
        } else if self.sent_since_ack >= limits.max_unacked {
            let n = self.sent_since_ack;
            (
                NO_ACKS,
                format!("no acks: {n} snapshots sent without an acknowledgement"),
            )
        } else {
            return None;
        };
        self.closing = true;
        Some(close)
    }

    /// Records whether the snapshot of `tick` was handed to the session.
    pub fn record_sent(&mut self, tick: Tick, sent: bool) {
        let shift = tick.since(self.mask_tick);
        self.sent_mask = if (1..SENT_WINDOW).contains(&shift) {
            self.sent_mask << shift
        } else if shift == 0 {
            self.sent_mask
        } else {
            0
        };
        self.mask_tick = tick;
        if sent {
            self.sent_mask |= 1;
        }
    }

    /// Takes an ack if it names a tick sent to this client and is newer than the current one
    /// (so the acknowledged tick, and with it every baseline, only moves forward: a client may
    /// drop views older than the baseline of a delta it applied). Returns false for an ack that
    /// names a tick never sent to this client.
    pub fn acknowledge(&mut self, tick: Tick) -> bool {
        let was_sent = self.was_sent(tick);
        let newer = self.acked.is_none_or(|a| tick > a);
        if was_sent && newer {
            self.acked = Some(tick);
        }
        if was_sent {
            self.sent_since_ack = 0;
        }
        was_sent
    }

    /// The client dropped its replica: forget its acknowledged tick and every tick sent so
    /// far, so neither the baseline nor an ack still in flight can name a view it no longer
    /// holds. The next snapshot is full.
    pub fn resync(&mut self) {
        self.acked = None;
        self.sent_mask = 0;
    }
}

/// How far behind a client may fall before it is closed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LagLimits {
    /// Snapshots skipped in a row (4005).
    pub max_in_a_row: u32,
    /// Length of the sliding window of hand-offs, in snapshots.
    pub skip_window: u32,
    /// Fraction of the window that may be skipped (4005).
    pub max_skipped_fraction: f32,
    /// Snapshots sent without an ack (4006).
    pub max_unacked: u32,
}

/// Which of the last `len` snapshots of one client were skipped, as a ring of bits. (The sent
/// bits kept for acks answer another question: "was tick T sent?", by tick, for 64 ticks; this
/// counts skips over a configurable number of hand-offs.)
#[derive(Debug, Clone)]
pub struct SkipWindow {
    bits: Vec<u64>,
    len: u32,
    pos: u32,
    filled: u32,
    skipped: u32,
}

impl SkipWindow {
    /// An empty window of `len` snapshots (at least 1).
    #[must_use]
    pub fn new(len: u32) -> SkipWindow {
        let len = len.max(1);
        SkipWindow {
            bits: vec![0; len.div_ceil(64) as usize],
            len,
            pos: 0,
            filled: 0,
            skipped: 0,
        }
    }

    /// Records one snapshot, skipped or not, pushing the oldest out of a full window.
    pub fn record(&mut self, skipped: bool) {
        let (word, bit) = ((self.pos / 64) as usize, self.pos % 64);
        let old = self.bits[word] >> bit & 1 == 1;
        if self.filled == self.len {
            self.skipped -= u32::from(old);
        } else {
            self.filled += 1;
        }
        self.bits[word] = (self.bits[word] & !(1 << bit)) | (u64::from(skipped) << bit);
        self.skipped += u32::from(skipped);
        self.pos = (self.pos + 1) % self.len;
    }

    /// Skipped snapshots in the window.
    #[must_use]
    pub fn skipped(&self) -> u32 {
        self.skipped
    }

    /// True once the window is full and more than `fraction` of it was skipped.
    #[must_use]
    pub fn exceeds(&self, fraction: f32) -> bool {
        self.filled == self.len && self.skipped as f32 > fraction * self.len as f32
    }

    /// Length of the window.
    #[must_use]
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True if nothing was recorded yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> ClientLink {
        let (_tx, events) = crossbeam_channel::bounded(1);
        let (outbox, _rx) = mpsc::channel(1);
        ClientLink::new(
            JoinRequest {
                client: ClientId(1),
                name: String::new(),
                events,
                outbox,
                wire: None,
                leave: LeaveSlot::default(),
                kick: Arc::default(),
                player_id: None,
                secret: None,
                resume: None,
            },
            Tick(100),
            32,
            &LagLimits {
                max_in_a_row: 90,
                skip_window: 150,
                max_skipped_fraction: 0.5,
                max_unacked: 150,
            },
        )
    }

    #[test]
    fn only_sent_ticks_can_be_acknowledged() {
        let mut l = link();
        l.record_sent(Tick(101), true);
        l.record_sent(Tick(102), false); // skipped: outbox full
        l.record_sent(Tick(103), true);
        assert!(!l.acknowledge(Tick(102)));
        assert_eq!(l.acked, None);
        assert!(!l.acknowledge(Tick(104)), "future tick");
        assert!(!l.acknowledge(Tick(50)), "never sent");
        assert!(l.acknowledge(Tick(103)));
        assert_eq!(l.acked, Some(Tick(103)));
        // An older ack arriving late is valid but does not move the baseline back.
        assert!(l.acknowledge(Tick(101)));
        assert_eq!(l.acked, Some(Tick(103)));
    }

    #[test]
    fn sent_bits_age_out() {
        let mut l = link();
        l.record_sent(Tick(101), true);
        l.record_sent(Tick(101 + 70), true);
        assert!(!l.acknowledge(Tick(101)));
        assert!(l.acknowledge(Tick(171)));
    }

    #[test]
    fn resync_forgets_the_baseline_and_acks_in_flight() {
        let mut l = link();
        l.record_sent(Tick(101), true);
        l.record_sent(Tick(102), true);
        assert!(l.acknowledge(Tick(101)));
        l.resync();
        assert_eq!(l.acked, None, "the next snapshot is full");
        assert!(
            !l.acknowledge(Tick(102)),
            "an ack sent before the resync names a view the client dropped"
        );
        assert_eq!(l.acked, None);
        l.record_sent(Tick(103), true);
        assert!(l.acknowledge(Tick(103)));
        assert_eq!(l.acked, Some(Tick(103)));
    }

    /// Views older than the acknowledged tick are forgotten; their buffers are reused. A
    /// client that does not acknowledge keeps `history_ticks` of them, no more.
    #[test]
    fn views_older_than_the_acknowledged_tick_are_forgotten() {
        let mut l = link();
        let eye = Viewpoint(None);
        for t in 101..=140u32 {
            let mut v = l.take_visible_buffer();
            assert!(v.is_empty(), "a buffer comes empty");
            v.extend([t, t + 1]);
            l.push_view(Tick(t), eye, v);
            l.record_sent(Tick(t), true);
        }
        assert_eq!(
            l.views_remembered(),
            32,
            "nothing acknowledged: the whole history"
        );
        assert_eq!(l.visible_at(Tick(109)), Some(&[109, 110][..]));
        assert!(l.acknowledge(Tick(138)));
        let v = l.take_visible_buffer();
        assert!(
            v.capacity() >= 2,
            "the buffer of a forgotten view is reused"
        );
        l.push_view(Tick(141), eye, v);
        assert_eq!(l.views_remembered(), 4, "138 to 141");
        assert_eq!(l.visible_at(Tick(137)), None);
        assert_eq!(l.visible_at(Tick(138)), Some(&[138, 139][..]));
        // Views of whole cells remember no indices, and are forgotten the same way.
        assert!(l.acknowledge(Tick(140)));
        l.push_view(Tick(142), eye, Vec::new());
        assert_eq!(l.views_remembered(), 3, "140 to 142");
        assert_eq!(l.viewpoint_at(Tick(140)), Some(eye));
        assert_eq!(l.viewpoint_at(Tick(139)), None);
    }

    #[test]
    fn skip_window_counts_spread_out_skips() {
        let mut w = SkipWindow::new(10);
        // One skip in three, never two in a row: 4 of the first 10.
        for i in 0..10 {
            w.record(i % 3 == 0);
        }
        assert_eq!(w.skipped(), 4);
        assert!(w.exceeds(0.3));
        assert!(!w.exceeds(0.4));
        // The window slides: ten clean snapshots clear it.
        for _ in 0..10 {
            w.record(false);
        }
        assert_eq!(w.skipped(), 0);
        // A window is judged only once full.
        let mut w = SkipWindow::new(100);
        for _ in 0..99 {
            w.record(true);
        }
        assert!(!w.exceeds(0.5));
        w.record(true);
        assert!(w.exceeds(0.5));
        // Longer than one word of bits.
        let mut w = SkipWindow::new(150);
        for i in 0..1000 {
            w.record(i % 2 == 0);
        }
        assert_eq!(w.skipped(), 75);
    }

    #[test]
    fn acks_in_flight_across_a_full_snapshot_still_count() {
        // A client two ticks behind in acks must get deltas again after a full snapshot.
        let mut l = link();
        l.record_sent(Tick(101), true); // full
        l.record_sent(Tick(102), true); // full: the ack for 101 has not arrived yet
        assert!(l.acknowledge(Tick(101)));
        assert_eq!(l.acked, Some(Tick(101)));
        l.record_sent(Tick(103), true); // a delta against 101
        assert!(l.acknowledge(Tick(102)));
        assert_eq!(l.acked, Some(Tick(102)));
    }

    #[test]
    fn events_are_taken_in_order_once_bounded_and_resent_after_a_resume() {
        let mut e = EventLink::default();
        let ev = |k: u16| EventRecord {
            kind: k,
            words: vec![i64::from(k)],
        };
        let msg = |ack, first, events: Vec<EventRecord>| EventsMsg { ack, first, events };
        // Client events: in order, a resend skipped, a gap refused.
        assert_eq!(
            e.take(msg(0, 1, vec![ev(1), ev(2)])),
            Ok(vec![ev(1), ev(2)])
        );
        assert_eq!(e.take(msg(0, 2, vec![ev(2), ev(3)])), Ok(vec![ev(3)]));
        assert_eq!(
            e.take(msg(0, 5, vec![ev(5)])),
            Err(EventsError::Gap {
                expected: 4,
                got: 5
            })
        );
        // Server events: queued up to the bound, handed once, freed by the ack.
        let b = |n: u8| Bytes::from(vec![n; 4]);
        assert!(e.push(b(1), 3, 1024));
        assert!(e.push(b(2), 3, 1024));
        assert!(e.push(b(3), 3, 1024));
        assert!(!e.push(b(4), 3, 1024), "the count bound");
        let (head, body, n) = e.next_message(64).expect("events to send");
        assert_eq!((n, body.len()), (3, 12));
        assert_eq!(
            head,
            FrameHead::events(3, 1, 3),
            "acks the client's 3, numbers from 1"
        );
        e.handed(n);
        assert!(e.next_message(64).is_none(), "nothing new, no ack owed");
        assert_eq!(
            e.take(msg(4, 4, vec![])),
            Err(EventsError::BadAck { ack: 4, sent: 3 })
        );
        assert_eq!(e.take(msg(1, 4, vec![])), Ok(vec![]));
        assert_eq!(e.pending(), 2);
        // A resume that had only the first: the other two go again.
        e.resume(1);
        let (_, body, n) = e.next_message(64).expect("resend");
        assert_eq!((n, body.as_ref()), (2, [2, 2, 2, 2, 3, 3, 3, 3].as_slice()));
        // The byte bound.
        let mut small = EventLink::default();
        assert!(small.push(b(1), 10, 6));
        assert!(!small.push(b(2), 10, 6));
    }

    /// A batch of two events, "ab" and "cd".
    fn ab_cd() -> Arc<EventBatch> {
        Arc::new(EventBatch::new(&[
            Bytes::from_static(b"ab"),
            Bytes::from_static(b"cd"),
        ]))
    }

    #[test]
    fn a_tick_of_broadcasts_shares_one_body() {
        let mut e = EventLink::default();
        let batch = ab_cd();
        assert!(e.push_batch(&batch, 10, 100));
        let (_, body, n) = e.next_message(64).expect("the batch");
        assert_eq!(n, 2);
        assert_eq!(body.as_ptr(), batch.bytes.as_ptr(), "shared, not copied");
        assert_eq!(Arc::strong_count(&batch), 2, "one reference for the client");
    }

    /// The message a link that keeps one entry per event, `model` (sequence number and
    /// encoding), sends after `sent`, at most `max` events: how many, and their encodings.
    fn model_message(model: &[(u32, Vec<u8>)], sent: u32, max: usize) -> (u32, Vec<u8>) {
        let unsent: Vec<&(u32, Vec<u8>)> = model.iter().filter(|(s, _)| *s > sent).collect();
        let n = unsent.len().min(max);
        let body = unsent[..n].iter().flat_map(|(_, b)| b.clone()).collect();
        (u32::try_from(n).expect("a few events"), body)
    }

    #[test]
    fn runs_of_shared_batches_send_and_free_what_one_entry_per_event_would() {
        // Random batches and single events, messages cut at random sizes (so in the middle
        // of a batch), acknowledgements part way into a batch, and resumes that go back:
        // every message and every count is checked against a list of one entry per event.
        let mut rng = fastrand::Rng::with_seed(7);
        let mut e = EventLink::default();
        let mut model: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut next = 1u32;
        let (mut sent, mut acked) = (0u32, 0u32);
        for step in 0..3000 {
            match rng.u8(0..6) {
                0 | 1 => {
                    let n = rng.usize(1..6);
                    let events: Vec<Bytes> = (0..n)
                        .map(|_| Bytes::from(vec![rng.u8(..); rng.usize(1..5)]))
                        .collect();
                    let batch = Arc::new(EventBatch::new(&events));
                    let fits = e.pending() + n <= 40;
                    assert_eq!(e.push_batch(&batch, 40, 1 << 20), fits, "step {step}");
                    if fits {
                        for ev in events {
                            model.push((next, ev.to_vec()));
                            next += 1;
                        }
                    }
                }
                2 => {
                    let ev = Bytes::from(vec![rng.u8(..); rng.usize(1..5)]);
                    if e.push(ev.clone(), 40, 1 << 20) {
                        model.push((next, ev.to_vec()));
                        next += 1;
                    }
                }
                3 => {
                    let max = rng.usize(1..8);
                    let want = model_message(&model, sent, max);
                    match e.next_message(max) {
                        Some((head, body, n)) => {
                            assert_eq!((n, body.to_vec()), want, "step {step}");
                            assert_eq!(head, FrameHead::events(0, sent + 1, n));
                            e.handed(n);
                            sent += n;
                        }
                        None => assert_eq!(want.0, 0, "step {step}: events left unsent"),
                    }
                }
                4 if sent > acked => {
                    let ack = rng.u32(acked..=sent);
                    e.acknowledge(ack).expect("sent");
                    model.retain(|(s, _)| *s > ack);
                    acked = ack;
                }
                5 if rng.u8(0..10) == 0 => {
                    // A resume that had only part of what was sent.
                    let got = rng.u32(acked..=sent);
                    e.resume(got);
                    model.retain(|(s, _)| *s > got);
                    acked = got;
                    sent = got;
                }
                _ => {}
            }
            assert_eq!(e.pending(), model.len(), "step {step}");
            let bytes: usize = model.iter().map(|(_, b)| b.len()).sum();
            assert_eq!(e.out_bytes, bytes, "step {step}");
        }
        assert!(next > 500, "the run queued many events: {next}");
        assert_eq!(
            e.acknowledge(sent + 1),
            Err(EventsError::BadAck {
                ack: sent + 1,
                sent
            })
        );
    }

    #[test]
    fn a_batch_over_the_bounds_is_not_queued_at_all() {
        let mut e = EventLink::default();
        let two = ab_cd();
        assert!(e.push_batch(&two, 3, 100));
        assert!(!e.push_batch(&two, 3, 100), "the count bound");
        assert!(!e.push_batch(&two, 10, 6), "the byte bound");
        assert_eq!((e.pending(), e.out_bytes), (2, 4), "nothing of it queued");
        let (_, body, n) = e.next_message(64).expect("the first batch");
        assert_eq!((n, body.as_ref()), (2, b"abcd".as_slice()));
    }
}
