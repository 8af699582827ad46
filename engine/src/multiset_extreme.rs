//! `min` / `max` that can take values back in any order: the group keeps every live value with
//! its count (in Arrow's row format, which orders like the values do), and the extreme is the
//! first or last key. State is O(distinct values per group) — the price every streaming system
//! pays for retractable extremes over updating input; over append-only input Weir keeps using
//! DataFusion's one-value accumulators.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Accumulator;

/// Which end of the values an aggregate reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extreme {
    /// `min`
    Min,
    /// `max`
    Max,
}

/// A retractable `min` or `max`; see the module docs.
pub struct MultisetExtreme {
    extreme: Extreme,
    data_type: DataType,
    converter: Arc<RowConverter>,
    values: BTreeMap<OwnedRow, u64>,
}

impl std::fmt::Debug for MultisetExtreme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultisetExtreme")
            .field("extreme", &self.extreme)
            .field("distinct_values", &self.values.len())
            .finish()
    }
}

impl MultisetExtreme {
    /// The extreme of values of `data_type`.
    pub fn try_new(extreme: Extreme, data_type: &DataType) -> Result<Self> {
        let converter = RowConverter::new(vec![SortField::new(data_type.clone())])?;
        Ok(Self {
            extreme,
            data_type: data_type.clone(),
            converter: Arc::new(converter),
            values: BTreeMap::new(),
        })
    }

    /// Adds (or, when not `add`, removes) `counts` copies (1 without counts) of each non-null
    /// value of `values`.
    fn apply(&mut self, values: &ArrayRef, counts: Option<&UInt64Array>, add: bool) -> Result<()> {
        let rows = self
            .converter
            .convert_columns(std::slice::from_ref(values))?;
        for i in 0..values.len() {
            if values.is_null(i) {
                continue;
            }
            let n = counts.map_or(1, |c| c.value(i));
            let key = rows.row(i).owned();
            if add {
                *self.values.entry(key).or_insert(0) += n;
                continue;
            }
            match self.values.get_mut(&key) {
                Some(count) if *count > n => *count -= n,
                Some(count) if *count == n => {
                    self.values.remove(&key);
                }
                _ => {
                    return Err(DataFusionError::Internal(
                        "retracting a value the group does not hold".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The live values and their counts, as two arrays.
    fn contents(&self) -> Result<(ArrayRef, UInt64Array)> {
        let mut columns = self
            .converter
            .convert_rows(self.values.keys().map(|k| k.row()))?;
        let values = columns
            .pop()
            .ok_or_else(|| DataFusionError::Internal("row conversion returned no column".into()))?;
        Ok((values, self.values.values().copied().collect()))
    }
}

impl Accumulator for MultisetExtreme {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.apply(&values[0], None, true)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.apply(&values[0], None, false)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let key = match self.extreme {
            Extreme::Min => self.values.keys().next(),
            Extreme::Max => self.values.keys().next_back(),
        };
        let Some(key) = key else {
            return ScalarValue::try_from(&self.data_type);
        };
        let columns = self.converter.convert_rows([key.row()])?;
        ScalarValue::try_from_array(&columns[0], 0)
    }

    /// Two lists: the distinct live values and their counts.
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (values, counts) = self.contents()?;
        let counts: ArrayRef = Arc::new(counts);
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_from_iter(
                (0..values.len())
                    .map(|i| ScalarValue::try_from_array(&values, i))
                    .collect::<Result<Vec<_>>>()?
                    .into_iter(),
                &self.data_type,
                true,
            )),
            ScalarValue::List(ScalarValue::new_list_from_iter(
                (0..counts.len())
                    .map(|i| ScalarValue::try_from_array(&counts, i))
                    .collect::<Result<Vec<_>>>()?
                    .into_iter(),
                &DataType::UInt64,
                true,
            )),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (Some(values), Some(counts)) = (
            states[0].as_list_opt::<i32>(),
            states[1].as_list_opt::<i32>(),
        ) else {
            return Err(DataFusionError::Internal(
                "min/max state is not two lists".into(),
            ));
        };
        for i in 0..values.len() {
            if values.is_null(i) {
                continue;
            }
            let v = values.value(i);
            let c = counts.value(i);
            let c = c.as_primitive_opt::<UInt64Type>().ok_or_else(|| {
                DataFusionError::Internal("min/max state counts are not UInt64".into())
            })?;
            self.apply(&v, Some(c), true)?;
        }
        Ok(())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .values
                .keys()
                .map(|k| k.as_ref().len() + std::mem::size_of::<(OwnedRow, u64)>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;

    use super::*;

    fn values(v: &[i64]) -> ArrayRef {
        Arc::new(Int64Array::from(v.to_vec()))
    }

    #[test]
    fn extremes_follow_retractions_in_any_order() -> Result<()> {
        let mut max = MultisetExtreme::try_new(Extreme::Max, &DataType::Int64)?;
        let mut min = MultisetExtreme::try_new(Extreme::Min, &DataType::Int64)?;
        for acc in [&mut max, &mut min] {
            acc.update_batch(&[values(&[5, 9, 1, 9])])?;
        }
        assert_eq!(max.evaluate()?, ScalarValue::Int64(Some(9)));
        max.retract_batch(&[values(&[9])])?;
        assert_eq!(max.evaluate()?, ScalarValue::Int64(Some(9)));
        max.retract_batch(&[values(&[9])])?;
        assert_eq!(max.evaluate()?, ScalarValue::Int64(Some(5)));
        min.retract_batch(&[values(&[1])])?;
        assert_eq!(min.evaluate()?, ScalarValue::Int64(Some(5)));
        assert!(min.retract_batch(&[values(&[42])]).is_err());
        // State round trip.
        let state = max.state()?;
        let arrays: Vec<ArrayRef> = state.iter().map(|s| s.to_array()).collect::<Result<_>>()?;
        let mut copy = MultisetExtreme::try_new(Extreme::Max, &DataType::Int64)?;
        copy.merge_batch(&arrays)?;
        assert_eq!(copy.evaluate()?, ScalarValue::Int64(Some(5)));
        copy.retract_batch(&[values(&[5, 1])])?;
        assert_eq!(copy.evaluate()?, ScalarValue::Int64(None));
        Ok(())
    }
}
