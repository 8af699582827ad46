//! Tables DataFusion sees besides views: sources (which are streams, read only by views), tables
//! (`WritableTable`: a table's rows, defaults and primary key) and the windowing table functions
//! (`TUMBLE`, `HOP`, `CUMULATE`, `SESSION`). System tables are in `system_tables.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Constraint, Constraints, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use weir_engine::catalog::{Catalog, Relation};
use weir_engine::table::TableWriter;
use weir_engine::view_table::ViewTable;
use weir_engine::window::{WindowAssigner, WindowSpec, WindowedInput, WindowedTable};

/// A source as a table: plannable (views read it), but not scannable ad hoc.
#[derive(Debug)]
pub struct SourceTable {
    /// Source name.
    pub name: String,
    schema: SchemaRef,
}

impl SourceTable {
    /// The table for source `name`.
    pub fn new(name: String, schema: SchemaRef) -> Self {
        Self { name, schema }
    }
}

#[async_trait]
impl TableProvider for SourceTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Plan(format!(
            "\"{}\" is a source, an unbounded stream: query it through a materialized view \
             (CREATE MATERIALIZED VIEW … AS SELECT … FROM {})",
            self.name, self.name
        )))
    }
}

/// Which windowing relation a [`WindowFunction`] is.
#[derive(Debug, Clone, Copy)]
pub enum WindowKind {
    /// `TUMBLE(relation, time_column, size [, offset])`
    Tumble,
    /// `HOP(relation, time_column, slide, size [, offset])`
    Hop,
    /// `CUMULATE(relation, time_column, step, max_size [, offset])`
    Cumulate,
    /// `SESSION(relation, time_column, gap)`
    Session,
}

impl WindowKind {
    /// Every kind, for registration.
    pub const ALL: [WindowKind; 4] = [
        WindowKind::Tumble,
        WindowKind::Hop,
        WindowKind::Cumulate,
        WindowKind::Session,
    ];

    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            WindowKind::Tumble => "TUMBLE",
            WindowKind::Hop => "HOP",
            WindowKind::Cumulate => "CUMULATE",
            WindowKind::Session => "SESSION",
        }
    }

    /// Interval arguments after the time column: required, then optional (the offset).
    fn intervals(self) -> (usize, usize) {
        match self {
            WindowKind::Tumble => (1, 1),
            WindowKind::Hop | WindowKind::Cumulate => (2, 1),
            WindowKind::Session => (1, 0),
        }
    }

    fn usage(self) -> &'static str {
        match self {
            WindowKind::Tumble => {
                "usage: TUMBLE(source_or_view, time_column, INTERVAL 'size' [, INTERVAL 'offset'])"
            }
            WindowKind::Hop => {
                "usage: HOP(source_or_view, time_column, INTERVAL 'slide', INTERVAL 'size' [, INTERVAL 'offset'])"
            }
            WindowKind::Cumulate => {
                "usage: CUMULATE(source_or_view, time_column, INTERVAL 'step', INTERVAL 'max size' [, INTERVAL 'offset'])"
            }
            WindowKind::Session => "usage: SESSION(source_or_view, time_column, INTERVAL 'gap')",
        }
    }

    /// The spec from the interval arguments (checked for count by the caller).
    fn spec(self, intervals: &[i64], offset: i64) -> WindowSpec {
        match self {
            WindowKind::Tumble => WindowSpec::Tumble {
                size: intervals[0],
                offset,
            },
            WindowKind::Hop => WindowSpec::Hop {
                slide: intervals[0],
                size: intervals[1],
                offset,
            },
            WindowKind::Cumulate => WindowSpec::Cumulate {
                step: intervals[0],
                size: intervals[1],
                offset,
            },
            WindowKind::Session => WindowSpec::Session { gap: intervals[0] },
        }
    }
}

/// A windowing relation (`TUMBLE`, `HOP`, `CUMULATE`, `SESSION`) over a source or view.
#[derive(Debug)]
pub struct WindowFunction {
    catalog: Arc<Catalog>,
    kind: WindowKind,
}

impl WindowFunction {
    /// The `kind` relation, resolving relations in `catalog`.
    pub fn new(catalog: Arc<Catalog>, kind: WindowKind) -> Self {
        Self { catalog, kind }
    }

    fn usage(&self) -> DataFusionError {
        DataFusionError::Plan(self.kind.usage().into())
    }

    fn column_name(&self, expr: &Expr) -> DfResult<String> {
        match expr {
            Expr::Column(c) => Ok(c.name.clone()),
            _ => Err(self.usage()),
        }
    }

    fn interval_nanos(&self, expr: &Expr) -> DfResult<i64> {
        interval_nanos(expr).ok_or_else(|| self.usage())?
    }
}

/// An INTERVAL literal as nanoseconds (months are refused: they have no fixed length); None
/// when `expr` is not an interval literal.
fn interval_nanos(expr: &Expr) -> Option<DfResult<i64>> {
    let value = match expr {
        Expr::Literal(v, _) => v,
        _ => return None,
    };
    let nanos = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            i64::from(v.days) * 86_400_000_000_000 + v.nanoseconds
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            i64::from(v.days) * 86_400_000_000_000 + i64::from(v.milliseconds) * 1_000_000
        }
        ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(_) => {
            return Some(Err(DataFusionError::Plan(
                "window sizes in months or years are not supported (use days)".into(),
            )));
        }
        _ => return None,
    };
    Some(Ok(nanos))
}

impl TableFunctionImpl for WindowFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let (required, optional) = self.kind.intervals();
        if !(2 + required..=2 + required + optional).contains(&exprs.len()) {
            return Err(self.usage());
        }
        let input = self.column_name(&exprs[0])?;
        let time_column = self.column_name(&exprs[1])?;
        let intervals = exprs[2..2 + required]
            .iter()
            .map(|e| self.interval_nanos(e))
            .collect::<DfResult<Vec<i64>>>()?;
        let offset = match exprs.get(2 + required) {
            Some(e) => self.interval_nanos(e)?,
            None => 0,
        };
        let function = self.kind.name();
        let input_schema = match self.catalog.relation(&input) {
            Some(Relation::Source(s)) => s.schema(),
            Some(Relation::View(v)) => datafusion::catalog::TableProvider::schema(v.table.as_ref()),
            None => {
                return Err(DataFusionError::Plan(format!(
                    "{function}: table \"{input}\" not found (no source or materialized view of that name)"
                )));
            }
        };
        let assigner = WindowAssigner::try_new(
            &input_schema,
            &time_column,
            self.kind.spec(&intervals, offset),
        )
        .map_err(|e| DataFusionError::Plan(e.to_string()))?;
        Ok(Arc::new(WindowedTable::new(WindowedInput {
            input,
            input_schema,
            assigner,
        })))
    }
}

impl WritableTable {
    /// The provider of `table`'s rows, with column `defaults` and primary `key`.
    pub fn new(
        table: Arc<ViewTable>,
        writer: Option<Arc<TableWriter>>,
        defaults: HashMap<String, Expr>,
        key: Option<Vec<usize>>,
    ) -> Self {
        Self {
            writer,
            planned_schema: all_nullable(&table.schema_ref()),
            table,
            defaults,
            constraints: Constraints::new_unverified(
                key.map(|k| vec![Constraint::PrimaryKey(k)])
                    .unwrap_or_default(),
            ),
        }
    }

    /// The table's rows.
    pub fn rows(&self) -> &ViewTable {
        &self.table
    }
}

/// `schema` with every column nullable.
fn all_nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
            .collect::<Vec<_>>(),
    ))
}

/// A table as DataFusion sees it: the rows of its [`ViewTable`], the column defaults `INSERT`
/// fills in, and the primary key.
#[derive(Debug)]
pub struct WritableTable {
    table: Arc<ViewTable>,
    /// The schema DataFusion plans with: every column nullable, so a NULL for a NOT NULL column
    /// reaches Weir's own check (PostgreSQL's 23502) instead of failing inside a plan.
    planned_schema: SchemaRef,
    defaults: HashMap<String, Expr>,
    constraints: Constraints,
    /// The writer of a table written by statements: scans wait until its log is replayed.
    writer: Option<Arc<TableWriter>>,
}

#[async_trait]
impl TableProvider for WritableTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.planned_schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.table.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // After a restart, every acknowledged write is in the table once its log is replayed.
        if let Some(writer) = &self.writer {
            writer.wait_replayed().await;
        }
        self.table.scan(state, projection, filters, limit).await
    }
}
