//! The four ops and the byte-level rules for update pairs.

use datafusion::arrow::array::{Array, BooleanArray};

use crate::error::{EngineError, Result};

/// What happened to one row. The byte values are Flink's `RowKind` values, so "is this a
/// retraction" is `byte & 1`.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A new row.
    Insert = 0,
    /// The old version of an updated row; its `UpdateAfter` follows immediately.
    UpdateBefore = 1,
    /// The new version of an updated row.
    UpdateAfter = 2,
    /// A row that is gone.
    Delete = 3,
}

impl Op {
    /// The op a byte stands for.
    pub fn from_byte(byte: u8) -> Option<Op> {
        match byte {
            0 => Some(Op::Insert),
            1 => Some(Op::UpdateBefore),
            2 => Some(Op::UpdateAfter),
            3 => Some(Op::Delete),
            _ => None,
        }
    }

    /// The row leaves the live set (update-before, delete).
    pub fn is_retraction(self) -> bool {
        self as u8 & 1 == 1
    }

    /// +1 for rows that join the live set, -1 for rows that leave it.
    pub fn sign(self) -> i64 {
        if self.is_retraction() { -1 } else { 1 }
    }

    /// Flink's short notation: `+I`, `-U`, `+U`, `-D`.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Insert => "+I",
            Op::UpdateBefore => "-U",
            Op::UpdateAfter => "+U",
            Op::Delete => "-D",
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.symbol())
    }
}

const BEFORE: u8 = Op::UpdateBefore as u8;
const AFTER: u8 = Op::UpdateAfter as u8;

/// Every byte is an op and every update pair is adjacent: `UpdateBefore` then `UpdateAfter`.
pub(super) fn check_pairs(ops: &[u8]) -> Result<()> {
    let mut i = 0;
    while i < ops.len() {
        match ops[i] {
            BEFORE if ops.get(i + 1) == Some(&AFTER) => i += 2,
            BEFORE => {
                return Err(EngineError::Internal(format!(
                    "changes: update-before at row {i} is not followed by its update-after"
                )));
            }
            AFTER => {
                return Err(EngineError::Internal(format!(
                    "changes: update-after at row {i} without its update-before"
                )));
            }
            byte if byte > 3 => {
                return Err(EngineError::Internal(format!(
                    "changes: {byte} at row {i} is not an op"
                )));
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The ops with every pair that `keep` splits turned into single changes: a kept half-pair
/// `UpdateBefore` becomes `Delete`, a kept `UpdateAfter` becomes `Insert`. Rows not kept are
/// left as they are (the caller filters them out).
pub(super) fn repair_split_pairs(ops: &[u8], keep: &BooleanArray) -> Vec<u8> {
    let kept = |i: usize| keep.is_valid(i) && keep.value(i);
    let mut repaired = ops.to_vec();
    for i in 0..ops.len().saturating_sub(1) {
        if ops[i] == BEFORE && kept(i) != kept(i + 1) {
            repaired[i] = Op::Delete as u8;
            repaired[i + 1] = Op::Insert as u8;
        }
    }
    repaired
}
