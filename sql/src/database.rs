//! The database: one DataFusion `SessionContext` whose catalog holds Weir's sources, views and
//! system tables, the running catalog, and the connectors. [`Session`]s execute statements
//! against it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::dataframe::DataFrame;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use tokio::sync::Mutex;
use tracing::{error, info};
use weir_engine::catalog::Catalog;
use weir_engine::checkpoint::CheckpointStore;
use weir_engine::checkpoint::catalog_file::{CatalogObject, ObjectKind as PersistedKind};
use weir_engine::late_rows::LateRowLog;
use weir_engine::options::Options;
use weir_engine::source::ConnectorFactory;
use weir_engine::source_errors::SourceErrorLog;
use weir_engine::source_metrics::SourceMetricsRegistry;
use weir_engine::view_runtime::ViewPipeline;

pub use self::builder::{DatabaseBuilder, DatabaseExtension};
use crate::durable::{
    Durability, checkpoint_state_batch, checkpoint_state_schema, checkpoints_batch,
    checkpoints_schema,
};
use crate::error::{Result, SqlError, SqlErrorKind};
use crate::function_list::{functions_batch, functions_schema};
use crate::functions::Functions;
use crate::parser::{CreateView, WeirStatement};
use crate::planner::{PlanContext, plan_view};
use crate::system_tables::{
    SystemTable, SystemTableInfo, SystemTables, sources_batch, sources_schema, views_batch,
    views_schema,
};
use crate::tables::{WindowFunction, WindowKind};
use crate::unresolved::planning_error;

mod builder;

/// Default refresh of open windows in updating views.
pub const DEFAULT_REFRESH: Duration = Duration::from_millis(100);
/// Default `source.idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `source.max_future`: event times further past the wall clock are bad records.
pub const DEFAULT_MAX_FUTURE: Duration = Duration::from_secs(3600);

/// What a statement returns.
pub enum QueryResult {
    /// Rows.
    Rows {
        /// Their schema.
        schema: SchemaRef,
        /// The rows, streamed.
        stream: SendableRecordBatchStream,
    },
    /// `COPY … FROM STDIN` started: the client sends this many columns per line next.
    CopyIn {
        /// Columns per line.
        columns: usize,
    },
    /// A command tag (`CREATE SOURCE`, `SET`, …) with an optional row count.
    Command {
        /// The tag.
        tag: String,
        /// Rows affected, for tags that carry one.
        rows: Option<usize>,
    },
}

impl std::fmt::Debug for QueryResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryResult::Rows { schema, .. } => write!(f, "Rows({schema:?})"),
            QueryResult::Command { tag, .. } => write!(f, "Command({tag})"),
            QueryResult::CopyIn { columns } => write!(f, "CopyIn({columns})"),
        }
    }
}

/// A command result: `tag`, no row count.
pub fn command(tag: &str) -> QueryResult {
    QueryResult::Command {
        tag: tag.to_string(),
        rows: None,
    }
}

/// Shared state of a Weir server.
pub struct Database {
    pub(crate) ctx: SessionContext,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) connectors: BTreeMap<&'static str, Arc<dyn ConnectorFactory>>,
    /// Sink connectors by name.
    pub(crate) sinks: BTreeMap<&'static str, Arc<dyn weir_engine::sink::SinkFactory>>,
    /// Function libraries (named parameters, incremental OVER calls).
    pub(crate) functions: Functions,
    pub(crate) refresh: Duration,
    /// Shards per keyed operator of a view.
    pub(crate) workers: usize,
    /// DDL runs one statement at a time, so name checks and registration cannot interleave.
    pub(crate) ddl: Mutex<()>,
    /// Checkpoints and the persisted catalog (None: an in-memory database, for tests and
    /// embedding).
    pub(crate) durability: Option<Arc<Durability>>,
    /// Weir's system tables.
    system_tables: Arc<SystemTables>,
}

/// How to open a database with durable state.
#[derive(Debug, Clone)]
pub struct DatabaseOptions {
    /// Where the catalog and checkpoints live.
    pub data_dir: PathBuf,
    /// Keep them in this object store instead (`s3://bucket/prefix`, see
    /// `CheckpointStore::from_url`).
    pub storage_url: Option<String>,
    /// How often checkpoints are taken.
    pub checkpoint_interval: Duration,
    /// A pipeline that does not pass a checkpoint barrier within this long fails the checkpoint.
    pub checkpoint_timeout: Duration,
    /// Refresh of open windows in updating views.
    pub refresh: Duration,
}

impl DatabaseOptions {
    /// Defaults for `data_dir`: checkpoints every 10 s.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            storage_url: None,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            checkpoint_timeout: Duration::from_secs(60),
            refresh: DEFAULT_REFRESH,
        }
    }
}

/// Default `checkpoint_interval`.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

impl Database {
    /// A builder: connectors, sinks and function libraries are registered by whoever builds
    /// the database (the server registers Weir's built-in ones).
    pub fn builder() -> DatabaseBuilder {
        DatabaseBuilder::default()
    }

    /// See [`DatabaseBuilder::open`].
    pub(crate) async fn open(
        builder: DatabaseBuilder,
        options: DatabaseOptions,
    ) -> Result<(Arc<Self>, usize)> {
        let store = match &options.storage_url {
            Some(url) => CheckpointStore::from_url(url).await?,
            None => CheckpointStore::local(&options.data_dir)?,
        };
        let (durability, objects) = Durability::open(store, options.checkpoint_timeout).await?;
        let durability = Arc::new(durability);
        let db = Self::build(
            builder.refresh(options.refresh),
            Some(Arc::clone(&durability)),
        )?;
        let segments = durability.segment_store();
        db.ctx
            .register_object_store(segments.url.as_ref(), segments.store.object_store());
        let session = db.session();
        let mut restored = 0;
        for object in &objects {
            match session.replay(object).await {
                Ok(()) => restored += 1,
                Err(e) => error!(
                    object = %object.name,
                    error = %e,
                    "could not restore a persisted definition (it stays in the catalog and is retried at the next start)"
                ),
            }
        }
        durability.release(options.checkpoint_interval);
        if !objects.is_empty() {
            info!(restored, of = objects.len(), store = %durability.coordinator.store().location(), "catalog restored");
        }
        Ok((db, objects.len()))
    }

    pub(crate) fn build(
        builder: DatabaseBuilder,
        durability: Option<Arc<Durability>>,
    ) -> Result<Arc<Self>> {
        // information_schema is Weir's own (PostgreSQL's spellings), see `pg`.
        // The catalog is named as the one database clients see (`current_database()`), so
        // three-part names (`weir.public.v`, as dbt writes them) resolve.
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(crate::parser::DATABASE_NAME, "public")
            .with_information_schema(false)
            .set_str("datafusion.sql_parser.dialect", "PostgreSQL")
            .set_str("datafusion.execution.time_zone", "+00:00");
        // With the apply fallback for subqueries DataFusion cannot join (see `apply`).
        let state = crate::apply::install(
            SessionStateBuilder::new()
                .with_config(config)
                .with_default_features(),
        );
        let state = crate::json_operators::install(state.build())?;
        let ctx = SessionContext::new_with_state(state);
        ctx.register_udf(crate::proctime::proctime_udf());
        let catalog = Arc::new(Catalog::default());
        // DataFusion 55 looks table functions up by the name as written, so register both
        // spellings users write.
        for kind in WindowKind::ALL {
            let function = Arc::new(WindowFunction::new(Arc::clone(&catalog), kind));
            ctx.register_udtf(&kind.name().to_lowercase(), Arc::clone(&function) as _);
            ctx.register_udtf(kind.name(), function);
        }
        let functions = Functions::new(builder.functions);
        functions.register(&ctx)?;
        let db = Self {
            ctx,
            catalog,
            connectors: builder
                .connectors
                .into_iter()
                .map(|c| (c.name(), c))
                .collect(),
            sinks: builder.sinks.into_iter().map(|c| (c.name(), c)).collect(),
            functions,
            refresh: builder.refresh,
            workers: builder.workers,
            ddl: Mutex::new(()),
            durability,
            system_tables: Arc::new(SystemTables::default()),
        };
        db.register_system_tables()?;
        for extension in &builder.extensions {
            extension.install(&db)?;
        }
        Ok(Arc::new(db))
    }

    /// A new session.
    pub fn session(self: &Arc<Self>) -> Session {
        Session {
            db: Arc::clone(self),
            txn: Arc::default(),
            notices: Arc::default(),
            cursors: Arc::default(),
        }
    }

    /// The running catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// DataFusion's context (for embedding and tests).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The durable side, when the database has a data directory.
    pub fn durability(&self) -> Option<&Arc<Durability>> {
        self.durability.as_ref()
    }

    /// Weir's system tables, described once (see [`crate::system_tables`]).
    fn register_system_tables(&self) -> Result<()> {
        let durability = self.durability.clone();
        self.register_system_table(
            "weir_checkpoints",
            "checkpoints taken or recovered: epoch, status, duration, bytes",
            SystemTable::new(checkpoints_schema(), move || {
                checkpoints_batch(durability.as_deref())
            }),
        )?;
        let durability = self.durability.clone();
        self.register_system_table(
            "weir_checkpoint_state",
            "state rows and bytes per operator in each retained checkpoint",
            SystemTable::new(checkpoint_state_schema(), move || {
                checkpoint_state_batch(durability.as_deref())
            }),
        )?;
        let late = Arc::clone(&self.catalog.late_rows);
        self.register_system_table(
            "weir_late_rows",
            "rows that arrived after their window closed, per view (the newest are kept)",
            SystemTable::new(LateRowLog::schema(), move || {
                late.to_batch()
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
            }),
        )?;
        let errors = Arc::clone(&self.catalog.source_errors);
        self.register_system_table(
            "weir_source_errors",
            "records a source could not read, once per source, with the raw text and the reason",
            SystemTable::new(SourceErrorLog::schema(), move || {
                errors
                    .to_batch()
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
            }),
        )?;
        let metrics = Arc::clone(&self.catalog.source_metrics);
        self.register_system_table(
            "weir_source_partitions",
            "per source partition: position, lag, watermark, records, errors, status",
            SystemTable::new(SourceMetricsRegistry::schema(), move || {
                metrics
                    .to_batch()
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
            }),
        )?;
        let metrics = Arc::clone(&self.catalog.source_metrics);
        self.register_system_table(
            "weir_progress",
            "per view and source: rows read of the history the source held when the view's reader started, rows to go, share, caught up",
            SystemTable::new(SourceMetricsRegistry::progress_schema(), move || {
                metrics
                    .progress_batch()
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
            }),
        )?;
        let catalog = Arc::clone(&self.catalog);
        self.register_system_table(
            "weir_sources",
            "sources: connector, columns, watermark, bad records, definition",
            SystemTable::new(sources_schema(), move || sources_batch(&catalog)),
        )?;
        let catalog = Arc::clone(&self.catalog);
        self.register_system_table(
            "weir_views",
            "materialized views: status, kind (append-only or retract) and key, rows in and out, late rows, state bytes, bytes of rows in memory and on disk, definition",
            SystemTable::new(views_schema(), move || views_batch(&catalog)),
        )?;
        let catalog = Arc::clone(&self.catalog);
        self.register_system_table(
            "weir_sinks",
            "sinks: view, connector, format, status, rows written and pending, lag, last error",
            SystemTable::new(crate::system_tables::sinks_schema(), move || {
                crate::system_tables::sinks_batch(&catalog)
            }),
        )?;
        self.register_system_table(
            "weir_functions",
            "functions queries and views can call: name, kind, description, an example call",
            SystemTable::per_session(functions_schema(), functions_batch),
        )?;
        Ok(())
    }

    fn register_system_table(
        &self,
        name: &'static str,
        description: &'static str,
        table: SystemTable,
    ) -> Result<()> {
        self.system_tables.add(SystemTableInfo {
            name,
            description,
            schema: table.columns(),
        });
        self.ctx.register_table(name, Arc::new(table))?;
        Ok(())
    }

    /// The system tables.
    pub fn system_tables(&self) -> &Arc<SystemTables> {
        &self.system_tables
    }
}

/// A result of one batch of rows.
pub fn rows(batch: RecordBatch) -> Result<QueryResult> {
    let schema = batch.schema();
    let stream = MemoryStream::try_new(vec![batch], Arc::clone(&schema), None)?;
    Ok(QueryResult::Rows {
        schema,
        stream: Box::pin(stream),
    })
}

/// One client's session.
#[derive(Debug, Clone)]
pub struct Session {
    pub(crate) db: Arc<Database>,
    /// `BEGIN` … `COMMIT` state and the table writes it holds.
    pub(crate) txn: Arc<Mutex<crate::transaction::Transaction>>,
    /// NOTICEs the statements run so far raised, for the client (PostgreSQL's `NoticeResponse`).
    pub(crate) notices: Arc<std::sync::Mutex<Vec<String>>>,
    /// Open cursors (`DECLARE`), by name.
    pub(crate) cursors: Arc<Mutex<crate::cursor::Cursors>>,
}

impl Session {
    /// The database.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// DataFusion state for one statement: a copy of the shared context's, which a front end
    /// may extend (session functions, settings) before planning in it
    /// ([`Session::plan_statement_in`]).
    pub fn statement_state(&self) -> SessionState {
        self.db.ctx.state()
    }

    /// The NOTICEs raised since the last call (a join whose state grows without bound, …).
    pub fn take_notices(&self) -> Vec<String> {
        match self.notices.lock() {
            Ok(mut n) => std::mem::take(&mut *n),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    /// Adds a NOTICE for the client.
    pub(crate) fn notice(&self, text: String) {
        match self.notices.lock() {
            Ok(mut n) => n.push(text),
            Err(poisoned) => poisoned.into_inner().push(text),
        }
    }

    /// Parses and runs every statement in `sql`, stopping at the first error.
    pub async fn execute_all(&self, sql: &str) -> Result<Vec<QueryResult>> {
        let mut out = Vec::new();
        for stmt in crate::parser::parse_statements(sql)? {
            out.push(self.execute(&stmt).await?);
        }
        Ok(out)
    }

    /// Runs one statement.
    pub async fn execute(&self, stmt: &WeirStatement) -> Result<QueryResult> {
        match stmt {
            WeirStatement::CreateSource(c) => self.create_source(c, None).await,
            WeirStatement::CreateView(v) => self.create_view(v, None).await,
            WeirStatement::CreateSink(c) => self.create_sink_as_select(c).await,
            WeirStatement::CreateConnectorTable(t) => self.create_connector_table(t, None).await,
            WeirStatement::ShowSinks => {
                self.run_sql(
                    "SELECT name, view, connector, format, status, rows_written, rows_pending, \
                     lag_ms, last_error FROM weir_sinks ORDER BY name",
                )
                .await
            }
            WeirStatement::Checkpoint => self.checkpoint().await,
            WeirStatement::Subscribe(subscribe) | WeirStatement::CopySubscribe(subscribe) => {
                self.subscribe_rows(subscribe).await
            }
            WeirStatement::DeclareCursor(declare) => self.declare_cursor(declare).await,
            WeirStatement::Fetch(fetch) => self.fetch(fetch).await,
            WeirStatement::CloseCursor(name) => self.close_cursor(name.as_deref()).await,
            WeirStatement::ExplainView(v) => {
                let plan = self.plan_view(v).await?;
                let schema = Arc::new(Schema::new(vec![Field::new("pipeline", DataType::Utf8, false)]));
                let lines: Vec<&str> = plan.explain.lines().collect();
                let lines = StringArray::from(lines);
                rows(RecordBatch::try_new(schema, vec![Arc::new(lines)])?)
            }
            WeirStatement::ShowSources => {
                self.run_sql("SELECT name, connector, columns, watermark, bad_records FROM weir_sources ORDER BY name")
                    .await
            }
            WeirStatement::ShowFunctions { like } => {
                let filter = match like {
                    Some(pattern) => format!(" WHERE name LIKE '{}'", pattern.replace('\'', "''")),
                    None => String::new(),
                };
                self.run_sql(&format!(
                    "SELECT name, kind, description FROM weir_functions{filter} ORDER BY name"
                ))
                .await
            }
            WeirStatement::ShowViews => {
                self.run_sql(
                    "SELECT name, status, updating, rows_in, final_rows, open_rows, late_rows \
                     FROM weir_views ORDER BY name",
                )
                .await
            }
            WeirStatement::RefreshView(name) => self.refresh_view(name).await,
            WeirStatement::ExplainAnalyzeView(name) => self.explain_analyze_view(name),
            WeirStatement::DropIndex { names, if_exists } => {
                self.drop_index(names, *if_exists).await
            }
            WeirStatement::Drop { kind, name, if_exists, cascade } => {
                self.drop_object(*kind, name, *if_exists, *cascade).await
            }
            WeirStatement::Sql(statement) => match statement.as_ref() {
                Statement::StartTransaction { .. } => {
                    self.begin_transaction().await;
                    Ok(command("BEGIN"))
                }
                Statement::Commit { .. } => Ok(command(self.commit_transaction().await?)),
                Statement::Rollback {
                    savepoint: None, ..
                } => {
                    self.rollback_transaction().await;
                    Ok(command("ROLLBACK"))
                }
                Statement::CreateTable(create) => self.create_table(create, None).await,
                s @ (Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)) => {
                    self.execute_dml_statement(self.statement_state(), s).await
                }
                _ => self.execute_sql(statement).await,
            },
        }
    }

    /// `CHECKPOINT`: takes a checkpoint and waits until it is committed.
    async fn checkpoint(&self) -> Result<QueryResult> {
        let durability = self.db.durability.as_ref().ok_or_else(|| {
            SqlError::new(
                SqlErrorKind::FeatureNotSupported,
                "CHECKPOINT needs a data directory (weir --data-dir …)",
            )
        })?;
        durability.coordinator.checkpoint().await?;
        Ok(command("CHECKPOINT"))
    }

    /// Creates a persisted object again at start-up, with its id and pinned options.
    async fn replay(&self, object: &CatalogObject) -> Result<()> {
        let statements = crate::parser::parse_statements(&object.sql)?;
        let [statement] = statements.as_slice() else {
            return Err(SqlError::new(
                SqlErrorKind::Internal,
                "a persisted definition is not one statement",
            ));
        };
        match (statement, object.kind) {
            (WeirStatement::CreateSource(c), PersistedKind::Source) => {
                let mut c = c.as_ref().clone();
                for (key, value) in &object.pinned {
                    if !c.options.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
                        c.options.push((key.clone(), value.clone()));
                    }
                }
                self.create_source(&c, Some(object)).await?;
            }
            (WeirStatement::CreateView(v), PersistedKind::MaterializedView) => {
                self.create_view(v, Some(object)).await?;
            }
            (WeirStatement::CreateSink(c), PersistedKind::Sink) => {
                self.create_sink(c, Some(object)).await?;
            }
            (WeirStatement::CreateConnectorTable(t), PersistedKind::Table) => {
                self.create_connector_table(t, Some(object)).await?;
            }
            (WeirStatement::Sql(s), PersistedKind::Table) => match s.as_ref() {
                Statement::CreateTable(t) => {
                    self.create_table(t, Some(object)).await?;
                }
                _ => {
                    return Err(SqlError::new(
                        SqlErrorKind::Internal,
                        "a persisted table is not CREATE TABLE",
                    ));
                }
            },
            _ => {
                return Err(SqlError::new(
                    SqlErrorKind::Internal,
                    "a persisted definition does not match its kind",
                ));
            }
        }
        Ok(())
    }

    async fn run_sql(&self, sql: &str) -> Result<QueryResult> {
        let df = self.db.ctx.sql(sql).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        Ok(QueryResult::Rows {
            schema,
            stream: df.execute_stream().await?,
        })
    }

    /// Plans a DataFusion statement (queries, EXPLAIN …) and checks it is allowed.
    pub async fn plan_statement(&self, statement: &Statement) -> Result<LogicalPlan> {
        self.plan_statement_in(&self.statement_state(), statement)
            .await
    }

    /// [`Session::plan_statement`] in a state the caller prepared.
    pub async fn plan_statement_in(
        &self,
        state: &SessionState,
        statement: &Statement,
    ) -> Result<LogicalPlan> {
        if let Statement::CreateFunction(_) = statement {
            return Err(SqlError::new(
                SqlErrorKind::FeatureNotSupported,
                "CREATE FUNCTION is not supported: Weir's functions are built in \
                 (SHOW FUNCTIONS lists them)",
            ));
        }
        let mut statement = statement.clone();
        crate::field_access::rewrite_field_access(&mut statement);
        crate::named_args::resolve_named_arguments(&mut statement, &self.db.functions)?;
        let statement = DfStatement::Statement(Box::new(statement));
        let plan = state
            .statement_to_plan(statement.clone())
            .await
            .map_err(|e| planning_error(state, &statement, e))?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(true)
            .verify_plan(&plan)
            .map_err(|_| {
                SqlError::new(
                    SqlErrorKind::FeatureNotSupported,
                    "this statement is not supported: tables take INSERT, UPDATE, DELETE and \
                     COPY … FROM STDIN; sources and views are defined with CREATE SOURCE, CREATE \
                     MATERIALIZED VIEW and CREATE TABLE",
                )
            })?;
        Ok(plan)
    }

    /// Executes a planned statement.
    pub async fn execute_plan(&self, plan: LogicalPlan) -> Result<QueryResult> {
        self.execute_plan_in(self.statement_state(), plan).await
    }

    /// [`Session::execute_plan`] in a state the caller prepared.
    pub async fn execute_plan_in(
        &self,
        state: SessionState,
        plan: LogicalPlan,
    ) -> Result<QueryResult> {
        let df = DataFrame::new(state, plan);
        let schema = Arc::new(df.schema().as_arrow().clone());
        Ok(QueryResult::Rows {
            schema,
            stream: df.execute_stream().await?,
        })
    }

    pub(crate) async fn execute_sql(&self, statement: &Statement) -> Result<QueryResult> {
        let plan = self.plan_statement(statement).await?;
        self.execute_plan(plan).await
    }

    /// Checks a `datafusion.*` option value against DataFusion's own parser.
    pub fn check_datafusion_option(&self, key: &str, value: &str) -> Result<()> {
        let mut state = self.db.ctx.state();
        state.config_mut().options_mut().set(key, value)?;
        Ok(())
    }

    /// The schema a statement's rows will have (None: it returns no rows).
    pub async fn result_schema(&self, stmt: &WeirStatement) -> Result<Option<SchemaRef>> {
        Ok(match stmt {
            WeirStatement::ExplainView(_) => Some(Arc::new(Schema::new(vec![Field::new(
                "pipeline",
                DataType::Utf8,
                false,
            )]))),
            WeirStatement::Subscribe(subscribe) => Some(self.subscription_schema(&subscribe.view)?),
            WeirStatement::Fetch(fetch) => Some(self.cursor_schema(&fetch.cursor).await?),
            WeirStatement::ExplainAnalyzeView(_) => Some(self.explain_analyze_columns()),
            WeirStatement::ShowSources => {
                let s = sources_schema();
                Some(Arc::new(s.project(&[0, 1, 2, 3, 4])?))
            }
            WeirStatement::ShowFunctions { .. } => {
                Some(Arc::new(functions_schema().project(&[0, 1, 2])?))
            }
            WeirStatement::ShowViews => {
                let s = views_schema();
                Some(Arc::new(s.project(&[0, 1, 2, 3, 4, 5, 6])?))
            }
            WeirStatement::ShowSinks => {
                let s = crate::system_tables::sinks_schema();
                Some(Arc::new(s.project(&[0, 1, 2, 3, 4, 5, 6, 8, 9])?))
            }
            WeirStatement::Sql(statement) if matches!(statement.as_ref(), Statement::Query(_)) => {
                let plan = self.plan_statement(statement).await?;
                Some(Arc::new(plan.schema().as_arrow().clone()))
            }
            _ => None,
        })
    }

    pub(crate) async fn plan_view(&self, v: &CreateView) -> Result<ViewPipeline> {
        let state = self.db.ctx.state();
        let mut query = v.query.clone();
        crate::field_access::rewrite_field_access_in_query(&mut query);
        crate::named_args::resolve_in_query(&mut query, &self.db.functions)?;
        crate::versioned_rewrite::bound_versions(&mut query, &v.versioned, &self.db.catalog)?;
        let statement = DfStatement::Statement(Box::new(Statement::Query(query)));
        let plan = state
            .statement_to_plan(statement.clone())
            .await
            .map_err(|e| planning_error(&state, &statement, e))?;
        let plan = state.optimize(&plan)?;
        let mut options = Options::new(
            format!("materialized view \"{}\"", v.name),
            v.options.clone(),
        )?;
        let state_ttl = options.take_duration("state_ttl")?;
        let allowed_lateness = options
            .take_duration("allowed_lateness")?
            .unwrap_or_default();
        let retention = options.take_duration("retention")?;
        // Read by the front end: CREATE returns at once instead of waiting for the backfill.
        options.take_parsed::<bool>("background")?;
        options.finish()?;
        let notices = std::cell::RefCell::new(Vec::new());
        let ctx = PlanContext {
            view: &v.name,
            state: &state,
            catalog: &self.db.catalog,
            emit_on_window_close: v.emit_on_window_close,
            refresh: v.emit_every.unwrap_or(self.db.refresh),
            late_rows: Arc::clone(&self.db.catalog.late_rows),
            state_ttl,
            allowed_lateness,
            lateness_applied: std::cell::Cell::new(false),
            retention,
            lookups: &v.lookups,
            versioned: &v.versioned,
            notices: &notices,
            functions: &self.db.functions,
        };
        let mut pipeline = plan_view(&plan, &ctx)?;
        let segment = weir_engine::shards::keyed_segment(&pipeline.operators);
        let readers = pipeline.source_readers(self.db.workers);
        if segment.is_some() || readers > 1 {
            // Planning is deterministic: each further worker's shard (or reader) gets operators
            // planned alike. The copies' notices repeat the first plan's.
            let said = notices.borrow().len();
            for _ in 1..self.db.workers {
                pipeline.copies.push(plan_view(&plan, &ctx)?.operators);
            }
            notices.borrow_mut().truncate(said);
        }
        let partitions = pipeline.source_readers(usize::MAX);
        if partitions > 1 {
            insert_before_sink(
                &mut pipeline.explain,
                &format!(
                    "  Parallel: one reader per worker over the source's {partitions} partitions, \
                     each with its own stateless operators up to the first keyed one\n"
                ),
            );
        }
        if let Some(segment) = &segment {
            describe_shards(&mut pipeline, segment);
        }
        for notice in notices.into_inner() {
            self.notice(notice);
        }
        Ok(pipeline)
    }
}

/// Says in a view's EXPLAIN which of its operators run once per worker, and by what key.
fn describe_shards(pipeline: &mut ViewPipeline, segment: &weir_engine::shards::KeyedSegment) {
    let names: Vec<String> = pipeline.operators[segment.start..segment.end]
        .iter()
        .map(|op| op.name())
        .collect();
    let key: Vec<String> = segment.key.iter().map(|k| k.to_string()).collect();
    let line = format!(
        "  Parallel: {} in one shard per worker, rows by hash of ({})\n",
        names.join(" → "),
        key.join(", ")
    );
    insert_before_sink(&mut pipeline.explain, &line);
}

/// Puts `line` in an EXPLAIN text just before its `Sink:` line.
fn insert_before_sink(explain: &mut String, line: &str) {
    match explain.find("  Sink: view") {
        Some(at) => explain.insert_str(at, line),
        None => explain.push_str(line),
    }
}
