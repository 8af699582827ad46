//! Bind parameters to DataFusion values: text parameters are parsed by casting from text to the
//! inferred type; binary ones are decoded by their PostgreSQL type.

use std::collections::HashMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

fn invalid(message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "22P02".into(),
        super::errors::printable(&message),
    )))
}

/// PostgreSQL epoch (2000-01-01) in microseconds since the Unix epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Decodes every parameter of `portal`; `types[i]` is the inferred type of `$i+1` (None: text).
pub fn decode<S: Clone>(
    portal: &Portal<S>,
    types: &[Option<DataType>],
) -> PgWireResult<Vec<ScalarValue>> {
    (0..portal.parameter_len())
        .map(|i| {
            let target = types.get(i).cloned().flatten().unwrap_or(DataType::Utf8);
            let Some(bytes) = portal.parameters.get(i).cloned().flatten() else {
                return ScalarValue::try_from(&target).map_err(|e| invalid(e.to_string()));
            };
            if portal.parameter_format.is_binary(i) {
                // Binary values are laid out as the type the client declared at Parse, when it
                // declared one; the value is then cast to the type the query needs.
                let declared = portal
                    .statement
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .and_then(|t| arrow_type(&t));
                let value = decode_binary(&bytes, declared.as_ref().unwrap_or(&target), i)?;
                value
                    .cast_to(&target)
                    .map_err(|e| invalid(format!("parameter ${}: {e}", i + 1)))
            } else {
                let text = String::from_utf8(bytes.to_vec())
                    .map_err(|_| invalid(format!("parameter ${} is not valid UTF-8", i + 1)))?;
                ScalarValue::Utf8(Some(text))
                    .cast_to(&target)
                    .map_err(|e| invalid(format!("parameter ${}: {e}", i + 1)))
            }
        })
        .collect()
}

fn decode_binary(bytes: &[u8], target: &DataType, i: usize) -> PgWireResult<ScalarValue> {
    let bad = || {
        invalid(format!(
            "parameter ${}: unexpected binary value for {target}",
            i + 1
        ))
    };
    let int = |b: &[u8]| -> PgWireResult<i64> {
        Ok(match b.len() {
            2 => i64::from(i16::from_be_bytes([b[0], b[1]])),
            4 => i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            8 => i64::from_be_bytes(b.try_into().map_err(|_| bad())?),
            _ => return Err(bad()),
        })
    };
    let value = match target {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => ScalarValue::Int64(Some(int(bytes)?)),
        DataType::Float32 | DataType::Float64 => match bytes.len() {
            4 => ScalarValue::Float64(Some(f64::from(f32::from_be_bytes(
                bytes.try_into().map_err(|_| bad())?,
            )))),
            8 => ScalarValue::Float64(Some(f64::from_be_bytes(
                bytes.try_into().map_err(|_| bad())?,
            ))),
            _ => return Err(bad()),
        },
        DataType::Boolean => {
            ScalarValue::Boolean(Some(bytes.first().copied().ok_or_else(bad)? != 0))
        }
        DataType::Timestamp(_, tz) => {
            let micros = int(bytes)?.saturating_add(PG_EPOCH_MICROS);
            ScalarValue::TimestampMicrosecond(Some(micros), tz.clone())
        }
        _ => ScalarValue::Utf8(Some(String::from_utf8(bytes.to_vec()).map_err(|_| bad())?)),
    };
    value
        .cast_to(target)
        .map_err(|e| invalid(format!("parameter ${}: {e}", i + 1)))
}

/// Fills in the type of placeholders DataFusion left untyped when the query casts them
/// (`$1::BIGINT`), which is how many clients spell typed parameters.
pub fn infer_from_casts(plan: &LogicalPlan, types: &mut HashMap<String, Option<DataType>>) {
    let mut visit = |expr: &Expr| {
        let _ = expr.apply(|e| {
            if let Expr::Cast(cast) = e
                && let Expr::Placeholder(p) = cast.expr.as_ref()
                && types.get(&p.id).is_none_or(|t| t.is_none())
            {
                types.insert(p.id.clone(), Some(cast.field.data_type().clone()));
            }
            Ok(TreeNodeRecursion::Continue)
        });
        Ok(TreeNodeRecursion::Continue)
    };
    let _ = plan.apply_with_subqueries(|node| node.apply_expressions(&mut visit));
}

/// The Arrow type whose binary layout a declared parameter type has (None: decode by the
/// inferred type).
fn arrow_type(t: &Type) -> Option<DataType> {
    Some(match *t {
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::BOOL => DataType::Boolean,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => DataType::Utf8,
        Type::TIMESTAMP => {
            DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None)
        }
        Type::TIMESTAMPTZ => DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            Some("+00:00".into()),
        ),
        _ => return None,
    })
}

/// The PostgreSQL type announced for a parameter of `data_type`.
pub fn pg_type(data_type: Option<&DataType>) -> Type {
    match data_type {
        Some(DataType::Int8 | DataType::Int16 | DataType::UInt8) => Type::INT2,
        Some(DataType::Int32 | DataType::UInt16) => Type::INT4,
        Some(DataType::Int64 | DataType::UInt32 | DataType::UInt64) => Type::INT8,
        Some(DataType::Decimal128(..) | DataType::Decimal256(..)) => Type::NUMERIC,
        Some(DataType::Interval(_) | DataType::Duration(_)) => Type::INTERVAL,
        Some(DataType::Float32) => Type::FLOAT4,
        Some(DataType::Float64) => Type::FLOAT8,
        Some(DataType::Boolean) => Type::BOOL,
        Some(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => Type::TEXT,
        Some(DataType::Timestamp(_, Some(_))) => Type::TIMESTAMPTZ,
        Some(DataType::Timestamp(_, None)) => Type::TIMESTAMP,
        Some(DataType::Date32) => Type::DATE,
        _ => Type::UNKNOWN,
    }
}
