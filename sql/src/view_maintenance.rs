//! Statements PostgreSQL tools send to maintain materialized views, answered by what Weir's
//! views are (dbt's `materialized_view` materialization sends both on a re-run):
//!
//! - `REFRESH MATERIALIZED VIEW v`: a Weir view is always up to date, so there is nothing to
//!   recompute; the view must exist.
//! - `DROP INDEX v_key` (or a table's `t_pkey`): that index is how the view's key is shown in
//!   `pg_index`, not a structure of its own; it stays with the view, and a NOTICE says so. Any
//!   other index does not exist (Weir keeps no secondary indexes).

use crate::QueryResult;
use crate::database::{Session, command};
use crate::error::{Result, SqlError, SqlErrorKind};

impl Session {
    /// `REFRESH MATERIALIZED VIEW name`.
    pub(crate) async fn refresh_view(&self, name: &str) -> Result<QueryResult> {
        match self.db.catalog().view(name) {
            Some(view) if !view.is_table() => Ok(command("REFRESH MATERIALIZED VIEW")),
            Some(_) => Err(SqlError::new(
                SqlErrorKind::WrongObjectType,
                format!("\"{name}\" is not a materialized view"),
            )),
            None => Err(SqlError::new(
                SqlErrorKind::UndefinedTable,
                format!("materialized view \"{name}\" does not exist"),
            )),
        }
    }

    /// `DROP INDEX [IF EXISTS] name, …`.
    pub(crate) async fn drop_index(
        &self,
        names: &[String],
        if_exists: bool,
    ) -> Result<QueryResult> {
        for name in names {
            match self.key_index_owner(name) {
                Some(view) => self.notice(format!(
                    "index \"{name}\" is the key of \"{view}\", shown as an index, and stays with \
                     it"
                )),
                None if if_exists => {
                    self.notice(format!("index \"{name}\" does not exist, skipping"));
                }
                None => {
                    return Err(SqlError::new(
                        SqlErrorKind::UndefinedObject,
                        format!("index \"{name}\" does not exist"),
                    ));
                }
            }
        }
        Ok(command("DROP INDEX"))
    }

    /// The keyed view or table whose key index is named `index` (`<view>_key`, `<table>_pkey`).
    fn key_index_owner(&self, index: &str) -> Option<String> {
        let catalog = self.db.catalog();
        let owner = |name: &str, table: bool| {
            catalog
                .view(name)
                .filter(|v| v.is_table() == table)
                .filter(|v| v.props.key.as_ref().is_some_and(|k| !k.is_empty()))
                .map(|v| v.name.clone())
        };
        index
            .strip_suffix("_pkey")
            .and_then(|t| owner(t, true))
            .or_else(|| index.strip_suffix("_key").and_then(|v| owner(v, false)))
    }
}
