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
}
