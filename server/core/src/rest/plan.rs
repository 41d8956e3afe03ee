//! SQL for a read: one statement that returns the rows as a JSON array.

use super::query::{Nulls, ReadQuery, Select};
use crate::filter::sql::{to_sql, Caller, Column, Columns, Param};
use crate::filter::{Expr, FilterError};

/// A table as the schema cache knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// `(name, type)` in column order.
    pub columns: Vec<(String, String)>,
}

pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

impl Table {
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }

    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|(name, _)| name.clone()).collect()
    }
}

impl Columns for Table {
    fn resolve(&self, name: &str) -> Result<Column, FilterError> {
        match self.columns.iter().find(|(column, _)| column == name) {
            Some((column, type_name)) => Ok(Column {
                sql: quote(column),
                type_name: type_name.clone(),
            }),
            None => {
                let names = self.column_names();
                let close = crate::config::suggestion(name, names.iter().map(String::as_str));
                Err(
                    FilterError::new(format!("`{}` has no column `{name}`", self.name)).with_hint(
                        match close {
                            Some(close) => format!("did you mean `{close}`?"),
                            None => format!("its columns are {}", names.join(", ")),
                        },
                    ),
                )
            }
        }
    }
}

/// ` WHERE filters AND condition` (empty when there is neither).
pub(super) fn where_clause(
    table: &Table,
    query: &ReadQuery,
    condition: Option<&Expr>,
    caller: &Caller,
    params: &mut Vec<Param>,
) -> Result<String, FilterError> {
    let mut conditions = Vec::new();
    for filter in &query.filters {
        conditions.push(format!("({})", to_sql(filter, table, caller, params)?));
    }
    if let Some(condition) = condition {
        conditions.push(format!("({})", to_sql(condition, table, caller, params)?));
    }
    Ok(if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    })
}

/// `SELECT count(*)` of the rows a read could return before `limit`/`offset`:
/// the same filters and row condition, so a count never includes rows the
/// caller may not see.
pub fn count_sql(
    table: &Table,
    query: &ReadQuery,
    condition: Option<&Expr>,
    caller: &Caller,
) -> Result<(String, Vec<Param>), FilterError> {
    let mut params = Vec::new();
    let filter = where_clause(table, query, condition, caller, &mut params)?;
    Ok((
        format!("SELECT count(*) FROM {}{filter}", table.qualified()),
        params,
    ))
}

/// `SELECT … FROM table WHERE filters AND condition ORDER BY … LIMIT … OFFSET …`,
/// wrapped to return one JSON array. `limit` is capped by `max_rows`.
pub fn read_sql(
    table: &Table,
    query: &ReadQuery,
    condition: Option<&Expr>,
    caller: &Caller,
    max_rows: u64,
) -> Result<(String, Vec<Param>), FilterError> {
    let mut params = Vec::new();
    let columns = match &query.select {
        Select::All => table
            .columns
            .iter()
            .map(|(name, _)| quote(name))
            .collect::<Vec<_>>(),
        Select::Columns(names) => names
            .iter()
            .map(|name| table.resolve(name).map(|column| column.sql))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut sql = format!("SELECT {} FROM {}", columns.join(", "), table.qualified());
    sql.push_str(&where_clause(table, query, condition, caller, &mut params)?);
    if !query.order.is_empty() {
        let terms = query
            .order
            .iter()
            .map(|order| {
                table.resolve(&order.column).map(|column| {
                    let direction = if order.descending { "DESC" } else { "ASC" };
                    let nulls = match order.nulls {
                        Some(Nulls::First) => " NULLS FIRST",
                        Some(Nulls::Last) => " NULLS LAST",
                        None => "",
                    };
                    format!("{} {direction}{nulls}", column.sql)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        sql.push_str(&format!(" ORDER BY {}", terms.join(", ")));
    }
    let limit = query.limit.unwrap_or(max_rows).min(max_rows);
    params.push(Param::Text(Some(limit.to_string())));
    sql.push_str(&format!(" LIMIT ${}::text::bigint", params.len()));
    if let Some(offset) = query.offset {
        params.push(Param::Text(Some(offset.to_string())));
        sql.push_str(&format!(" OFFSET ${}::text::bigint", params.len()));
    }
    Ok((
        format!("SELECT coalesce(json_agg(t), '[]'::json)::text, count(*) FROM ({sql}) t"),
        params,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::parse_condition;
    use crate::rest::parse_read;

    fn table() -> Table {
        Table {
            schema: "public".into(),
            name: "we\"ird".into(),
            columns: vec![
                ("id".into(), "integer".into()),
                ("owner".into(), "uuid".into()),
                ("title".into(), "text".into()),
            ],
        }
    }

    fn pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn golden_read_sql() {
        let caller = Caller {
            uid: Some("u1"),
            role: "authenticated",
            claims: &serde_json::Value::Null,
        };
        let condition = parse_condition("owner=eq.{auth.uid}").unwrap();
        let cases: &[(&str, Option<&Expr>, &str, Vec<Param>)] = &[
            (
                "",
                None,
                "SELECT coalesce(json_agg(t), '[]'::json)::text, count(*) FROM (SELECT \"id\", \"owner\", \"title\" FROM \"public\".\"we\"\"ird\" LIMIT $1::text::bigint) t",
                vec![Param::Text(Some("100".into()))],
            ),
            (
                "select=id,title&title=ilike.*a*&order=id.desc.nullslast&limit=5&offset=10",
                Some(&condition),
                "SELECT coalesce(json_agg(t), '[]'::json)::text, count(*) FROM (SELECT \"id\", \"title\" FROM \"public\".\"we\"\"ird\" WHERE (\"title\"::text ILIKE $1::text) AND (\"owner\" = $2::text::uuid) ORDER BY \"id\" DESC NULLS LAST LIMIT $3::text::bigint OFFSET $4::text::bigint) t",
                vec![Param::Text(Some("%a%".into())), Param::Text(Some("u1".into())), Param::Text(Some("5".into())), Param::Text(Some("10".into()))],
            ),
        ];
        for (query, condition, sql, params) in cases {
            let read = parse_read(&pairs(query)).unwrap();
            assert_eq!(
                read_sql(&table(), &read, *condition, &caller, 100).unwrap(),
                (sql.to_string(), params.clone()),
                "{query}"
            );
        }
        let read = parse_read(&pairs("title=eq.x")).unwrap();
        assert_eq!(
            count_sql(&table(), &read, Some(&condition), &caller).unwrap(),
            (
                "SELECT count(*) FROM \"public\".\"we\"\"ird\" WHERE (\"title\" = $1::text::text) AND (\"owner\" = $2::text::uuid)".to_owned(),
                vec![Param::Text(Some("x".into())), Param::Text(Some("u1".into()))]
            )
        );
        let read = parse_read(&pairs("limit=100000")).unwrap();
        assert!(
            read_sql(&table(), &read, None, &caller, 100)
                .unwrap()
                .1
                .contains(&Param::Text(Some("100".into()))),
            "the cap applies"
        );
    }

    #[test]
    fn named_columns_and_errors() {
        let read = parse_read(&pairs("select=title&or=(id.eq.1,owner.is.null)&order=id")).unwrap();
        assert_eq!(read.named_columns(), vec!["id", "owner", "title"]);
        let caller = Caller {
            uid: None,
            role: "anon",
            claims: &serde_json::Value::Null,
        };
        let error = read_sql(
            &table(),
            &parse_read(&pairs("titel=eq.x")).unwrap(),
            None,
            &caller,
            10,
        )
        .unwrap_err();
        assert_eq!(error.hint.as_deref(), Some("did you mean `title`?"));
        assert!(parse_read(&pairs("order=id.sideways")).is_err());
        assert!(parse_read(&pairs("limit=ten")).is_err());
        assert!(parse_read(&pairs("select=author(name)"))
            .unwrap_err()
            .message
            .contains("not available yet"));
    }
}
