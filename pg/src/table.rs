//! A catalog table: a schema and a function from the catalog (and the querying session) to rows,
//! computed at scan time. Catalogs hold tens to hundreds of rows, so rows are built as scalar
//! values and turned into columns once per scan.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, new_empty_array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::PgCatalog;
use crate::settings::SessionInfo;

/// `oid` columns (PostgreSQL's unsigned OIDs fit: Weir's stay far below 2³¹).
pub const OID: DataType = DataType::Int32;
/// `name`, `text`, `"char"` columns.
pub const TEXT: DataType = DataType::Utf8;
/// `bool`.
pub const BOOL: DataType = DataType::Boolean;
/// `int2`.
pub const I16: DataType = DataType::Int16;
/// `int4`.
pub const I32: DataType = DataType::Int32;
/// `int8`.
pub const I64: DataType = DataType::Int64;
/// `float4`.
pub const F32: DataType = DataType::Float32;

/// A list type (`text[]`, `oid[]`, `int2vector`).
pub fn list(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// A schema from (name, type) pairs; every column nullable, as catalog columns may be.
pub fn schema(columns: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// A schema from column declarations as PostgreSQL's documentation writes them
/// (`"oid oid, nspname name, nspacl text[]"`); every column nullable, as catalog columns may be.
/// Types: `oid`, `name`, `text`, `char`, `bool`, `int2`, `int4`, `int8`, `float4`, `timestamptz`,
/// and any of them followed by `[]` for an array.
pub fn columns(declaration: &str) -> DfResult<SchemaRef> {
    let fields = declaration
        .split(',')
        .map(|column| {
            let mut parts = column.split_whitespace();
            let (Some(name), Some(type_name), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(DataFusionError::Internal(format!(
                    "catalog column declaration {column:?} is not `name type`"
                )));
            };
            let data_type = match type_name.strip_suffix("[]") {
                Some(item) => list(column_type(item)?),
                None => column_type(type_name)?,
            };
            Ok(Field::new(name, data_type, true))
        })
        .collect::<DfResult<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// The Arrow type of a PostgreSQL catalog column type.
fn column_type(name: &str) -> DfResult<DataType> {
    Ok(match name {
        "oid" => OID,
        "name" | "text" | "char" => TEXT,
        "bool" => BOOL,
        "int2" => I16,
        "int4" => I32,
        "int8" => I64,
        "float4" => F32,
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        other => {
            return Err(DataFusionError::Internal(format!(
                "catalog column type {other:?} is not one Weir's catalogs use"
            )));
        }
    })
}

/// What a row function can read.
pub struct RowContext<'a> {
    /// The catalog.
    pub pg: &'a PgCatalog,
    /// The querying session (None when queried outside a client session).
    pub session: Option<Arc<SessionInfo>>,
    /// DataFusion's session (for the function registry).
    pub state: &'a dyn Session,
}

impl RowContext<'_> {
    /// The connected user, or the owner role's name.
    pub fn user(&self) -> String {
        self.session
            .as_ref()
            .map(|s| s.user())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "weir".into())
    }

    /// The database connected to.
    pub fn database(&self) -> String {
        self.session
            .as_ref()
            .map(|s| s.database())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "weir".into())
    }
}

/// A catalog table's row function.
pub type Rows = fn(&RowContext<'_>) -> Vec<Vec<ScalarValue>>;

type RowFn = dyn Fn(&RowContext<'_>) -> Vec<Vec<ScalarValue>> + Send + Sync;

/// A table computed from the catalog on every scan.
pub struct CatalogTable {
    schema: SchemaRef,
    pg: Arc<PgCatalog>,
    rows: Box<RowFn>,
}

impl std::fmt::Debug for CatalogTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogTable")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl CatalogTable {
    /// A table of `schema` whose rows `rows` computes.
    pub fn new(
        schema: SchemaRef,
        pg: Arc<PgCatalog>,
        rows: impl Fn(&RowContext<'_>) -> Vec<Vec<ScalarValue>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            schema,
            pg,
            rows: Box::new(rows),
        }
    }

    /// A table that is always empty (a catalog of things Weir does not have: policies,
    /// publications, inheritance…), so queries that join it still run.
    pub fn empty(schema: SchemaRef, pg: Arc<PgCatalog>) -> Self {
        Self::new(schema, pg, |_| Vec::new())
    }

    fn batch(&self, rows: Vec<Vec<ScalarValue>>) -> DfResult<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (j, field) in self.schema.fields().iter().enumerate() {
            let target = field.data_type();
            if rows.is_empty() {
                columns.push(new_empty_array(target));
                continue;
            }
            let values = rows
                .iter()
                .map(|row| {
                    let v = row.get(j).cloned().unwrap_or(ScalarValue::Null);
                    if v.data_type() == *target {
                        Ok(v)
                    } else if v.is_null() {
                        ScalarValue::try_from(target)
                    } else {
                        v.cast_to(target)
                    }
                })
                .collect::<DfResult<Vec<_>>>()?;
            columns.push(ScalarValue::iter_to_array(values)?);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let session = state.config().get_extension::<SessionInfo>();
        let rows = (self.rows)(&RowContext {
            pg: &self.pg,
            session,
            state,
        });
        let batch = self.batch(rows)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

/// A non-null `oid`/`int4` value.
pub fn oid(v: i32) -> ScalarValue {
    ScalarValue::Int32(Some(v))
}

/// A text value.
pub fn text(v: impl Into<String>) -> ScalarValue {
    ScalarValue::Utf8(Some(v.into()))
}

/// A boolean.
pub fn boolean(v: bool) -> ScalarValue {
    ScalarValue::Boolean(Some(v))
}

/// An `int2`.
pub fn int2(v: i16) -> ScalarValue {
    ScalarValue::Int16(Some(v))
}

/// A NULL of the column's type.
pub fn null() -> ScalarValue {
    ScalarValue::Null
}

/// An optional text value.
pub fn opt_text(v: Option<String>) -> ScalarValue {
    ScalarValue::Utf8(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_become_nullable_columns() -> DfResult<()> {
        let schema = columns("oid oid, nspname name, nspacl text[], n int2")?;
        let types: Vec<(String, DataType, bool)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
            .collect();
        assert_eq!(
            types,
            vec![
                ("oid".into(), DataType::Int32, true),
                ("nspname".into(), DataType::Utf8, true),
                ("nspacl".into(), list(DataType::Utf8), true),
                ("n".into(), DataType::Int16, true),
            ]
        );
        Ok(())
    }

    #[test]
    fn bad_declarations_are_errors() {
        assert!(columns("oid").is_err());
        assert!(columns("a int4 extra").is_err());
        assert!(columns("a numeric").is_err());
    }
}
