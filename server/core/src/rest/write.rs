//! SQL for writes. Values travel as one JSON parameter and become typed rows
//! through `json_populate_record(set)` of the table's own row type; every
//! statement returns the written rows as JSON and how many of them break the
//! policy's row condition, so the caller can refuse (and roll back) a write
//! that would leave rows the user could not read back.

use super::error::WriteError;
use super::plan::{quote, where_clause, Scope, Table};
use super::query::ReadQuery;
use crate::filter::sql::{to_sql, Caller, Param};
use crate::filter::Expr;

/// `SELECT rows_as_json, count_violating, count, count_inserted FROM
/// written`. `violates` is a condition over a written row that breaks the
/// policy, if any; only rows matching `shown` (the caller's select
/// condition) are in the JSON; `inserting` counts the rows an insert (or an
/// upsert) created rather than merged.
fn returning(
    table: &Table,
    inserting: bool,
    violates: Option<String>,
    shown: Option<&Expr>,
    caller: &Caller,
    params: &mut Vec<Param>,
) -> Result<String, WriteError> {
    let columns = table
        .columns
        .iter()
        .map(|(name, _)| quote(name))
        .collect::<Vec<_>>()
        .join(", ");
    let violating = match violates {
        Some(violates) => format!("count(*) FILTER (WHERE {violates})"),
        None => "0::bigint".to_owned(),
    };
    let shown = match shown {
        Some(condition) => format!(
            " WHERE coalesce(({}), false)",
            to_sql(condition, &Scope { table, alias: None }, caller, params)?
        ),
        None => String::new(),
    };
    let inserted = if inserting {
        "count(*) FILTER (WHERE \"basalt inserted\")"
    } else {
        "0::bigint"
    };
    Ok(format!(
        "SELECT (SELECT coalesce(json_agg(r), '[]'::json) FROM (SELECT {columns} FROM written{shown}) r)::text, {violating}, count(*), {inserted} FROM written"
    ))
}

/// `NOT coalesce((condition), false)` over a written row.
fn breaks(
    table: &Table,
    condition: Option<&Expr>,
    caller: &Caller,
    params: &mut Vec<Param>,
) -> Result<Option<String>, WriteError> {
    condition
        .map(|condition| {
            to_sql(condition, &Scope { table, alias: None }, caller, params)
                .map(|sql| format!("NOT coalesce(({sql}), false)"))
        })
        .transpose()
        .map_err(WriteError::from)
}

/// The quoted names of `columns`, each checked against the table (no JSON paths).
fn checked_columns(table: &Table, columns: &[String]) -> Result<Vec<String>, WriteError> {
    use crate::filter::sql::Columns;
    let scope = Scope { table, alias: None };
    columns
        .iter()
        .map(|name| {
            if name.contains("->") {
                return Err(WriteError::NotWritable {
                    column: name.clone(),
                });
            }
            Ok(scope.resolve(name, &mut Vec::new())?.sql)
        })
        .collect()
}

/// What to do when an inserted row collides with an existing one.
#[derive(Debug, Clone, PartialEq)]
pub enum Conflict {
    /// Fail with a unique violation (a plain insert).
    Fail,
    /// `resolution=merge-duplicates`: update the existing row with the new
    /// values, where the caller's update condition allows.
    Merge {
        target: Vec<String>,
        condition: Option<Expr>,
    },
    /// `resolution=ignore-duplicates`: keep the existing row.
    Ignore { target: Vec<String> },
}

/// How an insert reads its body.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertOptions {
    pub conflict: Conflict,
    /// `missing=default`: a key absent from an object takes the column's
    /// default rather than NULL.
    pub missing_default: bool,
}

/// Inserts `rows` (a JSON array of objects) into the given `columns`; columns
/// not listed take their defaults. Written rows must satisfy `condition` (the
/// insert policy's) or, when they were merged into an existing row, the
/// update policy's.
pub fn insert_sql(
    table: &Table,
    rows_json: String,
    columns: &[String],
    condition: Option<&Expr>,
    caller: &Caller,
    options: &InsertOptions,
    shown: Option<&Expr>,
) -> Result<(String, Vec<Param>), WriteError> {
    let mut params = vec![Param::Text(Some(rows_json))];
    if columns.is_empty() {
        return Err(WriteError::NoColumns);
    }
    let quoted = checked_columns(table, columns)?;
    let list = quoted.join(", ");
    let source = if options.missing_default {
        // Each object's own keys decide: present → its value (even null),
        // absent → the column's default as the catalog defines it.
        let values = columns
            .iter()
            .zip(&quoted)
            .map(|(name, column)| {
                params.push(Param::Text(Some(name.clone())));
                let default = table
                    .defaults
                    .get(name)
                    .map(String::as_str)
                    .unwrap_or("NULL");
                format!(
                    "CASE WHEN (j.value::jsonb) ? ${}::text THEN (p).{column} ELSE {default} END AS {column}",
                    params.len()
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {values} FROM json_array_elements($1::text::json) AS j CROSS JOIN LATERAL (SELECT json_populate_record(NULL::{}, j.value) AS p) AS populated",
            table.qualified()
        )
    } else {
        format!(
            "SELECT {list} FROM json_populate_recordset(NULL::{}, $1::text::json)",
            table.qualified()
        )
    };
    let source = checked_source(
        table,
        source,
        &quoted,
        columns,
        condition,
        options,
        caller,
        &mut params,
    )?;
    let scope = Scope {
        table,
        alias: Some("t0"),
    };
    let (on_conflict, merged) = match &options.conflict {
        Conflict::Fail => (String::new(), None),
        Conflict::Ignore { target } => (
            format!(
                " ON CONFLICT ({}) DO NOTHING",
                checked_columns(table, target)?.join(", ")
            ),
            None,
        ),
        Conflict::Merge { target, condition } => {
            let set = quoted
                .iter()
                .map(|column| format!("{column} = EXCLUDED.{column}"))
                .collect::<Vec<_>>()
                .join(", ");
            let only = match condition {
                Some(condition) => {
                    format!(" WHERE {}", to_sql(condition, &scope, caller, &mut params)?)
                }
                None => String::new(),
            };
            (
                format!(
                    " ON CONFLICT ({}) DO UPDATE SET {set}{only}",
                    checked_columns(table, target)?.join(", ")
                ),
                Some(condition),
            )
        }
    };
    let insert = format!(
        "INSERT INTO {} AS \"t0\" ({list}) {source}{on_conflict} RETURNING \"t0\".*, (xmax = 0) AS \"basalt inserted\"",
        table.qualified()
    );
    let violates = match merged {
        // An inserted row answers to the insert condition, a merged one to
        // the update condition.
        Some(update) => {
            let inserted = breaks(table, condition, caller, &mut params)?;
            let updated = breaks(table, update.as_ref(), caller, &mut params)?;
            match (inserted, updated) {
                (None, None) => None,
                (i, u) => Some(format!(
                    "CASE WHEN \"basalt inserted\" THEN {} ELSE {} END",
                    i.unwrap_or_else(|| "false".into()),
                    u.unwrap_or_else(|| "false".into())
                )),
            }
        }
        None => breaks(table, condition, caller, &mut params)?,
    };
    Ok((
        format!(
            "WITH written AS ({insert}) {}",
            returning(table, true, violates, shown, caller, &mut params)?
        ),
        params,
    ))
}

/// The rows to insert, each checked against the policy's condition before it
/// is inserted: a row that breaks it raises `BA001` (`auth.check_policy`)
/// before a unique index could answer that another, hidden row holds the
/// same values. Columns the condition reads that the body does not give
/// take their default, as the insert will. (The written rows are checked
/// again after the insert, for what triggers change.) An upsert's row may
/// instead merge into an existing row the caller may update: it passes when
/// such a row exists.
#[allow(clippy::too_many_arguments)]
fn checked_source(
    table: &Table,
    source: String,
    quoted: &[String],
    columns: &[String],
    condition: Option<&Expr>,
    options: &InsertOptions,
    caller: &Caller,
    params: &mut Vec<Param>,
) -> Result<String, WriteError> {
    let Some(check) = condition else {
        return Ok(source);
    };
    let mut read = Vec::new();
    crate::rest::query::collect_columns(check, &mut read);
    read.sort();
    read.dedup();
    let mut defaults = String::new();
    for name in read.iter().filter(|name| !columns.contains(name)) {
        let Some((_, type_name)) = table.columns.iter().find(|(column, _)| column == name) else {
            continue;
        };
        let value = match table.defaults.get(name) {
            Some(default) => format!("({default})::{type_name}"),
            None => format!("NULL::{type_name}"),
        };
        defaults.push_str(&format!(", {value} AS {}", quote(name)));
    }
    let new = Scope {
        table,
        alias: Some("new"),
    };
    let mut allowed = format!(
        "coalesce(({}), false)",
        to_sql(check, &new, caller, params)?
    );
    if let Conflict::Merge { target, condition } = &options.conflict {
        let mut matches: Vec<String> = checked_columns(table, target)?
            .iter()
            .map(|column| format!("\"old\".{column} = \"new\".{column}"))
            .collect();
        if let Some(update) = condition {
            let old = Scope {
                table,
                alias: Some("old"),
            };
            matches.push(format!("({})", to_sql(update, &old, caller, params)?));
        }
        allowed = format!(
            "{allowed} OR EXISTS (SELECT 1 FROM {} AS \"old\" WHERE {})",
            table.qualified(),
            matches.join(" AND ")
        );
    }
    let list = quoted
        .iter()
        .map(|column| format!("\"new\".{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!(
        "SELECT {list} FROM (SELECT s.*{defaults} FROM ({source}) AS s) AS \"new\" WHERE auth.check_policy({allowed})"
    ))
}

/// Sets the columns of `patch` (a JSON object) on the rows that match the
/// filters and the policy condition.
pub fn update_sql(
    table: &Table,
    patch_json: String,
    columns: &[String],
    query: &ReadQuery,
    condition: Option<&Expr>,
    caller: &Caller,
    shown: Option<&Expr>,
) -> Result<(String, Vec<Param>), WriteError> {
    let mut params = vec![Param::Text(Some(patch_json))];
    let assignments = checked_columns(table, columns)?
        .iter()
        .map(|column| {
            format!(
                "{column} = (SELECT {column} FROM json_populate_record(NULL::{}, $1::text::json))",
                table.qualified()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let filter = where_clause(table, query, condition, caller, &mut params)?;
    let update = format!(
        "UPDATE {} SET {assignments}{filter} RETURNING *",
        table.qualified()
    );
    let violates = breaks(table, condition, caller, &mut params)?;
    Ok((
        format!(
            "WITH written AS ({update}) {}",
            returning(table, false, violates, shown, caller, &mut params)?
        ),
        params,
    ))
}

/// Deletes the rows that match the filters and the policy condition.
pub fn delete_sql(
    table: &Table,
    query: &ReadQuery,
    condition: Option<&Expr>,
    caller: &Caller,
    shown: Option<&Expr>,
) -> Result<(String, Vec<Param>), WriteError> {
    let mut params = Vec::new();
    let filter = where_clause(table, query, condition, caller, &mut params)?;
    let delete = format!("DELETE FROM {}{filter} RETURNING *", table.qualified());
    Ok((
        format!(
            "WITH written AS ({delete}) {}",
            returning(table, false, None, shown, caller, &mut params)?
        ),
        params,
    ))
}

/// The column names of a JSON body: one object, or an array of objects (the
/// union of their keys, sorted).
pub fn body_columns(body: &serde_json::Value) -> Result<Vec<String>, WriteError> {
    let objects: Vec<&serde_json::Map<String, serde_json::Value>> = match body {
        serde_json::Value::Object(map) => vec![map],
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| item.as_object().ok_or(WriteError::NotAnObject))
            .collect::<Result<_, _>>()?,
        _ => return Err(WriteError::NotObjects),
    };
    let mut columns: Vec<String> = objects.iter().flat_map(|map| map.keys().cloned()).collect();
    columns.sort();
    columns.dedup();
    Ok(columns)
}

/// Checks each value of `objects` against its column's type before the
/// database sees it, so a mistake is a 400 naming the column (and row) rather
/// than PostgreSQL's bare cast error. Types not listed here are left to
/// PostgreSQL; `null` is always accepted here (NOT NULL is the database's).
pub fn check_values(table: &Table, objects: &[serde_json::Value]) -> Result<(), WriteError> {
    use serde_json::Value;
    for (index, object) in objects.iter().enumerate() {
        let Some(map) = object.as_object() else {
            continue;
        };
        for (column, value) in map {
            let Some((_, type_name)) = table.columns.iter().find(|(name, _)| name == column) else {
                continue;
            };
            let ok = match (type_name.as_str(), value) {
                (_, Value::Null) => true,
                ("json" | "jsonb", _) => true,
                (t, Value::Array(_)) => t.ends_with("[]"),
                (t, Value::String(_)) if t.ends_with("[]") => true,
                (_, Value::Object(_)) => false,
                ("smallint" | "integer" | "bigint", Value::Number(n)) => n.is_i64() || n.is_u64(),
                ("smallint" | "integer" | "bigint", Value::String(s)) => {
                    s.trim().parse::<i64>().is_ok()
                }
                ("numeric" | "real" | "double precision", Value::Number(_)) => true,
                ("numeric" | "real" | "double precision", Value::String(s)) => {
                    s.trim().parse::<f64>().is_ok()
                        || ["NaN", "Infinity", "-Infinity"].contains(&s.trim())
                }
                ("boolean", Value::Bool(_)) => true,
                ("boolean", Value::String(s)) => [
                    "true", "false", "t", "f", "yes", "no", "on", "off", "1", "0",
                ]
                .contains(&s.trim().to_ascii_lowercase().as_str()),
                ("boolean", _) => false,
                ("uuid", Value::String(s)) => {
                    let hex: String = s.chars().filter(|c| *c != '-').collect();
                    hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
                }
                ("uuid", _) => false,
                (
                    "smallint" | "integer" | "bigint" | "numeric" | "real" | "double precision",
                    _,
                ) => false,
                _ => true,
            };
            if !ok {
                let at = if objects.len() > 1 {
                    format!(" (row {index})")
                } else {
                    String::new()
                };
                return Err(WriteError::WrongType {
                    column: column.clone(),
                    type_name: type_name.clone(),
                    value: value.to_string(),
                    at,
                });
            }
        }
    }
    Ok(())
}

/// A `PUT`: its filters must be `column=eq.value` on exactly the primary
/// key, and its body one object holding every column, the key equal to the
/// filters. Answers the columns to write (sorted) and the row.
pub fn put_row(
    table: &Table,
    query: &ReadQuery,
    body: serde_json::Value,
) -> Result<(Vec<String>, serde_json::Value), WriteError> {
    use crate::filter::{Op, Operand, Term};
    use serde_json::Value;
    let wrong = || WriteError::PutFilters {
        table: table.name.clone(),
        key: table.primary_key.clone(),
    };
    let mut keys = Vec::new();
    for filter in &query.filters {
        match filter {
            Expr::Filter(f) if f.op == Op::Eq && f.quantifier.is_none() => match &f.operand {
                Operand::Scalar(Term::Literal(value)) => keys.push((&f.column, value)),
                _ => return Err(wrong()),
            },
            _ => return Err(wrong()),
        }
    }
    let mut named: Vec<&String> = keys.iter().map(|(k, _)| *k).collect();
    named.sort();
    let mut primary: Vec<&String> = table.primary_key.iter().collect();
    primary.sort();
    if primary.is_empty() || named != primary {
        return Err(wrong());
    }
    let Value::Object(object) = body else {
        return Err(WriteError::NotOneObject { method: "a PUT" });
    };
    for (key, value) in keys {
        let given = match object.get(key) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        if given.as_deref() != Some(value.as_str()) {
            return Err(WriteError::PutKeyMismatch {
                column: key.clone(),
                value: value.clone(),
            });
        }
    }
    let missing: Vec<String> = table
        .column_names()
        .into_iter()
        .filter(|column| !object.contains_key(column))
        .collect();
    if !missing.is_empty() {
        return Err(WriteError::PutMissing { columns: missing });
    }
    let mut columns: Vec<String> = object.keys().cloned().collect();
    columns.sort();
    Ok((columns, Value::Object(object)))
}

#[cfg(test)]
mod value_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_checked_against_column_types() {
        let table = Table {
            name: "t".into(),
            columns: [
                ("n", "integer"),
                ("x", "numeric"),
                ("b", "boolean"),
                ("u", "uuid"),
                ("tags", "text[]"),
                ("doc", "jsonb"),
                ("s", "text"),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
            ..Table::default()
        };
        let good = json!({"n": 1, "x": "1.5", "b": "true", "u": "6f1c1b3e-4a58-4d55-9d8e-0c3f1a2b3c4d",
                          "tags": ["a"], "doc": {"any": [1]}, "s": 5});
        assert!(check_values(&table, &[good]).is_ok());
        for (bad, column) in [
            (json!({"n": 1.5}), "`n` is integer"),
            (json!({"n": "ten"}), "`n` is integer"),
            (json!({"b": 2}), "`b` is boolean"),
            (json!({"u": "nope"}), "`u` is uuid"),
            (json!({"tags": {"a": 1}}), "`tags` is text[]"),
            (json!({"s": [1]}), "`s` is text"),
        ] {
            let error = check_values(&table, &[json!({}), bad.clone()]).unwrap_err();
            let message = error.to_string();
            assert!(message.starts_with(column), "{bad}: {message}");
            assert!(message.ends_with("(row 1)"), "{message}");
        }
    }
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
