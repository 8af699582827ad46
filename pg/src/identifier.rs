//! SQL names given as text (`'public."My Table"'::regclass`, `parse_ident`, `to_regclass`):
//! split into parts and normalised the way PostgreSQL does, and names quoted back where needed
//! (`quote_ident`). Used by the catalog's name lookups
//! and by the functions that take names, so neither depends on the other for it.

/// Splits a possibly qualified, possibly quoted SQL name (`parse_ident`): unquoted parts are
/// folded to lower case, `""` inside quotes is a quote.
pub fn parse_identifier(input: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut chars = input.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(format!("string is not a valid identifier: \"{input}\"")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' || c.is_whitespace() {
                    break;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
            if part.is_empty() {
                return Err(format!("string is not a valid identifier: \"{input}\""));
            }
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Ok(parts),
            Some('.') => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            Some(_) => return Err(format!("string is not a valid identifier: \"{input}\"")),
        }
    }
}

/// `quote_ident`: quotes a name unless it is a plain lower-case identifier.
pub fn quote_identifier(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !matches!(
            name,
            "user" | "select" | "from" | "where" | "table" | "order" | "group" | "end" | "window"
        );
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}
