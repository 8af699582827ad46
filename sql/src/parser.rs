//! Weir's statements on top of sqlparser, the way DataFusion's `DFParser` adds
//! `CREATE EXTERNAL TABLE`: Weir DDL is parsed here, everything else by sqlparser's PostgreSQL
//! dialect and handed to DataFusion.
//!
//! ```sql
//! CREATE SOURCE [IF NOT EXISTS] name [(col type, …, WATERMARK FOR col AS expr)]
//!     [INCLUDE partition | offset | key | timestamp | header 'name' [type] [AS col] …]
//!     WITH (key = 'value', …) [FORMAT PLAIN ENCODE JSON | CSV | AVRO | PROTOBUF [(key = 'value', …)]]
//! CREATE MATERIALIZED VIEW [IF NOT EXISTS] name [WITH (…)] AS query [EMIT ON WINDOW CLOSE]
//! EXPLAIN CREATE MATERIALIZED VIEW …
//! CREATE SINK [IF NOT EXISTS] name { FROM view | AS query [EMIT ON WINDOW CLOSE] }
//!     WITH (connector = '…', …) [FORMAT PLAIN | UPSERT [ENCODE JSON]]
//! SHOW SOURCES | SHOW MATERIALIZED VIEWS | SHOW SINKS
//! CHECKPOINT
//! DROP SOURCE | MATERIALIZED VIEW | SINK [IF EXISTS] name [CASCADE | RESTRICT]
//! ```
//!
//! This file holds the statement types, the token-level helpers and the dispatch; `ddl.rs`
//! parses the bodies of the three CREATE statements and their `WITH (…)` / `FORMAT` clauses.

use datafusion::sql::sqlparser::ast::{
    ColumnDef, Expr as SqlExpr, Ident, ObjectName, Query, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use weir_engine::source::IncludeColumn;

use crate::error::{Result, SqlError};

mod complexity;
mod cursor;
mod ddl;
mod temporal;
pub use complexity::MAX_EXPRESSION_DEPTH;
pub use cursor::{CursorQuery, DeclareCursor, Fetch, FetchCount, Subscribe};
use ddl::{parse_create_sink, parse_create_source, parse_create_view};

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

/// `CREATE TABLE name (…, PRIMARY KEY (…)) WITH (connector = …) FORMAT UPSERT ENCODE JSON`: a
/// table whose rows a topic's messages write.
#[derive(Debug, Clone)]
pub struct CreateConnectorTable {
    /// Normalised name.
    pub name: String,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// The plain `CREATE TABLE` of its columns and key (what DataFusion plans).
    pub columns: Box<Statement>,
    /// `WATERMARK FOR column AS expr`: each message is its key's version from that time on.
    pub watermark: Option<(String, SqlExpr)>,
    /// `WITH (…)` pairs.
    pub options: Vec<(String, String)>,
    /// `FORMAT x ENCODE y`, upper case.
    pub format: (String, String),
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
    /// `EMIT EVERY INTERVAL '…'`: how often open windows' changes are emitted.
    pub emit_every: Option<std::time::Duration>,
    /// Tables joined `FOR SYSTEM_TIME AS OF PROCTIME()` (looked up as rows pass).
    pub lookups: Vec<String>,
    /// Inputs joined `FOR SYSTEM_TIME AS OF column` (versions by event time): the input's name
    /// and the column's name, qualifier first.
    pub versioned: Vec<(String, Vec<String>)>,
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
            emit_every: None,
            lookups: Vec::new(),
            versioned: Vec::new(),
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
    /// A table.
    Table,
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
    /// `EXPLAIN ANALYZE MATERIALIZED VIEW name`: a running view's operators and their figures.
    ExplainAnalyzeView(String),
    /// `SHOW SOURCES`.
    ShowSources,
    /// `SHOW MATERIALIZED VIEWS`.
    ShowViews,
    /// `SHOW FUNCTIONS [LIKE 'pattern']`.
    ShowFunctions {
        /// The `LIKE` pattern.
        like: Option<String>,
    },
    /// `CREATE SINK`.
    CreateSink(Box<CreateSink>),
    /// `CREATE TABLE … WITH (connector = …) FORMAT …`.
    CreateConnectorTable(Box<CreateConnectorTable>),
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
    /// `SUBSCRIBE [TO] view …`: the view's rows, then its changes, without end.
    Subscribe(Subscribe),
    /// `COPY (SUBSCRIBE …) TO STDOUT`: the same rows as COPY text lines.
    CopySubscribe(Subscribe),
    /// `DECLARE name CURSOR … FOR …`.
    DeclareCursor(Box<DeclareCursor>),
    /// `FETCH … FROM name`.
    Fetch(Fetch),
    /// `CLOSE name` (None: `CLOSE ALL`).
    CloseCursor(Option<String>),
    /// `REFRESH MATERIALIZED VIEW name`.
    RefreshView(String),
    /// `DROP INDEX [IF EXISTS] name, …`.
    DropIndex {
        /// Normalised names.
        names: Vec<String>,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// Anything else: planned by DataFusion.
    Sql(Box<Statement>),
}

/// Parses one or more `;`-separated statements. Empty statements are skipped.
pub fn parse_statements(sql: &str) -> Result<Vec<WeirStatement>> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize_with_location()?;
    complexity::check_expression_depth(&tokens)?;
    let (tokens, emits) = strip_emit_clauses(tokens)?;
    let (tokens, lookups) = temporal::strip_temporal_clauses(tokens)?;
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
        let emit = emits.iter().find(|(o, _)| *o == ordinal).map(|(_, e)| *e);
        let mut stmt = parse_one(&mut parser, emit)?;
        let end = parser.peek_token().span.start;
        let text = slice_text(sql, start, end);
        let clauses: Vec<&temporal::TemporalClause> =
            lookups.iter().filter(|c| c.ordinal == ordinal).collect();
        let tables: Vec<String> = clauses
            .iter()
            .filter(|c| c.as_of.is_none())
            .map(|c| c.table.clone())
            .collect();
        let versioned: Vec<(String, Vec<String>)> = clauses
            .iter()
            .filter_map(|c| Some((c.table.clone(), c.as_of.clone()?)))
            .collect();
        match &mut stmt {
            WeirStatement::CreateView(v) | WeirStatement::ExplainView(v) => {
                v.lookups = tables;
                v.versioned = versioned;
            }
            WeirStatement::CreateSink(_) if !clauses.is_empty() => {
                return Err(SqlError::syntax(
                    "FOR SYSTEM_TIME AS OF in a sink's query: create a materialized view with the \
                     join, and a sink FROM it",
                ));
            }
            _ if !versioned.is_empty() => {
                return Err(SqlError::syntax(
                    "FOR SYSTEM_TIME AS OF a column belongs in a materialized view's query (a \
                     query reads what the view holds now)",
                ));
            }
            // A query: the table's current rows are what it reads anyway.
            _ => {}
        }
        match &mut stmt {
            WeirStatement::CreateSource(s) => s.sql = text,
            WeirStatement::CreateSink(s) => s.sql = text,
            WeirStatement::CreateConnectorTable(t) => t.sql = text,
            WeirStatement::CreateView(v) | WeirStatement::ExplainView(v) => v.sql = text,
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

/// An `EMIT` clause at the end of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitClause {
    /// `EMIT ON WINDOW CLOSE`.
    OnWindowClose,
    /// `EMIT EVERY INTERVAL '…'`.
    Every(std::time::Duration),
}

/// The `EMIT` clause of each statement that has one, by statement ordinal.
type StatementEmits = Vec<(usize, EmitClause)>;

/// Removes top-level `EMIT ON WINDOW CLOSE` and `EMIT EVERY INTERVAL '…'` clauses (which would
/// otherwise parse as a table alias) and returns them with the ordinals of their statements.
fn strip_emit_clauses(tokens: Vec<TokenWithSpan>) -> Result<(Vec<TokenWithSpan>, StatementEmits)> {
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
        if depth != 0 || k + 1 >= significant.len() {
            continue;
        }
        let word = |j: usize| significant.get(k + j).and_then(|&t| words[t].as_deref());
        if word(0) != Some("EMIT") {
            continue;
        }
        let (clause, len) = match (word(1), word(2), word(3)) {
            (Some("ON"), Some("WINDOW"), Some("CLOSE")) => (EmitClause::OnWindowClose, 4),
            (Some("EVERY"), Some("INTERVAL"), _) => {
                let text = match significant.get(k + 3).map(|&t| &tokens[t].token) {
                    Some(Token::SingleQuotedString(text)) => text.clone(),
                    _ => {
                        return Err(SqlError::syntax(
                            "EMIT EVERY takes an interval: EMIT EVERY INTERVAL '10 seconds'",
                        ));
                    }
                };
                let every = weir_engine::options::parse_duration(&text)
                    .map_err(|e| SqlError::syntax(format!("EMIT EVERY INTERVAL '{text}': {e}")))?;
                if every.is_zero() {
                    return Err(SqlError::syntax("EMIT EVERY needs a positive interval"));
                }
                (EmitClause::Every(every), 4)
            }
            (Some("EVERY"), _, _) => {
                return Err(SqlError::syntax(
                    "EMIT EVERY takes an interval: EMIT EVERY INTERVAL '10 seconds'",
                ));
            }
            _ => continue,
        };
        for j in 0..len {
            remove[significant[k + j]] = true;
        }
        statements.push((ordinal, clause));
    }
    let kept = tokens
        .into_iter()
        .zip(remove)
        .filter(|(_, r)| !r)
        .map(|(t, _)| t)
        .collect();
    Ok((kept, statements))
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

/// True when the statement ahead has a `FORMAT` word outside parentheses (a `CREATE TABLE` fed by
/// a connector, which the SQL parser does not know).
fn has_format_clause(parser: &Parser) -> bool {
    let mut depth = 0i32;
    for n in 0.. {
        match &parser.peek_nth_token(n).token {
            Token::EOF => return false,
            Token::SemiColon if depth == 0 => return false,
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(w)
                if depth == 0
                    && w.quote_style.is_none()
                    && w.value.eq_ignore_ascii_case("FORMAT") =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
}

fn expect_word(parser: &mut Parser, word: &str) -> Result<()> {
    if consume_words(parser, &[word]) {
        Ok(())
    } else {
        let found = parser.peek_token();
        parser.expected(word, found).map_err(SqlError::from)
    }
}

fn parse_one(parser: &mut Parser, emit: Option<EmitClause>) -> Result<WeirStatement> {
    let emit_on_window_close = emit == Some(EmitClause::OnWindowClose);
    let emit_every = match emit {
        Some(EmitClause::Every(every)) => Some(every),
        _ => None,
    };
    if consume_words(parser, &["CREATE", "SOURCE"]) {
        return parse_create_source(parser).map(|c| WeirStatement::CreateSource(Box::new(c)));
    }
    if consume_words(parser, &["CREATE", "MATERIALIZED", "VIEW"]) {
        return parse_create_view(parser, emit_on_window_close, emit_every)
            .map(|v| WeirStatement::CreateView(Box::new(v)));
    }
    if consume_words(parser, &["EXPLAIN", "ANALYZE", "MATERIALIZED", "VIEW"]) {
        let name = normalize_name(&parser.parse_object_name(false)?)?;
        return Ok(WeirStatement::ExplainAnalyzeView(name));
    }
    if consume_words(parser, &["EXPLAIN", "CREATE", "MATERIALIZED", "VIEW"]) {
        return parse_create_view(parser, emit_on_window_close, emit_every)
            .map(|v| WeirStatement::ExplainView(Box::new(v)));
    }
    if words_ahead(parser, &["CREATE", "TABLE"]) && has_format_clause(parser) {
        parser.next_token();
        parser.next_token();
        return ddl::parse_create_connector_table(parser)
            .map(|t| WeirStatement::CreateConnectorTable(Box::new(t)));
    }
    if emit_every.is_some() {
        return Err(SqlError::syntax(
            "EMIT EVERY is only allowed at the end of CREATE MATERIALIZED VIEW (a sink delivers \
             its view's changes as they come)",
        ));
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
    if consume_words(parser, &["SHOW", "FUNCTIONS"]) {
        let like = if consume_words(parser, &["LIKE"]) {
            Some(parser.parse_literal_string()?)
        } else {
            None
        };
        return Ok(WeirStatement::ShowFunctions { like });
    }
    if consume_words(parser, &["CHECKPOINT"]) {
        return Ok(WeirStatement::Checkpoint);
    }
    if consume_words(parser, &["SUBSCRIBE"]) {
        return cursor::parse_subscribe(parser).map(WeirStatement::Subscribe);
    }
    if cursor::is_copy_subscribe(parser) {
        return cursor::parse_copy_subscribe(parser).map(WeirStatement::CopySubscribe);
    }
    if consume_words(parser, &["DECLARE"]) {
        return cursor::parse_declare(parser).map(|d| WeirStatement::DeclareCursor(Box::new(d)));
    }
    if consume_words(parser, &["FETCH"]) {
        return cursor::parse_fetch(parser).map(WeirStatement::Fetch);
    }
    if consume_words(parser, &["CLOSE"]) {
        return cursor::parse_close(parser).map(WeirStatement::CloseCursor);
    }
    if consume_words(parser, &["REFRESH", "MATERIALIZED", "VIEW"]) {
        consume_words(parser, &["CONCURRENTLY"]);
        let name = normalize_name(&parser.parse_object_name(false)?)?;
        if !consume_words(parser, &["WITH", "DATA"]) {
            consume_words(parser, &["WITH", "NO", "DATA"]);
        }
        return Ok(WeirStatement::RefreshView(name));
    }
    if consume_words(parser, &["DROP", "INDEX"]) {
        consume_words(parser, &["CONCURRENTLY"]);
        let if_exists = consume_words(parser, &["IF", "EXISTS"]);
        let mut names = vec![normalize_name(&parser.parse_object_name(false)?)?];
        while parser.consume_token(&Token::Comma) {
            names.push(normalize_name(&parser.parse_object_name(false)?)?);
        }
        if !consume_words(parser, &["CASCADE"]) {
            consume_words(parser, &["RESTRICT"]);
        }
        return Ok(WeirStatement::DropIndex { names, if_exists });
    }
    if words_ahead(parser, &["DROP", "SOURCE"])
        || words_ahead(parser, &["DROP", "SINK"])
        || words_ahead(parser, &["DROP", "TABLE"])
        || words_ahead(parser, &["DROP", "MATERIALIZED", "VIEW"])
    {
        parser.next_token();
        let kind = if consume_words(parser, &["SOURCE"]) {
            ObjectKind::Source
        } else if consume_words(parser, &["SINK"]) {
            ObjectKind::Sink
        } else if consume_words(parser, &["TABLE"]) {
            ObjectKind::Table
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

/// The name of Weir's one database (PostgreSQL's `current_database()`, the first part of a
/// three-part name); any database name a client connects with reaches it.
pub const DATABASE_NAME: &str = "weir";

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
        // Weir has one database: `weir.public.v` is `v` (dbt writes names so).
        [database, schema, one] if database == DATABASE_NAME && schema == "public" => {
            Ok(one.clone())
        }
        [database, _, _] if database != DATABASE_NAME => Err(SqlError::new(
            crate::error::SqlErrorKind::FeatureNotSupported,
            format!(
                "cross-database references are not implemented: \"{name}\" (Weir's one database \
                 is {})",
                DATABASE_NAME
            ),
        )),
        _ => Err(SqlError::new(
            crate::error::SqlErrorKind::InvalidParameter,
            format!("invalid name \"{name}\": sources and views live in schema public"),
        )),
    }
}

#[cfg(test)]
mod tests;
