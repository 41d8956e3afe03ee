//! SQL for a filter [`Expr`]: every value is a bound parameter (sent as text
//! and cast to the column's type on the server side, so indexes still apply);
//! every identifier comes from the caller's [`Columns`] resolver.

use super::{Expr, Filter, FilterError, IsValue, Op, Operand, Quantifier, Term};
use serde_json::Value;

/// A column as the schema cache knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Quoted (and possibly qualified) identifier, e.g. `"posts"."owner_id"`.
    pub sql: String,
    /// PostgreSQL's name of its type, e.g. `uuid`, `text[]`, `timestamp with time zone`.
    pub type_name: String,
}

/// Resolves column names; unknown names are the caller's error to word.
pub trait Columns {
    fn resolve(&self, name: &str, params: &mut Vec<Param>) -> Result<Column, FilterError>;
}

/// The caller whose variables (`{auth.uid}`, …) fill a policy condition.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub uid: Option<&'a str>,
    pub role: &'a str,
    pub claims: &'a Value,
}

/// A bound parameter: text, or an array of text for lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(Option<String>),
    TextArray(Vec<Option<String>>),
}

/// Appends the parameters `expr` needs to `params` (numbering continues from
/// its length) and returns the SQL condition.
pub fn to_sql(
    expr: &Expr,
    columns: &dyn Columns,
    caller: &Caller,
    params: &mut Vec<Param>,
) -> Result<String, FilterError> {
    Ok(match expr {
        Expr::Filter(filter) => filter_sql(filter, columns, caller, params)?,
        Expr::Not(inner) => format!("NOT ({})", to_sql(inner, columns, caller, params)?),
        Expr::And(items) | Expr::Or(items) => {
            let joiner = if matches!(expr, Expr::And(_)) {
                " AND "
            } else {
                " OR "
            };
            let parts = items
                .iter()
                .map(|item| to_sql(item, columns, caller, params).map(|sql| format!("({sql})")))
                .collect::<Result<Vec<_>, _>>()?;
            parts.join(joiner)
        }
    })
}

/// The variables an expression uses, e.g. to know whether it needs a signed-in user.
pub fn variables(expr: &Expr) -> Vec<Vec<String>> {
    fn terms(operand: &Operand) -> Vec<&Term> {
        match operand {
            Operand::Scalar(term) | Operand::Search { query: term, .. } => vec![term],
            Operand::List(items) => items.iter().collect(),
            Operand::Is(_) => Vec::new(),
        }
    }
    match expr {
        Expr::Filter(filter) => terms(&filter.operand)
            .into_iter()
            .filter_map(|term| match term {
                Term::Variable(path) => Some(path.clone()),
                Term::Literal(_) => None,
            })
            .collect(),
        Expr::Not(inner) => variables(inner),
        Expr::And(items) | Expr::Or(items) => items.iter().flat_map(variables).collect(),
    }
}

/// Refuses literals that look like a misspelled variable (`{user.id}`): in a
/// policy they would silently compare with that text.
pub fn check_literals(expr: &Expr) -> Result<(), FilterError> {
    fn suspicious(term: &Term) -> Option<&str> {
        let Term::Literal(text) = term else {
            return None;
        };
        let inner = text.strip_prefix('{')?.strip_suffix('}')?;
        let looks_like = !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        looks_like.then_some(text.as_str())
    }
    let found = match expr {
        Expr::Filter(filter) => match &filter.operand {
            Operand::Scalar(term) | Operand::Search { query: term, .. } => {
                suspicious(term).map(str::to_owned)
            }
            Operand::List(items) => items.iter().find_map(|t| suspicious(t).map(str::to_owned)),
            Operand::Is(_) => None,
        },
        Expr::Not(inner) => return check_literals(inner),
        Expr::And(items) | Expr::Or(items) => return items.iter().try_for_each(check_literals),
    };
    match found {
        Some(text) => Err(FilterError::NotAVariable { text }),
        None => Ok(()),
    }
}

/// Refuses variables that no caller could fill (checked when a policy is saved).
pub fn check_variables(expr: &Expr) -> Result<(), FilterError> {
    let nobody = Caller {
        uid: None,
        role: "anon",
        claims: &Value::Null,
    };
    for path in variables(expr) {
        value_of(&Term::Variable(path), &nobody)?;
    }
    Ok(())
}

/// The value a variable term takes for `caller` (`None`: SQL NULL).
pub fn variable_value(term: &Term, caller: &Caller) -> Result<Option<String>, FilterError> {
    value_of(term, caller)
}

fn value_of(term: &Term, caller: &Caller) -> Result<Option<String>, FilterError> {
    let Term::Variable(path) = term else {
        let Term::Literal(text) = term else {
            unreachable!()
        };
        return Ok(Some(text.clone()));
    };
    let unknown = || FilterError::NotAVariable {
        text: format!("{{{}}}", path.join(".")),
    };
    match path
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["auth", "uid"] => Ok(caller.uid.map(str::to_owned)),
        ["auth", "role"] => Ok(Some(caller.role.to_owned())),
        ["auth", "claims", rest @ ..] if !rest.is_empty() => {
            let mut value = caller.claims;
            for key in rest {
                match value.get(*key) {
                    Some(inner) => value = inner,
                    None => return Ok(None),
                }
            }
            Ok(match value {
                Value::Null => None,
                Value::String(text) => Some(text.clone()),
                other => Some(other.to_string()),
            })
        }
        _ => Err(unknown()),
    }
}

fn placeholder(params: &mut Vec<Param>, param: Param) -> String {
    params.push(param);
    format!("${}", params.len())
}

/// Type names come from the catalog; refuse anything that does not look like one.
fn checked_type(column: &Column) -> Result<&str, FilterError> {
    let name = column.type_name.as_str();
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _[](),.\"".contains(c));
    if ok {
        Ok(name)
    } else {
        Err(FilterError::UnfilterableType {
            type_name: name.into(),
        })
    }
}

fn filter_sql(
    filter: &Filter,
    columns: &dyn Columns,
    caller: &Caller,
    params: &mut Vec<Param>,
) -> Result<String, FilterError> {
    let column = columns.resolve(&filter.column, params)?;
    let col = column.sql.as_str();
    let ty = checked_type(&column)?;
    Ok(match (&filter.operand, filter.op) {
        (Operand::Is(value), _) => format!(
            "{col} IS {}",
            match value {
                IsValue::Null => "NULL",
                IsValue::True => "TRUE",
                IsValue::False => "FALSE",
                IsValue::Unknown => "UNKNOWN",
            }
        ),
        (Operand::List(items), op) => {
            let values = items
                .iter()
                .map(|term| value_of(term, caller))
                .collect::<Result<Vec<_>, _>>()?;
            let textual = matches!(op, Op::Like | Op::Ilike | Op::Match | Op::Imatch);
            let values = if matches!(op, Op::Like | Op::Ilike) {
                values
                    .into_iter()
                    .map(|v| v.map(|t| t.replace('*', "%")))
                    .collect()
            } else {
                values
            };
            let array = placeholder(params, Param::TextArray(values));
            let quantifier = match filter.quantifier {
                Some(Quantifier::All) => "ALL",
                _ => "ANY",
            };
            if textual {
                format!(
                    "{col}::text {} {quantifier}({array}::text[])",
                    comparison(op)?
                )
            } else {
                let op_sql = if op == Op::In { "=" } else { comparison(op)? };
                format!("{col} {op_sql} {quantifier}({array}::text[]::{ty}[])")
            }
        }
        (Operand::Search { config, query }, op) => {
            let function = match op {
                Op::Fts => "to_tsquery",
                Op::Plfts => "plainto_tsquery",
                Op::Phfts => "phraseto_tsquery",
                _ => "websearch_to_tsquery",
            };
            let config = match config {
                Some(name) => format!(
                    "{}::text::regconfig, ",
                    placeholder(params, Param::Text(Some(name.clone())))
                ),
                None => String::new(),
            };
            let query = placeholder(params, Param::Text(value_of(query, caller)?));
            let document = if ty == "tsvector" {
                col.to_owned()
            } else {
                format!("to_tsvector({config}{col}::text)")
            };
            format!("{document} @@ {function}({config}{query}::text)")
        }
        (Operand::Scalar(term), op) => {
            let value = value_of(term, caller)?;
            match op {
                Op::Like | Op::Ilike | Op::Match | Op::Imatch => {
                    let value = if matches!(op, Op::Like | Op::Ilike) {
                        value.map(|t| t.replace('*', "%"))
                    } else {
                        value
                    };
                    let p = placeholder(params, Param::Text(value));
                    format!("{col}::text {} {p}::text", comparison(op)?)
                }
                Op::IsDistinct => {
                    let p = placeholder(params, Param::Text(value));
                    format!("{col} IS DISTINCT FROM {p}::text::{ty}")
                }
                _ => {
                    let p = placeholder(params, Param::Text(value));
                    format!("{col} {} {p}::text::{ty}", comparison(op)?)
                }
            }
        }
    })
}

fn comparison(op: Op) -> Result<&'static str, FilterError> {
    Ok(match op {
        Op::Eq => "=",
        Op::Neq => "<>",
        Op::Gt => ">",
        Op::Gte => ">=",
        Op::Lt => "<",
        Op::Lte => "<=",
        Op::Like => "LIKE",
        Op::Ilike => "ILIKE",
        Op::Match => "~",
        Op::Imatch => "~*",
        Op::Cs => "@>",
        Op::Cd => "<@",
        Op::Ov => "&&",
        Op::Sl => "<<",
        Op::Sr => ">>",
        // PostgREST's names: "not extending to the left / right of".
        Op::Nxl => "&>",
        Op::Nxr => "&<",
        Op::Adj => "-|-",
        Op::In | Op::Is | Op::IsDistinct | Op::Fts | Op::Plfts | Op::Phfts | Op::Wfts => {
            return Err(FilterError::WrongValueKind)
        }
    })
}
