//! `SUBSCRIBE` over the wire. Its rows never end while the view runs, so they are sent from
//! inside the query handler, which pgwire races against cancel requests: a cancel (psql's
//! Ctrl-C, psycopg's `cancel()`) stops the subscription with 57014 as for any long query. Rows are
//! flushed whenever no more are ready, so a client sees each change when the view makes it.
//!
//! `COPY (SUBSCRIBE …) TO STDOUT` sends the same rows as COPY text lines (what psql prints as
//! they arrive, where it would hold a query's rows until the end): each row is encoded as text
//! once, as for a query, and its fields re-framed as a line.

use std::fmt::Debug;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::data::{DataRow, RowDescription};
use weir_sql::parser::WeirStatement;
use weir_sql::{QueryResult, SqlError, SqlErrorKind};

use super::{WeirHandler, encode, errors};

/// Most rows encoded between two flushes, so a burst of changes still reaches the client in
/// pieces.
const ROWS_PER_FLUSH: usize = 1024;

impl WeirHandler {
    /// Runs `SUBSCRIBE`, sending its rows to `client` until the view's input ends or the
    /// client cancels; `describe` for the simple protocol.
    pub(super) async fn subscribe<C>(
        &self,
        client: &mut C,
        statement: &WeirStatement,
        describe: bool,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let result = self.session.execute(statement).await;
        self.stats.statement(result.is_err());
        let QueryResult::Rows { schema, stream } = result.map_err(|e| errors::to_pgwire(&e))?
        else {
            return Err(errors::to_pgwire(&SqlError::new(
                SqlErrorKind::Internal,
                "SUBSCRIBE returned no rows",
            )));
        };
        let time_zone = self.session.info().display_time_zone();
        let copy = matches!(statement, WeirStatement::CopySubscribe(_));
        // COPY lines are text whatever the portal's result format.
        let format = if copy { &Format::UnifiedText } else { format };
        let response = encode::rows_response(schema, stream, format, time_zone.as_deref())?;
        let tag = if copy {
            stream_copy(client, response).await?
        } else {
            stream_rows(client, response, describe).await?
        };
        Ok(Response::Execution(tag))
    }
}

/// Sends a subscription's rows (`response`, from `encode::rows_response`) as they come, after
/// a RowDescription when `describe` (the simple protocol; the extended one described the portal
/// already). Returns the command tag to complete with once the view's input ends.
async fn stream_rows<C>(client: &mut C, response: Response, describe: bool) -> PgWireResult<Tag>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut query = rows_of(response)?;
    if describe {
        let fields = query.row_schema();
        let description = RowDescription::new(fields.iter().map(Into::into).collect());
        client
            .send(PgWireBackendMessage::RowDescription(description))
            .await?;
    }
    let mut rows = query.data_rows().ready_chunks(ROWS_PER_FLUSH);
    let mut sent = 0usize;
    while let Some(chunk) = rows.next().await {
        for row in chunk {
            client.feed(PgWireBackendMessage::DataRow(row?)).await?;
            sent += 1;
        }
        client.flush().await?;
    }
    Ok(Tag::new("SUBSCRIBE").with_rows(sent))
}

/// Sends a subscription's rows (`response`, encoded as text) as `COPY … TO STDOUT` data, one
/// line per row, until the view's input ends. Returns the tag to complete with.
async fn stream_copy<C>(client: &mut C, response: Response) -> PgWireResult<Tag>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut query = rows_of(response)?;
    let columns = query.row_schema().len();
    let start = CopyOutResponse::new(0, columns as i16, vec![0; columns]);
    client
        .send(PgWireBackendMessage::CopyOutResponse(start))
        .await?;
    let mut rows = query.data_rows().ready_chunks(ROWS_PER_FLUSH);
    let mut sent = 0usize;
    while let Some(chunk) = rows.next().await {
        for row in chunk {
            let line = copy_line(&row?)?;
            client
                .feed(PgWireBackendMessage::CopyData(CopyData::new(line)))
                .await?;
            sent += 1;
        }
        client.flush().await?;
    }
    client
        .send(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    Ok(Tag::new("COPY").with_rows(sent))
}

/// The rows of a subscription's response.
fn rows_of(response: Response) -> PgWireResult<pgwire::api::results::QueryResponse> {
    match response {
        Response::Query(query) => Ok(query),
        _ => Err(errors::to_pgwire(&SqlError::new(
            SqlErrorKind::Internal,
            "a subscription did not answer with rows",
        ))),
    }
}

/// A text DataRow as a COPY text line: fields separated by tabs, NULL as `\N`, backslash, tab,
/// newline and carriage return escaped.
fn copy_line(row: &DataRow) -> PgWireResult<Bytes> {
    let malformed = || {
        errors::to_pgwire(&SqlError::new(
            SqlErrorKind::Internal,
            "a row encoded for COPY is malformed",
        ))
    };
    let mut data: &[u8] = &row.data;
    let mut line = BytesMut::with_capacity(data.len() + 1);
    for field in 0..row.field_count {
        if field > 0 {
            line.put_u8(b'\t');
        }
        let (length, rest) = data.split_first_chunk::<4>().ok_or_else(malformed)?;
        let length = i32::from_be_bytes(*length);
        data = rest;
        if length < 0 {
            line.put_slice(b"\\N");
            continue;
        }
        let (value, rest) = data
            .split_at_checked(length as usize)
            .ok_or_else(malformed)?;
        data = rest;
        for &byte in value {
            match byte {
                b'\\' => line.put_slice(b"\\\\"),
                b'\t' => line.put_slice(b"\\t"),
                b'\n' => line.put_slice(b"\\n"),
                b'\r' => line.put_slice(b"\\r"),
                other => line.put_u8(other),
            }
        }
    }
    line.put_u8(b'\n');
    Ok(line.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fields: &[Option<&str>]) -> DataRow {
        let mut data = BytesMut::new();
        for f in fields {
            match f {
                Some(v) => {
                    data.put_i32(v.len() as i32);
                    data.put_slice(v.as_bytes());
                }
                None => data.put_i32(-1),
            }
        }
        DataRow::new(data, fields.len() as i16)
    }

    #[test]
    fn a_row_becomes_one_escaped_copy_line() {
        let line = copy_line(&row(&[Some("insert"), None, Some("a\tb\\c\nd")])).unwrap();
        assert_eq!(&line[..], b"insert\t\\N\ta\\tb\\\\c\\nd\n");
    }

    #[test]
    fn a_truncated_row_is_an_error_not_a_panic() {
        let mut broken = row(&[Some("abc")]);
        broken.data.truncate(5);
        assert!(copy_line(&broken).is_err());
    }
}
