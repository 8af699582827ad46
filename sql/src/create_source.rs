//! `CREATE SOURCE`: the connector checks the options and declares the schema; the watermark
//! expression is planned against it; the source is registered (as an unscannable table) and
//! persisted in the catalog.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::DFSchema;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::sqlparser::ast::{ColumnDef, DataType as SqlType, ExprWithAlias};
use tracing::info;
use weir_engine::catalog::SourceEntry;
use weir_engine::checkpoint::catalog_file::{CatalogObject, ObjectKind as PersistedKind};
use weir_engine::options::Options;
use weir_engine::source::JSON_TYPE_KEY;
use weir_engine::source::{FormatSpec, SourceSpec, WatermarkSpec};
use weir_engine::source_errors::BadRecords;

use crate::database::{DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FUTURE, QueryResult, Session, command};
use crate::ddl::{Publication, lookup_connector};
use crate::error::{Result, SqlError, SqlErrorKind};
use crate::parser::CreateSource;
use crate::tables::SourceTable;

impl Session {
    pub(crate) async fn create_source(
        &self,
        c: &CreateSource,
        replay: Option<&CatalogObject>,
    ) -> Result<QueryResult> {
        let Some(_guard) = self
            .begin_create(&c.name, c.if_not_exists, |cat| {
                cat.relation(&c.name).is_some()
            })
            .await?
        else {
            return Ok(command("CREATE SOURCE"));
        };
        let state = self.db.ctx.state();
        let columns = if c.columns.is_empty() {
            None
        } else {
            Some(plan_columns(&state, &c.columns).await?)
        };
        let mut options = Options::new(format!("source \"{}\"", c.name), c.options.clone())?;
        let connector = options.take_required("connector")?;
        let idle_timeout = options
            .take_duration("source.idle_timeout")?
            .unwrap_or(DEFAULT_IDLE_TIMEOUT);
        let max_future = match options.take("source.max_future") {
            None => Some(DEFAULT_MAX_FUTURE),
            Some(v) if v.eq_ignore_ascii_case("none") => None,
            Some(v) => Some(weir_engine::options::parse_duration(&v).map_err(|e| {
                SqlError::new(
                    SqlErrorKind::InvalidParameter,
                    format!("source.max_future: {e} (or 'none')"),
                )
            })?),
        };
        let bad_records = options
            .take("bad_records")
            .map(|v| BadRecords::parse(&v))
            .transpose()?
            .unwrap_or_default();
        let factory = lookup_connector(&self.db.connectors, "connector", &connector)?;
        let mut spec = SourceSpec {
            name: c.name.clone(),
            columns,
            options,
            format: c
                .format
                .clone()
                .map(|(format, encode)| FormatSpec { format, encode }),
            include: c.include.clone(),
        };
        let provider = factory.create_source(&mut spec).await?;
        if let Some(text) = provider.creation_notice() {
            tracing::warn!(source = %c.name, "{text}");
            self.notice(format!("source \"{}\": {text}", c.name));
        }
        if let Some(include) = spec.include.first() {
            return Err(SqlError::new(
                SqlErrorKind::FeatureNotSupported,
                format!(
                    "the {connector} connector has no metadata to INCLUDE (INCLUDE {})",
                    include.kind
                ),
            ));
        }
        spec.options.finish()?;
        let schema = provider.schema();
        let watermark = c
            .watermark
            .as_ref()
            .map(|(column, expr)| {
                plan_watermark(
                    self,
                    &schema,
                    &format!("source \"{}\"", c.name),
                    column,
                    expr,
                )
            })
            .transpose()?;
        let entry = SourceEntry {
            name: c.name.clone(),
            sql: c.sql.clone(),
            provider,
            watermark,
            idle_timeout,
            max_future,
            bad_records,
        };
        let pinned: BTreeMap<String, String> =
            entry.provider.pinned_options().into_iter().collect();
        let mut publication = Publication::new(&self.db, &c.name);
        publication.add_to_catalog(|cat| cat.add_source(entry).map(|_| ()))?;
        publication.register_table(Arc::new(SourceTable::new(c.name.clone(), schema)))?;
        let id = self.object_id(replay);
        publication
            .persist(PersistedKind::Source, &id, &c.sql, pinned, replay)
            .await?;
        publication.commit();
        info!(source = %c.name, connector = %connector, "source created");
        Ok(command("CREATE SOURCE"))
    }
}

/// Plans `WATERMARK FOR column AS expr` against `schema` (of a source, or of a table over a
/// topic): the column must be a timestamp, and so must the expression.
pub(crate) fn plan_watermark(
    session: &Session,
    schema: &datafusion::arrow::datatypes::SchemaRef,
    owner: &str,
    column: &str,
    expr: &datafusion::sql::sqlparser::ast::Expr,
) -> Result<WatermarkSpec> {
    let state = session.db.ctx.state();
    let field = schema.field_with_name(column).map_err(|_| {
        SqlError::new(
            SqlErrorKind::UndefinedColumn,
            format!("WATERMARK FOR \"{column}\": {owner} has no such column"),
        )
    })?;
    if !matches!(field.data_type(), DataType::Timestamp(..)) {
        return Err(SqlError::new(
            SqlErrorKind::InvalidParameter,
            format!(
                "WATERMARK FOR \"{column}\": the column must be a TIMESTAMP or TIMESTAMPTZ, not {}",
                field.data_type()
            ),
        ));
    }
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let logical = state.create_logical_expr_from_sql_expr(
        ExprWithAlias {
            expr: expr.clone(),
            alias: None,
        },
        &df_schema,
    )?;
    let physical = state.create_physical_expr(logical, &df_schema)?;
    if !matches!(physical.data_type(schema)?, DataType::Timestamp(..)) {
        return Err(SqlError::new(
            SqlErrorKind::InvalidParameter,
            format!("the WATERMARK expression \"{expr}\" must produce a timestamp"),
        ));
    }
    Ok(WatermarkSpec {
        column: column.to_string(),
        expr: physical,
        text: expr.to_string(),
    })
}

/// The Arrow schema of a source's declared columns. `JSON`/`JSONB` columns hold a value's JSON
/// text (marked with [`JSON_TYPE_KEY`] metadata, so decoders keep the raw text); `STRUCT<…>`
/// columns need the generic dialect to plan (PostgreSQL's has no such type).
pub(crate) async fn plan_columns(
    state: &datafusion::execution::SessionState,
    columns: &[ColumnDef],
) -> Result<datafusion::arrow::datatypes::SchemaRef> {
    let mut json = Vec::new();
    let mut nested = false;
    let defs: Vec<String> = columns
        .iter()
        .map(|d| {
            let mut d = d.clone();
            match d.data_type {
                SqlType::JSON | SqlType::JSONB => {
                    json.push(d.name.value.clone());
                    d.data_type = SqlType::Text;
                }
                SqlType::Struct(..) => nested = true,
                _ => {}
            }
            d.to_string()
        })
        .collect();
    let sql = format!("CREATE TABLE weir_declared_columns ({})", defs.join(", "));
    let dialect = if nested {
        datafusion::config::Dialect::Generic
    } else {
        datafusion::config::Dialect::PostgreSQL
    };
    let statement = state.sql_to_statement(&sql, &dialect)?;
    let plan = state.statement_to_plan(statement).await?;
    let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(table)) = plan else {
        return Err(SqlError::new(
            SqlErrorKind::Internal,
            "could not plan the column list",
        ));
    };
    let schema = table.input.schema().as_arrow();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let f = f.as_ref().clone();
            if json.iter().any(|name| name == f.name()) {
                f.with_metadata(
                    [(JSON_TYPE_KEY.to_string(), "jsonb".to_string())]
                        .into_iter()
                        .collect(),
                )
            } else {
                f
            }
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}
