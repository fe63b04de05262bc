//! The codec: the one module that calls bincode.
//!
//! One fixed configuration (bincode 2 `standard`: little-endian, variable-length integers) is
//! used for everything. Every decode checks the input length against a limit before decoding and
//! passes the same limit to bincode, so a forged length prefix cannot make the decoder allocate
//! more than the limit; trailing bytes after a message are an error.

use crate::msg::{ClientMsg, InputMsg, ServerMsg, Snapshot, SnapshotHeader};
use crate::tick::Tick;
use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::enc::write::Writer;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use thiserror::Error;

/// Largest encoded [`ClientMsg`] the server accepts, in bytes. The largest legal one (a hello
/// with a 32-byte name, or an input of the largest schema) is under 200 bytes.
pub const MAX_CLIENT_MSG_BYTES: usize = 512;

/// Largest encoded [`ServerMsg`] a client accepts, in bytes.
pub const MAX_SERVER_MSG_BYTES: usize = 4 * 1024 * 1024;

/// Variant index of [`ServerMsg::Snapshot`] in the encoding: a snapshot's header and body are
/// written and read here by hand (the body is the rest of the frame). A test pins it.
const SNAPSHOT_VARIANT: u8 = 1;
/// Index of `ServerMsg::Events`.
const EVENTS_VARIANT: u8 = 4;
/// Variant index of [`ClientMsg::Input`]: also written and read by hand.
const INPUT_VARIANT: u8 = 1;

type Cfg = Configuration<LittleEndian, Varint>;
type ClientCfg = Configuration<LittleEndian, Varint, Limit<MAX_CLIENT_MSG_BYTES>>;
type ServerCfg = Configuration<LittleEndian, Varint, Limit<MAX_SERVER_MSG_BYTES>>;

pub(crate) const CFG: Cfg = config::standard();
const CLIENT_CFG: ClientCfg = config::standard().with_limit::<MAX_CLIENT_MSG_BYTES>();
const SERVER_CFG: ServerCfg = config::standard().with_limit::<MAX_SERVER_MSG_BYTES>();

/// Why bytes could not be decoded.
#[derive(Debug, Error)]
pub enum CodecError {
    /// The message is longer than the limit for its direction.
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Length of the input.
        len: usize,
        /// The limit that applied.
        limit: usize,
    },
    /// The bytes are not a valid encoding of the message type.
    #[error("malformed message: {0}")]
    Malformed(#[from] bincode::error::DecodeError),
    /// The text is not a valid JSON encoding of the message type.
    #[error("malformed JSON message: {0}")]
    Json(#[from] serde_json::Error),
    /// A valid message was followed by extra bytes.
    #[error("{extra} trailing bytes after the message")]
    TrailingBytes {
        /// Number of bytes left over.
        extra: usize,
    },
}

fn decode_bounded<T: Decode<()>, C: bincode::config::Config>(
    bytes: &[u8],
    limit: usize,
    cfg: C,
) -> Result<T, CodecError> {
    if bytes.len() > limit {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let (msg, used) = bincode::decode_from_slice(bytes, cfg)?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes {
            extra: bytes.len() - used,
        });
    }
    Ok(msg)
}

pub(crate) fn encode_into<T: Encode>(value: &T, out: &mut Vec<u8>) {
    struct VecWriter<'a>(&'a mut Vec<u8>);
    impl Writer for VecWriter<'_> {
        fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
    }
    // Writing into a Vec cannot fail; the only other error is a snapshot list that is not
    // sorted by id, which the server never builds (its lists come from merge walks).
    bincode::encode_into_writer(value, VecWriter(out), CFG)
        .expect("messages are well formed: snapshot lists sorted by id");
}

/// Appends bincode's standard unsigned varint of `v` (see `docs/PROTOCOL.md`): written by hand
/// because snapshot bodies are assembled from parts, where a call into bincode per count costs
/// more than the count. Tests hold it to bincode's own encoding.
pub(crate) fn varint_into(v: u64, out: &mut Vec<u8>) {
    if v < 251 {
        out.push(v as u8);
    } else if v <= u64::from(u16::MAX) {
        out.push(0xFB);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= u64::from(u32::MAX) {
        out.push(0xFC);
        out.extend_from_slice(&(v as u32).to_le_bytes());
    } else {
        out.push(0xFD);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Reads a varint written by [`varint_into`] from the start of `bytes`: the value and the bytes
/// it took. A longer form than needed is refused, so every value has one encoding.
pub(crate) fn varint_from(bytes: &[u8]) -> Option<(u64, usize)> {
    let (&first, rest) = bytes.split_first()?;
    let (v, len, min) = match first {
        0..=250 => return Some((u64::from(first), 1)),
        0xFB => (
            u64::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?)),
            3,
            251,
        ),
        0xFC => (
            u64::from(u32::from_le_bytes(rest.get(..4)?.try_into().ok()?)),
            5,
            1 << 16,
        ),
        0xFD => (
            u64::from_le_bytes(rest.get(..8)?.try_into().ok()?),
            9,
            1 << 32,
        ),
        _ => return None,
    };
    (v >= min).then_some((v, len))
}

/// Decodes a client message, refusing anything over [`MAX_CLIENT_MSG_BYTES`].
pub fn decode_client(bytes: &[u8]) -> Result<ClientMsg, CodecError> {
    if bytes.len() > MAX_CLIENT_MSG_BYTES {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit: MAX_CLIENT_MSG_BYTES,
        });
    }
    if let Some((&INPUT_VARIANT, rest)) = bytes.split_first() {
        let bad = || CodecError::Malformed(DecodeError::Other("malformed input"));
        let (seq, a) = varint_from(rest).ok_or_else(bad)?;
        let (ack, b) = varint_from(&rest[a..]).ok_or_else(bad)?;
        let (tick, c) = varint_from(&rest[a + b..]).ok_or_else(bad)?;
        let (events_ack, d) = varint_from(&rest[a + b + c..]).ok_or_else(bad)?;
        let seq = u32::try_from(seq).map_err(|_| bad())?;
        let events_ack = u32::try_from(events_ack).map_err(|_| bad())?;
        let tick_or_none = |v: u64| match v {
            0 => Ok(None),
            n => u32::try_from(n - 1)
                .map(|t| Some(Tick(t)))
                .map_err(|_| bad()),
        };
        return Ok(ClientMsg::Input(InputMsg {
            seq,
            ack: tick_or_none(ack)?,
            tick: tick_or_none(tick)?,
            events_ack,
            fields: rest[a + b + c + d..].to_vec(),
        }));
    }
    decode_bounded(bytes, MAX_CLIENT_MSG_BYTES, CLIENT_CFG)
}

/// Appends the encoding of a client message to `out`.
pub fn encode_client(msg: &ClientMsg, out: &mut Vec<u8>) {
    encode_into(msg, out);
}

/// Decodes a server message, refusing anything over [`MAX_SERVER_MSG_BYTES`]. A snapshot's
/// body is returned as bytes, to be applied against a baseline by a replica.
pub fn decode_server(bytes: &[u8]) -> Result<ServerMsg, CodecError> {
    if bytes.len() > MAX_SERVER_MSG_BYTES {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit: MAX_SERVER_MSG_BYTES,
        });
    }
    if let Some((&SNAPSHOT_VARIANT, rest)) = bytes.split_first() {
        let (header, used) = bincode::decode_from_slice::<SnapshotHeader, _>(rest, SERVER_CFG)?;
        return Ok(ServerMsg::Snapshot(Snapshot {
            header,
            body: rest[used..].to_vec(),
        }));
    }
    decode_bounded(bytes, MAX_SERVER_MSG_BYTES, SERVER_CFG)
}

/// The header of a snapshot frame without its body: `None` if the frame is not a snapshot.
/// For clients that count snapshots rather than apply them (the swarm's header-only bots);
/// the header decodes exactly as in [`decode_server`], and the body is left unread.
pub fn peek_snapshot_header(bytes: &[u8]) -> Option<Result<SnapshotHeader, CodecError>> {
    if bytes.len() > MAX_SERVER_MSG_BYTES {
        return Some(Err(CodecError::TooLarge {
            len: bytes.len(),
            limit: MAX_SERVER_MSG_BYTES,
        }));
    }
    let (&SNAPSHOT_VARIANT, rest) = bytes.split_first()? else {
        return None;
    };
    Some(
        bincode::decode_from_slice::<SnapshotHeader, _>(rest, SERVER_CFG)
            .map(|(header, _)| header)
            .map_err(CodecError::from),
    )
}

/// Appends the encoding of a server message to `out`.
pub fn encode_server(msg: &ServerMsg, out: &mut Vec<u8>) {
    encode_into(msg, out);
}

/// Decodes a client message sent as JSON text (subprotocol `tickwire.v1.json`), refusing
/// anything over [`MAX_CLIENT_MSG_BYTES`] times 4 (JSON spells numbers out).
pub fn decode_client_json(text: &str) -> Result<ClientMsg, CodecError> {
    let limit = MAX_CLIENT_MSG_BYTES * 4;
    if text.len() > limit {
        return Err(CodecError::TooLarge {
            len: text.len(),
            limit,
        });
    }
    Ok(serde_json::from_str(text)?)
}

/// Encodes a client message as JSON text.
#[must_use]
pub fn encode_client_json(msg: &ClientMsg) -> String {
    serde_json::to_string(msg).expect("messages always serialize to JSON")
}

/// Decodes a server message sent as JSON text.
pub fn decode_server_json(text: &str) -> Result<ServerMsg, CodecError> {
    if text.len() > MAX_SERVER_MSG_BYTES * 4 {
        return Err(CodecError::TooLarge {
            len: text.len(),
            limit: MAX_SERVER_MSG_BYTES * 4,
        });
    }
    Ok(serde_json::from_str(text)?)
}

/// Encodes a server message as JSON text.
#[must_use]
pub fn encode_server_json(msg: &ServerMsg) -> String {
    // Non-finite floats never reach a message: inputs are sanitized and the map is validated.
    serde_json::to_string(msg).expect("messages always serialize to JSON")
}

/// The longest snapshot header: the message tag, the tick, the baseline's age and a 5-byte
/// varint input sequence.
pub const MAX_SNAPSHOT_HEADER_BYTES: usize = 11;

/// Longest [`FrameHead`]: an events message's (variant and three varints).
pub const MAX_FRAME_HEAD_BYTES: usize = 16;

/// The head of a frame, encoded: the part of a frame that is each client's own (a snapshot's
/// input sequence; an events message's acknowledgement and numbering), which a server puts in
/// front of a body it shares between clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameHead {
    bytes: [u8; MAX_FRAME_HEAD_BYTES],
    len: u8,
}

impl FrameHead {
    /// The header bytes of a snapshot frame: those of `SnapshotHeader`'s `Encode` (a test
    /// holds it to them), written by hand because the server writes one per client per tick.
    #[must_use]
    pub fn snapshot(header: &SnapshotHeader) -> FrameHead {
        let age = header
            .baseline
            .and_then(|b| u8::try_from(header.tick.since(b)).ok())
            .filter(|a| *a > 0);
        debug_assert_eq!(
            age.is_some(),
            header.baseline.is_some(),
            "a baseline 1 to 255 ticks old"
        );
        let mut b = [0u8; MAX_FRAME_HEAD_BYTES];
        b[0] = SNAPSHOT_VARIANT;
        b[1..5].copy_from_slice(&header.tick.0.to_le_bytes());
        b[5] = age.unwrap_or(0);
        let seq = header.last_input_seq;
        // A bincode varint (see `varint_into`).
        let mut len: usize = match seq {
            0..=250 => {
                b[6] = seq as u8;
                7
            }
            251..=0xFFFF => {
                b[6] = 0xFB;
                b[7..9].copy_from_slice(&(seq as u16).to_le_bytes());
                9
            }
            _ => {
                b[6] = 0xFC;
                b[7..11].copy_from_slice(&seq.to_le_bytes());
                11
            }
        };
        // Bincode's i16: zigzag, then a varint.
        let lead = header.input_lead;
        let zigzag = ((lead << 1) ^ (lead >> 15)).cast_unsigned();
        if zigzag <= 250 {
            b[len] = zigzag as u8;
            len += 1;
        } else {
            b[len] = 0xFB;
            b[len + 1..len + 3].copy_from_slice(&zigzag.to_le_bytes());
            len += 3;
        }
        FrameHead {
            bytes: b,
            len: len as u8,
        }
    }

    /// The head of a [`ServerMsg::Events`] frame with `count` events, whose body is their
    /// encodings one after the other ([`encode_event`]): together, the bytes of the whole
    /// message.
    #[must_use]
    pub fn events(ack: u32, first: u32, count: u32) -> FrameHead {
        let mut bytes = [0u8; MAX_FRAME_HEAD_BYTES];
        bytes[0] = EVENTS_VARIANT;
        let mut at = 1;
        // Bincode varints of u32 (see `varint_into`), into the array: no allocation.
        for x in [ack, first, count] {
            match x {
                0..=250 => {
                    bytes[at] = x as u8;
                    at += 1;
                }
                251..=0xFFFF => {
                    bytes[at] = 0xFB;
                    bytes[at + 1..at + 3].copy_from_slice(&(x as u16).to_le_bytes());
                    at += 3;
                }
                _ => {
                    bytes[at] = 0xFC;
                    bytes[at + 1..at + 5].copy_from_slice(&x.to_le_bytes());
                    at += 5;
                }
            }
        }
        FrameHead {
            bytes,
            len: at as u8,
        }
    }

    /// The bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Appends one event's encoding, as it appears in an events message.
pub fn encode_event(event: &crate::msg::EventRecord, out: &mut Vec<u8>) {
    encode_into(event, out);
}

/// Appends a complete [`ServerMsg::Snapshot`] frame from a header and an encoded body
/// ([`crate::body::BodyWriter`]): identical to encoding the whole message.
pub fn encode_snapshot_frame(header: &SnapshotHeader, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(FrameHead::snapshot(header).as_bytes());
    out.extend_from_slice(body);
}

impl Encode for SnapshotHeader {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        self.tick.0.to_le_bytes().encode(e)?;
        let age: u8 = match self.baseline {
            None => 0,
            Some(b) => u8::try_from(self.tick.since(b))
                .ok()
                .filter(|a| *a > 0)
                .ok_or(EncodeError::Other("a baseline must be 1 to 255 ticks old"))?,
        };
        age.encode(e)?;
        self.last_input_seq.encode(e)?;
        self.input_lead.encode(e)
    }
}

impl<C> Decode<C> for SnapshotHeader {
    fn decode<D: Decoder<Context = C>>(d: &mut D) -> Result<Self, DecodeError> {
        let tick = Tick(u32::from_le_bytes(<[u8; 4]>::decode(d)?));
        let age = u8::decode(d)?;
        Ok(SnapshotHeader {
            tick,
            baseline: (age > 0).then(|| tick.minus(u32::from(age))),
            last_input_seq: u32::decode(d)?,
            input_lead: i16::decode(d)?,
        })
    }
}
bincode::impl_borrow_decode!(SnapshotHeader);

impl Encode for Snapshot {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        self.header.encode(e)?;
        e.writer().write(&self.body)
    }
}

impl<C> Decode<C> for Snapshot {
    fn decode<D: Decoder<Context = C>>(_: &mut D) -> Result<Self, DecodeError> {
        // The body is the rest of the frame, which only the frame decoder knows.
        Err(DecodeError::Other("snapshots are decoded by decode_server"))
    }
}
bincode::impl_borrow_decode!(Snapshot);

impl Encode for InputMsg {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        self.seq.encode(e)?;
        self.ack.map_or(0u64, |t| u64::from(t.0) + 1).encode(e)?;
        self.tick.map_or(0u64, |t| u64::from(t.0) + 1).encode(e)?;
        self.events_ack.encode(e)?;
        e.writer().write(&self.fields)
    }
}

impl<C> Decode<C> for InputMsg {
    fn decode<D: Decoder<Context = C>>(_: &mut D) -> Result<Self, DecodeError> {
        // The fields are the rest of the frame, which only the frame decoder knows.
        Err(DecodeError::Other("inputs are decoded by decode_client"))
    }
}
bincode::impl_borrow_decode!(InputMsg);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::*;
    use crate::schema::{ComponentSchema, Encoding, Field, GameSchema};

    #[test]
    fn hand_written_varints_match_bincode() {
        for v in [
            0u64,
            1,
            250,
            251,
            65_535,
            65_536,
            u64::from(u32::MAX),
            1 << 32,
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            varint_into(v, &mut ours);
            let mut theirs = Vec::new();
            encode_into(&v, &mut theirs);
            assert_eq!(ours, theirs, "{v}");
            assert_eq!(varint_from(&ours), Some((v, ours.len())));
        }
        assert_eq!(varint_from(&[0xFB, 3, 0]), None, "not minimal");
        assert_eq!(varint_from(&[0xFC, 3]), None, "short");
        assert_eq!(varint_from(&[0xFE]), None, "u128 is not used");
    }

    #[test]
    fn a_peeked_snapshot_header_is_the_decoded_one() {
        for header in [
            SnapshotHeader {
                tick: Tick(70_000),
                baseline: Some(Tick(69_990)),
                last_input_seq: 300,
                input_lead: -200,
            },
            SnapshotHeader {
                tick: Tick(5),
                baseline: None,
                last_input_seq: 0,
                input_lead: 30_000,
            },
        ] {
            let mut frame = Vec::new();
            encode_snapshot_frame(&header, &[1, 2, 3, 4], &mut frame);
            let peeked = peek_snapshot_header(&frame)
                .expect("a snapshot")
                .expect("decodes");
            assert_eq!(peeked, header);
            let ServerMsg::Snapshot(full) = decode_server(&frame).expect("decodes") else {
                panic!("not a snapshot");
            };
            assert_eq!(full.header, peeked);
            assert!(matches!(
                peek_snapshot_header(&frame[..3]),
                Some(Err(CodecError::Malformed(_)))
            ));
        }
        let mut events = Vec::new();
        encode_server(
            &ServerMsg::Events(EventsMsg {
                ack: 1,
                first: 1,
                events: Vec::new(),
            }),
            &mut events,
        );
        assert!(peek_snapshot_header(&events).is_none());
        assert!(peek_snapshot_header(&[]).is_none());
    }

    #[test]
    fn client_messages_round_trip_and_inputs_are_compact() {
        let input = ClientMsg::Input(InputMsg {
            seq: 300,
            ack: Some(Tick(1000)),
            tick: None,
            events_ack: 0,
            fields: vec![0xAB, 0xCD, 0xEF, 0x01],
        });
        let msgs = [
            ClientMsg::Hello {
                version: crate::PROTOCOL_VERSION,
                name: "bot-1".into(),
                room: crate::RoomRequest::default(),
            },
            ClientMsg::Hello {
                version: crate::PROTOCOL_VERSION,
                name: "b".into(),
                room: crate::RoomRequest::JoinOrCreate {
                    game: "g".into(),
                    filter: vec![("mode".into(), "ctf".into())],
                },
            },
            ClientMsg::Hello {
                version: crate::PROTOCOL_VERSION,
                name: "b".into(),
                room: crate::RoomRequest::Join { id: "r1".into() },
            },
            ClientMsg::Hello {
                version: crate::PROTOCOL_VERSION,
                name: "b".into(),
                room: crate::RoomRequest::Create {
                    game: String::new(),
                    props: vec![("private".into(), "yes".into())],
                },
            },
            input.clone(),
            ClientMsg::Input(InputMsg {
                seq: 1,
                ack: None,
                tick: None,
                events_ack: 0,
                fields: vec![],
            }),
            ClientMsg::Input(InputMsg {
                seq: 2,
                ack: Some(Tick(3)),
                tick: Some(Tick(4)),
                events_ack: 70_000,
                fields: vec![1],
            }),
            ClientMsg::Ack { tick: Tick(7) },
            ClientMsg::Ping { nonce: u64::MAX },
            ClientMsg::Resync { tick: Tick(9) },
            ClientMsg::Resume {
                version: crate::PROTOCOL_VERSION,
                secret: "s3cr3t".into(),
                last_tick: Some(Tick(70_000)),
                events_received: 7,
            },
            ClientMsg::Resume {
                version: crate::PROTOCOL_VERSION,
                secret: String::new(),
                last_tick: None,
                events_received: 0,
            },
            ClientMsg::Events(crate::EventsMsg {
                ack: 3,
                first: 9,
                events: vec![crate::EventRecord {
                    kind: 1,
                    words: vec![-5, 1 << 33],
                }],
            }),
            ClientMsg::Events(crate::EventsMsg::default()),
        ];
        for m in msgs {
            let mut buf = Vec::new();
            encode_client(&m, &mut buf);
            assert_eq!(decode_client(&buf).expect("decodes"), m);
            assert_eq!(
                decode_client_json(&encode_client_json(&m)).expect("json"),
                m
            );
        }
        let mut buf = Vec::new();
        encode_client(&input, &mut buf);
        // Variant, seq (3), ack + 1 (3), tick + 1 (1: none), events ack (1: none), the fields
        // (4).
        assert_eq!(
            buf,
            [
                1, 0xFB, 0x2C, 0x01, 0xFB, 0xE9, 0x03, 0, 0, 0xAB, 0xCD, 0xEF, 0x01
            ]
        );
        // A named tick: its varint plus one; an events ack: its varint.
        let timed = ClientMsg::Input(InputMsg {
            seq: 2,
            ack: None,
            tick: Some(Tick(1001)),
            events_ack: 300,
            fields: vec![7],
        });
        buf.clear();
        encode_client(&timed, &mut buf);
        assert_eq!(buf, [1, 2, 0, 0xFB, 0xEA, 0x03, 0xFB, 0x2C, 0x01, 7]);
        assert_eq!(decode_client(&buf).expect("decodes"), timed);
        assert!(decode_client(&[1, 0xFB]).is_err(), "cut input");
        assert!(
            decode_client(&[1, 2, 0, 0]).is_err(),
            "cut before the events ack"
        );
        assert!(
            decode_client(&[1, 0xFC, 0, 0, 0, 0]).is_err(),
            "not minimal"
        );
    }

    #[test]
    fn server_messages_round_trip_and_snapshot_variant_is_pinned() {
        let welcome = ServerMsg::Welcome(Welcome {
            version: crate::PROTOCOL_VERSION,
            player: NetId(3),
            tick_rate_hz: 30,
            tick: Tick(77),
            room: "r7".into(),
            resume: "abc".into(),
            events_received: 300,
            visibility: Visibility::Aoi { radius: 800.0 },
            schema: GameSchema {
                game: "g".into(),
                components: vec![ComponentSchema {
                    name: "C".into(),
                    fields: vec![Field::new("f", Encoding::VarInt)],
                }],
                input: vec![Field::new("b", Encoding::Bool)],
                statics: vec![],
                ..GameSchema::default()
            },
            statics: vec![StaticRecord {
                kind: 0,
                words: vec![-1, 1 << 40],
            }],
        });
        let snap = ServerMsg::Snapshot(Snapshot {
            header: SnapshotHeader {
                tick: Tick(1000),
                baseline: Some(Tick(998)),
                last_input_seq: 5,
                input_lead: 0,
            },
            body: vec![0, 0, 0, 1, 2, 3, 4],
        });
        for m in [
            welcome,
            snap.clone(),
            ServerMsg::Pong {
                nonce: 1,
                tick: Tick(2),
            },
            ServerMsg::Error {
                code: 4000,
                message: "x".into(),
            },
            ServerMsg::Events(crate::EventsMsg {
                ack: 0,
                first: 1,
                events: vec![
                    crate::EventRecord {
                        kind: 0,
                        words: vec![1, 2],
                    },
                    crate::EventRecord {
                        kind: 2,
                        words: vec![],
                    },
                ],
            }),
        ] {
            let mut buf = Vec::new();
            encode_server(&m, &mut buf);
            assert_eq!(decode_server(&buf).expect("decodes"), m);
            assert_eq!(
                decode_server_json(&encode_server_json(&m)).expect("json"),
                m
            );
        }
        let mut whole = Vec::new();
        encode_server(&snap, &mut whole);
        let ServerMsg::Snapshot(s) = snap else {
            unreachable!()
        };
        let mut parts = Vec::new();
        encode_snapshot_frame(&s.header, &s.body, &mut parts);
        assert_eq!(whole, parts);
        assert_eq!(&whole[..7], &[1, 0xE8, 0x03, 0, 0, 2, 5]);
        // The hand-written header, at each varint width of the input sequence and the lead.
        let leads = [0, 1, -1, 125, -125, 126, -126, 20_000, i16::MIN, i16::MAX];
        for (seq, input_lead) in [0, 250, 251, 0xFFFF, 0x1_0000, u32::MAX]
            .into_iter()
            .flat_map(|seq| leads.map(|lead| (seq, lead)))
        {
            let header = SnapshotHeader {
                last_input_seq: seq,
                input_lead,
                ..s.header
            };
            let mut whole = Vec::new();
            encode_server(
                &ServerMsg::Snapshot(Snapshot {
                    header,
                    body: s.body.clone(),
                }),
                &mut whole,
            );
            let head = FrameHead::snapshot(&header);
            assert_eq!(
                head.as_bytes(),
                &whole[..whole.len() - s.body.len()],
                "seq {seq}, lead {input_lead}"
            );
        }
    }

    #[test]
    fn an_events_frame_is_its_head_and_its_events() {
        use crate::msg::{EventRecord, EventsMsg};
        let events = vec![
            EventRecord {
                kind: 3,
                words: vec![1, -1, 1 << 40],
            },
            EventRecord {
                kind: 0,
                words: vec![],
            },
        ];
        for (ack, first) in [(0, 1), (250, 251), (70_000, u32::MAX - 1)] {
            let msg = ServerMsg::Events(EventsMsg {
                ack,
                first,
                events: events.clone(),
            });
            let mut whole = Vec::new();
            encode_server(&msg, &mut whole);
            let mut parts = FrameHead::events(ack, first, 2).as_bytes().to_vec();
            for e in &events {
                encode_event(e, &mut parts);
            }
            assert_eq!(parts, whole, "ack {ack}, first {first}");
        }
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let bytes = vec![0u8; MAX_CLIENT_MSG_BYTES + 1];
        assert!(matches!(
            decode_client(&bytes),
            Err(CodecError::TooLarge { len, limit }) if len == MAX_CLIENT_MSG_BYTES + 1 && limit == MAX_CLIENT_MSG_BYTES
        ));
    }

    #[test]
    fn forged_lengths_and_garbage_are_errors_not_allocations() {
        // Hello (variant 0), version 2, then a string length of u64::MAX (varint 0xFD + 8 bytes).
        let mut bytes = vec![0u8, 2, 0xFD];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_client(&bytes).is_err());
        // A welcome (version 7, player 1, 30 Hz, tick 0, room "", resume "", no events
        // received, global) whose schema claims u32::MAX components.
        let mut bytes = vec![0u8, 7, 1, 30, 0, 0, 0, 0, 0, 1, b'g', 0xFC];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_server(&bytes).is_err());
        assert!(decode_server(&[1, 0, 0]).is_err(), "cut snapshot header");
        assert!(decode_client(&[9]).is_err());
        let mut ack = Vec::new();
        encode_client(&ClientMsg::Ack { tick: Tick(1) }, &mut ack);
        ack.push(0);
        assert!(matches!(
            decode_client(&ack),
            Err(CodecError::TrailingBytes { extra: 1 })
        ));
    }
}
