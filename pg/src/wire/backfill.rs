//! A `CREATE MATERIALIZED VIEW` over a source with history (a Kafka topic) waits, inside the
//! statement, until the view has read what the source held when it started, sending a NOTICE
//! with its progress each second (rows done, share of the offsets). Cancelling the statement
//! (psql's Ctrl-C) drops the half-built view: creation is all or nothing. `WITH (background =
//! true)` returns at once instead; `weir_progress` shows the same figures either way.
//!
//! The wait ends when every partition's reader has reached the high watermark it first saw, or
//! when no record has come for [`QUIET`] (what is left is transaction markers, which take
//! offsets but carry no rows), or when the readers report nothing for [`NO_FIGURES`].

use std::fmt::Debug;
use std::time::{Duration, Instant};

use futures::{Sink, SinkExt};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use weir_engine::pipeline::PipelineState;
use weir_engine::source_metrics::{ViewProgress, now_millis};
use weir_sql::parser::{ObjectKind, WeirStatement};
use weir_sql::{SqlError, SqlErrorKind};

use super::WeirHandler;
use crate::session::PgSession;

/// How often progress is reported.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// No record for this long: the history is read.
pub const QUIET: Duration = Duration::from_secs(2);
/// Readers that report no figures for this long are not waited for.
pub const NO_FIGURES: Duration = Duration::from_secs(10);

/// Drops the view unless the wait completed (the statement was cancelled or failed).
struct DropUnlessDone {
    session: PgSession,
    view: Option<String>,
}

impl Drop for DropUnlessDone {
    fn drop(&mut self) {
        let Some(view) = self.view.take() else {
            return;
        };
        let session = self.session.clone();
        tokio::spawn(async move {
            let drop = WeirStatement::Drop {
                kind: ObjectKind::MaterializedView,
                name: view.clone(),
                if_exists: true,
                cascade: false,
            };
            match session.execute(&drop).await {
                Ok(_) => tracing::info!(view = %view, "creation cancelled: view dropped"),
                Err(e) => tracing::warn!(view = %view, error = %e, "dropping a cancelled view"),
            }
        });
    }
}

impl WeirHandler {
    /// After `CREATE MATERIALIZED VIEW` over a source with history: waits for the view to read
    /// it, reporting progress.
    pub(super) async fn wait_for_backfill<C>(
        &self,
        client: &mut C,
        statement: &WeirStatement,
    ) -> PgWireResult<()>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let WeirStatement::CreateView(create) = statement else {
            return Ok(());
        };
        match self.session.sql_session().backfill_to_wait_for(create) {
            Some(view) => wait(client, &self.session, &view).await,
            None => Ok(()),
        }
    }
}

/// Waits until `view` has read its sources' history, reporting progress to `client`.
pub(super) async fn wait<C>(client: &mut C, session: &PgSession, view: &str) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut guard = DropUnlessDone {
        session: session.clone(),
        view: Some(view.to_string()),
    };
    let started = Instant::now();
    let mut reported = Instant::now();
    let sql = session.sql_session();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(entry) = sql.database().catalog().view(view)
            && let PipelineState::Failed(why) = entry.status.state()
        {
            return Err(super::errors::to_pgwire(&SqlError::new(
                SqlErrorKind::ObjectFailed,
                format!("materialized view \"{view}\" failed while reading its history: {why}"),
            )));
        }
        let progress = sql.view_progress(view);
        let done = match &progress {
            None => started.elapsed() >= NO_FIGURES,
            Some(p) => p.caught_up || quiet(p, started),
        };
        if done {
            notice(client, finished(view, progress.as_ref())).await?;
            break;
        }
        if reported.elapsed() >= REPORT_EVERY
            && let Some(p) = &progress
        {
            notice(client, backfilling(view, p)).await?;
            reported = Instant::now();
        }
    }
    guard.view = None;
    Ok(())
}

/// Nothing has come for [`QUIET`], with every partition's end known.
fn quiet(p: &ViewProgress, started: Instant) -> bool {
    let all_known = p.partitions > 0 && p.partitions_known == p.partitions;
    let quiet_millis = i64::try_from(QUIET.as_millis()).unwrap_or(i64::MAX);
    let silent = match p.last_record_millis {
        Some(at) => now_millis() - at >= quiet_millis,
        None => started.elapsed() >= QUIET,
    };
    all_known && silent
}

fn backfilling(view: &str, p: &ViewProgress) -> String {
    match p.share_done() {
        Some(share) => format!(
            "backfilling \"{view}\" from {}: {} of {} rows ({:.0}%)",
            p.source,
            p.rows_done,
            p.rows_done + p.rows_to_go,
            share * 100.0
        ),
        None => format!(
            "backfilling \"{view}\" from {}: {} rows",
            p.source, p.rows_done
        ),
    }
}

fn finished(view: &str, p: Option<&ViewProgress>) -> String {
    match p {
        Some(p) => format!(
            "\"{view}\" has read the history of {} ({} rows) and follows new rows",
            p.source, p.rows_done
        ),
        None => format!(
            "\"{view}\" reports no progress yet; it goes on in the background (see weir_progress)"
        ),
    }
}

async fn notice<C>(client: &mut C, text: String) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    super::startup::send_notices(client, vec![text]).await?;
    client.flush().await?;
    Ok(())
}
