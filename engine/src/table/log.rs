//! A table's write-ahead log: one file per committed statement (or transaction), written before
//! the command completes, so an acknowledged write survives a crash that comes before the next
//! checkpoint. Checkpoints fold the log in: a checkpoint holds the table's rows as of log
//! sequence P; recovery restores them and replays the entries after P; entries no retained
//! checkpoint needs are deleted.
//!
//! ```text
//! tables/<table id>/log/<seq, 20 digits>.arrow    Arrow IPC: the table's columns + __weir_op
//! ```
//!
//! Each entry is written whole by the store (a put is atomic: a crash leaves the old state or the
//! new file, never half of it), so a torn entry cannot be read back as a shorter statement.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, UInt8Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt8Type};
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;

use crate::changes::{Changes, Op};
use crate::checkpoint::CheckpointStore;
use crate::error::{EngineError, Result};

/// Name of the op column in log entries.
const OP_COLUMN: &str = "__weir_op";

/// One table's log.
#[derive(Debug, Clone)]
pub struct TableLog {
    store: CheckpointStore,
    /// `tables/<id>/log`.
    dir: String,
    /// The table's columns plus the op column.
    entry_schema: SchemaRef,
    table_schema: SchemaRef,
}

impl TableLog {
    /// The log of table `id` (of `schema`) in `store`.
    pub fn new(store: CheckpointStore, id: &str, schema: SchemaRef) -> Self {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(OP_COLUMN, DataType::UInt8, false));
        Self {
            store,
            dir: format!("tables/{id}/log"),
            entry_schema: Arc::new(Schema::new(fields)),
            table_schema: schema,
        }
    }

    fn path(&self, seq: u64) -> String {
        format!("{}/{seq:020}.arrow", self.dir)
    }

    /// Writes entry `seq`: the changes of one statement or transaction, in order.
    pub async fn append(&self, seq: u64, changes: &[Changes]) -> Result<()> {
        let mut writer = FileWriter::try_new(Vec::new(), &self.entry_schema)?;
        for c in changes.iter().filter(|c| !c.is_empty()) {
            let ops: UInt8Array = (0..c.num_rows()).map(|i| c.op(i) as u8).collect();
            let mut columns: Vec<ArrayRef> = c.rows().columns().to_vec();
            columns.push(Arc::new(ops));
            writer.write(&RecordBatch::try_new(
                Arc::clone(&self.entry_schema),
                columns,
            )?)?;
        }
        writer.finish()?;
        let bytes = writer.into_inner()?;
        self.store.put(&self.path(seq), bytes).await
    }

    /// Entries after `after`, in sequence order, each as the changes it holds.
    pub async fn read_after(&self, after: u64) -> Result<Vec<(u64, Vec<Changes>)>> {
        let mut out = Vec::new();
        for seq in self.sequences().await? {
            if seq <= after {
                continue;
            }
            let path = self.path(seq);
            let bytes = self.store.get_optional(&path).await?.ok_or_else(|| {
                EngineError::Storage(format!("table log entry {path} vanished while read"))
            })?;
            let reader = FileReader::try_new(std::io::Cursor::new(bytes), None)?;
            let mut changes = Vec::new();
            for batch in reader {
                changes.push(self.decode(batch?)?);
            }
            out.push((seq, changes));
        }
        Ok(out)
    }

    /// Deletes the entries up to and including `through` (a retained checkpoint holds them).
    pub async fn truncate_through(&self, through: u64) -> Result<usize> {
        self.store
            .delete_unless(&self.dir, |p| {
                sequence_of(p).is_none_or(|seq| seq > through)
            })
            .await
    }

    /// Deletes the whole log (the table was dropped).
    pub async fn delete_all(&self) -> Result<usize> {
        self.store.delete_unless(&self.dir, |_| false).await
    }

    /// Sequence numbers of the entries present, ascending.
    async fn sequences(&self) -> Result<Vec<u64>> {
        let mut seqs: Vec<u64> = self
            .store
            .list_paths(&self.dir)
            .await?
            .iter()
            .filter_map(|p| sequence_of(p))
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    fn decode(&self, batch: RecordBatch) -> Result<Changes> {
        let n = self.table_schema.fields().len();
        if batch.num_columns() != n + 1 {
            return Err(EngineError::Storage(format!(
                "a table log entry in {} has {} columns, the table {}",
                self.dir,
                batch.num_columns(),
                n
            )));
        }
        let ops = batch
            .column(n)
            .as_primitive_opt::<UInt8Type>()
            .cloned()
            .ok_or_else(|| EngineError::Storage("a table log entry lost its ops".into()))?;
        let rows = RecordBatch::try_new(
            Arc::clone(&self.table_schema),
            batch.columns()[..n].to_vec(),
        )?;
        if ops.values().iter().all(|op| *op == Op::Insert as u8) {
            return Ok(Changes::inserts(rows));
        }
        Changes::try_new(rows, ops)
    }
}

/// The sequence number in a log entry's path.
fn sequence_of(path: &str) -> Option<u64> {
    path.rsplit('/')
        .next()?
        .strip_suffix(".arrow")?
        .parse()
        .ok()
}
