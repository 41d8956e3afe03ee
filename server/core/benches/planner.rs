//! The data API's pure stages under criterion: parsing a query string and
//! planning its SQL (with embedded resources and a policy condition), with
//! no database. Run with `cargo bench -p basalt-core --bench planner`.

use basalt_core::filter::sql::Caller;
use basalt_core::filter::{parse_condition, Expr};
use basalt_core::rest::{
    parse_read, read_sql, Access, ForeignKey, QueryError, Schema, Source, Table,
};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn table(name: &str, columns: &[(&str, &str)]) -> Table {
    Table {
        schema: "public".into(),
        name: name.into(),
        columns: columns
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect(),
        primary_key: vec!["id".into()],
        ..Table::default()
    }
}

fn schema() -> Schema {
    let tables = [
        table("users", &[("id", "uuid"), ("name", "text")]),
        table(
            "posts",
            &[
                ("id", "bigint"),
                ("author_id", "uuid"),
                ("title", "text"),
                ("score", "integer"),
                ("data", "jsonb"),
            ],
        ),
        table(
            "comments",
            &[("id", "bigint"), ("post_id", "bigint"), ("body", "text")],
        ),
    ];
    let fk = |name: &str, from: &str, column: &str, to: &str| ForeignKey {
        name: name.into(),
        table: from.into(),
        columns: vec![column.into()],
        foreign_table: to.into(),
        foreign_columns: vec!["id".into()],
    };
    Schema {
        name: "public".into(),
        tables: tables.into_iter().map(|t| (t.name.clone(), t)).collect(),
        foreign_keys: vec![
            fk("posts_author_id_fkey", "posts", "author_id", "users"),
            fk("comments_post_id_fkey", "comments", "post_id", "posts"),
        ],
        ..Schema::default()
    }
}

struct Everyone;

impl Access for Everyone {
    type Error = QueryError;
    fn select(&self, _: &Table, _: &[String]) -> Result<Option<Expr>, QueryError> {
        Ok(None)
    }
    fn execute(&self, _: &str, _: &str) -> Result<(), QueryError> {
        Ok(())
    }
}

fn pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn planner(c: &mut Criterion) {
    let schema = schema();
    let posts = &schema.tables["posts"];
    let condition = parse_condition("or=(score.gte.0,author_id.eq.{auth.uid})").unwrap();
    let caller = Caller {
        uid: Some("6f1c1b3e-4a58-4d55-9d8e-0c3f1a2b3c4d"),
        role: "authenticated",
        claims: &serde_json::Value::Null,
    };
    let cases = [
        ("by id", "id=eq.42"),
        (
            "filtered page",
            "select=id,title,score&score=gt.10&title=ilike.*rust*&order=score.desc&limit=20",
        ),
        (
            "embedded",
            "select=id,title,author:users(name),comments(body)&comments.order=id.desc&comments.limit=5&data->>kind=eq.news&limit=20",
        ),
    ];
    for (name, query) in cases {
        let query = pairs(query);
        c.bench_function(&format!("parse + plan: {name}"), |b| {
            b.iter(|| {
                let read = parse_read(black_box(&query)).unwrap();
                read_sql(
                    Source::table(&schema, posts, 1000),
                    &read,
                    Some(&condition),
                    &Everyone,
                    &caller,
                )
                .unwrap()
            })
        });
    }
}

criterion_group!(benches, planner);
criterion_main!(benches);
