//! SQL for writes. Values travel as one JSON parameter and become typed rows
//! through `json_populate_record(set)` of the table's own row type; every
//! statement returns the written rows as JSON and how many of them break the
//! policy's row condition, so the caller can refuse (and roll back) a write
//! that would leave rows the user could not read back.

use super::plan::{where_clause, Scope, Table};
use super::query::ReadQuery;
use crate::filter::sql::{to_sql, Caller, Param};
use crate::filter::{Expr, FilterError};

/// `SELECT rows_as_json, count_violating FROM written`.
fn returning(
    cte: &str,
    table: &Table,
    condition: Option<&Expr>,
    caller: &Caller,
    params: &mut Vec<Param>,
) -> Result<String, FilterError> {
    let violating = match condition {
        Some(condition) => format!(
            "count(*) FILTER (WHERE NOT coalesce(({}), false))",
            to_sql(condition, &Scope { table, alias: None }, caller, params)?
        ),
        None => "0::bigint".to_owned(),
    };
    Ok(format!(
        "SELECT coalesce(json_agg({cte}), '[]'::json)::text, {violating} FROM {cte}"
    ))
}

/// The quoted names of `columns`, each checked against the table (no JSON paths).
fn checked_columns(table: &Table, columns: &[String]) -> Result<Vec<String>, FilterError> {
    use crate::filter::sql::Columns;
    let scope = Scope { table, alias: None };
    columns
        .iter()
        .map(|name| {
            if name.contains("->") {
                return Err(FilterError::new(format!(
                    "`{name}` is not a column to write"
                )));
            }
            scope.resolve(name, &mut Vec::new()).map(|c| c.sql)
        })
        .collect()
}

/// Inserts `rows` (a JSON array of objects) into the given `columns`; columns
/// not listed take their defaults.
pub fn insert_sql(
    table: &Table,
    rows_json: String,
    columns: &[String],
    condition: Option<&Expr>,
    caller: &Caller,
) -> Result<(String, Vec<Param>), FilterError> {
    let mut params = vec![Param::Text(Some(rows_json))];
    let list = checked_columns(table, columns)?.join(", ");
    if columns.is_empty() {
        return Err(FilterError::new("the body names no column")
            .with_hint("send objects such as {\"title\": \"Hello\"}"));
    }
    let insert = format!(
        "INSERT INTO {table} ({list}) SELECT {list} FROM json_populate_recordset(NULL::{table}, $1::text::json) RETURNING *",
        table = table.qualified()
    );
    let tail = returning("written", table, condition, caller, &mut params)?;
    Ok((format!("WITH written AS ({insert}) {tail}"), params))
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
) -> Result<(String, Vec<Param>), FilterError> {
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
    let tail = returning("written", table, condition, caller, &mut params)?;
    Ok((format!("WITH written AS ({update}) {tail}"), params))
}

/// Deletes the rows that match the filters and the policy condition.
pub fn delete_sql(
    table: &Table,
    query: &ReadQuery,
    condition: Option<&Expr>,
    caller: &Caller,
) -> Result<(String, Vec<Param>), FilterError> {
    let mut params = Vec::new();
    let filter = where_clause(table, query, condition, caller, &mut params)?;
    let delete = format!("DELETE FROM {}{filter} RETURNING *", table.qualified());
    Ok((
        format!(
            "WITH written AS ({delete}) {}",
            returning("written", table, None, caller, &mut params)?
        ),
        params,
    ))
}

/// The column names of a JSON body: one object, or an array of objects (the
/// union of their keys, sorted).
pub fn body_columns(body: &serde_json::Value) -> Result<Vec<String>, FilterError> {
    let objects: Vec<&serde_json::Map<String, serde_json::Value>> = match body {
        serde_json::Value::Object(map) => vec![map],
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_object()
                    .ok_or_else(|| FilterError::new("every element of the array must be an object"))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(FilterError::new(
                "the body must be a JSON object or an array of objects",
            ))
        }
    };
    let mut columns: Vec<String> = objects.iter().flat_map(|map| map.keys().cloned()).collect();
    columns.sort();
    columns.dedup();
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::parse_condition;
    use crate::rest::parse_read;

    #[test]
    fn golden_write_sql() {
        let table = Table {
            schema: "public".into(),
            name: "posts".into(),
            columns: vec![
                ("id".into(), "integer".into()),
                ("owner".into(), "uuid".into()),
                ("title".into(), "text".into()),
            ],
            ..Table::default()
        };
        let caller = Caller {
            uid: Some("u1"),
            role: "authenticated",
            claims: &serde_json::Value::Null,
        };
        let condition = parse_condition("owner=eq.{auth.uid}").unwrap();
        let columns = vec!["owner".to_owned(), "title".to_owned()];
        let (sql, params) =
            insert_sql(&table, "[]".into(), &columns, Some(&condition), &caller).unwrap();
        assert_eq!(
            sql,
            "WITH written AS (INSERT INTO \"public\".\"posts\" (\"owner\", \"title\") SELECT \"owner\", \"title\" FROM json_populate_recordset(NULL::\"public\".\"posts\", $1::text::json) RETURNING *) SELECT coalesce(json_agg(written), '[]'::json)::text, count(*) FILTER (WHERE NOT coalesce((\"owner\" = $2::text::uuid), false)) FROM written"
        );
        assert_eq!(
            params,
            vec![
                Param::Text(Some("[]".into())),
                Param::Text(Some("u1".into()))
            ]
        );

        let query = parse_read(&[("id".into(), "eq.3".into())]).unwrap();
        let (sql, params) = update_sql(
            &table,
            "{}".into(),
            &["title".to_owned()],
            &query,
            Some(&condition),
            &caller,
        )
        .unwrap();
        assert_eq!(
            sql,
            "WITH written AS (UPDATE \"public\".\"posts\" SET \"title\" = (SELECT \"title\" FROM json_populate_record(NULL::\"public\".\"posts\", $1::text::json)) WHERE (\"id\" = $2::text::integer) AND (\"owner\" = $3::text::uuid) RETURNING *) SELECT coalesce(json_agg(written), '[]'::json)::text, count(*) FILTER (WHERE NOT coalesce((\"owner\" = $4::text::uuid), false)) FROM written"
        );
        assert_eq!(params.len(), 4);

        let (sql, _) = delete_sql(&table, &query, Some(&condition), &caller).unwrap();
        assert_eq!(
            sql,
            "WITH written AS (DELETE FROM \"public\".\"posts\" WHERE (\"id\" = $1::text::integer) AND (\"owner\" = $2::text::uuid) RETURNING *) SELECT coalesce(json_agg(written), '[]'::json)::text, 0::bigint FROM written"
        );
        assert!(insert_sql(&table, "[]".into(), &["nope".to_owned()], None, &caller).is_err());
        assert_eq!(
            body_columns(&serde_json::json!([{"b": 1}, {"a": 2, "b": 3}])).unwrap(),
            vec!["a", "b"]
        );
        assert!(body_columns(&serde_json::json!([1])).is_err());
    }
}
