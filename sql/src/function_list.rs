//! `weir_functions` (and `SHOW FUNCTIONS`, and `information_schema.routines` in the PostgreSQL
//! front end): every function a query can call, read from the querying session's registry, so
//! function libraries registered when the database was built appear with the built-ins.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Documentation;

/// One callable name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    /// The name (aliases are listed under their own names).
    pub name: String,
    /// `scalar`, `aggregate` or `window`.
    pub kind: &'static str,
    /// What it does, when the function documents itself.
    pub description: Option<String>,
    /// An example call, when documented.
    pub syntax: Option<String>,
}

/// Every function `session` can call, by name.
pub fn functions(session: &dyn Session) -> Vec<FunctionInfo> {
    let mut out: BTreeMap<String, FunctionInfo> = BTreeMap::new();
    let mut add = |name: &String, kind: &'static str, doc: Option<&Documentation>| {
        out.entry(name.clone()).or_insert_with(|| FunctionInfo {
            name: name.clone(),
            kind,
            description: doc.map(|d| d.description.clone()),
            syntax: doc.map(|d| d.syntax_example.clone()),
        });
    };
    for (name, f) in session.scalar_functions() {
        add(name, "scalar", f.documentation());
    }
    for (name, f) in session.aggregate_functions() {
        add(name, "aggregate", f.documentation());
    }
    for (name, f) in session.window_functions() {
        add(name, "window", f.documentation());
    }
    out.into_values().collect()
}

/// Schema of `weir_functions`.
pub fn functions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, true),
        Field::new("syntax", DataType::Utf8, true),
    ]))
}

/// Rows of `weir_functions`.
pub fn functions_batch(session: &dyn Session) -> DfResult<RecordBatch> {
    let list = functions(session);
    Ok(RecordBatch::try_new(
        functions_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(list.iter().map(|f| &f.name))),
            Arc::new(StringArray::from_iter_values(list.iter().map(|f| f.kind))),
            Arc::new(StringArray::from_iter(
                list.iter().map(|f| f.description.as_deref()),
            )),
            Arc::new(StringArray::from_iter(
                list.iter().map(|f| f.syntax.as_deref()),
            )),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    #[test]
    fn lists_each_kind_once_per_name() {
        let state = SessionContext::new().state();
        let list = functions(&state);
        let kind = |name: &str| list.iter().find(|f| f.name == name).map(|f| f.kind);
        assert_eq!(kind("abs"), Some("scalar"));
        assert_eq!(kind("sum"), Some("aggregate"));
        assert_eq!(kind("row_number"), Some("window"));
        let abs = list.iter().find(|f| f.name == "abs");
        assert!(abs.is_some_and(|f| f.description.is_some()));
        let mut names: Vec<&str> = list.iter().map(|f| f.name.as_str()).collect();
        names.dedup();
        assert_eq!(names.len(), list.len());
    }
}
