//! A socket-less client of the simulation: the session's side of the [`crate::boundary`] with
//! no socket behind it. The simulation tests, the headroom command and the benches all drive
//! the world through it, so there is one way to join, send, receive and verify without a network.

use crate::boundary::{ClientEvent, ClientId, JoinRequest, Kick, LeaveReason, LeaveSlot, Outgoing};
use crossbeam_channel::Sender;
use std::sync::Arc;
use std::task::Context;
use tickwire_protocol::codec::decode_server;
use tickwire_protocol::{InputWords, NetId, Replica, ServerMsg, Tick, Welcome};
use tokio::sync::mpsc;

/// One client with no socket: its channels to the tick thread and, when it verifies, a replica.
#[derive(Debug)]
pub struct SimClient {
    /// Its events to the tick thread; `None` once disconnected.
    pub events: Option<Sender<ClientEvent>>,
    /// Frames from the tick thread.
    pub outbox: mpsc::Receiver<Outgoing>,
    /// Where it writes its leave reason before disconnecting.
    pub leave: LeaveSlot,
    /// Kicks from the tick thread.
    pub kick: Arc<Kick>,
    /// Its view of the world, built from the snapshots it verified (from its welcome on).
    pub replica: Option<Replica>,
    /// Its welcome, once received.
    pub welcome: Option<Welcome>,
    /// The player it controls; `NetId(0)` (never allocated) until its welcome is received.
    pub player: NetId,
    /// Frames received so far.
    pub frames: usize,
    /// Snapshots verified so far (applied to the replica, checksum matched).
    pub verified: u64,
    seq: u32,
    /// Server events taken, in order (acknowledged as they come).
    pub server_events: Vec<(u32, tickwire_protocol::EventRecord)>,
    /// The newest server event taken.
    pub events_taken: u32,
    /// The server's events were taken since the last acknowledgement: it rides on the next
    /// input, as with a real client.
    events_ack_owed: bool,
}

/// What one [`SimClient::receive`] drained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Frames drained.
    pub frames: usize,
    /// Their payload bytes.
    pub bytes: u64,
    /// The tick of the newest snapshot among them.
    pub newest: Option<Tick>,
}

impl SimClient {
    /// A client and the join request that brings it into the world, with an event queue of
    /// `queue_len` and an outbox of `outbox_len` frames.
    #[must_use]
    pub fn new(
        id: ClientId,
        name: &str,
        queue_len: usize,
        outbox_len: usize,
    ) -> (SimClient, JoinRequest) {
        let (events, events_rx) = crossbeam_channel::bounded(queue_len.max(1));
        let (outbox_tx, outbox) = mpsc::channel(outbox_len.max(1));
        let leave = LeaveSlot::default();
        let kick = Arc::new(Kick::default());
        let join = JoinRequest {
            client: id,
            name: name.to_owned(),
            events: events_rx,
            outbox: outbox_tx,
            wire: None,
            leave: Arc::clone(&leave),
            kick: Arc::clone(&kick),
            player_id: None,
            secret: None,
            resume: None,
        };
        let client = SimClient {
            events: Some(events),
            outbox,
            leave,
            kick,
            replica: None,
            welcome: None,
            player: NetId(0),
            frames: 0,
            verified: 0,
            seq: 0,
            server_events: Vec::new(),
            events_taken: 0,
            events_ack_owed: false,
        };
        (client, join)
    }

    /// Queues an event for the tick thread; false if the queue is full or disconnected.
    pub fn send(&self, event: ClientEvent) -> bool {
        self.events
            .as_ref()
            .is_some_and(|e| e.try_send(event).is_ok())
    }

    /// Queues an input (its words, already valid for the game's schema) with the next sequence
    /// number, and the snapshot acknowledgement `ack` and the owed acknowledgement of the
    /// server's events riding on it, as a session forwards them.
    pub fn send_input(&mut self, words: &[i64], ack: Option<Tick>) -> bool {
        self.seq += 1;
        let events_ack = if std::mem::take(&mut self.events_ack_owed) {
            self.events_taken
        } else {
            0
        };
        self.send(ClientEvent::Input {
            seq: self.seq,
            ack,
            tick: None,
            received: None,
            events_ack,
            words: InputWords::from_words(words),
        })
    }

    /// Drains every frame: reads the welcome, and when `verify` is set applies each snapshot to
    /// the replica and checks it against the server's checksum.
    ///
    /// # Errors
    /// A frame that does not decode, or a snapshot that does not apply, with what went wrong.
    pub fn receive(&mut self, verify: bool) -> Result<Received, String> {
        let mut got = Received::default();
        while let Ok(mut frame) = self.outbox.try_recv() {
            got.frames += 1;
            got.bytes += frame.len() as u64;
            self.frames += 1;
            // The tick's events, written before its snapshot: always read.
            if let Some(events) = frame.take_events() {
                self.read(&events, verify, &mut got)?;
            }
            // Unverified, a snapshot (a frame with a header of its own) is only counted; other
            // messages (the welcome, events) are always read.
            if !verify && self.player != NetId(0) && !frame.head.as_bytes().is_empty() {
                continue;
            }
            // What the session would write.
            for bytes in frame.into_messages() {
                self.read(&bytes, verify, &mut got)?;
            }
        }
        Ok(got)
    }

    /// Reads one message the session would write.
    fn read(&mut self, bytes: &[u8], verify: bool, got: &mut Received) -> Result<(), String> {
        match decode_server(bytes).map_err(|e| format!("undecodable frame: {e}"))? {
            ServerMsg::Welcome(w) => {
                self.player = w.player;
                self.replica = Some(Replica::new(std::sync::Arc::new(w.schema.clone())));
                self.welcome = Some(w);
            }
            ServerMsg::Snapshot(s) => {
                got.newest = Some(s.header.tick);
                if verify {
                    let replica = self
                        .replica
                        .as_mut()
                        .ok_or("a snapshot before the welcome")?;
                    replica.apply(&s.header, &s.body).map_err(|e| {
                        format!(
                            "snapshot of tick {} (baseline {:?}) does not apply: {e}",
                            s.header.tick, s.header.baseline
                        )
                    })?;
                    self.verified += 1;
                }
            }
            ServerMsg::Events(msg) => {
                for (i, e) in msg.events.into_iter().enumerate() {
                    let seq = msg.first + u32::try_from(i).unwrap_or(u32::MAX);
                    if seq <= self.events_taken {
                        continue;
                    }
                    if seq != self.events_taken + 1 {
                        return Err(format!(
                            "server event {seq} after {}: one was lost",
                            self.events_taken
                        ));
                    }
                    self.events_taken = seq;
                    self.server_events.push((seq, e));
                }
                // Acknowledged with the next input, as a client does.
                self.events_ack_owed = true;
            }
            other => return Err(format!("unexpected message {other:?}")),
        }
        Ok(())
    }

    /// Registers `cx`'s waker on the outbox, as a session waiting for its next frame does, so
    /// the tick thread's next `try_send` wakes it. Call it right after [`SimClient::receive`]
    /// emptied the outbox.
    ///
    /// # Panics
    /// If a frame is waiting (it would be lost).
    pub fn wait_for_frames(&mut self, cx: &mut Context<'_>) {
        let waiting = self.outbox.poll_recv(cx);
        assert!(
            !matches!(waiting, std::task::Poll::Ready(Some(_))),
            "wait_for_frames is called on an emptied outbox"
        );
    }

    /// Ends the session as a closing one does: the reason first, then the channel.
    pub fn disconnect(&mut self, reason: LeaveReason) {
        *self.leave.lock() = Some(reason);
        self.events = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_increase_and_a_disconnected_client_sends_nothing() {
        let (mut c, join) = SimClient::new(ClientId(1), "c", 4, 4);
        assert!(c.send_input(&[1], None));
        assert!(c.send_input(&[2], Some(Tick(3))));
        let seqs: Vec<u32> = join
            .events
            .try_iter()
            .map(|e| match e {
                ClientEvent::Input { seq, .. } => seq,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, vec![1, 2]);
        c.disconnect(LeaveReason::PeerClosed);
        assert!(!c.send(ClientEvent::Ack(Tick(1))));
        assert_eq!(*join.leave.lock(), Some(LeaveReason::PeerClosed));
    }
}
