//! Bit-level writing and reading for snapshot bodies and inputs.
//!
//! Bits fill each byte from its least significant bit up, bytes in order; a value of `n` bits
//! is written least significant bit first. The last byte is padded with zero bits, and a
//! reader refuses padding that is not zero. Written by hand because no maintained crate offers
//! this exact layout (the JavaScript SDK mirrors it in a few lines) and the hot path wants no
//! per-value dispatch.

/// Appends bits to a byte buffer.
#[derive(Debug, Default, Clone)]
pub struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    /// Bits held in `acc`, always below 32 between calls (whole 32-bit words go to `bytes`).
    held: u32,
}

impl BitWriter {
    /// An empty writer.
    #[must_use]
    pub fn new() -> BitWriter {
        BitWriter::default()
    }

    /// Empties the writer, keeping its buffer.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.acc = 0;
        self.held = 0;
    }

    /// Bits written so far.
    #[must_use]
    pub fn bit_len(&self) -> usize {
        self.bytes.len() * 8 + self.held as usize
    }

    /// Writes the low `n` bits of `v` (`n` up to 32; higher bits of `v` are ignored).
    #[inline(always)]
    pub fn put(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 32);
        let v = v & ((1u64 << n) - 1);
        self.acc |= v << self.held;
        self.held += n;
        if self.held >= 32 {
            self.bytes
                .extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.held -= 32;
        }
    }

    /// Writes `v >= 1` as an Elias gamma code: `k` zero bits, a one bit, then the low `k` bits
    /// of `v`, where `2^k <= v < 2^(k+1)`. 1 takes 1 bit, 2-3 take 3, 4-7 take 5.
    #[inline(always)]
    pub fn gamma(&mut self, v: u64) {
        debug_assert!((1..=1 << 33).contains(&v));
        let k = 63 - v.leading_zeros();
        if k < 16 {
            // The zeros, the one and the low bits in one go.
            self.put((1 | ((v & ((1 << k) - 1)) << 1)) << k, 2 * k + 1);
        } else {
            self.gamma_long(v, k);
        }
    }

    /// [`BitWriter::gamma`] of a value of 2^16 or more (rare: id gaps and counts are small).
    #[cold]
    #[inline(never)]
    fn gamma_long(&mut self, v: u64, k: u32) {
        self.put(0, k);
        self.put(1, 1);
        let low = v & ((1 << k) - 1);
        self.put(low & 0xFFFF, 16);
        self.put(low >> 16, k - 16);
    }

    /// Appends everything another writer wrote, at this writer's bit position: one `put` when
    /// the other holds under 32 bits (a change record), else a byte copy when this writer is
    /// at a 32-bit boundary and one `put` per 32 bits otherwise.
    #[inline(always)]
    pub fn append(&mut self, other: &BitWriter) {
        if !other.bytes.is_empty() {
            self.append_bytes(&other.bytes);
        }
        self.put(other.acc, other.held);
    }

    /// The whole bytes of [`BitWriter::append`]: copied when this writer holds no bits, else
    /// shifted in 32 bits at a time (a writer's bytes are whole 32-bit words, as `put` writes
    /// them) into room made once.
    #[inline(never)]
    fn append_bytes(&mut self, other: &[u8]) {
        if self.held == 0 {
            self.bytes.extend_from_slice(other);
            return;
        }
        let words = other.chunks_exact(4);
        let rest = words.remainder();
        let start = self.bytes.len();
        self.bytes.resize(start + other.len() - rest.len(), 0);
        let (held, mut acc) = (self.held, self.acc);
        for (dst, w) in self.bytes[start..].chunks_exact_mut(4).zip(words) {
            acc |= u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])) << held;
            dst.copy_from_slice(&(acc as u32).to_le_bytes());
            acc >>= 32;
        }
        self.acc = acc;
        for &b in rest {
            self.put(u64::from(b), 8);
        }
    }

    /// Pads to a whole byte with zero bits and appends the bytes to `out`.
    pub fn finish_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes);
        let tail = self.acc.to_le_bytes();
        out.extend_from_slice(&tail[..self.held.div_ceil(8) as usize]);
    }
}

/// Why bits could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBits;

/// Reads bits written by [`BitWriter`].
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `bytes`.
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> BitReader<'a> {
        BitReader { bytes, pos: 0 }
    }

    /// Bits left.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.bytes.len() * 8 - self.pos
    }

    /// The next 57 bits or more, from the current one up (in bit 0), when eight whole bytes
    /// are left from the current one's: one unaligned load instead of a loop over bytes.
    #[inline(always)]
    fn window(&self) -> Option<u64> {
        let i = self.pos / 8;
        let b: [u8; 8] = self.bytes.get(i..i + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b) >> (self.pos % 8))
    }

    /// Reads `n` bits (up to 32).
    #[inline]
    pub fn get(&mut self, n: u32) -> Result<u64, OutOfBits> {
        debug_assert!(n <= 32);
        if n as usize > self.remaining() {
            return Err(OutOfBits);
        }
        if let Some(w) = self.window() {
            self.pos += n as usize;
            return Ok(w & ((1u64 << n) - 1));
        }
        let mut v = 0u64;
        let mut got = 0;
        while got < n {
            let byte = self.bytes[self.pos / 8];
            let off = (self.pos % 8) as u32;
            let take = (8 - off).min(n - got);
            let bits = (u64::from(byte) >> off) & ((1 << take) - 1);
            v |= bits << got;
            got += take;
            self.pos += take as usize;
        }
        Ok(v)
    }

    /// Reads an Elias gamma code (see [`BitWriter::gamma`]); codes of more than 33 significant
    /// bits are refused.
    pub fn gamma(&mut self) -> Result<u64, OutOfBits> {
        // A code of up to 2 * 24 + 1 bits fits the window: its zeros, its one, its low bits.
        if let Some(w) = self.window() {
            let k = w.trailing_zeros();
            if k <= 24 {
                self.pos += 2 * k as usize + 1;
                return Ok(1 << k | (w >> (k + 1)) & ((1u64 << k) - 1));
            }
        }
        let mut k = 0;
        while self.get(1)? == 0 {
            k += 1;
            if k > 33 {
                return Err(OutOfBits);
            }
        }
        let low = if k > 16 {
            let lo = self.get(16)?;
            lo | self.get(k - 16)? << 16
        } else {
            self.get(k)?
        };
        Ok(1 << k | low)
    }

    /// Skips the zero padding to the next whole byte; padding that is not zero is an error.
    pub fn align(&mut self) -> Result<(), OutOfBits> {
        let pad = (8 - self.pos % 8) % 8;
        if self.get(pad as u32)? != 0 {
            return Err(OutOfBits);
        }
        Ok(())
    }

    /// Skips the zero padding to the next whole byte and returns the rest; padding that is
    /// not zero is an error.
    pub fn finish(mut self) -> Result<&'a [u8], OutOfBits> {
        let pad = (8 - self.pos % 8) % 8;
        if self.get(pad as u32)? != 0 {
            return Err(OutOfBits);
        }
        Ok(&self.bytes[self.pos / 8..])
    }
}

/// Zigzag: 0, -1, 1, -2, ... as 0, 1, 2, 3, ...
#[must_use]
#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
#[must_use]
#[inline]
pub fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_gamma_codes_round_trip() {
        let mut w = BitWriter::new();
        let gammas = [
            1u64,
            2,
            3,
            7,
            8,
            65_535,
            65_536,
            1 << 20,
            u64::from(u32::MAX) + 1,
        ];
        w.put(5, 3);
        for g in gammas {
            w.gamma(g);
        }
        w.put(0xABCD_EF01, 32);
        w.put(1, 1);
        assert_eq!(
            w.bit_len(),
            3 + 1 + 3 + 3 + 5 + 7 + 31 + 33 + 41 + 65 + 32 + 1
        );
        let mut out = Vec::new();
        w.finish_into(&mut out);
        let mut r = BitReader::new(&out);
        assert_eq!(r.get(3), Ok(5));
        for g in gammas {
            assert_eq!(r.gamma(), Ok(g));
        }
        assert_eq!(r.get(32), Ok(0xABCD_EF01));
        assert_eq!(r.get(1), Ok(1));
        assert_eq!(r.finish(), Ok(&[][..]));
    }

    #[test]
    fn reads_at_every_offset_agree_near_the_end_and_far_from_it() {
        // The reader loads eight bytes at a time where it can and goes byte by byte near the
        // end: every value and code must read the same at every bit offset, and running out
        // must be an error at the same place.
        let values: Vec<(u64, u32)> = (0..40u64)
            .map(|i| {
                let n = (i % 33) as u32;
                ((i * 2_654_435_761) & ((1 << n) - 1), n)
            })
            .collect();
        let gammas = [
            1u64,
            2,
            5,
            100,
            1 << 20,
            (1 << 24) + 3,
            (1 << 25) + 1,
            1 << 32,
        ];
        for lead in 0..8 {
            let mut w = BitWriter::new();
            w.put(0, lead);
            for (i, &(v, n)) in values.iter().enumerate() {
                w.put(v, n);
                w.gamma(gammas[i % gammas.len()]);
            }
            let mut out = Vec::new();
            w.finish_into(&mut out);
            let mut r = BitReader::new(&out);
            assert_eq!(r.get(lead), Ok(0));
            for (i, &(v, n)) in values.iter().enumerate() {
                assert_eq!(r.get(n), Ok(v), "value {i} after {lead} bits");
                assert_eq!(r.gamma(), Ok(gammas[i % gammas.len()]), "code {i}");
            }
            let left = r.remaining();
            assert!(left < 8);
            assert_eq!(r.get(left as u32 + 1), Err(OutOfBits));
            // A code cut short is an error wherever it is cut (this one is 41 bits).
            let mut w = BitWriter::new();
            w.put(0, lead);
            w.gamma(1 << 20);
            w.put(u64::from(u32::MAX), 32);
            let mut bytes = Vec::new();
            w.finish_into(&mut bytes);
            for len in 0..=bytes.len() {
                let mut r = BitReader::new(&bytes[..len]);
                let whole = len * 8 >= lead as usize + 41;
                if r.get(lead).is_ok() {
                    assert_eq!(r.gamma().is_ok(), whole, "{len} bytes after {lead} bits");
                }
            }
        }
    }

    #[test]
    fn layout_is_lsb_first_and_padding_must_be_zero() {
        let mut w = BitWriter::new();
        w.put(1, 1);
        w.gamma(2); // 0, 1, then low bit 0
        w.put(0b11, 2);
        let mut out = Vec::new();
        w.finish_into(&mut out);
        assert_eq!(out, vec![0b0011_0101]);
        let bad = [0b1011_0101u8];
        let mut r = BitReader::new(&bad);
        r.get(6).expect("bits");
        assert_eq!(r.finish(), Err(OutOfBits));
        let mut r = BitReader::new(&[0u8; 5]);
        assert_eq!(r.gamma(), Err(OutOfBits), "a code of all zeros ends");
    }

    #[test]
    fn appending_keeps_bit_alignment() {
        let mut rec = BitWriter::new();
        rec.put(0x1F3, 9);
        let mut w = BitWriter::new();
        w.put(1, 3);
        w.append(&rec);
        w.append(&rec);
        let mut out = Vec::new();
        w.finish_into(&mut out);
        let mut r = BitReader::new(&out);
        assert_eq!(r.get(3), Ok(1));
        assert_eq!(r.get(9), Ok(0x1F3));
        assert_eq!(r.get(9), Ok(0x1F3));
    }

    #[test]
    fn appending_long_records_matches_writing_them_directly() {
        // Records of whole 32-bit words and a tail, appended at every bit offset.
        let puts: Vec<(u64, u32)> = (0..23u64)
            .map(|i| {
                (
                    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7,
                    1 + (i as u32 * 7) % 32,
                )
            })
            .collect();
        for take in [3, 6, 11, 23] {
            let mut rec = BitWriter::new();
            for &(v, n) in &puts[..take] {
                rec.put(v, n);
            }
            for offset in 0..70u32 {
                let (mut appended, mut direct) = (BitWriter::new(), BitWriter::new());
                for w in [&mut appended, &mut direct] {
                    w.put(0x5555_5555, offset.min(32));
                    w.put(0x3333_3333, offset.saturating_sub(32).min(32));
                    w.put(0x0F, offset.saturating_sub(64));
                }
                appended.append(&rec);
                for &(v, n) in &puts[..take] {
                    direct.put(v, n);
                }
                let (mut a, mut d) = (Vec::new(), Vec::new());
                appended.finish_into(&mut a);
                direct.finish_into(&mut d);
                assert_eq!(a, d, "{take} puts at offset {offset}");
                assert_eq!(appended.bit_len(), direct.bit_len());
            }
        }
    }

    #[test]
    fn zigzag_round_trips() {
        for v in [
            0i64,
            -1,
            1,
            -2,
            63,
            -64,
            i64::from(i32::MIN),
            i64::from(u32::MAX),
        ] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }
}
