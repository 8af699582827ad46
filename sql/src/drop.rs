//! `DROP SOURCE | MATERIALIZED VIEW | SINK [IF EXISTS] name [CASCADE]`: the catalog plans what
//! goes (dependents first, a sink's own query view with it), the persisted catalog forgets it
//! first, then pipelines stop and tables are deregistered.

use tracing::info;
use weir_engine::catalog::Relation;

use crate::database::{QueryResult, Session, command};
use crate::error::{Result, SqlError, SqlErrorKind};
use crate::parser::ObjectKind;

impl Session {
    pub(crate) async fn drop_object(
        &self,
        kind: ObjectKind,
        name: &str,
        if_exists: bool,
        cascade: bool,
    ) -> Result<QueryResult> {
        let _guard = self.db.ddl.lock().await;
        let tag = match kind {
            ObjectKind::Source => "DROP SOURCE",
            ObjectKind::MaterializedView => "DROP MATERIALIZED VIEW",
            ObjectKind::Sink => "DROP SINK",
            ObjectKind::Table => "DROP TABLE",
        };
        let found = self.db.catalog.relation(name);
        let is_sink = self.db.catalog.sink(name).is_some();
        let matches_kind = matches!(
            (&found, kind),
            (Some(Relation::Source(_)), ObjectKind::Source)
        ) || matches!((&found, kind), (Some(Relation::View(v)), ObjectKind::MaterializedView) if !v.is_table())
            || matches!((&found, kind), (Some(Relation::View(v)), ObjectKind::Table) if v.is_table())
            || (is_sink && kind == ObjectKind::Sink);
        if !matches_kind {
            if found.is_some() || is_sink {
                let what = match kind {
                    ObjectKind::Source => "a source",
                    ObjectKind::MaterializedView => "a materialized view",
                    ObjectKind::Sink => "a sink",
                    ObjectKind::Table => "a table",
                };
                return Err(SqlError::new(
                    SqlErrorKind::User,
                    format!("\"{name}\" is not {what}"),
                ));
            }
            if if_exists {
                return Ok(command(tag));
            }
            let what = match kind {
                ObjectKind::Source => "source",
                ObjectKind::MaterializedView => "materialized view",
                ObjectKind::Sink => "sink",
                ObjectKind::Table => "table",
            };
            return Err(SqlError::new(
                SqlErrorKind::UndefinedTable,
                format!("{what} \"{name}\" does not exist"),
            ));
        }
        let objects = self.db.catalog.drop_plan(name, cascade)?;
        if let Some(d) = &self.db.durability {
            // Persisted first: if the catalog cannot be written, nothing is dropped.
            for object in &objects {
                d.forget(object).await?;
            }
        }
        for object in objects {
            if let Some(d) = &self.db.durability {
                d.coordinator.unregister(&object);
            }
            if let Some(Relation::View(v)) = self.db.catalog.remove(&object)
                && let Some(log) = v.writer.as_ref().and_then(|w| w.log())
                && let Err(e) = log.delete_all().await
            {
                tracing::warn!(table = %object, error = %e, "the dropped table's log stays on disk");
            }
            self.db
                .ctx
                .deregister_table(datafusion::common::TableReference::bare(object.as_str()))?;
            info!(object = %object, "dropped");
        }
        Ok(command(tag))
    }
}
