//! # weir-engine: Weir's streaming runtime
//!
//! Everything between a source and a materialized view: the messages that flow, the operator
//! trait, the pipeline runner, watermarks, window aggregation and the tables views live in.
//! Nothing here knows SQL text, sockets or Kafka: the SQL layer (`weir-sql`) plans views into
//! the pieces below, and connectors (`weir-connectors`) implement [`source::SourceProvider`].
//! The engine depends on no other Weir crate: the others implement its traits and are wired
//! together from the top (`weir::database()`).
//!
//! ```text
//!  SourceProvider::open ─▶ Source reader task ─▶ stateless ─▶ window aggregate ─▶ stateless ─▶ writer
//!   (one reader per view)  (watermarks from        (filters,     (GroupsAccumulators,   (HAVING,     (ViewTable +
//!                           WATERMARK FOR expr)     projections,  state per open        projections) Fanout to views
//!                                                   TUMBLE)       window)                             reading this one)
//! ```
//!
//! Stages are tokio tasks joined by bounded channels ([`fanout::CHANNEL_CAPACITY`]); backpressure
//! is a full channel. Control is in-band: [`message::Message`] carries data (`Changes`, the
//! changelog: rows plus an op per row, inserts / update pairs / deletes, see [`changes`]; an
//! append-only stream's are inserts without an op array), `Watermark`, `Barrier` and `End` in
//! one ordered stream.
//!
//! ## The changelog ([`changes`], [`stream_props`])
//!
//! Every stream has [`stream_props::StreamProps`], derived by the planner: append-only or
//! retract, the key of its live rows, the column that seals them. Append-only streams carry
//! no op array and keep their fast paths. An updating aggregate emits only groups whose values
//! changed (`diff_by_position`), as update pairs; its view holds the rows that can still change
//! in [`live_rows::LiveRows`] (keyed, vectorised, [`keyed_rows::KeyedRows`]) and the watermark
//! seals whole partitions (windows) into final rows. Readers follow every change, or only
//! sealed rows ([`fanout::ReadMode`]): what a PLAIN sink writes. A client's `SUBSCRIBE` is a
//! [`subscription::Subscription`]: a reader whose changes are queued (bounded by bytes) so a
//! slow client never holds back the view.
//!
//! Operators over changes: [`retract_agg`] (GROUP BY over updating input), [`top_n`] (Top-N,
//! DISTINCT ON, first row per key; per window when the partition includes a window column).
//!
//! ## Windows ([`window`], [`window_agg`], [`session_agg`])
//!
//! One [`window::WindowSpec`] (tumble, hop, cumulate, session) is shared by planning, the
//! assigner, the aggregates and EXPLAIN. Clock-aligned windows are assigned row by row in
//! vectorised copies ([`window::WindowAssigner`]) and aggregated per window, keyed by window end
//! ([`window_agg`]); an updating window aggregate keeps what it emitted as settled partial states
//! so a refresh costs the groups it touched. Sessions depend on the other rows of a key, so the
//! [`session_agg`] operator finds and merges them. Both close windows `allowed_lateness` behind
//! the watermark; later rows go to the late-row log.
//!
//! A view's final rows may carry a retention ([`view_table::retention`]): scans filter rows past
//! it at once; memory drops whole chunks, checkpoints whole segments and compactions the rest.
//! Final rows keep absolute positions (expired ones counted in the manifest) so checkpoint
//! writers always know which rows are new.
//!
//! ## Joins ([`join`])
//!
//! A join is an operator over two inputs: the merge of a pipeline's inputs tags each input's
//! rows ([`message::Message::FromInput`]) for an operator that [`operator::StreamOperator::reads_inputs`].
//! [`join::StreamJoin`] holds both inputs' rows under one key table, probes each batch against
//! the other side, evaluates the rest of `ON` over the joined rows, and, given a time bound
//! between the inputs' event times, lets rows go (and emits unmatched outer rows) as the
//! watermark passes them. [`join::lookup::LookupJoin`] (processing-time temporal joins) reads one
//! stream and looks each row's key up in a table's keyed rows.
//!
//! ## Several inputs (`UNION ALL`)
//!
//! A pipeline may have several inputs, each with the operators on its rows alone
//! ([`pipeline::PipelineBranch`]); a merge stage joins them: rows as they come, the least
//! watermark of the inputs that have not ended (one that has said nothing yet holds it back),
//! checkpoint barriers aligned (an input that delivered barrier n is not read again until all
//! have), `End` once all ended. Each source input has its own barrier channel and position in
//! the checkpoint; a source input that ends reports its final position, which later
//! checkpoints keep while the others go on.
//!
//! ## All the cores ([`shards`])
//!
//! A view's first keyed operator (a grouped aggregate, sessions by key, a Top-N with PARTITION
//! BY: [`operator::StreamOperator::partition_key`])
//! and the stateless operators after it run as one shard per worker, each on its own task: a hash
//! exchange routes rows by key (watermarks, barriers and the end to every shard) and a merge joins
//! the shards again (least watermark, barriers aligned). The SQL layer plans the view once per
//! worker to get each shard its own operators. A key hashes to one of [`shards::KEY_GROUPS`] key
//! groups and each shard owns a range of them; the shards' states are checkpointed as one stage's
//! and split by key group at restore, so a restart with another worker count redistributes them.
//! A view whose only input is a source with several partitions
//! ([`source::SourceProvider::partitions`]) reads it with one reader per worker, each owning some
//! partitions ([`source::Split`]) and running its own copy of the stateless operators before the
//! exchange. Each reader then hashes its own rows to every shard (one exchange per reader), and
//! each shard merges what the readers send it like a union's inputs, so no single task sees every
//! row. The readers' checkpoint states are one input's ([`checkpoint::SourceState::merge`]),
//! split again by partition when they resume.
//!
//! Views on one source share its readers ([`source_group`]): a view's reader starts where its
//! checkpoint left it (or at the connector's start) and, once close behind the reader the
//! source's other views use for the same partitions, reads on to exactly that reader's position
//! and hands its view over. So a new view backfills history on its own while the others follow
//! the head, each record is decoded once for all views, and each view still gets its own
//! barriers (its checkpoint holds the shared reader's position when its barrier passed).
//!
//! ## Checkpoints ([`checkpoint`])
//!
//! ```text
//!  coordinator ──barrier──▶ source task ──▶ operators ──▶ view writer ──▶ views reading the view
//!       ▲   (every interval,   │ offsets,      │ state()      │ rows since the last segment,
//!       │    or CHECKPOINT)    │ watermarks    │ as Arrow     │ provisional rows
//!       └──────────────── reports, one ordered channel per pipeline ◀───┘
//!   then: Parquet files via object_store ─▶ manifest-<epoch>.json written last (atomic)
//! ```
//!
//! A stage reports its state before it forwards the barrier, so the coordinator has every
//! stage's state once the writer reports; Parquet encoding happens off the pipeline's tasks.
//! Recovery loads the newest manifest whose files are intact, restores views' rows and operator
//! state, and opens readers at the checkpointed positions ([`source::Source::position`],
//! [`source::ReaderContext::resume`]).
//!
//! ## Incremental OVER windows ([`over_window`])
//!
//! `f(…) OVER (PARTITION BY k ORDER BY ts)` holds rows until the watermark passes them, then
//! feeds each key's rows in event-time order to the call's per-key state machine
//! ([`window_function::KeyedWindowFunction`], implemented by `weir-udf`; the batch form runs
//! the same one), so streaming results equal the batch query's. Per-key state is checkpointed as Arrow (key, last event time, one
//! binary state per call) together with the rows still waiting.
//!
//! ## Sinks ([`sink`])
//!
//! A sink task reads a view's change stream (every change for UPSERT, sealed rows for PLAIN),
//! turns it into inserts / upserts / deletes ([`sink::ChangeTracker`]) and drives a
//! connector's [`sink::SinkWriter`] through two phases: `pre_commit` at the barrier (its state
//! goes into the checkpoint), `commit` once the coordinator announces the manifest durable
//! ([`checkpoint::CheckpointOutcomes`]). Rows after the barrier wait until then, so a commit
//! never covers rows a recovery would produce again.
//!
//! ## Running a view ([`view_runtime`])
//!
//! The SQL layer hands the engine a [`view_runtime::ViewPipeline`] (inputs, operators, schema);
//! [`view_runtime::ViewRuntime`] builds the view's table and fan-out, restores its checkpointed
//! state, opens its input (a reader that joins the source's shared one, or a subscription to the
//! upstream view) and,
//! once the caller has published the view, starts it. [`sink::SinkRuntime`] does the same for a
//! sink over a view.
//!
//! ## Tables ([`table`])
//!
//! A table is a view without a query: the same [`view_table::ViewTable`] (keyed by the primary
//! key, or append-only) and [`fanout::Fanout`], written by statements through a
//! [`table::TableWriter`] (one writer at a time; changes published as a statement runs, undone on
//! rollback) with a write-ahead log per table ([`table::log`]) that checkpoints fold in: the
//! checkpoint records the log sequence its rows include, recovery replays the rest
//! ([`table::runtime`]).
//!
//! ## Errors ([`error`])
//!
//! [`EngineError`] variants carry a kind ([`ErrorKind`]: user error, not found, outside failure,
//! storage, internal, …); connectors keep their own typed errors inside
//! [`EngineError::Connector`]. Nothing here knows SQLSTATEs.
//!
//! ## Extension points
//! - [`function_library::FunctionLibrary`]: functions streaming views run incrementally
//!   (`weir-udf` is one); registered when the database is built.
//! - [`operator::StreamOperator`]: one required method (`process_batch`), everything else is a
//!   defaulted hook (`process_changes`, `on_watermark`, `on_tick`, `before_barrier`,
//!   `snapshot`/`restore`, `on_end`, …).
//! - [`source::SourceProvider`] / [`source::Source`]: connectors; `Source::position` makes one
//!   resumable after a crash.
//! - [`sink::SinkFactory`] / [`sink::SinkWriter`]: sink connectors; `recover` finishes what a
//!   crash interrupted between manifest and commit.
//!
//! ## Invariants
//! - Work is vectorised: operators see whole Arrow batches and evaluate DataFusion
//!   `PhysicalExpr`s and `GroupsAccumulator`s over them.
//! - An operator's watermark is the minimum over its non-idle inputs
//!   ([`watermark::WatermarkTracker`]) and never goes backwards.
//! - No row is silently dropped: rows whose window already closed go to the late-row log
//!   ([`late_rows::LateRowLog`], the `weir_late_rows` table) and are counted; records a source
//!   cannot read, and rows with an event time far in the future, go to the bad-record log
//!   ([`source_errors::SourceErrorLog`], `weir_source_errors`), once per source however many
//!   views' readers find them ([`checked_offsets`]).
//! - No failure is silent: an error or a panic in any task of a pipeline marks the view failed
//!   (`weir_views.status`), is logged, and makes queries on the view fail with the reason
//!   ([`view_table::ViewTable::mark_failed`]); other pipelines are unaffected.
//! - A source's watermark is the minimum over its assigned partitions; a partition holds time
//!   back from the moment it is assigned until it delivers rows or stays idle for
//!   `source.idle_timeout`. Per-partition figures are in `weir_source_partitions`
//!   ([`source_metrics::SourceMetricsRegistry`]).
//! - Exactly once across crashes: a view's persisted rows, its operators' state and its source
//!   position are all taken at the same barrier, and nothing after it is kept.
//! - A view never shows a row twice: changes apply by key under the table's lock, and sealing
//!   moves a partition's rows to the final rows under the same lock
//!   ([`view_table::ViewTable::apply`], [`view_table::ViewTable::seal`]).
//! - Change streams keep the changelog's rules ([`changes::ChangelogChecker`] checks them in
//!   tests): update pairs adjacent in one batch, a retraction carries the full live row, at most
//!   [`changes::MAX_CHANGES_ROWS`] rows per message.

pub mod bounded_log;
pub mod catalog;
pub mod changes;
pub mod checked_offsets;
pub mod checkpoint;
pub mod error;
pub mod fanout;
pub mod function_library;
pub mod join;
pub mod keyed_rows;
pub mod late_rows;
pub mod live_rows;
mod merge;
pub mod message;
pub mod multiset_extreme;
pub mod operator;
pub mod operator_metrics;
pub mod options;
pub mod over_window;
pub mod pipeline;
pub mod retract_agg;
pub mod session_agg;
pub mod shards;
pub mod sink;
pub mod source;
pub mod source_errors;
pub mod source_group;
pub mod source_metrics;
pub mod stateless;
pub mod stream_props;
pub mod subscription;
pub mod table;
pub mod time;
pub mod top_n;
pub mod view_runtime;
pub mod view_table;
pub mod watermark;
pub mod window;
pub mod window_agg;
pub mod window_function;

pub use error::{EngineError, ErrorKind, Result};
