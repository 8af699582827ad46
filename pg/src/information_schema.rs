//! `information_schema` with PostgreSQL's spellings (`data_type` = `timestamp with time zone`,
//! `double precision`, …), which BI tools turn into widgets. Materialized views are listed as
//! `VIEW` in `tables` and in `views` (PostgreSQL itself hides them here; tools that only read
//! `information_schema`, such as Grafana's query builder, would then not see Weir's main
//! objects at all).

use std::sync::Arc;

use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;

use crate::catalog::{INFORMATION_SCHEMA_NS, PgCatalog, RelKind, namespace_name};
use crate::table::{CatalogTable, I32, RowContext, Rows, TEXT, null, opt_text, schema, text};
use crate::types::{information_schema_name, of_arrow};

/// Creates the `information_schema` views in `target` and records them in `pg`.
pub fn register(pg: &Arc<PgCatalog>, target: &MemorySchemaProvider) -> DfResult<()> {
    let tables: Vec<(&str, datafusion::arrow::datatypes::SchemaRef, Rows)> = vec![
        (
            "tables",
            schema(&[
                ("table_catalog", TEXT),
                ("table_schema", TEXT),
                ("table_name", TEXT),
                ("table_type", TEXT),
                ("self_referencing_column_name", TEXT),
                ("reference_generation", TEXT),
                ("user_defined_type_catalog", TEXT),
                ("user_defined_type_schema", TEXT),
                ("user_defined_type_name", TEXT),
                ("is_insertable_into", TEXT),
                ("is_typed", TEXT),
                ("commit_action", TEXT),
            ]),
            tables,
        ),
        (
            "columns",
            schema(&[
                ("table_catalog", TEXT),
                ("table_schema", TEXT),
                ("table_name", TEXT),
                ("column_name", TEXT),
                ("ordinal_position", I32),
                ("column_default", TEXT),
                ("is_nullable", TEXT),
                ("data_type", TEXT),
                ("character_maximum_length", I32),
                ("character_octet_length", I32),
                ("numeric_precision", I32),
                ("numeric_precision_radix", I32),
                ("numeric_scale", I32),
                ("datetime_precision", I32),
                ("interval_type", TEXT),
                ("interval_precision", I32),
                ("udt_catalog", TEXT),
                ("udt_schema", TEXT),
                ("udt_name", TEXT),
                ("is_identity", TEXT),
                ("is_generated", TEXT),
                ("is_updatable", TEXT),
                ("dtd_identifier", TEXT),
            ]),
            columns,
        ),
        (
            "schemata",
            schema(&[
                ("catalog_name", TEXT),
                ("schema_name", TEXT),
                ("schema_owner", TEXT),
                ("default_character_set_catalog", TEXT),
                ("default_character_set_schema", TEXT),
                ("default_character_set_name", TEXT),
                ("sql_path", TEXT),
            ]),
            schemata,
        ),
        (
            "views",
            schema(&[
                ("table_catalog", TEXT),
                ("table_schema", TEXT),
                ("table_name", TEXT),
                ("view_definition", TEXT),
                ("check_option", TEXT),
                ("is_updatable", TEXT),
                ("is_insertable_into", TEXT),
                ("is_trigger_updatable", TEXT),
                ("is_trigger_deletable", TEXT),
                ("is_trigger_insertable_into", TEXT),
            ]),
            views,
        ),
        (
            "routines",
            schema(&[
                ("specific_catalog", TEXT),
                ("specific_schema", TEXT),
                ("specific_name", TEXT),
                ("routine_catalog", TEXT),
                ("routine_schema", TEXT),
                ("routine_name", TEXT),
                ("routine_type", TEXT),
                ("data_type", TEXT),
                ("routine_body", TEXT),
                ("routine_definition", TEXT),
                ("external_language", TEXT),
                ("is_deterministic", TEXT),
                ("sql_data_access", TEXT),
                ("is_null_call", TEXT),
                ("security_type", TEXT),
            ]),
            routines,
        ),
    ];
    for (name, table_schema, rows) in tables {
        pg.add_builtin(
            INFORMATION_SCHEMA_NS,
            name,
            RelKind::View,
            Arc::clone(&table_schema),
        );
        target.register_table(
            name.to_string(),
            Arc::new(CatalogTable::new(table_schema, Arc::clone(pg), rows)),
        )?;
    }
    Ok(())
}

fn tables(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    let db = ctx.database();
    ctx.pg
        .relations()
        .into_iter()
        .map(|r| {
            vec![
                text(&db),
                text(namespace_name(r.namespace).unwrap_or("public")),
                text(r.name),
                text(r.kind.table_type()),
                null(),
                null(),
                null(),
                null(),
                null(),
                text("NO"),
                text("NO"),
                null(),
            ]
        })
        .collect()
}

fn columns(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    let db = ctx.database();
    let mut rows = Vec::new();
    for r in ctx.pg.relations() {
        let schema_name = namespace_name(r.namespace).unwrap_or("public");
        for (i, field) in r.schema.fields().iter().enumerate() {
            let t = of_arrow(field.data_type());
            let int = |v: Option<i32>| ScalarValue::Int32(v);
            let (precision, radix, scale) = match t.name {
                "int2" => (Some(16), Some(2), Some(0)),
                "int4" => (Some(32), Some(2), Some(0)),
                "int8" => (Some(64), Some(2), Some(0)),
                "float4" => (Some(24), Some(2), None),
                "float8" => (Some(53), Some(2), None),
                "numeric" => (None, Some(10), None),
                _ => (None, None, None),
            };
            let datetime_precision =
                matches!(t.category, 'D' | 'T').then_some(if t.name == "date" { 0 } else { 6 });
            rows.push(vec![
                text(&db),
                text(schema_name),
                text(&r.name),
                text(field.name()),
                int(i32::try_from(i + 1).ok()),
                null(),
                text(if field.is_nullable() { "YES" } else { "NO" }),
                text(information_schema_name(t)),
                null(),
                int((t.category == 'S').then_some(1_073_741_824)),
                int(precision),
                int(radix),
                int(scale),
                int(datetime_precision),
                null(),
                null(),
                text(&db),
                text("pg_catalog"),
                text(t.name),
                text("NO"),
                text("NEVER"),
                text("NO"),
                opt_text(Some((i + 1).to_string())),
            ]);
        }
    }
    rows
}

/// Every function queries can call (`weir_functions`), as PostgreSQL lists its built-ins:
/// `pg_catalog` routines of the `INTERNAL` language. The return type depends on the arguments
/// for most of them, so `data_type` is left empty; the description is in
/// `routine_definition`.
fn routines(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    let db = ctx.database();
    weir_sql::function_list::functions(ctx.state)
        .into_iter()
        .map(|f| {
            vec![
                text(&db),
                text("pg_catalog"),
                text(&f.name),
                text(&db),
                text("pg_catalog"),
                text(&f.name),
                text("FUNCTION"),
                null(),
                text("EXTERNAL"),
                opt_text(f.description),
                text("INTERNAL"),
                text("NO"),
                text("READS"),
                text("NO"),
                text("INVOKER"),
            ]
        })
        .collect()
}

fn schemata(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    let db = ctx.database();
    ["pg_catalog", "public", "information_schema"]
        .into_iter()
        .map(|s| {
            vec![
                text(&db),
                text(s),
                text(ctx.user()),
                null(),
                null(),
                null(),
                null(),
            ]
        })
        .collect()
}

fn views(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    let db = ctx.database();
    ctx.pg
        .relations()
        .into_iter()
        .filter(|r| r.kind != RelKind::Table)
        .map(|r| {
            let definition = ctx.pg.view_definition(r.oid);
            vec![
                text(&db),
                text(namespace_name(r.namespace).unwrap_or("public")),
                text(r.name),
                opt_text(definition),
                text("NONE"),
                text("NO"),
                text("NO"),
                text("NO"),
                text("NO"),
                text("NO"),
            ]
        })
        .collect()
}
