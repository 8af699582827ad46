//! Weir's system tables, in one registry: each has a name, a one-line description, a schema and
//! rows computed when it is queried. Queries read them as tables of the default schema; the
//! PostgreSQL front end lists them in `pg_catalog` / `information_schema` (so `\d`, `\dv+` and
//! Grafana see them, with the description); the README's list is checked against the registry.
//!
//! A new system table is one entry in [`Database::register_system_tables`](crate::Database):
//! a name, a description and a [`SystemTable`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use parking_lot::RwLock;
use weir_engine::catalog::{Catalog, SinkEntry, SourceEntry, ViewEntry};
use weir_engine::pipeline::PipelineState;
use weir_engine::source_metrics::now_millis;

/// What the registry knows of one system table.
#[derive(Debug, Clone)]
pub struct SystemTableInfo {
    /// Its name (in the default schema).
    pub name: &'static str,
    /// One line saying what it shows.
    pub description: &'static str,
    /// Its columns.
    pub schema: SchemaRef,
}

/// Every system table a database has, in registration order.
#[derive(Debug, Default)]
pub struct SystemTables {
    tables: RwLock<Vec<SystemTableInfo>>,
}

impl SystemTables {
    /// Records a table.
    pub(crate) fn add(&self, info: SystemTableInfo) {
        self.tables.write().push(info);
    }

    /// All of them.
    pub fn list(&self) -> Vec<SystemTableInfo> {
        self.tables.read().clone()
    }
}

/// How a system table computes its rows, given the querying session.
type RowsFn = dyn Fn(&dyn Session) -> DfResult<RecordBatch> + Send + Sync;

/// A system table whose rows are computed at query time.
pub struct SystemTable {
    schema: SchemaRef,
    rows: Box<RowsFn>,
}

impl std::fmt::Debug for SystemTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemTable")
            .field("schema", &self.schema)
            .finish()
    }
}

impl SystemTable {
    /// A table of `schema` filled by `rows` on every scan.
    pub fn new(
        schema: SchemaRef,
        rows: impl Fn() -> DfResult<RecordBatch> + Send + Sync + 'static,
    ) -> Self {
        Self::per_session(schema, move |_| rows())
    }

    /// A table of `schema` whose rows depend on the querying session (its functions, say).
    pub fn per_session(
        schema: SchemaRef,
        rows: impl Fn(&dyn Session) -> DfResult<RecordBatch> + Send + Sync + 'static,
    ) -> Self {
        Self {
            schema,
            rows: Box::new(rows),
        }
    }

    /// Its columns.
    pub fn columns(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = (self.rows)(state)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

pub(crate) fn sources_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("connector", DataType::Utf8, false),
        Field::new("columns", DataType::Utf8, false),
        Field::new("watermark", DataType::Utf8, true),
        Field::new("bad_records", DataType::UInt64, false),
        Field::new("definition", DataType::Utf8, false),
    ]))
}

pub(crate) fn sources_batch(catalog: &Catalog) -> datafusion::error::Result<RecordBatch> {
    let sources = catalog.sources();
    let columns = |s: &Arc<SourceEntry>| {
        s.schema()
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            sources.iter().map(|s| s.name.clone()),
        )),
        Arc::new(StringArray::from_iter_values(
            sources.iter().map(|s| s.provider.connector().to_string()),
        )),
        Arc::new(StringArray::from_iter_values(sources.iter().map(columns))),
        Arc::new(StringArray::from_iter(
            sources
                .iter()
                .map(|s| s.watermark.as_ref().map(|w| w.text.clone())),
        )),
        Arc::new(UInt64Array::from_iter_values(
            sources.iter().map(|s| catalog.source_errors.count(&s.name)),
        )),
        Arc::new(StringArray::from_iter_values(
            sources.iter().map(|s| s.sql.clone()),
        )),
    ];
    Ok(RecordBatch::try_new(sources_schema(), arrays)?)
}

pub(crate) fn views_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("updating", DataType::Boolean, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, true),
        Field::new("rows_in", DataType::UInt64, false),
        Field::new("final_rows", DataType::UInt64, false),
        Field::new("open_rows", DataType::UInt64, false),
        Field::new("late_rows", DataType::UInt64, false),
        Field::new("state_bytes", DataType::UInt64, false),
        Field::new("memory_bytes", DataType::UInt64, false),
        Field::new("disk_bytes", DataType::UInt64, false),
        Field::new("definition", DataType::Utf8, false),
    ]))
}

pub(crate) fn views_batch(catalog: &Catalog) -> datafusion::error::Result<RecordBatch> {
    let views: Vec<Arc<ViewEntry>> = catalog
        .views()
        .into_iter()
        .filter(|v| !v.is_table())
        .collect();
    let names: Vec<String> = views.iter().map(|v| v.name.clone()).collect();
    let stats: Vec<(usize, usize, usize)> = views.iter().map(|v| v.table.stats()).collect();
    let bytes: Vec<(usize, u64)> = views.iter().map(|v| v.table.bytes()).collect();
    let status = |v: &Arc<ViewEntry>| match v.status.state() {
        PipelineState::Running => "running".to_string(),
        PipelineState::Finished => "finished".to_string(),
        PipelineState::Failed(e) => format!("failed: {e}"),
    };
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(names.iter().cloned())),
        Arc::new(StringArray::from_iter_values(views.iter().map(status))),
        Arc::new(BooleanArray::from(
            views
                .iter()
                .map(|v| !v.props.is_append_only())
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from_iter_values(
            views.iter().map(|v| v.props.kind.name()),
        )),
        Arc::new(StringArray::from(
            views
                .iter()
                .map(|v| v.props.key_names(&v.table.schema_ref()))
                .collect::<Vec<_>>(),
        )),
        Arc::new(UInt64Array::from_iter_values(views.iter().map(|v| {
            v.status.rows_in.load(std::sync::atomic::Ordering::Relaxed)
        }))),
        Arc::new(UInt64Array::from_iter_values(
            stats.iter().map(|s| s.0 as u64),
        )),
        Arc::new(UInt64Array::from_iter_values(
            stats.iter().map(|s| s.1 as u64),
        )),
        Arc::new(catalog.late_rows.counts_for(&names)),
        Arc::new(UInt64Array::from_iter_values(views.iter().map(|v| {
            v.status
                .state_bytes
                .load(std::sync::atomic::Ordering::Relaxed)
        }))),
        Arc::new(UInt64Array::from_iter_values(
            bytes.iter().map(|b| b.0 as u64),
        )),
        Arc::new(UInt64Array::from_iter_values(bytes.iter().map(|b| b.1))),
        Arc::new(StringArray::from_iter_values(
            views.iter().map(|v| v.sql.clone()),
        )),
    ];
    Ok(RecordBatch::try_new(views_schema(), arrays)?)
}

/// Schema of `weir_sinks`.
pub(crate) fn sinks_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("view", DataType::Utf8, false),
        Field::new("connector", DataType::Utf8, false),
        Field::new("format", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("rows_written", DataType::UInt64, false),
        Field::new("rows_pending", DataType::UInt64, false),
        Field::new("committed_epoch", DataType::UInt64, false),
        Field::new("lag_ms", DataType::UInt64, false),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("definition", DataType::Utf8, false),
    ]))
}

/// Rows of `weir_sinks`: delivered (committed) rows, rows written or waiting for a commit, the
/// last checkpoint published, how long the oldest unpublished row has waited, the last error.
pub(crate) fn sinks_batch(catalog: &Catalog) -> datafusion::error::Result<RecordBatch> {
    let sinks = catalog.sinks();
    let now = now_millis().max(0) as u64;
    let text = |f: &dyn Fn(&SinkEntry) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(sinks.iter().map(|s| f(s))))
    };
    let number = |f: &dyn Fn(&SinkEntry) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(sinks.iter().map(|s| f(s))))
    };
    let arrays: Vec<ArrayRef> = vec![
        text(&|s| s.name.clone()),
        text(&|s| s.view.clone()),
        text(&|s| s.connector.clone()),
        text(&|s| s.format.clone()),
        text(&|s| s.status.state().as_str().to_string()),
        number(&|s| s.status.rows_committed.load(Ordering::Relaxed)),
        number(&|s| s.status.rows_pending.load(Ordering::Relaxed)),
        number(&|s| s.status.committed_epoch.load(Ordering::Relaxed)),
        number(&|s| s.status.lag_ms(now)),
        Arc::new(StringArray::from_iter(
            sinks.iter().map(|s| s.status.last_error()),
        )),
        text(&|s| s.sql.clone()),
    ];
    Ok(RecordBatch::try_new(sinks_schema(), arrays)?)
}
