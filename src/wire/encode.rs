//! Query results to PostgreSQL messages: Arrow batches become DataRows through arrow-pg (text or
//! binary per column, as the client asked), command results become tags.

use std::sync::Arc;

use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use weir_sql::QueryResult;

/// Column descriptions of `schema` in `format`.
pub fn fields(schema: &datafusion::arrow::datatypes::Schema, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    arrow_pg::datatypes::arrow_schema_to_pg_fields(schema, format, None)
}

/// A statement's result as a pgwire response.
///
/// The query runs up to its first batch here, inside the part of the protocol exchange that a
/// cancel request interrupts (pgwire races `do_query` against it); for aggregates that is nearly
/// all of the work. Dropping the stream stops DataFusion's execution.
pub async fn response(result: QueryResult, format: &Format) -> PgWireResult<Response> {
    match result {
        QueryResult::Rows { schema, mut stream } => {
            let first = stream.next().await;
            let stream = futures::stream::iter(first).chain(stream);
            let fields = Arc::new(fields(&schema, format)?);
            let row_fields = Arc::clone(&fields);
            let rows = stream
                .map(move |batch| {
                    let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send> = match batch {
                        Ok(batch) => arrow_pg::datatypes::encode_recordbatch(Arc::clone(&row_fields), batch),
                        Err(e) => Box::new(std::iter::once(Err(PgWireError::UserError(Box::new(
                            ErrorInfo::new("ERROR".into(), "XX000".into(), e.to_string()),
                        ))))),
                    };
                    futures::stream::iter(rows)
                })
                .flatten();
            Ok(Response::Query(QueryResponse::new(fields, rows)))
        }
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
