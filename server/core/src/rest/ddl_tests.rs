use super::*;

#[test]
fn golden_ddl() {
    let spec: CreateTable = serde_json::from_value(serde_json::json!({
        "name": "Odd \"name\"",
        "columns": [
            {"name": "id", "type": "bigint", "primary_key": true, "default_expression": "NOW()"},
            {"name": "title", "type": "text", "nullable": false, "default": "it's", "unique": true},
            {"name": "score", "type": "integer", "check": "score=gte.0&score=lt.100"},
            {"name": "author", "type": "uuid", "references": {"table": "users", "on_delete": "set null"}}
        ]
    }))
    .unwrap();
    assert_eq!(
        create_table_sql("public", &spec).unwrap(),
        vec!["CREATE TABLE \"public\".\"Odd \"\"name\"\"\" (\n    \"id\" bigint PRIMARY KEY DEFAULT now(),\n    \"title\" text NOT NULL DEFAULT 'it''s'::text UNIQUE,\n    \"score\" integer CHECK ((\"score\" >= '0'::text::integer) AND (\"score\" < '100'::text::integer)),\n    \"author\" uuid REFERENCES \"public\".\"users\" ON DELETE SET NULL\n)"]
    );
    let table = described("public", "posts", &spec.columns);
    let change: AlterTable = serde_json::from_value(serde_json::json!({
        "rename_columns": {"title": "heading"},
        "add_columns": [{"name": "views", "type": "integer", "default": 0}],
        "alter_columns": [{"name": "heading", "nullable": true, "drop_default": true}],
        "add_checks": [{"name": "views_positive", "condition": "views=gte.0"}],
        "rename_to": "articles"
    }))
    .unwrap();
    assert_eq!(
        alter_table_sql(&table, &change).unwrap(),
        vec![
            "ALTER TABLE \"public\".\"posts\" RENAME COLUMN \"title\" TO \"heading\"",
            "ALTER TABLE \"public\".\"posts\" ADD COLUMN \"views\" integer DEFAULT '0'::integer",
            "ALTER TABLE \"public\".\"posts\" ALTER COLUMN \"heading\" DROP NOT NULL",
            "ALTER TABLE \"public\".\"posts\" ALTER COLUMN \"heading\" DROP DEFAULT",
            "ALTER TABLE \"public\".\"posts\" ADD CONSTRAINT \"views_positive\" CHECK (\"views\" >= '0'::text::integer)",
            "ALTER TABLE \"public\".\"posts\" RENAME TO \"articles\"",
        ]
    );
    // Hostile input stays inside quotes or is refused.
    let bad = |json: serde_json::Value| {
        create_table_sql("public", &serde_json::from_value(json).unwrap()).is_err()
    };
    assert!(bad(
        serde_json::json!({"name": "t", "columns": [{"name": "a", "type": "text; drop table x"}]})
    ));
    assert!(bad(
        serde_json::json!({"name": "t", "columns": [{"name": "a", "type": "text", "default_expression": "pg_sleep(10)"}]})
    ));
    assert!(bad(
        serde_json::json!({"name": "t", "columns": [{"name": "a", "type": "text", "check": "b=eq.1"}]})
    ));
    assert!(bad(
        serde_json::json!({"name": "", "columns": [{"name": "a", "type": "text"}]})
    ));
    let spec: CreateTable = serde_json::from_value(serde_json::json!({"name": "t", "columns": [{"name": "a", "type": "text", "default": "x'); drop table y; --"}]})).unwrap();
    assert!(create_table_sql("public", &spec).unwrap()[0]
        .contains("DEFAULT 'x''); drop table y; --'::text"));
    // A value that looks like a placeholder stays a value.
    let sneaky = described(
        "public",
        "t",
        &[serde_json::from_value(serde_json::json!({"name": "a$1", "type": "text"})).unwrap()],
    );
    assert_eq!(
        check_sql(&sneaky, "or=(a$1.eq.$1,a$1.eq.x')").unwrap(),
        "(\"a$1\" = '$1'::text::text) OR (\"a$1\" = 'x'''::text::text)"
    );
    assert_eq!(
        create_index_sql(
            &table,
            &CreateIndex {
                columns: vec!["score".into()],
                unique: true,
                name: None
            }
        )
        .unwrap(),
        "CREATE UNIQUE INDEX ON \"public\".\"posts\" (\"score\")"
    );
}
