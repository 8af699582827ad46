//! Views' keys as PostgreSQL indexes: each keyed view has one unique btree index `<view>_key`
//! over its key columns ([`crate::catalog::PgCatalog::indexes`]), listed in `pg_class` and
//! `pg_index`, so `\d view` shows the key under "Indexes:" and tools that reflect a table's
//! unique keys (SQLAlchemy's `get_indexes`) find it.

use datafusion::common::ScalarValue;

use crate::catalog::{PUBLIC_NS, RelKind, RelationInfo};
use crate::table::{RowContext, boolean, int2, null, oid, text};

/// The relations, and the indexes standing for views' keys, as `pg_class` lists them.
pub(crate) fn relations_and_indexes(ctx: &RowContext<'_>) -> Vec<RelationInfo> {
    let mut all = ctx.pg.relations();
    all.extend(ctx.pg.indexes().into_iter().map(|i| RelationInfo {
        oid: i.oid,
        namespace: PUBLIC_NS,
        name: i.name,
        kind: RelKind::Index,
        schema: i.schema,
        description: None,
    }));
    all
}

/// `pg_index`: one unique index per keyed view, over its key columns.
pub(crate) fn indexes(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    let int2_array = |values: Vec<i16>| {
        let items: Vec<ScalarValue> = values.into_iter().map(int2).collect();
        ScalarValue::List(ScalarValue::new_list_nullable(
            &items,
            &datafusion::arrow::datatypes::DataType::Int16,
        ))
    };
    let oid_array = |values: Vec<i32>| {
        let items: Vec<ScalarValue> = values.into_iter().map(oid).collect();
        ScalarValue::List(ScalarValue::new_list_nullable(
            &items,
            &datafusion::arrow::datatypes::DataType::Int32,
        ))
    };
    ctx.pg
        .indexes()
        .into_iter()
        .map(|i| {
            let n = i16::try_from(i.attnums.len()).unwrap_or(i16::MAX);
            let width = i.attnums.len();
            vec![
                oid(i.oid),
                oid(i.table_oid),
                int2(n),
                int2(n),
                boolean(true),
                boolean(false),
                boolean(i.primary),
                boolean(false),
                boolean(true),
                boolean(false),
                boolean(true),
                boolean(false),
                boolean(true),
                boolean(true),
                boolean(false),
                int2_array(i.attnums),
                oid_array(vec![0; width]),
                oid_array(vec![0; width]),
                // An int2vector, which drivers read as space-separated text (SQLAlchemy's
                // index reflection splits it); no key column has sort options.
                text(vec!["0"; width].join(" ")),
                null(),
                null(),
            ]
        })
        .collect()
}

/// `pg_constraint`: a table's primary key (contype `p`), backed by its `<table>_pkey` index.
pub(crate) fn constraints(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    ctx.pg
        .indexes()
        .into_iter()
        .filter(|i| i.primary)
        .map(|i| {
            let items: Vec<ScalarValue> = i.attnums.iter().copied().map(int2).collect();
            let conkey = ScalarValue::List(ScalarValue::new_list_nullable(
                &items,
                &datafusion::arrow::datatypes::DataType::Int16,
            ));
            vec![
                oid(ctx.pg.oid(PUBLIC_NS, &format!("{}\u{0}constraint", i.name))),
                text(i.name.clone()),
                oid(PUBLIC_NS),
                text("p"),
                boolean(false),
                boolean(false),
                boolean(true),
                oid(i.table_oid),
                oid(0),
                oid(i.oid),
                oid(0),
                oid(0),
                text(" "),
                text(" "),
                text(" "),
                boolean(true),
                ScalarValue::Int32(Some(0)),
                boolean(true),
                conkey,
                null(),
                null(),
            ]
        })
        .collect()
}
