//! `INSERT`, `UPDATE` and `DELETE` on tables.
//!
//! DataFusion plans each statement (column mapping, casts, defaults, parameter types); Weir runs
//! the plan's input to get the rows the statement touches and turns them into the table's
//! changes under its write lock ([`weir_engine::table`]):
//!
//! - `INSERT`: the rows to insert; a key already live is a unique violation, or, with
//!   `ON CONFLICT`, skipped or updated (`insert.rs`);
//! - `UPDATE`: the new rows beside the old ones (one scan, so they pair up); same key → an
//!   update pair, a changed key → delete + insert (`update.rs`);
//! - `DELETE`: the live rows the filter keeps.
//!
//! A statement is planned once ([`Session::plan_dml`]) and run with bound parameters
//! ([`Session::execute_dml`]), so the extended protocol prepares it like a query. Outside a
//! transaction every statement commits by itself; inside one the writes commit together
//! (`transaction.rs`).

mod copy;
mod insert;
mod transaction;
mod update;

use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Statement, TableObject};
use weir_engine::catalog::Relation;
use weir_engine::changes::Changes;
use weir_engine::table::TableWriter;

pub use self::copy::CopyIn;
pub(crate) use self::insert::OnConflictPlan;
use crate::database::{QueryResult, Session};
use crate::error::{Result, SqlError, SqlErrorKind};
use crate::parser::normalize_name;
use crate::unresolved::planning_error;

/// A planned `INSERT`, `UPDATE` or `DELETE`.
#[derive(Debug, Clone)]
pub struct DmlPlan {
    table: Arc<TableWriter>,
    kind: DmlKind,
    /// Rows to insert; new rows beside old ones (`UPDATE`); rows to delete.
    input: LogicalPlan,
}

#[derive(Debug, Clone)]
enum DmlKind {
    Insert(Option<Box<OnConflictPlan>>),
    Update,
    Delete,
}

impl DmlPlan {
    /// The plan whose parameters the client binds (types are inferred from it).
    pub fn input(&self) -> &LogicalPlan {
        &self.input
    }

    /// The plan with parameter values bound.
    pub fn with_params(mut self, values: impl Into<ParamValues>) -> Result<Self> {
        self.input = self.input.with_param_values(values)?;
        Ok(self)
    }
}

/// True for the statements [`Session::plan_dml`] plans.
pub fn is_dml(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
    )
}

impl Session {
    /// Plans a DML statement in `state`.
    pub async fn plan_dml(&self, state: &SessionState, statement: &Statement) -> Result<DmlPlan> {
        let mut statement = statement.clone();
        let (on_conflict, alias) = match &mut statement {
            Statement::Insert(insert) => {
                if insert.returning.is_some() {
                    return Err(SqlError::new(
                        SqlErrorKind::FeatureNotSupported,
                        "INSERT … RETURNING is not supported",
                    ));
                }
                let alias = insert
                    .table_alias
                    .take()
                    .map(|a| crate::parser::normalize_ident(&a.alias));
                (insert.on.take(), alias)
            }
            _ => (None, None),
        };
        let name = target_name(&statement)?;
        let table = self.writable_table(&name)?;
        let df = DfStatement::Statement(Box::new(statement));
        let plan = state
            .statement_to_plan(df.clone())
            .await
            .map_err(|e| planning_error(state, &df, e))?;
        let LogicalPlan::Dml(DmlStatement { op, input, .. }) = plan else {
            return Err(SqlError::new(
                SqlErrorKind::Internal,
                "a DML statement did not plan as one",
            ));
        };
        let (kind, input) = match op {
            WriteOp::Insert(_) => {
                let on_conflict = on_conflict
                    .map(|on| OnConflictPlan::plan(&table, &name, alias.clone(), on).map(Box::new))
                    .transpose()?;
                (DmlKind::Insert(on_conflict), input.as_ref().clone())
            }
            WriteOp::Update => (DmlKind::Update, update::with_old_rows(&input, &table)?),
            WriteOp::Delete => (DmlKind::Delete, input.as_ref().clone()),
            other => {
                return Err(SqlError::new(
                    SqlErrorKind::FeatureNotSupported,
                    format!("{other} is not supported"),
                ));
            }
        };
        if !matches!(kind, DmlKind::Insert(_)) && table.key().is_none() {
            return Err(SqlError::new(
                SqlErrorKind::FeatureNotSupported,
                format!(
                    "table \"{name}\" has no primary key: it is append-only, so rows can only be \
                     inserted (declare a PRIMARY KEY to UPDATE and DELETE)"
                ),
            ));
        }
        Ok(DmlPlan { table, kind, input })
    }

    /// Runs a planned DML statement: its changes, committed now or with the transaction.
    pub async fn execute_dml(&self, state: SessionState, plan: DmlPlan) -> Result<QueryResult> {
        let tag = match plan.kind {
            DmlKind::Insert(_) => "INSERT 0",
            DmlKind::Update => "UPDATE",
            DmlKind::Delete => "DELETE",
        };
        let rows = collect(state.clone(), plan.input.clone()).await?;
        let count = self
            .write_rows(&state, &plan.table, &plan.kind, rows)
            .await?;
        Ok(QueryResult::Command {
            tag: tag.to_string(),
            rows: Some(count),
        })
    }

    /// Writes one statement's rows to `table`: computes its changes against the table as this
    /// session's write sees it, applies them, and commits now or leaves them to the transaction.
    /// An error fails an open transaction.
    async fn write_rows(
        &self,
        state: &SessionState,
        table: &Arc<TableWriter>,
        kind: &DmlKind,
        rows: RecordBatch,
    ) -> Result<usize> {
        let mut txn = self.txn.lock().await;
        txn.check_not_failed()?;
        let result = async {
            let mut write = txn.write_on(table).await?;
            let computed = match kind {
                DmlKind::Insert(on_conflict) => {
                    insert::changes(write.table(), table, rows, on_conflict.as_deref(), state).await
                }
                DmlKind::Update => update::changes(write.table(), table, rows),
                DmlKind::Delete => update::deletes(rows),
            };
            let applied = match computed {
                Ok((changes, count)) => write
                    .apply(changes)
                    .await
                    .map(|_| count)
                    .map_err(Into::into),
                Err(e) => Err(e),
            };
            txn.finish_statement(write, applied).await
        }
        .await;
        if result.is_err() {
            txn.fail().await;
        }
        result
    }

    /// Plans and runs a DML statement.
    pub async fn execute_dml_statement(
        &self,
        state: SessionState,
        statement: &Statement,
    ) -> Result<QueryResult> {
        let plan = self.plan_dml(&state, statement).await?;
        self.execute_dml(state, plan).await
    }

    /// The table `name`, if it is one; the error says what it is otherwise.
    pub(crate) fn writable_table(&self, name: &str) -> Result<Arc<TableWriter>> {
        match self.db.catalog.relation(name) {
            Some(Relation::View(v)) => match &v.writer {
                Some(w) => Ok(Arc::clone(w)),
                None if v.fed_by.is_some() => Err(SqlError::new(
                    SqlErrorKind::WrongObjectType,
                    format!(
                        "cannot change table \"{name}\": its rows come from its topic (FORMAT \
                         {}); produce to the topic instead",
                        v.fed_by.as_deref().unwrap_or_default()
                    ),
                )),
                None => Err(SqlError::new(
                    SqlErrorKind::WrongObjectType,
                    format!(
                        "cannot change materialized view \"{name}\": its rows come from its query \
                         (write to a table it reads)"
                    ),
                )),
            },
            Some(Relation::Source(_)) => Err(SqlError::new(
                SqlErrorKind::WrongObjectType,
                format!(
                    "cannot change source \"{name}\": its rows come from its connector (CREATE \
                     TABLE for rows written by SQL)"
                ),
            )),
            None => Err(SqlError::new(
                SqlErrorKind::UndefinedTable,
                format!("relation \"{name}\" does not exist"),
            )),
        }
    }
}

/// The table a DML statement writes.
fn target_name(statement: &Statement) -> Result<String> {
    let name = match statement {
        Statement::Insert(insert) => match &insert.table {
            TableObject::TableName(name) => name,
            _ => {
                return Err(SqlError::new(
                    SqlErrorKind::FeatureNotSupported,
                    "INSERT INTO something other than a table is not supported",
                ));
            }
        },
        Statement::Update(update) => match &update.table.relation {
            datafusion::sql::sqlparser::ast::TableFactor::Table { name, .. } => name,
            _ => {
                return Err(SqlError::new(
                    SqlErrorKind::FeatureNotSupported,
                    "UPDATE of something other than a table",
                ));
            }
        },
        Statement::Delete(delete) => {
            let from = match &delete.from {
                datafusion::sql::sqlparser::ast::FromTable::WithFromKeyword(t)
                | datafusion::sql::sqlparser::ast::FromTable::WithoutKeyword(t) => t,
            };
            match from.as_slice() {
                [one] => match &one.relation {
                    datafusion::sql::sqlparser::ast::TableFactor::Table { name, .. } => name,
                    _ => {
                        return Err(SqlError::new(
                            SqlErrorKind::FeatureNotSupported,
                            "DELETE from something other than a table",
                        ));
                    }
                },
                _ => {
                    return Err(SqlError::new(
                        SqlErrorKind::FeatureNotSupported,
                        "DELETE from several tables is not supported",
                    ));
                }
            }
        }
        _ => {
            return Err(SqlError::new(SqlErrorKind::Internal, "not a DML statement"));
        }
    };
    normalize_name(name)
}

/// Runs `plan` to one batch.
async fn collect(state: SessionState, plan: LogicalPlan) -> Result<RecordBatch> {
    let df = DataFrame::new(state, plan);
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    Ok(concat_batches(&schema, batches.iter())?)
}

/// `rows` in the table's schema (DataFusion's plan has the table's types; nullability may
/// differ). A NULL in a NOT NULL column is PostgreSQL's not-null violation.
fn conform(table: &TableWriter, rows: RecordBatch) -> Result<RecordBatch> {
    let schema = table.table().schema_ref();
    for (field, column) in schema.fields().iter().zip(rows.columns()) {
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(SqlError::new(
                SqlErrorKind::NotNullViolation,
                format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    field.name(),
                    table.name()
                ),
            ));
        }
    }
    Ok(RecordBatch::try_new(schema, rows.columns().to_vec())?)
}

/// Result of turning rows into changes: the changes and the row count the command reports.
pub(crate) type Computed = (Changes, usize);
