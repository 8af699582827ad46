//! The function libraries a database was built with ([`FunctionLibrary`]), asked in order: the
//! first library that knows a function answers for it.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::execution::context::SessionContext;
use datafusion::physical_expr::PhysicalExpr;
use weir_engine::function_library::{BoundWindowCall, FunctionLibrary, WindowCall};

/// The registered libraries.
#[derive(Debug, Default, Clone)]
pub struct Functions {
    libraries: Vec<Arc<dyn FunctionLibrary>>,
}

impl Functions {
    /// The libraries, asked in this order.
    pub fn new(libraries: Vec<Arc<dyn FunctionLibrary>>) -> Self {
        Self { libraries }
    }

    /// Registers every library's functions with `ctx`.
    pub fn register(&self, ctx: &SessionContext) -> Result<()> {
        self.libraries.iter().try_for_each(|l| l.register(ctx))
    }

    /// See [`FunctionLibrary::parameter_names`].
    pub fn parameter_names(&self, name: &str) -> Option<Vec<&'static str>> {
        self.libraries.iter().find_map(|l| l.parameter_names(name))
    }

    /// See [`FunctionLibrary::takes_row_input`].
    pub fn takes_row_input(&self, name: &str) -> bool {
        self.libraries.iter().any(|l| l.takes_row_input(name))
    }

    /// See [`FunctionLibrary::takes_event_time`].
    pub fn takes_event_time(&self, name: &str) -> bool {
        self.libraries.iter().any(|l| l.takes_event_time(name))
    }

    /// See [`FunctionLibrary::window_function`].
    pub fn window_function(
        &self,
        call: &WindowCall<'_>,
        order_by: &Arc<dyn PhysicalExpr>,
    ) -> Option<Result<BoundWindowCall>> {
        self.libraries
            .iter()
            .find_map(|l| l.window_function(call, order_by))
    }
}
