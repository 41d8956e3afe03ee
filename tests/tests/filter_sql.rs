//! The filter grammar's SQL, run against a real PostgreSQL: every case must be
//! valid SQL and select exactly the rows it names, with hostile values inert.

use basalt_core::filter::sql::{to_sql, Caller, Column, Columns, Param};
use basalt_core::filter::{parse_condition, parse_param, FilterError};
use basalt_tests::{connect, PgServer};
use serde_json::json;
use tokio_postgres::types::ToSql;

/// The resolver a schema cache would provide, read from the catalog here.
struct Catalog(Vec<(String, String)>);

impl Columns for Catalog {
    fn resolve(&self, name: &str, _params: &mut Vec<Param>) -> Result<Column, FilterError> {
        self.0
            .iter()
            .find(|(column, _)| column == name)
            .map(|(column, ty)| Column {
                sql: format!("\"{}\"", column.replace('"', "\"\"")),
                type_name: ty.clone(),
            })
            .ok_or_else(|| FilterError::UnknownColumn {
                table: "items".into(),
                column: name.into(),
                suggestion: None,
                columns: self.0.iter().map(|(c, _)| c.clone()).collect(),
            })
    }
}

const SETUP: &str = r#"
CREATE TABLE items (
    id integer PRIMARY KEY,
    title text,
    owner uuid,
    tags text[],
    during tstzrange,
    public boolean,
    body text,
    "odd, col (x)" text
);
INSERT INTO items VALUES
 (1, 'Rust for all', '7f0c3b5e-0000-4000-8000-000000000001', '{rust,sql}', '[2026-01-01,2026-02-01)', true, 'the quick brown fox', 'a'),
 (2, 'SQL tricks', '7f0c3b5e-0000-4000-8000-000000000002', '{sql}', '[2026-02-01,2026-03-01)', false, 'lazy dogs sleep', 'b'),
 (3, 'It''s "quoted"; DROP', NULL, '{}', NULL, NULL, 'cats and dogs', 'a,b (c)');
"#;

#[tokio::test]
async fn every_case_selects_the_rows_it_names() {
    let url = PgServer::shared().fresh_database().await;
    let client = connect(&url).await;
    client.batch_execute(SETUP).await.unwrap();
    let columns = Catalog(
        client
            .query(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = 'items'::regclass AND attnum > 0 AND NOT attisdropped",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect(),
    );
    let claims = json!({"org": 2});
    let user = Caller {
        uid: Some("7f0c3b5e-0000-4000-8000-000000000001"),
        role: "authenticated",
        claims: &claims,
    };
    let cases: &[(&str, &str, &[i32])] = &[
        ("id", "eq.2", &[2]),
        ("id", "in.(1,3)", &[1, 3]),
        ("id", "not.in.(1,3)", &[2]),
        ("id", "gt(any).{2,5}", &[3]),
        ("title", "ilike.*SQL*", &[2]),
        ("title", "like(any).{Rust*,*DROP}", &[1, 3]),
        ("title", "eq.It's \"quoted\"; DROP", &[3]),
        ("title", "match.^[RS]", &[1, 2]),
        ("owner", "is.null", &[3]),
        ("public", "is.true", &[1]),
        ("public", "isdistinct.true", &[2, 3]),
        ("tags", "cs.{sql}", &[1, 2]),
        ("tags", "cd.{rust,sql}", &[1, 2, 3]),
        ("tags", "ov.{rust}", &[1]),
        ("during", "adj.[2026-03-01,2026-04-01)", &[2]),
        ("during", "sl.[2026-02-01,2026-05-01)", &[1]),
        ("body", "fts.dogs & sleep", &[2]),
        ("body", "wfts(english).dog -cats", &[2]),
        ("body", "plfts(english).quick fox", &[1]),
        ("body", "phfts.cats and dogs", &[3]),
        (
            "or",
            "(id.eq.1,and(public.is.false,title.ilike.*sql*))",
            &[1, 2],
        ),
        (
            "not.and",
            "(id.gte.2,\"odd, col (x)\".eq.\"a,b (c)\")",
            &[1, 2],
        ),
    ];
    for (key, value, expected) in cases {
        let expr = parse_param(key, value).unwrap_or_else(|e| panic!("{key}={value}: {e}"));
        assert_eq!(
            &select(&client, &columns, &expr, &user).await,
            expected,
            "{key}={value}"
        );
    }
    let policy =
        parse_condition("or=(public.is.true,owner.eq.{auth.uid})&id=lte.{auth.claims.org}")
            .unwrap();
    assert_eq!(select(&client, &columns, &policy, &user).await, vec![1]);
    let count: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 3, "hostile values changed nothing");
}

async fn select(
    client: &tokio_postgres::Client,
    columns: &Catalog,
    expr: &basalt_core::filter::Expr,
    caller: &Caller<'_>,
) -> Vec<i32> {
    let mut params = Vec::new();
    let condition = to_sql(expr, columns, caller, &mut params).unwrap();
    let values: Vec<Box<dyn ToSql + Sync>> = params
        .into_iter()
        .map(|param| -> Box<dyn ToSql + Sync> {
            match param {
                Param::Text(text) => Box::new(text),
                Param::TextArray(items) => Box::new(items),
            }
        })
        .collect();
    let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|value| value.as_ref()).collect();
    client
        .query(
            &format!("SELECT id FROM items WHERE {condition} ORDER BY id"),
            &refs,
        )
        .await
        .unwrap_or_else(|e| panic!("{condition}: {e}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}
