//! PostgreSQL's catalog and session functions (`version()`, `current_setting`, `format_type`,
//! `pg_get_viewdef`, `quote_ident`, `has_table_privilege`, …) as DataFusion scalar functions.
//!
//! Each is a name, a return type and a function of one row's argument values. Catalog queries
//! are tens of rows, so a row-at-a-time evaluator keeps each function a few lines; none of these
//! runs on a streaming path. Functions that read the session (`current_user`, `current_setting`)
//! are built per session and registered in the state that plans its statements.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use crate::catalog::{OWNER_OID, PgCatalog, namespace_name, namespace_oid};
use crate::pg_catalog::ARRAY_IN_OID;
use crate::settings::{SessionInfo, version_string};
use crate::types;
use weir_sql::error::{SqlError, SqlErrorKind};

type Eval = dyn Fn(&[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync;

/// A function evaluated one row at a time.
pub struct RowFunction {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    eval: Arc<Eval>,
}

impl std::fmt::Debug for RowFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowFunction")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PartialEq for RowFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.eval, &other.eval)
    }
}

impl Eq for RowFunction {}

impl Hash for RowFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for RowFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let array_len = args.args.iter().find_map(|a| {
            if let ColumnarValue::Array(a) = a {
                Some(a.len())
            } else {
                None
            }
        });
        let Some(rows) = array_len else {
            let values: Vec<ScalarValue> = args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => s.clone(),
                    ColumnarValue::Array(_) => ScalarValue::Null,
                })
                .collect();
            return Ok(ColumnarValue::Scalar(self.typed((self.eval)(&values)?)?));
        };
        if rows == 0 {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_empty_array(&self.returns),
            ));
        }
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let values = args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => Ok(s.clone()),
                    ColumnarValue::Array(array) => ScalarValue::try_from_array(array, row),
                })
                .collect::<DfResult<Vec<_>>>()?;
            out.push(self.typed((self.eval)(&values)?)?);
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
    }
}

impl RowFunction {
    fn typed(&self, v: ScalarValue) -> DfResult<ScalarValue> {
        if v.data_type() == self.returns {
            Ok(v)
        } else if v.is_null() {
            ScalarValue::try_from(&self.returns)
        } else {
            v.cast_to(&self.returns)
        }
    }
}

fn function(
    name: &'static str,
    volatility: Volatility,
    returns: DataType,
    eval: impl Fn(&[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync + 'static,
) -> ScalarUDF {
    let signature = Signature::one_of(
        vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
        volatility,
    );
    ScalarUDF::new_from_impl(RowFunction {
        name,
        signature,
        returns,
        eval: Arc::new(eval),
    })
}

/// An argument as an integer (OIDs arrive as integers or as quoted literals).
fn int(v: Option<&ScalarValue>) -> Option<i64> {
    let v = v?;
    if v.is_null() {
        return None;
    }
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.trim().parse().ok(),
        other => other.cast_to(&DataType::Int64).ok().and_then(|v| match v {
            ScalarValue::Int64(i) => i,
            _ => None,
        }),
    }
}

fn oid_arg(v: Option<&ScalarValue>) -> Option<i32> {
    int(v).and_then(|i| i32::try_from(i).ok())
}

/// An argument as text.
fn string(v: Option<&ScalarValue>) -> Option<String> {
    let v = v?;
    match v {
        _ if v.is_null() => None,
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn utf8(v: Option<String>) -> ScalarValue {
    ScalarValue::Utf8(v)
}

pub use crate::identifier::{parse_identifier, quote_identifier};

/// `pg_size_pretty`.
pub fn size_pretty(bytes: i64) -> String {
    let units = ["bytes", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes;
    let mut unit = 0;
    // PostgreSQL switches unit once the value reaches 10 240 of the smaller one, rounding halves up.
    while value.unsigned_abs() >= 10 * 1024 && unit + 1 < units.len() {
        value = (value + 512) / 1024;
        unit += 1;
    }
    format!("{value} {}", units[unit])
}

fn list_of_text(items: &[&str]) -> ScalarValue {
    let values: Vec<ScalarValue> = items.iter().map(|s| utf8(Some((*s).to_string()))).collect();
    ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Utf8))
}

fn text_list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The elements of a non-NULL array value.
pub fn list_elements(v: &ScalarValue) -> Option<datafusion::arrow::array::ArrayRef> {
    match v {
        ScalarValue::List(a) if !a.is_null(0) => Some(a.value(0)),
        ScalarValue::LargeList(a) if !a.is_null(0) => Some(a.value(0)),
        ScalarValue::FixedSizeList(a) if !a.is_null(0) => Some(a.value(0)),
        _ => None,
    }
}

fn list_len(v: Option<&ScalarValue>) -> Option<usize> {
    list_elements(v?).map(|a| a.len())
}

/// Every catalog and session function, reading `pg` and `session`.
pub fn all(pg: &Arc<PgCatalog>, session: &Arc<SessionInfo>) -> Vec<ScalarUDF> {
    use DataType::{Boolean, Int32, Int64, Utf8};
    use Volatility::{Immutable, Stable, Volatile};
    let mut out = Vec::new();

    out.push(function("version", Immutable, Utf8, |_| {
        Ok(utf8(Some(version_string())))
    }));
    for name in [
        "current_user",
        "session_user",
        "user",
        "current_role",
        "getpgusername",
    ] {
        let s = Arc::clone(session);
        out.push(function(name, Stable, Utf8, move |_| {
            Ok(utf8(Some(s.user())))
        }));
    }
    for name in ["current_database", "current_catalog"] {
        let s = Arc::clone(session);
        out.push(function(name, Stable, Utf8, move |_| {
            Ok(utf8(Some(s.database())))
        }));
    }
    out.push(function("current_schema", Stable, Utf8, |_| {
        Ok(utf8(Some("public".into())))
    }));
    out.push(function("current_schemas", Stable, text_list_type(), |a| {
        Ok(
            if matches!(a.first(), Some(ScalarValue::Boolean(Some(true)))) {
                list_of_text(&["pg_catalog", "public"])
            } else {
                list_of_text(&["public"])
            },
        )
    }));
    let s = Arc::clone(session);
    out.push(function("pg_backend_pid", Stable, Int32, move |_| {
        Ok(ScalarValue::Int32(Some(s.pid())))
    }));
    let s = Arc::clone(session);
    out.push(function("current_setting", Stable, Utf8, move |a| {
        let name = string(a.first()).unwrap_or_default();
        let missing_ok = matches!(a.get(1), Some(ScalarValue::Boolean(Some(true))));
        match s.get(&name) {
            Ok(v) => Ok(utf8(Some(v))),
            Err(_) if missing_ok => Ok(utf8(None)),
            Err(e) => Err(DataFusionError::External(Box::new(e))),
        }
    }));
    let s = Arc::clone(session);
    out.push(function("set_config", Volatile, Utf8, move |a| {
        let name = string(a.first()).unwrap_or_default();
        let value = string(a.get(1)).unwrap_or_default();
        s.set(&name, &value)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(utf8(Some(value)))
    }));
    let s = Arc::clone(session);
    out.push(function("pg_get_userbyid", Stable, Utf8, move |a| {
        Ok(utf8(match oid_arg(a.first()) {
            Some(OWNER_OID) => Some(s.user()),
            Some(other) => Some(format!("unknown (OID={other})")),
            None => None,
        }))
    }));
    let p = Arc::clone(pg);
    out.push(function("pg_table_is_visible", Stable, Boolean, move |a| {
        Ok(ScalarValue::Boolean(oid_arg(a.first()).map(|o| {
            p.relation(o).is_some_and(|r| {
                namespace_name(r.namespace).is_some_and(|n| n != "information_schema")
            }) || p.indexes().iter().any(|i| i.oid == o)
        })))
    }));
    for name in [
        "pg_type_is_visible",
        "pg_function_is_visible",
        "pg_collation_is_visible",
        "pg_opclass_is_visible",
    ] {
        out.push(function(name, Stable, Boolean, |a| {
            Ok(ScalarValue::Boolean(oid_arg(a.first()).map(|_| true)))
        }));
    }
    for name in [
        "has_table_privilege",
        "has_schema_privilege",
        "has_database_privilege",
        "has_column_privilege",
        "has_any_column_privilege",
        "has_function_privilege",
        "has_sequence_privilege",
        "has_type_privilege",
        "pg_has_role",
    ] {
        out.push(function(name, Stable, Boolean, |_| {
            Ok(ScalarValue::Boolean(Some(true)))
        }));
    }
    let p = Arc::clone(pg);
    out.push(function("pg_get_viewdef", Stable, Utf8, move |a| {
        Ok(utf8(oid_arg(a.first()).and_then(|o| p.view_definition(o))))
    }));
    let p = Arc::clone(pg);
    out.push(function("pg_get_indexdef", Stable, Utf8, move |a| {
        // (index, column, pretty): column 0 is the whole definition, k the k-th key column.
        let column = int(a.get(1)).unwrap_or(0);
        Ok(utf8(
            oid_arg(a.first()).and_then(|o| p.index_definition(o, column)),
        ))
    }));
    let p = Arc::clone(pg);
    out.push(function("obj_description", Stable, Utf8, move |a| {
        let catalog = string(a.get(1)).unwrap_or_else(|| "pg_class".into());
        Ok(utf8(if catalog == "pg_class" {
            oid_arg(a.first())
                .and_then(|o| p.relation(o))
                .and_then(|r| r.description)
        } else {
            None
        }))
    }));
    for name in [
        "col_description",
        "shobj_description",
        "pg_get_ruledef",
        "pg_get_statisticsobjdef_columns",
        "pg_get_serial_sequence",
        "pg_get_constraintdef",
        "pg_get_partkeydef",
        "pg_get_triggerdef",
    ] {
        out.push(function(name, Stable, Utf8, |_| Ok(utf8(None))));
    }
    for name in [
        "pg_get_function_result",
        "pg_get_function_arguments",
        "pg_get_function_identity_arguments",
    ] {
        out.push(function(name, Stable, Utf8, |_| {
            Ok(utf8(Some(String::new())))
        }));
    }
    out.push(function(
        "pg_relation_is_publishable",
        Stable,
        Boolean,
        |_| Ok(ScalarValue::Boolean(Some(false))),
    ));
    // Weir has no temporary schemas (dbt's catalog query filters other sessions' out).
    out.push(function("pg_is_other_temp_schema", Stable, Boolean, |_| {
        Ok(ScalarValue::Boolean(Some(false)))
    }));
    out.push(function("pg_is_in_recovery", Stable, Boolean, |_| {
        Ok(ScalarValue::Boolean(Some(false)))
    }));
    out.push(function("pg_advisory_unlock_all", Volatile, Utf8, |_| {
        Ok(utf8(Some(String::new())))
    }));
    // Stored expressions (column defaults, partition bounds) are kept as text: there are none.
    out.push(function("pg_get_expr", Stable, Utf8, |a| {
        Ok(utf8(string(a.first())))
    }));
    let p = Arc::clone(pg);
    let size = move |a: &[ScalarValue]| -> DfResult<ScalarValue> {
        Ok(ScalarValue::Int64(
            oid_arg(a.first()).and_then(|o| p.relation_bytes(o)),
        ))
    };
    let size = Arc::new(size);
    for name in [
        "pg_table_size",
        "pg_relation_size",
        "pg_total_relation_size",
    ] {
        let size = Arc::clone(&size);
        out.push(function(name, Stable, Int64, move |a| size(a)));
    }
    out.push(function("pg_size_pretty", Immutable, Utf8, |a| {
        Ok(utf8(int(a.first()).map(size_pretty)))
    }));
    out.push(function("pg_encoding_to_char", Immutable, Utf8, |a| {
        Ok(utf8(int(a.first()).map(|e| {
            if e == 6 {
                "UTF8".to_string()
            } else if e == 0 {
                "SQL_ASCII".to_string()
            } else {
                String::new()
            }
        })))
    }));
    out.push(function("quote_ident", Immutable, Utf8, |a| {
        Ok(utf8(string(a.first()).map(|s| quote_identifier(&s))))
    }));
    out.push(function("parse_ident", Immutable, text_list_type(), |a| {
        let Some(s) = string(a.first()) else {
            return ScalarValue::try_from(&text_list_type());
        };
        let parts = parse_identifier(&s).map_err(DataFusionError::Execution)?;
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        Ok(list_of_text(&parts))
    }));
    out.push(function("format_type", Stable, Utf8, |a| {
        Ok(utf8(oid_arg(a.first()).map(|o| {
            types::by_oid(o).map_or_else(|| "???".to_string(), |t| t.sql_name.to_string())
        })))
    }));
    // int8 rather than PostgreSQL's int4: DataFusion's generate_series takes int8 bounds.
    out.push(function("array_lower", Immutable, Int64, |a| {
        Ok(ScalarValue::Int64(
            match (list_len(a.first()), int(a.get(1))) {
                (Some(n), Some(1)) if n > 0 => Some(1),
                _ => None,
            },
        ))
    }));
    out.push(function("array_upper", Immutable, Int64, |a| {
        Ok(ScalarValue::Int64(
            match (list_len(a.first()), int(a.get(1))) {
                (Some(n), Some(1)) if n > 0 => i64::try_from(n).ok(),
                _ => None,
            },
        ))
    }));
    out.push(function("json_build_object", Stable, Utf8, |a| {
        let mut map = serde_json::Map::new();
        for pair in a.chunks(2) {
            let key = string(pair.first()).unwrap_or_default();
            map.insert(key, json_value(pair.get(1)));
        }
        Ok(utf8(Some(serde_json::Value::Object(map).to_string())))
    }));
    // The reg* casts: text names resolve to OIDs, OIDs print as names (see rewrite.rs).
    let p = Arc::clone(pg);
    out.push(function("weir_regclass", Stable, Int32, move |a| {
        Ok(ScalarValue::Int32(match a.first() {
            Some(v) if is_text(v) => match string(Some(v)) {
                Some(name) => Some(
                    p.relation_oid(&name)
                        .ok_or_else(|| missing("relation", &name))?,
                ),
                None => None,
            },
            v => oid_arg(v),
        }))
    }));
    let p = Arc::clone(pg);
    out.push(function("to_regclass", Stable, Int32, move |a| {
        Ok(ScalarValue::Int32(
            string(a.first()).and_then(|n| p.relation_oid(&n)),
        ))
    }));
    let p = Arc::clone(pg);
    out.push(function("weir_regclass_name", Stable, Utf8, move |a| {
        Ok(utf8(match a.first() {
            Some(v) if is_text(v) => string(Some(v)),
            v => oid_arg(v).map(|o| {
                p.relation(o).map_or_else(
                    || o.to_string(),
                    |r| match namespace_name(r.namespace) {
                        Some("pg_catalog") | Some("public") | None => quote_identifier(&r.name),
                        Some(ns) => format!("{ns}.{}", quote_identifier(&r.name)),
                    },
                )
            }),
        }))
    }));
    out.push(function("weir_regtype", Stable, Int32, |a| {
        Ok(ScalarValue::Int32(match a.first() {
            Some(v) if is_text(v) => match string(Some(v)) {
                Some(name) => Some(
                    types::by_name(&name)
                        .map(|t| t.oid)
                        .ok_or_else(|| missing("type", &name))?,
                ),
                None => None,
            },
            v => oid_arg(v),
        }))
    }));
    out.push(function("to_regtype", Stable, Int32, |a| {
        Ok(ScalarValue::Int32(
            string(a.first())
                .and_then(|n| types::by_name(&n))
                .map(|t| t.oid),
        ))
    }));
    out.push(function("weir_regtype_name", Stable, Utf8, |a| {
        Ok(utf8(match a.first() {
            Some(v) if is_text(v) => string(Some(v)),
            v => oid_arg(v).map(|o| {
                types::by_oid(o).map_or_else(|| o.to_string(), |t| t.sql_name.to_string())
            }),
        }))
    }));
    out.push(function("weir_regnamespace", Stable, Int32, |a| {
        Ok(ScalarValue::Int32(match a.first() {
            Some(v) if is_text(v) => match string(Some(v)) {
                Some(name) => Some(namespace_oid(&name).ok_or_else(|| missing("schema", &name))?),
                None => None,
            },
            v => oid_arg(v),
        }))
    }));
    out.push(function("weir_regnamespace_name", Stable, Utf8, |a| {
        Ok(utf8(match a.first() {
            Some(v) if is_text(v) => string(Some(v)),
            v => {
                oid_arg(v).map(|o| namespace_name(o).map_or_else(|| o.to_string(), str::to_string))
            }
        }))
    }));
    out.push(function("weir_regproc", Stable, Int32, |a| {
        Ok(ScalarValue::Int32(match a.first() {
            Some(v) if is_text(v) => string(Some(v)).and_then(|n| {
                (n.trim_start_matches("pg_catalog.") == "array_in").then_some(ARRAY_IN_OID)
            }),
            v => oid_arg(v),
        }))
    }));
    out
}

fn is_text(v: &ScalarValue) -> bool {
    matches!(
        v.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// `'name'::regclass` (or regtype, regnamespace) naming nothing: PostgreSQL's 42P01 for a
/// relation, 42704 for anything else, carried through DataFusion to the wire.
fn missing(what: &str, name: &str) -> DataFusionError {
    let kind = if what == "relation" {
        SqlErrorKind::UndefinedTable
    } else {
        SqlErrorKind::UndefinedObject
    };
    DataFusionError::External(Box::new(SqlError::new(
        kind,
        format!("{what} \"{name}\" does not exist"),
    )))
}

fn json_value(v: Option<&ScalarValue>) -> serde_json::Value {
    use serde_json::Value;
    match v {
        None => Value::Null,
        Some(v) if v.is_null() => Value::Null,
        Some(ScalarValue::Boolean(Some(b))) => Value::Bool(*b),
        Some(v) => match int(Some(v)) {
            Some(i) if !is_text(v) => Value::from(i),
            _ => match v {
                ScalarValue::Float64(Some(f)) => {
                    serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
                }
                other => Value::String(string(Some(other)).unwrap_or_default()),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(
            parse_identifier("Public.\"My Table\""),
            Ok(vec!["public".to_string(), "My Table".to_string()])
        );
        assert_eq!(parse_identifier("events"), Ok(vec!["events".to_string()]));
        assert!(parse_identifier("a..b").is_err());
        assert_eq!(quote_identifier("events"), "events");
        assert_eq!(quote_identifier("Events"), "\"Events\"");
        assert_eq!(quote_identifier("user"), "\"user\"");
    }

    #[test]
    fn sizes_print_as_postgres_does() {
        assert_eq!(size_pretty(123), "123 bytes");
        assert_eq!(size_pretty(10 * 1024), "10 kB");
        assert_eq!(size_pretty(20 * 1024 * 1024), "20 MB");
    }
}
