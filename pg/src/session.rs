//! The PostgreSQL front end over a Weir database: [`PgFrontend`] installs the catalog schemas
//! and functions clients expect when the database is built, and hands out a [`PgSession`] per
//! client connection.
//!
//! A [`PgSession`] is a `weir_sql::Session` plus what PostgreSQL clients assume of a session:
//! an identity and run-time parameters ([`SessionInfo`]), functions that read them
//! (`current_user`, `current_setting`, …), statements answered by the session itself (`SET`,
//! `SHOW`, `BEGIN`, …) and rewrites of PostgreSQL syntax DataFusion does not plan. Weir's own
//! statements (`CREATE SOURCE`, `CREATE MATERIALIZED VIEW`, …) go to the SQL layer unchanged.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{LogicalPlan, ScalarUDF};
use datafusion::sql::sqlparser::ast::Statement;
use futures::TryStreamExt;
use weir_sql::database::command;
use weir_sql::dml::{CopyIn, DmlPlan};
use weir_sql::error::{Result, SqlError, SqlErrorKind};
use weir_sql::parser::{CursorQuery, WeirStatement, parse_statements};
use weir_sql::{
    Database, DatabaseBuilder, DatabaseExtension, DatabaseOptions, QueryResult, Session,
};

use crate::catalog::PgCatalog;
use crate::settings::SessionInfo;
use crate::subqueries::{ArrayMap, SingleValue};

/// A database with the PostgreSQL front end installed.
#[derive(Debug)]
pub struct PgFrontend {
    db: Arc<Database>,
    pg: Arc<PgCatalog>,
    /// Numbers sessions (`pg_backend_pid()`).
    next_pid: AtomicI32,
}

impl PgFrontend {
    /// Builds an in-memory database from `builder`, with the front end installed.
    pub fn build(builder: DatabaseBuilder) -> Result<Arc<Self>> {
        let install = Arc::new(Install::default());
        let db = builder.extension(Arc::clone(&install) as _).build()?;
        Self::new(db, &install)
    }

    /// Opens a durable database (see `DatabaseBuilder::open`), with the front end installed
    /// before persisted views are restored. Returns how many objects the persisted catalog
    /// holds, too.
    pub async fn open(
        builder: DatabaseBuilder,
        options: DatabaseOptions,
    ) -> Result<(Arc<Self>, usize)> {
        let install = Arc::new(Install::default());
        let (db, persisted) = builder
            .extension(Arc::clone(&install) as _)
            .open(options)
            .await?;
        Ok((Self::new(db, &install)?, persisted))
    }

    fn new(db: Arc<Database>, install: &Install) -> Result<Arc<Self>> {
        let pg = install.catalog.get().cloned().ok_or_else(|| {
            SqlError::new(
                SqlErrorKind::Internal,
                "the PostgreSQL catalog was not installed",
            )
        })?;
        Ok(Arc::new(Self {
            db,
            pg,
            next_pid: AtomicI32::new(1),
        }))
    }

    /// The database.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// A new session, with the next backend pid.
    pub fn session(&self) -> PgSession {
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(SessionInfo::new("weir", "weir", pid));
        let functions = Arc::new(crate::functions::all(&self.pg, &info));
        PgSession {
            session: self.db.session(),
            info,
            functions,
            copy: Arc::default(),
        }
    }
}

/// Installs the catalog schemas and functions into a database being built, and keeps the
/// catalog view for the front end's sessions.
#[derive(Default)]
struct Install {
    catalog: OnceLock<Arc<PgCatalog>>,
}

impl DatabaseExtension for Install {
    fn install(&self, db: &Database) -> Result<()> {
        let ctx = db.context();
        let pg = crate::schemas::install(
            ctx,
            Arc::clone(db.catalog()),
            Arc::clone(db.system_tables()),
        )?;
        // For statements outside a client connection (the demo script, restored views); client
        // sessions register their own, reading their identity and settings.
        for f in crate::functions::all(&pg, &Arc::new(SessionInfo::new("weir", "weir", 0))) {
            ctx.register_udf(f);
        }
        ctx.register_udf(ArrayMap::udf());
        ctx.register_udaf(SingleValue::udaf());
        self.catalog.set(pg).map_err(|_| {
            SqlError::new(
                SqlErrorKind::Internal,
                "the PostgreSQL front end was installed twice",
            )
        })
    }
}

/// A `COPY … FROM STDIN` being received, with the first error its data raised.
type CopyInProgress = (CopyIn, Option<SqlError>);

/// One client's session.
#[derive(Debug, Clone)]
pub struct PgSession {
    session: Session,
    info: Arc<SessionInfo>,
    /// Catalog and session functions bound to this session.
    functions: Arc<Vec<ScalarUDF>>,
    /// A `COPY … FROM STDIN` in progress, and the first error its data raised (reported at the
    /// end of the copy, as PostgreSQL does).
    copy: Arc<tokio::sync::Mutex<Option<CopyInProgress>>>,
}

impl PgSession {
    /// Who is connected, and their run-time parameters.
    pub fn info(&self) -> &Arc<SessionInfo> {
        &self.info
    }

    /// The SQL layer's session underneath.
    pub fn sql_session(&self) -> &Session {
        &self.session
    }

    /// DataFusion state for one statement: the database's, with this session's functions,
    /// identity (read by catalog tables) and `datafusion.*` options.
    fn state(&self) -> Result<SessionState> {
        let mut state = self.session.statement_state();
        for f in self.functions.iter() {
            datafusion::execution::FunctionRegistry::register_udf(&mut state, Arc::new(f.clone()))?;
        }
        state.config_mut().set_extension(Arc::clone(&self.info));
        for (key, value) in self.info.datafusion_options() {
            state.config_mut().options_mut().set(&key, &value)?;
        }
        Ok(state)
    }

    /// Parses and runs every statement in `sql`, stopping at the first error.
    pub async fn execute_all(&self, sql: &str) -> Result<Vec<QueryResult>> {
        let mut out = Vec::new();
        for statement in parse_statements(sql)? {
            out.push(self.execute(&statement).await?);
        }
        Ok(out)
    }

    /// Runs one statement.
    pub async fn execute(&self, statement: &WeirStatement) -> Result<QueryResult> {
        let result = self.execute_unfailed(statement).await;
        if result.is_err() {
            // As in PostgreSQL, any failed statement fails an open transaction.
            self.session.fail_transaction().await;
        }
        result
    }

    async fn execute_unfailed(&self, statement: &WeirStatement) -> Result<QueryResult> {
        match statement {
            WeirStatement::Sql(statement) => {
                if let Some(result) = self.transaction_statement(statement).await? {
                    return Ok(result);
                }
                if let Statement::Discard { .. } = statement.as_ref() {
                    self.session.close_all_cursors().await;
                }
                if let Some(result) =
                    crate::session_statements::execute(&self.info, &self.session, statement)?
                {
                    return Ok(result);
                }
                if let Statement::Copy { .. } = statement.as_ref() {
                    let copy = self.session.start_copy(statement)?;
                    let columns = copy.column_count();
                    *self.copy.lock().await = Some((copy, None));
                    return Ok(QueryResult::CopyIn { columns });
                }
                if let Statement::CreateTable(_) = statement.as_ref() {
                    return self
                        .session
                        .execute(&WeirStatement::Sql(statement.clone()))
                        .await;
                }
                if let Statement::Truncate(truncate) = statement.as_ref() {
                    return self.truncate(truncate).await;
                }
                if weir_sql::dml::is_dml(statement) {
                    let plan = self.plan_dml(statement).await?;
                    return self.execute_dml(plan).await;
                }
                let plan = self.plan_statement(statement).await?;
                self.execute_plan(plan).await
            }
            WeirStatement::DeclareCursor(declare) => match &declare.query {
                // The cursor's query is planned as this session's queries are (rewrites,
                // session functions).
                CursorQuery::Query(query) => {
                    let plan = self.plan_statement(query).await?;
                    let result = self.execute_plan(plan).await?;
                    self.session.declare_query_cursor(declare, result).await
                }
                CursorQuery::Subscribe(_) => self.session.execute(statement).await,
            },
            weir => self.session.execute(weir).await,
        }
    }

    /// `BEGIN`, `COMMIT`, `ROLLBACK`: the transaction over the session's table writes.
    async fn transaction_statement(&self, statement: &Statement) -> Result<Option<QueryResult>> {
        Ok(Some(match statement {
            Statement::StartTransaction { .. } => {
                self.session.begin_transaction().await;
                command("BEGIN")
            }
            Statement::Commit { .. } => command(self.session.commit_transaction().await?),
            Statement::Rollback {
                savepoint: None, ..
            } => {
                self.session.rollback_transaction().await;
                command("ROLLBACK")
            }
            // Writes cannot be taken back to a savepoint: refused rather than kept silently.
            Statement::Rollback {
                savepoint: Some(_), ..
            } if self.session.transaction_has_writes().await => {
                return Err(SqlError::new(
                    SqlErrorKind::FeatureNotSupported,
                    "ROLLBACK TO SAVEPOINT after writing to a table is not supported: roll back \
                     the whole transaction",
                ));
            }
            _ => return Ok(None),
        }))
    }

    /// `TRUNCATE [TABLE] t, …` (dbt's re-seed): every row of each table deleted, as `DELETE
    /// FROM t` is (so views over the tables retract them).
    async fn truncate(
        &self,
        truncate: &datafusion::sql::sqlparser::ast::Truncate,
    ) -> Result<QueryResult> {
        for target in &truncate.table_names {
            for statement in parse_statements(&format!("DELETE FROM {}", target.name))? {
                let WeirStatement::Sql(delete) = statement else {
                    continue;
                };
                let plan = self.plan_dml(&delete).await?;
                self.execute_dml(plan).await?;
            }
        }
        Ok(command("TRUNCATE TABLE"))
    }

    /// Data of the `COPY … FROM STDIN` in progress. An error is kept for the end of the copy.
    pub async fn copy_data(&self, data: &[u8]) {
        if let Some((copy, error)) = self.copy.lock().await.as_mut()
            && error.is_none()
            && let Err(e) = copy.push(data)
        {
            *error = Some(e);
        }
    }

    /// The end of the copy: its rows are written as one statement; returns how many.
    pub async fn copy_done(&self) -> Result<usize> {
        let Some((copy, error)) = self.copy.lock().await.take() else {
            return Err(SqlError::new(
                SqlErrorKind::Internal,
                "CopyDone without a COPY in progress",
            ));
        };
        if let Some(e) = error {
            return Err(e);
        }
        self.session.finish_copy(&self.state()?, copy).await
    }

    /// The client gave up the copy: nothing of it is written.
    pub async fn copy_failed(&self) {
        self.copy.lock().await.take();
    }

    /// Plans `INSERT`, `UPDATE` or `DELETE` in this session, after the rewrites.
    pub async fn plan_dml(&self, statement: &Statement) -> Result<DmlPlan> {
        let state = self.state()?;
        let mut statement = statement.clone();
        let is_table_function = |name: &str| state.table_functions().contains_key(name);
        crate::rewrite::rewrite(&mut statement, &is_table_function)?;
        self.session.plan_dml(&state, &statement).await
    }

    /// Runs a planned `INSERT`, `UPDATE` or `DELETE` in this session.
    pub async fn execute_dml(&self, plan: DmlPlan) -> Result<QueryResult> {
        self.session.execute_dml(self.state()?, plan).await
    }

    /// Plans a query (or EXPLAIN …) in this session, after the client-compatibility rewrites.
    pub async fn plan_statement(&self, statement: &Statement) -> Result<LogicalPlan> {
        let state = self.state()?;
        let mut statement = statement.clone();
        let is_table_function = |name: &str| state.table_functions().contains_key(name);
        crate::rewrite::rewrite(&mut statement, &is_table_function)?;
        self.session.plan_statement_in(&state, &statement).await
    }

    /// Executes a planned statement in this session. Rows that fail while they are sent (a
    /// division by zero in a row) fail an open transaction, as any failed statement does.
    pub async fn execute_plan(&self, plan: LogicalPlan) -> Result<QueryResult> {
        let result = self.session.execute_plan_in(self.state()?, plan).await;
        match result {
            Ok(QueryResult::Rows { schema, stream }) => {
                let session = self.session.clone();
                let stream = stream.inspect_err(move |_| session.fail_transaction_now());
                Ok(QueryResult::Rows {
                    schema: Arc::clone(&schema),
                    stream: Box::pin(
                        datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                            schema, stream,
                        ),
                    ),
                })
            }
            Err(e) => {
                self.session.fail_transaction().await;
                Err(e)
            }
            other => other,
        }
    }

    /// The schema a statement's rows will have (None: it returns no rows).
    pub async fn result_schema(&self, statement: &WeirStatement) -> Result<Option<SchemaRef>> {
        match statement {
            WeirStatement::Sql(s) if matches!(s.as_ref(), Statement::Query(_)) => {
                let plan = self.plan_statement(s).await?;
                Ok(Some(Arc::new(plan.schema().as_arrow().clone())))
            }
            WeirStatement::Sql(s) => Ok(crate::session_statements::result_schema(s)),
            weir => self.session.result_schema(weir).await,
        }
    }
}
