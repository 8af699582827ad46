//! The contract between the SQL layer and a library of functions that streaming views can run
//! incrementally. `weir-udf` implements it; the server registers it when it builds a database,
//! so neither the engine nor the SQL layer depends on a particular function crate.
//!
//! A library answers three kinds of question:
//! - at start-up, [`FunctionLibrary::register`] adds its functions to DataFusion's registry, so
//!   batch queries and planning see them;
//! - before planning, the SQL layer resolves `name => value` arguments with
//!   [`FunctionLibrary::parameter_names`] and friends;
//! - while planning a view, [`FunctionLibrary::window_function`] turns an
//!   `f(…) OVER (PARTITION BY … ORDER BY ts)` call into the per-key state machine the OVER
//!   operator runs ([`crate::window_function::KeyedWindowFunction`]).

use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::Result;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{WindowFrame, WindowFunctionDefinition};
use datafusion::physical_expr::PhysicalExpr;

use crate::window_function::KeyedWindowFunction;

/// One `OVER` call as the planner hands it to a library.
pub struct WindowCall<'a> {
    /// The function.
    pub function: &'a WindowFunctionDefinition,
    /// Its arguments, as physical expressions over the window's input.
    pub args: &'a [Arc<dyn PhysicalExpr>],
    /// The OVER clause's frame.
    pub frame: &'a WindowFrame,
    /// The window's input schema.
    pub input: &'a Schema,
}

/// A call's per-key state machine and the arguments to evaluate for it.
pub type BoundWindowCall = (Arc<dyn KeyedWindowFunction>, Vec<Arc<dyn PhysicalExpr>>);

/// A set of functions a database offers beyond DataFusion's own. Every question but
/// [`FunctionLibrary::register`] has a default meaning "not one of mine".
pub trait FunctionLibrary: Send + Sync + Debug {
    /// Adds the library's functions to `ctx`.
    fn register(&self, ctx: &SessionContext) -> Result<()>;

    /// The parameter names of `name`, in order, when it takes named parameters: skipped ones
    /// are passed as NULL ("the default").
    fn parameter_names(&self, _name: &str) -> Option<Vec<&'static str>> {
        None
    }

    /// True when `name`'s first argument is a row of features (`ROW(x1, x2, …)`), whose fields
    /// the SQL layer names after the columns they come from.
    fn takes_row_input(&self, _name: &str) -> bool {
        false
    }

    /// True when `name`'s last parameter is the event time, filled from the call's `ORDER BY`.
    fn takes_event_time(&self, _name: &str) -> bool {
        false
    }

    /// The incremental form of `call` and the arguments to evaluate for it. None when the
    /// library has no incremental form of the function; an error when it has one but not for
    /// this call (a frame it cannot run, say).
    fn window_function(
        &self,
        _call: &WindowCall<'_>,
        _order_by: &Arc<dyn PhysicalExpr>,
    ) -> Option<Result<BoundWindowCall>> {
        None
    }
}
