//! The catalog of running objects: sources (definitions), materialized views (their tables,
//! pipelines and status) and sinks, with the dependencies `DROP` must respect. The three share
//! one namespace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use parking_lot::{Mutex, RwLock};

use crate::error::{EngineError, Result};
use crate::fanout::Fanout;
use crate::late_rows::LateRowLog;
use crate::pipeline::{PipelineStatus, RunningPipeline};
use crate::sink::SinkStatus;
use crate::source::{SourceProvider, WatermarkSpec};
use crate::source_errors::{BadRecords, SourceErrorLog};
use crate::source_metrics::{ReaderMetrics, SourceMetricsRegistry};
use crate::stream_props::StreamProps;
use crate::table::TableWriter;
use crate::view_table::ViewTable;

/// A defined source.
#[derive(Debug)]
pub struct SourceEntry {
    /// Name (normalised).
    pub name: String,
    /// The `CREATE SOURCE` statement.
    pub sql: String,
    /// Opens readers.
    pub provider: Arc<dyn SourceProvider>,
    /// Event time and watermark, if declared.
    pub watermark: Option<WatermarkSpec>,
    /// Idle partitions stop holding back time after this long.
    pub idle_timeout: Duration,
    /// Rows with event times further than this past the wall clock are rejected (None: no limit).
    pub max_future: Option<Duration>,
    /// Skip or fail on unreadable records.
    pub bad_records: BadRecords,
}

impl SourceEntry {
    /// Columns of the source.
    pub fn schema(&self) -> SchemaRef {
        self.provider.schema()
    }
}

/// A running materialized view.
#[derive(Debug)]
pub struct ViewEntry {
    /// Name (normalised).
    pub name: String,
    /// The `CREATE MATERIALIZED VIEW` statement.
    pub sql: String,
    /// The view's rows.
    pub table: Arc<ViewTable>,
    /// Applies results to `table` and feeds views reading this one.
    pub fanout: Arc<Fanout>,
    /// Sources and views this view reads.
    pub inputs: Vec<String>,
    /// What the view's stream promises its readers: append-only or updating, its key, the
    /// column that seals rows. A view is "updating" when it is not append-only.
    pub props: StreamProps,
    /// The pipeline, printed by EXPLAIN.
    pub explain: String,
    /// Pipeline status, shared with its tasks.
    pub status: Arc<PipelineStatus>,
    /// Figures of the view's source reader, when it reads a source (kept for the view's life so
    /// `weir_source_partitions` still shows a finished bounded source).
    pub reader_metrics: Vec<Arc<ReaderMetrics>>,
    /// The pipeline's tasks; dropping them stops it.
    pub pipeline: Mutex<Option<RunningPipeline>>,
    /// Set for a table (`CREATE TABLE`): written by statements, not computed by a query.
    pub writer: Option<Arc<TableWriter>>,
    /// Set for a table whose rows a connector's messages write (`FORMAT UPSERT`): the format.
    pub fed_by: Option<String>,
}

impl ViewEntry {
    /// True for a table (written by statements, or by a topic's messages).
    pub fn is_table(&self) -> bool {
        self.writer.is_some() || self.fed_by.is_some()
    }
}

/// A running sink.
#[derive(Debug)]
pub struct SinkEntry {
    /// Name (normalised).
    pub name: String,
    /// The `CREATE SINK` statement.
    pub sql: String,
    /// The view it delivers.
    pub view: String,
    /// The view is the sink's own query (`CREATE SINK … AS SELECT`): dropped with the sink.
    pub owns_view: bool,
    /// `connector = '…'`.
    pub connector: String,
    /// `PLAIN` or `UPSERT`.
    pub format: String,
    /// Delivery figures (`weir_sinks`).
    pub status: Arc<SinkStatus>,
    /// The task's status, shared with the checkpoint coordinator.
    pub pipeline_status: Arc<PipelineStatus>,
    /// The sink's task; dropping it stops the sink.
    pub pipeline: Mutex<Option<RunningPipeline>>,
}

/// Sources, views and sinks by name.
#[derive(Debug, Default)]
pub struct Catalog {
    sources: RwLock<BTreeMap<String, Arc<SourceEntry>>>,
    views: RwLock<BTreeMap<String, Arc<ViewEntry>>>,
    sinks: RwLock<BTreeMap<String, Arc<SinkEntry>>>,
    /// Late rows of every view (`weir_late_rows`).
    pub late_rows: Arc<LateRowLog>,
    /// Unreadable records of every source (`weir_source_errors`).
    pub source_errors: Arc<SourceErrorLog>,
    /// Per-partition figures of every source reader (`weir_source_partitions`).
    pub source_metrics: Arc<SourceMetricsRegistry>,
    /// The readers views share, by source and split.
    pub shared_sources: Arc<crate::source_group::SharedSources>,
}

/// What a relation name refers to.
#[derive(Debug, Clone)]
pub enum Relation {
    /// A source.
    Source(Arc<SourceEntry>),
    /// A materialized view.
    View(Arc<ViewEntry>),
}

impl Catalog {
    /// Looks a name up among sources and views.
    pub fn relation(&self, name: &str) -> Option<Relation> {
        if let Some(s) = self.sources.read().get(name) {
            return Some(Relation::Source(Arc::clone(s)));
        }
        self.views
            .read()
            .get(name)
            .map(|v| Relation::View(Arc::clone(v)))
    }

    /// A source by name.
    pub fn source(&self, name: &str) -> Option<Arc<SourceEntry>> {
        self.sources.read().get(name).cloned()
    }

    /// A view by name.
    pub fn view(&self, name: &str) -> Option<Arc<ViewEntry>> {
        self.views.read().get(name).cloned()
    }

    /// All sources, by name.
    pub fn sources(&self) -> Vec<Arc<SourceEntry>> {
        self.sources.read().values().cloned().collect()
    }

    /// All views, by name.
    pub fn views(&self) -> Vec<Arc<ViewEntry>> {
        self.views.read().values().cloned().collect()
    }

    /// A sink by name.
    pub fn sink(&self, name: &str) -> Option<Arc<SinkEntry>> {
        self.sinks.read().get(name).cloned()
    }

    /// All sinks, by name.
    pub fn sinks(&self) -> Vec<Arc<SinkEntry>> {
        self.sinks.read().values().cloned().collect()
    }

    /// Adds a sink.
    pub fn add_sink(&self, entry: Arc<SinkEntry>) -> Result<()> {
        self.check_free(&entry.name)?;
        self.sinks.write().insert(entry.name.clone(), entry);
        Ok(())
    }

    fn check_free(&self, name: &str) -> Result<()> {
        if self.sources.read().contains_key(name) {
            return Err(EngineError::AlreadyExists(format!(
                "source \"{name}\" already exists"
            )));
        }
        if self.views.read().contains_key(name) {
            return Err(EngineError::AlreadyExists(format!(
                "materialized view \"{name}\" already exists"
            )));
        }
        if self.sinks.read().contains_key(name) {
            return Err(EngineError::AlreadyExists(format!(
                "sink \"{name}\" already exists"
            )));
        }
        Ok(())
    }

    /// Errors if `name` is taken by a source, view or sink.
    pub fn ensure_name_free(&self, name: &str) -> Result<()> {
        self.check_free(name)
    }

    /// Adds a source.
    pub fn add_source(&self, entry: SourceEntry) -> Result<Arc<SourceEntry>> {
        self.check_free(&entry.name)?;
        let entry = Arc::new(entry);
        self.sources
            .write()
            .insert(entry.name.clone(), Arc::clone(&entry));
        Ok(entry)
    }

    /// Adds a view.
    pub fn add_view(&self, entry: Arc<ViewEntry>) -> Result<()> {
        self.check_free(&entry.name)?;
        self.views.write().insert(entry.name.clone(), entry);
        Ok(())
    }

    /// Views and sinks that read `name` directly.
    pub fn dependents(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .views
            .read()
            .values()
            .filter(|v| v.inputs.iter().any(|i| i == name))
            .map(|v| v.name.clone())
            .collect();
        out.extend(
            self.sinks
                .read()
                .values()
                .filter(|s| s.view == name)
                .map(|s| s.name.clone()),
        );
        out
    }

    /// The objects a DROP of `name` removes, dependents first; refuses without `cascade` when
    /// other views read it.
    pub fn drop_plan(&self, name: &str, cascade: bool) -> Result<Vec<String>> {
        let direct = self.dependents(name);
        if !direct.is_empty() && !cascade {
            return Err(EngineError::DependentObjects(format!(
                "cannot drop \"{name}\" because other objects depend on it: {} (use CASCADE to drop them too)",
                direct.join(", ")
            )));
        }
        let mut order = Vec::new();
        self.collect_dependents(name, &mut order);
        order.push(name.to_string());
        // A sink's own query view goes with it, unless something else reads that view too.
        if let Some(sink) = self.sink(name)
            && sink.owns_view
            && self.dependents(&sink.view) == [name]
        {
            order.push(sink.view.clone());
        }
        Ok(order)
    }

    fn collect_dependents(&self, name: &str, order: &mut Vec<String>) {
        for d in self.dependents(name) {
            if !order.contains(&d) {
                self.collect_dependents(&d, order);
                if !order.contains(&d) {
                    order.push(d);
                }
            }
        }
    }

    /// Removes a source, view or sink by name (a pipeline stops when the entry's last handle
    /// goes). Sinks are not relations: None for them.
    pub fn remove(&self, name: &str) -> Option<Relation> {
        if let Some(sink) = self.sinks.write().remove(name) {
            if let Some(p) = sink.pipeline.lock().take() {
                drop(p);
            }
            return None;
        }
        if let Some(s) = self.sources.write().remove(name) {
            self.source_errors.forget(name);
            return Some(Relation::Source(s));
        }
        let view = self.views.write().remove(name)?;
        if let Some(p) = view.pipeline.lock().take() {
            drop(p);
        }
        self.late_rows.forget(name);
        Some(Relation::View(view))
    }
}
