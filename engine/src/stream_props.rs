//! What a stream promises its readers: whether rows are only ever added, which columns identify
//! a live row, and which column says when a row stops changing. The planner derives these for
//! every stage and picks each operator's implementation from its input's kind; sinks and views
//! reading a view use them to refuse what would be wrong (a PLAIN sink of an updating view).

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;

/// How rows of a stream change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Rows are only inserted (sources, filters of them, windows emitted at close).
    AppendOnly,
    /// Rows are inserted, updated (before/after pairs) and deleted, each retraction carrying
    /// the full old row.
    Retract,
    /// Like `Retract`, but a delete may carry only the key (an upsert table's input).
    Upsert,
}

impl StreamKind {
    /// Lowercase name for EXPLAIN and system tables.
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::AppendOnly => "append-only",
            StreamKind::Retract => "retract",
            StreamKind::Upsert => "upsert",
        }
    }
}

/// A stream's properties, derived by the planner for every stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamProps {
    /// How rows change.
    pub kind: StreamKind,
    /// Columns that are unique among the live rows (a view's key, a sink's key). `Some(vec![])`
    /// means at most one live row (a global aggregate); `None` means no key is known.
    pub key: Option<Vec<usize>>,
    /// A column such that a row whose value is `<= watermark + seal_span` (this stream's own
    /// watermark) never changes again: `window_start` of a windowed aggregate, or its
    /// `window_end` with a span of the window's size.
    pub sealed_by: Option<usize>,
    /// How far past this stream's watermark the sealing column reaches, in nanoseconds. The
    /// stream's watermark already accounts for allowed lateness, so this is a property of the
    /// column (0 for `window_start`, the window size for `window_end`), not a lateness.
    pub seal_span: i64,
    /// A column holding each row's event time, the time the watermark tracks: a source's
    /// WATERMARK column passed through, a window's end. What `retention` ages rows by.
    pub event_time: Option<usize>,
}

impl StreamProps {
    /// An append-only stream without a known key (a source).
    pub fn append_only() -> Self {
        Self {
            kind: StreamKind::AppendOnly,
            key: None,
            sealed_by: None,
            seal_span: 0,
            event_time: None,
        }
    }

    /// True when rows are only ever inserted.
    pub fn is_append_only(&self) -> bool {
        self.kind == StreamKind::AppendOnly
    }

    /// The properties after a projection computing `exprs` from this stream's rows. Key and
    /// sealing columns survive where the projection passes them through unchanged; a key
    /// missing a column is no longer known to be unique.
    pub fn project(&self, exprs: &[Arc<dyn PhysicalExpr>]) -> Self {
        let position = |input: usize| {
            exprs.iter().position(|e| {
                e.as_ref()
                    .downcast_ref::<Column>()
                    .is_some_and(|c| c.index() == input)
            })
        };
        Self {
            kind: self.kind,
            key: self
                .key
                .as_ref()
                .and_then(|key| key.iter().map(|&k| position(k)).collect()),
            sealed_by: self.sealed_by.and_then(position),
            seal_span: self.seal_span,
            event_time: self.event_time.and_then(position),
        }
    }

    /// One line for EXPLAIN: `retract, key (window_start, sensor), sealed by window_start`.
    pub fn describe(&self, schema: &Schema) -> String {
        let name = |i: usize| {
            schema
                .fields()
                .get(i)
                .map_or_else(|| format!("#{i}"), |f| f.name().clone())
        };
        let mut text = self.kind.name().to_string();
        if let Some(key) = self.key_names(schema) {
            text.push_str(&format!(", key ({key})"));
        }
        if let Some(column) = self.sealed_by {
            text.push_str(&format!(", sealed by {}", name(column)));
            if self.seal_span != 0 {
                text.push_str(&format!(
                    " (sealed once {} <= watermark + {})",
                    name(column),
                    crate::window::humanize_nanos(self.seal_span)
                ));
            }
        }
        text
    }

    /// The key's column names joined by ", " (`None` when no key is known; "" for the
    /// single-row key of a global aggregate).
    pub fn key_names(&self, schema: &Schema) -> Option<String> {
        let key = self.key.as_ref()?;
        Some(
            key.iter()
                .map(|&i| {
                    schema
                        .fields()
                        .get(i)
                        .map_or_else(|| format!("#{i}"), |f| f.name().clone())
                })
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}

impl Default for StreamProps {
    fn default() -> Self {
        Self::append_only()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field};

    use super::*;

    fn column(name: &str, index: usize) -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new(name, index))
    }

    #[test]
    fn projection_follows_key_and_sealing_columns() {
        let props = StreamProps {
            kind: StreamKind::Retract,
            key: Some(vec![0, 1]),
            sealed_by: Some(1),
            seal_span: 0,
            event_time: Some(1),
        };
        // SELECT c, b, a: the key moves, the sealing column moves.
        let reordered = props.project(&[column("c", 2), column("b", 1), column("a", 0)]);
        assert_eq!(reordered.key, Some(vec![2, 1]));
        assert_eq!(reordered.sealed_by, Some(1));
        assert_eq!(reordered.event_time, Some(1));
        // SELECT b, c: a key column is gone, so no key is known.
        let dropped = props.project(&[column("b", 1), column("c", 2)]);
        assert_eq!(dropped.key, None);
        assert_eq!(dropped.sealed_by, Some(0));
        assert_eq!(dropped.event_time, Some(0));
        // The empty key of a global aggregate survives any projection.
        let single = StreamProps {
            key: Some(vec![]),
            ..props
        };
        assert_eq!(single.project(&[column("c", 2)]).key, Some(vec![]));
    }

    #[test]
    fn describe_names_columns() {
        let schema = Schema::new(vec![
            Field::new("window_end", DataType::Int64, false),
            Field::new("sensor", DataType::Utf8, false),
        ]);
        let props = StreamProps {
            kind: StreamKind::Retract,
            key: Some(vec![0, 1]),
            sealed_by: Some(0),
            seal_span: 0,
            event_time: Some(0),
        };
        assert_eq!(
            props.describe(&schema),
            "retract, key (window_end, sensor), sealed by window_end"
        );
        assert_eq!(StreamProps::append_only().describe(&schema), "append-only");
    }
}
