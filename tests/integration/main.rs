//! Weir's integration tests, one binary (linked once): SQL behaviour as `.slt` data run
//! in-process and over the wire, the streaming-vs-batch oracle, and end-to-end tests of the real
//! `weir` binary with psql and tokio-postgres, and Kafka sources against a real broker.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod anomaly_accuracy;
mod backfill;
mod binary_formats;
mod broker;
mod clients;
mod committed_reader;
mod config_file;
mod console;
mod crash;
mod crash_tables;
mod crash_views;
mod dbt;
mod docs;
mod e2e;
mod examples;
mod explain_analyze;
mod grafana;
mod harness;
mod http_api;
mod join_oracle;
mod kafka;
mod metrics_http;
mod module_cycles;
mod oracle;
mod oracle_tables;
mod postgres_server;
mod robustness;
mod shards;
mod sinks;
mod slt;
mod subscribe;
mod window_oracle;
