//! The codec: the one module that calls bincode.
//!
//! One fixed configuration (bincode 2 `standard`: little-endian, variable-length integers) is
//! used for everything. Every decode checks the input length against a limit before decoding and
//! passes the same limit to bincode, so a forged length prefix cannot make the decoder allocate
//! more than the limit; trailing bytes after a message are an error.

use crate::msg::{ClientMsg, ServerMsg, SnapshotBody, SnapshotHeader};
use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use bincode::enc::Encoder;
use bincode::enc::write::Writer;
use bincode::{Decode, Encode};
use thiserror::Error;

mod snapshot;

pub use snapshot::{BodyWriter, EncodedChange};

/// Largest encoded [`ClientMsg`] the server accepts, in bytes. The largest legal one (a hello
/// with a 32-byte name) is under 50 bytes.
pub const MAX_CLIENT_MSG_BYTES: usize = 256;

/// Largest encoded [`ServerMsg`] a client accepts, in bytes.
pub const MAX_SERVER_MSG_BYTES: usize = 4 * 1024 * 1024;

/// Variant index of [`ServerMsg::Snapshot`] in the encoding, used to write a snapshot frame
/// from a pre-encoded body. A unit test pins it to the derived encoding.
const SNAPSHOT_VARIANT: u32 = 1;

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
    decode_bounded(bytes, MAX_CLIENT_MSG_BYTES, CLIENT_CFG)
}

/// Appends the encoding of a client message to `out`.
pub fn encode_client(msg: &ClientMsg, out: &mut Vec<u8>) {
    encode_into(msg, out);
}

/// Decodes a server message, refusing anything over [`MAX_SERVER_MSG_BYTES`].
pub fn decode_server(bytes: &[u8]) -> Result<ServerMsg, CodecError> {
    decode_bounded(bytes, MAX_SERVER_MSG_BYTES, SERVER_CFG)
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

/// Appends the encoding of a snapshot body to `out`, so that it can be shared by every client
/// that gets the same body this tick (see [`encode_snapshot_frame`]).
pub fn encode_snapshot_body(body: &SnapshotBody, out: &mut Vec<u8>) {
    encode_into(body, out);
}

/// Appends a complete [`ServerMsg::Snapshot`] frame built from a header and a body already
/// encoded by [`encode_snapshot_body`]. The bytes are identical to encoding the whole message.
pub fn encode_snapshot_frame(header: &SnapshotHeader, body_bytes: &[u8], out: &mut Vec<u8>) {
    struct Frame<'a>(&'a SnapshotHeader);
    impl Encode for Frame<'_> {
        fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), bincode::error::EncodeError> {
            SNAPSHOT_VARIANT.encode(e)?;
            self.0.encode(e)
        }
    }
    encode_into(&Frame(header), out);
    out.extend_from_slice(body_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::*;
    use crate::tick::Tick;

    fn player(x: u16) -> EntityState {
        EntityState::Player(PlayerState {
            x,
            y: 16_000,
            aim: 1000,
            hp: 100,
            score: 7,
        })
    }

    fn sample_body() -> SnapshotBody {
        SnapshotBody {
            created: vec![
                EntityUpdate {
                    id: NetId(3),
                    state: player(6),
                },
                EntityUpdate {
                    id: NetId(900),
                    state: EntityState::Projectile(ProjectileState {
                        x: 1,
                        y: 2,
                        vx: -120,
                        vy: 300,
                        born: Tick(70_000),
                        owner: NetId(3),
                    }),
                },
            ],
            changed: vec![
                PlayerDelta {
                    id: NetId(4),
                    dx: 33,
                    dy: -33,
                    daim: 2,
                    hp: None,
                    score: None,
                },
                PlayerDelta {
                    id: NetId(40),
                    dx: 0,
                    dy: 500,
                    daim: -512,
                    hp: Some(75),
                    score: Some(1_000_000),
                },
            ],
            removed: vec![NetId(1), NetId(70000)],
            checksum: 0xdead_beef,
        }
    }

    fn round_trip(body: SnapshotBody, baseline: Option<Tick>) -> Vec<u8> {
        let whole = ServerMsg::Snapshot(Snapshot {
            header: SnapshotHeader {
                tick: Tick(1000),
                baseline,
                last_input_seq: 12345,
            },
            body,
        });
        let mut buf = Vec::new();
        encode_server(&whole, &mut buf);
        assert_eq!(decode_server(&buf).expect("decodes"), whole);
        buf
    }

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
    fn client_messages_round_trip() {
        let msgs = [
            ClientMsg::Hello {
                version: 1,
                name: "bot-1".into(),
            },
            ClientMsg::Input(Input {
                seq: 42,
                move_x: 0.5,
                move_y: -0.5,
                aim: 3.0,
                fire: true,
            }),
            ClientMsg::Ack { tick: Tick(77) },
            ClientMsg::Ping { nonce: u64::MAX },
        ];
        for m in msgs {
            let mut buf = Vec::new();
            encode_client(&m, &mut buf);
            assert!(buf.len() <= MAX_CLIENT_MSG_BYTES);
            assert_eq!(decode_client(&buf).expect("decodes"), m);
        }
    }

    #[test]
    fn snapshots_round_trip() {
        round_trip(sample_body(), Some(Tick(998)));
        round_trip(sample_body(), None);
        round_trip(SnapshotBody::default(), Some(Tick(745)));
    }

    #[test]
    fn snapshot_frame_matches_whole_message_encoding() {
        let header = SnapshotHeader {
            tick: Tick(1000),
            baseline: Some(Tick(998)),
            last_input_seq: 12345,
        };
        let body = sample_body();
        let expected = round_trip(body.clone(), header.baseline);
        let mut body_bytes = Vec::new();
        encode_snapshot_body(&body, &mut body_bytes);
        let mut frame = Vec::new();
        encode_snapshot_frame(&header, &body_bytes, &mut frame);
        assert_eq!(frame, expected);
    }

    fn changed_cost(c: PlayerDelta) -> usize {
        let one = SnapshotBody {
            changed: vec![c],
            ..SnapshotBody::default()
        };
        let mut a = Vec::new();
        encode_snapshot_body(&one, &mut a);
        let mut b = Vec::new();
        encode_snapshot_body(&SnapshotBody::default(), &mut b);
        a.len() - b.len()
    }

    #[test]
    fn a_moving_turning_player_costs_three_bytes() {
        let typical = PlayerDelta {
            id: NetId(2),
            dx: 33,
            dy: -30,
            daim: 16,
            hp: None,
            score: None,
        };
        assert_eq!(changed_cost(typical), 3);
        // A large id gap adds one byte (the gap as a varint) to the compact form.
        let far = PlayerDelta {
            id: NetId(200),
            ..typical
        };
        assert_eq!(changed_cost(far), 4);
        // At the edges of the compact ranges, and just outside them.
        for (dx, dy, daim, cost) in [
            (-64, 63, -32, 3),
            (63, -64, 31, 3),
            (64, 0, 0, 2),  // masked: head, dx (zigzag 128 < 251: 1 byte)
            (0, 0, 32, 2),  // masked: head, daim
            (-65, 0, 0, 2), // masked: head, dx
        ] {
            let c = PlayerDelta {
                dx,
                dy,
                daim,
                ..typical
            };
            assert_eq!(changed_cost(c), cost, "{c:?}");
            let body = SnapshotBody {
                changed: vec![c],
                ..SnapshotBody::default()
            };
            round_trip(body, Some(Tick(999)));
        }
    }

    #[test]
    fn compact_and_masked_changes_round_trip_exhaustively() {
        let mut rng_state = 1u32;
        let mut next = || {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 17;
            rng_state ^= rng_state << 5;
            rng_state
        };
        for _ in 0..200 {
            let mut id = 0;
            let changed = (0..50)
                .map(|_| {
                    id += 1 + next() % 12;
                    PlayerDelta {
                        id: NetId(id),
                        dx: (next() % 300) as i32 - 150,
                        dy: (next() % 140) as i32 - 70,
                        daim: (next() % 100) as i16 - 50,
                        hp: (next() % 5 == 0).then_some(50),
                        score: (next() % 9 == 0).then_some(next() % 1000),
                    }
                })
                .collect();
            round_trip(
                SnapshotBody {
                    changed,
                    ..SnapshotBody::default()
                },
                Some(Tick(990)),
            );
        }
    }

    #[test]
    #[should_panic(expected = "sorted")]
    fn unsorted_lists_cannot_be_encoded() {
        let body = SnapshotBody {
            removed: vec![NetId(5), NetId(2)],
            ..SnapshotBody::default()
        };
        encode_snapshot_body(&body, &mut Vec::new());
    }

    /// Pins the byte layout that `docs/PROTOCOL.md` documents.
    #[test]
    fn golden_bytes_match_the_protocol_document() {
        let mut b = Vec::new();
        encode_client(&ClientMsg::Ack { tick: Tick(300) }, &mut b);
        assert_eq!(b, [2, 0xFB, 0x2C, 0x01]);

        b.clear();
        encode_client(
            &ClientMsg::Hello {
                version: 2,
                name: "ab".into(),
            },
            &mut b,
        );
        assert_eq!(b, [0, 2, 2, b'a', b'b']);

        b.clear();
        encode_client(
            &ClientMsg::Input(Input {
                seq: 7,
                move_x: 1.0,
                move_y: -0.5,
                aim: 0.0,
                fire: true,
            }),
            &mut b,
        );
        let mut want = vec![1, 7];
        want.extend_from_slice(&1.0f32.to_le_bytes());
        want.extend_from_slice(&(-0.5f32).to_le_bytes());
        want.extend_from_slice(&0.0f32.to_le_bytes());
        want.push(1);
        assert_eq!(b, want);

        b.clear();
        encode_client(&ClientMsg::Ping { nonce: 70_000 }, &mut b);
        assert_eq!(b, [3, 0xFC, 0x70, 0x11, 0x01, 0x00]);

        b.clear();
        encode_server(
            &ServerMsg::Snapshot(Snapshot {
                header: SnapshotHeader {
                    tick: Tick(10),
                    baseline: Some(Tick(8)),
                    last_input_seq: 5,
                },
                body: SnapshotBody {
                    created: vec![EntityUpdate {
                        id: NetId(4),
                        state: EntityState::Projectile(ProjectileState {
                            x: 0x0102,
                            y: 3,
                            vx: -1,
                            vy: 200,
                            born: Tick(9),
                            owner: NetId(2),
                        }),
                    }],
                    changed: vec![
                        PlayerDelta {
                            id: NetId(2),
                            dx: 3,
                            dy: 0,
                            daim: -2,
                            hp: Some(80),
                            score: None,
                        },
                        PlayerDelta {
                            id: NetId(9),
                            dx: 3,
                            dy: 0,
                            daim: -2,
                            hp: None,
                            score: None,
                        },
                        PlayerDelta {
                            id: NetId(19),
                            dy: 150,
                            ..PlayerDelta::default()
                        },
                    ],
                    removed: vec![NetId(3), NetId(5)],
                    checksum: 0x0403_0201,
                },
            }),
            &mut b,
        );
        #[rustfmt::skip]
        let want = [
            1,                      // ServerMsg::Snapshot
            10, 0, 0, 0,            // tick 10 (u32 LE)
            2,                      // baseline age: tick 8
            5,                      // last_input_seq
            1,                      // 1 created
            4,                      //   id gap 4: id 4
            1,                      //   projectile
            2, 1, 3, 0,             //   x 0x0102, y 3 (u16 LE)
            1, 0xFB, 144, 1,        //   vx -1, vy 200 (zigzag varints: 1, 400)
            9, 0, 0, 0,             //   born 9 (u32 LE)
            2,                      //   owner 2
            3,                      // 3 changed
            (2 << 5) | 1 | 4 | 8,   //   masked: gap 2 (id 2), mask x|aim|hp
            6, 3, 80,               //   dx 3 (zigzag 6), daim -2 (zigzag 3), hp 80
            0x80 | (7 << 4) | 0x07, //   compact: gap 7 (id 9), payload bits 16-19
            0x43, 0xA0,             //   payload low 16 bits (LE): dx 3, dy 0, daim -2
            2,                      //   masked: gap 0 (follows), mask y
            10,                     //   gap 10: id 19
            0xFB, 0x2C, 0x01,       //   dy 150 (zigzag 300)
            2,                      // 2 removed
            3, 2,                   //   gap 3: id 3; gap 2: id 5
            1, 2, 3, 4,             // checksum (u32 LE)
        ];
        assert_eq!(b, want);
    }

    #[test]
    fn json_round_trip_and_shape() {
        let m = ClientMsg::Input(Input {
            seq: 3,
            move_x: 1.0,
            move_y: 0.0,
            aim: 0.5,
            fire: false,
        });
        let text = encode_client_json(&m);
        assert_eq!(
            text,
            r#"{"Input":{"seq":3,"move_x":1.0,"move_y":0.0,"aim":0.5,"fire":false}}"#
        );
        assert_eq!(decode_client_json(&text).expect("decodes"), m);
        assert_eq!(
            decode_client_json(r#"{"Ack":{"tick":12}}"#).expect("decodes"),
            ClientMsg::Ack { tick: Tick(12) }
        );
        assert!(decode_client_json("{}").is_err());
        assert!(decode_client_json(&"x".repeat(5000)).is_err());
        let snap = ServerMsg::Snapshot(Snapshot {
            header: SnapshotHeader {
                tick: Tick(2),
                baseline: None,
                last_input_seq: 0,
            },
            body: sample_body(),
        });
        assert_eq!(
            decode_server_json(&encode_server_json(&snap)).expect("decodes"),
            snap
        );
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
    fn forged_lengths_are_errors_not_allocations() {
        // Hello (variant 0), version 2, then a string length of u64::MAX (varint 0xFD + 8 bytes).
        let mut bytes = vec![0u8, 2, 0xFD];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_client(&bytes).is_err());
        // A snapshot claiming u32::MAX created entities.
        let mut bytes = vec![1u8, 5, 0, 0, 0, 0, 0, 0xFC];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_server(&bytes).is_err());
    }

    #[test]
    fn malformed_snapshots_are_errors() {
        let good = round_trip(sample_body(), Some(Tick(999)));
        // Every truncation fails.
        for cut in 0..good.len() {
            assert!(decode_server(&good[..cut]).is_err(), "cut at {cut}");
        }
        // A zero id gap (a repeated id) in the removed list fails.
        let body = SnapshotBody {
            removed: vec![NetId(3)],
            ..SnapshotBody::default()
        };
        let mut b = Vec::new();
        encode_snapshot_body(&body, &mut b);
        let at = b.iter().rposition(|&x| x == 3).expect("gap byte");
        b[at] = 0;
        let mut frame = Vec::new();
        let header = SnapshotHeader {
            tick: Tick(9),
            baseline: None,
            last_input_seq: 0,
        };
        encode_snapshot_frame(&header, &b, &mut frame);
        assert!(decode_server(&frame).is_err());
    }

    #[test]
    fn garbage_and_trailing_bytes_are_errors() {
        assert!(decode_client(&[]).is_err());
        assert!(decode_client(&[0xFF, 0xFF, 0xFF]).is_err());
        let mut buf = Vec::new();
        encode_client(&ClientMsg::Ping { nonce: 1 }, &mut buf);
        buf.push(0);
        assert!(matches!(
            decode_client(&buf),
            Err(CodecError::TrailingBytes { extra: 1 })
        ));
    }
}
