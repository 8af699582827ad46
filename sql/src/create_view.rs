//! `CREATE MATERIALIZED VIEW`: plan the query, build the view's table and input, restore what
//! the newest checkpoint holds for it (on start-up), persist the definition, and start (or, during
//! recovery, hold) its pipeline.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::info;
use weir_engine::catalog::ViewEntry;
use weir_engine::checkpoint::PipelineRestore;
use weir_engine::checkpoint::catalog_file::{CatalogObject, ObjectKind as PersistedKind};
use weir_engine::fanout::Fanout;
use weir_engine::pipeline::Durability as PipelineDurability;
use weir_engine::pipeline::{PipelineInput, PipelineStatus, spawn_pipeline, view_state};
use weir_engine::source::{ReaderContext, SourceTaskConfig};
use weir_engine::view_table::ViewTable;

use crate::database::{QueryResult, Session, command};
use crate::error::Result;
use crate::parser::CreateView;
use crate::planner::PlannedInput;

impl Session {
    pub(crate) async fn create_view(
        &self,
        v: &CreateView,
        replay: Option<&CatalogObject>,
    ) -> Result<QueryResult> {
        let _guard = self.db.ddl.lock().await;
        if self.db.catalog.relation(&v.name).is_some() && v.if_not_exists {
            return Ok(command("CREATE MATERIALIZED VIEW"));
        }
        self.db.catalog.ensure_name_free(&v.name)?;
        let plan = self.plan_view(v).await?;
        let durability = self.db.durability.clone();
        let id = match (replay, &durability) {
            (Some(object), _) => object.id.clone(),
            (None, Some(d)) => d.new_id(),
            (None, None) => String::new(),
        };
        let table = Arc::new(match &durability {
            Some(d) => ViewTable::with_segments(Arc::clone(&plan.schema), d.segment_store()),
            None => ViewTable::new(Arc::clone(&plan.schema)),
        });
        let fanout = Arc::new(Fanout::new(Arc::clone(&table)));
        let status = Arc::new(PipelineStatus::default());
        // Recovery: the view's rows, watermark and counters as of the checkpoint.
        let recovered = durability
            .as_ref()
            .and_then(|d| d.take_recovered(&v.name, &id));
        let mut restore = PipelineRestore::default();
        let mut ended = false;
        if let Some(r) = recovered {
            let watermark = r.watermark();
            ended = r.entry.ended;
            table.restore(r.segments, r.provisional)?;
            fanout.restore(watermark, ended).await;
            status
                .rows_in
                .store(r.entry.rows_in, std::sync::atomic::Ordering::Relaxed);
            restore = r.restore;
            info!(view = %v.name, rows = table.appended_rows(), ended, "view restored from checkpoint");
        }
        let resumed = restore.source.is_some() || !restore.operators.is_empty() || ended;
        let mut reader_metrics = None;
        let input = match &plan.input {
            _ if ended => None,
            PlannedInput::Source(s) => {
                let metrics = self.db.catalog.source_metrics.register(&s.name, &v.name);
                reader_metrics = Some(Arc::clone(&metrics));
                let context = ReaderContext {
                    source: s.name.clone(),
                    metrics,
                    errors: Arc::clone(&self.db.catalog.source_errors),
                    bad_records: s.bad_records,
                    resume: restore.source.as_ref().and_then(|r| r.position.clone()),
                };
                Some(PipelineInput::Source {
                    reader: s.provider.open(context.clone())?,
                    config: SourceTaskConfig {
                        watermark: s.watermark.clone(),
                        idle_timeout: s.idle_timeout,
                        max_future: s.max_future,
                        context,
                        restore: restore.source.clone().map(Box::new),
                    },
                })
            }
            // A recovered view already holds what the upstream view had at the checkpoint.
            PlannedInput::View(upstream) if resumed => Some(PipelineInput::View {
                backfill: Vec::new(),
                live: upstream.fanout.subscribe_live().await,
            }),
            PlannedInput::View(upstream) => {
                let (backfill, live) = upstream.fanout.subscribe().await?;
                Some(PipelineInput::View { backfill, live })
            }
        };
        let upstream_views = match &plan.input {
            PlannedInput::View(upstream) => vec![upstream.name.clone()],
            PlannedInput::Source(_) => Vec::new(),
        };
        let reads_source = matches!(plan.input, PlannedInput::Source(_));
        let entry = Arc::new(ViewEntry {
            name: v.name.clone(),
            sql: v.sql.clone(),
            table: Arc::clone(&table),
            fanout: Arc::clone(&fanout),
            inputs: vec![plan.input.name().to_string()],
            updating: plan.updating,
            explain: plan.explain.clone(),
            status: Arc::clone(&status),
            reader_metrics,
            pipeline: parking_lot::Mutex::new(None),
        });
        self.db.catalog.add_view(Arc::clone(&entry))?;
        if let Err(e) = self
            .db
            .ctx
            .register_table(v.name.as_str(), Arc::clone(&table) as _)
        {
            self.db.catalog.remove(&v.name);
            return Err(e.into());
        }
        if let (Some(d), None) = (&durability, replay) {
            let object = CatalogObject {
                kind: PersistedKind::MaterializedView,
                name: v.name.clone(),
                id: id.clone(),
                sql: v.sql.clone(),
                pinned: BTreeMap::new(),
            };
            if let Err(e) = d.record(object).await {
                self.db.catalog.remove(&v.name);
                self.db.ctx.deregister_table(v.name.as_str())?;
                return Err(e);
            }
        }
        let Some(input) = input else {
            // The view was final at the checkpoint: nothing to run.
            status.finish();
            if let Some(d) = &durability {
                let state = view_state(&fanout, &status).await;
                d.coordinator
                    .register_ended(&v.name, &id, table, status, state);
            }
            return Ok(command("CREATE MATERIALIZED VIEW"));
        };
        let pipeline_durability = durability.as_ref().map(|d| PipelineDurability {
            link: d.coordinator.register(
                &v.name,
                &id,
                upstream_views,
                reads_source,
                Arc::clone(&table),
                Arc::clone(&status),
            ),
            restore,
        });
        let name = v.name.clone();
        let operators = plan.operators;
        let start = move || {
            let running =
                spawn_pipeline(&name, input, operators, fanout, status, pipeline_durability);
            *entry.pipeline.lock() = Some(running);
        };
        match &durability {
            Some(d) => d.start_or_hold(Box::new(start)),
            None => start(),
        }
        info!(view = %v.name, "materialized view created");
        Ok(command("CREATE MATERIALIZED VIEW"))
    }
}
