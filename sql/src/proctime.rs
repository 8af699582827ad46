//! `PROCTIME()`: the processing time of each row, when the pipeline evaluates it (every row of a
//! batch gets the batch's time). Unlike `now()`, which DataFusion fixes when a query is planned
//! (so in a view it is the view's creation time), it is volatile: evaluated for every batch.

use std::sync::Arc;

use datafusion::arrow::array::TimestampMicrosecondArray;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The time zone of `PROCTIME()`'s values (as `now()`'s).
const UTC: &str = "+00:00";

#[derive(Debug, PartialEq, Eq, Hash)]
struct Proctime {
    signature: Signature,
}

/// The `proctime` function.
pub(crate) fn proctime_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(Proctime {
        signature: Signature::nullary(Volatility::Volatile),
    })
}

impl ScalarUDFImpl for Proctime {
    fn name(&self) -> &str {
        "proctime"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let values =
            TimestampMicrosecondArray::from_value(now, args.number_rows).with_timezone(UTC);
        Ok(ColumnarValue::Array(Arc::new(values)))
    }
}
