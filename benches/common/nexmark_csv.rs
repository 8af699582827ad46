//! Nexmark's persons, auctions and bids as CSV files, so that Weir and Flink read the same rows:
//! Flink has no Nexmark generator in its distribution, and its datagen cannot draw Nexmark's
//! distribution. The files are written from Weir's `nexmark` generator (through a view of each
//! table), with only the columns q3, q4, q8 and q9 use, event times as epoch milliseconds.
//!
//! `person.csv`: id, name, city, state, date_time · `auction.csv`: id, seller, category,
//! date_time, expires · `bid.csv`: auction, bidder, price, date_time.

use std::io::Write;
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use futures::TryStreamExt;

/// The three tables: name, columns as declared, and the SELECT list that writes them.
const TABLES: [(&str, &str, &str); 3] = [
    (
        "person",
        "id BIGINT, name VARCHAR, city VARCHAR, state VARCHAR, date_time TIMESTAMPTZ",
        "id, name, city, state, CAST(date_part('epoch', date_time) * 1000 AS BIGINT) AS ms",
    ),
    (
        "auction",
        "id BIGINT, seller BIGINT, category BIGINT, date_time TIMESTAMPTZ, expires TIMESTAMPTZ",
        "id, seller, category, CAST(date_part('epoch', date_time) * 1000 AS BIGINT) AS ms, \
         CAST(date_part('epoch', expires) * 1000 AS BIGINT)",
    ),
    (
        "bid",
        "auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMPTZ",
        "auction, bidder, price, CAST(date_part('epoch', date_time) * 1000 AS BIGINT) AS ms",
    ),
];

/// `CREATE SOURCE` statements for the three tables read from `dir`'s files (4 s watermark
/// delay, as the generator's sources in the joins bench).
pub fn sources(dir: &Path) -> String {
    TABLES
        .iter()
        .map(|(name, columns, _)| {
            format!(
                "CREATE SOURCE {name} ({columns}, WATERMARK FOR date_time AS date_time - INTERVAL '4 seconds')
                 WITH (connector = 'file', path = '{}', batch_size = '65536') FORMAT PLAIN ENCODE CSV;",
                dir.join(format!("{name}.csv")).display()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes the three files for `events` Nexmark events into `dir`.
pub async fn dump(dir: &Path, events: u64) {
    std::fs::create_dir_all(dir).expect("csv directory");
    let db = weir::database().build().expect("database");
    let session = db.session();
    for (name, columns, select) in TABLES {
        session
            .execute_all(&format!(
                "CREATE SOURCE {name}_gen ({columns})
                 WITH (connector = 'datagen', generator = 'nexmark', table = '{name}', rate = 'unbounded',
                       events = '{events}', start_time = '2015-07-15T00:00:00Z');
                 CREATE MATERIALIZED VIEW {name}_rows AS SELECT {select} FROM {name}_gen;"
            ))
            .await
            .expect("generator view");
        let entry = db.catalog().view(&format!("{name}_rows")).expect("view");
        while !matches!(
            entry.status.state(),
            weir_engine::pipeline::PipelineState::Finished
        ) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut results = session
            // In event-time order: the view's batches come back in any order.
            .execute_all(&format!("SELECT * FROM {name}_rows ORDER BY ms"))
            .await
            .expect("read view");
        let Some(weir_sql::QueryResult::Rows { stream, .. }) = results.pop() else {
            panic!("{name}: no rows")
        };
        let path = dir.join(format!("{name}.csv"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("csv file"));
        let batches: Vec<_> = stream.try_collect().await.expect("rows");
        let mut rows = 0;
        for batch in &batches {
            for r in 0..batch.num_rows() {
                for (c, column) in batch.columns().iter().enumerate() {
                    if c > 0 {
                        out.write_all(b",").expect("write");
                    }
                    match column.data_type() {
                        DataType::Int64 => {
                            write!(out, "{}", column.as_primitive::<Int64Type>().value(r))
                        }
                        _ => write!(
                            out,
                            "{}",
                            column.as_string_view_opt().map_or_else(
                                || column.as_string::<i32>().value(r).to_string(),
                                |s| s.value(r).to_string(),
                            )
                        ),
                    }
                    .expect("write");
                    debug_assert!(!column.is_null(r));
                }
                out.write_all(b"\n").expect("write");
            }
            rows += batch.num_rows();
        }
        out.flush().expect("flush");
        println!("{}: {rows} rows", path.display());
    }
}
