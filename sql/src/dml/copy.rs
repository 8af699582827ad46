//! `COPY t [(columns)] FROM STDIN` (psql's `\copy … from`): rows arrive as CopyData messages in
//! PostgreSQL's text format (tab-separated, `\N` for NULL, backslash escapes) or CSV (`WITH
//! (FORMAT csv [, HEADER] [, DELIMITER …] [, NULL …] [, QUOTE …] [, ESCAPE …])` or the old
//! `CSV HEADER` spelling). Complete lines are decoded into Arrow batches as data arrives (arrow-csv,
//! every column as text, then cast to the table's types), so memory holds Arrow columns, not the
//! raw stream; at CopyDone the rows are written as one `INSERT` statement: atomic, key-checked,
//! one log entry.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringArray, new_null_array,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::compute::kernels::cast::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::SessionState;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use weir_engine::table::TableWriter;

use super::DmlKind;
use crate::database::Session;
use crate::error::{Result, SqlError, SqlErrorKind};
use crate::parser::{normalize_ident, normalize_name};

/// Raw bytes buffered before complete lines are decoded.
const DECODE_AFTER_BYTES: usize = 4 << 20;

/// A `COPY … FROM STDIN` in progress.
#[derive(Debug)]
pub struct CopyIn {
    table: Arc<TableWriter>,
    /// Table columns the lines fill, in line order.
    columns: Vec<usize>,
    format: Format,
    /// The first line is a header still to skip.
    skip_header: bool,
    buffer: Vec<u8>,
    /// Decoded rows, in the table's schema.
    batches: Vec<RecordBatch>,
}

#[derive(Debug, Clone)]
struct Format {
    csv: bool,
    delimiter: u8,
    quote: u8,
    escape: Option<u8>,
    null: String,
}

impl CopyIn {
    /// Columns the client sends per line.
    pub fn column_count(&self) -> usize {
        self.columns.len()
    }

    /// Takes a CopyData message; decodes the complete lines once enough has arrived.
    pub fn push(&mut self, data: &[u8]) -> Result<()> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= DECODE_AFTER_BYTES
            && let Some(end) = self.last_line_end()
        {
            let rest = self.buffer.split_off(end + 1);
            let lines = std::mem::replace(&mut self.buffer, rest);
            self.decode(&lines)?;
        }
        Ok(())
    }

    /// All rows, decoded.
    fn finish(mut self) -> Result<(Arc<TableWriter>, RecordBatch)> {
        let mut rest = std::mem::take(&mut self.buffer);
        // The old end-of-data marker, which clients may still send.
        if !self.format.csv {
            let trimmed = rest.strip_suffix(b"\n").unwrap_or(&rest);
            if trimmed == b"\\." || trimmed.ends_with(b"\n\\.") {
                let cut = trimmed.len() - 2;
                rest.truncate(cut);
            }
        }
        if !rest.is_empty() {
            self.decode(&rest)?;
        }
        let schema = self.table.table().schema_ref();
        let rows = concat_batches(&schema, self.batches.iter())?;
        Ok((self.table, rows))
    }

    /// End of the last complete line that is not inside a quoted CSV field.
    fn last_line_end(&self) -> Option<usize> {
        if !self.format.csv {
            return self.buffer.iter().rposition(|b| *b == b'\n');
        }
        let mut quoted = false;
        let mut last = None;
        for (i, b) in self.buffer.iter().enumerate() {
            if *b == self.format.quote {
                quoted = !quoted;
            } else if *b == b'\n' && !quoted {
                last = Some(i);
            }
        }
        last
    }

    fn decode(&mut self, lines: &[u8]) -> Result<()> {
        let table_schema = self.table.table().schema_ref();
        let text_schema: SchemaRef = Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|&c| Field::new(table_schema.field(c).name(), DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let null = regex::Regex::new(&format!("^{}$", regex::escape(&self.format.null)))
            .map_err(|e| SqlError::new(SqlErrorKind::InvalidParameter, e.to_string()))?;
        let mut builder = arrow_csv::ReaderBuilder::new(Arc::clone(&text_schema))
            .with_delimiter(self.format.delimiter)
            .with_header(std::mem::take(&mut self.skip_header))
            .with_null_regex(null)
            .with_batch_size(8192);
        builder = if self.format.csv {
            let b = builder.with_quote(self.format.quote);
            match self.format.escape {
                Some(e) => b.with_escape(e),
                None => b,
            }
        } else {
            // Text format has no quoting: a quote character is data.
            builder.with_quote(0)
        };
        let reader = builder
            .build(std::io::Cursor::new(lines))
            .map_err(|e| copy_error(&e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| copy_error(&e.to_string()))?;
            self.batches.push(self.typed(&batch)?);
        }
        Ok(())
    }

    /// Text columns cast to the table's types, in the table's column order (columns not sent
    /// are NULL).
    fn typed(&self, text: &RecordBatch) -> Result<RecordBatch> {
        let schema = self.table.table().schema_ref();
        let mut columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), text.num_rows()))
            .collect();
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        for (i, &target) in self.columns.iter().enumerate() {
            let mut column = Arc::clone(text.column(i));
            if !self.format.csv {
                column = unescape_text(column.as_string::<i32>());
            }
            let field = schema.field(target);
            columns[target] = cast_with_options(&column, field.data_type(), &options)
                .map_err(|e| copy_error(&format!("column \"{}\": {e}", field.name())))?;
        }
        for (field, column) in schema.fields().iter().zip(&columns) {
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(SqlError::new(
                    SqlErrorKind::NotNullViolation,
                    format!(
                        "null value in column \"{}\" of relation \"{}\" violates not-null \
                         constraint",
                        field.name(),
                        self.table.name()
                    ),
                ));
            }
        }
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

/// PostgreSQL text-format escapes (`\t`, `\n`, `\\`, …); values without a backslash are kept as
/// they are.
fn unescape_text(column: &StringArray) -> ArrayRef {
    if !column.iter().flatten().any(|v| v.contains('\\')) {
        return Arc::new(column.clone());
    }
    let unescaped: StringArray = column
        .iter()
        .map(|v| {
            v.map(|v| {
                let mut out = String::with_capacity(v.len());
                let mut chars = v.chars();
                while let Some(c) = chars.next() {
                    if c != '\\' {
                        out.push(c);
                        continue;
                    }
                    match chars.next() {
                        Some('t') => out.push('\t'),
                        Some('n') => out.push('\n'),
                        Some('r') => out.push('\r'),
                        Some('b') => out.push('\u{8}'),
                        Some('f') => out.push('\u{c}'),
                        Some('v') => out.push('\u{b}'),
                        Some(other) => out.push(other),
                        None => out.push('\\'),
                    }
                }
                out
            })
        })
        .collect();
    Arc::new(unescaped)
}

fn copy_error(message: &str) -> SqlError {
    SqlError::new(
        SqlErrorKind::User,
        format!("COPY: invalid input: {message}"),
    )
}

impl Session {
    /// Starts `COPY … FROM STDIN`: checks the statement and returns the copy to feed.
    pub fn start_copy(&self, statement: &Statement) -> Result<CopyIn> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            values,
        } = statement
        else {
            return Err(SqlError::new(
                SqlErrorKind::Internal,
                "not a COPY statement",
            ));
        };
        let unsupported = |what: &str| Err(SqlError::new(SqlErrorKind::FeatureNotSupported, what));
        if *to {
            return unsupported(
                "COPY … TO is not supported: query the table or view (psql's \\copy (SELECT …) \
                 TO works through a query)",
            );
        }
        if !matches!(target, CopyTarget::Stdin) {
            return unsupported(
                "COPY FROM a server-side file or program is not supported: use COPY … FROM \
                 STDIN (psql's \\copy)",
            );
        }
        if !values.is_empty() {
            return unsupported("inline COPY data is not supported");
        }
        let CopySource::Table {
            table_name,
            columns,
        } = source
        else {
            return unsupported("COPY (query) FROM is not valid");
        };
        let name = normalize_name(table_name)?;
        let table = self.writable_table(&name)?;
        let schema = table.table().schema_ref();
        let columns = if columns.is_empty() {
            (0..schema.fields().len()).collect()
        } else {
            columns
                .iter()
                .map(|c| {
                    let c = normalize_ident(c);
                    schema.index_of(&c).map_err(|_| {
                        SqlError::new(
                            SqlErrorKind::UndefinedColumn,
                            format!("column \"{c}\" of relation \"{name}\" does not exist"),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        let (format, skip_header) = copy_format(options, legacy_options)?;
        Ok(CopyIn {
            table,
            columns,
            format,
            skip_header,
            buffer: Vec::new(),
            batches: Vec::new(),
        })
    }

    /// Ends a copy: its rows are written as one `INSERT`. Returns the row count.
    pub async fn finish_copy(&self, state: &SessionState, copy: CopyIn) -> Result<usize> {
        let (table, rows) = copy.finish()?;
        self.write_rows(state, &table, &DmlKind::Insert(None), rows)
            .await
    }
}

/// The format and whether to skip a header line, from either option spelling.
fn copy_format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<(Format, bool)> {
    let mut csv = false;
    let mut header = false;
    let mut delimiter = None;
    let mut null = None;
    let mut quote = b'"';
    let mut escape = None;
    let byte = |c: &char, what: &str| -> Result<u8> {
        u8::try_from(u32::from(*c)).map_err(|_| {
            SqlError::new(
                SqlErrorKind::FeatureNotSupported,
                format!("COPY {what} must be a single one-byte character"),
            )
        })
    };
    for o in options {
        match o {
            CopyOption::Format(f) => match f.value.to_ascii_lowercase().as_str() {
                "csv" => csv = true,
                "text" => csv = false,
                other => {
                    return Err(SqlError::new(
                        SqlErrorKind::FeatureNotSupported,
                        format!("COPY format \"{other}\" is not supported (text or csv)"),
                    ));
                }
            },
            CopyOption::Header(h) => header = *h,
            CopyOption::Delimiter(d) => delimiter = Some(byte(d, "delimiter")?),
            CopyOption::Null(n) => null = Some(n.clone()),
            CopyOption::Quote(q) => quote = byte(q, "quote")?,
            CopyOption::Escape(e) => escape = Some(byte(e, "escape")?),
            CopyOption::Encoding(e)
                if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            CopyOption::Freeze(_) | CopyOption::ForceNotNull(_) | CopyOption::ForceNull(_) => {}
            other => {
                return Err(SqlError::new(
                    SqlErrorKind::FeatureNotSupported,
                    format!("COPY option {other} is not supported"),
                ));
            }
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Csv(csv_options) => {
                csv = true;
                for c in csv_options {
                    match c {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(q) => quote = byte(q, "quote")?,
                        CopyLegacyCsvOption::Escape(e) => escape = Some(byte(e, "escape")?),
                        CopyLegacyCsvOption::ForceNotNull(_)
                        | CopyLegacyCsvOption::ForceQuote(_) => {}
                    }
                }
            }
            CopyLegacyOption::Header => header = true,
            CopyLegacyOption::Delimiter(d) => delimiter = Some(byte(d, "delimiter")?),
            CopyLegacyOption::Null(n) => null = Some(n.clone()),
            CopyLegacyOption::Binary => {
                return Err(SqlError::new(
                    SqlErrorKind::FeatureNotSupported,
                    "COPY BINARY is not supported (text or csv)",
                ));
            }
            other => {
                return Err(SqlError::new(
                    SqlErrorKind::FeatureNotSupported,
                    format!("COPY option {other} is not supported"),
                ));
            }
        }
    }
    if header && !csv {
        return Err(SqlError::new(
            SqlErrorKind::FeatureNotSupported,
            "COPY HEADER available only in CSV mode",
        ));
    }
    let format = Format {
        csv,
        delimiter: delimiter.unwrap_or(if csv { b',' } else { b'\t' }),
        quote,
        escape: escape.filter(|e| *e != quote),
        null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
    };
    Ok((format, header))
}
