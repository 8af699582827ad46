//! Column builders and random text of the Nexmark generator ([`super::nexmark`]): the
//! reference generator's word, name, e-mail, credit-card and padding rules.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringBuilder, TimestampMillisecondArray};

use super::random::Draws;

pub(super) const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
pub(super) const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
pub(super) const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
pub(super) const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

pub(super) fn long(ids: &[u64], value: impl Fn(u64) -> i64) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(
        ids.iter().map(|&id| value(id)),
    ))
}

pub(super) fn millis(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(values).with_timezone("+00:00"))
}

/// A string column, each value written by `write` into a reused buffer.
pub(super) fn strings(ids: &[u64], write: impl Fn(u64, &mut String)) -> ArrayRef {
    let mut builder = StringBuilder::with_capacity(ids.len(), ids.len() * 16);
    let mut value = String::new();
    for &id in ids {
        value.clear();
        write(id, &mut value);
        builder.append_value(&value);
    }
    Arc::new(builder.finish())
}

/// `round(10^(6u) · 100)`: prices from 100 to 100,000,000, log-uniform.
pub(super) fn price(d: &mut Draws) -> i64 {
    (10f64.powf(d.unit() * 6.0) * 100.0).round() as i64
}

/// Random words of 3 to `max_len - 1` characters with about one space in 13, trimmed.
pub(super) fn words(d: &mut Draws, max_len: u64, out: &mut String) {
    let len = 3 + d.below(max_len - 3);
    let start = out.len();
    for _ in 0..len {
        if d.below(13) == 0 {
            out.push(' ');
        } else {
            out.push(char::from(b'a' + d.below(26) as u8));
        }
    }
    let trimmed = out[start..].trim().to_string();
    out.truncate(start);
    out.push_str(&trimmed);
}

/// Bytes of the letter pool padding is cut from.
const POOL_BYTES: usize = 1 << 16;

/// Random lowercase letters made once per generator; padding is a slice of them at a random
/// place (one draw and a copy per value instead of a draw per 8 letters: padding is most of a
/// Nexmark event's bytes, and making it was the generator's largest cost).
#[derive(Debug)]
pub(super) struct LetterPool {
    text: String,
}

impl LetterPool {
    pub(super) fn new(seed: u64) -> Self {
        let mut text = String::with_capacity(POOL_BYTES);
        Draws::new(seed, u64::MAX, 0x9001).letters(POOL_BYTES, &mut text);
        Self { text }
    }

    /// Appends `len` letters from a random place in the pool.
    fn take(&self, d: &mut Draws, len: usize, out: &mut String) {
        let mut left = len;
        while left > 0 {
            let take = left.min(POOL_BYTES / 2);
            let start = d.below((POOL_BYTES - take + 1) as u64) as usize;
            // The pool is ASCII: every index is a character boundary.
            out.push_str(self.text.get(start..start + take).unwrap_or_default());
            left -= take;
        }
    }
}

/// Padding so that `current + padding` is `average` bytes on average (± 20%).
pub(super) fn extra(
    d: &mut Draws,
    pool: &LetterPool,
    current: usize,
    average: usize,
    out: &mut String,
) {
    let Some(wanted) = average.checked_sub(current) else {
        return;
    };
    let delta = (wanted as f64 * 0.2).round() as usize;
    let len = wanted - delta
        + if delta == 0 {
            0
        } else {
            d.below(2 * delta as u64) as usize
        };
    pool.take(d, len, out);
}

pub(super) fn person_name(d: &mut Draws, out: &mut String) {
    out.push_str(FIRST_NAMES[d.below(FIRST_NAMES.len() as u64) as usize]);
    out.push(' ');
    out.push_str(LAST_NAMES[d.below(LAST_NAMES.len() as u64) as usize]);
}

pub(super) fn email(d: &mut Draws, out: &mut String) {
    words(d, 7, out);
    out.push('@');
    words(d, 5, out);
    out.push_str(".com");
}

pub(super) fn credit_card(d: &mut Draws, out: &mut String) {
    for group in 0..4 {
        if group > 0 {
            out.push(' ');
        }
        out.push_str(&format!("{:04}", d.below(10_000)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_from_the_pool_has_the_length_asked_and_varies() {
        let pool = LetterPool::new(7);
        let mut a = String::new();
        pool.take(&mut Draws::new(7, 1, 4), 100_000, &mut a);
        assert_eq!(a.len(), 100_000);
        assert!(a.bytes().all(|b| b.is_ascii_lowercase()));
        let (mut b, mut c) = (String::new(), String::new());
        pool.take(&mut Draws::new(7, 2, 4), 90, &mut b);
        pool.take(&mut Draws::new(7, 3, 4), 90, &mut c);
        assert_ne!(b, c);
        // A pure function of its draws.
        let mut again = String::new();
        pool.take(&mut Draws::new(7, 2, 4), 90, &mut again);
        assert_eq!(b, again);
    }
}
