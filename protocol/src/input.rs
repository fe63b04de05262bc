//! Validation of what a client sends, against the game's input schema: the server enforces it
//! in the session before anything reaches the game, and clients use the same rules.

use crate::body::read_record;
use crate::msg::InputMsg;
use crate::schema::{GameSchema, MAX_INPUT_WORDS, Replicate};
use thiserror::Error;

/// Longest display name accepted in a hello, in bytes.
pub const MAX_NAME_BYTES: usize = 32;

/// Why an input was rejected.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum InputError {
    /// The fields are not a record of the input schema, or a value is out of its range.
    #[error("input {seq} does not fit the game's input schema")]
    Malformed {
        /// Sequence number of the input.
        seq: u32,
    },
    /// The sequence number did not increase.
    #[error("input sequence went from {last} to {seq}")]
    StaleSequence {
        /// The latest sequence number accepted before.
        last: u32,
        /// The sequence number received.
        seq: u32,
    },
}

/// An input's words, checked against the schema; fixed size, so it moves through channels and
/// components without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InputWords {
    len: u8,
    words: [i64; MAX_INPUT_WORDS],
}

impl Default for InputWords {
    fn default() -> Self {
        InputWords {
            len: 0,
            words: [0; MAX_INPUT_WORDS],
        }
    }
}

impl InputWords {
    /// The words.
    #[must_use]
    pub fn words(&self) -> &[i64] {
        &self.words[..usize::from(self.len)]
    }

    /// The input as the game's type.
    #[must_use]
    pub fn get<I: Replicate>(&self) -> I {
        I::read(self.words())
    }

    /// Words from a slice (at most [`MAX_INPUT_WORDS`]; the rest is cut).
    #[must_use]
    pub fn from_words(words: &[i64]) -> InputWords {
        let mut w = InputWords::default();
        let n = words.len().min(MAX_INPUT_WORDS);
        w.words[..n].copy_from_slice(&words[..n]);
        w.len = n as u8;
        w
    }
}

/// Checks an input against the schema and the last sequence number accepted: its fields must
/// decode as exactly one record of the input schema with every value in range (an integer
/// encoding has no NaN), and its sequence number must increase.
pub fn validate_input(
    schema: &GameSchema,
    msg: &InputMsg,
    last_seq: u32,
) -> Result<InputWords, InputError> {
    if msg.seq <= last_seq {
        return Err(InputError::StaleSequence {
            last: last_seq,
            seq: msg.seq,
        });
    }
    let mut words = smallvec::SmallVec::<[i64; MAX_INPUT_WORDS]>::new();
    read_record(&schema.input, &msg.fields, &mut words)
        .map_err(|_| InputError::Malformed { seq: msg.seq })?;
    Ok(InputWords::from_words(&words))
}

/// Trims a display name to [`MAX_NAME_BYTES`] on a character boundary and drops control
/// characters.
#[must_use]
pub fn sanitize_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

/// Most properties a room has, or a join-or-create filter names.
pub const MAX_ROOM_PROPS: usize = 8;
/// Longest room property key, in bytes.
pub const MAX_PROP_KEY_BYTES: usize = 32;
/// Longest room property value, in bytes.
pub const MAX_PROP_VALUE_BYTES: usize = 64;
/// Longest room id or game name in a hello, in bytes.
pub const MAX_ROOM_ID_BYTES: usize = 64;

/// Why a hello's room request was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RoomRequestError {
    /// Over [`MAX_ROOM_PROPS`] properties.
    #[error("at most {MAX_ROOM_PROPS} room properties")]
    TooManyProps,
    /// A key empty, over [`MAX_PROP_KEY_BYTES`], or repeated, or a value over
    /// [`MAX_PROP_VALUE_BYTES`], or either with control characters.
    #[error(
        "bad room property {0:?}: keys are 1 to {MAX_PROP_KEY_BYTES} bytes and unique, values at most {MAX_PROP_VALUE_BYTES} bytes, neither with control characters"
    )]
    BadProp(String),
    /// A room id or game name empty where one is needed, over [`MAX_ROOM_ID_BYTES`], or with
    /// control characters.
    #[error("bad room id or game name {0:?}")]
    BadName(String),
}

/// Checks a hello's room request against the limits above: it is what the server will store
/// and list, so nothing unbounded gets in.
pub fn validate_room_request(req: &crate::msg::RoomRequest) -> Result<(), RoomRequestError> {
    use crate::msg::RoomRequest;
    let name_ok = |s: &str, empty_ok: bool| {
        (empty_ok || !s.is_empty())
            && s.len() <= MAX_ROOM_ID_BYTES
            && !s.chars().any(char::is_control)
    };
    let (name, empty_ok, props) = match req {
        RoomRequest::JoinOrCreate { game, filter } => (game, true, filter.as_slice()),
        RoomRequest::Create { game, props } => (game, true, props.as_slice()),
        RoomRequest::Join { id } => (id, false, &[][..]),
    };
    if !name_ok(name, empty_ok) {
        return Err(RoomRequestError::BadName(name.chars().take(80).collect()));
    }
    validate_props(props)
}

/// Checks room properties against [`MAX_ROOM_PROPS`], [`MAX_PROP_KEY_BYTES`] and
/// [`MAX_PROP_VALUE_BYTES`]; keys must be unique.
pub fn validate_props(props: &[(String, String)]) -> Result<(), RoomRequestError> {
    if props.len() > MAX_ROOM_PROPS {
        return Err(RoomRequestError::TooManyProps);
    }
    for (i, (k, v)) in props.iter().enumerate() {
        let ok = !k.is_empty()
            && k.len() <= MAX_PROP_KEY_BYTES
            && v.len() <= MAX_PROP_VALUE_BYTES
            && !k.chars().chain(v.chars()).any(char::is_control)
            && !props[..i].iter().any(|(k2, _)| k2 == k);
        if !ok {
            return Err(RoomRequestError::BadProp(k.chars().take(40).collect()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::write_record;
    use crate::schema::{Encoding, Field};

    fn schema() -> GameSchema {
        GameSchema {
            game: "g".into(),
            input: vec![
                Field::new(
                    "x",
                    Encoding::Int {
                        min: -127,
                        max: 127,
                    },
                ),
                Field::new("fire", Encoding::Bool),
            ],
            ..GameSchema::default()
        }
    }

    fn msg(seq: u32, words: &[i64]) -> InputMsg {
        let mut fields = Vec::new();
        write_record(&schema().input, words, &mut fields);
        InputMsg {
            seq,
            ack: None,
            tick: None,
            events_ack: 0,
            fields,
        }
    }

    #[test]
    fn fair_inputs_pass_and_bad_ones_are_named() {
        let s = schema();
        let ok = validate_input(&s, &msg(2, &[-5, 1]), 1).expect("valid");
        assert_eq!(ok.words(), &[-5, 1]);
        assert_eq!(
            validate_input(&s, &msg(1, &[0, 0]), 1),
            Err(InputError::StaleSequence { last: 1, seq: 1 })
        );
        let mut long = msg(3, &[0, 0]);
        long.fields.push(0);
        assert_eq!(
            validate_input(&s, &long, 1),
            Err(InputError::Malformed { seq: 3 })
        );
        // -127..=127 is 8 bits: 255 - 127 = 128 is out of range.
        let over = InputMsg {
            seq: 4,
            ack: None,
            tick: None,
            events_ack: 0,
            fields: vec![0xFF, 0],
        };
        assert_eq!(
            validate_input(&s, &over, 1),
            Err(InputError::Malformed { seq: 4 })
        );
    }

    #[test]
    fn names_are_trimmed_on_char_boundaries() {
        assert_eq!(sanitize_name("bot\n1"), "bot1");
        let long = "é".repeat(40);
        let s = sanitize_name(&long);
        assert!(s.len() <= MAX_NAME_BYTES);
        assert_eq!(s.chars().count(), 16);
    }

    #[test]
    fn room_requests_are_bounded() {
        use crate::msg::RoomRequest;
        let props = |n: usize| (0..n).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(validate_room_request(&RoomRequest::default()).is_ok());
        assert!(
            validate_room_request(&RoomRequest::Create {
                game: "g".into(),
                props: props(MAX_ROOM_PROPS)
            })
            .is_ok()
        );
        assert_eq!(
            validate_room_request(&RoomRequest::JoinOrCreate {
                game: String::new(),
                filter: props(MAX_ROOM_PROPS + 1)
            }),
            Err(RoomRequestError::TooManyProps)
        );
        let one = |k: &str, v: &str| RoomRequest::JoinOrCreate {
            game: String::new(),
            filter: vec![(k.into(), v.into())],
        };
        assert!(validate_room_request(&one("", "v")).is_err(), "empty key");
        assert!(validate_room_request(&one("k\n", "v")).is_err(), "control");
        assert!(validate_room_request(&one("k", &"v".repeat(MAX_PROP_VALUE_BYTES + 1))).is_err());
        assert!(validate_room_request(&one(&"k".repeat(MAX_PROP_KEY_BYTES), "")).is_ok());
        let twice = RoomRequest::Create {
            game: String::new(),
            props: vec![("k".into(), "1".into()), ("k".into(), "2".into())],
        };
        assert!(validate_room_request(&twice).is_err(), "repeated key");
        assert!(validate_room_request(&RoomRequest::Join { id: String::new() }).is_err());
        assert!(
            validate_room_request(&RoomRequest::Join {
                id: "x".repeat(MAX_ROOM_ID_BYTES + 1)
            })
            .is_err()
        );
    }
}
