//! `EXPLAIN ANALYZE MATERIALIZED VIEW v`: the running view's operators, one row per operator (and
//! per shard of a sharded stage), with the figures the pipeline keeps as it runs: rows and
//! batches in and out, time spent in the operator, state size, the watermark it last forwarded.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::QueryResult;
use crate::database::{Session, rows};
use crate::error::{Result, SqlError, SqlErrorKind};

/// The columns `EXPLAIN ANALYZE MATERIALIZED VIEW` returns.
fn explain_analyze_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("stage", DataType::Int64, false),
        Field::new("operator", DataType::Utf8, false),
        Field::new("shard", DataType::Utf8, true),
        Field::new("rows_in", DataType::Int64, false),
        Field::new("rows_out", DataType::Int64, false),
        Field::new("batches_in", DataType::Int64, false),
        Field::new("batches_out", DataType::Int64, false),
        Field::new("busy_ms", DataType::Float64, false),
        Field::new("state_bytes", DataType::Int64, false),
        Field::new(
            "watermark",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ),
    ]))
}

impl Session {
    /// The columns `EXPLAIN ANALYZE MATERIALIZED VIEW` returns (for Describe).
    pub(crate) fn explain_analyze_columns(&self) -> SchemaRef {
        explain_analyze_schema()
    }

    /// `EXPLAIN ANALYZE MATERIALIZED VIEW name`.
    pub(crate) fn explain_analyze_view(&self, name: &str) -> Result<QueryResult> {
        let view = self.db.catalog().view(name).ok_or_else(|| {
            SqlError::new(
                SqlErrorKind::UndefinedTable,
                format!("materialized view \"{name}\" does not exist"),
            )
        })?;
        let figures = view.status.operators();
        let int = |f: &dyn Fn(&weir_engine::operator_metrics::OperatorFigures) -> u64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                figures
                    .iter()
                    .map(|o| i64::try_from(f(o)).unwrap_or(i64::MAX)),
            ))
        };
        let columns: Vec<ArrayRef> = vec![
            int(&|o| o.stage as u64),
            Arc::new(StringArray::from_iter_values(
                figures.iter().map(|o| o.name.clone()),
            )),
            Arc::new(StringArray::from_iter(
                figures.iter().map(|o| o.shard_label()),
            )),
            int(&|o| o.rows_in),
            int(&|o| o.rows_out),
            int(&|o| o.batches_in),
            int(&|o| o.batches_out),
            Arc::new(Float64Array::from_iter_values(
                figures.iter().map(|o| o.busy_ms()),
            )),
            int(&|o| o.state_bytes),
            Arc::new(
                TimestampMicrosecondArray::from_iter(
                    figures
                        .iter()
                        .map(|o| o.watermark.map(|t| t.div_euclid(1_000))),
                )
                .with_timezone("+00:00"),
            ),
        ];
        rows(RecordBatch::try_new(explain_analyze_schema(), columns)?)
    }
}
