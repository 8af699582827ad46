//! Durable state: checkpoints, the persisted catalog, and recovery.
//!
//! - [`coordinator`]: barriers in, reports out, Parquet files, then an atomically committed
//!   [`manifest`]; old checkpoints removed once a newer one is committed.
//! - [`state`]: what stages hand over at a barrier ([`state::OperatorState`],
//!   [`state::SourceState`], [`state::ViewState`]) and get back on recovery.
//! - [`store`]: the `object_store` layout; [`recovery`]: the newest intact checkpoint.
//! - [`catalog_file`]: the definitions of sources and views, rewritten after every DDL.
//!
//! Exactly-once comes from three things together: a stage's state and the source position are
//! taken at the same point of one ordered stream (the barrier); a view's rows are persisted up to
//! that point and no further; and on recovery the source is re-read from that position, so rows
//! after the checkpoint are produced again, once, into a view that does not have them yet.

pub mod catalog_file;
pub mod coordinator;
pub mod manifest;
pub mod recovery;
pub mod state;
pub mod store;
#[cfg(test)]
mod tests;

pub use coordinator::{
    CheckpointCoordinator, CheckpointOutcomes, CheckpointRecord, OperatorRecord, PipelineLink,
};
pub use state::{
    CheckpointReport, OperatorState, PipelineRestore, SourcePosition, SourceState, ViewState,
};
pub use store::CheckpointStore;
