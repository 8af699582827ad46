//! Running a sink over a view, as [`crate::view_runtime`] runs a view: [`SinkRuntime::build`]
//! subscribes to the view's changes (only the live ones when resuming from a checkpoint, since
//! the view restored from the same checkpoint already holds what came before) and makes the
//! sink's catalog entry; [`SinkRuntime::into_start`] registers it with the checkpoint coordinator
//! and hands back what starts its task.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;

use crate::catalog::{SinkEntry, ViewEntry};
use crate::checkpoint::recovery::RecoveredView;
use crate::checkpoint::{CheckpointCoordinator, OperatorState};
use crate::error::{EngineError, Result};
use crate::fanout::ReadMode;
use crate::pipeline::PipelineStatus;
use crate::view_runtime::PipelineStart;
use crate::view_table::ViewTable;

use super::{
    ChangeTracker, SinkDurability, SinkFormat, SinkInput, SinkStatus, SinkWriter, spawn_sink,
};

/// A sink as the SQL layer describes it.
pub struct SinkDefinition {
    /// Sink name.
    pub name: String,
    /// Its `CREATE SINK` statement.
    pub sql: String,
    /// The view it delivers.
    pub view: Arc<ViewEntry>,
    /// True when the view is the sink's own (`CREATE SINK … AS query`), dropped with it.
    pub owns_view: bool,
    /// Connector name.
    pub connector: String,
    /// `PLAIN` or `UPSERT`, as written.
    pub format_name: String,
    /// What it emits.
    pub format: SinkFormat,
}

/// A sink's part in checkpoints, when the database has a data directory.
pub struct SinkCheckpointing {
    /// The sink's id (its incarnation).
    pub id: String,
    /// The coordinator it reports to.
    pub coordinator: Arc<CheckpointCoordinator>,
    /// Its state in the checkpoint being recovered from, if any.
    pub recovered: Option<RecoveredView>,
}

/// A sink built over its view, not yet running.
pub struct SinkRuntime {
    entry: Arc<SinkEntry>,
    schema: SchemaRef,
    input: SinkInput,
    tracker: ChangeTracker,
    writer: Box<dyn SinkWriter>,
    checkpointing: Option<(String, Arc<CheckpointCoordinator>)>,
    restore: Option<OperatorState>,
}

impl SinkRuntime {
    /// Subscribes the sink to its view and makes its catalog entry; nothing runs yet.
    pub async fn build(
        definition: SinkDefinition,
        writer: Box<dyn SinkWriter>,
        checkpointing: Option<SinkCheckpointing>,
    ) -> Result<Self> {
        let SinkDefinition {
            name,
            sql,
            view,
            owns_view,
            connector,
            format_name,
            format,
        } = definition;
        let (recovered, checkpointing) = match checkpointing {
            Some(c) => (c.recovered, Some((c.id, c.coordinator))),
            None => (None, None),
        };
        // Recovery: what the sink pre-committed at the checkpoint; the view, restored from the
        // same checkpoint, already holds everything up to it, so only live changes follow.
        let (restore, resumed) = match recovered {
            Some(mut r) => (r.restore.operators.remove(&0), true),
            None => (None, false),
        };
        let mode = read_mode(&format, &view)?;
        let input = if resumed {
            SinkInput {
                backfill: Vec::new(),
                live: view.fanout.subscribe_live(mode).await,
            }
        } else {
            let (backfill, live) = view.fanout.subscribe_changes(mode).await?;
            SinkInput { backfill, live }
        };
        let schema = view.table.schema_ref();
        let tracker = ChangeTracker::new(format, &schema)?;
        let entry = Arc::new(SinkEntry {
            name,
            sql,
            view: view.name.clone(),
            owns_view,
            connector,
            format: format_name,
            status: Arc::new(SinkStatus::default()),
            pipeline_status: Arc::new(PipelineStatus::default()),
            pipeline: parking_lot::Mutex::new(None),
        });
        Ok(Self {
            entry,
            schema,
            input,
            tracker,
            writer,
            checkpointing,
            restore,
        })
    }

    /// The sink's catalog entry.
    pub fn entry(&self) -> &Arc<SinkEntry> {
        &self.entry
    }

    /// Registers the sink with the checkpoint coordinator and returns what starts its task.
    pub fn into_start(self) -> PipelineStart {
        let Self {
            entry,
            schema,
            input,
            tracker,
            writer,
            checkpointing,
            restore,
        } = self;
        let durability = checkpointing.map(|(id, coordinator)| SinkDurability {
            link: coordinator.register(
                &entry.name,
                &id,
                vec![entry.view.clone()],
                0,
                // A sink keeps no rows; the coordinator wants a table for every pipeline.
                Arc::new(ViewTable::new(schema)),
                Arc::clone(&entry.pipeline_status),
            ),
            restore,
            commits: coordinator.outcomes(),
            request_checkpoint: coordinator.checkpoint_requests(),
        });
        Box::new(move || {
            let running = spawn_sink(
                &entry.name,
                input,
                tracker,
                writer,
                Arc::clone(&entry.status),
                Arc::clone(&entry.pipeline_status),
                durability,
            );
            *entry.pipeline.lock() = Some(running);
        })
    }
}

/// A keyed sink's records replace each other by key, so the key must identify a live row of
/// an updating view: it must include the view's key. (Of an append-only view, any key keeps
/// the latest row per key, which is what keying by it means.)
fn check_key_covers_view(key: &[String], view: &ViewEntry) -> Result<()> {
    if view.props.is_append_only() {
        return Ok(());
    }
    let schema = view.table.schema_ref();
    let Some(view_key) = &view.props.key else {
        return Err(EngineError::User(format!(
            "view \"{}\" updates its rows but has no key, so a keyed sink could not tell which \
             record a delete removes; group the view by the columns that identify a row",
            view.name
        )));
    };
    let missing: Vec<&str> = view_key
        .iter()
        .filter_map(|&i| schema.fields().get(i).map(|f| f.name().as_str()))
        .filter(|name| !key.iter().any(|k| k.eq_ignore_ascii_case(name)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(EngineError::User(format!(
        "primary_key ({}) does not include {} of view \"{}\"'s key ({}): two of its rows could \
         share a sink key and overwrite or delete each other; use primary_key = '{}'",
        key.join(", "),
        missing.join(", "),
        view.name,
        view.props.key_names(&schema).unwrap_or_default(),
        view.props.key_names(&schema).unwrap_or_default(),
    )))
}

/// What a sink in `format` follows of `view`: an UPSERT sink every change; a PLAIN sink of an
/// updating view only its final rows, which needs a view whose rows become final (a windowed
/// aggregate: the watermark seals each window).
fn read_mode(format: &SinkFormat, view: &ViewEntry) -> Result<ReadMode> {
    match format {
        SinkFormat::Upsert { key } | SinkFormat::Debezium { key } => {
            check_key_covers_view(key, view)?;
            Ok(ReadMode::Changes)
        }
        SinkFormat::Plain if view.props.is_append_only() => Ok(ReadMode::Changes),
        SinkFormat::Plain if view.props.sealed_by.is_some() => Ok(ReadMode::Sealed),
        SinkFormat::Plain => Err(EngineError::User(format!(
            "view \"{}\" updates its rows and none of them ever become final, so a FORMAT PLAIN \
             sink would have nothing to write; use FORMAT UPSERT with the view's key ({})",
            view.name,
            view.props
                .key_names(&view.table.schema_ref())
                .unwrap_or_else(|| "it has none: group by the columns that identify a row".into())
        ))),
    }
}
