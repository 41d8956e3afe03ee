use super::*;
use crate::filter::parse_condition;
use crate::rest::parse_read;
use expect_test::expect;

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
    let plain = InsertOptions {
        conflict: Conflict::Fail,
        missing_default: false,
    };
    let columns = vec!["owner".to_owned(), "title".to_owned()];
    let (sql, params) = insert_sql(
        &table,
        "[]".into(),
        &columns,
        Some(&condition),
        &caller,
        &plain,
        None,
    )
    .unwrap();
    expect![[r#"WITH written AS (INSERT INTO "public"."posts" AS "t0" ("owner", "title") SELECT "new"."owner", "new"."title" FROM (SELECT s.* FROM (SELECT "owner", "title" FROM json_populate_recordset(NULL::"public"."posts", $1::text::json)) AS s) AS "new" WHERE auth.check_policy(coalesce(("new"."owner" = $2::text::uuid), false)) RETURNING "t0".*, (xmax = 0) AS "basalt inserted") SELECT (SELECT coalesce(json_agg(r), '[]'::json) FROM (SELECT "id", "owner", "title" FROM written) r)::text, count(*) FILTER (WHERE NOT coalesce(("owner" = $3::text::uuid), false)), count(*), count(*) FILTER (WHERE "basalt inserted") FROM written"#]].assert_eq(&sql);
    assert_eq!(
        params,
        vec![
            Param::Text(Some("[]".into())),
            Param::Text(Some("u1".into())),
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
        None,
    )
    .unwrap();
    expect![[r#"WITH written AS (UPDATE "public"."posts" SET "title" = (SELECT "title" FROM json_populate_record(NULL::"public"."posts", $1::text::json)) WHERE ("id" = $2::text::integer) AND ("owner" = $3::text::uuid) RETURNING *) SELECT (SELECT coalesce(json_agg(r), '[]'::json) FROM (SELECT "id", "owner", "title" FROM written) r)::text, count(*) FILTER (WHERE NOT coalesce(("owner" = $4::text::uuid), false)), count(*), 0::bigint FROM written"#]].assert_eq(&sql);
    assert_eq!(params.len(), 4);

    let (sql, _) = delete_sql(&table, &query, Some(&condition), &caller, None).unwrap();
    expect![[r#"WITH written AS (DELETE FROM "public"."posts" WHERE ("id" = $1::text::integer) AND ("owner" = $2::text::uuid) RETURNING *) SELECT (SELECT coalesce(json_agg(r), '[]'::json) FROM (SELECT "id", "owner", "title" FROM written) r)::text, 0::bigint, count(*), 0::bigint FROM written"#]].assert_eq(&sql);
    assert!(insert_sql(
        &table,
        "[]".into(),
        &["nope".to_owned()],
        None,
        &caller,
        &plain,
        None
    )
    .is_err());

    // Upsert: merged rows answer to the update condition, inserted ones to
    // the insert condition; missing keys take the catalog's default.
    let mut with_default = table.clone();
    with_default
        .defaults
        .insert("title".into(), "'untitled'::text".into());
    let merge = InsertOptions {
        conflict: Conflict::Merge {
            target: vec!["id".into()],
            condition: Some(condition.clone()),
        },
        missing_default: true,
    };
    let (sql, params) = insert_sql(
        &with_default,
        "[]".into(),
        &["id".to_owned(), "title".to_owned()],
        Some(&condition),
        &caller,
        &merge,
        None,
    )
    .unwrap();
    expect![[r#"WITH written AS (INSERT INTO "public"."posts" AS "t0" ("id", "title") SELECT "new"."id", "new"."title" FROM (SELECT s.*, NULL::uuid AS "owner" FROM (SELECT CASE WHEN (j.value::jsonb) ? $2::text THEN (p)."id" ELSE NULL END AS "id", CASE WHEN (j.value::jsonb) ? $3::text THEN (p)."title" ELSE 'untitled'::text END AS "title" FROM json_array_elements($1::text::json) AS j CROSS JOIN LATERAL (SELECT json_populate_record(NULL::"public"."posts", j.value) AS p) AS populated) AS s) AS "new" WHERE auth.check_policy(coalesce(("new"."owner" = $4::text::uuid), false) OR EXISTS (SELECT 1 FROM "public"."posts" AS "old" WHERE "old"."id" = "new"."id" AND ("old"."owner" = $5::text::uuid))) ON CONFLICT ("id") DO UPDATE SET "id" = EXCLUDED."id", "title" = EXCLUDED."title" WHERE "t0"."owner" = $6::text::uuid RETURNING "t0".*, (xmax = 0) AS "basalt inserted") SELECT (SELECT coalesce(json_agg(r), '[]'::json) FROM (SELECT "id", "owner", "title" FROM written) r)::text, count(*) FILTER (WHERE CASE WHEN "basalt inserted" THEN NOT coalesce(("owner" = $7::text::uuid), false) ELSE NOT coalesce(("owner" = $8::text::uuid), false) END), count(*), count(*) FILTER (WHERE "basalt inserted") FROM written"#]].assert_eq(&sql);
    assert_eq!(params.len(), 8);
    let ignore = InsertOptions {
        conflict: Conflict::Ignore {
            target: vec!["id".into()],
        },
        missing_default: false,
    };
    let (sql, _) = insert_sql(&table, "[]".into(), &columns, None, &caller, &ignore, None).unwrap();
    assert!(
        sql.contains(" ON CONFLICT (\"id\") DO NOTHING RETURNING"),
        "{sql}"
    );
    assert_eq!(
        body_columns(&serde_json::json!([{"b": 1}, {"a": 2, "b": 3}])).unwrap(),
        vec!["a", "b"]
    );
    assert!(body_columns(&serde_json::json!([1])).is_err());
}

#[test]
fn a_put_names_exactly_the_key_and_sends_the_whole_row() {
    let table = Table {
        schema: "public".into(),
        name: "posts".into(),
        columns: vec![
            ("id".into(), "integer".into()),
            ("title".into(), "text".into()),
        ],
        primary_key: vec!["id".into()],
        ..Table::default()
    };
    let put = |query: &str, body: serde_json::Value| {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        put_row(&table, &parse_read(&pairs).unwrap(), body)
    };
    let (columns, row) = put("id=eq.1", serde_json::json!({"title": "a", "id": 1})).unwrap();
    assert_eq!(columns, ["id", "title"]);
    assert_eq!(row["title"], "a");
    let cases = [
        (
            "title=eq.a",
            serde_json::json!({"id": 1, "title": "a"}),
            "PUT takes the primary key",
        ),
        (
            "id=gt.1",
            serde_json::json!({"id": 1, "title": "a"}),
            "PUT takes the primary key",
        ),
        (
            "id=eq.1&title=eq.a",
            serde_json::json!({"id": 1, "title": "a"}),
            "PUT takes the primary key",
        ),
        ("id=eq.1", serde_json::json!([{"id": 1}]), "one JSON object"),
        (
            "id=eq.1",
            serde_json::json!({"id": 2, "title": "a"}),
            "must equal the filter's value `1`",
        ),
        (
            "id=eq.1",
            serde_json::json!({"id": 1}),
            "the body lacks title",
        ),
    ];
    for (query, body, wanted) in cases {
        let error = put(query, body).unwrap_err().to_string();
        assert!(error.contains(wanted), "{query}: {error}");
    }
}
