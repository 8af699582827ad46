//! Windows: the [`WindowSpec`] every layer shares, the [`WindowAssigner`] that adds
//! `window_start` / `window_end` to rows, and the `TUMBLE(…)`, `HOP(…)`, `CUMULATE(…)` and
//! `SESSION(…)` relation ([`WindowedTable`]) that the SQL layer plans against.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

mod assign;
mod spec;

pub use assign::WindowAssigner;
pub use spec::{WindowSpec, humanize_nanos};

/// Name of the column holding a window's start.
pub const WINDOW_START: &str = "window_start";
/// Name of the column holding a window's end (exclusive).
pub const WINDOW_END: &str = "window_end";

/// What a windowing relation (`TUMBLE(input, ts, size [, offset])` and the like) reads.
#[derive(Debug, Clone)]
pub struct WindowedInput {
    /// Name of the source or view windowed.
    pub input: String,
    /// Schema of that input.
    pub input_schema: SchemaRef,
    /// The assigner that adds the window columns.
    pub assigner: WindowAssigner,
}

/// A windowing relation as DataFusion sees it while planning a view. The stream planner
/// recognises it and turns it into a [`WindowAssigner`] step; it has no batch scan.
#[derive(Debug)]
pub struct WindowedTable {
    windowed: WindowedInput,
}

impl WindowedTable {
    /// A relation for `windowed`.
    pub fn new(windowed: WindowedInput) -> Self {
        Self { windowed }
    }

    /// What is windowed, and how.
    pub fn windowed(&self) -> &WindowedInput {
        &self.windowed
    }
}

#[async_trait]
impl TableProvider for WindowedTable {
    fn schema(&self) -> SchemaRef {
        self.windowed.assigner.output_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Plan(format!(
            "{}({}, …) can only be used in CREATE MATERIALIZED VIEW; in an ad-hoc query \
             use date_bin(INTERVAL …, {}) to bucket rows",
            self.windowed.assigner.spec().function(),
            self.windowed.input,
            self.windowed.assigner.time_column()
        )))
    }
}
