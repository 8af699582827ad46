//! `CREATE SINK … FROM view`: a view's changes delivered by a sink connector, resumed from the
//! newest checkpoint on start-up. (`weir_sinks`, what each sink has delivered, is in
//! `system_tables.rs`.)

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::{info, warn};
use weir_engine::catalog::SinkEntry;
use weir_engine::checkpoint::catalog_file::{CatalogObject, ObjectKind as PersistedKind};
use weir_engine::options::Options;
use weir_engine::pipeline::PipelineStatus;
use weir_engine::sink::{
    ChangeTracker, SinkDurability, SinkFormat, SinkInput, SinkSpec, SinkStatus, spawn_sink,
};
use weir_engine::source_metrics::now_millis;
use weir_engine::view_table::ViewTable;

use crate::database::{QueryResult, Session, command};
use crate::error::{Result, SqlError, SqlErrorKind};
use crate::parser::{CreateSink, ObjectKind};

impl Session {
    /// `CREATE SINK … AS <query>`: the query becomes the sink's own materialized view
    /// (`<sink>_query`: queryable, so one can see what the sink delivers, and dropped with the
    /// sink), then the sink reads it. Both are persisted, the view first, so recovery restores
    /// them as it restores any view and sink.
    pub(crate) async fn create_sink_as_select(&self, s: &CreateSink) -> Result<QueryResult> {
        let Some(view) = s.own_view() else {
            return self.create_sink(s, None).await;
        };
        if s.if_not_exists && self.db.catalog.sink(&s.name).is_some() {
            return Ok(command("CREATE SINK"));
        }
        self.db.catalog.ensure_name_free(&s.name)?;
        self.create_view(&view, None).await?;
        let created = self.create_sink(s, None).await;
        if created.is_err()
            && let Err(e) = self
                .drop_object(ObjectKind::MaterializedView, &view.name, true, false)
                .await
        {
            warn!(sink = %s.name, view = %view.name, error = %e, "could not drop the query view of a sink that failed to start");
        }
        created
    }

    pub(crate) async fn create_sink(
        &self,
        s: &CreateSink,
        replay: Option<&CatalogObject>,
    ) -> Result<QueryResult> {
        let _guard = self.db.ddl.lock().await;
        if self.db.catalog.sink(&s.name).is_some() && s.if_not_exists {
            return Ok(command("CREATE SINK"));
        }
        self.db.catalog.ensure_name_free(&s.name)?;
        let view = self.db.catalog.view(&s.from).ok_or_else(|| {
            let hint = if self.db.catalog.source(&s.from).is_some() {
                format!(
                    "\"{}\" is a source; sinks deliver materialized views (CREATE MATERIALIZED VIEW v AS SELECT * FROM {} first)",
                    s.from, s.from
                )
            } else {
                format!("materialized view \"{}\" does not exist", s.from)
            };
            SqlError::new(SqlErrorKind::UndefinedTable, hint)
        })?;
        let mut options = Options::new(format!("sink \"{}\"", s.name), s.options.clone())?;
        let connector = options.take_required("connector")?.to_ascii_lowercase();
        let factory = self.db.sinks.get(connector.as_str()).ok_or_else(|| {
            let known: Vec<&str> = self.db.sinks.keys().copied().collect();
            SqlError::new(
                SqlErrorKind::InvalidParameter,
                format!(
                    "unknown sink connector '{connector}' (known: {})",
                    known.join(", ")
                ),
            )
        })?;
        let (format_name, encode) = s
            .format
            .clone()
            .unwrap_or_else(|| ("PLAIN".into(), String::new()));
        let format = match format_name.as_str() {
            "PLAIN" => SinkFormat::Plain,
            "UPSERT" => {
                let key = options.take("primary_key").ok_or_else(|| {
                    SqlError::new(
                        SqlErrorKind::InvalidParameter,
                        "FORMAT UPSERT needs primary_key = 'column[, …]' (the view's key)",
                    )
                })?;
                SinkFormat::Upsert {
                    key: key
                        .split(',')
                        .map(|k| k.trim().to_ascii_lowercase())
                        .collect(),
                }
            }
            other => {
                return Err(SqlError::new(
                    SqlErrorKind::InvalidParameter,
                    format!("sink format must be PLAIN or UPSERT, not {other}"),
                ));
            }
        };
        let durability = self.db.durability.clone();
        let id = match (replay, &durability) {
            (Some(object), _) => object.id.clone(),
            (None, Some(d)) => d.new_id(),
            (None, None) => format!("{}", now_millis()),
        };
        let schema = view.table.schema_ref();
        let mut spec = SinkSpec {
            name: s.name.clone(),
            id: id.clone(),
            schema: Arc::clone(&schema),
            options,
            format: format.clone(),
            encode: encode.to_ascii_lowercase(),
            check: replay.is_none(),
        };
        let writer = factory.open_sink(&mut spec).await?;
        std::mem::take(&mut spec.options).finish()?;

        // Recovery: what the sink pre-committed at the checkpoint; the view, restored from the
        // same checkpoint, already holds everything up to it, so only live changes follow.
        let recovered = durability
            .as_ref()
            .and_then(|d| d.take_recovered(&s.name, &id));
        let (restore, resumed) = match recovered {
            Some(mut r) => (r.restore.operators.remove(&0), true),
            None => (None, false),
        };
        let (input, open_partitions) = if resumed {
            let input = SinkInput {
                backfill: Vec::new(),
                live: view.fanout.subscribe_live().await,
            };
            (input, view.table.provisional())
        } else {
            let (backfill, live) = view.fanout.subscribe_changes().await?;
            (SinkInput { backfill, live }, BTreeMap::new())
        };
        let tracker = ChangeTracker::new(format.clone(), &schema, open_partitions)?;
        let status = Arc::new(SinkStatus::default());
        let pipeline_status = Arc::new(PipelineStatus::default());
        let entry = Arc::new(SinkEntry {
            name: s.name.clone(),
            sql: s.sql.clone(),
            view: view.name.clone(),
            owns_view: s.query.is_some(),
            connector,
            format: format_name,
            status: Arc::clone(&status),
            pipeline_status: Arc::clone(&pipeline_status),
            pipeline: parking_lot::Mutex::new(None),
        });
        self.db.catalog.add_sink(Arc::clone(&entry))?;
        if let (Some(d), None) = (&durability, replay) {
            let object = CatalogObject {
                kind: PersistedKind::Sink,
                name: s.name.clone(),
                id: id.clone(),
                sql: s.sql.clone(),
                pinned: BTreeMap::new(),
            };
            if let Err(e) = d.record(object).await {
                self.db.catalog.remove(&s.name);
                return Err(e);
            }
        }
        let sink_durability = durability.as_ref().map(|d| SinkDurability {
            link: d.coordinator.register(
                &s.name,
                &id,
                vec![view.name.clone()],
                false,
                Arc::new(ViewTable::new(Arc::clone(&schema))),
                Arc::clone(&pipeline_status),
            ),
            restore,
            commits: d.coordinator.outcomes(),
            request_checkpoint: d.coordinator.checkpoint_requests(),
        });
        let name = s.name.clone();
        let start = move || {
            let running = spawn_sink(
                &name,
                input,
                tracker,
                writer,
                status,
                pipeline_status,
                sink_durability,
            );
            *entry.pipeline.lock() = Some(running);
        };
        match &durability {
            Some(d) => d.start_or_hold(Box::new(start)),
            None => start(),
        }
        info!(sink = %s.name, view = %s.from, "sink created");
        Ok(command("CREATE SINK"))
    }
}
