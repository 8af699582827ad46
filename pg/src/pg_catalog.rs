//! The `pg_catalog` schema: the relations psql, drivers and BI tools read, with PostgreSQL's
//! column names. Relations, columns, types, namespaces, the database, roles and settings are
//! computed from Weir's catalog; catalogs of things Weir does not have (indexes, policies,
//! publications, inheritance, constraints…) exist and are empty, so client queries joining them
//! run and find nothing.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;

use crate::catalog::{
    DATABASE_OID, INFORMATION_SCHEMA_NS, OWNER_OID, PG_CATALOG_NS, PG_CLASS_OID, PUBLIC_NS,
    PgCatalog, RelKind,
};
use crate::table::{
    BOOL, CatalogTable, F32, I16, I32, I64, OID, RowContext, Rows, TEXT, boolean, int2, list, null,
    oid, opt_text, schema, text,
};
use crate::types::{BUILTIN_TYPES, of_arrow};

/// Collation OID of collatable types (`default`).
const DEFAULT_COLLATION: i32 = 100;
/// `heap`, the access method of tables and materialized views.
const HEAP_AM: i32 = 2;

/// Creates every `pg_catalog` table in `target` and records them in `pg`.
pub fn register(pg: &Arc<PgCatalog>, target: &MemorySchemaProvider) -> DfResult<()> {
    let tables: Vec<(&str, SchemaRef, Option<Rows>)> = vec![
        (
            "pg_namespace",
            schema(&[
                ("oid", OID),
                ("nspname", TEXT),
                ("nspowner", OID),
                ("nspacl", list(TEXT)),
            ]),
            Some(namespaces),
        ),
        ("pg_class", pg_class_schema(), Some(classes)),
        ("pg_attribute", pg_attribute_schema(), Some(attributes)),
        ("pg_type", pg_type_schema(), Some(types)),
        ("pg_database", pg_database_schema(), Some(databases)),
        ("pg_roles", pg_roles_schema(), Some(roles)),
        (
            "pg_user",
            schema(&[
                ("usename", TEXT),
                ("usesysid", OID),
                ("usecreatedb", BOOL),
                ("usesuper", BOOL),
                ("userepl", BOOL),
                ("usebypassrls", BOOL),
                ("passwd", TEXT),
                ("valuntil", TEXT),
                ("useconfig", list(TEXT)),
            ]),
            Some(users),
        ),
        (
            "pg_am",
            schema(&[
                ("oid", OID),
                ("amname", TEXT),
                ("amhandler", OID),
                ("amtype", TEXT),
            ]),
            Some(access_methods),
        ),
        (
            "pg_description",
            schema(&[
                ("objoid", OID),
                ("classoid", OID),
                ("objsubid", I32),
                ("description", TEXT),
            ]),
            Some(descriptions),
        ),
        ("pg_settings", pg_settings_schema(), Some(settings)),
        ("pg_proc", pg_proc_schema(), Some(functions)),
        (
            "pg_collation",
            schema(&[
                ("oid", OID),
                ("collname", TEXT),
                ("collnamespace", OID),
                ("collowner", OID),
                ("collprovider", TEXT),
                ("collisdeterministic", BOOL),
                ("collencoding", I32),
                ("collcollate", TEXT),
                ("collctype", TEXT),
                ("colliculocale", TEXT),
                ("collicurules", TEXT),
                ("collversion", TEXT),
            ]),
            Some(collations),
        ),
        (
            "pg_tablespace",
            schema(&[
                ("oid", OID),
                ("spcname", TEXT),
                ("spcowner", OID),
                ("spcacl", list(TEXT)),
                ("spcoptions", list(TEXT)),
            ]),
            Some(tablespaces),
        ),
        (
            "pg_matviews",
            schema(&[
                ("schemaname", TEXT),
                ("matviewname", TEXT),
                ("matviewowner", TEXT),
                ("tablespace", TEXT),
                ("hasindexes", BOOL),
                ("ispopulated", BOOL),
                ("definition", TEXT),
            ]),
            Some(matviews),
        ),
        (
            "pg_views",
            schema(&[
                ("schemaname", TEXT),
                ("viewname", TEXT),
                ("viewowner", TEXT),
                ("definition", TEXT),
            ]),
            Some(views),
        ),
        (
            "pg_tables",
            schema(&[
                ("schemaname", TEXT),
                ("tablename", TEXT),
                ("tableowner", TEXT),
                ("tablespace", TEXT),
                ("hasindexes", BOOL),
                ("hasrules", BOOL),
                ("hastriggers", BOOL),
                ("rowsecurity", BOOL),
            ]),
            Some(tables_view),
        ),
        (
            "pg_extension",
            schema(&[
                ("oid", OID),
                ("extname", TEXT),
                ("extowner", OID),
                ("extnamespace", OID),
                ("extrelocatable", BOOL),
                ("extversion", TEXT),
                ("extconfig", list(OID)),
                ("extcondition", list(TEXT)),
            ]),
            None,
        ),
        (
            "pg_index",
            schema(&[
                ("indexrelid", OID),
                ("indrelid", OID),
                ("indnatts", I16),
                ("indnkeyatts", I16),
                ("indisunique", BOOL),
                ("indnullsnotdistinct", BOOL),
                ("indisprimary", BOOL),
                ("indisexclusion", BOOL),
                ("indimmediate", BOOL),
                ("indisclustered", BOOL),
                ("indisvalid", BOOL),
                ("indcheckxmin", BOOL),
                ("indisready", BOOL),
                ("indislive", BOOL),
                ("indisreplident", BOOL),
                ("indkey", list(I16)),
                ("indcollation", list(OID)),
                ("indclass", list(OID)),
                ("indoption", list(I16)),
                ("indexprs", TEXT),
                ("indpred", TEXT),
            ]),
            None,
        ),
        (
            "pg_opclass",
            schema(&[
                ("oid", OID),
                ("opcmethod", OID),
                ("opcname", TEXT),
                ("opcnamespace", OID),
                ("opcowner", OID),
                ("opcfamily", OID),
                ("opcintype", OID),
                ("opcdefault", BOOL),
                ("opckeytype", OID),
            ]),
            None,
        ),
        (
            "pg_attrdef",
            schema(&[
                ("oid", OID),
                ("adrelid", OID),
                ("adnum", I16),
                ("adbin", TEXT),
            ]),
            None,
        ),
        (
            "pg_auth_members",
            schema(&[
                ("oid", OID),
                ("roleid", OID),
                ("member", OID),
                ("grantor", OID),
                ("admin_option", BOOL),
            ]),
            None,
        ),
        (
            "pg_policy",
            schema(&[
                ("oid", OID),
                ("polname", TEXT),
                ("polrelid", OID),
                ("polcmd", TEXT),
                ("polpermissive", BOOL),
                ("polroles", list(OID)),
                ("polqual", TEXT),
                ("polwithcheck", TEXT),
            ]),
            None,
        ),
        (
            "pg_statistic_ext",
            schema(&[
                ("oid", OID),
                ("stxrelid", OID),
                ("stxname", TEXT),
                ("stxnamespace", OID),
                ("stxowner", OID),
                ("stxstattarget", I32),
                ("stxkeys", list(I16)),
                ("stxkind", list(TEXT)),
                ("stxexprs", TEXT),
            ]),
            None,
        ),
        (
            "pg_publication",
            schema(&[
                ("oid", OID),
                ("pubname", TEXT),
                ("pubowner", OID),
                ("puballtables", BOOL),
                ("pubinsert", BOOL),
                ("pubupdate", BOOL),
                ("pubdelete", BOOL),
                ("pubtruncate", BOOL),
                ("pubviaroot", BOOL),
            ]),
            None,
        ),
        (
            "pg_publication_rel",
            schema(&[
                ("oid", OID),
                ("prpubid", OID),
                ("prrelid", OID),
                ("prqual", TEXT),
                ("prattrs", list(I16)),
            ]),
            None,
        ),
        (
            "pg_publication_namespace",
            schema(&[("oid", OID), ("pnpubid", OID), ("pnnspid", OID)]),
            None,
        ),
        (
            "pg_inherits",
            schema(&[
                ("inhrelid", OID),
                ("inhparent", OID),
                ("inhseqno", I32),
                ("inhdetachpending", BOOL),
            ]),
            None,
        ),
        (
            "pg_rewrite",
            schema(&[
                ("oid", OID),
                ("rulename", TEXT),
                ("ev_class", OID),
                ("ev_type", TEXT),
                ("ev_enabled", TEXT),
                ("is_instead", BOOL),
                ("ev_qual", TEXT),
                ("ev_action", TEXT),
            ]),
            None,
        ),
        (
            "pg_constraint",
            schema(&[
                ("oid", OID),
                ("conname", TEXT),
                ("connamespace", OID),
                ("contype", TEXT),
                ("condeferrable", BOOL),
                ("condeferred", BOOL),
                ("convalidated", BOOL),
                ("conrelid", OID),
                ("contypid", OID),
                ("conindid", OID),
                ("conparentid", OID),
                ("confrelid", OID),
                ("confupdtype", TEXT),
                ("confdeltype", TEXT),
                ("confmatchtype", TEXT),
                ("conislocal", BOOL),
                ("coninhcount", I32),
                ("connoinherit", BOOL),
                ("conkey", list(I16)),
                ("confkey", list(I16)),
                ("conbin", TEXT),
            ]),
            None,
        ),
        (
            "pg_depend",
            schema(&[
                ("classid", OID),
                ("objid", OID),
                ("objsubid", I32),
                ("refclassid", OID),
                ("refobjid", OID),
                ("refobjsubid", I32),
                ("deptype", TEXT),
            ]),
            None,
        ),
        (
            "pg_range",
            schema(&[
                ("rngtypid", OID),
                ("rngsubtype", OID),
                ("rngmultitypid", OID),
                ("rngcollation", OID),
                ("rngsubopc", OID),
                ("rngcanonical", OID),
                ("rngsubdiff", OID),
            ]),
            None,
        ),
        (
            "pg_enum",
            schema(&[
                ("oid", OID),
                ("enumtypid", OID),
                ("enumsortorder", F32),
                ("enumlabel", TEXT),
            ]),
            None,
        ),
        (
            "pg_sequence",
            schema(&[
                ("seqrelid", OID),
                ("seqtypid", OID),
                ("seqstart", I64),
                ("seqincrement", I64),
                ("seqmax", I64),
                ("seqmin", I64),
                ("seqcache", I64),
                ("seqcycle", BOOL),
            ]),
            None,
        ),
        (
            "pg_trigger",
            schema(&[
                ("oid", OID),
                ("tgrelid", OID),
                ("tgparentid", OID),
                ("tgname", TEXT),
                ("tgfoid", OID),
                ("tgtype", I16),
                ("tgenabled", TEXT),
                ("tgisinternal", BOOL),
                ("tgconstrrelid", OID),
                ("tgconstrindid", OID),
                ("tgconstraint", OID),
                ("tgdeferrable", BOOL),
                ("tginitdeferred", BOOL),
                ("tgnargs", I16),
                ("tgattr", list(I16)),
                ("tgqual", TEXT),
            ]),
            None,
        ),
        (
            "pg_shdescription",
            schema(&[("objoid", OID), ("classoid", OID), ("description", TEXT)]),
            None,
        ),
        (
            "pg_stat_activity",
            schema(&[
                ("datid", OID),
                ("datname", TEXT),
                ("pid", I32),
                ("usesysid", OID),
                ("usename", TEXT),
                ("application_name", TEXT),
                ("client_addr", TEXT),
                ("backend_start", TEXT),
                ("state", TEXT),
                ("query", TEXT),
            ]),
            None,
        ),
    ];
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

fn pg_class_schema() -> SchemaRef {
    schema(&[
        ("oid", OID),
        ("relname", TEXT),
        ("relnamespace", OID),
        ("reltype", OID),
        ("reloftype", OID),
        ("relowner", OID),
        ("relam", OID),
        ("relfilenode", OID),
        ("reltablespace", OID),
        ("relpages", I32),
        ("reltuples", F32),
        ("relallvisible", I32),
        ("reltoastrelid", OID),
        ("relhasindex", BOOL),
        ("relisshared", BOOL),
        ("relpersistence", TEXT),
        ("relkind", TEXT),
        ("relnatts", I16),
        ("relchecks", I16),
        ("relhasrules", BOOL),
        ("relhastriggers", BOOL),
        ("relhassubclass", BOOL),
        ("relrowsecurity", BOOL),
        ("relforcerowsecurity", BOOL),
        ("relispopulated", BOOL),
        ("relreplident", TEXT),
        ("relispartition", BOOL),
        ("relrewrite", OID),
        ("relfrozenxid", I32),
        ("relminmxid", I32),
        ("relacl", list(TEXT)),
        ("reloptions", list(TEXT)),
        ("relpartbound", TEXT),
    ])
}

fn classes(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    ctx.pg
        .relations()
        .into_iter()
        .map(|r| {
            let am = if r.kind == RelKind::View { 0 } else { HEAP_AM };
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
                boolean(false),
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

fn pg_attribute_schema() -> SchemaRef {
    schema(&[
        ("attrelid", OID),
        ("attname", TEXT),
        ("atttypid", OID),
        ("attstattarget", I32),
        ("attlen", I16),
        ("attnum", I16),
        ("attndims", I32),
        ("attcacheoff", I32),
        ("atttypmod", I32),
        ("attbyval", BOOL),
        ("attalign", TEXT),
        ("attstorage", TEXT),
        ("attcompression", TEXT),
        ("attnotnull", BOOL),
        ("atthasdef", BOOL),
        ("atthasmissing", BOOL),
        ("attidentity", TEXT),
        ("attgenerated", TEXT),
        ("attisdropped", BOOL),
        ("attislocal", BOOL),
        ("attinhcount", I32),
        ("attcollation", OID),
        ("attacl", list(TEXT)),
        ("attoptions", list(TEXT)),
        ("attfdwoptions", list(TEXT)),
    ])
}

fn attributes(ctx: &RowContext<'_>) -> Vec<Vec<ScalarValue>> {
    let mut rows = Vec::new();
    for r in ctx.pg.relations() {
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

fn pg_type_schema() -> SchemaRef {
    schema(&[
        ("oid", OID),
        ("typname", TEXT),
        ("typnamespace", OID),
        ("typowner", OID),
        ("typlen", I16),
        ("typbyval", BOOL),
        ("typtype", TEXT),
        ("typcategory", TEXT),
        ("typispreferred", BOOL),
        ("typisdefined", BOOL),
        ("typdelim", TEXT),
        ("typrelid", OID),
        ("typsubscript", OID),
        ("typelem", OID),
        ("typarray", OID),
        ("typinput", OID),
        ("typoutput", OID),
        ("typreceive", OID),
        ("typsend", OID),
        ("typmodin", OID),
        ("typmodout", OID),
        ("typanalyze", OID),
        ("typalign", TEXT),
        ("typstorage", TEXT),
        ("typnotnull", BOOL),
        ("typbasetype", OID),
        ("typtypmod", I32),
        ("typndims", I32),
        ("typcollation", OID),
        ("typdefaultbin", TEXT),
        ("typdefault", TEXT),
        ("typacl", list(TEXT)),
    ])
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

fn pg_database_schema() -> SchemaRef {
    schema(&[
        ("oid", OID),
        ("datname", TEXT),
        ("datdba", OID),
        ("encoding", I32),
        ("datlocprovider", TEXT),
        ("datistemplate", BOOL),
        ("datallowconn", BOOL),
        ("datconnlimit", I32),
        ("datfrozenxid", I32),
        ("datminmxid", I32),
        ("dattablespace", OID),
        ("datcollate", TEXT),
        ("datctype", TEXT),
        ("daticulocale", TEXT),
        ("daticurules", TEXT),
        ("datcollversion", TEXT),
        ("datacl", list(TEXT)),
    ])
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

fn pg_roles_schema() -> SchemaRef {
    schema(&[
        ("rolname", TEXT),
        ("rolsuper", BOOL),
        ("rolinherit", BOOL),
        ("rolcreaterole", BOOL),
        ("rolcreatedb", BOOL),
        ("rolcanlogin", BOOL),
        ("rolreplication", BOOL),
        ("rolconnlimit", I32),
        ("rolpassword", TEXT),
        (
            "rolvaliduntil",
            DataType::Timestamp(
                datafusion::arrow::datatypes::TimeUnit::Microsecond,
                Some("+00:00".into()),
            ),
        ),
        ("rolbypassrls", BOOL),
        ("rolconfig", list(TEXT)),
        ("oid", OID),
    ])
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
        (403, "btree", "i"),
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

fn pg_settings_schema() -> SchemaRef {
    schema(&[
        ("name", TEXT),
        ("setting", TEXT),
        ("unit", TEXT),
        ("category", TEXT),
        ("short_desc", TEXT),
        ("extra_desc", TEXT),
        ("context", TEXT),
        ("vartype", TEXT),
        ("source", TEXT),
        ("min_val", TEXT),
        ("max_val", TEXT),
        ("enumvals", list(TEXT)),
        ("boot_val", TEXT),
        ("reset_val", TEXT),
        ("sourcefile", TEXT),
        ("sourceline", I32),
        ("pending_restart", BOOL),
    ])
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

fn pg_proc_schema() -> SchemaRef {
    schema(&[
        ("oid", OID),
        ("proname", TEXT),
        ("pronamespace", OID),
        ("proowner", OID),
        ("prolang", OID),
        ("procost", F32),
        ("prorows", F32),
        ("provariadic", OID),
        ("prosupport", OID),
        ("prokind", TEXT),
        ("prosecdef", BOOL),
        ("proleakproof", BOOL),
        ("proisstrict", BOOL),
        ("proretset", BOOL),
        ("provolatile", TEXT),
        ("proparallel", TEXT),
        ("pronargs", I16),
        ("pronargdefaults", I16),
        ("prorettype", OID),
        ("proargtypes", list(OID)),
        ("proallargtypes", list(OID)),
        ("proargmodes", list(TEXT)),
        ("proargnames", list(TEXT)),
        ("proargdefaults", TEXT),
        ("prosrc", TEXT),
        ("probin", TEXT),
        ("proconfig", list(TEXT)),
        ("proacl", list(TEXT)),
    ])
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
                boolean(false),
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
