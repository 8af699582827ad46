//! How deep a statement's expressions can be, bounded from its tokens before it is parsed.
//!
//! sqlparser stops deep *nesting* (parentheses, calls, subqueries) with its recursion limit,
//! but parses a long flat chain (`1 + 1 + … + 1`, `a AND b AND …`, `x::t::t…`) in a loop into a
//! left-deep tree as deep as the chain is long. Everything after the parser (cloning, rewriting,
//! planning, evaluating, dropping the tree) recurses over that tree, so a chain long enough
//! overflows a thread's stack and aborts the whole server. The bound is taken on the tokens, so
//! a statement over the limit is refused (SQLSTATE 54001) before a tree exists at all.
//!
//! The bound: within one bracket level, every operator token may add a level to the tree, so
//! the operators of one comma-free run are counted; a bracketed group (or `CASE … END`) starts a
//! level below the operators before it. Commas and clause keywords (`WHERE`, `WHEN`, …) start a
//! new expression at the same level. Over-counting only refuses a statement early; the count
//! never falls below the depth sqlparser would build.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{Result, SqlError, SqlErrorKind};

/// The deepest expression tree a statement may build. Planning and running an expression
/// recurse over it: the server's threads have stack for twice this depth even in a debug build.
/// DataFusion's planning time grows with the square of a chain's length (every level renders
/// and types the levels below it), which is why the limit is not higher: at the limit a
/// statement plans in about a second in a release build.
pub const MAX_EXPRESSION_DEPTH: usize = 2_048;

/// One bracket level: the depth it starts at and the operators counted in its current run.
#[derive(Debug, Clone, Copy)]
struct Level {
    base: usize,
    run: usize,
    /// Opened by `CASE` (closed by `END`) rather than by a bracket.
    case: bool,
}

/// Refuses statements whose expressions could build a tree deeper than
/// [`MAX_EXPRESSION_DEPTH`].
pub fn check_expression_depth(tokens: &[TokenWithSpan]) -> Result<()> {
    let deepest = expression_depth_bound(tokens);
    if deepest > MAX_EXPRESSION_DEPTH {
        return Err(SqlError::new(
            SqlErrorKind::StatementTooComplex,
            format!(
                "statement too complex: its expressions chain or nest about {deepest} operators \
                 deep, more than the {MAX_EXPRESSION_DEPTH} supported; shorten the chain (for \
                 example `x IN (…)` instead of `x = … OR x = … OR …`)"
            ),
        ));
    }
    Ok(())
}

/// An upper bound on the depth of the expression trees `tokens` parse into.
pub fn expression_depth_bound(tokens: &[TokenWithSpan]) -> usize {
    let top = Level {
        base: 0,
        run: 0,
        case: false,
    };
    let mut levels = vec![top];
    let mut deepest = 0;
    for token in tokens.iter().map(|t| &t.token) {
        let Some(level) = levels.last_mut() else {
            break;
        };
        match token {
            Token::Whitespace(_) | Token::EOF => {}
            Token::SemiColon => {
                levels.clear();
                levels.push(top);
            }
            Token::LParen | Token::LBracket | Token::LBrace => {
                let inner = Level {
                    base: level.base + level.run + 1,
                    run: 0,
                    case: false,
                };
                levels.push(inner);
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                close(&mut levels, false);
            }
            Token::Comma => level.run = 0,
            Token::Word(word) => match word.keyword {
                Keyword::CASE => {
                    let inner = Level {
                        base: level.base + level.run + 1,
                        run: 0,
                        case: true,
                    };
                    levels.push(inner);
                }
                Keyword::END => close(&mut levels, true),
                k if OPERATOR_KEYWORDS.contains(&k) => level.run += 1,
                k if CLAUSE_KEYWORDS.contains(&k) => level.run = 0,
                // Identifiers, literals such as NULL, type names: operands.
                _ => {}
            },
            Token::Number(..)
            | Token::Char(_)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::DollarQuotedString(_)
            | Token::Placeholder(_) => {}
            // Every other token is an operator or part of one.
            _ => level.run += 1,
        }
        if let Some(level) = levels.last() {
            deepest = deepest.max(level.base + level.run);
        }
    }
    deepest
}

/// Closes the innermost level opened by a bracket (`case` false) or by `CASE` (`case` true); a
/// stray closer leaves the levels alone (the parser reports it).
fn close(levels: &mut Vec<Level>, case: bool) {
    if levels.len() > 1 && levels.last().is_some_and(|l| l.case == case) {
        levels.pop();
        // The closed group is one operand of the run around it.
    }
}

/// Keywords that combine operands and so may add a level to the tree.
const OPERATOR_KEYWORDS: &[Keyword] = &[
    Keyword::AND,
    Keyword::OR,
    Keyword::NOT,
    Keyword::IS,
    Keyword::IN,
    Keyword::LIKE,
    Keyword::ILIKE,
    Keyword::SIMILAR,
    Keyword::BETWEEN,
    Keyword::COLLATE,
    Keyword::AT,
    Keyword::OVERLAPS,
    Keyword::ESCAPE,
    Keyword::DIV,
    Keyword::XOR,
    Keyword::ANY,
    Keyword::ALL,
    Keyword::SOME,
];

/// Keywords that end one expression and start another at the same level.
const CLAUSE_KEYWORDS: &[Keyword] = &[
    Keyword::SELECT,
    Keyword::FROM,
    Keyword::WHERE,
    Keyword::GROUP,
    Keyword::BY,
    Keyword::HAVING,
    Keyword::ORDER,
    Keyword::LIMIT,
    Keyword::OFFSET,
    Keyword::FETCH,
    Keyword::UNION,
    Keyword::INTERSECT,
    Keyword::EXCEPT,
    Keyword::JOIN,
    Keyword::ON,
    Keyword::USING,
    Keyword::VALUES,
    Keyword::SET,
    Keyword::RETURNING,
    Keyword::WINDOW,
    Keyword::WHEN,
    Keyword::THEN,
    Keyword::ELSE,
    Keyword::WITH,
    Keyword::INTO,
];

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::{Expr, SelectItem, SetExpr, Statement};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn bound(sql: &str) -> usize {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .unwrap_or_default();
        expression_depth_bound(&tokens)
    }

    /// The real depth of the first projected expression in operator nodes (a lone leaf is 0),
    /// walked without recursion.
    fn real_depth(sql: &str) -> usize {
        let Ok(mut statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
            return 0;
        };
        let Some(Statement::Query(q)) = statements.pop() else {
            return 0;
        };
        let SetExpr::Select(select) = *q.body else {
            return 0;
        };
        let Some(SelectItem::UnnamedExpr(expr)) = select.projection.into_iter().next() else {
            return 0;
        };
        let mut deepest = 0;
        let mut stack = vec![(&expr, 0usize)];
        while let Some((e, d)) = stack.pop() {
            deepest = deepest.max(d);
            match e {
                Expr::BinaryOp { left, right, .. } => {
                    stack.push((left, d + 1));
                    stack.push((right, d + 1));
                }
                Expr::Nested(inner)
                | Expr::UnaryOp { expr: inner, .. }
                | Expr::Cast { expr: inner, .. }
                | Expr::IsNull(inner)
                | Expr::IsNotNull(inner) => stack.push((inner, d + 1)),
                _ => {}
            }
        }
        deepest
    }

    #[test]
    fn the_bound_is_never_below_the_parsed_depth() {
        let chain = |op: &str, n: usize| {
            let mut s = String::from("SELECT 1");
            for _ in 0..n {
                s.push_str(op);
            }
            s
        };
        for sql in [
            chain(" + 1", 200),
            chain(" + (1)", 200),
            chain("::int", 200),
            chain(" IS NULL", 100),
            "SELECT (1 + 1 + 1) * (2 + (3 + 4 * 5))".to_string(),
            format!(
                "SELECT {}",
                "CASE WHEN true THEN 1 END + ".repeat(200) + "1"
            ),
            format!("SELECT {}", "NOT ".repeat(40) + "true"),
        ] {
            let real = real_depth(&sql);
            assert!(real > 0, "{sql}");
            assert!(bound(&sql) >= real, "{} < {real} for {sql}", bound(&sql));
        }
    }

    #[test]
    fn long_lists_and_cases_are_shallow() {
        let list = (0..10_000).map(|i| i.to_string()).collect::<Vec<_>>();
        assert!(bound(&format!("SELECT x FROM t WHERE x IN ({})", list.join(", "))) < 10);
        let case = "WHEN x = 1 THEN 'a' ".repeat(5_000);
        assert!(bound(&format!("SELECT CASE {case} ELSE 'b' END FROM t")) < 10);
        assert!(bound("SELECT a.b, c.d FROM s.t; SELECT 1 + 1") < 5);
    }

    #[test]
    fn long_chains_are_refused() {
        let sql = format!("SELECT {}", vec!["1"; MAX_EXPRESSION_DEPTH + 2].join("+"));
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, &sql)
            .tokenize_with_location()
            .unwrap_or_default();
        let e = check_expression_depth(&tokens).err();
        assert_eq!(e.map(|e| e.kind()), Some(SqlErrorKind::StatementTooComplex));
        let ok = format!("SELECT {}", vec!["1"; MAX_EXPRESSION_DEPTH / 2].join("+"));
        assert!(bound(&ok) <= MAX_EXPRESSION_DEPTH);
    }
}
