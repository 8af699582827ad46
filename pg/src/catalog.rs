//! The relations clients see in `pg_class`, derived on every query from Weir's own catalog, so
//! the emulation is never stale: sources are tables (`relkind 'r'`), materialized views are
//! `'m'`, Weir's system tables and the catalog's own tables are views or tables of their schemas.
//!
//! OIDs are handed out once per (schema, name) and kept for the server's life, so the OID psql
//! reads in one query still names the same relation in the next; `pg_catalog`'s own relations
//! keep PostgreSQL's fixed OIDs, which clients sometimes write as literals.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use parking_lot::{Mutex, RwLock};
use weir_engine::catalog::Catalog;

use weir_sql::parser::{WeirStatement, parse_statements};
use weir_sql::system_tables::SystemTables;

/// `pg_catalog`'s namespace OID.
pub const PG_CATALOG_NS: i32 = 11;
/// `public`'s namespace OID.
pub const PUBLIC_NS: i32 = 2200;
/// `information_schema`'s namespace OID.
pub const INFORMATION_SCHEMA_NS: i32 = 13_000;
/// The role that owns everything.
pub const OWNER_OID: i32 = 10;
/// The database's OID.
pub const DATABASE_OID: i32 = 5;
/// `pg_class`'s OID (the `classoid` of relation descriptions).
pub const PG_CLASS_OID: i32 = 1259;
/// First OID for objects Weir creates (PostgreSQL's `FirstNormalObjectId`).
const FIRST_USER_OID: i32 = 16_384;

/// PostgreSQL's OIDs for catalog relations clients name in queries.
const FIXED_OIDS: &[(&str, i32)] = &[
    ("pg_type", 1247),
    ("pg_attribute", 1249),
    ("pg_proc", 1255),
    ("pg_class", PG_CLASS_OID),
    ("pg_database", 1262),
    ("pg_authid", 1260),
    ("pg_am", 2601),
    ("pg_attrdef", 2604),
    ("pg_constraint", 2606),
    ("pg_description", 2609),
    ("pg_index", 2610),
    ("pg_inherits", 2611),
    ("pg_rewrite", 2618),
    ("pg_namespace", 2615),
    ("pg_extension", 3079),
    ("pg_collation", 3456),
    ("pg_policy", 3256),
    ("pg_statistic_ext", 3381),
    ("pg_publication", 6104),
    ("pg_publication_rel", 6106),
    ("pg_publication_namespace", 6237),
    ("pg_tablespace", 1213),
    ("pg_auth_members", 1261),
    ("pg_depend", 2608),
    ("pg_enum", 3501),
    ("pg_range", 3541),
    ("pg_sequence", 2224),
    ("pg_trigger", 2620),
];

/// What a relation is, as `pg_class.relkind` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelKind {
    /// `'r'`: sources and catalog tables.
    Table,
    /// `'v'`: system views.
    View,
    /// `'m'`: materialized views.
    MaterializedView,
    /// `'i'`: the unique index standing for a keyed view's key ([`PgCatalog::indexes`]).
    Index,
}

impl RelKind {
    /// The `relkind` letter.
    pub fn letter(self) -> &'static str {
        match self {
            RelKind::Table => "r",
            RelKind::View => "v",
            RelKind::MaterializedView => "m",
            RelKind::Index => "i",
        }
    }

    /// `information_schema.tables.table_type`. Materialized views are `VIEW` so that tools
    /// filtering on `('BASE TABLE', 'VIEW')` (Grafana) list them.
    pub fn table_type(self) -> &'static str {
        match self {
            RelKind::Table => "BASE TABLE",
            RelKind::View | RelKind::MaterializedView => "VIEW",
            RelKind::Index => "INDEX",
        }
    }
}

/// One relation as the catalog tables describe it.
#[derive(Debug, Clone)]
pub struct RelationInfo {
    /// Stable OID.
    pub oid: i32,
    /// Namespace OID.
    pub namespace: i32,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: RelKind,
    /// Columns.
    pub schema: SchemaRef,
    /// `obj_description` text.
    pub description: Option<String>,
}

/// A keyed view's key, as a unique index.
#[derive(Debug, Clone)]
pub struct IndexInfo {
    /// The index's OID.
    pub oid: i32,
    /// `<view>_key`.
    pub name: String,
    /// The view's OID.
    pub table_oid: i32,
    /// The view's name.
    pub table_name: String,
    /// The key columns' positions in the view (1-based, as `pg_index.indkey`).
    pub attnums: Vec<i16>,
    /// The key columns.
    pub schema: SchemaRef,
    /// A table's primary key (a view's key is a unique index only).
    pub primary: bool,
}

/// The source of `pg_class` and friends.
#[derive(Debug)]
pub struct PgCatalog {
    catalog: Arc<Catalog>,
    /// Weir's system tables: views of `public`, described by the registry's one-liners.
    system_tables: Arc<SystemTables>,
    oids: Mutex<HashMap<(i32, String), i32>>,
    next_oid: Mutex<i32>,
    /// The catalog's own tables (`pg_catalog`, `information_schema`), with their namespace and
    /// kind.
    builtin: RwLock<Vec<(i32, String, RelKind, SchemaRef)>>,
}

impl PgCatalog {
    /// A catalog view of `catalog`.
    pub fn new(catalog: Arc<Catalog>, system_tables: Arc<SystemTables>) -> Self {
        Self {
            catalog,
            system_tables,
            oids: Mutex::new(HashMap::new()),
            next_oid: Mutex::new(FIRST_USER_OID),
            builtin: RwLock::new(Vec::new()),
        }
    }

    /// Records a relation that lives as long as the server.
    pub fn add_builtin(&self, namespace: i32, name: &str, kind: RelKind, schema: SchemaRef) {
        self.builtin
            .write()
            .push((namespace, name.to_string(), kind, schema));
    }

    /// The OID of `name` in `namespace`, assigned on first use and kept.
    pub fn oid(&self, namespace: i32, name: &str) -> i32 {
        if namespace == PG_CATALOG_NS
            && let Some((_, oid)) = FIXED_OIDS.iter().find(|(n, _)| *n == name)
        {
            return *oid;
        }
        let mut oids = self.oids.lock();
        if let Some(oid) = oids.get(&(namespace, name.to_string())) {
            return *oid;
        }
        let mut next = self.next_oid.lock();
        let oid = *next;
        *next += 1;
        oids.insert((namespace, name.to_string()), oid);
        oid
    }

    /// Every relation: catalog tables, system tables, sources and views.
    pub fn relations(&self) -> Vec<RelationInfo> {
        let mut out: Vec<RelationInfo> = self
            .builtin
            .read()
            .iter()
            .map(|(ns, name, kind, schema)| RelationInfo {
                oid: self.oid(*ns, name),
                namespace: *ns,
                name: name.clone(),
                kind: *kind,
                schema: Arc::clone(schema),
                description: None,
            })
            .collect();
        for table in self.system_tables.list() {
            out.push(RelationInfo {
                oid: self.oid(PUBLIC_NS, table.name),
                namespace: PUBLIC_NS,
                name: table.name.to_string(),
                kind: RelKind::View,
                schema: table.schema,
                description: Some(table.description.to_string()),
            });
        }
        for source in self.catalog.sources() {
            out.push(RelationInfo {
                oid: self.oid(PUBLIC_NS, &source.name),
                namespace: PUBLIC_NS,
                name: source.name.clone(),
                kind: RelKind::Table,
                schema: source.schema(),
                description: Some(format!(
                    "source ({} connector)",
                    source.provider.connector()
                )),
            });
        }
        for view in self.catalog.views() {
            out.push(RelationInfo {
                oid: self.oid(PUBLIC_NS, &view.name),
                namespace: PUBLIC_NS,
                name: view.name.clone(),
                kind: if view.is_table() {
                    RelKind::Table
                } else {
                    RelKind::MaterializedView
                },
                schema: view.table.schema_ref(),
                description: None,
            });
        }
        out
    }

    /// The unique index standing for each keyed view's key: `<view>_key` over the key columns
    /// (a view with the empty key, one row at most, has none).
    pub fn indexes(&self) -> Vec<IndexInfo> {
        self.catalog
            .views()
            .into_iter()
            .filter_map(|view| {
                let key = view.props.key.as_ref().filter(|k| !k.is_empty())?;
                let schema = view.table.schema_ref();
                let fields: Vec<_> = key
                    .iter()
                    .filter_map(|&i| schema.fields().get(i).cloned())
                    .collect();
                // A table's key is its primary key, named as PostgreSQL names one.
                let suffix = if view.is_table() { "pkey" } else { "key" };
                let name = format!("{}_{suffix}", view.name);
                Some(IndexInfo {
                    oid: self.oid(PUBLIC_NS, &format!("{name}\u{0}index")),
                    name,
                    table_oid: self.oid(PUBLIC_NS, &view.name),
                    table_name: view.name.clone(),
                    attnums: key
                        .iter()
                        .map(|&i| i16::try_from(i + 1).unwrap_or(i16::MAX))
                        .collect(),
                    schema: Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
                    primary: view.is_table(),
                })
            })
            .collect()
    }

    /// `pg_get_indexdef` of an index OID: the `CREATE INDEX` statement for `column` 0, the
    /// `column`-th key column (1-based) otherwise.
    pub fn index_definition(&self, oid: i32, column: i64) -> Option<String> {
        let index = self.indexes().into_iter().find(|i| i.oid == oid)?;
        let columns: Vec<String> = index
            .schema
            .fields()
            .iter()
            .map(|f| crate::identifier::quote_identifier(f.name()))
            .collect();
        if column > 0 {
            return usize::try_from(column - 1)
                .ok()
                .and_then(|c| columns.get(c).cloned());
        }
        Some(format!(
            "CREATE UNIQUE INDEX {} ON public.{} USING btree ({})",
            crate::identifier::quote_identifier(&index.name),
            crate::identifier::quote_identifier(&index.table_name),
            columns.join(", ")
        ))
    }

    /// A relation by OID.
    pub fn relation(&self, oid: i32) -> Option<RelationInfo> {
        self.relations().into_iter().find(|r| r.oid == oid)
    }

    /// The OID of a relation named `name` (`relname` or `schema.relname`, quoted or not), as the
    /// `regclass` input function resolves it: unqualified names search `pg_catalog`, then
    /// `public`.
    pub fn relation_oid(&self, name: &str) -> Option<i32> {
        let parts = crate::identifier::parse_identifier(name).ok()?;
        let (schema, rel) = match parts.as_slice() {
            [rel] => (None, rel.as_str()),
            [schema, rel] => (Some(namespace_oid(schema)?), rel.as_str()),
            _ => return None,
        };
        let relations = self.relations();
        let find = |ns: i32| {
            relations
                .iter()
                .find(|r| r.namespace == ns && r.name == rel)
                .map(|r| r.oid)
        };
        match schema {
            Some(ns) => find(ns),
            None => find(PG_CATALOG_NS).or_else(|| find(PUBLIC_NS)),
        }
    }

    /// Bytes a relation holds (`pg_table_size`): a view's operator state; 0 for others.
    pub fn relation_bytes(&self, oid: i32) -> Option<i64> {
        let relation = self.relation(oid)?;
        Some(match relation.kind {
            RelKind::MaterializedView => self.catalog.view(&relation.name).map_or(0, |v| {
                i64::try_from(
                    v.status
                        .state_bytes
                        .load(std::sync::atomic::Ordering::Relaxed),
                )
                .unwrap_or(i64::MAX)
            }),
            _ => 0,
        })
    }

    /// The `SELECT` of a materialized view (`pg_get_viewdef`), as written.
    pub fn view_definition(&self, oid: i32) -> Option<String> {
        let relation = self.relation(oid)?;
        if relation.kind != RelKind::MaterializedView {
            return None;
        }
        let view = self.catalog.view(&relation.name)?;
        match parse_statements(&view.sql).ok()?.into_iter().next()? {
            WeirStatement::CreateView(v) => Some(format!(" {};", v.query)),
            _ => None,
        }
    }
}

/// The OID of a schema by name.
pub fn namespace_oid(name: &str) -> Option<i32> {
    match name {
        "pg_catalog" => Some(PG_CATALOG_NS),
        "public" => Some(PUBLIC_NS),
        "information_schema" => Some(INFORMATION_SCHEMA_NS),
        _ => None,
    }
}

/// A schema's name by OID.
pub fn namespace_name(oid: i32) -> Option<&'static str> {
    match oid {
        PG_CATALOG_NS => Some("pg_catalog"),
        PUBLIC_NS => Some("public"),
        INFORMATION_SCHEMA_NS => Some("information_schema"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_are_stable_and_fixed_for_catalog_tables() {
        let pg = PgCatalog::new(Arc::new(Catalog::default()), Arc::default());
        let a = pg.oid(PUBLIC_NS, "readings");
        assert!(a >= FIRST_USER_OID);
        assert_eq!(pg.oid(PUBLIC_NS, "readings"), a);
        assert_ne!(pg.oid(PUBLIC_NS, "other"), a);
        assert_eq!(pg.oid(PG_CATALOG_NS, "pg_class"), PG_CLASS_OID);
        assert_eq!(
            namespace_name(namespace_oid("public").unwrap_or(0)),
            Some("public")
        );
    }
}
