//! Weir's integration tests, one binary (linked once): SQL behaviour as `.slt` data run
//! in-process and over the wire, the streaming-vs-batch oracle, and end-to-end tests of the real
//! `weir` binary with psql and tokio-postgres.

mod e2e;
mod harness;
mod oracle;
mod slt;
