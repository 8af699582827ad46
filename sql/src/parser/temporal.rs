//! `FOR SYSTEM_TIME AS OF PROCTIME()` after a table in a view's query (a processing-time temporal
//! join), or `FOR SYSTEM_TIME AS OF o.ts` (an event-time temporal join: the version valid at the
//! left row's time). PostgreSQL's dialect does not parse the clause (and DataFusion's planner
//! would drop it), so it is taken out of the tokens here and the table's name (and the column)
//! kept for the planner.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{Result, SqlError};

/// A table joined `FOR SYSTEM_TIME AS OF …` in the statement numbered `ordinal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TemporalClause {
    pub ordinal: usize,
    pub table: String,
    /// `AS OF column` (its name, qualifier first); None for `AS OF PROCTIME()`.
    pub as_of: Option<Vec<String>>,
}

/// Removes every `FOR SYSTEM_TIME AS OF PROCTIME()` or `AS OF column` and returns the tables
/// they followed.
pub(super) fn strip_temporal_clauses(
    tokens: Vec<TokenWithSpan>,
) -> Result<(Vec<TokenWithSpan>, Vec<TemporalClause>)> {
    let word = |t: &Token| match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    };
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let mut remove = vec![false; tokens.len()];
    let mut found = Vec::new();
    let (mut depth, mut ordinal) = (0i32, 0usize);
    for (k, &i) in significant.iter().enumerate() {
        match tokens[i].token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth == 0 => ordinal += 1,
            _ => {}
        }
        let at = |j: usize| significant.get(k + j).map(|&t| &tokens[t].token);
        let is = |j: usize, w: &str| at(j).and_then(word).as_deref() == Some(w);
        if !(is(0, "FOR") && is(1, "SYSTEM_TIME") && is(2, "AS") && is(3, "OF")) {
            continue;
        }
        let Some(Token::Word(table)) = k.checked_sub(1).map(|p| &tokens[significant[p]].token)
        else {
            return Err(SqlError::syntax(
                "FOR SYSTEM_TIME AS OF must follow a table name",
            ));
        };
        let name = |w: &datafusion::sql::sqlparser::tokenizer::Word| match w.quote_style {
            Some(_) => w.value.clone(),
            None => w.value.to_ascii_lowercase(),
        };
        let proctime =
            is(4, "PROCTIME") && at(5) == Some(&Token::LParen) && at(6) == Some(&Token::RParen);
        let (length, as_of) = if proctime {
            (7, None)
        } else {
            // A column: name or qualifier.name.
            let mut parts = Vec::new();
            let mut j = 4;
            while let Some(Token::Word(w)) = at(j) {
                parts.push(name(w));
                if at(j + 1) != Some(&Token::Period) {
                    break;
                }
                j += 2;
            }
            if parts.is_empty() || at(j + 1) == Some(&Token::LParen) {
                return Err(SqlError::syntax(
                    "FOR SYSTEM_TIME AS OF takes PROCTIME() (the table's current rows) or the \
                     left input's event-time column (AS OF o.ts: the version valid at that time)",
                ));
            }
            (j + 1, Some(parts))
        };
        for j in 0..length {
            remove[significant[k + j]] = true;
        }
        found.push(TemporalClause {
            ordinal,
            table: name(table),
            as_of,
        });
    }
    let kept = tokens
        .into_iter()
        .zip(remove)
        .filter(|(_, r)| !r)
        .map(|(t, _)| t)
        .collect();
    Ok((kept, found))
}
