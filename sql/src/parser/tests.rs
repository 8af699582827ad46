//! Parser tests: Weir's statements, their clauses, and what passes through to sqlparser.

use super::*;
use weir_engine::subscription::SubscribeOptions;

#[test]
fn parses_source_with_watermark_and_dotted_options() {
    let s = parse_statements(
        "CREATE SOURCE Readings (id TEXT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '5 seconds') \
         WITH (connector = 'kafka', properties.bootstrap.server = 'x:1', n = 3) FORMAT PLAIN ENCODE JSON;",
    )
    .unwrap();
    let WeirStatement::CreateSource(c) = &s[0] else {
        panic!("{s:?}")
    };
    assert_eq!(c.name, "readings");
    assert_eq!(c.columns.len(), 2);
    assert_eq!(c.watermark.as_ref().unwrap().0, "ts");
    assert_eq!(
        c.options[1],
        ("properties.bootstrap.server".into(), "x:1".into())
    );
    assert_eq!(c.format, Some(("PLAIN".into(), "JSON".into())));
    assert!(c.sql.starts_with("CREATE SOURCE Readings"));
}

#[test]
fn encode_options_join_the_with_options() {
    let s = parse_statements(
        "CREATE SOURCE r (WATERMARK FOR ts AS ts) WITH (connector = 'kafka') \
         FORMAT PLAIN ENCODE AVRO (schema.registry = 'http://r:8081', Schema.Registry.Subject = s)",
    )
    .unwrap();
    let WeirStatement::CreateSource(c) = &s[0] else {
        panic!("{s:?}")
    };
    assert!(c.columns.is_empty());
    assert_eq!(c.format, Some(("PLAIN".into(), "AVRO".into())));
    assert_eq!(
        c.options,
        [
            ("connector".to_string(), "kafka".to_string()),
            ("schema.registry".into(), "http://r:8081".into()),
            ("schema.registry.subject".into(), "s".into()),
        ]
    );
}

#[test]
fn emit_on_window_close_only_for_its_statement() {
    let s = parse_statements(
        "CREATE MATERIALIZED VIEW a AS SELECT * FROM s; \
         CREATE MATERIALIZED VIEW b AS SELECT * FROM s EMIT ON WINDOW CLOSE",
    )
    .unwrap();
    let (WeirStatement::CreateView(a), WeirStatement::CreateView(b)) = (&s[0], &s[1]) else {
        panic!("{s:?}")
    };
    assert!(!a.emit_on_window_close);
    assert!(b.emit_on_window_close);
}

#[test]
fn sink_from_a_view_or_its_own_query() {
    let s = parse_statements(
        "CREATE SINK a FROM v WITH (connector = 'kafka', topic = 't') FORMAT PLAIN ENCODE JSON; \
         CREATE SINK IF NOT EXISTS B AS SELECT k, count(*) AS n FROM readings WITH (connector = 'parquet', path = '/x') FORMAT UPSERT; \
         CREATE SINK c AS SELECT * FROM v EMIT ON WINDOW CLOSE WITH (connector = 'kafka', topic = 't')",
    )
    .unwrap();
    let (WeirStatement::CreateSink(a), WeirStatement::CreateSink(b), WeirStatement::CreateSink(c)) =
        (&s[0], &s[1], &s[2])
    else {
        panic!("{s:?}")
    };
    assert_eq!((a.from.as_str(), a.query.is_none()), ("v", true));
    assert!(a.own_view().is_none());
    assert_eq!(b.name, "b");
    assert!(b.if_not_exists);
    assert_eq!(b.from, "b_query");
    assert_eq!(
        b.options.len(),
        2,
        "WITH after the query is the sink's: {b:?}"
    );
    assert_eq!(b.format, Some(("UPSERT".into(), String::new())));
    let view = b.own_view().unwrap();
    assert_eq!(
        view.sql,
        "CREATE MATERIALIZED VIEW \"b_query\" AS SELECT k, count(*) AS n FROM readings"
    );
    assert!(c.emit_on_window_close);
    assert!(
        c.own_view()
            .unwrap()
            .sql
            .ends_with("FROM v EMIT ON WINDOW CLOSE")
    );
    let err =
        parse_statements("CREATE SINK d FROM v EMIT ON WINDOW CLOSE WITH (connector = 'kafka')")
            .unwrap_err();
    assert!(err.to_string().contains("belongs to a query"), "{err}");
}

#[test]
fn drop_show_and_passthrough() {
    let s =
        parse_statements("DROP MATERIALIZED VIEW IF EXISTS v CASCADE; SHOW SOURCES; select 1;;")
            .unwrap();
    assert!(matches!(
        &s[0],
        WeirStatement::Drop {
            kind: ObjectKind::MaterializedView,
            if_exists: true,
            cascade: true,
            ..
        }
    ));
    assert!(matches!(s[1], WeirStatement::ShowSources));
    assert!(matches!(s[2], WeirStatement::Sql(_)));
    assert_eq!(s.len(), 3);
}

#[test]
fn syntax_errors_are_errors() {
    let e = parse_statements("CREATE SOURCE s (a INT WITH (x = 1)").unwrap_err();
    assert_eq!(e.kind(), crate::error::SqlErrorKind::Syntax);
    assert!(parse_statements("SELEC 1").is_err());
    assert!(parse_statements("").unwrap().is_empty());
    assert!(parse_statements("-- just a comment").unwrap().is_empty());
}

#[test]
fn temporal_clauses_are_taken_out_with_their_table_and_time() {
    let s = parse_statements(
        "CREATE MATERIALIZED VIEW a AS SELECT * FROM o JOIN Rates FOR SYSTEM_TIME AS OF o.ts AS r \
           ON o.c = r.c JOIN eq FOR SYSTEM_TIME AS OF PROCTIME() e ON o.e = e.id; \
         CREATE MATERIALIZED VIEW b AS SELECT * FROM o JOIN \"R\" FOR SYSTEM_TIME AS OF ts ON o.c = \"R\".c",
    )
    .unwrap();
    let (WeirStatement::CreateView(a), WeirStatement::CreateView(b)) = (&s[0], &s[1]) else {
        panic!("{s:?}")
    };
    assert_eq!(a.lookups, vec!["eq".to_string()]);
    assert_eq!(
        a.versioned,
        vec![("rates".to_string(), vec!["o".to_string(), "ts".to_string()])]
    );
    assert_eq!(b.versioned, vec![("R".to_string(), vec!["ts".to_string()])]);
    assert!(b.lookups.is_empty());
    for bad in [
        "CREATE MATERIALIZED VIEW c AS SELECT * FROM o JOIN r FOR SYSTEM_TIME AS OF now() ON o.c = r.c",
        "CREATE MATERIALIZED VIEW c AS SELECT * FROM o JOIN r FOR SYSTEM_TIME AS OF 5 ON o.c = r.c",
    ] {
        let err = parse_statements(bad).expect_err(bad);
        assert!(err.to_string().contains("takes PROCTIME()"), "{err}");
    }
}

#[test]
fn subscribe_cursor_fetch_and_close() {
    let parsed = parse_statements(
        "SUBSCRIBE TO v; SUBSCRIBE public.\"V\" WITH (SNAPSHOT = false, PROGRESS); \
         COPY (SUBSCRIBE v) TO STDOUT WITH (FORMAT text); \
         DECLARE \"C\" NO SCROLL CURSOR WITH HOLD FOR SUBSCRIBE v; \
         DECLARE c CURSOR FOR SELECT 1; \
         FETCH 10 FROM c; FETCH ALL c WITH (timeout = '1s'); FETCH NEXT IN c; FETCH FORWARD c; \
         CLOSE c; CLOSE ALL",
    )
    .unwrap();
    let defaults = SubscribeOptions::default();
    assert!(
        matches!(&parsed[0], WeirStatement::Subscribe(s) if s.view == "v" && s.options == defaults)
    );
    match &parsed[1] {
        WeirStatement::Subscribe(s) => {
            assert_eq!(s.view, "V");
            assert!(!s.options.snapshot && s.options.progress);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&parsed[2], WeirStatement::CopySubscribe(s) if s.view == "v"));
    match &parsed[3] {
        WeirStatement::DeclareCursor(d) => {
            assert_eq!(d.name, "C");
            assert!(d.hold);
            assert!(matches!(&d.query, CursorQuery::Subscribe(s) if s.view == "v"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&parsed[4], WeirStatement::DeclareCursor(d) if !d.hold && matches!(d.query, CursorQuery::Query(_)))
    );
    let fetches: Vec<(FetchCount, Option<std::time::Duration>)> = parsed[5..9]
        .iter()
        .map(|s| match s {
            WeirStatement::Fetch(f) => {
                assert_eq!(f.cursor, "c");
                (f.count, f.timeout)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        fetches,
        vec![
            (FetchCount::Rows(10), None),
            (FetchCount::All, Some(std::time::Duration::from_secs(1))),
            (FetchCount::Rows(1), None),
            (FetchCount::Rows(1), None),
        ]
    );
    assert!(matches!(&parsed[9], WeirStatement::CloseCursor(Some(c)) if c == "c"));
    assert!(matches!(&parsed[10], WeirStatement::CloseCursor(None)));
}

#[test]
fn subscribe_refuses_what_it_cannot_do_by_name() {
    for (sql, says) in [
        ("SUBSCRIBE (SELECT 1)", "not a query"),
        (
            "SUBSCRIBE v WITH (snapshots = false)",
            "unknown option \"snapshots\"",
        ),
        (
            "SUBSCRIBE v WITH (snapshot = maybe)",
            "invalid value 'maybe'",
        ),
        (
            "COPY (SUBSCRIBE v) TO STDOUT WITH (FORMAT csv)",
            "text only",
        ),
        ("DECLARE c SCROLL CURSOR FOR SELECT 1", "forward only"),
        ("DECLARE c BINARY CURSOR FOR SELECT 1", "BINARY"),
        ("FETCH PRIOR FROM c", "forward only"),
        ("FETCH ALL c WITH (timeout = 'soon')", "invalid duration"),
    ] {
        let error = parse_statements(sql).unwrap_err().to_string();
        assert!(error.contains(says), "{sql}: {error}");
    }
}
