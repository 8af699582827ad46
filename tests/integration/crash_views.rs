//! The views of the kill -9 test ([`crate::crash`]), each with the query reading it and the
//! DataFusion batch query over the produced `readings` that it must equal after the last
//! watermark.

/// Windows of 10 s per key starting at T0 + 160 s or later (1 704 067 360 s since the epoch):
/// the end marker at T0 + 300 s puts the watermark at T0 + 295 s, the aggregate's at 285 s, and a
/// 120 s retention keeps window ends from 165 s on.
const RECENT_WINDOWS_ORACLE: &str = "SELECT * FROM (
       SELECT to_unixtime(date_bin(INTERVAL '10 seconds', ts))::BIGINT AS w, k, count(*)
       FROM readings GROUP BY w, k) WHERE w >= 1704067360 ORDER BY 1, 2";

/// Sessions per key with a 150 ms gap, found in batch: a row starts a session unless the key's
/// previous row is less than the gap before it.
const SESSIONS_ORACLE: &str = "WITH marked AS (
       SELECT k, v, ts, CASE WHEN lag(ts) OVER (PARTITION BY k ORDER BY ts)
                                  > ts - INTERVAL '150 milliseconds' THEN 0 ELSE 1 END AS starts
       FROM readings
     ), numbered AS (
       SELECT *, sum(starts) OVER (PARTITION BY k ORDER BY ts
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session
       FROM marked
     )
     SELECT k, CAST(min(ts) AS BIGINT) AS ws, CAST(max(ts) AS BIGINT) + 150, count(*), sum(v)
     FROM numbered GROUP BY k, session ORDER BY 1, 2";

/// The views, each paired with the query reading it and the batch oracle computing the same rows.
pub fn views() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (
            "CREATE MATERIALIZED VIEW per_window AS
               SELECT window_start, k, count(*) AS n, sum(v) AS s FROM TUMBLE(readings, ts, INTERVAL '10 seconds')
               WHERE k >= 0 GROUP BY window_start, k EMIT ON WINDOW CLOSE",
            "SELECT to_unixtime(window_start)::BIGINT, k, n, s FROM per_window ORDER BY 1, 2",
            "SELECT to_unixtime(date_bin(INTERVAL '10 seconds', ts))::BIGINT AS w, k, count(*), sum(v)
               FROM readings GROUP BY w, k ORDER BY 1, 2",
        ),
        (
            "CREATE MATERIALIZED VIEW live_windows AS
               SELECT window_start, count(*) AS n, max(v) AS top, min(id) AS first_id
               FROM TUMBLE(readings, ts, INTERVAL '10 seconds') WHERE k >= 0 GROUP BY window_start",
            "SELECT to_unixtime(window_start)::BIGINT, n, top, first_id FROM live_windows ORDER BY 1",
            "SELECT to_unixtime(date_bin(INTERVAL '10 seconds', ts))::BIGINT AS w, count(*), max(v), min(id)
               FROM readings GROUP BY w ORDER BY 1",
        ),
        (
            "CREATE MATERIALIZED VIEW hopping AS
               SELECT window_start, k, count(*) AS n FROM HOP(readings, ts, INTERVAL '10 seconds', INTERVAL '20 seconds')
               WHERE k >= 0 GROUP BY window_start, k EMIT ON WINDOW CLOSE",
            "SELECT to_unixtime(window_start)::BIGINT, k, n FROM hopping ORDER BY 1, 2",
            "SELECT w, k, count(*) FROM (
                 SELECT to_unixtime(date_bin(INTERVAL '10 seconds', ts))::BIGINT AS w, k FROM readings
                 UNION ALL
                 SELECT to_unixtime(date_bin(INTERVAL '10 seconds', ts))::BIGINT - 10 AS w, k FROM readings
               ) GROUP BY w, k ORDER BY 1, 2",
        ),
        // Sessions (150 ms of inactivity) with rows up to 2 s out of order: sessions are
        // created, extended and merged, and open ones are in every checkpoint.
        (
            "CREATE MATERIALIZED VIEW sessions AS
               SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s
               FROM SESSION(readings, ts, INTERVAL '150 milliseconds')
               WHERE k >= 0 GROUP BY k, window_start, window_end EMIT ON WINDOW CLOSE",
            "SELECT k, CAST(window_start AS BIGINT), CAST(window_end AS BIGINT), n, s FROM sessions ORDER BY 1, 2",
            SESSIONS_ORACLE,
        ),
        (
            "CREATE MATERIALIZED VIEW live_sessions AS
               SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s
               FROM SESSION(readings, ts, INTERVAL '150 milliseconds')
               WHERE k >= 0 GROUP BY k, window_start, window_end",
            "SELECT k, CAST(window_start AS BIGINT), CAST(window_end AS BIGINT), n, s FROM live_sessions ORDER BY 1, 2",
            SESSIONS_ORACLE,
        ),
        // Retention (120 s behind a watermark that ends 285 s after T0, window ends aging the
        // rows): windows expire during the run, across kills, in memory and in segments. What
        // is left is exactly the windows starting from T0 + 160 s.
        (
            "CREATE MATERIALIZED VIEW recent_windows WITH (retention = '120 seconds') AS
               SELECT window_start, window_end, k, count(*) AS n FROM TUMBLE(readings, ts, INTERVAL '10 seconds')
               WHERE k >= 0 GROUP BY window_start, window_end, k EMIT ON WINDOW CLOSE",
            "SELECT to_unixtime(window_start)::BIGINT, k, n FROM recent_windows ORDER BY 1, 2",
            RECENT_WINDOWS_ORACLE,
        ),
        (
            "CREATE MATERIALIZED VIEW recent_live WITH (retention = '120 seconds') AS
               SELECT window_start, window_end, k, count(*) AS n FROM TUMBLE(readings, ts, INTERVAL '10 seconds')
               WHERE k >= 0 GROUP BY window_start, window_end, k",
            "SELECT to_unixtime(window_start)::BIGINT, k, n FROM recent_live ORDER BY 1, 2",
            RECENT_WINDOWS_ORACLE,
        ),
        // An interval self-join: readings of one key less than 200 ms apart, held rows leaving
        // as the watermark passes them, in every checkpoint.
        (
            "CREATE MATERIALIZED VIEW near_pairs AS
               SELECT a.id AS first, b.id AS second, a.k FROM readings AS a JOIN readings AS b
                 ON a.k = b.k AND b.ts >= a.ts AND b.ts < a.ts + INTERVAL '200 milliseconds' AND a.id <> b.id
               WHERE a.k >= 0",
            "SELECT first, second, k FROM near_pairs ORDER BY 1, 2",
            "SELECT a.id, b.id, a.k FROM readings AS a JOIN readings AS b
               ON a.k = b.k AND b.ts >= a.ts AND b.ts < a.ts + INTERVAL '200 milliseconds' AND a.id <> b.id
             WHERE a.k >= 0 ORDER BY 1, 2",
        ),
        (
            "CREATE MATERIALIZED VIEW totals AS
               SELECT k, count(*) AS n, sum(v) AS s, max(ts) AS last FROM readings WHERE k >= 0 GROUP BY k",
            "SELECT k, n, s, to_unixtime(last)::BIGINT FROM totals ORDER BY 1",
            "SELECT k, count(*), sum(v), to_unixtime(max(ts))::BIGINT FROM readings GROUP BY k ORDER BY 1",
        ),
        (
            "CREATE MATERIALIZED VIEW per_key AS SELECT k, sum(n) AS n, sum(s) AS s FROM per_window GROUP BY k",
            "SELECT k, n, s FROM per_key ORDER BY 1",
            "SELECT k, count(*), sum(v) FROM readings GROUP BY k ORDER BY 1",
        ),
        // A join of two updating views (retracting and re-emitting its rows as both change),
        // its held rows and their degrees in every checkpoint.
        (
            "CREATE MATERIALIZED VIEW key_share AS
               SELECT t.k, t.n, p.n AS windowed FROM totals AS t LEFT JOIN per_key AS p ON t.k = p.k",
            "SELECT k, n, windowed FROM key_share ORDER BY 1",
            "SELECT k, count(*) AS n, count(*) AS windowed FROM readings GROUP BY k ORDER BY 1",
        ),
        // An event-time temporal join: each reading with the newest mark (every 7th reading) of
        // its key at or before it; waiting rows and kept versions in every checkpoint. The mark's
        // time is what is joined, so readings of a key at one instant cannot make it ambiguous.
        (
            "CREATE MATERIALIZED VIEW marks AS SELECT k, ts FROM readings WHERE id % 7 = 0",
            "SELECT count(*) FROM marks",
            "SELECT count(*) FROM readings WHERE id % 7 = 0",
        ),
        (
            "CREATE MATERIALIZED VIEW marked AS
               SELECT r.id, r.k, m.ts AS mark
               FROM readings AS r LEFT JOIN marks FOR SYSTEM_TIME AS OF r.ts AS m ON r.k = m.k
               WHERE r.k >= 0",
            "SELECT id, k, CAST(mark AS BIGINT) FROM marked ORDER BY 1",
            "SELECT id, k, mark FROM (
               SELECT r.id, r.k, CAST(m.ts AS BIGINT) AS mark,
                      row_number() OVER (PARTITION BY r.id ORDER BY m.ts DESC) AS rn
               FROM readings AS r LEFT JOIN (SELECT k, ts FROM readings WHERE id % 7 = 0) AS m
                 ON r.k = m.k AND m.ts <= r.ts
               WHERE r.k >= 0)
             WHERE rn = 1 ORDER BY 1",
        ),
        // Views over an updating view: a filter that windows enter as they fill, and a
        // retracting aggregate over that (its state restored from checkpoints, its output
        // recomputed from the restored state).
        (
            "CREATE MATERIALIZED VIEW busy_windows AS SELECT window_start, n FROM live_windows WHERE n > 600",
            "SELECT to_unixtime(window_start)::BIGINT, n FROM busy_windows ORDER BY 1",
            "SELECT to_unixtime(date_bin(INTERVAL '10 seconds', ts))::BIGINT AS w, count(*) AS n
               FROM readings GROUP BY w HAVING count(*) > 600 ORDER BY 1",
        ),
        (
            "CREATE MATERIALIZED VIEW busy_rollup AS SELECT count(*) AS windows, sum(n) AS n, avg(n) AS mean, max(n) AS top, min(window_start) AS first FROM busy_windows",
            "SELECT windows, n, round(mean, 6), top, to_unixtime(first)::BIGINT FROM busy_rollup",
            "SELECT count(*), sum(n), round(avg(n), 6), max(n), min(w) FROM (
                 SELECT to_unixtime(date_bin(INTERVAL '10 seconds', ts))::BIGINT AS w, count(*) AS n FROM readings
                 GROUP BY w HAVING count(*) > 600)",
        ),
        // Top-N over append-only input (the top rows per key) and over an updating view (the
        // busiest windows, ties sharing a rank).
        (
            "CREATE MATERIALIZED VIEW top_readings AS SELECT * FROM (
               SELECT k, id, v, row_number() OVER (PARTITION BY k ORDER BY v DESC, id) AS rn FROM readings WHERE k >= 0
             ) WHERE rn <= 3",
            "SELECT k, id, v, rn FROM top_readings ORDER BY 1, 4",
            "SELECT * FROM (SELECT k, id, v, row_number() OVER (PARTITION BY k ORDER BY v DESC, id) AS rn FROM readings)
               WHERE rn <= 3 ORDER BY 1, 4",
        ),
        (
            "CREATE MATERIALIZED VIEW top_windows AS SELECT * FROM (
               SELECT window_start, n, rank() OVER (ORDER BY n DESC) AS r FROM live_windows
             ) WHERE r <= 2",
            "SELECT to_unixtime(window_start)::BIGINT, n, r FROM top_windows ORDER BY 1",
            "SELECT * FROM (SELECT w, n, rank() OVER (ORDER BY n DESC) AS r FROM (
                 SELECT to_unixtime(date_bin(INTERVAL '10 seconds', ts))::BIGINT AS w, count(*) AS n FROM readings GROUP BY w))
               WHERE r <= 2 ORDER BY 1",
        ),
        // UNION ALL: the same source read twice (two positions in every checkpoint), and two
        // updating views merged and summed.
        (
            "CREATE MATERIALIZED VIEW union_counts AS SELECT k, count(*) AS n FROM (
               SELECT k FROM readings WHERE k % 2 = 0 UNION ALL SELECT k FROM readings WHERE k % 2 = 1
             ) GROUP BY k",
            "SELECT k, n FROM union_counts ORDER BY 1",
            "SELECT k, count(*) FROM readings GROUP BY k ORDER BY 1",
        ),
        (
            "CREATE MATERIALIZED VIEW union_updating AS SELECT k, sum(n) AS n FROM (
               SELECT k, n FROM totals UNION ALL SELECT k, n FROM per_key
             ) GROUP BY k",
            "SELECT k, n FROM union_updating ORDER BY 1",
            "SELECT k, 2 * count(*) FROM readings GROUP BY k ORDER BY 1",
        ),
    ]
}
