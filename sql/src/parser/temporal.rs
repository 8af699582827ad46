//! `FOR SYSTEM_TIME AS OF PROCTIME()` after a table in a view's query: a processing-time
//! temporal join. PostgreSQL's dialect does not parse the clause (and DataFusion's planner would
//! drop it), so it is taken out of the tokens here and the table's name kept for the planner.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{Result, SqlError};

/// The tables each statement joins `FOR SYSTEM_TIME AS OF PROCTIME()`, by statement ordinal.
pub(super) type StatementLookups = Vec<(usize, String)>;

/// Removes every `FOR SYSTEM_TIME AS OF PROCTIME()` and returns the tables they followed.
pub(super) fn strip_temporal_clauses(
    tokens: Vec<TokenWithSpan>,
) -> Result<(Vec<TokenWithSpan>, StatementLookups)> {
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
        let proctime =
            is(4, "PROCTIME") && at(5) == Some(&Token::LParen) && at(6) == Some(&Token::RParen);
        if !proctime {
            return Err(SqlError::syntax(
                "FOR SYSTEM_TIME AS OF takes PROCTIME() (joins with the table's current rows); \
                 event-time versions (AS OF s.ts) are not supported yet",
            ));
        }
        let name = match table.quote_style {
            Some(_) => table.value.clone(),
            None => table.value.to_ascii_lowercase(),
        };
        for j in 0..7 {
            remove[significant[k + j]] = true;
        }
        found.push((ordinal, name));
    }
    let kept = tokens
        .into_iter()
        .zip(remove)
        .filter(|(_, r)| !r)
        .map(|(t, _)| t)
        .collect();
    Ok((kept, found))
}
