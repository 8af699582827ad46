//! A referee for change streams: replays [`Changes`] into the live set they describe and fails
//! on the first broken invariant. Tests run every operator's output through it; the oracle tests
//! compare its live set with a batch query.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};

use super::{Changes, Op};
use crate::error::{EngineError, Result};

/// Replays a change stream and checks it:
/// - update pairs are adjacent and, on a keyed stream, keep their key;
/// - a retraction removes a row that is live, with the full old row;
/// - on a keyed stream, an insert never hits a live key.
pub struct ChangelogChecker {
    schema: SchemaRef,
    rows: RowConverter,
    key: Option<(Vec<usize>, RowConverter)>,
    /// Identity (the key's row, or the whole row when unkeyed) → the live row and how many
    /// copies of it are live (always 1 on a keyed stream).
    live: HashMap<OwnedRow, (OwnedRow, usize)>,
    changes_seen: usize,
}

impl ChangelogChecker {
    /// A checker for a stream of `schema` whose live rows are unique on the columns `key`
    /// (`None`: a multiset of whole rows).
    pub fn new(schema: SchemaRef, key: Option<Vec<usize>>) -> Result<Self> {
        let sort_fields = |columns: &mut dyn Iterator<Item = usize>| -> Result<RowConverter> {
            let fields = columns
                .map(|i| SortField::new(schema.field(i).data_type().clone()))
                .collect();
            Ok(RowConverter::new(fields)?)
        };
        let rows = sort_fields(&mut (0..schema.fields().len()))?;
        let key = match key {
            Some(columns) => {
                if let Some(bad) = columns.iter().find(|c| **c >= schema.fields().len()) {
                    return Err(EngineError::Internal(format!(
                        "checker key column {bad} is outside the schema"
                    )));
                }
                // The empty key (at most one live row): every row has the same, constant key.
                let converter = if columns.is_empty() {
                    RowConverter::new(vec![SortField::new(
                        datafusion::arrow::datatypes::DataType::Boolean,
                    )])?
                } else {
                    sort_fields(&mut columns.iter().copied())?
                };
                Some((columns, converter))
            }
            None => None,
        };
        Ok(Self {
            schema,
            rows,
            key,
            live: HashMap::new(),
            changes_seen: 0,
        })
    }

    /// Replay one batch of changes.
    pub fn apply(&mut self, changes: &Changes) -> Result<()> {
        if changes.schema().fields() != self.schema.fields() {
            return Err(self.violation(format!(
                "schema changed from {:?} to {:?}",
                self.schema,
                changes.schema()
            )));
        }
        let rows = self.rows.convert_columns(changes.rows().columns())?;
        let keys = match &self.key {
            Some((columns, converter)) => {
                let key_columns: Vec<datafusion::arrow::array::ArrayRef> = if columns.is_empty() {
                    vec![std::sync::Arc::new(
                        datafusion::arrow::array::BooleanArray::from(vec![
                            true;
                            changes.num_rows()
                        ]),
                    )]
                } else {
                    columns
                        .iter()
                        .map(|c| changes.rows().column(*c).clone())
                        .collect()
                };
                Some(converter.convert_columns(&key_columns)?)
            }
            None => None,
        };
        for i in 0..changes.num_rows() {
            let op = changes.op(i);
            let row = rows.row(i);
            let identity = keys.as_ref().map_or(row, |k| k.row(i));
            if op == Op::UpdateBefore {
                let paired = i + 1 < changes.num_rows()
                    && changes.op(i + 1) == Op::UpdateAfter
                    && keys.as_ref().is_none_or(|k| k.row(i + 1) == identity);
                if !paired {
                    return Err(self.violation(format!(
                        "update-before at row {i} is not followed by an update-after of the same key"
                    )));
                }
            }
            if op.is_retraction() {
                match self.live.get_mut(&identity.owned()) {
                    Some((live_row, count)) if live_row.row() == row => {
                        *count -= 1;
                        if *count == 0 {
                            self.live.remove(&identity.owned());
                        }
                    }
                    Some(_) => {
                        return Err(self.violation(format!(
                            "{op} at row {i} does not carry the live row of its key"
                        )));
                    }
                    None => {
                        return Err(self.violation(format!(
                            "{op} at row {i} retracts a row that is not live"
                        )));
                    }
                }
            } else if self.key.is_some() {
                if self.live.contains_key(&identity.owned()) {
                    return Err(
                        self.violation(format!("{op} at row {i} adds a key that is already live"))
                    );
                }
                self.live.insert(identity.owned(), (row.owned(), 1));
            } else {
                self.live
                    .entry(identity.owned())
                    .or_insert_with(|| (row.owned(), 0))
                    .1 += 1;
            }
        }
        self.changes_seen += 1;
        Ok(())
    }

    /// Number of live rows.
    pub fn live_count(&self) -> usize {
        self.live.values().map(|(_, n)| n).sum()
    }

    /// The live rows, in no particular order.
    pub fn live_rows(&self) -> Result<RecordBatch> {
        let rows = self
            .live
            .values()
            .flat_map(|(row, n)| std::iter::repeat_n(row.row(), *n));
        let columns = self.rows.convert_rows(rows)?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    fn violation(&self, what: String) -> EngineError {
        EngineError::Internal(format!(
            "changelog invariant broken in change batch {}: {what}",
            self.changes_seen + 1
        ))
    }
}
