//! Tables over a topic, as RisingWave spells them:
//!
//! - `CREATE TABLE t (…, PRIMARY KEY (k)) WITH (connector = 'kafka', …) FORMAT UPSERT ENCODE
//!   JSON`: the message key names the row (a JSON object of the key columns, or a one-column
//!   key's text), the value is the row, and a message without a value (a tombstone) deletes it;
//! - `… FORMAT DEBEZIUM ENCODE JSON`: Debezium change events (`before`, `after`, `op`), which
//!   are reshaped into the same upserts by the row's primary key.
//!
//! With `WATERMARK FOR ts AS …` among the columns (FORMAT UPSERT only) the table is also a
//! history of versions by event time, as Flink's versioned tables: each message is its key's
//! version from its `ts` on, and views join it `FOR SYSTEM_TIME AS OF o.ts`.
//!
//! The table runs as a pipeline: a Kafka reader of its own (key and tombstone included as
//! metadata columns), then the engine's [`UpsertOperator`], which turns messages into the table's
//! changes against the rows live per key; checkpoints hold those rows with the topic offsets, so
//! a restart resumes without re-reading the topic. Views read it as they read any table; SQL
//! writes are refused (the topic is the table's only writer).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::sql::sqlparser::ast::Statement;
use tracing::info;
use weir_engine::catalog::SourceEntry;
use weir_engine::checkpoint::catalog_file::{CatalogObject, ObjectKind as PersistedKind};
use weir_engine::operator::StreamOperator;
use weir_engine::options::Options;
use weir_engine::source::{FormatSpec, IncludeColumn, SourceSpec};
use weir_engine::source_errors::BadRecords;
use weir_engine::stream_props::{StreamKind, StreamProps};
use weir_engine::table::debezium::{DebeziumToUpsert, event_schema};
use weir_engine::table::upsert::UpsertOperator;
use weir_engine::view_runtime::{PlannedInput, ViewInput, ViewPipeline, ViewRuntime};

use crate::create_source::plan_watermark;
use crate::database::{DEFAULT_IDLE_TIMEOUT, QueryResult, Session, command};
use crate::ddl::{Publication, lookup_connector};
use crate::error::{Result, SqlError, SqlErrorKind};
use crate::parser::CreateConnectorTable;
use crate::tables::WritableTable;

/// Names of the metadata columns the reader adds for the upsert step.
const KEY_COLUMN: &str = "__weir_key";
const TOMBSTONE_COLUMN: &str = "__weir_tombstone";

impl Session {
    pub(crate) async fn create_connector_table(
        &self,
        c: &CreateConnectorTable,
        replay: Option<&CatalogObject>,
    ) -> Result<QueryResult> {
        let Statement::CreateTable(create) = c.columns.as_ref() else {
            return Err(SqlError::new(
                SqlErrorKind::Internal,
                "a connector table's columns are not a CREATE TABLE",
            ));
        };
        let debezium = match (c.format.0.as_str(), c.format.1.as_str()) {
            ("UPSERT", "JSON") => false,
            ("DEBEZIUM", "JSON") => true,
            ("UPSERT" | "DEBEZIUM", other) => {
                return Err(SqlError::new(
                    SqlErrorKind::FeatureNotSupported,
                    format!(
                        "FORMAT {} ENCODE {other} is not supported (ENCODE JSON)",
                        c.format.0
                    ),
                ));
            }
            (other, _) => {
                return Err(SqlError::new(
                    SqlErrorKind::FeatureNotSupported,
                    format!(
                        "CREATE TABLE … FORMAT {other} is not supported: FORMAT UPSERT ENCODE \
                         JSON makes a table of a topic's latest value per key, FORMAT DEBEZIUM \
                         ENCODE JSON one of a topic of Debezium change events (for an \
                         append-only stream, CREATE SOURCE … FORMAT PLAIN)"
                    ),
                ));
            }
        };
        let Some(_guard) = self
            .begin_create(&c.name, c.if_not_exists, |cat| {
                cat.relation(&c.name).is_some()
            })
            .await?
        else {
            return Ok(command("CREATE TABLE"));
        };
        let (schema, key, _) = self.plan_columns(create).await?;
        let key = key.ok_or_else(|| {
            SqlError::new(
                SqlErrorKind::User,
                format!(
                    "table \"{}\" needs a PRIMARY KEY: FORMAT UPSERT keeps the latest row per \
                     message key",
                    c.name
                ),
            )
        })?;
        // Key columns are NOT NULL; the others may be anything a message leaves out.
        let schema = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| Arc::new(f.as_ref().clone().with_nullable(!key.contains(&i))))
                .collect::<Vec<_>>(),
        ));
        let mut options = Options::new(format!("table \"{}\"", c.name), c.options.clone())?;
        let connector = options.take_required("connector")?;
        let idle_timeout = options
            .take_duration("source.idle_timeout")?
            .unwrap_or(DEFAULT_IDLE_TIMEOUT);
        let bad_records = options
            .take("bad_records")
            .map(|v| BadRecords::parse(&v))
            .transpose()?
            .unwrap_or_default();
        let factory = lookup_connector(&self.db.connectors, "connector", &connector)?;
        let metadata = |kind: &str, alias: &str| IncludeColumn {
            kind: kind.into(),
            header: None,
            data_type: None,
            alias: Some(alias.into()),
        };
        let value_columns = Arc::new(if debezium {
            event_schema(&schema)
        } else {
            Schema::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
                    .collect::<Vec<_>>(),
            )
        });
        let mut spec = SourceSpec {
            name: c.name.clone(),
            columns: Some(value_columns),
            options,
            format: Some(FormatSpec {
                format: "PLAIN".into(),
                encode: "JSON".into(),
            }),
            include: vec![
                metadata("key", KEY_COLUMN),
                metadata("tombstone", TOMBSTONE_COLUMN),
            ],
        };
        let provider = factory.create_source(&mut spec).await?;
        if !spec.include.is_empty() {
            return Err(SqlError::new(
                SqlErrorKind::FeatureNotSupported,
                format!(
                    "the {connector} connector has no message keys: FORMAT UPSERT needs a \
                     connector with keyed messages (kafka)"
                ),
            ));
        }
        spec.options.finish()?;
        // The reader's rows are the value columns (the table's, in order) and then the metadata,
        // so a watermark planned over the table's columns reads them.
        let watermark = match (&c.watermark, debezium) {
            (None, _) => None,
            (Some(_), true) => {
                return Err(SqlError::new(
                    SqlErrorKind::FeatureNotSupported,
                    "a WATERMARK on a FORMAT DEBEZIUM table (versions by event time come from \
                     FORMAT UPSERT tables)",
                ));
            }
            (Some((column, expr)), false) => Some(plan_watermark(
                self,
                &schema,
                &format!("table \"{}\"", c.name),
                column,
                expr,
            )?),
        };
        let event_time = watermark
            .as_ref()
            .and_then(|w| schema.index_of(&w.column).ok());
        let reader = Arc::new(SourceEntry {
            name: c.name.clone(),
            sql: c.sql.clone(),
            provider,
            watermark,
            idle_timeout,
            max_future: None,
            bad_records,
        });
        let mut upsert = UpsertOperator::try_new(Arc::clone(&schema), key.clone())?;
        if event_time.is_some() {
            upsert = upsert.keeping_every_version();
        }
        let mut operators: Vec<Box<dyn StreamOperator>> = Vec::new();
        if debezium {
            operators.push(Box::new(DebeziumToUpsert::new(Arc::clone(&schema))));
        }
        operators.push(Box::new(upsert));
        let mut explain = format!(
            "Table {} (FORMAT {})\n  Source: {connector}\n",
            c.name, c.format.0
        );
        for op in &operators {
            explain.push_str(&format!("  {}\n", op.describe()));
        }
        let pipeline = ViewPipeline {
            inputs: vec![PlannedInput {
                input: ViewInput::Source(reader),
                operators: Vec::new(),
            }],
            operators,
            copies: Vec::new(),
            props: StreamProps {
                kind: StreamKind::Retract,
                key: Some(key.clone()),
                sealed_by: None,
                seal_span: 0,
                event_time,
            },
            schema: Arc::clone(&schema),
            explain,
            retention: None,
            looked_up: Vec::new(),
        };
        let id = self.object_id(replay);
        let durability = self.db.durability.clone();
        let checkpointing = self.view_checkpointing(&c.name, &id);
        let runtime =
            ViewRuntime::build(&c.name, &c.sql, pipeline, &self.db.catalog, checkpointing)
                .await?
                .feeding_table(&c.format.0)?;
        let entry = Arc::clone(runtime.entry());
        let provider =
            WritableTable::new(Arc::clone(&entry.table), None, HashMap::new(), Some(key));
        let mut publication = Publication::new(&self.db, &c.name);
        publication.add_to_catalog(|cat| cat.add_view(Arc::clone(&entry)))?;
        publication.register_table(Arc::new(provider))?;
        publication
            .persist(PersistedKind::Table, &id, &c.sql, BTreeMap::new(), replay)
            .await?;
        publication.commit();
        if let Some(start) = runtime.into_start().await {
            match &durability {
                Some(d) => d.start_or_hold(start),
                None => start(),
            }
        }
        info!(table = %c.name, connector = %connector, format = %c.format.0, "table over a topic created");
        Ok(command("CREATE TABLE"))
    }
}
