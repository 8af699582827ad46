//! Planning `UNION ALL` (and, with the aggregate DataFusion puts over it, `UNION`): each input
//! is planned as a stage of its own and becomes one input of the view's pipeline, with the
//! operators on its rows alone; the engine merges them (barriers aligned, the least watermark).

use std::sync::Arc;

use datafusion::logical_expr::logical_plan::Union;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use weir_engine::stateless::Step;
use weir_engine::stream_props::{StreamKind, StreamProps};
use weir_engine::view_runtime::PlannedInput;

use super::{PlanContext, Stage, describe_input, unsupported};
use crate::error::Result;

/// `text` with every line indented by `by` (explain entries span several lines).
pub(super) fn indent(text: &str, by: &str) -> String {
    format!("{by}{}", text.replace('\n', &format!("\n{by}")))
}

/// Plans `union` over its inputs' stages.
pub(crate) fn plan_union(union: &Union, ctx: &PlanContext<'_>) -> Result<Stage> {
    let schema = Arc::new(union.schema.as_arrow().clone());
    let mut inputs = Vec::new();
    let mut explain = Vec::new();
    let mut append_only = true;
    let mut windows = Vec::new();
    for plan in &union.inputs {
        let mut stage = super::build(plan, ctx)?;
        // Rows of every input leave with the union's column names (nullability may differ).
        let same_names = plan
            .schema()
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if !same_names {
            let exprs = (0..schema.fields().len())
                .map(|i| Arc::new(Column::new(schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>)
                .collect();
            stage.push(Step::Project {
                exprs,
                schema: Arc::clone(&schema),
            });
        }
        stage.flush();
        append_only &= stage.props.is_append_only();
        windows.push(stage.window);
        if stage.inputs.len() > 1 {
            // A union of unions (DataFusion flattens most) merges all their inputs, unless
            // operators run on the inner union's merged rows.
            if !stage.operators.is_empty() {
                return Err(unsupported(
                    "a UNION whose input is itself a UNION followed by other operators",
                ));
            }
            explain.extend(stage.explain);
            inputs.extend(stage.inputs);
            continue;
        }
        let Some(single) = stage.inputs.pop() else {
            return Err(unsupported("a UNION input without a source or view"));
        };
        explain.push(format!(
            "Input {}: {}",
            inputs.len() + 1,
            describe_input(&single.input)
        ));
        explain.extend(stage.explain.iter().map(|line| indent(line, "  ")));
        let mut operators = single.operators;
        operators.extend(stage.operators);
        inputs.push(PlannedInput {
            input: single.input,
            operators,
        });
    }
    let mut lines = vec![format!(
        "Union of {} inputs (checkpoint barriers aligned; watermark: the least of the inputs'; {})",
        inputs.len(),
        if append_only {
            "append-only"
        } else {
            "updating: rows of every input, without a key"
        }
    )];
    lines.extend(explain.iter().map(|line| indent(line, "  ")));
    // Raw TUMBLE/HOP rows of the same window on every input can still be aggregated per window.
    let window = match windows.split_first() {
        Some((first, rest)) if rest.iter().all(|w| w == first) => *first,
        _ => None,
    };
    Ok(Stage {
        inputs,
        operators: Vec::new(),
        pending: Vec::new(),
        window,
        aggregated: false,
        closes_windows: false,
        props: StreamProps {
            kind: if append_only {
                StreamKind::AppendOnly
            } else {
                StreamKind::Retract
            },
            key: None,
            sealed_by: None,
            seal_span: 0,
            event_time: None,
        },
        explain: lines,
    })
}
