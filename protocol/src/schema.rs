//! A game's schema: what it replicates, what its input is and what static data it sends, each
//! field with a wire encoding and a delta mode. The server sends it in the welcome, so a client
//! decodes any game without generated code.
//!
//! Every field value is an integer "word" (`i64`, always within the 32-bit range of its
//! encoding): fixed-point numbers as their scaled integer, angles as steps, booleans as 0 or 1,
//! entity references as the id. A short string takes `1 + ceil(max_bytes / 4)` words: its length,
//! then its bytes packed four to a word, little-endian. An entity's state is the words of its
//! components, in schema order, behind a mask of which components it has.
//!
//! A game declares a type's fields once by implementing [`Replicate`]; the server and every
//! Rust client then agree on its schema and its words.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest name of a game, component or field, in bytes.
pub const MAX_NAME_BYTES: usize = 32;
/// Most component types (replicated or static) a game may declare; a component mask is a u32.
pub const MAX_COMPONENTS: usize = 32;
/// Most fields an entity may carry over all its components; a change's field mask is a u64.
pub const MAX_ENTITY_FIELDS: usize = 64;
/// Longest short string, in bytes.
pub const MAX_STR_BYTES: u8 = 64;
/// Most words an input may take.
pub const MAX_INPUT_WORDS: usize = 8;
/// Widest small difference a delta mode may declare, in bits.
pub const MAX_DIFF_BITS: u8 = 24;

/// How one field's value is written in full.
#[derive(Clone, Copy, PartialEq, Debug, Encode, Decode, Serialize, Deserialize)]
pub enum Encoding {
    /// A fixed-point number `q / scale`, stored as the integer `q` in `min..=max`
    /// (`max - min + 1` rounded up to a power of two gives its bits).
    Fixed {
        /// Integer steps per unit of the number.
        scale: f32,
        /// Smallest integer.
        min: i32,
        /// Largest integer.
        max: i32,
    },
    /// An angle in `steps` equal steps per turn: the integer `0..steps`.
    Angle {
        /// Steps per turn, 2 to 65536.
        steps: u32,
    },
    /// An unsigned integer in `0..=max`.
    UInt {
        /// Largest value.
        max: u32,
    },
    /// A signed integer in `min..=max`.
    Int {
        /// Smallest value.
        min: i32,
        /// Largest value.
        max: i32,
    },
    /// Any `u32`, shorter when small (an Elias gamma code).
    VarUInt,
    /// Any `i32`, shorter when near zero (zigzag, then as [`Encoding::VarUInt`]).
    VarInt,
    /// 0 or 1.
    Bool,
    /// UTF-8 text of at most `max_bytes` bytes.
    Str {
        /// Longest text, 1 to [`MAX_STR_BYTES`].
        max_bytes: u8,
    },
    /// The id of another entity, or 0 for none.
    EntityRef,
}

/// How a changed field is written against its value in the baseline.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub enum Delta {
    /// The new value in full.
    Absolute,
    /// `zigzag(new - old) - 1` in `bits` bits when it is below the all-ones value; otherwise
    /// the all-ones value, then the new value in full.
    Diff {
        /// Width of the small difference.
        bits: u8,
    },
    /// The shortest turn from old to new (an [`Encoding::Angle`] only), written as
    /// [`Delta::Diff`] writes a difference.
    AngleDiff {
        /// Width of the small difference.
        bits: u8,
    },
}

/// One field: its name, wire encoding and delta mode.
#[derive(Clone, PartialEq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct Field {
    /// Name, for clients and tools.
    pub name: String,
    /// How the value is written in full.
    pub encoding: Encoding,
    /// How a change is written.
    pub delta: Delta,
}

impl Field {
    /// A field written in full when it changes.
    #[must_use]
    pub fn new(name: &str, encoding: Encoding) -> Field {
        Field {
            name: name.to_owned(),
            encoding,
            delta: Delta::Absolute,
        }
    }

    /// The same field, changes written as `delta`.
    #[must_use]
    pub fn delta(mut self, delta: Delta) -> Field {
        self.delta = delta;
        self
    }

    /// Words this field takes in a state.
    #[must_use]
    pub fn words(&self) -> usize {
        self.encoding.words()
    }
}

/// A component type: a name and its fields, in order.
#[derive(Clone, PartialEq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct ComponentSchema {
    /// Name, unique within the game.
    pub name: String,
    /// Fields in word order.
    pub fields: Vec<Field>,
}

impl ComponentSchema {
    /// Words a value of this component takes.
    #[must_use]
    pub fn words(&self) -> usize {
        self.fields.iter().map(Field::words).sum()
    }
}

/// Everything a client needs to decode a game: sent in the welcome.
#[derive(Clone, PartialEq, Debug, Default, Encode, Decode, Serialize, Deserialize)]
pub struct GameSchema {
    /// The game's name.
    pub game: String,
    /// Replicated component types; an entity's component mask has bit `i` for `components[i]`.
    pub components: Vec<ComponentSchema>,
    /// The input's fields.
    pub input: Vec<Field>,
    /// Static record types, sent once in the welcome.
    pub statics: Vec<ComponentSchema>,
    /// Event types clients send (reliable, ordered; see `docs/PROTOCOL.md`, "Events").
    pub client_events: Vec<ComponentSchema>,
    /// Event types the server sends.
    pub server_events: Vec<ComponentSchema>,
}

/// Why a schema or a value does not fit the rules.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SchemaError {
    /// A name is empty, too long, or used twice.
    #[error("bad or duplicate name {0:?}")]
    Name(String),
    /// Too many component or record types.
    #[error("{count} component types; at most {MAX_COMPONENTS}")]
    TooManyComponents {
        /// Types declared.
        count: usize,
    },
    /// Too many input words.
    #[error("the input takes {words} words; at most {MAX_INPUT_WORDS}")]
    InputTooLarge {
        /// Words declared.
        words: usize,
    },
    /// A field's encoding or delta mode is not valid.
    #[error("field {field:?}: {why}")]
    Field {
        /// The field.
        field: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A value is outside its encoding's range.
    #[error("field {field:?}: value {value} is out of range")]
    OutOfRange {
        /// The field.
        field: String,
        /// The value.
        value: i64,
    },
    /// Words of the wrong length for a component or input.
    #[error("expected {expected} words, got {actual}")]
    WordCount {
        /// Words the schema says.
        expected: usize,
        /// Words given.
        actual: usize,
    },
}

/// Bits needed to write `0..=max`.
#[must_use]
pub fn bits_for(max: u64) -> u32 {
    64 - max.leading_zeros()
}

impl Encoding {
    /// Words a value takes.
    #[must_use]
    pub fn words(&self) -> usize {
        match self {
            Encoding::Str { max_bytes } => 1 + usize::from(*max_bytes).div_ceil(4),
            _ => 1,
        }
    }

    /// The smallest and largest value of a one-word encoding.
    #[must_use]
    pub fn range(&self) -> (i64, i64) {
        match *self {
            Encoding::Fixed { min, max, .. } | Encoding::Int { min, max } => {
                (i64::from(min), i64::from(max))
            }
            Encoding::Angle { steps } => (0, i64::from(steps) - 1),
            Encoding::UInt { max } => (0, i64::from(max)),
            Encoding::VarUInt | Encoding::EntityRef => (0, i64::from(u32::MAX)),
            Encoding::VarInt => (i64::from(i32::MIN), i64::from(i32::MAX)),
            Encoding::Bool => (0, 1),
            Encoding::Str { max_bytes } => (0, i64::from(max_bytes)),
        }
    }

    /// Bits of a value written in full, for the fixed-width encodings.
    #[must_use]
    pub fn fixed_bits(&self) -> Option<u32> {
        match self {
            Encoding::Fixed { .. }
            | Encoding::Int { .. }
            | Encoding::Angle { .. }
            | Encoding::UInt { .. }
            | Encoding::Bool => {
                let (lo, hi) = self.range();
                Some(bits_for((hi - lo) as u64))
            }
            _ => None,
        }
    }

    /// True if the encoding is a number a [`Delta::Diff`] can apply to.
    #[must_use]
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            Encoding::Fixed { .. }
                | Encoding::Int { .. }
                | Encoding::UInt { .. }
                | Encoding::VarUInt
                | Encoding::VarInt
        )
    }

    /// Checks the words of one value (a string's length word, bytes and zero padding
    /// included).
    pub fn check(&self, words: &[i64]) -> bool {
        let (lo, hi) = self.range();
        match (self, words) {
            (Encoding::Str { max_bytes }, [len, packed @ ..]) => {
                (0..=i64::from(*max_bytes)).contains(len)
                    && packed.len() == usize::from(*max_bytes).div_ceil(4)
                    && packed.iter().enumerate().all(|(i, w)| {
                        let kept = (*len - 4 * i as i64).clamp(0, 4);
                        (0..=i64::from(u32::MAX)).contains(w)
                            && (kept == 4 || *w >> (8 * kept) == 0)
                    })
                    && str_bytes(words).is_some_and(|b| std::str::from_utf8(&b).is_ok())
            }
            (_, [v]) => (lo..=hi).contains(v),
            _ => false,
        }
    }
}

/// Forces the words of a value of `fields` into their ranges (numbers clamped, an invalid
/// string emptied); returns true if anything had to change. The server applies it to what a
/// game writes, so a game bug can never produce bytes a client cannot decode.
pub fn clamp_words(fields: &[Field], words: &mut [i64]) -> bool {
    let mut changed = false;
    let mut at = 0;
    for f in fields {
        let n = f.words();
        let Some(value) = words.get_mut(at..at + n) else {
            return changed;
        };
        if !f.encoding.check(value) {
            changed = true;
            if n == 1 {
                let (lo, hi) = f.encoding.range();
                value[0] = value[0].clamp(lo, hi);
            } else {
                value.fill(0);
            }
        }
        at += n;
    }
    changed
}

/// Writes `text` (cut to `max_bytes` at a character boundary) as a short string's words.
pub fn str_words(text: &str, max_bytes: u8, out: &mut Vec<i64>) {
    let mut end = text.len().min(usize::from(max_bytes));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let bytes = &text.as_bytes()[..end];
    out.push(end as i64);
    for i in 0..usize::from(max_bytes).div_ceil(4) {
        let mut w = [0u8; 4];
        for (j, b) in w.iter_mut().enumerate() {
            *b = bytes.get(4 * i + j).copied().unwrap_or(0);
        }
        out.push(i64::from(u32::from_le_bytes(w)));
    }
}

/// The bytes of a short string's words, if the length fits the words.
#[must_use]
pub fn str_bytes(words: &[i64]) -> Option<Vec<u8>> {
    let (len, packed) = words.split_first()?;
    let len = usize::try_from(*len).ok()?;
    if len > packed.len() * 4 {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    for w in packed {
        out.extend_from_slice(&(*w as u32).to_le_bytes());
    }
    out.truncate(len);
    Some(out)
}

fn check_name(name: &str, seen: &mut Vec<String>) -> Result<(), SchemaError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || seen.iter().any(|s| s == name) {
        return Err(SchemaError::Name(name.to_owned()));
    }
    seen.push(name.to_owned());
    Ok(())
}

fn check_fields(fields: &[Field]) -> Result<(), SchemaError> {
    let mut names = Vec::new();
    for f in fields {
        check_name(&f.name, &mut names)?;
        let why = match (f.encoding, f.delta) {
            (Encoding::Fixed { scale, min, max }, _)
                if !(scale.is_finite() && scale > 0.0 && min < max) =>
            {
                "a fixed-point field needs a positive scale and min < max"
            }
            (Encoding::Int { min, max }, _) if min >= max => "an integer field needs min < max",
            (Encoding::UInt { max: 0 }, _) => "an unsigned field needs max > 0",
            (Encoding::Angle { steps }, _) if !(2..=65_536).contains(&steps) => {
                "an angle needs 2 to 65536 steps"
            }
            (Encoding::Str { max_bytes }, _) if max_bytes == 0 || max_bytes > MAX_STR_BYTES => {
                "a short string holds 1 to 64 bytes"
            }
            (_, Delta::Diff { bits } | Delta::AngleDiff { bits })
                if bits == 0 || bits > MAX_DIFF_BITS =>
            {
                "a small difference takes 1 to 24 bits"
            }
            (e, Delta::Diff { .. }) if !e.is_numeric() => "Diff applies to numbers only",
            (Encoding::Angle { .. }, Delta::AngleDiff { .. }) | (_, Delta::Absolute) => continue,
            (_, Delta::AngleDiff { .. }) => "AngleDiff applies to angles only",
            _ => continue,
        };
        return Err(SchemaError::Field {
            field: f.name.clone(),
            why,
        });
    }
    Ok(())
}

impl GameSchema {
    /// Checks every rule of this module: names, counts, encodings, delta modes.
    pub fn validate(&self) -> Result<(), SchemaError> {
        check_name(&self.game, &mut Vec::new())?;
        for list in [
            &self.components,
            &self.statics,
            &self.client_events,
            &self.server_events,
        ] {
            if list.len() > MAX_COMPONENTS {
                return Err(SchemaError::TooManyComponents { count: list.len() });
            }
            let mut names = Vec::new();
            for c in list {
                check_name(&c.name, &mut names)?;
                check_fields(&c.fields)?;
            }
        }
        let fields: usize = self.components.iter().map(|c| c.fields.len()).sum();
        if fields > MAX_ENTITY_FIELDS {
            return Err(SchemaError::Field {
                field: "*".into(),
                why: "an entity may carry at most 64 fields over all its components",
            });
        }
        check_fields(&self.input)?;
        let words: usize = self.input.iter().map(Field::words).sum();
        if words > MAX_INPUT_WORDS {
            return Err(SchemaError::InputTooLarge { words });
        }
        Ok(())
    }

    /// Index of a replicated component type by name.
    #[must_use]
    pub fn component_index(&self, name: &str) -> Option<usize> {
        self.components.iter().position(|c| c.name == name)
    }

    /// Index of a client event type by name.
    #[must_use]
    pub fn client_event_index(&self, name: &str) -> Option<usize> {
        self.client_events.iter().position(|c| c.name == name)
    }

    /// Index of a server event type by name.
    #[must_use]
    pub fn server_event_index(&self, name: &str) -> Option<usize> {
        self.server_events.iter().position(|c| c.name == name)
    }

    /// Index of a static record type by name.
    #[must_use]
    pub fn static_index(&self, name: &str) -> Option<usize> {
        self.statics.iter().position(|c| c.name == name)
    }

    /// Checks the words of a value of `fields` (a component, a record, or the input).
    pub fn check_words(fields: &[Field], words: &[i64]) -> Result<(), SchemaError> {
        let expected: usize = fields.iter().map(Field::words).sum();
        if words.len() != expected {
            return Err(SchemaError::WordCount {
                expected,
                actual: words.len(),
            });
        }
        let mut at = 0;
        for f in fields {
            let n = f.words();
            if !f.encoding.check(&words[at..at + n]) {
                return Err(SchemaError::OutOfRange {
                    field: f.name.clone(),
                    value: words[at],
                });
            }
            at += n;
        }
        Ok(())
    }
}

/// A Rust type that a game replicates, sends as input or as a static record: its fields and
/// how it turns into words and back. The server and typed clients use the same impl, so they
/// agree on the schema by construction.
pub trait Replicate: Sized {
    /// The name in the schema.
    const NAME: &'static str;
    /// The fields, in word order.
    fn fields() -> Vec<Field>;
    /// Appends this value's words (exactly as many as [`Replicate::fields`] take, each in
    /// range: the server checks them at start-up and in debug builds).
    fn write(&self, out: &mut Vec<i64>);
    /// Reads a value back from its words (already checked against the fields).
    fn read(words: &[i64]) -> Self;

    /// The component schema of this type.
    #[must_use]
    fn schema() -> ComponentSchema {
        ComponentSchema {
            name: Self::NAME.to_owned(),
            fields: Self::fields(),
        }
    }
}

/// Fixed-point helpers for [`Encoding::Fixed`] and [`Encoding::Angle`] fields.
pub mod fixed {
    use std::f32::consts::TAU;

    /// `v` in steps of `1 / scale`, rounded, clamped to `min..=max`.
    #[must_use]
    pub fn to_fixed(v: f32, scale: f32, min: i32, max: i32) -> i64 {
        let q = (v * scale).round();
        if q.is_nan() {
            return i64::from(min.max(0).min(max));
        }
        (q as i64).clamp(i64::from(min), i64::from(max))
    }

    /// The number a fixed-point integer stands for.
    #[must_use]
    pub fn from_fixed(q: i64, scale: f32) -> f32 {
        q as f32 / scale
    }

    /// An angle in radians as steps `0..steps` (any finite angle; NaN is 0).
    #[must_use]
    pub fn to_steps(radians: f32, steps: u32) -> i64 {
        let turns = radians / TAU;
        let frac = turns - turns.floor();
        if !frac.is_finite() {
            return 0;
        }
        ((frac * steps as f32).round() as i64).rem_euclid(i64::from(steps))
    }

    /// Steps of an angle as radians in `0..TAU`.
    #[must_use]
    pub fn from_steps(q: i64, steps: u32) -> f32 {
        q.rem_euclid(i64::from(steps)) as f32 * TAU / steps as f32
    }

    /// The shortest turn from `from` to `to`, in `-steps/2..steps/2`.
    #[must_use]
    pub fn turn(from: i64, to: i64, steps: u32) -> i64 {
        let n = i64::from(steps);
        let d = (to - from).rem_euclid(n);
        if d >= n / 2 { d - n } else { d }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> GameSchema {
        GameSchema {
            game: "t".into(),
            components: vec![ComponentSchema {
                name: "Pos".into(),
                fields: vec![
                    Field::new(
                        "x",
                        Encoding::Fixed {
                            scale: 2.0,
                            min: 0,
                            max: 8000,
                        },
                    )
                    .delta(Delta::Diff { bits: 6 }),
                    Field::new("a", Encoding::Angle { steps: 1024 })
                        .delta(Delta::AngleDiff { bits: 5 }),
                    Field::new("n", Encoding::Str { max_bytes: 6 }),
                ],
            }],
            input: vec![Field::new("fire", Encoding::Bool)],
            statics: vec![],
            ..GameSchema::default()
        }
    }

    #[test]
    fn valid_schemas_pass_and_each_rule_is_enforced() {
        schema().validate().expect("valid");
        let mut s = schema();
        s.components[0].fields[2].delta = Delta::Diff { bits: 3 };
        assert!(s.validate().is_err(), "Diff on a string");
        let mut s = schema();
        s.components[0].fields[0].delta = Delta::AngleDiff { bits: 3 };
        assert!(s.validate().is_err(), "AngleDiff on a number");
        let mut s = schema();
        s.components.push(s.components[0].clone());
        assert!(matches!(s.validate(), Err(SchemaError::Name(_))));
        let mut s = schema();
        s.input = (0..9)
            .map(|i| Field::new(&format!("f{i}"), Encoding::Bool))
            .collect();
        assert!(matches!(
            s.validate(),
            Err(SchemaError::InputTooLarge { words: 9 })
        ));
        let mut s = schema();
        s.components[0].fields[0].encoding = Encoding::Fixed {
            scale: f32::NAN,
            min: 0,
            max: 1,
        };
        assert!(s.validate().is_err());
    }

    #[test]
    fn strings_pack_into_words_and_are_checked() {
        let mut w = Vec::new();
        str_words("héllo!!", 6, &mut w);
        // "héllo!!" is 8 bytes; cut at 6 it is "héllo" (é takes two).
        assert_eq!(w.len(), 3);
        assert_eq!(w[0], 6);
        assert_eq!(str_bytes(&w).expect("fits"), "héllo".as_bytes());
        let enc = Encoding::Str { max_bytes: 6 };
        assert!(enc.check(&w));
        let mut bad = w.clone();
        bad[2] |= 1 << 24; // A byte past the length.
        assert!(!enc.check(&bad));
        let mut bad = w.clone();
        bad[1] = i64::from(u32::from_le_bytes([0xff, 0xfe, 0, 0]));
        bad[0] = 2;
        bad[2] = 0;
        assert!(!enc.check(&bad), "not UTF-8");
        let s = schema();
        let mut words = vec![100, 5];
        words.extend(&w);
        GameSchema::check_words(&s.components[0].fields, &words).expect("in range");
        words[0] = 8001;
        assert!(GameSchema::check_words(&s.components[0].fields, &words).is_err());
    }

    #[test]
    fn clamping_forces_values_into_range() {
        let s = schema();
        let mut words = vec![9000, 1024, 99, 0, 0];
        assert!(clamp_words(&s.components[0].fields, &mut words));
        assert_eq!(words, vec![8000, 1023, 0, 0, 0]);
        GameSchema::check_words(&s.components[0].fields, &words).expect("in range");
        assert!(!clamp_words(&s.components[0].fields, &mut words));
    }

    #[test]
    fn fixed_point_and_angles() {
        assert_eq!(fixed::to_fixed(1.25, 2.0, 0, 10), 3);
        assert_eq!(fixed::to_fixed(99.0, 2.0, 0, 10), 10);
        assert_eq!(fixed::to_fixed(f32::NAN, 2.0, -5, 10), 0);
        assert_eq!(fixed::to_steps(-std::f32::consts::FRAC_PI_2, 1024), 768);
        assert_eq!(fixed::to_steps(f32::INFINITY, 1024), 0);
        assert_eq!(fixed::turn(1020, 4, 1024), 8);
        assert_eq!(fixed::turn(4, 1020, 1024), -8);
        assert_eq!(bits_for(0), 0);
        assert_eq!(bits_for(1), 1);
        assert_eq!(bits_for(1023), 10);
        assert_eq!(Encoding::Angle { steps: 1024 }.fixed_bits(), Some(10));
    }
}
