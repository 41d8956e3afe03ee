//! Parsing the grammar into [`Expr`].

use super::{Expr, Filter, FilterError, IsValue, Op, Operand, Quantifier, Term};

/// The deepest nesting of groups (`or=(and(…))`) or embeds (`a(b(c(…)))`) a
/// parameter may have: parsing recurses once per level.
pub const MAX_NESTING: usize = 16;

/// The most items one list may hold: `select=` columns (PostgreSQL answers
/// at most 1,664 columns), `order=`, `in.(…)`, `or=(…)`, `on_conflict=`,
/// `columns=`.
pub const MAX_LIST_ITEMS: usize = 1000;

/// Refuses text nested deeper than [`MAX_NESTING`] parentheses (outside
/// double quotes), before anything recurses into it.
pub(crate) fn check_nesting(text: &str) -> Result<(), FilterError> {
    let (mut depth, mut deepest, mut quoted, mut escaped) = (0usize, 0usize, false, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' if !quoted => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_NESTING {
        Err(FilterError::TooDeep { depth: deepest })
    } else {
        Ok(())
    }
}

/// One query parameter: `column=op.value`, `or=(…)`, `and=(…)`, `not.or=(…)`.
pub fn parse_param(key: &str, value: &str) -> Result<Expr, FilterError> {
    check_nesting(value)?;
    match key {
        "or" | "and" | "not.or" | "not.and" => {
            let negated = key.starts_with("not.");
            parse_logical(negated, key.trim_start_matches("not."), value)
        }
        column => {
            let column = unquote_column(column)?;
            parse_filter(&column, value, false)
        }
    }
}

/// A policy condition: one or more `key=value` parts joined by `&` (all must hold).
pub fn parse_condition(text: &str) -> Result<Expr, FilterError> {
    let parts: Vec<Expr> = text
        .split('&')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| FilterError::NotAParameter { part: part.into() })?;
            parse_param(key.trim(), value.trim())
        })
        .collect::<Result<_, _>>()?;
    match parts.len() {
        0 => Err(FilterError::EmptyCondition),
        1 => Ok(parts.into_iter().next().expect("one")),
        _ => Ok(Expr::And(parts)),
    }
}

/// `(item,item,…)` of an `or`/`and` group.
pub fn parse_logical(negated: bool, kind: &str, value: &str) -> Result<Expr, FilterError> {
    let inner = value
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| FilterError::NotAGroup {
            kind: kind.into(),
            value: value.into(),
        })?;
    if inner.trim().is_empty() {
        return Err(FilterError::EmptyGroup { kind: kind.into() });
    }
    let items = split_top_level(inner)?
        .into_iter()
        .map(|item| parse_item(item.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    let group = if kind == "or" {
        Expr::Or(items)
    } else {
        Expr::And(items)
    };
    Ok(if negated {
        Expr::Not(Box::new(group))
    } else {
        group
    })
}

/// An item inside a group: `and(…)`, `not.or(…)` or `column.op.value`.
fn parse_item(item: &str) -> Result<Expr, FilterError> {
    for (prefix, negated, kind) in [
        ("and(", false, "and"),
        ("or(", false, "or"),
        ("not.and(", true, "and"),
        ("not.or(", true, "or"),
    ] {
        if let Some(rest) = item.strip_prefix(prefix) {
            return parse_logical(negated, kind, &format!("({rest}"));
        }
    }
    let (column, rest) = if let Some(quoted) = item.strip_prefix('"') {
        let end = closing_quote(quoted)
            .ok_or_else(|| FilterError::UnterminatedColumnIn { item: item.into() })?;
        let rest = quoted[end + 1..]
            .strip_prefix('.')
            .ok_or_else(|| FilterError::NoOperator { item: item.into() })?;
        (unquote_column(&item[..end + 2])?, rest)
    } else {
        let (column, rest) = item
            .split_once('.')
            .ok_or_else(|| FilterError::NotAGroupItem { item: item.into() })?;
        (column.to_owned(), rest)
    };
    parse_filter(&column, rest, true)
}

/// `[not.]op[(any|all)][(config)].value` for one column.
fn parse_filter(column: &str, text: &str, nested: bool) -> Result<Expr, FilterError> {
    if column.is_empty() {
        return Err(FilterError::NoColumnName);
    }
    if let Some(rest) = text.strip_prefix("not.") {
        return Ok(Expr::Not(Box::new(parse_filter(column, rest, nested)?)));
    }
    let (head, value) = text
        .split_once('.')
        .ok_or_else(|| FilterError::NotAnOperation {
            column: column.into(),
            text: text.into(),
        })?;
    let (name, argument) = match head.split_once('(') {
        Some((name, arg)) => (
            name,
            Some(
                arg.strip_suffix(')')
                    .ok_or_else(|| FilterError::UnclosedParenthesis { head: head.into() })?,
            ),
        ),
        None => (head, None),
    };
    let op =
        Op::from_name(name).ok_or_else(|| FilterError::UnknownOperator { name: name.into() })?;
    let quantifier = match (op, argument) {
        (_, None) => None,
        (op, Some(q)) if op.quantifiable() && (q == "any" || q == "all") => Some(if q == "any" {
            Quantifier::Any
        } else {
            Quantifier::All
        }),
        (Op::Fts | Op::Plfts | Op::Phfts | Op::Wfts, Some(_)) => None,
        (_, Some(arg)) => {
            return Err(FilterError::QuantifierNotAllowed {
                name: name.into(),
                argument: arg.into(),
            })
        }
    };
    let operand = match op {
        Op::Is => Operand::Is(match value.to_ascii_lowercase().as_str() {
            "null" => IsValue::Null,
            "true" => IsValue::True,
            "false" => IsValue::False,
            "unknown" => IsValue::Unknown,
            _ => {
                return Err(FilterError::NotAnIsValue {
                    value: value.into(),
                })
            }
        }),
        Op::In => Operand::List(parse_list(value, '(', ')')?),
        Op::Fts | Op::Plfts | Op::Phfts | Op::Wfts => Operand::Search {
            config: argument.map(str::to_owned),
            query: term(value, nested)?,
        },
        _ if quantifier.is_some() => Operand::List(parse_list(value, '{', '}')?),
        _ => Operand::Scalar(term(value, nested)?),
    };
    Ok(Expr::Filter(Filter {
        column: column.to_owned(),
        op,
        quantifier,
        operand,
    }))
}

/// `(a,"b,c",{auth.uid})` or `{a,b}` into terms.
fn parse_list(value: &str, open: char, close: char) -> Result<Vec<Term>, FilterError> {
    let inner = value
        .strip_prefix(open)
        .and_then(|v| v.strip_suffix(close))
        .ok_or_else(|| FilterError::NotAList {
            value: value.into(),
            open,
            close,
        })?;
    if inner.is_empty() {
        return Ok(Vec::new());
    }
    split_top_level(inner)?
        .into_iter()
        .map(|item| term(item.trim(), true))
        .collect()
}

/// A value: a variable `{auth.…}`, a quoted string (where quoting applies), or literal text.
fn term(value: &str, unquote: bool) -> Result<Term, FilterError> {
    if let Some(path) = value.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
        let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
        let plain = parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if parts.first().map(String::as_str) == Some("auth") && parts.len() >= 2 && plain {
            return Ok(Term::Variable(parts));
        }
    }
    if unquote {
        if let Some(quoted) = value.strip_prefix('"') {
            let body = quoted
                .strip_suffix('"')
                .ok_or_else(|| FilterError::UnterminatedQuote { text: value.into() })?;
            let mut out = String::new();
            let mut chars = body.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    out.push(chars.next().unwrap_or('\\'));
                } else {
                    out.push(c);
                }
            }
            return Ok(Term::Literal(out));
        }
    }
    Ok(Term::Literal(value.to_owned()))
}

/// Splits on commas that are outside quotes, parentheses and braces.
pub(crate) fn split_top_level(text: &str) -> Result<Vec<&str>, FilterError> {
    let mut parts = Vec::new();
    let items = |parts: &Vec<&str>| -> Result<(), FilterError> {
        if parts.len() >= MAX_LIST_ITEMS {
            return Err(FilterError::TooManyItems);
        }
        Ok(())
    };
    let mut depth = 0i32;
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (at, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' | '{' if !quoted => depth += 1,
            ')' | '}' if !quoted => {
                depth -= 1;
                if depth < 0 {
                    return Err(FilterError::Unbalanced {
                        bracket: c,
                        text: text.into(),
                    });
                }
            }
            ',' if !quoted && depth == 0 => {
                items(&parts)?;
                parts.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    if quoted || depth != 0 {
        return Err(FilterError::UnbalancedText { text: text.into() });
    }
    items(&parts)?;
    parts.push(&text[start..]);
    Ok(parts)
}

/// Where the quoted text (after its opening `"`) closes, skipping `\"`.
pub(crate) fn closing_quote(quoted: &str) -> Option<usize> {
    let mut escaped = false;
    for (at, c) in quoted.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(at),
            _ => {}
        }
    }
    None
}

pub(crate) fn unquote_column(column: &str) -> Result<String, FilterError> {
    match column.strip_prefix('"') {
        // Inside quotes, `\"` is a quote and `\\` a backslash.
        Some(rest) => rest
            .strip_suffix('"')
            .map(|inner| inner.replace("\\\"", "\"").replace("\\\\", "\\"))
            .ok_or_else(|| FilterError::UnterminatedColumn {
                column: column.into(),
            }),
        None => Ok(column.to_owned()),
    }
}
