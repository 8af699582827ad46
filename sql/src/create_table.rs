//! `CREATE TABLE`: a table written by `INSERT`, `UPDATE`, `DELETE` and `COPY`, keyed by its
//! primary key (a table without one is append-only). DataFusion plans the column list (types,
//! `NOT NULL`, `DEFAULT`, `PRIMARY KEY`); the engine's [`TableRuntime`] holds the rows, the
//! write-ahead log and the state the newest checkpoint has for the table.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::Constraint;
use datafusion::logical_expr::{DdlStatement, Expr, LogicalPlan};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{CreateTable, CreateTableOptions, Statement};
use tracing::info;
use weir_engine::checkpoint::catalog_file::{CatalogObject, ObjectKind as PersistedKind};
use weir_engine::table::runtime::TableRuntime;

use crate::database::{QueryResult, Session, command};
use crate::ddl::Publication;
use crate::error::{Result, SqlError, SqlErrorKind};
use crate::parser::normalize_name;
use crate::tables::WritableTable;

impl Session {
    pub(crate) async fn create_table(
        &self,
        create: &CreateTable,
        replay: Option<&CatalogObject>,
    ) -> Result<QueryResult> {
        refuse_unsupported(create)?;
        let name = normalize_name(&create.name)?;
        let Some(_guard) = self
            .begin_create(&name, create.if_not_exists, |c| c.relation(&name).is_some())
            .await?
        else {
            return Ok(command("CREATE TABLE"));
        };
        let (schema, key, defaults) = self.plan_columns(create).await?;
        let sql = Statement::CreateTable(create.clone()).to_string();
        let id = self.object_id(replay);
        let durability = self.db.durability.clone();
        let checkpointing = self.view_checkpointing(&name, &id);
        let runtime =
            TableRuntime::build(&name, &sql, Arc::clone(&schema), key.clone(), checkpointing)
                .await?;
        let entry = Arc::clone(runtime.entry());
        let provider = WritableTable::new(
            Arc::clone(&entry.table),
            entry.writer.clone(),
            defaults,
            key,
        );
        let mut publication = Publication::new(&self.db, &name);
        publication.add_to_catalog(|c| c.add_view(Arc::clone(&entry)))?;
        publication.register_table(Arc::new(provider))?;
        publication
            .persist(PersistedKind::Table, &id, &sql, BTreeMap::new(), replay)
            .await?;
        publication.commit();
        let start = runtime.into_start();
        match &durability {
            Some(d) => d.start_or_hold(start),
            None => start(),
        }
        info!(table = %name, "table created");
        Ok(command("CREATE TABLE"))
    }

    /// The table's schema, primary key and column defaults, as DataFusion plans the column list.
    pub(crate) async fn plan_columns(
        &self,
        create: &CreateTable,
    ) -> Result<(SchemaRef, Option<Vec<usize>>, HashMap<String, Expr>)> {
        let state = self.db.ctx.state();
        let statement = DfStatement::Statement(Box::new(Statement::CreateTable(create.clone())));
        let plan = state.statement_to_plan(statement).await?;
        let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(table)) = plan else {
            return Err(SqlError::new(
                SqlErrorKind::Internal,
                "CREATE TABLE did not plan as a table",
            ));
        };
        let mut key = None;
        for constraint in table.constraints.iter() {
            match constraint {
                Constraint::PrimaryKey(columns) if key.is_none() => key = Some(columns.clone()),
                Constraint::PrimaryKey(_) => {
                    return Err(SqlError::new(
                        SqlErrorKind::User,
                        "multiple primary keys for a table are not allowed",
                    ));
                }
                Constraint::Unique(_) => {
                    return Err(SqlError::new(
                        SqlErrorKind::FeatureNotSupported,
                        "UNIQUE constraints are not supported: a table has one key, its \
                         PRIMARY KEY",
                    ));
                }
            }
        }
        let arrow = table.input.schema().as_arrow().clone();
        // Primary key columns are NOT NULL, as in PostgreSQL.
        let fields: Vec<_> = arrow
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let in_key = key.as_ref().is_some_and(|k| k.contains(&i));
                Arc::new(f.as_ref().clone().with_nullable(f.is_nullable() && !in_key))
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        Ok((schema, key, table.column_defaults.into_iter().collect()))
    }
}

/// What `CREATE TABLE` does not do (yet), said clearly rather than half done.
fn refuse_unsupported(create: &CreateTable) -> Result<()> {
    let refuse = |what: &str| Err(SqlError::new(SqlErrorKind::FeatureNotSupported, what));
    if create.query.is_some() {
        return refuse(
            "CREATE TABLE … AS SELECT is not supported: CREATE TABLE, then INSERT INTO … SELECT",
        );
    }
    if create.like.is_some() || create.clone.is_some() {
        return refuse("CREATE TABLE … LIKE / CLONE is not supported");
    }
    if create.external || create.temporary {
        return refuse("EXTERNAL and TEMPORARY tables are not supported");
    }
    if !matches!(create.table_options, CreateTableOptions::None) {
        return refuse(
            "CREATE TABLE … WITH (…) is not supported: a table is written by INSERT, UPDATE, \
             DELETE and COPY (to read a topic, CREATE SOURCE)",
        );
    }
    Ok(())
}
