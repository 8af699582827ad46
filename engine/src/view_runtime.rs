//! Running a planned view: the SQL layer hands over a [`ViewPipeline`] (input, operators, output
//! schema) and the engine does the rest. [`ViewRuntime::build`] makes the view's table and change
//! fan-out, restores what the newest checkpoint holds for it, and opens its input (a reader of
//! its own on a source, or a subscription to an upstream view); [`ViewRuntime::into_start`]
//! registers it with the checkpoint coordinator and hands back what starts its tasks.
//!
//! The two steps are apart because the caller publishes the view in between (catalog, query
//! context, persisted definition) and, during recovery, holds every start until all views are
//! back, so a view reading another subscribes before the upstream produces anything new.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::arrow::datatypes::SchemaRef;
use tracing::info;

use crate::catalog::{Catalog, SourceEntry, ViewEntry};
use crate::checkpoint::recovery::RecoveredView;
use crate::checkpoint::{CheckpointCoordinator, PipelineRestore};
use crate::error::Result;
use crate::fanout::{Fanout, ReadMode};
use crate::message::Watermark;
use crate::operator::StreamOperator;
use crate::pipeline::{
    Durability, PipelineBranch, PipelineInput, PipelineStatus, RunningPipeline, spawn_pipeline,
    view_state,
};
use crate::source::{ReaderContext, SourceTaskConfig, Split};
use crate::source_group::{GroupKey, Sharing};
use crate::source_metrics::ReaderMetrics;
use crate::stream_props::StreamProps;
use crate::view_table::retention::Retention;
use crate::view_table::{SegmentStore, ViewTable};

/// Where a view's rows come from.
#[derive(Debug, Clone)]
pub enum ViewInput {
    /// A source, read by a reader of the view's own until it can share one.
    Source(Arc<SourceEntry>),
    /// Another (append-only) view.
    View(Arc<ViewEntry>),
}

impl ViewInput {
    /// Name of the input.
    pub fn name(&self) -> &str {
        match self {
            ViewInput::Source(s) => &s.name,
            ViewInput::View(v) => &v.name,
        }
    }
}

/// One input of a planned view with the operators that run on its rows alone.
pub struct PlannedInput {
    /// Where the rows come from.
    pub input: ViewInput,
    /// Operators before the inputs merge (empty for a view with one input).
    pub operators: Vec<Box<dyn StreamOperator>>,
}

/// A planned view, ready to run: what the planner produces and the runtime consumes.
pub struct ViewPipeline {
    /// The inputs: one, or several merged (`UNION ALL`).
    pub inputs: Vec<PlannedInput>,
    /// Operators in order, after the inputs merge.
    pub operators: Vec<Box<dyn StreamOperator>>,
    /// More copies of `operators`, planned alike, one per extra worker: a keyed operator among
    /// them runs as that many shards ([`crate::shards`]). Empty: each operator runs once.
    pub copies: Vec<Vec<Box<dyn StreamOperator>>>,
    /// What the view's stream promises: kind, key, sealing column.
    pub props: StreamProps,
    /// Output schema.
    pub schema: SchemaRef,
    /// EXPLAIN text.
    pub explain: String,
    /// `WITH (retention = …)`: final rows leave this long behind the watermark.
    pub retention: Option<Retention>,
    /// Tables a temporal join looks up as rows pass (`FOR SYSTEM_TIME AS OF PROCTIME()`): not
    /// read as inputs, but the view depends on them (a DROP of one is refused).
    pub looked_up: Vec<String>,
}

impl ViewPipeline {
    /// How many readers the view reads its input with on `workers` workers (see
    /// [`SourceProvider::partitions`](crate::source::SourceProvider::partitions)).
    pub fn source_readers(&self, workers: usize) -> usize {
        split_readers(&self.inputs, workers)
    }
}

/// A view's part in checkpoints, when the database has a data directory.
pub struct ViewCheckpointing {
    /// The view's id (its incarnation: a view dropped and re-created gets a new one).
    pub id: String,
    /// The coordinator its pipeline registers with.
    pub coordinator: Arc<CheckpointCoordinator>,
    /// Where its segments live.
    pub segments: SegmentStore,
    /// Its state in the checkpoint being recovered from, if any.
    pub recovered: Option<RecoveredView>,
}

/// What starts a view's (or a sink's) tasks; run at once, or held until recovery completes.
pub type PipelineStart = Box<dyn FnOnce() + Send>;

/// A view built from its plan, not yet running.
pub struct ViewRuntime {
    entry: Arc<ViewEntry>,
    /// Empty when the view had ended at the checkpoint: nothing left to run.
    branches: Vec<PipelineBranch>,
    /// How many inputs are sources (each gets checkpoint barriers).
    source_inputs: usize,
    /// The views among the inputs.
    upstream_views: Vec<String>,
    operators: Vec<Box<dyn StreamOperator>>,
    copies: Vec<Vec<Box<dyn StreamOperator>>>,
    checkpointing: Option<(String, Arc<CheckpointCoordinator>)>,
    restore: PipelineRestore,
}

impl ViewRuntime {
    /// Builds the view `name` (defined by `sql`) from `pipeline`: table, fan-out, restored state
    /// and an open input. Nothing runs yet and nothing is published.
    pub async fn build(
        name: &str,
        sql: &str,
        pipeline: ViewPipeline,
        catalog: &Catalog,
        checkpointing: Option<ViewCheckpointing>,
    ) -> Result<Self> {
        let ViewPipeline {
            inputs: planned,
            mut operators,
            mut copies,
            props,
            schema,
            explain,
            retention,
            looked_up,
        } = pipeline;
        let (table, recovered, checkpointing) = match checkpointing {
            Some(c) => (
                ViewTable::with_segments(Arc::clone(&schema), c.segments)
                    .updating(&props)
                    .retaining(retention),
                c.recovered,
                Some((c.id, c.coordinator)),
            ),
            None => (
                ViewTable::new(Arc::clone(&schema))
                    .updating(&props)
                    .retaining(retention),
                None,
                None,
            ),
        };
        let table = Arc::new(table);
        let fanout = Arc::new(Fanout::new(Arc::clone(&table)));
        let status = Arc::new(PipelineStatus::default());
        let mut restore = PipelineRestore::default();
        let mut ended = false;
        // A recovered view already holds what its upstream views had at the checkpoint.
        let resumed = recovered.is_some();
        if let Some(r) = recovered {
            let watermark = r.watermark();
            ended = r.entry.ended;
            table.restore(r.segments, r.entry.view.expired_rows, r.provisional)?;
            if let Some(Watermark::EventTime(t)) = watermark {
                table.expire(t);
            }
            fanout.restore(watermark, ended).await;
            status.rows_in.store(r.entry.rows_in, Ordering::Relaxed);
            restore = r.restore;
            info!(view = %name, rows = table.appended_rows(), ended, "view restored from checkpoint");
        }
        let mut reader_metrics = Vec::new();
        let mut branches = Vec::with_capacity(planned.len());
        let mut input_names = Vec::with_capacity(planned.len());
        let mut upstream_views = Vec::new();
        let mut source_inputs = 0;
        let readers = split_readers(&planned, copies.len() + 1);
        for (
            index,
            PlannedInput {
                input,
                operators: own,
            },
        ) in planned.into_iter().enumerate()
        {
            input_names.push(input.name().to_string());
            match &input {
                ViewInput::Source(_) => source_inputs += 1,
                ViewInput::View(v) => upstream_views.push(v.name.clone()),
            }
            if ended {
                continue;
            }
            let opened = match &input {
                ViewInput::Source(source) if readers > 1 => {
                    // One reader per worker, each with its partitions and its own copy of the
                    // stateless operators before the first keyed one.
                    let metrics = catalog.source_metrics.register(&source.name, name);
                    reader_metrics.push(Arc::clone(&metrics));
                    source_inputs += readers - 1;
                    let lane = operators.iter().take_while(|op| op.is_stateless()).count();
                    let mut lanes = vec![operators.drain(..lane).collect::<Vec<_>>()];
                    for (i, copy) in copies.iter_mut().enumerate() {
                        let ops: Vec<_> = copy.drain(..lane.min(copy.len())).collect();
                        if i + 1 < readers {
                            lanes.push(ops);
                        }
                    }
                    for (i, lane_operators) in lanes.into_iter().enumerate() {
                        let split = Split {
                            index: i,
                            count: readers,
                        };
                        let reader = open_source(source, index, name, &metrics, catalog, &restore);
                        branches.push(PipelineBranch {
                            input: reader(split)?,
                            operators: lane_operators,
                            lane: i > 0,
                        });
                    }
                    continue;
                }
                ViewInput::Source(source) => {
                    let metrics = catalog.source_metrics.register(&source.name, name);
                    reader_metrics.push(Arc::clone(&metrics));
                    open_source(source, index, name, &metrics, catalog, &restore)(Split::WHOLE)?
                }
                // A recovered view already holds what the upstream view had at the checkpoint.
                ViewInput::View(upstream) if resumed => PipelineInput::View {
                    backfill: Vec::new(),
                    live: upstream.fanout.subscribe_live(ReadMode::Changes).await,
                },
                ViewInput::View(upstream) => {
                    let (backfill, live) =
                        upstream.fanout.subscribe_changes(ReadMode::Changes).await?;
                    PipelineInput::View { backfill, live }
                }
            };
            branches.push(PipelineBranch {
                input: opened,
                operators: own,
                lane: false,
            });
        }
        input_names.extend(looked_up);
        let entry = Arc::new(ViewEntry {
            name: name.to_string(),
            sql: sql.to_string(),
            table,
            fanout,
            inputs: input_names,
            props,
            explain,
            status,
            reader_metrics,
            pipeline: parking_lot::Mutex::new(None),
            writer: None,
            fed_by: None,
        });
        Ok(Self {
            entry,
            branches,
            source_inputs,
            upstream_views,
            operators,
            copies,
            checkpointing,
            restore,
        })
    }

    /// The view's catalog entry (its table is what queries read).
    pub fn entry(&self) -> &Arc<ViewEntry> {
        &self.entry
    }

    /// Makes the "view" a table fed by a connector's messages in `format` (`FORMAT UPSERT`): a
    /// table to clients, not writable by statements. Before the entry is shared.
    pub fn feeding_table(mut self, format: &str) -> Result<Self> {
        let entry = Arc::get_mut(&mut self.entry).ok_or_else(|| {
            crate::error::EngineError::Internal(
                "a table's entry was shared before it was built".into(),
            )
        })?;
        entry.fed_by = Some(format.to_string());
        Ok(self)
    }

    /// Registers the view with the checkpoint coordinator and returns what starts its pipeline,
    /// or None when the view had ended at the checkpoint (then it only keeps its rows).
    pub async fn into_start(self) -> Option<PipelineStart> {
        let Self {
            entry,
            branches,
            source_inputs,
            upstream_views,
            operators,
            copies,
            checkpointing,
            restore,
        } = self;
        if branches.is_empty() {
            entry.status.finish();
            if let Some((id, coordinator)) = &checkpointing {
                match view_state(&entry.fanout, &entry.status).await {
                    Ok(state) => coordinator.register_ended(
                        &entry.name,
                        id,
                        Arc::clone(&entry.table),
                        Arc::clone(&entry.status),
                        state,
                    ),
                    // Only reading the restored rows back can fail here; the view then says so
                    // rather than checkpointing a state it could not read.
                    Err(e) => entry
                        .table
                        .mark_failed(format!("its restored rows cannot be read: {e}")),
                }
            }
            return None;
        }
        let durability = checkpointing.map(|(id, coordinator)| Durability {
            link: coordinator.register(
                &entry.name,
                &id,
                upstream_views,
                source_inputs,
                Arc::clone(&entry.table),
                Arc::clone(&entry.status),
            ),
            restore,
        });
        Some(Box::new(move || {
            let running: RunningPipeline = spawn_pipeline(
                &entry.name,
                branches,
                operators,
                copies,
                Arc::clone(&entry.fanout),
                Arc::clone(&entry.status),
                durability,
            );
            *entry.pipeline.lock() = Some(running);
        }))
    }
}

/// How many readers a view reads its input with: one per worker (`workers`) up to the source's
/// partitions, when its only input is a source whose readers can split them; else 1.
fn split_readers(planned: &[PlannedInput], workers: usize) -> usize {
    match planned {
        [
            PlannedInput {
                input: ViewInput::Source(source),
                ..
            },
        ] => workers.min(source.provider.partitions()).max(1),
        _ => 1,
    }
}

/// Opens readers of the view's own on `source` (its input `index`), resuming where the
/// checkpoint left it: the reader of the partitions a [`Split`] owns. It joins the other views'
/// reader of the same partitions once it is where that one is ([`crate::source_group`]).
fn open_source<'a>(
    source: &'a SourceEntry,
    index: usize,
    view: &'a str,
    metrics: &'a Arc<ReaderMetrics>,
    catalog: &'a Catalog,
    restore: &'a PipelineRestore,
) -> impl Fn(Split) -> Result<PipelineInput> + 'a {
    move |split| {
        let context = ReaderContext {
            source: source.name.clone(),
            metrics: Arc::clone(metrics),
            errors: Arc::clone(&catalog.source_errors),
            bad_records: source.bad_records,
            resume: restore.sources.get(&index).and_then(|r| r.position.clone()),
            split,
        };
        tracing::debug!(view, source = %source.name, split = split.index, "opening a source reader");
        Ok(PipelineInput::Source {
            input: index,
            reader: source.provider.open(context.clone())?,
            sharing: Some(Box::new(Sharing {
                registry: Arc::clone(&catalog.shared_sources),
                key: GroupKey {
                    source: source.name.clone(),
                    split: (split.index, split.count),
                },
                provider: Arc::clone(&source.provider),
                metrics: Arc::clone(&catalog.source_metrics),
            })),
            config: SourceTaskConfig {
                watermark: source.watermark.clone(),
                idle_timeout: source.idle_timeout,
                max_future: source.max_future,
                context,
                restore: restore.sources.get(&index).cloned().map(Box::new),
            },
        })
    }
}
