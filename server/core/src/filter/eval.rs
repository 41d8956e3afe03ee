//! Evaluating a filter on one row held in memory (a JSON object), for the
//! policy explainer and realtime's per-row authorization, with SQL's
//! three-valued logic: a comparison with NULL is unknown and stays unknown
//! under NOT, and an unknown result does not allow the row (as in a SQL
//! `WHERE`). Answers `None` only when the expression cannot be judged in
//! memory (ranges, full-text search, a column absent from the row) and
//! might be true.

use super::sql::Caller;
use super::{Expr, Filter, IsValue, Op, Operand, Quantifier, Term};
use serde_json::Value;

/// SQL's three truth values, and "this needs the database".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    True,
    False,
    /// NULL: a comparison with NULL, as in SQL.
    Unknown,
    /// The operator (or a missing column) cannot be judged in memory.
    Undecidable,
}

impl Truth {
    fn of(value: Option<bool>) -> Truth {
        match value {
            Some(true) => Truth::True,
            Some(false) => Truth::False,
            None => Truth::Unknown,
        }
    }

    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            other => other,
        }
    }
}

/// Whether `row` satisfies `expr`: `Some(true)`, `Some(false)` (false or
/// unknown, as a SQL `WHERE` treats NULL), or `None` when it cannot be told
/// in memory (and could be true).
pub fn matches(expr: &Expr, row: &Value, caller: &Caller) -> Option<bool> {
    match truth(expr, row, caller) {
        Truth::True => Some(true),
        Truth::False | Truth::Unknown => Some(false),
        Truth::Undecidable => None,
    }
}

fn truth(expr: &Expr, row: &Value, caller: &Caller) -> Truth {
    match expr {
        Expr::Filter(filter) => match filter_matches(filter, row, caller) {
            Some(result) => Truth::of(result),
            None => Truth::Undecidable,
        },
        Expr::Not(inner) => truth(inner, row, caller).not(),
        Expr::And(items) => {
            let results: Vec<Truth> = items.iter().map(|i| truth(i, row, caller)).collect();
            if results.contains(&Truth::False) {
                Truth::False
            } else if results.iter().all(|t| *t == Truth::True) {
                Truth::True
            } else if results.contains(&Truth::Unknown) {
                // Unknown AND anything not false can never be true.
                Truth::Unknown
            } else {
                Truth::Undecidable
            }
        }
        Expr::Or(items) => {
            let results: Vec<Truth> = items.iter().map(|i| truth(i, row, caller)).collect();
            if results.contains(&Truth::True) {
                Truth::True
            } else if results.iter().all(|t| *t == Truth::False) {
                Truth::False
            } else if results.contains(&Truth::Undecidable) {
                Truth::Undecidable
            } else {
                Truth::Unknown
            }
        }
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

fn term_text(term: &Term, caller: &Caller) -> Option<Option<String>> {
    match term {
        Term::Literal(text) => Some(Some(text.clone())),
        Term::Variable(_) => super::sql::variable_value(term, caller).ok(),
    }
}

fn compare(left: &str, right: &str) -> std::cmp::Ordering {
    match (left.parse::<f64>(), right.parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
        _ => left.cmp(right),
    }
}

/// SQL LIKE: `%` any run, `_` one character (`*` already stands for `%`).
/// Iterative, backtracking only to the last `%`: at most O(text × pattern)
/// steps, whatever the pattern (no exponential blow-up on `%%%…`).
fn like(text: &str, pattern: &str, insensitive: bool) -> bool {
    let (text, pattern) = if insensitive {
        (text.to_lowercase(), pattern.to_lowercase())
    } else {
        (text.to_owned(), pattern.to_owned())
    };
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern
        .chars()
        .map(|c| if c == '*' { '%' } else { c })
        .collect();
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '_' || (p[pi] != '%' && p[pi] == t[ti])) {
            ti += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_p, star_t)) = star {
            pi = star_p + 1;
            ti = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '%')
}

/// Whether every comparison in `expr` can be decided on a row in memory
/// (realtime filters must be; policy conditions that cannot hide the row).
pub fn evaluable(expr: &Expr) -> Result<(), String> {
    match expr {
        Expr::Not(inner) => evaluable(inner),
        Expr::And(items) | Expr::Or(items) => items.iter().try_for_each(evaluable),
        Expr::Filter(filter) => match (&filter.operand, filter.op) {
            (Operand::Is(_), _) => Ok(()),
            (Operand::Search { .. }, _) => Err(format!(
                "`{}` (full-text search) cannot be evaluated on live changes",
                filter.op.name()
            )),
            (_, Op::Eq | Op::Neq | Op::Gt | Op::Gte | Op::Lt | Op::Lte | Op::Like | Op::Ilike | Op::In | Op::IsDistinct) => Ok(()),
            (_, op) => Err(format!(
                "`{}` cannot be evaluated on live changes; use eq, neq, gt, gte, lt, lte, like, ilike, in, is, isdistinct with not/or/and",
                op.name()
            )),
        },
    }
}

/// One comparison: `None` when the operator needs the database,
/// `Some(None)` when a side is NULL (unknown, as in SQL).
fn scalar(op: Op, left: Option<&str>, right: Option<&str>) -> Option<Option<bool>> {
    let decided = |left: &str, right: &str| -> Option<bool> {
        Some(match op {
            Op::Eq => compare(left, right).is_eq(),
            Op::Neq => !compare(left, right).is_eq(),
            Op::Gt => compare(left, right).is_gt(),
            Op::Gte => compare(left, right).is_ge(),
            Op::Lt => compare(left, right).is_lt(),
            Op::Lte => compare(left, right).is_le(),
            Op::Like => like(left, right, false),
            Op::Ilike => like(left, right, true),
            _ => return None,
        })
    };
    // Whether the operator can be judged at all, whatever the values.
    decided("", "")?;
    match (left, right) {
        (Some(left), Some(right)) => Some(decided(left, right)),
        _ => Some(None),
    }
}

/// One filter on the row: `None` when it cannot be judged in memory (an
/// operator that needs the database, a column absent from the row, a
/// variable the caller lacks), else SQL's true, false or unknown.
fn filter_matches(filter: &Filter, row: &Value, caller: &Caller) -> Option<Option<bool>> {
    let cell = row.get(&filter.column)?;
    let left = text_of(cell);
    match &filter.operand {
        Operand::Is(IsValue::Null) => Some(Some(cell.is_null())),
        Operand::Is(IsValue::True) => Some(Some(cell == &Value::Bool(true))),
        Operand::Is(IsValue::False) => Some(Some(cell == &Value::Bool(false))),
        Operand::Is(IsValue::Unknown) => Some(Some(cell.is_null())),
        Operand::Scalar(term) if filter.op == Op::IsDistinct => {
            let right = term_text(term, caller)?;
            Some(Some(match (&left, &right) {
                (None, None) => false,
                (Some(a), Some(b)) => !compare(a, b).is_eq(),
                _ => true,
            }))
        }
        Operand::Scalar(term) => scalar(
            filter.op,
            left.as_deref(),
            term_text(term, caller)?.as_deref(),
        ),
        Operand::List(items) => {
            let values = items
                .iter()
                .map(|t| term_text(t, caller))
                .collect::<Option<Vec<_>>>()?;
            let op = if filter.op == Op::In {
                Op::Eq
            } else {
                filter.op
            };
            let results = values
                .iter()
                .map(|right| scalar(op, left.as_deref(), right.as_deref()))
                .collect::<Option<Vec<Option<bool>>>>()?;
            // ANY is an OR over the list, ALL an AND, with SQL's NULLs.
            Some(match filter.quantifier {
                Some(Quantifier::All) => {
                    if results.contains(&Some(false)) {
                        Some(false)
                    } else if results.iter().all(|r| *r == Some(true)) {
                        Some(true)
                    } else {
                        None
                    }
                }
                _ => {
                    if results.contains(&Some(true)) {
                        Some(true)
                    } else if results.iter().all(|r| *r == Some(false)) {
                        Some(false)
                    } else {
                        None
                    }
                }
            })
        }
        Operand::Search { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::parse_condition;
    use serde_json::json;

    #[test]
    fn rows_are_judged_like_sql_would() {
        let claims = json!({"org": 7});
        let caller = Caller {
            uid: Some("u1"),
            role: "authenticated",
            claims: &claims,
        };
        let row = json!({"owner": "u1", "public": false, "org_id": 7, "title": "Hello World", "deleted_at": null, "n": 10});
        let cases = [
            ("owner=eq.{auth.uid}", Some(true)),
            ("owner=neq.{auth.uid}", Some(false)),
            ("or=(public.is.true,owner.eq.{auth.uid})", Some(true)),
            ("org_id=eq.{auth.claims.org}&deleted_at=is.null", Some(true)),
            ("n=gt.9", Some(true)),
            ("n=lt.9.5", Some(false)),
            ("title=ilike.*world", Some(true)),
            ("title=like.*world", Some(false)),
            ("n=in.(1,10)", Some(true)),
            ("n=gt(all).{1,11}", Some(false)),
            ("deleted_at=eq.x", Some(false)),
            ("deleted_at=not.eq.x", Some(false)),
            ("or=(deleted_at.eq.x,title.fts.hello)", None),
            ("and=(deleted_at.eq.x,title.fts.hello)", Some(false)),
            ("deleted_at=in.(x,y)", Some(false)),
            ("or=(deleted_at.eq.x,n.eq.10)", Some(true)),
            ("and=(deleted_at.eq.x,n.eq.3)", Some(false)),
            ("title=fts.hello", None),
            ("missing=eq.1", None),
            ("not.or=(public.is.true,n.eq.3)", Some(true)),
            ("title=like.H_llo*", Some(true)),
            (
                "title=like.%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%x",
                Some(false),
            ),
        ];
        for (condition, expected) in cases {
            let expr = parse_condition(condition).unwrap();
            assert_eq!(matches(&expr, &row, &caller), expected, "{condition}");
        }
        let anon = Caller {
            uid: None,
            role: "anon",
            claims: &Value::Null,
        };
        assert_eq!(
            matches(
                &parse_condition("owner=eq.{auth.uid}").unwrap(),
                &row,
                &anon
            ),
            Some(false),
            "no uid: owner = NULL is unknown, so the row is not allowed"
        );
    }
}
