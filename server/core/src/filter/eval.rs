//! Evaluating a filter on one row held in memory (a JSON object), for the
//! policy explainer and realtime's per-row authorization. Answers `None`
//! when the result is unknown: a comparison with NULL (as in SQL, and it
//! stays unknown under NOT), or an operator that needs the database
//! (ranges, full-text search). Callers treat anything but `Some(true)` as
//! "not allowed", as a SQL `WHERE` does.

use super::sql::Caller;
use super::{Expr, Filter, IsValue, Op, Operand, Quantifier, Term};
use serde_json::Value;

pub fn matches(expr: &Expr, row: &Value, caller: &Caller) -> Option<bool> {
    match expr {
        Expr::Filter(filter) => filter_matches(filter, row, caller),
        Expr::Not(inner) => matches(inner, row, caller).map(|b| !b),
        Expr::And(items) => {
            let mut all = Some(true);
            for item in items {
                match matches(item, row, caller) {
                    Some(false) => return Some(false),
                    None => all = None,
                    Some(true) => {}
                }
            }
            all
        }
        Expr::Or(items) => {
            let mut any = Some(false);
            for item in items {
                match matches(item, row, caller) {
                    Some(true) => return Some(true),
                    None => any = None,
                    Some(false) => {}
                }
            }
            any
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

fn scalar(op: Op, left: Option<&str>, right: Option<&str>) -> Option<bool> {
    // SQL semantics: a comparison with NULL is unknown (`None`), and stays
    // unknown under NOT; AND/OR combine unknowns as SQL does.
    let (Some(left), Some(right)) = (left, right) else {
        return None;
    };
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
}

fn filter_matches(filter: &Filter, row: &Value, caller: &Caller) -> Option<bool> {
    let cell = row.get(&filter.column)?;
    let left = text_of(cell);
    match &filter.operand {
        Operand::Is(IsValue::Null) => Some(cell.is_null()),
        Operand::Is(IsValue::True) => Some(cell == &Value::Bool(true)),
        Operand::Is(IsValue::False) => Some(cell == &Value::Bool(false)),
        Operand::Is(IsValue::Unknown) => Some(cell.is_null()),
        Operand::Scalar(term) if filter.op == Op::IsDistinct => {
            let right = term_text(term, caller)?;
            Some(match (&left, &right) {
                (None, None) => false,
                (Some(a), Some(b)) => !compare(a, b).is_eq(),
                _ => true,
            })
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
                .collect::<Option<Vec<bool>>>()?;
            Some(match filter.quantifier {
                Some(Quantifier::All) => results.iter().all(|b| *b),
                _ => results.iter().any(|b| *b),
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
            ("deleted_at=eq.x", None),
            ("deleted_at=not.eq.x", None),
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
            None,
            "no uid: owner = NULL is unknown, so the row is not allowed"
        );
    }
}
