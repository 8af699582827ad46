//! `CREATE MATERIALIZED VIEW`: plan the query, hand the plan to the engine's
//! [`ViewRuntime`] (table, input, the state the newest checkpoint holds for the view), publish
//! the view (catalog, query context, persisted definition) and start (or, during recovery, hold)
//! its pipeline.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::info;
use weir_engine::checkpoint::catalog_file::{CatalogObject, ObjectKind as PersistedKind};
use weir_engine::view_runtime::ViewRuntime;

use crate::database::{QueryResult, Session, command};
use crate::ddl::Publication;
use crate::error::Result;
use crate::parser::CreateView;

impl Session {
    pub(crate) async fn create_view(
        &self,
        v: &CreateView,
        replay: Option<&CatalogObject>,
    ) -> Result<QueryResult> {
        let Some(_guard) = self
            .begin_create(&v.name, v.if_not_exists, |c| c.relation(&v.name).is_some())
            .await?
        else {
            return Ok(command("CREATE MATERIALIZED VIEW"));
        };
        let pipeline = self.plan_view(v).await?;
        let id = self.object_id(replay);
        let durability = self.db.durability.clone();
        let checkpointing = self.view_checkpointing(&v.name, &id);
        let runtime =
            ViewRuntime::build(&v.name, &v.sql, pipeline, &self.db.catalog, checkpointing).await?;
        let entry = Arc::clone(runtime.entry());
        let mut publication = Publication::new(&self.db, &v.name);
        publication.add_to_catalog(|c| c.add_view(Arc::clone(&entry)))?;
        publication.register_table(Arc::clone(&entry.table) as _)?;
        publication
            .persist(
                PersistedKind::MaterializedView,
                &id,
                &v.sql,
                BTreeMap::new(),
                replay,
            )
            .await?;
        publication.commit();
        if let Some(start) = runtime.into_start().await {
            match &durability {
                Some(d) => d.start_or_hold(start),
                None => start(),
            }
        }
        info!(view = %v.name, "materialized view created");
        Ok(command("CREATE MATERIALIZED VIEW"))
    }
}
