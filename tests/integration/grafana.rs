//! Grafana's PostgreSQL data source against the real binary, as Grafana talks to it
//! (`../shared/design/clients.md` §1): the health check, the version and TimescaleDB probes, and
//! every variable and panel query of the dashboard in `examples/grafana/`, expanded by Grafana's
//! macro rules and sent over the simple query protocol (what both its pgx and lib/pq paths use).
//! Each result is checked against what Grafana requires of a frame: a `time` column for time
//! series, no NULL times, rows sorted by time, only type OIDs Grafana knows.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio_postgres::{SimpleQueryMessage, SimpleQueryRow};

use crate::harness::Server;

/// The time range a panel is rendered for.
struct Range {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Range {
    /// Grafana formats times with Go's RFC3339Nano in UTC: `2018-04-12T18:00:00Z`.
    fn rfc3339(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

/// Seconds in a Grafana interval such as `10s`, `5m`, `1h`, `1d`.
fn interval_seconds(text: &str) -> u64 {
    let text = text.trim().trim_matches('\'');
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("interval {text}"));
    n * match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        other => panic!("interval unit {other}"),
    }
}

/// Expands Grafana's PostgreSQL macros (`$__name(args)`, as in Grafana's `macros.go`) and the
/// dashboard's template variables (`$name`, multi-values quoted and comma-separated).
fn interpolate(sql: &str, range: &Range, variables: &[(&str, Vec<String>)]) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("$__") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        let tail = &after[name_len..];
        assert!(tail.starts_with('('), "macro {name} without arguments");
        let close = tail.find(')').expect("macro arguments end");
        let args: Vec<&str> = tail[1..close].split(',').map(str::trim).collect();
        let from = Range::rfc3339(&range.from);
        let to = Range::rfc3339(&range.to);
        out.push_str(&match name {
            "timeFilter" => format!("{} BETWEEN '{from}' AND '{to}'", args[0]),
            "timeFrom" => format!("'{from}'"),
            "timeTo" => format!("'{to}'"),
            "timeGroup" => {
                let s = interval_seconds(args[1]);
                format!("floor(extract(epoch from {})/{s})*{s}", args[0])
            }
            "timeGroupAlias" => {
                let s = interval_seconds(args[1]);
                format!("floor(extract(epoch from {})/{s})*{s} AS \"time\"", args[0])
            }
            "unixEpochFilter" => format!(
                "{c} >= {} AND {c} <= {}",
                range.from.timestamp(),
                range.to.timestamp(),
                c = args[0]
            ),
            other => panic!("macro $__{other} is not expanded by this test"),
        });
        rest = &tail[close + 1..];
    }
    out.push_str(rest);
    for (name, values) in variables {
        let quoted: Vec<String> = values
            .iter()
            .map(|v| format!("'{}'", v.replace('\'', "''")))
            .collect();
        out = out.replace(&format!("${name}"), &quoted.join(","));
    }
    out
}

/// Runs `sql` as Grafana does and returns its rows; a server error fails the test.
async fn grafana_query(client: &tokio_postgres::Client, sql: &str) -> Vec<SimpleQueryRow> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}\nfailed: {e:?}"));
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// The checks Grafana's frame conversion makes on a `time_series` result.
fn check_time_series(sql: &str, rows: &[SimpleQueryRow]) {
    let Some(first) = rows.first() else {
        return;
    };
    let time = first
        .columns()
        .iter()
        .position(|c| c.name() == "time")
        .unwrap_or_else(|| panic!("no column named \"time\" in a time series query:\n{sql}"));
    let mut previous: Option<f64> = None;
    for row in rows {
        let text = row
            .get(time)
            .unwrap_or_else(|| panic!("NULL time value:\n{sql}"));
        // Epoch seconds from $__timeGroup, or a timestamp Grafana parses itself.
        let t = match text.parse::<f64>() {
            Ok(seconds) => seconds,
            Err(_) => {
                DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
                    .unwrap_or_else(|e| panic!("time value {text}: {e}"))
                    .timestamp_micros() as f64
                    / 1e6
            }
        };
        if let Some(p) = previous {
            assert!(
                p <= t,
                "time series rows not sorted by time ({p} then {t}):\n{sql}"
            );
        }
        previous = Some(t);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_probes() {
    let server = Server::start(&[]);
    let (client, connection) = tokio_postgres::connect(&server.conninfo(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);

    // Save & test: pgx pings with a comment-only query, lib/pq with a bare `;`.
    for ping in ["-- ping", ";"] {
        let reply = client.simple_query(ping).await.expect("ping");
        assert!(
            reply
                .iter()
                .all(|m| !matches!(m, SimpleQueryMessage::Row(_))),
            "{ping}: {reply:?}"
        );
    }
    let version = grafana_query(
        &client,
        "SELECT current_setting('server_version_num')::int/100 as version",
    )
    .await;
    assert_eq!(version[0].get(0), Some("1500"));
    let timescale = grafana_query(
        &client,
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'",
    )
    .await;
    assert!(timescale.is_empty(), "Weir does not claim TimescaleDB");

    // The query builder's table and column lists (clients.md §1.4), verbatim.
    let search_path = "SELECT CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END FROM generate_series(\
         array_lower(string_to_array(current_setting('search_path'),','),1), \
         array_upper(string_to_array(current_setting('search_path'),','),1)) as i, \
         string_to_array(current_setting('search_path'),',') s";
    let tables = grafana_query(
        &client,
        &format!(
            "SELECT CASE WHEN quote_ident(table_schema) IN ({search_path}) THEN quote_ident(table_name) \
             ELSE quote_ident(table_schema) || '.' || quote_ident(table_name) END AS \"table\" \
             FROM information_schema.tables WHERE quote_ident(table_schema) NOT IN ('information_schema', \
             'pg_catalog', '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_internal', \
             '_timescaledb_config', 'timescaledb_information', 'timescaledb_experimental') \
             ORDER BY CASE WHEN quote_ident(table_schema) IN ({search_path}) THEN 0 ELSE 1 END, 1"
        ),
    )
    .await;
    let tables: Vec<&str> = tables.iter().filter_map(|r| r.get(0)).collect();
    for view in [
        "sensor_stats_10s",
        "equipment_1m",
        "hot_readings",
        "temperature_anomalies",
    ] {
        assert!(
            tables.contains(&view),
            "{view} is not in Grafana's table list: {tables:?}"
        );
    }
    let columns = grafana_query(
        &client,
        &format!(
            "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\" FROM information_schema.columns \
             WHERE CASE WHEN array_length(parse_ident('sensor_stats_10s'),1) = 2 \
             THEN quote_ident(table_schema) = (parse_ident('sensor_stats_10s'))[1] \
             AND quote_ident(table_name) = (parse_ident('sensor_stats_10s'))[2] \
             ELSE quote_ident(table_name) = 'sensor_stats_10s' AND quote_ident(table_schema) IN ({search_path}) END"
        ),
    )
    .await;
    let columns: Vec<(&str, &str)> = columns
        .iter()
        .map(|r| (r.get(0).unwrap_or(""), r.get(1).unwrap_or("")))
        .collect();
    assert!(
        columns.contains(&("window_start", "timestamp with time zone"))
            && columns.contains(&("avg_temp", "double precision"))
            && columns.contains(&("readings", "bigint")),
        "{columns:?}"
    );

    // Wait until the demo's 10-second view has rows, then render the dashboard over the last
    // 15 minutes (the dashboard's default range) and a little into the future.
    for _ in 0..200 {
        let n = grafana_query(&client, "SELECT count(*) FROM sensor_stats_10s").await;
        if n[0].get(0) != Some("0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = Utc::now();
    let range = Range {
        from: now - chrono::Duration::minutes(15),
        to: now + chrono::Duration::minutes(1),
    };

    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/grafana/dashboards/weir-demo.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");

    let mut variables: Vec<(&str, Vec<String>)> = Vec::new();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        let name = variable["name"].as_str().expect("name");
        let sql = interpolate(variable["query"].as_str().expect("query"), &range, &[]);
        let rows = grafana_query(&client, &sql).await;
        let values: Vec<String> = rows
            .iter()
            .take(2)
            .map(|r| r.get(0).expect("value").to_string())
            .collect();
        assert!(!values.is_empty(), "variable {name} has no values:\n{sql}");
        variables.push((name, values));
    }

    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 5);
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let sql = interpolate(
                target["rawSql"].as_str().expect("rawSql"),
                &range,
                &variables,
            );
            let rows = grafana_query(&client, &sql).await;
            eprintln!("panel {}: {} rows", panel["title"], rows.len());
            if target["format"] == "time_series" {
                check_time_series(&sql, &rows);
            }
            // Views that have rows from the first seconds on must show them in the panel
            // (equipment_1m emits a window only when its minute has closed).
            if sql.contains("sensor_stats_10s") || sql.contains("count(*)") {
                assert!(
                    !rows.is_empty(),
                    "panel {} is empty:\n{sql}",
                    panel["title"]
                );
            }
        }
    }

    // Only built-in type OIDs in RowDescription: pgx's older engine rejects unknown ones.
    let statement = client
        .prepare(&interpolate(
            "SELECT * FROM sensor_stats_10s WHERE $__timeFilter(window_start)",
            &range,
            &[],
        ))
        .await
        .expect("prepare");
    for column in statement.columns() {
        assert!(
            column.type_().oid() < 10_000,
            "{} has type OID {}",
            column.name(),
            column.type_().oid()
        );
    }
}

#[test]
fn macro_expansion_matches_grafana() {
    // Grafana's own expectations (macros_test.go) for 2018-04-12 18:00:00Z … 18:05:00Z.
    let range = Range {
        from: "2018-04-12T18:00:00Z".parse().expect("from"),
        to: "2018-04-12T18:05:00Z".parse().expect("to"),
    };
    assert_eq!(
        interpolate("WHERE $__timeFilter(time_column)", &range, &[]),
        "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"
    );
    assert_eq!(
        interpolate("GROUP BY $__timeGroupAlias(time_column,'5m')", &range, &[]),
        "GROUP BY floor(extract(epoch from time_column)/300)*300 AS \"time\""
    );
    assert_eq!(
        interpolate("select $__unixEpochFilter(time)", &range, &[]),
        "select time >= 1523556000 AND time <= 1523556300"
    );
    assert_eq!(
        interpolate(
            "x IN ($s)",
            &range,
            &[("s", vec!["a".into(), "o'b".into()])]
        ),
        "x IN ('a','o''b')"
    );
}
