//! Weir's statements on top of sqlparser, the way DataFusion's `DFParser` adds
//! `CREATE EXTERNAL TABLE`: Weir DDL is parsed here, everything else by sqlparser's PostgreSQL
//! dialect and handed to DataFusion.
//!
//! ```sql
//! CREATE SOURCE [IF NOT EXISTS] name [(col type, …, WATERMARK FOR col AS expr)]
//!     [INCLUDE partition | offset | key | timestamp | header 'name' [type] [AS col] …]
//!     WITH (key = 'value', …) [FORMAT PLAIN ENCODE JSON | CSV]
//! CREATE MATERIALIZED VIEW [IF NOT EXISTS] name [WITH (…)] AS query [EMIT ON WINDOW CLOSE]
//! EXPLAIN CREATE MATERIALIZED VIEW …
//! CREATE SINK [IF NOT EXISTS] name FROM view WITH (connector = '…', …)
//!     [FORMAT PLAIN | UPSERT [ENCODE JSON]]
//! SHOW SOURCES | SHOW MATERIALIZED VIEWS | SHOW SINKS
//! CHECKPOINT
//! DROP SOURCE | MATERIALIZED VIEW | SINK [IF EXISTS] name [CASCADE | RESTRICT]
//! ```

use datafusion::sql::sqlparser::ast::{
    ColumnDef, Expr as SqlExpr, Ident, ObjectName, Query, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use weir_engine::source::IncludeColumn;

use crate::error::{Result, SqlError};

/// `CREATE SOURCE`.
#[derive(Debug, Clone)]
pub struct CreateSource {
    /// Normalised name.
    pub name: String,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// Declared columns (empty: the connector decides).
    pub columns: Vec<ColumnDef>,
    /// `WATERMARK FOR column AS expr`.
    pub watermark: Option<(String, SqlExpr)>,
    /// `INCLUDE …` metadata columns.
    pub include: Vec<IncludeColumn>,
    /// `WITH (…)` pairs.
    pub options: Vec<(String, String)>,
    /// `FORMAT x ENCODE y`.
    pub format: Option<(String, String)>,
    /// The statement's text.
    pub sql: String,
}

/// `CREATE MATERIALIZED VIEW`.
#[derive(Debug, Clone)]
pub struct CreateView {
    /// Normalised name.
    pub name: String,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// `WITH (…)` pairs.
    pub options: Vec<(String, String)>,
    /// The defining query.
    pub query: Box<Query>,
    /// `EMIT ON WINDOW CLOSE`.
    pub emit_on_window_close: bool,
    /// The statement's text.
    pub sql: String,
}

/// `CREATE SINK`.
#[derive(Debug, Clone)]
pub struct CreateSink {
    /// Normalised name.
    pub name: String,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// The materialized view it delivers: the one named by `FROM`, or for `AS <query>` the
    /// sink's own view `<name>_query`.
    pub from: String,
    /// `AS <query>`: the sink's own query, materialized as view `from` and dropped with it.
    pub query: Option<Box<Query>>,
    /// `EMIT ON WINDOW CLOSE` on the sink's own query.
    pub emit_on_window_close: bool,
    /// `WITH (…)` pairs.
    pub options: Vec<(String, String)>,
    /// `FORMAT x ENCODE y`, upper case.
    pub format: Option<(String, String)>,
    /// The statement's text.
    pub sql: String,
}

impl CreateSink {
    /// The `CREATE MATERIALIZED VIEW` statement of a sink's own query (`AS <query>`).
    pub fn own_view(&self) -> Option<CreateView> {
        let query = self.query.clone()?;
        let eowc = if self.emit_on_window_close {
            " EMIT ON WINDOW CLOSE"
        } else {
            ""
        };
        let sql = format!(
            "CREATE MATERIALIZED VIEW {} AS {query}{eowc}",
            Ident::with_quote('"', &self.from)
        );
        Some(CreateView {
            name: self.from.clone(),
            if_not_exists: false,
            options: Vec::new(),
            query,
            emit_on_window_close: self.emit_on_window_close,
            sql,
        })
    }
}

/// What `DROP` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A source.
    Source,
    /// A materialized view.
    MaterializedView,
    /// A sink.
    Sink,
}

/// A parsed statement.
#[derive(Debug, Clone)]
pub enum WeirStatement {
    /// `CREATE SOURCE`.
    CreateSource(Box<CreateSource>),
    /// `CREATE MATERIALIZED VIEW`.
    CreateView(Box<CreateView>),
    /// `EXPLAIN CREATE MATERIALIZED VIEW`.
    ExplainView(Box<CreateView>),
    /// `SHOW SOURCES`.
    ShowSources,
    /// `SHOW MATERIALIZED VIEWS`.
    ShowViews,
    /// `CREATE SINK`.
    CreateSink(Box<CreateSink>),
    /// `SHOW SINKS`.
    ShowSinks,
    /// `CHECKPOINT`: take a checkpoint now and wait until it is committed.
    Checkpoint,
    /// `DROP SOURCE | MATERIALIZED VIEW`.
    Drop {
        /// What kind of object.
        kind: ObjectKind,
        /// Normalised name.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
        /// `CASCADE`.
        cascade: bool,
    },
    /// Anything else: planned by DataFusion.
    Sql(Box<Statement>),
}

/// Parses one or more `;`-separated statements. Empty statements are skipped.
pub fn parse_statements(sql: &str) -> Result<Vec<WeirStatement>> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize_with_location()?;
    let (tokens, eowc_statements) = strip_emit_clauses(tokens);
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut out = Vec::new();
    let mut ordinal = 0usize;
    loop {
        while parser.consume_token(&Token::SemiColon) {
            ordinal += 1;
        }
        if parser.peek_token().token == Token::EOF {
            break;
        }
        let start = parser.peek_token().span.start;
        let mut stmt = parse_one(&mut parser, eowc_statements.contains(&ordinal))?;
        let end = parser.peek_token().span.start;
        let text = slice_text(sql, start, end);
        match &mut stmt {
            WeirStatement::CreateSource(s) => s.sql = text,
            WeirStatement::CreateSink(s) => {
                s.sql = text;
                if let Some(query) = &mut s.query {
                    crate::named_args::resolve_in_query(query)?;
                }
            }
            WeirStatement::CreateView(v) | WeirStatement::ExplainView(v) => {
                v.sql = text;
                crate::named_args::resolve_in_query(&mut v.query)?;
            }
            WeirStatement::Sql(statement) => crate::named_args::resolve_named_arguments(statement)?,
            _ => {}
        }
        out.push(stmt);
        let next = parser.peek_token();
        if next.token != Token::EOF && next.token != Token::SemiColon {
            return parser
                .expected("end of statement", next)
                .map_err(SqlError::from);
        }
    }
    Ok(out)
}

/// Removes top-level `EMIT ON WINDOW CLOSE` clauses (which would otherwise parse as a table
/// alias) and returns the ordinals of the statements that had one.
fn strip_emit_clauses(tokens: Vec<TokenWithSpan>) -> (Vec<TokenWithSpan>, Vec<usize>) {
    let words: Vec<Option<String>> = tokens
        .iter()
        .map(|t| match &t.token {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        })
        .collect();
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let mut remove = vec![false; tokens.len()];
    let mut statements = Vec::new();
    let (mut depth, mut ordinal) = (0i32, 0usize);
    for (k, &i) in significant.iter().enumerate() {
        match tokens[i].token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth == 0 => ordinal += 1,
            _ => {}
        }
        if depth == 0 && k + 3 < significant.len() {
            let seq: Vec<Option<&str>> = (0..4)
                .map(|j| words[significant[k + j]].as_deref())
                .collect();
            if seq == [Some("EMIT"), Some("ON"), Some("WINDOW"), Some("CLOSE")] {
                for j in 0..4 {
                    remove[significant[k + j]] = true;
                }
                statements.push(ordinal);
            }
        }
    }
    let kept = tokens
        .into_iter()
        .zip(remove)
        .filter(|(_, r)| !r)
        .map(|(t, _)| t)
        .collect();
    (kept, statements)
}

fn slice_text(
    sql: &str,
    start: datafusion::sql::sqlparser::tokenizer::Location,
    end: datafusion::sql::sqlparser::tokenizer::Location,
) -> String {
    let offset = |loc: datafusion::sql::sqlparser::tokenizer::Location| -> Option<usize> {
        if loc.line == 0 {
            return None;
        }
        let mut pos = 0usize;
        for (i, line) in sql.split_inclusive('\n').enumerate() {
            if i + 1 == loc.line as usize {
                let col: usize = line
                    .chars()
                    .take(loc.column.saturating_sub(1) as usize)
                    .map(char::len_utf8)
                    .sum();
                return Some(pos + col);
            }
            pos += line.len();
        }
        Some(sql.len())
    };
    let s = offset(start).unwrap_or(0);
    let e = offset(end).unwrap_or(sql.len()).max(s);
    sql[s..e].trim().to_string()
}

/// Is the next token the unquoted word `word`, `n` tokens ahead?
fn word_at(parser: &Parser, n: usize, word: &str) -> bool {
    matches!(&parser.peek_nth_token(n).token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn words_ahead(parser: &Parser, words: &[&str]) -> bool {
    words.iter().enumerate().all(|(i, w)| word_at(parser, i, w))
}

fn consume_words(parser: &mut Parser, words: &[&str]) -> bool {
    if words_ahead(parser, words) {
        for _ in words {
            parser.next_token();
        }
        true
    } else {
        false
    }
}

fn expect_word(parser: &mut Parser, word: &str) -> Result<()> {
    if consume_words(parser, &[word]) {
        Ok(())
    } else {
        let found = parser.peek_token();
        parser.expected(word, found).map_err(SqlError::from)
    }
}

fn parse_one(parser: &mut Parser, emit_on_window_close: bool) -> Result<WeirStatement> {
    if consume_words(parser, &["CREATE", "SOURCE"]) {
        return parse_create_source(parser).map(|c| WeirStatement::CreateSource(Box::new(c)));
    }
    if consume_words(parser, &["CREATE", "MATERIALIZED", "VIEW"]) {
        return parse_create_view(parser, emit_on_window_close)
            .map(|v| WeirStatement::CreateView(Box::new(v)));
    }
    if consume_words(parser, &["EXPLAIN", "CREATE", "MATERIALIZED", "VIEW"]) {
        return parse_create_view(parser, emit_on_window_close)
            .map(|v| WeirStatement::ExplainView(Box::new(v)));
    }
    if consume_words(parser, &["CREATE", "SINK"]) {
        return parse_create_sink(parser, emit_on_window_close)
            .map(|c| WeirStatement::CreateSink(Box::new(c)));
    }
    if consume_words(parser, &["SHOW", "SINKS"]) {
        return Ok(WeirStatement::ShowSinks);
    }
    if consume_words(parser, &["SHOW", "SOURCES"]) {
        return Ok(WeirStatement::ShowSources);
    }
    if consume_words(parser, &["SHOW", "MATERIALIZED", "VIEWS"]) {
        return Ok(WeirStatement::ShowViews);
    }
    if consume_words(parser, &["CHECKPOINT"]) {
        return Ok(WeirStatement::Checkpoint);
    }
    if words_ahead(parser, &["DROP", "SOURCE"])
        || words_ahead(parser, &["DROP", "SINK"])
        || words_ahead(parser, &["DROP", "MATERIALIZED", "VIEW"])
    {
        parser.next_token();
        let kind = if consume_words(parser, &["SOURCE"]) {
            ObjectKind::Source
        } else if consume_words(parser, &["SINK"]) {
            ObjectKind::Sink
        } else {
            consume_words(parser, &["MATERIALIZED", "VIEW"]);
            ObjectKind::MaterializedView
        };
        let if_exists = consume_words(parser, &["IF", "EXISTS"]);
        let name = normalize_name(&parser.parse_object_name(false)?)?;
        let cascade = consume_words(parser, &["CASCADE"]);
        if !cascade {
            consume_words(parser, &["RESTRICT"]);
        }
        return Ok(WeirStatement::Drop {
            kind,
            name,
            if_exists,
            cascade,
        });
    }
    if emit_on_window_close {
        return Err(SqlError::syntax(
            "EMIT ON WINDOW CLOSE is only allowed at the end of CREATE MATERIALIZED VIEW",
        ));
    }
    Ok(WeirStatement::Sql(Box::new(parser.parse_statement()?)))
}

fn parse_create_source(parser: &mut Parser) -> Result<CreateSource> {
    let if_not_exists = consume_words(parser, &["IF", "NOT", "EXISTS"]);
    let name = normalize_name(&parser.parse_object_name(false)?)?;
    let mut columns = Vec::new();
    let mut watermark = None;
    if parser.consume_token(&Token::LParen) {
        loop {
            if consume_words(parser, &["WATERMARK", "FOR"]) {
                if watermark.is_some() {
                    return Err(SqlError::syntax("a source can have one WATERMARK"));
                }
                let column = normalize_ident(&parser.parse_identifier()?);
                expect_word(parser, "AS")?;
                watermark = Some((column, parser.parse_expr()?));
            } else {
                columns.push(parser.parse_column_def()?);
            }
            if parser.consume_token(&Token::Comma) {
                continue;
            }
            if parser.consume_token(&Token::RParen) {
                break;
            }
            let found = parser.peek_token();
            return parser.expected(", or )", found).map_err(SqlError::from);
        }
    }
    let mut include = Vec::new();
    while consume_words(parser, &["INCLUDE"]) {
        include.push(parse_include(parser)?);
    }
    let options = if consume_words(parser, &["WITH"]) {
        parse_options(parser)?
    } else {
        Vec::new()
    };
    let format = parse_format(parser, true)?;
    Ok(CreateSource {
        name,
        if_not_exists,
        columns,
        watermark,
        include,
        options,
        format,
        sql: String::new(),
    })
}

/// `INCLUDE kind ['header name'] [type] [AS column]`.
fn parse_include(parser: &mut Parser) -> Result<IncludeColumn> {
    let kind = parse_word(parser)?.to_ascii_lowercase();
    let header = match parser.peek_token().token {
        Token::SingleQuotedString(s) => {
            parser.next_token();
            Some(s)
        }
        _ => None,
    };
    let is_clause_word = |parser: &Parser| {
        ["AS", "WITH", "INCLUDE", "FORMAT"]
            .iter()
            .any(|w| word_at(parser, 0, w))
    };
    let data_type = match parser.peek_token().token {
        Token::Word(_) if !is_clause_word(parser) => Some(parse_word(parser)?.to_ascii_lowercase()),
        _ => None,
    };
    let alias = if consume_words(parser, &["AS"]) {
        Some(normalize_ident(&parser.parse_identifier()?))
    } else {
        None
    };
    Ok(IncludeColumn {
        kind,
        header,
        data_type,
        alias,
    })
}

/// `CREATE SINK [IF NOT EXISTS] name { FROM view | AS query } [WITH (…)] [FORMAT …]`.
fn parse_create_sink(parser: &mut Parser, emit_on_window_close: bool) -> Result<CreateSink> {
    let if_not_exists = consume_words(parser, &["IF", "NOT", "EXISTS"]);
    let name = normalize_name(&parser.parse_object_name(false)?)?;
    let (from, query) = if consume_words(parser, &["AS"]) {
        (format!("{name}_query"), Some(parse_sink_query(parser)?))
    } else {
        expect_word(parser, "FROM")?;
        (normalize_name(&parser.parse_object_name(false)?)?, None)
    };
    if emit_on_window_close && query.is_none() {
        return Err(SqlError::new(
            crate::error::SqlErrorKind::User,
            "EMIT ON WINDOW CLOSE belongs to a query: CREATE SINK … AS SELECT … EMIT ON WINDOW \
             CLOSE, or on the view the sink reads",
        ));
    }
    let options = if consume_words(parser, &["WITH"]) {
        parse_options(parser)?
    } else {
        Vec::new()
    };
    // ENCODE is optional for sinks: a table or Parquet sink has no payload encoding to choose.
    let format = parse_format(parser, false)?;
    Ok(CreateSink {
        name,
        if_not_exists,
        from,
        query,
        emit_on_window_close,
        options,
        format,
        sql: String::new(),
    })
}

/// The query of `CREATE SINK … AS <query> [WITH (…)] …`: its tokens run up to the first
/// top-level `WITH (`, which sqlparser would otherwise read as table hints of the last table.
/// (A leading `WITH name AS (…)` is a common table expression, not the options.)
fn parse_sink_query(parser: &mut Parser) -> Result<Box<Query>> {
    let mut tokens = Vec::new();
    let mut depth = 0i32;
    loop {
        let next = parser.peek_token();
        match &next.token {
            Token::EOF => break,
            Token::SemiColon if depth == 0 => break,
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(w)
                if depth == 0
                    && w.quote_style.is_none()
                    && w.value.eq_ignore_ascii_case("WITH")
                    && parser.peek_nth_token(1).token == Token::LParen =>
            {
                break;
            }
            _ => {}
        }
        tokens.push(parser.next_token());
    }
    let mut query_parser = Parser::new(&PostgreSqlDialect {}).with_tokens_with_locations(tokens);
    let query = query_parser.parse_query()?;
    let rest = query_parser.peek_token();
    if rest.token != Token::EOF {
        return query_parser
            .expected("WITH (…) or the end of the sink's query", rest)
            .map_err(SqlError::from);
    }
    Ok(query)
}

fn parse_create_view(parser: &mut Parser, emit_on_window_close: bool) -> Result<CreateView> {
    let if_not_exists = consume_words(parser, &["IF", "NOT", "EXISTS"]);
    let name = normalize_name(&parser.parse_object_name(false)?)?;
    let options = if consume_words(parser, &["WITH"]) {
        parse_options(parser)?
    } else {
        Vec::new()
    };
    expect_word(parser, "AS")?;
    let query = parser.parse_query()?;
    Ok(CreateView {
        name,
        if_not_exists,
        options,
        query,
        emit_on_window_close,
        sql: String::new(),
    })
}

/// `[FORMAT x ENCODE y]`, upper case; without `encode_required`, `ENCODE y` may be left out
/// (an empty encoding).
fn parse_format(parser: &mut Parser, encode_required: bool) -> Result<Option<(String, String)>> {
    if !consume_words(parser, &["FORMAT"]) {
        return Ok(None);
    }
    let format = parse_word(parser)?;
    let encode = if encode_required || words_ahead(parser, &["ENCODE"]) {
        expect_word(parser, "ENCODE")?;
        parse_word(parser)?
    } else {
        String::new()
    };
    Ok(Some((
        format.to_ascii_uppercase(),
        encode.to_ascii_uppercase(),
    )))
}

fn parse_word(parser: &mut Parser) -> Result<String> {
    let t = parser.next_token();
    match t.token {
        Token::Word(w) => Ok(w.value),
        _ => parser.expected("a word", t).map_err(SqlError::from),
    }
}

/// `( key = value, … )` where a key may be dotted (`properties.bootstrap.server`) and a value is
/// a string, number or word.
fn parse_options(parser: &mut Parser) -> Result<Vec<(String, String)>> {
    if !parser.consume_token(&Token::LParen) {
        let found = parser.peek_token();
        return parser.expected("(", found).map_err(SqlError::from);
    }
    let mut out = Vec::new();
    if parser.consume_token(&Token::RParen) {
        return Ok(out);
    }
    loop {
        let mut key = parse_word(parser)?;
        while parser.consume_token(&Token::Period) {
            key.push('.');
            key.push_str(&parse_word(parser)?);
        }
        if !parser.consume_token(&Token::Eq) {
            let found = parser.peek_token();
            return parser.expected("=", found).map_err(SqlError::from);
        }
        let t = parser.next_token();
        let value = match t.token {
            Token::SingleQuotedString(s) => s,
            Token::Number(n, _) => n,
            Token::Word(w) => w.value,
            _ => {
                return parser
                    .expected("an option value", t)
                    .map_err(SqlError::from);
            }
        };
        out.push((key.to_ascii_lowercase(), value));
        if parser.consume_token(&Token::Comma) {
            continue;
        }
        if parser.consume_token(&Token::RParen) {
            return Ok(out);
        }
        let found = parser.peek_token();
        return parser.expected(", or )", found).map_err(SqlError::from);
    }
}

/// PostgreSQL's rule: unquoted identifiers fold to lower case.
pub fn normalize_ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

/// A one-part object name (Weir has one schema), normalised.
pub fn normalize_name(name: &ObjectName) -> Result<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(normalize_ident))
        .collect();
    match parts.as_slice() {
        [one] => Ok(one.clone()),
        [schema, one] if schema == "public" => Ok(one.clone()),
        _ => Err(SqlError::new(
            crate::error::SqlErrorKind::InvalidParameter,
            format!("invalid name \"{name}\": sources and views live in schema public"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (
            WeirStatement::CreateSink(a),
            WeirStatement::CreateSink(b),
            WeirStatement::CreateSink(c),
        ) = (&s[0], &s[1], &s[2])
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
        let err = parse_statements(
            "CREATE SINK d FROM v EMIT ON WINDOW CLOSE WITH (connector = 'kafka')",
        )
        .unwrap_err();
        assert!(err.to_string().contains("belongs to a query"), "{err}");
    }

    #[test]
    fn drop_show_and_passthrough() {
        let s = parse_statements(
            "DROP MATERIALIZED VIEW IF EXISTS v CASCADE; SHOW SOURCES; select 1;;",
        )
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
}
