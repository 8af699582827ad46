//! A new view's way through its source's history: which `CREATE MATERIALIZED VIEW` waits for
//! it (a view reading a source with a backlog, such as a Kafka topic, unless `WITH (background
//! = true)`), and how far it has come (the engine's per-reader figures, summed over the view's
//! sources). The front end polls [`Session::view_progress`] while it waits, sending NOTICEs.

use weir_engine::catalog::Relation;
use weir_engine::source_metrics::ViewProgress;

use crate::database::Session;
use crate::parser::CreateView;

impl Session {
    /// The view `create` made, when its creation should wait for the view to read its sources'
    /// history: it reads a source with a backlog and did not ask to run in the background.
    pub fn backfill_to_wait_for(&self, create: &CreateView) -> Option<String> {
        let background = create
            .options
            .iter()
            .any(|(k, v)| k == "background" && v.eq_ignore_ascii_case("true"));
        if background {
            return None;
        }
        let catalog = self.db.catalog();
        let view = catalog.view(&create.name)?;
        let reads_backlog = view.inputs.iter().any(|input| {
            matches!(catalog.relation(input), Some(Relation::Source(s)) if s.provider.has_backlog())
        });
        reads_backlog.then(|| view.name.clone())
    }

    /// How far `view` has come through its sources' history (None while its readers report
    /// nothing yet, or once it is gone).
    pub fn view_progress(&self, view: &str) -> Option<ViewProgress> {
        let catalog = self.db.catalog();
        catalog.view(view)?;
        catalog
            .source_metrics
            .progress()
            .into_iter()
            .filter(|p| p.view == view)
            .reduce(|a, b| ViewProgress {
                source: format!("{}, {}", a.source, b.source),
                view: a.view,
                partitions: a.partitions + b.partitions,
                partitions_known: a.partitions_known + b.partitions_known,
                rows_done: a.rows_done + b.rows_done,
                rows_to_go: a.rows_to_go + b.rows_to_go,
                caught_up: a.caught_up && b.caught_up,
                last_record_millis: a.last_record_millis.max(b.last_record_millis),
            })
    }
}
