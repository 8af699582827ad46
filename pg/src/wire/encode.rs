//! Query results to PostgreSQL messages: Arrow batches become DataRows through arrow-pg (text or
//! binary per column, as the client asked), command results become tags.
//!
//! Columns without a built-in PostgreSQL type (structs such as anomaly results, maps, nested
//! lists) are sent as JSON text, and NULL-typed columns as text, so a RowDescription only ever
//! carries built-in OIDs: any other OID sends asyncpg, pgjdbc and tokio-postgres into
//! type-introspection queries (clients.md §7.4). `weir_sql::pg::types` describes the same
//! mapping in `pg_attribute` and `information_schema.columns`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, new_null_array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::PgWireResult;
use weir_sql::QueryResult;

use super::time_zone::DisplayZone;

/// Column descriptions of `schema` in `format`.
pub fn fields(schema: &Schema, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    wire_fields(&wire_schema(schema), format)
}

fn wire_fields(wire_schema: &Schema, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    arrow_pg::datatypes::arrow_schema_to_pg_fields(wire_schema, format, None)
}

fn sent_as_text(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Null) || crate::types::sent_as_json(data_type)
}

/// `schema` with the columns sent as text made text.
fn wire_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if sent_as_text(f.data_type()) {
                Field::new(f.name(), DataType::Utf8, true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// `batch` in `wire_schema`'s types: nested columns as JSON text, NULL columns as text NULLs.
fn to_wire(
    batch: RecordBatch,
    wire_schema: &SchemaRef,
) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| sent_as_text(f.data_type()))
    {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .map(|column| match column.data_type() {
            DataType::Null => Ok(new_null_array(&DataType::Utf8, column.len())),
            t if sent_as_text(t) => json_column(column),
            _ => Ok(Arc::clone(column)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(wire_schema), columns)
}

/// Each value of `column` as a JSON document (NULL stays NULL).
fn json_column(column: &ArrayRef) -> Result<ArrayRef, datafusion::arrow::error::ArrowError> {
    let wrapped = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "v",
            column.data_type().clone(),
            true,
        )])),
        vec![Arc::clone(column)],
    )?;
    let mut buffer = Vec::new();
    {
        let mut writer = arrow_json::LineDelimitedWriter::new(&mut buffer);
        writer.write(&wrapped)?;
        writer.finish()?;
    }
    let text = String::from_utf8_lossy(&buffer);
    let values: Vec<Option<String>> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if column.is_null(i) {
                return None;
            }
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("v").map(|v| v.to_string()))
        })
        .collect();
    Ok(Arc::new(StringArray::from(values)))
}

/// A statement's result as a pgwire response.
///
/// The query runs up to its first batch here, inside the part of the protocol exchange that a
/// cancel request interrupts (pgwire races `do_query` against it); for aggregates that is nearly
/// all of the work. Dropping the stream stops DataFusion's execution.
///
/// `time_zone` is the session's `TimeZone` when it is not UTC: text `timestamptz` values are
/// shown in it.
pub async fn response(
    result: QueryResult,
    format: &Format,
    time_zone: Option<&str>,
) -> PgWireResult<Response> {
    match result {
        QueryResult::Rows { schema, mut stream } => {
            let first = stream.next().await;
            let stream = futures::stream::iter(first).chain(stream);
            rows_response(schema, stream, format, time_zone)
        }
        QueryResult::CopyIn { columns } => Ok(Response::CopyIn(CopyResponse::new(
            0,
            columns,
            futures::stream::empty(),
        ))),
        QueryResult::Command { tag, rows } => {
            let t = match rows {
                Some(n) => Tag::new(&tag).with_rows(n),
                None => Tag::new(&tag),
            };
            Ok(match tag.as_str() {
                "BEGIN" => Response::TransactionStart(t),
                "COMMIT" | "ROLLBACK" => Response::TransactionEnd(t),
                _ => Response::Execution(t),
            })
        }
    }
}

/// Rows of `schema` as a pgwire response, encoded as they are polled.
pub fn rows_response<S>(
    schema: SchemaRef,
    stream: S,
    format: &Format,
    time_zone: Option<&str>,
) -> PgWireResult<Response>
where
    S: futures::Stream<Item = datafusion::error::Result<RecordBatch>> + Send + 'static,
{
    let wire_schema = wire_schema(&schema);
    let fields = Arc::new(wire_fields(&wire_schema, format)?);
    let zone = DisplayZone::new(time_zone, &wire_schema, &fields);
    let row_fields = Arc::clone(&fields);
    let rows = stream
        .map(move |batch| {
            let batch = batch.and_then(|b| {
                let b = to_wire(b, &wire_schema)?;
                Ok(match &zone {
                    Some(zone) => zone.apply(b)?,
                    None => b,
                })
            });
            let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send> = match batch {
                Ok(batch) => {
                    arrow_pg::datatypes::encode_recordbatch(Arc::clone(&row_fields), batch)
                }
                // Errors while running keep their kind (a function's 42704, a 22012 …).
                Err(e) => Box::new(std::iter::once(Err(super::errors::to_pgwire(
                    &weir_sql::SqlError::from(e),
                )))),
            };
            futures::stream::iter(rows)
        })
        .flatten();
    Ok(Response::Query(QueryResponse::new(fields, rows)))
}
