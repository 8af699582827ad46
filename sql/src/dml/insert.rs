//! `INSERT` into a table: new keys become inserts; a key that is already live is a unique
//! violation (23505), or with `ON CONFLICT` is skipped (`DO NOTHING`) or updated (`DO UPDATE SET
//! … [WHERE …]`, with `EXCLUDED.col` the proposed row), as in PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{
    cast, concat_batches, filter_record_batch, interleave_record_batch, take_record_batch,
};
use datafusion::arrow::datatypes::Field;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::common::{DFSchema, TableReference};
use datafusion::execution::SessionState;
use datafusion::physical_plan::aggregates::group_values::new_group_values;
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, ConflictTarget, Expr as SqlExpr, OnConflictAction, OnInsert,
};
use weir_engine::changes::{Changes, Op};
use weir_engine::table::TableWriter;
use weir_engine::view_table::ViewTable;

use super::{Computed, conform};
use crate::error::{Result, SqlError, SqlErrorKind};
use crate::parser::normalize_ident;

/// `ON CONFLICT …`, checked against the table.
#[derive(Debug, Clone)]
pub(crate) struct OnConflictPlan {
    /// How the table is named in `DO UPDATE` expressions (its name, or its alias).
    qualifier: String,
    action: Action,
}

#[derive(Debug, Clone)]
enum Action {
    Nothing,
    Update {
        /// Column index → new value.
        assignments: Vec<(usize, SqlExpr)>,
        selection: Option<Box<SqlExpr>>,
    },
}

impl OnConflictPlan {
    /// Checks `on` against table `name`: its target must be the primary key, assignments must
    /// name columns outside the key.
    pub(crate) fn plan(
        table: &TableWriter,
        name: &str,
        alias: Option<String>,
        on: OnInsert,
    ) -> Result<Self> {
        let OnInsert::OnConflict(on) = on else {
            return Err(SqlError::new(
                SqlErrorKind::FeatureNotSupported,
                "ON DUPLICATE KEY UPDATE is MySQL's: use ON CONFLICT (key) DO UPDATE SET …",
            ));
        };
        let schema = table.table().schema_ref();
        let Some(key) = table.key() else {
            return Err(SqlError::new(
                SqlErrorKind::InvalidConflictTarget,
                format!(
                    "there is no unique or exclusion constraint matching the ON CONFLICT \
                     specification (table \"{name}\" has no primary key)"
                ),
            ));
        };
        let column = |ident: &str| {
            schema.index_of(ident).map_err(|_| {
                SqlError::new(
                    SqlErrorKind::UndefinedColumn,
                    format!("column \"{ident}\" of relation \"{name}\" does not exist"),
                )
            })
        };
        match &on.conflict_target {
            None => {}
            Some(ConflictTarget::Columns(columns)) => {
                let mut named = columns
                    .iter()
                    .map(|c| column(&normalize_ident(c)))
                    .collect::<Result<Vec<_>>>()?;
                named.sort_unstable();
                let mut primary = key.to_vec();
                primary.sort_unstable();
                if named != primary {
                    return Err(no_matching_constraint());
                }
            }
            Some(ConflictTarget::OnConstraint(constraint)) => {
                let constraint = constraint.to_string();
                if constraint != format!("{name}_pkey") && constraint != format!("{name}_key") {
                    return Err(no_matching_constraint());
                }
            }
        }
        let action = match on.action {
            OnConflictAction::DoNothing => Action::Nothing,
            OnConflictAction::DoUpdate(update) => {
                let mut assignments = Vec::new();
                for a in update.assignments {
                    let AssignmentTarget::ColumnName(target) = &a.target else {
                        return Err(SqlError::new(
                            SqlErrorKind::FeatureNotSupported,
                            "ON CONFLICT DO UPDATE SET (a, b) = … is not supported: one column \
                             per assignment",
                        ));
                    };
                    let last = target.0.last().and_then(|p| p.as_ident()).ok_or_else(|| {
                        SqlError::syntax(format!("invalid assignment target {target}"))
                    })?;
                    let index = column(&normalize_ident(last))?;
                    if key.contains(&index) {
                        return Err(SqlError::new(
                            SqlErrorKind::FeatureNotSupported,
                            format!(
                                "ON CONFLICT DO UPDATE cannot change the primary key column \
                                 \"{}\"",
                                schema.field(index).name()
                            ),
                        ));
                    }
                    assignments.push((index, a.value));
                }
                Action::Update {
                    assignments,
                    selection: update.selection.map(Box::new),
                }
            }
        };
        Ok(Self {
            qualifier: alias.unwrap_or_else(|| name.to_string()),
            action,
        })
    }
}

fn no_matching_constraint() -> SqlError {
    SqlError::new(
        SqlErrorKind::InvalidConflictTarget,
        "there is no unique or exclusion constraint matching the ON CONFLICT specification \
         (name the primary key's columns)",
    )
}

/// The changes of inserting `rows` into `table` (as the write sees it).
pub(super) async fn changes(
    table: &ViewTable,
    writer: &TableWriter,
    rows: RecordBatch,
    on_conflict: Option<&OnConflictPlan>,
    state: &SessionState,
) -> Result<Computed> {
    let rows = conform(writer, rows)?;
    let Some(key) = writer.key() else {
        let n = rows.num_rows();
        return Ok((Changes::inserts(rows), n));
    };
    let first = first_of_each_key(&rows, key)?;
    let repeated = first.iter().any(|f| !f);
    let (found, existing) = table.live_versions(&rows)?;
    let Some(on_conflict) = on_conflict else {
        if let Some(&at) = found.first() {
            return Err(unique_violation(writer, &rows, at));
        }
        if repeated {
            let at = first.iter().position(|f| !f).unwrap_or(0);
            return Err(unique_violation(writer, &rows, at));
        }
        let n = rows.num_rows();
        return Ok((Changes::inserts(rows), n));
    };
    let mut is_new = first.clone();
    for &i in &found {
        is_new[i] = false;
    }
    let new_rows = filter_record_batch(&rows, &BooleanArray::from(is_new))?;
    match &on_conflict.action {
        Action::Nothing => {
            let n = new_rows.num_rows();
            Ok((Changes::inserts(new_rows), n))
        }
        Action::Update {
            assignments,
            selection,
        } => {
            if repeated {
                return Err(SqlError::new(
                    SqlErrorKind::CardinalityViolation,
                    "ON CONFLICT DO UPDATE command cannot affect row a second time (the rows \
                     proposed for insertion repeat a key)",
                ));
            }
            let positions = UInt32Array::from_iter_values(found.iter().map(|&i| i as u32));
            let excluded = take_record_batch(&rows, &positions)?;
            let (old, new) = updated_rows(
                writer,
                &on_conflict.qualifier,
                existing,
                excluded,
                assignments,
                selection.as_deref(),
                state,
            )?;
            let updated = old.num_rows();
            let inserted = new_rows.num_rows();
            // Update pairs first, then the new keys.
            let pairs: Vec<(usize, usize)> = (0..updated).flat_map(|i| [(0, i), (1, i)]).collect();
            let paired = interleave_record_batch(&[&old, &new], &pairs)?;
            let all = concat_batches(&rows.schema(), [&paired, &new_rows])?;
            let mut ops = Vec::with_capacity(all.num_rows());
            for _ in 0..updated {
                ops.push(Op::UpdateBefore);
                ops.push(Op::UpdateAfter);
            }
            ops.resize(all.num_rows(), Op::Insert);
            Ok((Changes::from_ops(all, &ops)?, updated + inserted))
        }
    }
}

/// For conflicting rows: the live rows the `WHERE` keeps, and their new versions.
fn updated_rows(
    writer: &TableWriter,
    qualifier: &str,
    existing: RecordBatch,
    excluded: RecordBatch,
    assignments: &[(usize, SqlExpr)],
    selection: Option<&SqlExpr>,
    state: &SessionState,
) -> Result<(RecordBatch, RecordBatch)> {
    let schema = existing.schema();
    let mut fields: Vec<(Option<TableReference>, Arc<Field>)> = Vec::new();
    for f in schema.fields() {
        fields.push((Some(TableReference::bare(qualifier)), Arc::clone(f)));
    }
    for f in schema.fields() {
        fields.push((Some(TableReference::bare("excluded")), Arc::clone(f)));
    }
    let df_schema = DFSchema::new_with_metadata(fields, HashMap::new())?;
    let mut columns = existing.columns().to_vec();
    columns.extend(excluded.columns().iter().cloned());
    let both = RecordBatch::try_new(Arc::new(df_schema.as_arrow().clone()), columns)?;
    let evaluate = |expr: &SqlExpr| -> Result<ArrayRef> {
        let logical = state.create_logical_expr_from_sql_expr(
            datafusion::sql::sqlparser::ast::ExprWithAlias {
                expr: expr.clone(),
                alias: None,
            },
            &df_schema,
        )?;
        let physical = state.create_physical_expr(logical, &df_schema)?;
        Ok(physical.evaluate(&both)?.into_array(both.num_rows())?)
    };
    let mut new_columns = existing.columns().to_vec();
    for (index, expr) in assignments {
        let value = evaluate(expr)?;
        new_columns[*index] = cast(&value, schema.field(*index).data_type())?;
    }
    let new = conform(
        writer,
        RecordBatch::try_new(Arc::clone(&schema), new_columns)?,
    )?;
    let Some(selection) = selection else {
        return Ok((existing, new));
    };
    let keep = evaluate(selection)?;
    let keep = keep
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| {
            SqlError::new(
                SqlErrorKind::User,
                "argument of ON CONFLICT … WHERE must be type boolean",
            )
        })?;
    // NULL counts as false (prep_null_mask_filter expects a null buffer to be there).
    let keep = if keep.null_count() > 0 {
        datafusion::arrow::compute::prep_null_mask_filter(keep)
    } else {
        keep.clone()
    };
    Ok((
        filter_record_batch(&existing, &keep)?,
        filter_record_batch(&new, &keep)?,
    ))
}

/// Per row: true for the first row of its key in `rows`. Keys are interned with DataFusion's
/// `GroupValues` (one vectorised hash of the key columns): ids are handed out in first-seen order,
/// so a row is its key's first exactly when it gets the next new id.
fn first_of_each_key(rows: &RecordBatch, key: &[usize]) -> Result<Vec<bool>> {
    let schema = rows.schema();
    let key_schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
        key.iter()
            .map(|&k| schema.field(k).clone())
            .collect::<Vec<_>>(),
    ));
    let mut interner = new_group_values(key_schema, &GroupOrdering::None)?;
    let columns: Vec<ArrayRef> = key.iter().map(|&k| Arc::clone(rows.column(k))).collect();
    let mut ids = Vec::with_capacity(rows.num_rows());
    interner.intern(&columns, &mut ids)?;
    let mut next = 0usize;
    Ok(ids
        .iter()
        .map(|&id| {
            let first = id == next;
            if first {
                next += 1;
            }
            first
        })
        .collect())
}

/// PostgreSQL's duplicate-key error for row `at` of `rows`.
pub(super) fn unique_violation(table: &TableWriter, rows: &RecordBatch, at: usize) -> SqlError {
    let key = table.key().unwrap_or_default();
    let schema = rows.schema();
    let names: Vec<&str> = key
        .iter()
        .map(|&k| schema.field(k).name().as_str())
        .collect();
    let values: Vec<String> = key
        .iter()
        .map(|&k| array_value_to_string(rows.column(k), at).unwrap_or_default())
        .collect();
    SqlError::new(
        SqlErrorKind::UniqueViolation,
        format!(
            "duplicate key value violates unique constraint \"{}_pkey\": Key ({})=({}) already \
             exists.",
            table.name(),
            names.join(", "),
            values.join(", ")
        ),
    )
}
