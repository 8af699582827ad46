//! `CREATE SINK … WITH (connector = 'postgres', connection = '…', table = '…',
//! primary_key = '…')`: a view's current rows upserted by key into a PostgreSQL table.
//!
//! Changes are buffered and applied in batches, each batch one transaction of one statement per
//! run of changes: `INSERT … SELECT … FROM unnest($1::text[], …) ON CONFLICT (key) DO UPDATE`
//! for upserts, `DELETE … USING unnest(…)` for deletes. Values travel as text arrays and are cast
//! by PostgreSQL to the column types, so a batch costs one round trip whatever its size.
//!
//! Exactly the view's rows across crashes by idempotence: a batch is flushed at every checkpoint
//! barrier (and whenever `batch_rows` are buffered), and after a crash the rows since the last
//! checkpoint are produced again and upserted again, ending in the same table. The table is
//! created (`CREATE TABLE IF NOT EXISTS`, the key as its primary key) when missing. While the
//! server is away the sink retries with backoff and holds its rows.

use std::sync::Arc;

use crate::error::ConnectorError;
use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};
use tracing::warn;
use weir_engine::checkpoint::OperatorState;
use weir_engine::error::{EngineError, ErrorKind, Result};
use weir_engine::sink::{ChangeBatch, ChangeOp, SinkFactory, SinkFormat, SinkSpec, SinkWriter};

use crate::format::json_encode::json_values;

/// The PostgreSQL type a column is stored as.
fn pg_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "numeric".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => format!("numeric({p}, {s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Interval(_) => "interval".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea".into(),
        _ => "jsonb".into(),
    }
}

/// A column's values as PostgreSQL text input (nested values as JSON).
fn texts(column: &ArrayRef) -> Result<Vec<Option<String>>> {
    match column.data_type() {
        DataType::Struct(_) | DataType::List(_) | DataType::LargeList(_) | DataType::Map(..) => {
            json_values(column)
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let hex = cast(column, &DataType::Binary)?;
            let hex = hex.as_binary::<i32>();
            Ok((0..hex.len())
                .map(|i| {
                    hex.is_valid(i).then(|| {
                        let bytes: String =
                            hex.value(i).iter().map(|b| format!("{b:02x}")).collect();
                        format!("\\x{bytes}")
                    })
                })
                .collect())
        }
        _ => {
            let text = cast(column, &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            Ok((0..text.len())
                .map(|i| text.is_valid(i).then(|| text.value(i).to_string()))
                .collect())
        }
    }
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The sink's settings and statements.
#[derive(Debug)]
struct Target {
    sink: String,
    connection: String,
    /// Quoted, possibly schema-qualified.
    table: String,
    schema: SchemaRef,
    key: Vec<usize>,
    batch_rows: usize,
}

impl Target {
    fn create_table(&self) -> String {
        let columns: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", quote(f.name()), pg_type(f.data_type())))
            .collect();
        let key: Vec<String> = self
            .key
            .iter()
            .map(|&i| quote(self.schema.field(i).name()))
            .collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
            self.table,
            columns.join(", "),
            key.join(", ")
        )
    }

    fn upsert(&self) -> String {
        let fields = self.schema.fields();
        let names: Vec<String> = fields.iter().map(|f| quote(f.name())).collect();
        let params: Vec<String> = (1..=fields.len())
            .map(|i| format!("${i}::text[]"))
            .collect();
        let casts: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| format!("c{i}::{}", pg_type(f.data_type())))
            .collect();
        let aliases: Vec<String> = (0..fields.len()).map(|i| format!("c{i}")).collect();
        let key: Vec<String> = self.key.iter().map(|&i| names[i].clone()).collect();
        let updates: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.key.contains(i))
            .map(|(_, n)| format!("{n} = EXCLUDED.{n}"))
            .collect();
        let action = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS u({}) ON CONFLICT ({}) {action}",
            self.table,
            names.join(", "),
            casts.join(", "),
            params.join(", "),
            aliases.join(", "),
            key.join(", ")
        )
    }

    fn delete(&self) -> String {
        let params: Vec<String> = (1..=self.key.len())
            .map(|i| format!("${i}::text[]"))
            .collect();
        let aliases: Vec<String> = (0..self.key.len()).map(|i| format!("k{i}")).collect();
        let conditions: Vec<String> = self
            .key
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let f = self.schema.field(i);
                format!("t.{} = d.k{j}::{}", quote(f.name()), pg_type(f.data_type()))
            })
            .collect();
        format!(
            "DELETE FROM {} AS t USING unnest({}) AS d({}) WHERE {}",
            self.table,
            params.join(", "),
            aliases.join(", "),
            conditions.join(" AND ")
        )
    }
}

/// The PostgreSQL sink's writer.
struct PostgresSinkWriter {
    target: Arc<Target>,
    client: Option<Client>,
    buffered: Vec<ChangeBatch>,
    buffered_rows: usize,
    /// Rows written since the last commit (flushed or not): the runner's commit counts them.
    uncommitted: u64,
}

fn external(e: tokio_postgres::Error) -> EngineError {
    let message = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    ConnectorError::Postgres { message, source: e }.into()
}

impl PostgresSinkWriter {
    async fn client(&mut self) -> Result<&mut Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let (client, connection) = tokio_postgres::connect(&self.target.connection, NoTls)
                .await
                .map_err(external)?;
            let sink = self.target.sink.clone();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    warn!(sink = %sink, error = %e, "PostgreSQL connection closed");
                }
            });
            client
                .batch_execute(&self.target.create_table())
                .await
                .map_err(external)?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| ConnectorError::bug("PostgreSQL client missing").into())
    }

    /// Applies every buffered change in one transaction.
    async fn flush(&mut self) -> Result<()> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        let target = Arc::clone(&self.target);
        let mut statements = Vec::with_capacity(self.buffered.len());
        for change in &self.buffered {
            let (sql, columns): (String, Vec<usize>) = match change.op {
                ChangeOp::Upsert | ChangeOp::Update => {
                    (target.upsert(), (0..target.schema.fields().len()).collect())
                }
                ChangeOp::Delete => (target.delete(), target.key.clone()),
            };
            let values = columns
                .iter()
                .map(|&i| texts(change.rows.column(i)))
                .collect::<Result<Vec<_>>>()?;
            statements.push((sql, values));
        }
        let client = self.client().await?;
        let result = async {
            let tx = client.transaction().await?;
            for (sql, values) in &statements {
                let params: Vec<&(dyn ToSql + Sync)> =
                    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                tx.execute(sql.as_str(), &params).await?;
            }
            tx.commit().await
        }
        .await;
        if let Err(e) = result {
            // A broken connection is opened again on the retry; the batch is applied again whole.
            if e.is_closed() {
                self.client = None;
            }
            return Err(external(e));
        }
        self.buffered.clear();
        self.buffered_rows = 0;
        Ok(())
    }
}

#[async_trait]
impl SinkWriter for PostgresSinkWriter {
    async fn write(&mut self, changes: &ChangeBatch) -> Result<()> {
        self.buffered_rows += changes.rows.num_rows();
        self.uncommitted += changes.rows.num_rows() as u64;
        self.buffered.push(changes.clone());
        if self.buffered_rows >= self.target.batch_rows {
            self.flush().await?;
        }
        Ok(())
    }

    async fn pre_commit(&mut self, _epoch: u64) -> Result<OperatorState> {
        self.flush().await?;
        Ok(OperatorState::default())
    }

    async fn commit(&mut self) -> Result<()> {
        // Applied at the pre-commit already (upserts are idempotent, so early is safe).
        self.uncommitted = 0;
        Ok(())
    }

    fn pending_rows(&self) -> u64 {
        self.uncommitted
    }
}

/// The `postgres` sink connector.
#[derive(Debug, Clone, Copy)]
pub struct PostgresSinkConnector;

#[async_trait]
impl SinkFactory for PostgresSinkConnector {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn open_sink(&self, spec: &mut SinkSpec) -> Result<Box<dyn SinkWriter>> {
        if !spec.encode.is_empty() {
            return Err(EngineError::User(
                "the PostgreSQL sink writes table rows: leave out ENCODE".into(),
            ));
        }
        let options = &mut spec.options;
        let connection = options.take_required("connection")?;
        let table = options.take_required("table")?;
        let key_option = options.take("primary_key");
        let key_names: Vec<String> = match (&spec.format, key_option) {
            (SinkFormat::Debezium { .. }, _) => {
                return Err(EngineError::User(
                    "the PostgreSQL sink applies changes to a table: FORMAT UPSERT (or PLAIN), not DEBEZIUM"
                        .into(),
                ));
            }
            (SinkFormat::Upsert { key }, _) => key.clone(),
            (SinkFormat::Plain, Some(k)) => k
                .split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .collect(),
            (SinkFormat::Plain, None) => {
                return Err(EngineError::User(
                    "the PostgreSQL sink upserts by key: give primary_key = 'column[, …]'".into(),
                ));
            }
        };
        let key = key_names
            .iter()
            .map(|k| {
                spec.schema.index_of(k).map_err(|_| {
                    EngineError::User(format!(
                        "primary_key column \"{k}\" is not a column of sink \"{}\"",
                        spec.name
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let batch_rows = options
            .take_parsed::<usize>("batch_rows")?
            .unwrap_or(10_000)
            .max(1);
        let table = table
            .split('.')
            .map(|part| quote(part.trim().trim_matches('"')))
            .collect::<Vec<_>>()
            .join(".");
        let mut writer = PostgresSinkWriter {
            target: Arc::new(Target {
                sink: spec.name.clone(),
                connection,
                table,
                schema: Arc::clone(&spec.schema),
                key,
                batch_rows,
            }),
            client: None,
            buffered: Vec::new(),
            buffered_rows: 0,
            uncommitted: 0,
        };
        if spec.check {
            // Reachable, and the table exists (or is created) with a matching key.
            // At creation an unreachable or refusing server is the user's to fix.
            writer.client().await.map_err(|e| match e.kind() {
                ErrorKind::External => EngineError::User(format!("sink \"{}\": {e}", spec.name)),
                _ => e,
            })?;
        }
        Ok(Box::new(writer))
    }
}
