//! The Meilisearch backend's pure parts: document ids from keys, documents
//! from rows, index settings from a declaration, and the data API's
//! filters (the caller's and their policies' row conditions) as Meilisearch
//! filter expressions with SQL's meaning.

use super::{IndexDef, SearchError, MAX_TOTAL_HITS};
use crate::filter::sql::{variable_value, Caller};
use crate::filter::{Expr, Filter, IsValue, Op, Operand, Quantifier, Term};
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// The document attribute holding the encoded key (Meilisearch's primary key).
pub const ID: &str = "_id";

/// Meilisearch's longest document id.
const MAX_ID_BYTES: usize = 511;

/// A document id from the key's values: `k` + base64url (no padding) of the
/// JSON array of the values, so composite keys and any characters give a
/// valid id (`[A-Za-z0-9_-]`), and distinct keys distinct ids.
pub fn document_id(key: &[Value]) -> Result<String, String> {
    let text = serde_json::to_string(key).expect("values serialize");
    let id = format!(
        "k{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&text)
    );
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "the key {text} makes an id longer than Meilisearch's {MAX_ID_BYTES} bytes"
        ));
    }
    Ok(id)
}

/// The key's values as written in the id (the reverse of [`document_id`]).
pub fn key_of_id(id: &str) -> Option<Vec<Value>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id.strip_prefix('k')?)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A row (a JSON object of every column) as a document: the row and its id.
pub fn document(row: &Map<String, Value>, key: &[String]) -> Result<Value, String> {
    let values: Vec<Value> = key
        .iter()
        .map(|k| row.get(k).cloned().unwrap_or(Value::Null))
        .collect();
    let mut document = row.clone();
    document.insert(ID.into(), Value::String(document_id(&values)?));
    Ok(Value::Object(document))
}

/// The index settings a declaration asks for; `condition_columns` are the
/// columns policies' conditions use, made filterable so that every search
/// can be narrowed to the caller's rows.
pub fn settings(def: &IndexDef, condition_columns: &[String]) -> Value {
    let mut filterable: Vec<String> = vec![ID.to_owned()];
    for column in def
        .filterable
        .iter()
        .chain(&def.facets)
        .chain(condition_columns)
    {
        if !filterable.contains(column) {
            filterable.push(column.clone());
        }
    }
    let mut settings = json!({
        "searchableAttributes": def.searchable,
        "filterableAttributes": filterable,
        "sortableAttributes": def.sortable,
        "typoTolerance": {"enabled": def.typo_tolerance},
        "pagination": {"maxTotalHits": MAX_TOTAL_HITS},
        "faceting": {"maxValuesPerFacet": super::MAX_FACET_VALUES},
    });
    if !def.ranking_rules.is_empty() {
        settings["rankingRules"] = json!(def.ranking_rules);
    }
    settings
}

/// `expr` as a Meilisearch filter that holds exactly where SQL's `expr` is
/// true (null fields and variables counted as SQL counts them). Operators
/// Meilisearch has no equal for are refused, never dropped.
pub fn filter(expr: &Expr, caller: &Caller) -> Result<String, SearchError> {
    truth(expr, true, caller)
}

/// A filter nothing matches (every document has an id).
const NOTHING: &str = "_id IS NULL";

fn unsupported(what: String) -> SearchError {
    SearchError::Unsupported {
        what,
        backend: "meilisearch".into(),
    }
}

/// Where `expr` is true (`holds`) or false (not `holds`); unknown is neither.
fn truth(expr: &Expr, holds: bool, caller: &Caller) -> Result<String, SearchError> {
    match expr {
        Expr::Not(inner) => truth(inner, !holds, caller),
        Expr::And(items) | Expr::Or(items) => {
            let all = matches!(expr, Expr::And(_)) == holds;
            let parts = items
                .iter()
                .map(|item| truth(item, holds, caller).map(|f| format!("({f})")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(parts.join(if all { " AND " } else { " OR " }))
        }
        Expr::Filter(filter) => atom(filter, holds, caller),
    }
}

fn attribute(name: &str) -> Result<String, SearchError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(unsupported(format!("the column reference `{name}`")));
    }
    Ok(name.to_owned())
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn value(term: &Term, caller: &Caller) -> Result<Option<String>, SearchError> {
    Ok(variable_value(term, caller)?)
}

fn atom(filter: &Filter, holds: bool, caller: &Caller) -> Result<String, SearchError> {
    let column = attribute(&filter.column)?;
    let not_null = format!("{column} IS NOT NULL");
    // Where the comparison `test` is true, or false (which needs a value).
    let compare = |test: String| -> String {
        if holds {
            test
        } else {
            format!("{not_null} AND NOT ({test})")
        }
    };
    match (&filter.op, &filter.operand, filter.quantifier) {
        (Op::Is, Operand::Is(is), _) => {
            let test = match is {
                IsValue::Null | IsValue::Unknown => format!("{column} IS NULL"),
                IsValue::True => format!("{column} = true"),
                IsValue::False => format!("{column} = false"),
            };
            Ok(match (is, holds) {
                (IsValue::Null | IsValue::Unknown, false) => not_null,
                (_, true) => test,
                (_, false) => format!("NOT ({test})"),
            })
        }
        (Op::In, Operand::List(items), None) => {
            let mut values = Vec::new();
            for item in items {
                // `x IN (…, NULL)` is never false: only true where a value matches.
                match value(item, caller)? {
                    Some(text) => values.push(quoted(&text)),
                    None if !holds => return Ok(NOTHING.into()),
                    None => {}
                }
            }
            if values.is_empty() {
                return Ok(if holds { NOTHING.into() } else { not_null });
            }
            Ok(compare(format!("{column} IN [{}]", values.join(", "))))
        }
        (op, Operand::List(items), Some(quantifier)) => {
            let each = items
                .iter()
                .map(|item| {
                    atom(
                        &Filter {
                            column: filter.column.clone(),
                            op: *op,
                            quantifier: None,
                            operand: Operand::Scalar(item.clone()),
                        },
                        true,
                        caller,
                    )
                    .map(|f| format!("({f})"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let joined = each.join(if quantifier == Quantifier::Any {
                " OR "
            } else {
                " AND "
            });
            if each.is_empty() {
                return Ok(NOTHING.into());
            }
            Ok(if holds {
                joined
            } else {
                format!("{not_null} AND NOT ({joined})")
            })
        }
        (Op::Eq | Op::Neq | Op::Gt | Op::Gte | Op::Lt | Op::Lte, Operand::Scalar(term), None) => {
            let Some(text) = value(term, caller)? else {
                // A comparison with NULL is unknown: neither true nor false.
                return Ok(NOTHING.into());
            };
            let symbol = match filter.op {
                Op::Eq => "=",
                Op::Neq => "!=",
                Op::Gt => ">",
                Op::Gte => ">=",
                Op::Lt => "<",
                _ => "<=",
            };
            let operand = if matches!(filter.op, Op::Eq | Op::Neq) {
                quoted(&text)
            } else if text.parse::<f64>().is_ok_and(f64::is_finite) {
                text
            } else {
                return Err(unsupported(format!(
                    "`{}` on a value that is not a number (`{text}`)",
                    filter.op.name()
                )));
            };
            let test = format!("{column} {symbol} {operand}");
            // `!=` in Meilisearch also matches a null field; SQL's does not.
            let test = if filter.op == Op::Neq {
                format!("{not_null} AND {test}")
            } else {
                test
            };
            Ok(compare(test))
        }
        (op, _, _) => Err(unsupported(format!("the operator `{}`", op.name()))),
    }
}
