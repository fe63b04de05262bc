//! The fast send path for plain-TCP binary sessions: the tick thread hands each client's frames
//! to a **lane** (one task per network thread), and the lane writes every frame of its clients
//! straight to their sockets in one pass, with no wake-up of each client's session.
//!
//! Why it is written here and not taken from a crate: tokio-tungstenite writes through the
//! session task that owns the socket, so each frame costs a cross-thread wake-up, a task poll
//! and the session's `select!` before its one system call; at 30 Hz that overhead was most of
//! the server's CPU per client. A server-to-client WebSocket data frame is a 2 to 10 byte
//! header and the payload (RFC 6455, 5.2; never masked), so the lane writes it itself.
//!
//! Every byte for a socket goes through its [`Wire`]'s buffer under one lock: the lane's frames
//! and the session's own (tungstenite writes into the buffer through [`WireIo`]), each frame
//! appended whole, so frames never interleave. A write that would block leaves the rest in the
//! buffer and wakes the session, which waits for the socket to drain it, bounded by the write
//! timeout; the tick thread skips a client whose frames are not written yet past the outbox
//! bound, as it does with a full outbox. TLS and JSON sessions keep the session-task path.
//!
//! The lane reads too. Once a player is joined, its session lends the socket's reads to the
//! lane: the socket's readiness wakes the lane (not the session), which takes every readable
//! socket in one pass, and each complete, final, masked binary frame that holds an input, an
//! ack, a resync or events goes through the connection's [`Gate`] to the world, without a
//! wake-up of the session. Anything else (a control frame, a fragment, a ping message, bytes
//! that do not decode, the end of the stream, an error, a fault the gate found, events waiting
//! for room) hands the reads back to the session, which reads through tungstenite as before,
//! one frame at a time ([`WireIo`] never hands tungstenite more than the frame it is reading,
//! so no byte is stranded in tungstenite's buffer), and lends them again after its next data
//! message.

use super::gate::Gate;
use crate::boundary::Outgoing;
use crate::stats::ServerStats;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io::{self, Cursor, Read};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker, ready};
use tickwire_protocol::codec::decode_client;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// FIN and the binary opcode: the first byte of every data frame the server sends.
const BINARY_FIN: u8 = 0x82;

/// The longest WebSocket frame header (RFC 6455, 5.2): 2 bytes, 8 of length, 4 of mask.
const MAX_HEADER_BYTES: usize = 14;

/// Most messages the lane takes from one connection in one pass before it serves the others
/// (the connection goes to the back of the queue).
const MAX_MESSAGES_PER_PASS: usize = 16;

/// Passes a lane makes in a row, while there is always more to do, before it lets the other
/// tasks of its thread run.
const PASSES_BEFORE_YIELD: u32 = 8;

/// The lanes: one inbox and one task per network thread. Dropping them ends the tasks.
#[derive(Debug)]
pub(crate) struct Lanes {
    inboxes: Vec<Arc<LaneInbox>>,
}

#[derive(Debug, Default)]
struct LaneInbox {
    items: Mutex<Vec<(Arc<Wire>, Outgoing)>>,
    /// Connections whose reads are the lane's and whose socket became readable.
    readable: Mutex<Vec<Arc<Wire>>>,
    wake: Notify,
    closed: AtomicBool,
}

impl LaneInbox {
    /// Queues a readable connection.
    fn push_readable(&self, wire: Arc<Wire>) {
        self.add(&self.readable, |readable| readable.push(wire));
    }

    /// Adds to one of the lane's queues; wakes the lane if the queue was empty (if not, the
    /// lane has been woken for it and has not taken it yet).
    fn add<T>(&self, queue: &Mutex<Vec<T>>, add: impl FnOnce(&mut Vec<T>)) {
        let was_empty = {
            let mut queue = queue.lock();
            let was_empty = queue.is_empty();
            add(&mut queue);
            was_empty
        };
        if was_empty {
            self.wake.notify_one();
        }
    }
}

impl Lanes {
    /// `n` lanes, each with its task on the current tokio runtime.
    pub(crate) fn spawn(n: usize) -> Arc<Lanes> {
        let inboxes: Vec<Arc<LaneInbox>> = (0..n.max(1))
            .map(|_| Arc::new(LaneInbox::default()))
            .collect();
        for inbox in &inboxes {
            // Out of tokio's cooperative budget: the lane polls many sockets in one turn, and a
            // socket refused for the budget would wake the lane again and again in that turn.
            // It yields on its own instead (`PASSES_BEFORE_YIELD`).
            tokio::spawn(tokio::task::unconstrained(run_lane(EmptyOnDrop(
                Arc::clone(inbox),
            ))));
        }
        Arc::new(Lanes { inboxes })
    }

    fn len(&self) -> usize {
        self.inboxes.len()
    }

    /// Queues a frame for its wire's lane at once (a tick's snapshots go by [`HandBatch`]).
    fn push(&self, wire: Arc<Wire>, frame: Outgoing) {
        let lane = wire.lane;
        self.push_all(lane, &mut vec![(wire, frame)]);
    }

    /// Queues `frames` (all for lane `lane`) in one go; wakes the lane if its inbox was empty.
    fn push_all(&self, lane: usize, frames: &mut Vec<(Arc<Wire>, Outgoing)>) {
        if frames.is_empty() {
            return;
        }
        let inbox = &self.inboxes[lane % self.inboxes.len()];
        inbox.add(&inbox.items, |items| items.append(frames));
    }
}

/// A tick's frames for the lanes, kept until the hand-off is done and then queued one lane at
/// a time: one lock and at most one wake-up per lane per tick. Queued frame by frame, each
/// lane woke at the first and then took the frames a few at a time while the tick thread was
/// still queueing, the two threads taking turns at the inbox's lock.
#[derive(Debug, Default)]
pub struct HandBatch {
    lanes: Option<Arc<Lanes>>,
    per_lane: Vec<Vec<(Arc<Wire>, Outgoing)>>,
}

impl HandBatch {
    /// Queues every frame kept on its lane. Also on drop: a frame kept is never lost.
    pub fn flush(&mut self) {
        if let Some(lanes) = self.lanes.take() {
            for (lane, frames) in self.per_lane.iter_mut().enumerate() {
                lanes.push_all(lane, frames);
            }
        }
    }

    fn keep(&mut self, wire: Arc<Wire>, frame: Outgoing) {
        let lanes = match &self.lanes {
            Some(lanes) if Arc::ptr_eq(lanes, &wire.lanes) => lanes,
            Some(_) => {
                // Another server's wire (never within one room): queued at once.
                let lanes = Arc::clone(&wire.lanes);
                lanes.push(wire, frame);
                return;
            }
            None => self.lanes.insert(Arc::clone(&wire.lanes)),
        };
        if self.per_lane.len() < lanes.len() {
            self.per_lane.resize_with(lanes.len(), Vec::new);
        }
        self.per_lane[wire.lane % lanes.len()].push((wire, frame));
    }
}

impl Drop for HandBatch {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        for inbox in &self.inboxes {
            inbox.closed.store(true, Ordering::Release);
            inbox.wake.notify_one();
        }
    }
}

/// Empties a lane's inbox when the lane's task ends, however it ends. A queued `Arc<Wire>`
/// holds its `Arc<Lanes>`, which holds the inbox: a runtime shut down with frames or readable
/// connections still queued would otherwise keep the lanes, the wires and their sockets alive
/// for as long as the process runs.
struct EmptyOnDrop(Arc<LaneInbox>);

impl Drop for EmptyOnDrop {
    fn drop(&mut self) {
        // Taken out under the locks, dropped after them.
        let items = std::mem::take(&mut *self.0.items.lock());
        let readable = std::mem::take(&mut *self.0.readable.lock());
        drop((items, readable));
    }
}

/// A lane: takes its inbox whole, reads every readable connection and writes each frame, until
/// its lanes are dropped.
/// The inbox comes in its guard, so that it is emptied even if the task is dropped before it
/// ever ran.
async fn run_lane(inbox: EmptyOnDrop) {
    let inbox = &inbox.0;
    let mut batch = Vec::new();
    let mut readable = Vec::new();
    let mut bufs = LaneBufs::default();
    let mut busy: u32 = 0;
    loop {
        // Made before the inbox is taken: a push after it stores a wake-up for this.
        let notified = inbox.wake.notified();
        std::mem::swap(&mut readable, &mut *inbox.readable.lock());
        std::mem::swap(&mut batch, &mut *inbox.items.lock());
        if batch.is_empty() && readable.is_empty() {
            if inbox.closed.load(Ordering::Acquire) {
                return;
            }
            busy = 0;
            notified.await;
            continue;
        }
        for wire in readable.drain(..) {
            wire.read_pass(&mut bufs);
        }
        for (wire, frame) in batch.drain(..) {
            wire.push_frame(frame);
        }
        busy += 1;
        if busy >= PASSES_BEFORE_YIELD {
            busy = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// A lane's buffers, reused for every connection: what one read returns, and one payload
/// unmasked.
#[derive(Debug, Default)]
struct LaneBufs {
    read: Vec<u8>,
    payload: Vec<u8>,
}

/// One plain-TCP connection's writes, shared by its session and its lane.
#[derive(Debug)]
pub(crate) struct Wire {
    state: Mutex<WireState>,
    /// Frames handed to the lane and not yet completely written.
    backlog: AtomicU32,
    /// Wakes the session: bytes are left to write, or the connection failed.
    wake: Notify,
    lane: usize,
    lanes: Arc<Lanes>,
    read: Mutex<ReadSide>,
    /// Wakes the session: the reads are its again.
    read_turn: Notify,
    /// The socket's readiness wakes this while the lane reads: it queues the connection on
    /// its lane.
    read_waker: Waker,
    /// The connection is in its lane's queue of readable connections.
    read_queued: AtomicBool,
    limits: ReadLimits,
    stats: Arc<ServerStats>,
}

/// How much a connection may send at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadLimits {
    /// Largest message (and frame) payload accepted, in bytes.
    pub(crate) max_message: usize,
    /// Most bytes asked of the socket in one read.
    pub(crate) read_chunk: usize,
}

impl ReadLimits {
    /// Most bytes held for one connection: a whole frame of the largest message.
    fn max_buffered(self) -> usize {
        self.max_message + MAX_HEADER_BYTES
    }
}

/// One connection's reads, shared by its session (through [`WireIo`]) and its lane.
#[derive(Debug)]
struct ReadSide {
    reader: OwnedReadHalf,
    /// Bytes read from the socket and not yet taken, from `start` on. Empty (and without
    /// memory) most of the time: the lane reads into its own buffer and keeps here only the
    /// start of a frame that has not all arrived.
    buf: Vec<u8>,
    start: usize,
    /// The lane reads; the session waits for its turn.
    lane_reads: bool,
    /// Bytes of the frame tungstenite is reading still to hand it (0: between frames).
    frame_left: usize,
    /// The lane saw the end of the stream.
    eof: bool,
    /// The lane's read failed.
    error: Option<io::ErrorKind>,
    /// What the lane passes messages through, once the session lends it the reads.
    gate: Option<Arc<Mutex<Gate>>>,
}

impl ReadSide {
    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Forgets `n` bytes taken from the front; frees the buffer once it is empty.
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.buf.len() {
            self.buf = Vec::new();
            self.start = 0;
        }
    }

    /// Reads what the socket has, up to `limits.read_chunk` bytes and never more than
    /// `limits.max_buffered()` held. `Ready(Ok(0))` is the end of the stream.
    fn fill(&mut self, cx: &mut Context<'_>, limits: ReadLimits) -> Poll<io::Result<usize>> {
        // No memory is taken for a read while the socket is quiet (an idle connection).
        ready!(self.reader.as_ref().poll_read_ready(cx))?;
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        let room = limits
            .read_chunk
            .min(limits.max_buffered().saturating_sub(len))
            .max(1);
        self.buf.resize(len + room, 0);
        let polled = poll_recv(&self.reader, cx, &mut self.buf[len..]);
        let filled = match &polled {
            Poll::Ready(Ok(n)) => *n,
            _ => 0,
        };
        self.buf.truncate(len + filled);
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
        polled
    }
}

/// Reads what the socket has into `buf` (`Ready(Ok(0))`: the end of the stream), or registers
/// `cx` for its readiness.
///
/// Unlike tokio's `poll_read`, a read that returns less than `buf` holds ends the socket's
/// readiness: the socket had no more, so the read after it would only say so, at the cost of
/// a system call per message. This is safe with tokio's readiness: bytes that arrive after
/// the read raise a new event, which the clearing does not touch (it applies only to the
/// event it was read under), and the end of the stream is a state tokio never clears.
fn poll_recv(
    reader: &OwnedReadHalf,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    let stream: &TcpStream = reader.as_ref();
    loop {
        ready!(stream.poll_read_ready(cx))?;
        let mut got = 0;
        let read = stream.try_io(Interest::READABLE, || {
            let n = (&*socket2::SockRef::from(stream)).read(buf)?;
            got = n;
            if n > 0 && n < buf.len() {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        match read {
            Ok(()) => return Poll::Ready(Ok(got)),
            // Short, or nothing after all: readiness is cleared (the next poll registers).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if got > 0 {
                    return Poll::Ready(Ok(got));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// Wakes the lane for a readable connection.
struct ReadWaker(Weak<Wire>);

impl Wake for ReadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(wire) = self.0.upgrade() {
            wire.queue_read();
        }
    }
}

/// Why the lane stops reading a connection.
enum Stop {
    /// The session reads from here on.
    HandOver,
    /// The connection had its share of this pass: it goes to the back of the queue.
    Share,
}

#[derive(Debug)]
struct WireState {
    writer: OwnedWriteHalf,
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    written: usize,
    /// Where each lane frame in `buf` ends, oldest first.
    frame_ends: VecDeque<usize>,
    /// The session is closing: frames from the lane are dropped (nothing may follow the close
    /// frame).
    closing: bool,
    /// A write failed: the connection is lost.
    failed: Option<io::ErrorKind>,
    /// Most bytes waiting to be written.
    max_buffered: usize,
}

impl Wire {
    /// The wire of a connection, served by lane `lane` of `lanes`, buffering at most
    /// `max_buffered` unwritten bytes, and the session's side of it.
    /// `leftover` is what was read past the HTTP request: the start of the WebSocket stream.
    pub(crate) fn new(
        stream: TcpStream,
        leftover: Vec<u8>,
        lanes: Arc<Lanes>,
        lane: usize,
        max_buffered: usize,
        limits: ReadLimits,
        stats: Arc<ServerStats>,
    ) -> (Arc<Wire>, WireIo) {
        let lane = lane % lanes.len();
        let (reader, writer) = stream.into_split();
        let wire = Arc::new_cyclic(|me| Wire {
            state: Mutex::new(WireState {
                writer,
                buf: Vec::new(),
                written: 0,
                frame_ends: VecDeque::new(),
                closing: false,
                failed: None,
                max_buffered,
            }),
            backlog: AtomicU32::new(0),
            wake: Notify::new(),
            lane,
            lanes,
            read: Mutex::new(ReadSide {
                reader,
                buf: leftover,
                start: 0,
                lane_reads: false,
                frame_left: 0,
                eof: false,
                error: None,
                gate: None,
            }),
            read_turn: Notify::new(),
            read_waker: Waker::from(Arc::new(ReadWaker(Weak::clone(me)))),
            read_queued: AtomicBool::new(false),
            limits,
            stats,
        });
        let io = WireIo {
            wire: Arc::clone(&wire),
        };
        (wire, io)
    }

    /// Lends the reads to the lane, which passes what it takes through `gate`. Only between
    /// messages: the session calls it after a data message (tungstenite then holds no part of
    /// one).
    pub(crate) fn lend_reads(self: &Arc<Self>, gate: &Arc<Mutex<Gate>>) {
        {
            let mut rs = self.read.lock();
            if rs.frame_left != 0 {
                return;
            }
            if rs.gate.is_none() {
                rs.gate = Some(Arc::clone(gate));
            }
            rs.lane_reads = true;
        }
        // The lane takes what is buffered, then waits on the socket with its own waker.
        self.queue_read();
    }

    /// Takes the reads back from the lane (the session is closing).
    pub(crate) fn take_reads(&self) {
        self.read.lock().lane_reads = false;
    }

    /// Waits until the reads are the session's.
    pub(crate) async fn session_turn(&self) {
        loop {
            let notified = self.read_turn.notified();
            if !self.read.lock().lane_reads {
                return;
            }
            notified.await;
        }
    }

    /// Puts the connection in its lane's queue of readable connections, once.
    fn queue_read(self: &Arc<Self>) {
        if !self.read_queued.swap(true, Ordering::AcqRel) {
            let inbox = &self.lanes.inboxes[self.lane % self.lanes.inboxes.len()];
            inbox.push_readable(Arc::clone(self));
        }
    }

    /// The lane's turn at this connection: every message it can take, then a read of the
    /// socket, until the socket has nothing more (the lane's waker is then registered), the
    /// connection had its share, or the session must take over.
    fn read_pass(self: &Arc<Self>, bufs: &mut LaneBufs) {
        // Cleared first: readiness from here on queues the connection again.
        self.read_queued.store(false, Ordering::Release);
        let mut rs = self.read.lock();
        if !rs.lane_reads {
            return;
        }
        let Some(gate) = rs.gate.clone() else {
            return;
        };
        let mut taken = 0;
        let stop = loop {
            // What is left from before: the start of a frame, now perhaps complete.
            if !rs.pending().is_empty() {
                let (used, stop) =
                    self.take_frames(rs.pending(), &gate, &mut bufs.payload, &mut taken);
                rs.consume(used);
                if let Some(stop) = stop {
                    break stop;
                }
            }
            let mut cx = Context::from_waker(&self.read_waker);
            let read = if rs.pending().is_empty() {
                // Nothing held: read into the lane's buffer, keep only an incomplete frame.
                let max = self.limits.max_buffered();
                if bufs.read.len() < max {
                    bufs.read.resize(max, 0);
                }
                match poll_recv(&rs.reader, &mut cx, &mut bufs.read[..max]) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        let (used, stop) =
                            self.take_frames(&bufs.read[..n], &gate, &mut bufs.payload, &mut taken);
                        rs.buf.extend_from_slice(&bufs.read[used..n]);
                        if let Some(stop) = stop {
                            break stop;
                        }
                        continue;
                    }
                    other => other,
                }
            } else {
                rs.fill(&mut cx, self.limits)
            };
            match read {
                Poll::Ready(Ok(0)) => {
                    rs.eof = true;
                    break Stop::HandOver;
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    rs.error = Some(e.kind());
                    break Stop::HandOver;
                }
                // Nothing more: the socket's readiness wakes the lane.
                Poll::Pending => return,
            }
        };
        match stop {
            Stop::HandOver => {
                rs.lane_reads = false;
                drop(rs);
                self.read_turn.notify_one();
            }
            Stop::Share => {
                drop(rs);
                self.queue_read();
            }
        }
    }

    /// Takes the complete messages at the front of `bytes` that the lane handles. Returns how
    /// many bytes it took and why it stopped before the end of a frame, if it did.
    fn take_frames(
        &self,
        bytes: &[u8],
        gate: &Mutex<Gate>,
        payload_buf: &mut Vec<u8>,
        taken: &mut usize,
    ) -> (usize, Option<Stop>) {
        let mut gate = gate.lock();
        let mut pos = 0;
        while pos < bytes.len() {
            if *taken >= MAX_MESSAGES_PER_PASS {
                return (pos, Some(Stop::Share));
            }
            let (head, payload, mask) = match self.lane_frame(&bytes[pos..]) {
                LaneFrame::Take {
                    head,
                    payload,
                    mask,
                } => (head, payload, mask),
                LaneFrame::Incomplete => return (pos, None),
                LaneFrame::Session => return (pos, Some(Stop::HandOver)),
            };
            let masked = &bytes[pos + head..pos + head + payload];
            payload_buf.clear();
            payload_buf.extend(masked.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
            let Ok(msg) = decode_client(payload_buf) else {
                // The session reads it again and closes the connection for it.
                return (pos, Some(Stop::HandOver));
            };
            if Gate::answered_by_session(&msg) {
                return (pos, Some(Stop::HandOver));
            }
            pos += head + payload;
            *taken += 1;
            self.stats.messages_in.inc();
            self.stats.bytes_in.inc_by(payload as u64);
            gate.last_seen = std::time::Instant::now();
            match gate.take(msg) {
                Ok(_) if gate.has_backlog() => {
                    // Events wait for room in the world's queue: the session tries again
                    // each tick.
                    return (pos, Some(Stop::HandOver));
                }
                Ok(_) => {}
                Err(end) => {
                    gate.fault = Some(end);
                    return (pos, Some(Stop::HandOver));
                }
            }
        }
        (pos, None)
    }

    /// What the frame at the front of `bytes` is to the lane.
    fn lane_frame(&self, bytes: &[u8]) -> LaneFrame {
        let mut cursor = Cursor::new(bytes);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return LaneFrame::Incomplete,
            Err(_) => return LaneFrame::Session,
        };
        let ours = header.is_final
            && !header.rsv1
            && !header.rsv2
            && !header.rsv3
            && header.opcode == OpCode::Data(Data::Binary)
            && len <= self.limits.max_message as u64;
        let (true, Some(mask)) = (ours, header.mask) else {
            return LaneFrame::Session;
        };
        let head = cursor.position() as usize;
        let payload = len as usize;
        if bytes.len() - head < payload {
            return LaneFrame::Incomplete;
        }
        LaneFrame::Take {
            head,
            payload,
            mask,
        }
    }

    /// Appends one frame's messages (the tick's events, then the snapshot) as WebSocket binary
    /// frames and writes what the socket takes. Called by the lane.
    fn push_frame(&self, frame: Outgoing) {
        let mut st = self.state.lock();
        if st.closing || st.failed.is_some() {
            drop(st);
            self.backlog.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let Outgoing { head, body, events } = frame;
        if let Some((events_head, events_body)) = events {
            append_message(&mut st.buf, events_head.as_bytes(), &events_body);
        }
        append_message(&mut st.buf, head.as_bytes(), &body);
        let end = st.buf.len();
        st.frame_ends.push_back(end);
        if st.buf.len() - st.written > st.max_buffered {
            st.failed = Some(io::ErrorKind::OutOfMemory);
        } else {
            self.drain(&mut st);
        }
        let wake = st.written < st.buf.len() || st.failed.is_some();
        drop(st);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Writes buffered bytes until the socket would block. Counts lane frames completed.
    fn drain(&self, st: &mut WireState) {
        while st.written < st.buf.len() && st.failed.is_none() {
            match st.writer.try_write(&st.buf[st.written..]) {
                Ok(0) => st.failed = Some(io::ErrorKind::WriteZero),
                Ok(n) => st.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => st.failed = Some(e.kind()),
            }
        }
        let mut done = 0;
        while st.frame_ends.front().is_some_and(|end| *end <= st.written) {
            st.frame_ends.pop_front();
            done += 1;
        }
        if st.failed.is_some() {
            // Nothing more will be written: every lane frame left is done with.
            done += st.frame_ends.len() as u32;
            st.frame_ends.clear();
        }
        if done > 0 {
            self.backlog.fetch_sub(done, Ordering::AcqRel);
        }
        if st.written == st.buf.len() {
            st.buf.clear();
            st.written = 0;
        }
    }

    /// Writes what is buffered; ready once all of it is written (or the connection failed).
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.state.lock();
        loop {
            self.drain(&mut st);
            if let Some(kind) = st.failed {
                return Poll::Ready(Err(kind.into()));
            }
            if st.written == st.buf.len() {
                return Poll::Ready(Ok(()));
            }
            // The socket would block: wait for room (a write of what is left, which registers
            // for the wake-up, or takes some of it when room came meanwhile).
            let st = &mut *st;
            match ready!(Pin::new(&mut st.writer).poll_write(cx, &st.buf[st.written..])) {
                Ok(0) => st.failed = Some(io::ErrorKind::WriteZero),
                Ok(n) => st.written += n,
                Err(e) => st.failed = Some(e.kind()),
            }
        }
    }

    /// Waits until the lane has left bytes to write or the connection failed.
    pub(crate) async fn wants_flush(&self) {
        self.wake.notified().await;
    }

    /// From now on frames from the lane are dropped: the session is closing.
    pub(crate) fn close_lane(&self) {
        self.state.lock().closing = true;
    }
}

/// A frame at the front of a connection's bytes, as the lane sees it.
enum LaneFrame {
    /// A whole, final, masked binary frame within the size limit: its header and payload
    /// lengths, and its mask.
    Take {
        head: usize,
        payload: usize,
        mask: [u8; 4],
    },
    /// Not all of it has arrived.
    Incomplete,
    /// Anything else: the session's to read.
    Session,
}

/// Appends one WebSocket binary frame (unmasked, as a server sends) whose payload is `head`
/// then `body`.
fn append_message(buf: &mut Vec<u8>, head: &[u8], body: &[u8]) {
    let len = head.len() + body.len();
    buf.push(BINARY_FIN);
    if len < 126 {
        buf.push(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        buf.push(126);
        buf.extend_from_slice(&short.to_be_bytes());
    } else {
        buf.push(127);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
    buf.extend_from_slice(head);
    buf.extend_from_slice(body);
}

/// What the tick thread holds of a wire: a weak handle (the socket closes when its session
/// ends) and the bound on frames not yet written.
#[derive(Debug, Clone)]
pub struct WireHandle {
    wire: Weak<Wire>,
    max_backlog: u32,
}

/// Why a frame could not be handed over.
#[derive(Debug)]
pub enum HandError {
    /// The client has `outbox_len` frames not yet written: this one is skipped.
    Full,
    /// The session is gone.
    Closed,
}

impl WireHandle {
    pub(crate) fn new(wire: &Arc<Wire>, max_backlog: usize) -> WireHandle {
        WireHandle {
            wire: Arc::downgrade(wire),
            max_backlog: u32::try_from(max_backlog).unwrap_or(u32::MAX).max(1),
        }
    }

    /// Hands `frame` to the wire's lane, unless the client already has its bound of frames
    /// not yet written, or its session is gone.
    ///
    /// # Errors
    /// [`HandError::Full`] or [`HandError::Closed`]; the frame is dropped either way.
    pub fn try_send(&self, frame: Outgoing) -> Result<(), HandError> {
        let wire = self.reserve()?;
        let lanes = Arc::clone(&wire.lanes);
        lanes.push(wire, frame);
        Ok(())
    }

    /// [`Self::try_send`], the frame kept in `batch` until its [`HandBatch::flush`].
    ///
    /// # Errors
    /// As [`Self::try_send`].
    pub fn send_in(&self, frame: Outgoing, batch: &mut HandBatch) -> Result<(), HandError> {
        let wire = self.reserve()?;
        batch.keep(wire, frame);
        Ok(())
    }

    /// Counts one more frame against the client's bound, if it is under it.
    fn reserve(&self) -> Result<Arc<Wire>, HandError> {
        let wire = self.wire.upgrade().ok_or(HandError::Closed)?;
        if wire.backlog.load(Ordering::Acquire) >= self.max_backlog {
            return Err(HandError::Full);
        }
        wire.backlog.fetch_add(1, Ordering::AcqRel);
        Ok(wire)
    }
}

/// The session's side of a wire, for tungstenite: reads come from the socket, at most one
/// frame at a time, writes go into the wire's buffer (whole frames, in order with the lane's)
/// and out with the next flush.
#[derive(Debug)]
pub(crate) struct WireIo {
    wire: Arc<Wire>,
}

impl AsyncRead for WireIo {
    /// Hands tungstenite the bytes of the frame it is reading and never more, so that between
    /// messages every unread byte is in the wire, where the lane can take it.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let limits = self.wire.limits;
        let mut rs = self.wire.read.lock();
        // The session reads: the lane does not.
        rs.lane_reads = false;
        loop {
            if rs.frame_left == 0 && !rs.pending().is_empty() {
                // Between frames: the header says how far the next one goes.
                let mut cursor = Cursor::new(rs.pending());
                match FrameHeader::parse(&mut cursor) {
                    Ok(Some((_, len))) => {
                        let head = cursor.position() as usize;
                        rs.frame_left = usize::try_from(len)
                            .unwrap_or(usize::MAX)
                            .saturating_add(head);
                    }
                    // tungstenite finds the same fault in these bytes and says what it is.
                    Err(_) => rs.frame_left = usize::MAX,
                    Ok(None) if rs.eof || rs.error.is_some() => {
                        rs.frame_left = rs.pending().len();
                    }
                    Ok(None) => {
                        if ready!(rs.fill(cx, limits))? == 0 {
                            rs.eof = true;
                        }
                        continue;
                    }
                }
            }
            if !rs.pending().is_empty() {
                let n = rs.pending().len().min(rs.frame_left).min(out.remaining());
                out.put_slice(&rs.pending()[..n]);
                rs.frame_left -= n;
                rs.consume(n);
                return Poll::Ready(Ok(()));
            }
            if let Some(kind) = rs.error {
                return Poll::Ready(Err(kind.into()));
            }
            if rs.eof {
                return Poll::Ready(Ok(()));
            }
            if ready!(rs.fill(cx, limits))? == 0 {
                rs.eof = true;
            }
        }
    }
}

impl AsyncWrite for WireIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut st = self.wire.state.lock();
        if let Some(kind) = st.failed {
            return Poll::Ready(Err(kind.into()));
        }
        if st.buf.len() - st.written + data.len() > st.max_buffered {
            return Poll::Ready(Err(io::ErrorKind::OutOfMemory.into()));
        }
        // Taken whole: tungstenite writes whole frames, so frames never interleave with the
        // lane's. They leave with the flush that follows.
        st.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.wire.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.wire.poll_flush(cx))?;
        Pin::new(&mut self.wire.state.lock().writer).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boundary::ClientEvent;
    use crate::net::rate::Limiter;
    use crate::net::session::End;
    use bytes::Bytes;
    use tickwire_protocol::codec::FrameHead;
    use tickwire_protocol::{ClientMsg, GameSchema};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;

    #[tokio::test]
    async fn the_lane_writes_whole_frames_and_a_frame_over_the_bound_ends_the_connection() {
        let (mut peer, stream) = connected_pair().await;
        let (wire, _io) = test_wire(stream, Vec::new());
        let handle = WireHandle::new(&wire, 2);

        let mut frame = Outgoing::framed(FrameHead::default(), Bytes::from(vec![7u8; 200]));
        frame.events = Some((FrameHead::default(), Bytes::from_static(&[1, 2, 3])));
        handle.try_send(frame).expect("handed");
        // The events message, then the snapshot, each one binary frame.
        let mut got = vec![0u8; 2 + 3 + 4 + 200];
        peer.read_exact(&mut got).await.expect("reads");
        assert_eq!(&got[..5], &[0x82, 3, 1, 2, 3]);
        assert_eq!(&got[5..9], &[0x82, 126, 0, 200]);
        assert!(got[9..].iter().all(|b| *b == 7));

        // Over the bound on unwritten bytes: the connection fails, and the session hears it.
        let big = Outgoing::framed(FrameHead::default(), Bytes::from(vec![0u8; 70 * 1024]));
        handle.try_send(big).expect("handed");
        tokio::time::timeout(std::time::Duration::from_secs(5), wire.wants_flush())
            .await
            .expect("the session is woken");
        let flushed = std::future::poll_fn(|cx| wire.poll_flush(cx)).await;
        assert_eq!(
            flushed.map_err(|e| e.kind()),
            Err(io::ErrorKind::OutOfMemory)
        );
        // Nothing is left counted against the client.
        assert_eq!(wire.backlog.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_batch_queues_a_ticks_frames_at_its_flush_one_lane_at_a_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("addr");
        let lanes = Lanes::spawn(2);
        let limits = ReadLimits {
            max_message: 1024,
            read_chunk: 1024,
        };
        let mut peers = Vec::new();
        let mut handles = Vec::new();
        for lane in 0..2 {
            let peer = TcpStream::connect(addr).await.expect("connects");
            let (stream, _) = listener.accept().await.expect("accepts");
            let stats = Arc::new(ServerStats::default());
            let (wire, io) = Wire::new(
                stream,
                Vec::new(),
                Arc::clone(&lanes),
                lane,
                64 * 1024,
                limits,
                stats,
            );
            handles.push(WireHandle::new(&wire, 4));
            peers.push((peer, wire, io));
        }
        let frame = |byte: u8| Outgoing::framed(FrameHead::default(), Bytes::from(vec![byte; 3]));
        let mut batch = HandBatch::default();
        for byte in [1, 2, 3] {
            for handle in &handles {
                handle.send_in(frame(byte), &mut batch).expect("kept");
            }
        }
        // Counted against each client's bound, but not queued until the flush.
        for (lane, (_, wire, _)) in peers.iter().enumerate() {
            assert_eq!(wire.backlog.load(Ordering::Acquire), 3);
            assert!(lanes.inboxes[lane].items.lock().is_empty());
        }
        batch.flush();
        for (peer, wire, _) in &mut peers {
            let mut got = vec![0u8; 3 * (2 + 3)];
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                peer.read_exact(&mut got),
            )
            .await
            .expect("the frames come")
            .expect("reads");
            for (i, byte) in [1u8, 2, 3].into_iter().enumerate() {
                let f = &got[i * 5..i * 5 + 5];
                assert_eq!(&f[..2], &[0x82, 3], "one binary frame each");
                assert_eq!(&f[2..], &[byte; 3], "in the order kept");
            }
            assert_eq!(wire.backlog.load(Ordering::Acquire), 0);
        }
        // A batch dropped without its flush still queues what it kept.
        let mut batch = HandBatch::default();
        handles[0].send_in(frame(4), &mut batch).expect("kept");
        drop(batch);
        let mut got = [0u8; 5];
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            peers[0].0.read_exact(&mut got),
        )
        .await
        .expect("the frame comes")
        .expect("reads");
        assert_eq!(got, [0x82, 3, 4, 4, 4]);
    }

    #[test]
    fn a_runtime_shut_down_with_frames_queued_frees_the_lanes_and_the_wires() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // The lane's task is spawned but never polled: the runtime drops it with the frame and
        // the readable connection still in its inbox.
        let (lanes, wire) = runtime.block_on(async {
            let (_peer, stream) = connected_pair().await;
            let (wire, _io) = test_wire(stream, Vec::new());
            let lanes = Arc::clone(&wire.lanes);
            let handle = WireHandle::new(&wire, 4);
            handle
                .try_send(Outgoing::framed(
                    FrameHead::default(),
                    Bytes::from_static(&[1, 2, 3]),
                ))
                .expect("queued");
            lanes.inboxes[0].push_readable(Arc::clone(&wire));
            (Arc::downgrade(&lanes), Arc::downgrade(&wire))
        });
        assert!(lanes.upgrade().is_some(), "the queued wire keeps its lanes");
        drop(runtime);
        assert!(lanes.upgrade().is_none(), "the lanes are freed");
        assert!(
            wire.upgrade().is_none(),
            "the wire and its socket are freed"
        );
    }

    /// A loopback connection: the client's end and the server's.
    async fn connected_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let peer = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connects");
        let (stream, _) = listener.accept().await.expect("accepts");
        (peer, stream)
    }

    fn test_wire(stream: TcpStream, leftover: Vec<u8>) -> (Arc<Wire>, WireIo) {
        let limits = ReadLimits {
            max_message: 1024,
            read_chunk: 1024,
        };
        let stats = Arc::new(ServerStats::default());
        Wire::new(
            stream,
            leftover,
            Lanes::spawn(1),
            0,
            64 * 1024,
            limits,
            stats,
        )
    }

    /// A connected pair: the server's wire and tungstenite on its `WireIo` (the session's
    /// side), the client's raw socket, and a gate whose queue to the world is `rx`.
    async fn read_setup(
        limiter: Limiter,
        leftover: Vec<u8>,
    ) -> (
        Arc<Wire>,
        tokio_tungstenite::WebSocketStream<WireIo>,
        TcpStream,
        Arc<Mutex<Gate>>,
        crossbeam_channel::Receiver<ClientEvent>,
    ) {
        let (peer, stream) = connected_pair().await;
        let (wire, io) = test_wire(stream, leftover);
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        let stats = Arc::new(ServerStats::default());
        let mut gate = Gate::new(
            stats,
            Arc::new(GameSchema::default()),
            limiter,
            std::time::Instant::now(),
        );
        let (tx, rx) = crossbeam_channel::bounded(64);
        gate.joined(tx);
        (wire, ws, peer, Arc::new(Mutex::new(gate)), rx)
    }

    /// One masked client frame (FIN, binary) carrying `msg`.
    fn client_frame(msg: &ClientMsg) -> Vec<u8> {
        let mut payload = Vec::new();
        tickwire_protocol::codec::encode_client(msg, &mut payload);
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![0x82];
        assert!(payload.len() < 126);
        frame.push(0x80 | payload.len() as u8);
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        frame
    }

    fn input(seq: u32) -> ClientMsg {
        ClientMsg::Input(tickwire_protocol::InputMsg {
            seq,
            ack: None,
            tick: None,
            events_ack: 0,
            fields: Vec::new(),
        })
    }

    /// The next event the world gets from the connection (waits at most 10 s).
    async fn world_gets(rx: &crossbeam_channel::Receiver<ClientEvent>) -> ClientEvent {
        let rx = rx.clone();
        tokio::task::spawn_blocking(move || rx.recv_timeout(std::time::Duration::from_secs(10)))
            .await
            .expect("joins")
            .expect("the world gets an event")
    }

    fn seq_of(event: &ClientEvent) -> u32 {
        match event {
            ClientEvent::Input { seq, .. } => *seq,
            other => panic!("expected an input, got {other:?}"),
        }
    }

    fn limiter() -> Limiter {
        Limiter::new(1000, 1000, 1000, std::time::Instant::now())
    }

    #[tokio::test]
    async fn the_lane_takes_inputs_and_the_session_reads_what_it_hands_back_one_frame_at_a_time() {
        use futures_util::StreamExt;
        // The first input arrives with the HTTP request (the leftover), cut in its middle.
        let first = client_frame(&input(1));
        let (head, tail) = first.split_at(3);
        let (wire, mut ws, mut peer, gate, rx) = read_setup(limiter(), head.to_vec()).await;
        let mut burst = tail.to_vec();
        burst.extend(client_frame(&input(2)));
        burst.extend(client_frame(&ClientMsg::Ping { nonce: 7 }));
        burst.extend(client_frame(&input(3)));
        burst.extend(client_frame(&input(4)));
        peer.write_all(&burst).await.expect("writes");

        wire.lend_reads(&gate);
        assert_eq!(seq_of(&world_gets(&rx).await), 1);
        assert_eq!(seq_of(&world_gets(&rx).await), 2);
        // The ping message is the session's: the lane stops before it and hands over.
        tokio::time::timeout(std::time::Duration::from_secs(10), wire.session_turn())
            .await
            .expect("the session's turn comes");
        let msg = ws.next().await.expect("a message").expect("reads");
        let msg = decode_client(&msg.into_data()).expect("decodes");
        assert!(matches!(msg, ClientMsg::Ping { nonce: 7 }), "{msg:?}");
        // tungstenite was handed that frame and nothing more: the inputs after it are in the
        // wire, for the lane.
        assert_eq!(
            wire.read.lock().pending().len(),
            2 * client_frame(&input(3)).len()
        );
        assert!(rx.is_empty());
        wire.lend_reads(&gate);
        assert_eq!(seq_of(&world_gets(&rx).await), 3);
        assert_eq!(seq_of(&world_gets(&rx).await), 4);

        // A stale input is refused by the gate, not by the session, and counted as such.
        peer.write_all(&client_frame(&input(4)))
            .await
            .expect("writes");
        peer.write_all(&client_frame(&input(5)))
            .await
            .expect("writes");
        assert_eq!(seq_of(&world_gets(&rx).await), 5);
        assert!(gate.lock().fault.is_none());

        // The end of the stream goes to the session, which sees the connection drop.
        peer.shutdown().await.expect("shuts down");
        tokio::time::timeout(std::time::Duration::from_secs(10), wire.session_turn())
            .await
            .expect("the session's turn comes");
        assert!(!matches!(ws.next().await, Some(Ok(_))));
    }

    #[tokio::test]
    async fn a_burst_from_one_client_is_taken_in_shares_and_in_order() {
        let (wire, _ws, mut peer, gate, rx) = read_setup(limiter(), Vec::new()).await;
        let burst: Vec<u8> = (1..=40).flat_map(|seq| client_frame(&input(seq))).collect();
        peer.write_all(&burst).await.expect("writes");
        wire.lend_reads(&gate);
        // 40 messages are more than two shares of a pass: the connection goes to the back of
        // the queue twice, and nothing is lost or reordered.
        for seq in 1..=40 {
            assert_eq!(seq_of(&world_gets(&rx).await), seq);
        }
        assert!(wire.read.lock().lane_reads, "the lane still reads");
        assert!(wire.read.lock().pending().is_empty());
    }

    #[tokio::test]
    async fn a_fault_the_lane_finds_goes_to_the_session_and_nothing_after_it_is_taken() {
        // A budget of two inputs, and abuse at the second one dropped.
        let strict = Limiter::new(1, 2, 2, std::time::Instant::now());
        let (wire, _ws, mut peer, gate, rx) = read_setup(strict, Vec::new()).await;
        let mut flood = Vec::new();
        for seq in 1..=8 {
            flood.extend(client_frame(&input(seq)));
        }
        peer.write_all(&flood).await.expect("writes");
        wire.lend_reads(&gate);
        tokio::time::timeout(std::time::Duration::from_secs(10), wire.session_turn())
            .await
            .expect("the session's turn comes");
        let fault = gate.lock().fault.take();
        assert!(
            matches!(fault, Some(End::Close { code, .. }) if code == tickwire_protocol::close::POLICY_VIOLATION),
            "{fault:?}"
        );
        // Two inputs within the budget reached the world; the two over it were dropped (the
        // second drop is the abuse), and the four after the fault stay unread by the lane.
        assert_eq!(rx.len(), 2);
        assert_eq!(
            wire.read.lock().pending().len(),
            4 * client_frame(&input(1)).len()
        );
    }

    #[test]
    fn frame_headers_follow_rfc_6455() {
        for (len, header) in [
            (0usize, vec![0x82, 0]),
            (125, vec![0x82, 125]),
            (126, vec![0x82, 126, 0, 126]),
            (65_535, vec![0x82, 126, 0xFF, 0xFF]),
            (65_536, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let body = vec![7u8; len.saturating_sub(1)];
            let head: &[u8] = if len > 0 { &[9] } else { &[] };
            let mut buf = Vec::new();
            append_message(&mut buf, head, &body);
            assert_eq!(&buf[..header.len()], header.as_slice(), "{len}");
            assert_eq!(buf.len(), header.len() + len);
            if len > 0 {
                assert_eq!(buf[header.len()], 9, "the head comes first");
            }
        }
    }
}
