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

use crate::boundary::Outgoing;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;

/// FIN and the binary opcode: the first byte of every data frame the server sends.
const BINARY_FIN: u8 = 0x82;

/// The lanes: one inbox and one task per network thread. Dropping them ends the tasks.
#[derive(Debug)]
pub(crate) struct Lanes {
    inboxes: Vec<Arc<LaneInbox>>,
}

#[derive(Debug, Default)]
struct LaneInbox {
    items: Mutex<Vec<(Arc<Wire>, Outgoing)>>,
    wake: Notify,
    closed: std::sync::atomic::AtomicBool,
}

impl Lanes {
    /// `n` lanes, each with its task on the current tokio runtime.
    pub(crate) fn spawn(n: usize) -> Arc<Lanes> {
        let inboxes: Vec<Arc<LaneInbox>> = (0..n.max(1))
            .map(|_| Arc::new(LaneInbox::default()))
            .collect();
        for inbox in &inboxes {
            tokio::spawn(run_lane(Arc::clone(inbox)));
        }
        Arc::new(Lanes { inboxes })
    }

    fn len(&self) -> usize {
        self.inboxes.len()
    }

    /// Queues a frame for its wire's lane; wakes the lane if its inbox was empty, so a tick's
    /// hand-off wakes each lane once.
    fn push(&self, wire: Arc<Wire>, frame: Outgoing) {
        let inbox = &self.inboxes[wire.lane % self.inboxes.len()];
        let was_empty = {
            let mut items = inbox.items.lock();
            let was_empty = items.is_empty();
            items.push((wire, frame));
            was_empty
        };
        if was_empty {
            inbox.wake.notify_one();
        }
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

/// A lane: takes its inbox whole and writes each frame, until its lanes are dropped.
async fn run_lane(inbox: Arc<LaneInbox>) {
    let mut batch = Vec::new();
    loop {
        // Made before the inbox is taken: a push after it stores a wake-up for this.
        let notified = inbox.wake.notified();
        std::mem::swap(&mut batch, &mut *inbox.items.lock());
        if batch.is_empty() {
            if inbox.closed.load(Ordering::Acquire) {
                inbox.items.lock().clear();
                return;
            }
            notified.await;
            continue;
        }
        for (wire, frame) in batch.drain(..) {
            wire.push_frame(frame);
        }
    }
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
    pub(crate) fn new(
        stream: TcpStream,
        lanes: Arc<Lanes>,
        lane: usize,
        max_buffered: usize,
    ) -> (Arc<Wire>, WireIo) {
        let lane = lane % lanes.len();
        let (reader, writer) = stream.into_split();
        let wire = Arc::new(Wire {
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
        });
        let io = WireIo {
            reader,
            wire: Arc::clone(&wire),
        };
        (wire, io)
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
        let wire = self.wire.upgrade().ok_or(HandError::Closed)?;
        if wire.backlog.load(Ordering::Acquire) >= self.max_backlog {
            return Err(HandError::Full);
        }
        wire.backlog.fetch_add(1, Ordering::AcqRel);
        let lanes = Arc::clone(&wire.lanes);
        lanes.push(wire, frame);
        Ok(())
    }
}

/// The session's side of a wire, for tungstenite: reads come from the socket, writes go into
/// the wire's buffer (whole frames, in order with the lane's) and out with the next flush.
#[derive(Debug)]
pub(crate) struct WireIo {
    reader: OwnedReadHalf,
    wire: Arc<Wire>,
}

impl AsyncRead for WireIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
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
    use bytes::Bytes;
    use tickwire_protocol::codec::FrameHead;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_lane_writes_whole_frames_and_a_frame_over_the_bound_ends_the_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let mut peer = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connects");
        let (stream, _) = listener.accept().await.expect("accepts");
        let (wire, _io) = Wire::new(stream, Lanes::spawn(1), 0, 64 * 1024);
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
