//! The bodies of `CREATE SOURCE`, `CREATE MATERIALIZED VIEW` and `CREATE SINK`, and the
//! `WITH (…)` and `FORMAT … ENCODE …` clauses they share.

use datafusion::sql::sqlparser::ast::{ColumnDef, Expr, Query};
use datafusion::sql::sqlparser::dialect::{GenericDialect, PostgreSqlDialect};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use weir_engine::source::IncludeColumn;

use super::{
    CreateConnectorTable, CreateSink, CreateSource, CreateView, consume_words, expect_word,
    normalize_ident, normalize_name, word_at, words_ahead,
};
use crate::error::{Result, SqlError};

pub(super) fn parse_create_source(parser: &mut Parser) -> Result<CreateSource> {
    let if_not_exists = consume_words(parser, &["IF", "NOT", "EXISTS"]);
    let name = normalize_name(&parser.parse_object_name(false)?)?;
    let mut columns = Vec::new();
    let mut watermark = None;
    if parser.consume_token(&Token::LParen) {
        loop {
            if !parse_watermark(parser, &mut watermark)? {
                columns.push(parse_source_column(parser)?);
            }
            if !more_in_list(parser)? {
                break;
            }
        }
    }
    let mut include = Vec::new();
    while consume_words(parser, &["INCLUDE"]) {
        include.push(parse_include(parser)?);
    }
    let mut options = if consume_words(parser, &["WITH"]) {
        parse_options(parser)?
    } else {
        Vec::new()
    };
    let format = parse_format(parser, true, &mut options)?;
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

/// After an item of a parenthesised list: `,` (true: more follow) or `)` (false: the list is
/// done); anything else is a syntax error.
fn more_in_list(parser: &mut Parser) -> Result<bool> {
    if parser.consume_token(&Token::Comma) {
        return Ok(true);
    }
    if parser.consume_token(&Token::RParen) {
        return Ok(false);
    }
    let found = parser.peek_token();
    parser.expected(", or )", found).map_err(SqlError::from)
}

/// A source's column definition. A `STRUCT<name type, …>` type (nested JSON objects, as
/// RisingWave spells it), which PostgreSQL's grammar lacks, is read with the generic dialect.
fn parse_source_column(parser: &mut Parser) -> Result<ColumnDef> {
    if !(word_at(parser, 1, "STRUCT") && parser.peek_nth_token(2).token == Token::Lt) {
        return Ok(parser.parse_column_def()?);
    }
    let name = parser.parse_identifier()?;
    let mut tokens = vec![parser.next_token()];
    let mut depth = 0i32;
    loop {
        let token = parser.next_token();
        match &token.token {
            Token::Lt => depth += 1,
            Token::Gt => depth -= 1,
            Token::ShiftRight => depth -= 2,
            Token::EOF => return Err(SqlError::syntax("a STRUCT<…> type is not closed")),
            _ => {}
        }
        tokens.push(token);
        if depth <= 0 {
            break;
        }
    }
    // `STRUCT<…>[]`: an array of them.
    while parser.peek_token().token == Token::LBracket
        && parser.peek_nth_token(1).token == Token::RBracket
    {
        tokens.push(parser.next_token());
        tokens.push(parser.next_token());
    }
    let data_type = Parser::new(&GenericDialect {})
        .with_tokens_with_locations(tokens)
        .parse_data_type()?;
    Ok(ColumnDef {
        name,
        data_type,
        options: Vec::new(),
    })
}

/// `WATERMARK FOR column AS expr` in a column list, if that comes next (false if not).
fn parse_watermark(parser: &mut Parser, watermark: &mut Option<(String, Expr)>) -> Result<bool> {
    if !consume_words(parser, &["WATERMARK", "FOR"]) {
        return Ok(false);
    }
    if watermark.is_some() {
        return Err(SqlError::syntax("a column list can have one WATERMARK"));
    }
    let column = normalize_ident(&parser.parse_identifier()?);
    expect_word(parser, "AS")?;
    *watermark = Some((column, parser.parse_expr()?));
    Ok(true)
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
pub(super) fn parse_create_sink(
    parser: &mut Parser,
    emit_on_window_close: bool,
) -> Result<CreateSink> {
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
    let mut options = if consume_words(parser, &["WITH"]) {
        parse_options(parser)?
    } else {
        Vec::new()
    };
    // ENCODE is optional for sinks: a table or Parquet sink has no payload encoding to choose.
    let format = parse_format(parser, false, &mut options)?;
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

pub(super) fn parse_create_view(
    parser: &mut Parser,
    emit_on_window_close: bool,
    emit_every: Option<std::time::Duration>,
) -> Result<CreateView> {
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
        emit_every,
        lookups: Vec::new(),
        versioned: Vec::new(),
        sql: String::new(),
    })
}

/// `[FORMAT x ENCODE y [(key = value, …)]]`, upper case; without `encode_required`, `ENCODE y`
/// may be left out (an empty encoding). The encoding's options (`ENCODE AVRO (schema.registry =
/// …)`, as RisingWave spells them) join the `WITH` options in `options`.
fn parse_format(
    parser: &mut Parser,
    encode_required: bool,
    options: &mut Vec<(String, String)>,
) -> Result<Option<(String, String)>> {
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
    if parser.peek_token().token == Token::LParen {
        options.extend(parse_options(parser)?);
    }
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
    parse_option_list(parser, false)
}

/// As [`parse_options`]; with `bare_flags`, a key without a value (`WITH (PROGRESS)`) means
/// `true`.
pub(super) fn parse_option_list(
    parser: &mut Parser,
    bare_flags: bool,
) -> Result<Vec<(String, String)>> {
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
        if bare_flags && matches!(parser.peek_token().token, Token::Comma | Token::RParen) {
            out.push((key.to_ascii_lowercase(), "true".to_string()));
            if !more_in_list(parser)? {
                return Ok(out);
            }
            continue;
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
        if !more_in_list(parser)? {
            return Ok(out);
        }
    }
}

/// `CREATE TABLE [IF NOT EXISTS] name (columns, key) WITH (…) FORMAT f ENCODE e` (after `CREATE
/// TABLE`).
pub(super) fn parse_create_connector_table(parser: &mut Parser) -> Result<CreateConnectorTable> {
    let if_not_exists = consume_words(parser, &["IF", "NOT", "EXISTS"]);
    let object = parser.parse_object_name(false)?;
    let name = normalize_name(&object)?;
    // sqlparser's column list, plus a WATERMARK (versions by event time; see `upsert_table`).
    let (mut columns, mut constraints, mut watermark) = (Vec::new(), Vec::new(), None);
    if !parser.consume_token(&Token::LParen) {
        let found = parser.peek_token();
        return parser.expected("(", found).map_err(SqlError::from);
    }
    loop {
        if !parse_watermark(parser, &mut watermark)? {
            match parser.parse_optional_table_constraint()? {
                Some(constraint) => constraints.push(constraint),
                None => columns.push(parser.parse_column_def()?),
            }
        }
        if !more_in_list(parser)? {
            break;
        }
    }
    let mut options = if consume_words(parser, &["WITH"]) {
        parse_options(parser)?
    } else {
        Vec::new()
    };
    let format = parse_format(parser, true, &mut options)?.unwrap_or_default();
    let mut parts: Vec<String> = columns.iter().map(ToString::to_string).collect();
    parts.extend(constraints.iter().map(ToString::to_string));
    let plain = format!("CREATE TABLE {object} ({})", parts.join(", "));
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, &plain)?;
    let columns = statements
        .pop()
        .filter(|_| statements.is_empty())
        .ok_or_else(|| SqlError::syntax("invalid column list"))?;
    Ok(CreateConnectorTable {
        name,
        if_not_exists,
        columns: Box::new(columns),
        watermark,
        options,
        format,
        sql: String::new(),
    })
}
