//! The `pg_catalog` schema: the relations psql, drivers and BI tools read, with PostgreSQL's
//! column names. Relations, columns, types, namespaces, the database, roles and settings are
//! computed from Weir's catalog, and each keyed view's key appears as a unique index (so `\d
//! view` shows it); catalogs of things Weir does not have (policies,
//! publications, inheritance, constraints…) exist and are empty, so client queries joining them
//! run and find nothing.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;

use crate::catalog::{
    DATABASE_OID, INFORMATION_SCHEMA_NS, OWNER_OID, PG_CATALOG_NS, PG_CLASS_OID, PUBLIC_NS,
    PgCatalog, RelKind,
};
use crate::table::{
    CatalogTable, RowContext, Rows, boolean, columns, int2, null, oid, opt_text, text,
};
use crate::types::{BUILTIN_TYPES, of_arrow};

/// Collation OID of collatable types (`default`).
const DEFAULT_COLLATION: i32 = 100;
/// `heap`, the access method of tables and materialized views.
const HEAP_AM: i32 = 2;
/// `btree`, the access method of the indexes standing for views' keys.
const BTREE_AM: i32 = 403;

/// Catalogs of things Weir does not have (extensions, policies, publications,
/// inheritance, constraints, …): they exist and are empty, so client queries joining them run
/// and find nothing. Columns are declared as PostgreSQL documents them.
const EMPTY_CATALOGS: &[(&str, &str)] = &[
    (
        "pg_extension",
        "oid oid, extname text, extowner oid, extnamespace oid, extrelocatable bool, \
         extversion text, extconfig oid[], extcondition text[]",
    ),
    (
        "pg_opclass",
        "oid oid, opcmethod oid, opcname text, opcnamespace oid, opcowner oid, opcfamily oid, \
         opcintype oid, opcdefault bool, opckeytype oid",
    ),
    ("pg_attrdef", "oid oid, adrelid oid, adnum int2, adbin text"),
    (
        "pg_auth_members",
        "oid oid, roleid oid, member oid, grantor oid, admin_option bool",
    ),
    (
        "pg_policy",
        "oid oid, polname text, polrelid oid, polcmd text, polpermissive bool, polroles oid[], \
         polqual text, polwithcheck text",
    ),
    (
        "pg_statistic_ext",
        "oid oid, stxrelid oid, stxname text, stxnamespace oid, stxowner oid, \
         stxstattarget int4, stxkeys int2[], stxkind text[], stxexprs text",
    ),
    (
        "pg_publication",
        "oid oid, pubname text, pubowner oid, puballtables bool, pubinsert bool, pubupdate bool, \
         pubdelete bool, pubtruncate bool, pubviaroot bool",
    ),
    (
        "pg_publication_rel",
        "oid oid, prpubid oid, prrelid oid, prqual text, prattrs int2[]",
    ),
    (
        "pg_publication_namespace",
        "oid oid, pnpubid oid, pnnspid oid",
    ),
    (
        "pg_inherits",
        "inhrelid oid, inhparent oid, inhseqno int4, inhdetachpending bool",
    ),
    (
        "pg_rewrite",
        "oid oid, rulename text, ev_class oid, ev_type text, ev_enabled text, is_instead bool, \
         ev_qual text, ev_action text",
    ),
    (
        "pg_depend",
        "classid oid, objid oid, objsubid int4, refclassid oid, refobjid oid, refobjsubid int4, \
         deptype text",
    ),
    (
        "pg_range",
        "rngtypid oid, rngsubtype oid, rngmultitypid oid, rngcollation oid, rngsubopc oid, \
         rngcanonical oid, rngsubdiff oid",
    ),
    (
        "pg_enum",
        "oid oid, enumtypid oid, enumsortorder float4, enumlabel text",
    ),
    (
        "pg_sequence",
        "seqrelid oid, seqtypid oid, seqstart int8, seqincrement int8, seqmax int8, seqmin int8, \
         seqcache int8, seqcycle bool",
    ),
    (
        "pg_trigger",
        "oid oid, tgrelid oid, tgparentid oid, tgname text, tgfoid oid, tgtype int2, \
         tgenabled text, tgisinternal bool, tgconstrrelid oid, tgconstrindid oid, \
         tgconstraint oid, tgdeferrable bool, tginitdeferred bool, tgnargs int2, tgattr int2[], \
         tgqual text",
    ),
    (
        "pg_shdescription",
        "objoid oid, classoid oid, description text",
    ),
    (
        "pg_stat_activity",
        "datid oid, datname text, pid int4, usesysid oid, usename text, application_name text, \
         client_addr text, backend_start text, state text, query text",
    ),
];

/// Creates every `pg_catalog` table in `target` and records them in `pg`.
pub fn register(pg: &Arc<PgCatalog>, target: &MemorySchemaProvider) -> DfResult<()> {
    let mut tables: Vec<(&str, SchemaRef, Option<Rows>)> = vec![
        (
            "pg_namespace",
            columns("oid oid, nspname text, nspowner oid, nspacl text[]")?,
            Some(namespaces),
        ),
        (
            "pg_class",
            columns(
                "oid oid, relname text, relnamespace oid, reltype oid, reloftype oid, \
                 relowner oid, relam oid, relfilenode oid, reltablespace oid, relpages int4, \
                 reltuples float4, relallvisible int4, reltoastrelid oid, relhasindex bool, \
                 relisshared bool, relpersistence text, relkind text, relnatts int2, \
                 relchecks int2, relhasrules bool, relhastriggers bool, relhassubclass bool, \
                 relrowsecurity bool, relforcerowsecurity bool, relispopulated bool, \
                 relreplident text, relispartition bool, relrewrite oid, relfrozenxid int4, \
                 relminmxid int4, relacl text[], reloptions text[], relpartbound text",
            )?,
            Some(classes),
        ),
        (
            "pg_attribute",
            columns(
                "attrelid oid, attname text, atttypid oid, attstattarget int4, attlen int2, \
                 attnum int2, attndims int4, attcacheoff int4, atttypmod int4, attbyval bool, \
                 attalign text, attstorage text, attcompression text, attnotnull bool, \
                 atthasdef bool, atthasmissing bool, attidentity text, attgenerated text, \
                 attisdropped bool, attislocal bool, attinhcount int4, attcollation oid, \
                 attacl text[], attoptions text[], attfdwoptions text[]",
            )?,
            Some(attributes),
        ),
        (
            "pg_type",
            columns(
                "oid oid, typname text, typnamespace oid, typowner oid, typlen int2, \
                 typbyval bool, typtype text, typcategory text, typispreferred bool, \
                 typisdefined bool, typdelim text, typrelid oid, typsubscript oid, typelem oid, \
                 typarray oid, typinput oid, typoutput oid, typreceive oid, typsend oid, \
                 typmodin oid, typmodout oid, typanalyze oid, typalign text, typstorage text, \
                 typnotnull bool, typbasetype oid, typtypmod int4, typndims int4, \
                 typcollation oid, typdefaultbin text, typdefault text, typacl text[]",
            )?,
            Some(types),
        ),
        (
            "pg_database",
            columns(
                "oid oid, datname text, datdba oid, encoding int4, datlocprovider text, \
                 datistemplate bool, datallowconn bool, datconnlimit int4, datfrozenxid int4, \
                 datminmxid int4, dattablespace oid, datcollate text, datctype text, \
                 daticulocale text, daticurules text, datcollversion text, datacl text[]",
            )?,
            Some(databases),
        ),
        (
            "pg_roles",
            columns(
                "rolname text, rolsuper bool, rolinherit bool, rolcreaterole bool, \
                 rolcreatedb bool, rolcanlogin bool, rolreplication bool, rolconnlimit int4, \
                 rolpassword text, rolvaliduntil timestamptz, rolbypassrls bool, rolconfig text[], \
                 oid oid",
            )?,
            Some(roles),
        ),
        (
            "pg_user",
            columns(
                "usename text, usesysid oid, usecreatedb bool, usesuper bool, userepl bool, \
                 usebypassrls bool, passwd text, valuntil text, useconfig text[]",
            )?,
            Some(users),
        ),
        (
            "pg_am",
            columns("oid oid, amname text, amhandler oid, amtype text")?,
            Some(access_methods),
        ),
        (
            "pg_constraint",
            columns(
                "oid oid, conname text, connamespace oid, contype text, condeferrable bool, \
                 condeferred bool, convalidated bool, conrelid oid, contypid oid, conindid oid, \
                 conparentid oid, confrelid oid, confupdtype text, confdeltype text, \
                 confmatchtype text, conislocal bool, coninhcount int4, connoinherit bool, \
                 conkey int2[], confkey int2[], conbin text",
            )?,
            Some(crate::pg_index::constraints),
        ),
        (
            "pg_index",
            columns(
                "indexrelid oid, indrelid oid, indnatts int2, indnkeyatts int2, indisunique bool, \
                 indnullsnotdistinct bool, indisprimary bool, indisexclusion bool, indimmediate bool, \
                 indisclustered bool, indisvalid bool, indcheckxmin bool, indisready bool, \
                 indislive bool, indisreplident bool, indkey int2[], indcollation oid[], indclass oid[], \
                 indoption text, indexprs text, indpred text",
            )?,
            Some(crate::pg_index::indexes),
        ),
        (
            "pg_description",
            columns("objoid oid, classoid oid, objsubid int4, description text")?,
            Some(descriptions),
        ),
        (
            "pg_settings",
            columns(
                "name text, setting text, unit text, category text, short_desc text, \
                 extra_desc text, context text, vartype text, source text, min_val text, \
                 max_val text, enumvals text[], boot_val text, reset_val text, sourcefile text, \
                 sourceline int4, pending_restart bool",
            )?,
            Some(settings),
        ),
        (
            "pg_proc",
            columns(
                "oid oid, proname text, pronamespace oid, proowner oid, prolang oid, \
                 procost float4, prorows float4, provariadic oid, prosupport oid, prokind text, \
                 prosecdef bool, proleakproof bool, proisstrict bool, proretset bool, \
                 provolatile text, proparallel text, pronargs int2, pronargdefaults int2, \
                 prorettype oid, proargtypes oid[], proallargtypes oid[], proargmodes text[], \
                 proargnames text[], proargdefaults text, prosrc text, probin text, \
                 proconfig text[], proacl text[]",
            )?,
            Some(functions),
        ),
        (
            "pg_collation",
            columns(
                "oid oid, collname text, collnamespace oid, collowner oid, collprovider text, \
                 collisdeterministic bool, collencoding int4, collcollate text, collctype text, \
                 colliculocale text, collicurules text, collversion text",
            )?,
            Some(collations),
        ),
        (
            "pg_tablespace",
            columns("oid oid, spcname text, spcowner oid, spcacl text[], spcoptions text[]")?,
            Some(tablespaces),
        ),
        (
            "pg_matviews",
            columns(
                "schemaname text, matviewname text, matviewowner text, tablespace text, \
                 hasindexes bool, ispopulated bool, definition text",
            )?,
            Some(matviews),
        ),
        (
            "pg_views",
            columns("schemaname text, viewname text, viewowner text, definition text")?,
            Some(views),
        ),
        (
            "pg_tables",
            columns(
                "schemaname text, tablename text, tableowner text, tablespace text, \
                 hasindexes bool, hasrules bool, hastriggers bool, rowsecurity bool",
            )?,
            Some(tables_view),
        ),
    ];
    for (name, declaration) in EMPTY_CATALOGS {
        tables.push((name, columns(declaration)?, None));
    }
    for (name, table_schema, rows) in tables {
        let kind = if matches!(
            name,
            "pg_roles"
                | "pg_user"
                | "pg_settings"
                | "pg_matviews"
                | "pg_views"
                | "pg_tables"
                | "pg_stat_activity"
        ) {
            RelKind::View
        } else {
            RelKind::Table
        };
        pg.add_builtin(PG_CATALOG_NS, name, kind, Arc::clone(&table_schema));
        let table = match rows {
            Some(rows) => CatalogTable::new(table_schema, Arc::clone(pg), rows),
            None => CatalogTable::empty(table_schema, Arc::clone(pg)),
        };
        target.register_table(name.to_string(), Arc::new(table))?;
    }
    Ok(())
}

fn namespaces(_: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    [
        (PG_CATALOG_NS, "pg_catalog"),
        (PUBLIC_NS, "public"),
        (INFORMATION_SCHEMA_NS, "information_schema"),
    ]
    .into_iter()
    .map(|(o, n)| vec![oid(o), text(n), oid(OWNER_OID), null()])
    .collect()
}

fn classes(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    let indexed: Vec<i32> = ctx.pg.indexes().iter().map(|i| i.table_oid).collect();
    crate::pg_index::relations_and_indexes(ctx)
        .into_iter()
        .map(|r| {
            let am = match r.kind {
                RelKind::View => 0,
                RelKind::Index => BTREE_AM,
                _ => HEAP_AM,
            };
            let has_index = indexed.contains(&r.oid);
            vec![
                oid(r.oid),
                text(&r.name),
                oid(r.namespace),
                oid(0),
                oid(0),
                oid(OWNER_OID),
                oid(am),
                oid(0),
                oid(0),
                ScalarValue::Int32(Some(0)),
                ScalarValue::Float32(Some(-1.0)),
                ScalarValue::Int32(Some(0)),
                oid(0),
                boolean(has_index),
                boolean(false),
                text("p"),
                text(r.kind.letter()),
                int2(i16::try_from(r.schema.fields().len()).unwrap_or(i16::MAX)),
                int2(0),
                boolean(false),
                boolean(false),
                boolean(false),
                boolean(false),
                boolean(false),
                boolean(true),
                // PostgreSQL's replica identity: 'd' (default) for tables and matviews.
                text(if r.kind == RelKind::View { "n" } else { "d" }),
                boolean(false),
                oid(0),
                ScalarValue::Int32(Some(0)),
                ScalarValue::Int32(Some(0)),
                null(),
                null(),
                null(),
            ]
        })
        .collect()
}

fn attributes(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    let mut rows = Vec::new();
    for r in crate::pg_index::relations_and_indexes(ctx) {
        for (i, field) in r.schema.fields().iter().enumerate() {
            let t = of_arrow(field.data_type());
            let collation = if t.category == 'S' {
                DEFAULT_COLLATION
            } else {
                0
            };
            rows.push(vec![
                oid(r.oid),
                text(field.name()),
                oid(t.oid),
                ScalarValue::Int32(Some(-1)),
                int2(t.len),
                int2(i16::try_from(i + 1).unwrap_or(i16::MAX)),
                ScalarValue::Int32(Some(i32::from(t.elem != 0))),
                ScalarValue::Int32(Some(-1)),
                ScalarValue::Int32(Some(-1)),
                boolean(t.len > 0 && t.len <= 8),
                text("i"),
                text(if t.len == -1 { "x" } else { "p" }),
                text(""),
                boolean(!field.is_nullable()),
                boolean(false),
                boolean(false),
                text(""),
                text(""),
                boolean(false),
                boolean(true),
                ScalarValue::Int32(Some(0)),
                oid(collation),
                null(),
                null(),
                null(),
            ]);
        }
    }
    rows
}

/// `array_in`'s OID: pgjdbc recognises array types by `typinput = 'array_in'::regproc`.
pub const ARRAY_IN_OID: i32 = 750;

fn types(_: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    BUILTIN_TYPES
        .iter()
        .map(|t| {
            let pseudo = t.category == 'P' || t.category == 'X';
            let collation = if t.category == 'S' {
                DEFAULT_COLLATION
            } else {
                0
            };
            vec![
                oid(t.oid),
                text(t.name),
                oid(PG_CATALOG_NS),
                oid(OWNER_OID),
                int2(t.len),
                boolean(t.len > 0 && t.len <= 8),
                text(if pseudo { "p" } else { "b" }),
                text(t.category.to_string()),
                boolean(false),
                boolean(true),
                text(","),
                oid(0),
                oid(0),
                oid(t.elem),
                oid(t.array),
                oid(if t.elem != 0 { ARRAY_IN_OID } else { 0 }),
                oid(0),
                oid(0),
                oid(0),
                oid(0),
                oid(0),
                oid(0),
                text(if t.len == 8 { "d" } else { "i" }),
                text(if t.len == -1 { "x" } else { "p" }),
                boolean(false),
                oid(0),
                ScalarValue::Int32(Some(-1)),
                ScalarValue::Int32(Some(0)),
                oid(collation),
                null(),
                null(),
                null(),
            ]
        })
        .collect()
}

/// Weir has one database; it answers to whatever name the client connected with.
fn databases(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    vec![vec![
        oid(DATABASE_OID),
        text(ctx.database()),
        oid(OWNER_OID),
        ScalarValue::Int32(Some(6)),
        text("c"),
        boolean(false),
        boolean(true),
        ScalarValue::Int32(Some(-1)),
        ScalarValue::Int32(Some(0)),
        ScalarValue::Int32(Some(0)),
        oid(1663),
        text("C.UTF-8"),
        text("C.UTF-8"),
        null(),
        null(),
        null(),
        null(),
    ]]
}

/// The connected user is the owner role (OID 10): Weir has no per-object privileges.
fn roles(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    vec![vec![
        text(ctx.user()),
        boolean(true),
        boolean(true),
        boolean(true),
        boolean(true),
        boolean(true),
        boolean(false),
        ScalarValue::Int32(Some(-1)),
        text("********"),
        null(),
        boolean(true),
        null(),
        oid(OWNER_OID),
    ]]
}

fn users(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    vec![vec![
        text(ctx.user()),
        oid(OWNER_OID),
        boolean(true),
        boolean(true),
        boolean(false),
        boolean(true),
        text("********"),
        null(),
        null(),
    ]]
}

fn access_methods(_: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    [
        (HEAP_AM, "heap", "t"),
        (BTREE_AM, "btree", "i"),
        (405, "hash", "i"),
        (783, "gist", "i"),
        (2742, "gin", "i"),
        (4000, "spgist", "i"),
        (3580, "brin", "i"),
    ]
    .into_iter()
    .map(|(o, n, k)| vec![oid(o), text(n), oid(0), text(k)])
    .collect()
}

fn descriptions(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    ctx.pg
        .relations()
        .into_iter()
        .filter_map(|r| {
            r.description.map(|d| {
                vec![
                    oid(r.oid),
                    oid(PG_CLASS_OID),
                    ScalarValue::Int32(Some(0)),
                    text(d),
                ]
            })
        })
        .collect()
}

fn settings(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    let Some(session) = &ctx.session else {
        return Vec::new();
    };
    session
        .all()
        .into_iter()
        .map(|(name, value, description, user)| {
            vec![
                text(name),
                text(value),
                null(),
                text("Weir"),
                text(description),
                null(),
                text(if user { "user" } else { "internal" }),
                text("string"),
                text("default"),
                null(),
                null(),
                null(),
                null(),
                null(),
                null(),
                null(),
                boolean(false),
            ]
        })
        .collect()
}

/// Every function a query can call (DataFusion's and Weir's), as built-ins in `pg_catalog`.
fn functions(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    let mut names: Vec<(String, &str)> = ctx
        .state
        .scalar_functions()
        .keys()
        .map(|n| (n.clone(), "f"))
        .collect();
    names.extend(
        ctx.state
            .aggregate_functions()
            .keys()
            .map(|n| (n.clone(), "a")),
    );
    names.extend(
        ctx.state
            .window_functions()
            .keys()
            .map(|n| (n.clone(), "w")),
    );
    names.sort();
    names.dedup_by(|a, b| a.0 == b.0);
    names
        .into_iter()
        .map(|(name, kind)| {
            let o = ctx.pg.oid(PG_CATALOG_NS, &format!("function {name}"));
            vec![
                oid(o),
                text(name.clone()),
                oid(PG_CATALOG_NS),
                oid(OWNER_OID),
                oid(12),
                ScalarValue::Float32(Some(1.0)),
                ScalarValue::Float32(Some(0.0)),
                oid(0),
                oid(0),
                text(kind),
                boolean(false),
                boolean(false),
                boolean(false),
                boolean(false),
                text("i"),
                text("s"),
                int2(0),
                int2(0),
                oid(0),
                null(),
                null(),
                null(),
                null(),
                null(),
                text(name),
                null(),
                null(),
                null(),
            ]
        })
        .collect()
}

fn collations(_: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    [
        (DEFAULT_COLLATION, "default", "d"),
        (950, "C", "c"),
        (951, "POSIX", "c"),
    ]
    .into_iter()
    .map(|(o, n, p)| {
        vec![
            oid(o),
            text(n),
            oid(PG_CATALOG_NS),
            oid(OWNER_OID),
            text(p),
            boolean(true),
            ScalarValue::Int32(Some(-1)),
            opt_text((p == "c").then(|| n.to_string())),
            opt_text((p == "c").then(|| n.to_string())),
            null(),
            null(),
            null(),
        ]
    })
    .collect()
}

fn tablespaces(_: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    vec![
        vec![
            oid(1663),
            text("pg_default"),
            oid(OWNER_OID),
            null(),
            null(),
        ],
        vec![oid(1664), text("pg_global"), oid(OWNER_OID), null(), null()],
    ]
}

fn matviews(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    let indexed: Vec<i32> = ctx.pg.indexes().iter().map(|i| i.table_oid).collect();
    ctx.pg
        .relations()
        .into_iter()
        .filter(|r| r.kind == RelKind::MaterializedView)
        .map(|r| {
            let definition = ctx.pg.view_definition(r.oid);
            vec![
                text("public"),
                text(r.name),
                text(ctx.user()),
                null(),
                boolean(indexed.contains(&r.oid)),
                boolean(true),
                opt_text(definition),
            ]
        })
        .collect()
}

fn views(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    ctx.pg
        .relations()
        .into_iter()
        .filter(|r| r.kind == RelKind::View)
        .map(|r| {
            let ns = crate::catalog::namespace_name(r.namespace).unwrap_or("public");
            vec![text(ns), text(r.name), text(ctx.user()), null()]
        })
        .collect()
}

fn tables_view(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    ctx.pg
        .relations()
        .into_iter()
        .filter(|r| r.kind == RelKind::Table)
        .map(|r| {
            let ns = crate::catalog::namespace_name(r.namespace).unwrap_or("public");
            vec![
                text(ns),
                text(r.name),
                text(ctx.user()),
                null(),
                boolean(false),
                boolean(false),
                boolean(false),
                boolean(false),
            ]
        })
        .collect()
}
