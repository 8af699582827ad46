//! `WITH (retention = …)` on a view: which column ages its rows.

use datafusion::arrow::datatypes::{DataType, Schema};
use weir_engine::stream_props::StreamProps;
use weir_engine::view_table::retention::Retention;

use super::{PlanContext, unsupported};
use crate::error::Result;

/// `WITH (retention = …)`: rows are aged by the view's event-time column (a window's end, or
/// the source's WATERMARK column passed through); a view without one cannot say which rows are
/// old, so it is refused rather than left growing.
pub(super) fn retention(
    ctx: &PlanContext<'_>,
    props: &StreamProps,
    schema: &Schema,
) -> Result<Option<Retention>> {
    let Some(horizon) = ctx.retention else {
        return Ok(None);
    };
    if props.sealed_by.is_none() && !props.is_append_only() {
        return Err(unsupported(
            "retention on a view whose rows never become final (an updating aggregate without \
             a window: GROUP BY window_start, window_end over TUMBLE(…), HOP(…), CUMULATE(…) or \
             SESSION(…))",
        ));
    }
    let column = props
        .event_time
        .filter(|&c| matches!(schema.field(c).data_type(), DataType::Timestamp(..)))
        .ok_or_else(|| {
            unsupported(
                "retention on a view without an event-time column (keep the source's WATERMARK \
                 column, or window_end of a windowed aggregate, among the view's columns)",
            )
        })?;
    Ok(Some(Retention {
        column,
        horizon_nanos: i64::try_from(horizon.as_nanos()).unwrap_or(i64::MAX),
    }))
}
