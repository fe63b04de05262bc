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

const CFG: Cfg = config::standard();
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

fn encode_into<T: Encode>(value: &T, out: &mut Vec<u8>) {
    struct VecWriter<'a>(&'a mut Vec<u8>);
    impl Writer for VecWriter<'_> {
        fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
    }
    // Writing into a Vec cannot fail and every type here has an infallible Encode.
    bincode::encode_into_writer(value, VecWriter(out), CFG)
        .expect("encoding into a Vec is infallible");
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

    fn sample_body() -> SnapshotBody {
        let state = EntityState {
            kind: EntityKind::Player,
            x: 1.5,
            y: 3999.0,
            aim: -1.0,
            hp: 100,
            score: 7,
            owner: NetId(3),
        };
        SnapshotBody {
            created: vec![EntityUpdate {
                id: NetId(3),
                state,
            }],
            changed: vec![EntityUpdate {
                id: NetId(900),
                state: EntityState {
                    kind: EntityKind::Projectile,
                    hp: 0,
                    ..state
                },
            }],
            removed: vec![NetId(1), NetId(70000)],
            checksum: 0xdead_beef,
        }
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
    fn snapshot_frame_matches_whole_message_encoding() {
        let header = SnapshotHeader {
            tick: Tick(1000),
            baseline: Some(Tick(998)),
            last_input_seq: 12345,
        };
        let body = sample_body();
        let whole = ServerMsg::Snapshot(Snapshot {
            header,
            body: body.clone(),
        });
        let mut expected = Vec::new();
        encode_server(&whole, &mut expected);

        let mut body_bytes = Vec::new();
        encode_snapshot_body(&body, &mut body_bytes);
        let mut frame = Vec::new();
        encode_snapshot_frame(&header, &body_bytes, &mut frame);
        assert_eq!(frame, expected);
        assert_eq!(decode_server(&frame).expect("decodes"), whole);
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
        let pong = ServerMsg::Pong {
            nonce: 1,
            tick: Tick(2),
        };
        assert_eq!(
            decode_server_json(&encode_server_json(&pong)).expect("decodes"),
            pong
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
    fn forged_length_prefix_is_an_error_not_an_allocation() {
        // Hello (variant 0), version 1, then a string length of u64::MAX (varint 0xFD + 8 bytes).
        let mut bytes = vec![0u8, 1, 0xFD];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_client(&bytes).is_err());
        // The same against the server-message limit: a snapshot claiming 2^40 created entities.
        let mut bytes = vec![1u8, 5, 0, 0, 0xFD];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(decode_server(&bytes).is_err());
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

    /// Pins the byte layout that `docs/PROTOCOL.md` documents.
    #[test]
    fn golden_bytes_match_the_protocol_document() {
        let mut b = Vec::new();
        encode_client(&ClientMsg::Ack { tick: Tick(300) }, &mut b);
        assert_eq!(b, [2, 0xFB, 0x2C, 0x01]);

        b.clear();
        encode_client(
            &ClientMsg::Hello {
                version: 1,
                name: "ab".into(),
            },
            &mut b,
        );
        assert_eq!(b, [0, 1, 2, b'a', b'b']);

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
        let state = EntityState {
            kind: EntityKind::Projectile,
            x: 2.0,
            y: 3.0,
            aim: 0.5,
            hp: 200,
            score: 251,
            owner: NetId(9),
        };
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
                        state,
                    }],
                    changed: vec![],
                    removed: vec![NetId(3)],
                    checksum: 1,
                },
            }),
            &mut b,
        );
        let mut want = vec![1, 10, 1, 8, 5, 1, 4, 1];
        for f in [2.0f32, 3.0, 0.5] {
            want.extend_from_slice(&f.to_le_bytes());
        }
        want.extend_from_slice(&[200, 0xFB, 251, 0, 9, 0, 1, 3, 1]);
        assert_eq!(b, want);
    }

    #[test]
    fn every_truncation_of_a_valid_message_is_an_error() {
        let mut buf = Vec::new();
        encode_server(
            &ServerMsg::Snapshot(Snapshot {
                header: SnapshotHeader {
                    tick: Tick(5),
                    baseline: None,
                    last_input_seq: 0,
                },
                body: sample_body(),
            }),
            &mut buf,
        );
        for cut in 0..buf.len() {
            assert!(decode_server(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }
}
