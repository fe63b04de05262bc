//! WebSocket close codes used by the server, with the reason each stands for.
//!
//! Codes below 4000 are the standard ones of RFC 6455; 4000-4999 are Tickwire's own.
//! `docs/PROTOCOL.md` has the same table.

/// Normal closure: the client asked to close.
pub const NORMAL: u16 = 1000;
/// The server is shutting down.
pub const GOING_AWAY: u16 = 1001;
/// A WebSocket protocol violation (bad framing, unmasked frame, ...).
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text frame arrived; the protocol is binary.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// A binary message could not be decoded as a [`crate::ClientMsg`], or a text frame was not
/// valid UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// The client broke a rule of the protocol (see the reason).
pub const POLICY_VIOLATION: u16 = 1008;
/// A message was larger than the server accepts.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The server hit an unexpected internal error.
pub const INTERNAL_ERROR: u16 = 1011;
/// The server is full or overloaded; try again later.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// The hello carried a protocol version the server does not speak.
pub const VERSION_MISMATCH: u16 = 4001;
/// A message arrived that is not valid in the session's current state.
pub const UNEXPECTED_MESSAGE: u16 = 4002;
/// No hello arrived within the handshake timeout.
pub const HELLO_TIMEOUT: u16 = 4003;
/// Nothing (not even a pong) arrived from the client within the idle timeout.
pub const IDLE_TIMEOUT: u16 = 4004;
/// The client read so slowly that it skipped too many snapshots (too many in a row, or too
/// large a fraction of a sliding window).
pub const TOO_SLOW: u16 = 4005;
/// The client was sent snapshots for `ack_timeout_ms` without acknowledging any of them.
pub const NO_ACKS: u16 = 4006;
/// The hello asked for a room (by id) or a game this server does not have. Retrying the same
/// request is pointless.
pub const NO_SUCH_ROOM: u16 = 4007;
/// The room asked for by id is full (locked). Another room, or later, may have a seat.
pub const ROOM_FULL: u16 = 4008;
/// The client's join token does not admit the room or game its hello asked for.
pub const NOT_PERMITTED: u16 = 4009;
/// A resume named an unknown or expired secret (or its player is gone). Retrying the same
/// secret is pointless: join again with a hello.
pub const RESUME_REFUSED: u16 = 4010;
/// Another connection resumed this client's player: this one is closed.
pub const REPLACED: u16 = 4011;
/// The client fell too far behind on events: more unacknowledged server events (or bytes of
/// them) than the server keeps per client; or it sent events out of order.
pub const EVENTS_BEHIND: u16 = 4012;
