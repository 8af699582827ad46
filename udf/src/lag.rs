//! `lag(x [, offset [, default]])` and `lead(x [, offset [, default]])` for streaming OVER
//! windows: the value `offset` rows back (or ahead) in the key's event-time order.
//!
//! ```sql
//! CREATE MATERIALIZED VIEW deltas AS
//! SELECT sensor_id, ts, temperature - lag(temperature) OVER (PARTITION BY sensor_id ORDER BY ts) AS change
//! FROM readings;
//! ```
//!
//! Per key the state is the last `offset` values, as an Arrow array of the input's type (any
//! type); a batch of the key's rows is answered with one concatenation and one slice. The state
//! is saved as Arrow IPC.
//!
//! `lead` keeps no state: it reads ahead ([`KeyedWindowFunction::lookahead`]), so the streaming
//! operator holds each key's last `offset` rows back (they wait with the rows not yet released,
//! and are checkpointed with them) until that many later rows of the key arrive, the stream
//! ends, or the key has been idle for the view's `state_ttl`; then the default fills in. The
//! view's output watermark waits for the held rows, so what is downstream never sees them late.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::compute::{cast, concat};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::{Result, ScalarValue, exec_datafusion_err};

use crate::keyed::{KeyedWindowFunction, WindowState};

/// One `lag` call.
#[derive(Debug)]
pub struct LagFunction {
    offset: usize,
    default: ScalarValue,
}

impl LagFunction {
    /// `lag(x, offset, default)`.
    pub fn new(offset: usize, default: ScalarValue) -> Self {
        Self { offset, default }
    }
}

impl KeyedWindowFunction for LagFunction {
    fn name(&self) -> &str {
        "lag"
    }

    fn new_state(&self) -> Box<dyn WindowState> {
        Box::new(LagState {
            offset: self.offset,
            default: self.default.clone(),
            held: None,
        })
    }

    fn load_state(&self, bytes: &[u8]) -> Result<Box<dyn WindowState>> {
        if bytes.is_empty() {
            return Ok(self.new_state());
        }
        let mut reader = StreamReader::try_new(bytes, None)?;
        let held = match reader.next() {
            Some(batch) => Some(Arc::clone(batch?.column(0))),
            None => None,
        };
        Ok(Box::new(LagState {
            offset: self.offset,
            default: self.default.clone(),
            held,
        }))
    }
}

#[derive(Debug)]
struct LagState {
    offset: usize,
    default: ScalarValue,
    /// The key's last values (at most `offset`), oldest first.
    held: Option<ArrayRef>,
}

impl WindowState for LagState {
    fn evaluate(&mut self, args: &[ArrayRef]) -> Result<ArrayRef> {
        let input = args
            .first()
            .ok_or_else(|| exec_datafusion_err!("lag: missing input column"))?;
        if self.offset == 0 {
            return Ok(Arc::clone(input));
        }
        let held_len = self.held.as_ref().map_or(0, |h| h.len());
        // Rows before the key's first have no value `offset` back: the default fills them.
        let missing = self.offset.saturating_sub(held_len);
        let mut parts: Vec<ArrayRef> = Vec::with_capacity(3);
        if missing > 0 {
            parts.push(defaults(&self.default, input.data_type(), missing)?);
        }
        if let Some(held) = &self.held {
            parts.push(Arc::clone(held));
        }
        parts.push(Arc::clone(input));
        let refs: Vec<&dyn Array> = parts.iter().map(|p| p.as_ref()).collect();
        let all = concat(&refs)?;
        let out = all.slice(0, input.len());
        let keep = self.offset.min(held_len + input.len());
        // Copied out, so the state does not pin the whole concatenation.
        let tail = all.slice(all.len() - keep, keep);
        self.held = Some(concat(&[tail.as_ref()])?);
        Ok(out)
    }

    fn save(&self) -> Result<Vec<u8>> {
        let Some(held) = &self.held else {
            return Ok(Vec::new());
        };
        let schema = Arc::new(Schema::new(vec![Field::new(
            "held",
            held.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::clone(held)])?;
        let mut bytes = Vec::new();
        let mut writer = StreamWriter::try_new(&mut bytes, &schema)?;
        writer.write(&batch)?;
        writer.finish()?;
        drop(writer);
        Ok(bytes)
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.held.as_ref().map_or(0, |h| h.get_array_memory_size())
    }
}

/// `n` copies of `default` as `data_type` (rows before a key's first, or after its last).
fn defaults(default: &ScalarValue, data_type: &DataType, n: usize) -> Result<ArrayRef> {
    if default.is_null() {
        return Ok(new_null_array(data_type, n));
    }
    Ok(cast(&default.to_array_of_size(n)?, data_type)?)
}

/// One `lead` call.
#[derive(Debug)]
pub struct LeadFunction {
    offset: usize,
    default: ScalarValue,
}

impl LeadFunction {
    /// `lead(x, offset, default)`.
    pub fn new(offset: usize, default: ScalarValue) -> Self {
        Self { offset, default }
    }
}

impl KeyedWindowFunction for LeadFunction {
    fn name(&self) -> &str {
        "lead"
    }

    fn new_state(&self) -> Box<dyn WindowState> {
        Box::new(LeadState {
            offset: self.offset,
            default: self.default.clone(),
        })
    }

    fn load_state(&self, _bytes: &[u8]) -> Result<Box<dyn WindowState>> {
        Ok(self.new_state())
    }

    fn lookahead(&self) -> usize {
        self.offset
    }
}

/// Stateless: the operator passes the rows it holds back again with the next ones.
#[derive(Debug)]
struct LeadState {
    offset: usize,
    default: ScalarValue,
}

impl WindowState for LeadState {
    fn evaluate(&mut self, args: &[ArrayRef]) -> Result<ArrayRef> {
        let input = args
            .first()
            .ok_or_else(|| exec_datafusion_err!("lead: missing input column"))?;
        let len = input.len();
        let ahead = self.offset.min(len);
        let fill = defaults(&self.default, input.data_type(), ahead)?;
        let shifted = input.slice(ahead, len - ahead);
        Ok(concat(&[shifted.as_ref(), fill.as_ref()])?)
    }

    fn save(&self) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use datafusion::arrow::array::{AsArray, StringArray};

    use super::*;

    #[test]
    fn lag_reaches_back_across_batches_and_restores_with_defaults_before_the_first_row() {
        let function = LagFunction::new(2, ScalarValue::from("none"));
        let mut state = function.new_state();
        let mut got: Vec<Option<String>> = Vec::new();
        for (i, part) in [
            vec![Some("a")],
            vec![Some("b"), None, Some("d")],
            vec![],
            vec![Some("e"), Some("f")],
        ]
        .into_iter()
        .enumerate()
        {
            let input: ArrayRef = Arc::new(StringArray::from(part));
            let out = state.evaluate(&[input]).unwrap();
            got.extend(out.as_string::<i32>().iter().map(|s| s.map(str::to_string)));
            if i == 1 {
                let bytes = state.save().unwrap();
                state = function.load_state(&bytes).unwrap();
            }
        }
        let want: Vec<Option<String>> = [
            Some("none"),
            Some("none"),
            Some("a"),
            Some("b"),
            None,
            Some("d"),
        ]
        .into_iter()
        .map(|s| s.map(str::to_string))
        .collect();
        assert_eq!(got, want);
        let empty = LagFunction::new(1, ScalarValue::Null);
        let fresh = empty.new_state();
        assert!(empty.load_state(&fresh.save().unwrap()).is_ok());
    }

    #[test]
    fn lead_reads_ahead_and_fills_the_end_with_the_default() {
        let function = LeadFunction::new(2, ScalarValue::Int64(Some(0)));
        assert_eq!(function.lookahead(), 2);
        let input: ArrayRef =
            Arc::new(datafusion::arrow::array::Int64Array::from(vec![1, 2, 3, 4]));
        let out = function.new_state().evaluate(&[input]).unwrap();
        let got: Vec<Option<i64>> = out
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .iter()
            .collect();
        assert_eq!(got, vec![Some(3), Some(4), Some(0), Some(0)]);
        let short: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from(vec![7]));
        let out = LeadFunction::new(3, ScalarValue::Null)
            .new_state()
            .evaluate(&[short])
            .unwrap();
        assert_eq!(out.null_count(), 1);
    }
}
