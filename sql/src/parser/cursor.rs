//! `SUBSCRIBE`, `DECLARE … CURSOR`, `FETCH` and `CLOSE`, in the spellings of PostgreSQL and,
//! for subscriptions, Materialize: `SUBSCRIBE [TO] view [WITH (SNAPSHOT = false, PROGRESS)]`,
//! `COPY (SUBSCRIBE …) TO STDOUT`, `DECLARE c CURSOR FOR SUBSCRIBE …`, `FETCH [FORWARD] [n |
//! ALL] [FROM] c [WITH (TIMEOUT = '1s')]`. Cursors only move forward: the rows of a
//! subscription are not kept once fetched.

use std::time::Duration;

use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use weir_engine::options::Options;
use weir_engine::subscription::SubscribeOptions;

use super::ddl::parse_option_list;
use super::{consume_words, normalize_ident, normalize_name};
use crate::error::{Result, SqlError, SqlErrorKind};

/// `SUBSCRIBE [TO] view [WITH (…)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    /// The view or table followed, normalised.
    pub view: String,
    /// Snapshot first, progress rows.
    pub options: SubscribeOptions,
}

/// What a cursor reads.
#[derive(Debug, Clone, PartialEq)]
pub enum CursorQuery {
    /// A view's changes, without end.
    Subscribe(Subscribe),
    /// A query's rows (a `Statement::Query`).
    Query(Box<Statement>),
}

/// `DECLARE name CURSOR [WITH HOLD] FOR …`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclareCursor {
    /// The cursor's name, normalised.
    pub name: String,
    /// `WITH HOLD`: the cursor outlives its transaction.
    pub hold: bool,
    /// What it reads.
    pub query: CursorQuery,
}

/// How many rows a `FETCH` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchCount {
    /// At most this many.
    Rows(usize),
    /// Every row (of a subscription: every row there is now, waiting for the first).
    All,
}

/// `FETCH … FROM name [WITH (timeout = …)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetch {
    /// The cursor, normalised.
    pub cursor: String,
    /// How many rows.
    pub count: FetchCount,
    /// For a subscription: how long to wait for a first row (None: until one comes).
    pub timeout: Option<Duration>,
}

/// After `SUBSCRIBE`.
pub(super) fn parse_subscribe(parser: &mut Parser) -> Result<Subscribe> {
    consume_words(parser, &["TO"]);
    if parser.peek_token().token == Token::LParen {
        return Err(SqlError::new(
            SqlErrorKind::FeatureNotSupported,
            "SUBSCRIBE follows a materialized view or table, not a query: create a view for the \
             query, then SUBSCRIBE TO it",
        ));
    }
    let view = normalize_name(&parser.parse_object_name(false)?)?;
    let pairs = if consume_words(parser, &["WITH"]) {
        parse_option_list(parser, true)?
    } else {
        Vec::new()
    };
    let mut options = Options::new("SUBSCRIBE", pairs)?;
    let defaults = SubscribeOptions::default();
    let subscribe = Subscribe {
        view,
        options: SubscribeOptions {
            snapshot: options
                .take_parsed::<bool>("snapshot")?
                .unwrap_or(defaults.snapshot),
            progress: options
                .take_parsed::<bool>("progress")?
                .unwrap_or(defaults.progress),
        },
    };
    options.finish()?;
    Ok(subscribe)
}

/// True when `COPY (SUBSCRIBE …` is ahead.
pub(super) fn is_copy_subscribe(parser: &Parser) -> bool {
    super::word_at(parser, 0, "COPY")
        && parser.peek_nth_token(1).token == Token::LParen
        && super::word_at(parser, 2, "SUBSCRIBE")
}

/// `COPY (SUBSCRIBE …) TO STDOUT [WITH (FORMAT text)]`: how psql shows changes as they come.
pub(super) fn parse_copy_subscribe(parser: &mut Parser) -> Result<Subscribe> {
    parser.next_token();
    parser.next_token();
    parser.next_token();
    let subscribe = parse_subscribe(parser)?;
    parser.expect_token(&Token::RParen)?;
    super::expect_word(parser, "TO")?;
    super::expect_word(parser, "STDOUT")?;
    consume_words(parser, &["WITH"]);
    // COPY's own option list: `(FORMAT text, …)`, a value after each name.
    if parser.consume_token(&Token::LParen) {
        loop {
            let name = parser.parse_identifier()?.value.to_ascii_lowercase();
            let value = match parser.next_token().token {
                Token::Word(w) => w.value,
                Token::SingleQuotedString(s) => s,
                other => return Err(SqlError::syntax(format!("COPY option {name}: {other}"))),
            };
            if name != "format" || !value.eq_ignore_ascii_case("text") {
                return Err(SqlError::new(
                    SqlErrorKind::FeatureNotSupported,
                    format!(
                        "COPY (SUBSCRIBE …) TO STDOUT sends text only, without options (got \
                         {name} {value})"
                    ),
                ));
            }
            if !parser.consume_token(&Token::Comma) {
                parser.expect_token(&Token::RParen)?;
                break;
            }
        }
    }
    Ok(subscribe)
}

/// After `DECLARE`.
pub(super) fn parse_declare(parser: &mut Parser) -> Result<DeclareCursor> {
    let name = parse_cursor_name(parser)?;
    loop {
        if consume_words(parser, &["BINARY"]) {
            return Err(SqlError::new(
                SqlErrorKind::FeatureNotSupported,
                "BINARY cursors are not supported: fetch as text, or use the extended protocol's \
                 binary results",
            ));
        }
        if consume_words(parser, &["SCROLL"]) {
            return Err(SqlError::new(
                SqlErrorKind::FeatureNotSupported,
                "SCROLL cursors are not supported: Weir's cursors move forward only",
            ));
        }
        if !(consume_words(parser, &["NO", "SCROLL"])
            || consume_words(parser, &["INSENSITIVE"])
            || consume_words(parser, &["ASENSITIVE"]))
        {
            break;
        }
    }
    super::expect_word(parser, "CURSOR")?;
    let hold = if consume_words(parser, &["WITH", "HOLD"]) {
        true
    } else {
        consume_words(parser, &["WITHOUT", "HOLD"]);
        false
    };
    super::expect_word(parser, "FOR")?;
    let query = if consume_words(parser, &["SUBSCRIBE"]) {
        CursorQuery::Subscribe(parse_subscribe(parser)?)
    } else {
        CursorQuery::Query(Box::new(Statement::Query(parser.parse_query()?)))
    };
    Ok(DeclareCursor { name, hold, query })
}

/// After `FETCH`.
pub(super) fn parse_fetch(parser: &mut Parser) -> Result<Fetch> {
    let backwards = ["PRIOR", "FIRST", "LAST", "ABSOLUTE", "RELATIVE", "BACKWARD"];
    if backwards.iter().any(|w| super::word_at(parser, 0, w)) {
        return Err(SqlError::new(
            SqlErrorKind::FeatureNotSupported,
            "Weir's cursors move forward only: FETCH NEXT, FETCH n, FETCH ALL or FETCH FORWARD",
        ));
    }
    let count = if consume_words(parser, &["NEXT"]) {
        FetchCount::Rows(1)
    } else {
        consume_words(parser, &["FORWARD"]);
        if consume_words(parser, &["ALL"]) {
            FetchCount::All
        } else if let Token::Number(n, _) = &parser.peek_token().token {
            let n = n.parse::<usize>().map_err(|_| {
                SqlError::new(
                    SqlErrorKind::InvalidParameter,
                    format!("FETCH count {n} is not a row count"),
                )
            })?;
            parser.next_token();
            FetchCount::Rows(n)
        } else {
            // `FETCH name`, `FETCH FORWARD name`: the next row.
            FetchCount::Rows(1)
        }
    };
    if !consume_words(parser, &["FROM"]) {
        consume_words(parser, &["IN"]);
    }
    let cursor = parse_cursor_name(parser)?;
    let mut timeout = None;
    if consume_words(parser, &["WITH"]) {
        let mut options = Options::new("FETCH", parse_option_list(parser, false)?)?;
        timeout = options.take_duration("timeout")?;
        options.finish()?;
    }
    Ok(Fetch {
        cursor,
        count,
        timeout,
    })
}

/// After `CLOSE`: the cursor's name, or None for `CLOSE ALL`.
pub(super) fn parse_close(parser: &mut Parser) -> Result<Option<String>> {
    if consume_words(parser, &["ALL"]) {
        return Ok(None);
    }
    parse_cursor_name(parser).map(Some)
}

fn parse_cursor_name(parser: &mut Parser) -> Result<String> {
    let ident = parser.parse_identifier()?;
    Ok(normalize_ident(&ident))
}
