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

/// Padding so that `current + padding` is `average` bytes on average (± 20%).
pub(super) fn extra(d: &mut Draws, current: usize, average: usize, out: &mut String) {
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
    d.letters(len, out);
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
