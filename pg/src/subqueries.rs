//! Two functions that let DataFusion run correlated subqueries PostgreSQL clients write in
//! select lists (psql's `\d`, SQLAlchemy's reflection):
//!
//! - `weir_single_value(x)`: an aggregate with PostgreSQL's scalar-subquery semantics: the one
//!   value, NULL for no rows, an error for more than one. Wrapping an unaggregated scalar
//!   subquery in it lets DataFusion decorrelate the subquery into a join.
//! - `weir_array_map(array, 'x', 'expr' [, 'filter'])`: `ARRAY(SELECT expr FROM unnest(array) x
//!   [WHERE filter])` for one row's array — what that subquery computes, which DataFusion cannot
//!   decorrelate when `array` is an outer column.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion::common::{DFSchema, ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_plan::PhysicalExpr;
use weir_sql::error::more_than_one_row;

/// `weir_single_value`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SingleValue {
    signature: Signature,
}

impl SingleValue {
    /// The aggregate.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::new_from_impl(Self {
            signature: Signature::any(1, Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for SingleValue {
    fn name(&self) -> &str {
        "weir_single_value"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let value_type = args
            .input_fields
            .first()
            .map_or(DataType::Null, |f| f.data_type().clone());
        Ok(vec![
            Arc::new(Field::new(format!("{}_value", args.name), value_type, true)),
            Arc::new(Field::new(
                format!("{}_rows", args.name),
                DataType::UInt64,
                true,
            )),
        ])
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let null = ScalarValue::try_from(acc_args.return_field.data_type())?;
        Ok(Box::new(SingleValueAccumulator {
            value: null,
            rows: 0,
        }))
    }
}

#[derive(Debug)]
struct SingleValueAccumulator {
    value: ScalarValue,
    rows: u64,
}

impl SingleValueAccumulator {
    fn add(&mut self, value: ScalarValue, rows: u64) -> Result<()> {
        self.rows += rows;
        if self.rows > 1 {
            return Err(more_than_one_row());
        }
        if rows > 0 {
            self.value = value;
        }
        Ok(())
    }
}

impl Accumulator for SingleValueAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(column) = values.first() else {
            return Ok(());
        };
        for row in 0..column.len() {
            self.add(ScalarValue::try_from_array(column, row)?, 1)?;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (Some(values), Some(rows)) = (states.first(), states.get(1)) else {
            return Ok(());
        };
        for row in 0..values.len() {
            let n = match ScalarValue::try_from_array(rows, row)? {
                ScalarValue::UInt64(Some(n)) => n,
                _ => 0,
            };
            self.add(ScalarValue::try_from_array(values, row)?, n)?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            self.value.clone(),
            ScalarValue::UInt64(Some(self.rows)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        self.value.size() + 8
    }
}

/// `weir_array_map`.
#[derive(Debug)]
pub struct ArrayMap {
    signature: Signature,
}

impl PartialEq for ArrayMap {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ArrayMap {}

impl Hash for ArrayMap {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "weir_array_map".hash(state);
    }
}

impl ArrayMap {
    /// The function.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        })
    }
}

/// The planned element expression and filter over a one-column schema named after the alias.
struct Mapping {
    schema: Arc<Schema>,
    expr: Arc<dyn PhysicalExpr>,
    filter: Option<Arc<dyn PhysicalExpr>>,
}

fn text_literal(v: Option<&ScalarValue>) -> Option<String> {
    match v? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

fn plan_mapping(
    element: &DataType,
    alias: &str,
    expr: &str,
    filter: Option<&str>,
) -> Result<Mapping> {
    let schema = Arc::new(Schema::new(vec![Field::new(alias, element.clone(), true)]));
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let ctx = SessionContext::new();
    let plan = |sql: &str| -> Result<Arc<dyn PhysicalExpr>> {
        let logical = ctx.parse_sql_expr(sql, &df_schema)?;
        ctx.create_physical_expr(logical, &df_schema)
    };
    Ok(Mapping {
        expr: plan(expr)?,
        filter: filter.map(plan).transpose()?,
        schema,
    })
}

fn element_type(list: &DataType) -> Result<DataType> {
    match list {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            Ok(f.data_type().clone())
        }
        DataType::Null => Ok(DataType::Utf8),
        other => plan_err!("unnest: {other} is not an array"),
    }
}

impl ScalarUDFImpl for ArrayMap {
    fn name(&self) -> &str {
        "weir_array_map"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!("weir_array_map needs its arguments")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let element = element_type(
            args.arg_fields
                .first()
                .map_or(&DataType::Null, |f| f.data_type()),
        )?;
        let (Some(alias), Some(expr)) = (
            text_literal(args.scalar_arguments.get(1).copied().flatten()),
            text_literal(args.scalar_arguments.get(2).copied().flatten()),
        ) else {
            return plan_err!(
                "weir_array_map(array, alias, expression): alias and expression must be literals"
            );
        };
        let mapping = plan_mapping(&element, &alias, &expr, None)?;
        let item = mapping.expr.data_type(&mapping.schema)?;
        Ok(Arc::new(Field::new(
            "weir_array_map",
            DataType::List(Arc::new(Field::new_list_field(item, true))),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(lists) = arrays.first() else {
            return exec_err!("weir_array_map needs an array");
        };
        let literal = |i: usize| -> Option<String> {
            match args.args.get(i) {
                Some(ColumnarValue::Scalar(s)) => text_literal(Some(s)),
                _ => None,
            }
        };
        let (Some(alias), Some(expr)) = (literal(1), literal(2)) else {
            return exec_err!("weir_array_map: alias and expression must be literals");
        };
        let filter_sql = literal(3);
        let mapping = plan_mapping(
            &element_type(lists.data_type())?,
            &alias,
            &expr,
            filter_sql.as_deref(),
        )?;
        let item_type = mapping.expr.data_type(&mapping.schema)?;
        let mut out = Vec::with_capacity(lists.len());
        for row in 0..lists.len() {
            let list = ScalarValue::try_from_array(lists, row)?;
            let Some(elements) = crate::functions::list_elements(&list) else {
                out.push(ScalarValue::List(ScalarValue::new_list_nullable(
                    &[],
                    &item_type,
                )));
                continue;
            };
            let mut batch = RecordBatch::try_new(Arc::clone(&mapping.schema), vec![elements])?;
            if let Some(f) = &mapping.filter {
                let keep = f.evaluate(&batch)?.into_array(batch.num_rows())?;
                let keep = keep
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .cloned()
                    .unwrap_or_else(|| BooleanArray::from(vec![false; batch.num_rows()]));
                batch = RecordBatch::try_new(
                    Arc::clone(&mapping.schema),
                    vec![filter(batch.column(0), &keep)?],
                )?;
            }
            let mapped = mapping
                .expr
                .evaluate(&batch)?
                .into_array(batch.num_rows())?;
            let values = (0..mapped.len())
                .map(|i| ScalarValue::try_from_array(&mapped, i))
                .collect::<Result<Vec<_>>>()?;
            out.push(ScalarValue::List(ScalarValue::new_list_nullable(
                &values, &item_type,
            )));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
    }
}
