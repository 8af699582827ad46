//! Counter-based random draws: every value is a pure function of `(seed, row index, field)`.
//!
//! A generator must be able to start at any row (a restarted source, a second view reading the
//! same source, a partitioned reader) and skip columns nobody reads, and still produce the same
//! values. A sequential RNG would have to be replayed up to the row, and skipping a column would
//! shift every later draw. Here each `(row, field)` pair seeds its own short stream with
//! SplitMix64 (Steele, Lea and Flood, 2014), so a value costs a few multiplications and nothing
//! depends on what was generated before.

/// The golden-ratio increment of SplitMix64.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
/// A second odd constant, so row and field streams do not collide.
const FIELD: u64 = 0xd1b5_4a32_d192_ed03;

/// SplitMix64's output function: a bijective 64-bit mix.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The draws of one field of one row.
#[derive(Debug, Clone)]
pub struct Draws {
    state: u64,
}

impl Draws {
    /// The stream for `field` of row `index` under `seed`.
    pub fn new(seed: u64, index: u64, field: u64) -> Self {
        let state = mix64(seed ^ mix64(index.wrapping_mul(GOLDEN) ^ field.wrapping_mul(FIELD)));
        Self { state }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform in `[0, n)` (Lemire's multiply-high; the bias is below 2^-40 for n < 2^24).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Appends `len` random lowercase letters to `out`, 8 per 64-bit draw: each byte `b` maps to
    /// letter `⌊26·b / 256⌋`, so a letter comes up 9 or 10 times in 256 (padding text, where
    /// that unevenness is harmless and a division per letter is not).
    pub fn letters(&mut self, len: usize, out: &mut String) {
        let mut left = len;
        while left > 0 {
            let take = left.min(8);
            let chunk = self
                .next_u64()
                .to_le_bytes()
                .map(|b| b'a' + ((u32::from(b) * 26) >> 8) as u8);
            if let Ok(text) = std::str::from_utf8(&chunk[..take]) {
                out.push_str(text);
            }
            left -= take;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_pure_functions_of_their_coordinates() {
        let a: Vec<u64> = (0..4).map(|_| Draws::new(7, 1000, 2).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Draws::new(7, 1000, 2).next_u64(),
            Draws::new(7, 1001, 2).next_u64()
        );
        assert_ne!(
            Draws::new(7, 1000, 2).next_u64(),
            Draws::new(7, 1000, 3).next_u64()
        );
        assert_ne!(
            Draws::new(7, 1000, 2).next_u64(),
            Draws::new(8, 1000, 2).next_u64()
        );
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut counts = [0u32; 10];
        for i in 0..100_000 {
            counts[Draws::new(1, i, 0).below(10) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn letters_have_the_requested_length() {
        let mut s = String::new();
        Draws::new(1, 2, 3).letters(30, &mut s);
        assert_eq!(s.len(), 30);
        assert!(s.bytes().all(|b| b.is_ascii_lowercase()));
    }
}
