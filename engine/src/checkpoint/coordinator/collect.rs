//! One pipeline's part of a checkpoint: its reports for the barrier, its end, or nothing (it
//! failed, or reads a failed view).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::super::state::{CheckpointReport, OperatorState, SourceState, ViewState};
use super::PipelineHandle;
use crate::error::{EngineError, Result};
use crate::pipeline::PipelineState;

/// What an ended pipeline keeps in every checkpoint.
#[derive(Debug, Clone)]
pub(super) struct EndedState {
    pub(super) view: ViewState,
    pub(super) operators: Vec<(usize, String, OperatorState)>,
}

/// What one pipeline contributes to a checkpoint.
pub(super) enum Outcome {
    /// It passed the barrier.
    Barrier {
        sources: BTreeMap<usize, SourceState>,
        operators: Vec<(usize, String, OperatorState)>,
        view: ViewState,
    },
    /// It ended; its view is final.
    Ended(EndedState),
    /// It failed, or reads a failed view: its last checkpointed entry stands.
    Keep,
}

/// True when `view` reads, directly or not, a failed view.
pub(super) fn reads_failed(
    view: &str,
    by_name: &BTreeMap<&str, &Arc<PipelineHandle>>,
    failed: &[&str],
) -> bool {
    let mut todo = vec![view];
    let mut seen = Vec::new();
    while let Some(v) = todo.pop() {
        if failed.contains(&v) {
            return true;
        }
        seen.push(v);
        if let Some(h) = by_name.get(v) {
            todo.extend(
                h.upstream_views
                    .iter()
                    .map(String::as_str)
                    .filter(|u| !seen.contains(u)),
            );
        }
    }
    false
}

/// Waits for one pipeline's reports for `epoch`.
pub(super) async fn collect(
    view: &str,
    h: &PipelineHandle,
    epoch: u64,
    deadline: tokio::time::Instant,
) -> Result<Outcome> {
    if let Some(state) = h.ended.lock().clone() {
        return Ok(Outcome::Ended(state));
    }
    let mut reports = h.reports.lock().await;
    let mut sources = h.ended_sources.lock().clone();
    let mut operators = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_millis(100), reports.recv()).await;
        let report = match next {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(Outcome::Keep),
            Err(_) => {
                if matches!(h.status.state(), PipelineState::Failed(_)) {
                    return Ok(Outcome::Keep);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(EngineError::Storage(format!(
                        "view \"{view}\" did not reach checkpoint barrier {epoch} in time (is its pipeline stalled?)"
                    )));
                }
                continue;
            }
        };
        match report {
            CheckpointReport::Source {
                epoch: e,
                input,
                state,
            } if e == epoch => merge_source(&mut sources, input, state),
            CheckpointReport::SourceEnded { input, state } => {
                merge_source(&mut h.ended_sources.lock(), input, state.clone());
                merge_source(&mut sources, input, state);
            }
            CheckpointReport::Operator {
                epoch: e,
                stage,
                name,
                state,
            } if e == epoch => {
                // A sharded operator reports once per shard: one state, split again at restore.
                match operators.iter_mut().find(|(s, _, _)| *s == stage) {
                    Some((_, _, into)) => crate::shards::merge_shard_state(into, state),
                    None => operators.push((stage, name, state)),
                }
            }
            CheckpointReport::View { epoch: e, state } if e == epoch => {
                return Ok(Outcome::Barrier {
                    sources,
                    operators,
                    view: state,
                });
            }
            CheckpointReport::Ended { state, operators } => {
                let ended = EndedState {
                    view: state,
                    operators,
                };
                *h.ended.lock() = Some(ended.clone());
                return Ok(Outcome::Ended(ended));
            }
            // Reports of an earlier attempt that timed out.
            _ => {}
        }
    }
}

/// Adds a reader's state of input `input`: an input read by one reader per worker reports once
/// per reader, and its state is theirs together.
fn merge_source(
    sources: &mut std::collections::BTreeMap<usize, crate::checkpoint::SourceState>,
    input: usize,
    state: crate::checkpoint::SourceState,
) {
    match sources.get_mut(&input) {
        Some(known) => known.merge(state),
        None => {
            sources.insert(input, state);
        }
    }
}
