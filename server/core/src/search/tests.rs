use super::meili::{document_id, filter as meili_filter, key_of_id};
use super::pg::{document_sql, index_ddl, search_sql, Scoped, Setup};
use super::*;
use crate::filter::parse_condition;
use crate::filter::sql::Caller;
use crate::rest::Table;
use serde_json::json;

fn posts() -> IndexDef {
    serde_json::from_value(json!({
        "name": "posts",
        "table": "posts",
        "searchable": ["title", "body", "summary", "tags", "author"],
        "filterable": ["status", "score", "owner"],
        "sortable": ["score", "created_at"],
        "facets": ["status", "tags"],
    }))
    .unwrap()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_declaration_takes_defaults_and_weights_follow_the_order() {
    let def = posts();
    assert_eq!(def.backend, "postgres");
    assert_eq!(def.language, "english");
    assert!(def.check().is_ok());
    let weights: Vec<char> = def.weighted().into_iter().map(|(_, w)| w).collect();
    assert_eq!(weights, ['A', 'B', 'C', 'D', 'D']);
    let mut def = def;
    def.weights.insert("author".into(), "A".into());
    assert_eq!(def.weighted()[4], ("author".into(), 'A'));
}

#[test]
fn bad_declarations_name_their_field() {
    let field_of = |change: &dyn Fn(&mut IndexDef)| {
        let mut def = posts();
        change(&mut def);
        match def.check() {
            Err(SearchError::Index { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    assert_eq!(field_of(&|d| d.name = "Posts".into()), "name");
    assert_eq!(field_of(&|d| d.name = "a".repeat(41)), "name");
    assert_eq!(field_of(&|d| d.searchable.clear()), "searchable");
    assert_eq!(field_of(&|d| d.sortable.push("score".into())), "sortable");
    assert_eq!(field_of(&|d| d.backend = "elastic".into()), "backend");
    assert_eq!(field_of(&|d| d.language = "english'".into()), "language");
    assert_eq!(
        field_of(&|d| {
            d.weights.insert("status".into(), "A".into());
        }),
        "weights"
    );
    assert_eq!(
        field_of(&|d| d.ranking_rules = vec!["words".into()]),
        "ranking_rules"
    );
    let mut meili = posts();
    meili.backend = "meilisearch".into();
    meili.ranking_rules = vec!["words".into(), "score:desc".into()];
    assert!(meili.check().is_ok());
    meili.ranking_rules = vec!["owner:desc".into()];
    assert!(meili.check().is_err(), "owner is not sortable");
}

#[test]
fn columns_are_checked_against_the_table() {
    let columns: Vec<(String, String)> = ["id", "title", "body", "summary", "tags", "author"]
        .iter()
        .chain(&["status", "score", "owner", "created_at"])
        .map(|c| (c.to_string(), "text".to_string()))
        .collect();
    let def = posts();
    assert!(def.check_columns(&columns, &["id".into()]).is_ok());
    assert!(
        matches!(def.check_columns(&columns, &[]), Err(SearchError::Index { field, .. }) if field == "primary_key"),
        "a view without a declared key is refused"
    );
    let short = &columns[..3];
    assert!(def.check_columns(short, &["id".into()]).is_err());
}

#[test]
fn a_query_string_splits_parameters_from_filters() {
    let def = posts();
    let query = SearchQuery::from_pairs(
        &pairs(&[
            ("q", "rust database"),
            ("status", "eq.published"),
            ("or", "(score.gt.3,owner.is.null)"),
            ("sort", "score:desc,created_at"),
            ("facets", "status"),
            ("highlight", "title"),
            ("limit", "5"),
            ("offset", "10"),
        ]),
        &def,
    )
    .unwrap();
    assert_eq!(query.q, "rust database");
    assert!(matches!(&query.filter, Some(Expr::And(items)) if items.len() == 2));
    assert_eq!(
        query.sort,
        vec![("score".into(), true), ("created_at".into(), false)]
    );
    assert_eq!((query.limit, query.offset), (5, 10));
    assert!(query.prefix_search());
}

#[test]
fn a_query_refuses_what_the_index_does_not_declare() {
    let def = posts();
    let refused = |items: &[(&str, &str)]| {
        SearchQuery::from_pairs(&pairs(items), &def).expect_err(&format!("{items:?}"))
    };
    refused(&[("title", "eq.x")]); // not filterable
    refused(&[("sort", "title:asc")]);
    refused(&[("sort", "score:up")]);
    refused(&[("facets", "owner")]);
    refused(&[("highlight", "status")]);
    refused(&[("limit", "101")]);
    refused(&[("limit", "-1")]);
    refused(&[("offset", "990"), ("limit", "20")]);
    refused(&[("q", &"a".repeat(MAX_QUERY_BYTES + 1))]);
    refused(&[("q", "a\0b")]);
    refused(&[("q", "a"), ("q", "b")]);
    refused(&[("prefix", "maybe")]);
    refused(&[("highlight_pre_tag", "<b class=\"x\">")]);
    refused(&[("status", "eq")]);
    refused(&[("on", "")]);
}

#[test]
fn a_json_body_takes_lists_and_a_condition() {
    let def = posts();
    let query = SearchQuery::from_json(
        &json!({"q": "db ", "filter": "status=eq.published&score=gte.2", "facets": ["status", "tags"], "limit": 3, "select": ["id", "title"]}),
        &def,
    )
    .unwrap();
    assert_eq!(query.facets, vec!["status", "tags"]);
    assert_eq!(query.select, Some(vec!["id".into(), "title".into()]));
    assert!(!query.prefix_search(), "a trailing space ends the word");
    assert!(SearchQuery::from_json(&json!({"qq": "x"}), &def).is_err());
    assert!(SearchQuery::from_json(&json!({"facets": {"a": 1}}), &def).is_err());
    assert!(SearchQuery::from_json(&json!([1]), &def).is_err());
}

fn table() -> Table {
    Table {
        schema: "public".into(),
        name: "posts".into(),
        columns: [
            ("id", "bigint"),
            ("title", "text"),
            ("body", "text"),
            ("status", "text"),
            ("tags", "text[]"),
            ("owner", "uuid"),
            ("score", "integer"),
        ]
        .iter()
        .map(|(c, t)| (c.to_string(), t.to_string()))
        .collect(),
        primary_key: vec!["id".into()],
        unique_keys: vec![vec!["id".into()]],
        computed: Vec::new(),
        defaults: Default::default(),
        hides_rows: false,
    }
}

#[test]
fn the_search_uses_the_indexed_expression_and_binds_every_value() {
    let mut def = posts();
    def.searchable = vec!["title".into(), "body".into()];
    let setup = Setup {
        config: "english".into(),
        trgm_schema: None,
    };
    let table = table();
    let ddl = index_ddl(
        &def,
        &setup,
        &table,
        &[("id".into(), "bigint".into())],
        &["anon"],
    )
    .join(";\n");
    // The trigger keeps each row's vector; the table is filled the same way.
    assert!(ddl.contains(&document_sql(&setup, Some("NEW"), &def.weighted())));
    assert!(ddl.contains(&document_sql(&setup, Some("t"), &def.weighted())));
    assert!(ddl.contains("GRANT SELECT ON basalt_search.\"posts\" TO \"anon\""));
    let condition = parse_condition("owner=eq.{auth.uid}").unwrap();
    let query = SearchQuery::from_pairs(
        &pairs(&[
            ("q", "it's \"a\" -b or c"),
            ("status", "eq.x'); DROP TABLE posts; --"),
            ("facets", "tags"),
            ("highlight", "title"),
        ]),
        &def,
    )
    .unwrap();
    let weighted = def.weighted();
    let (sql, params) = search_sql(
        &Scoped {
            def: &def,
            table: &table,
            key: &["id".into()],
            returned: &["id".into(), "title".into()],
            searched: &weighted,
            condition: Some(&condition),
            documents: false,
        },
        &setup,
        &query,
        &Caller {
            uid: Some("00000000-0000-0000-0000-000000000001"),
            role: "authenticated",
            claims: &json!({}),
        },
    )
    .unwrap();
    // Without the documents table, the vectors come from the columns.
    assert!(sql.contains(&document_sql(&setup, Some("t"), &weighted)));
    assert!(!sql.contains("DROP TABLE"), "values are bound: {sql}");
    assert!(!sql.contains("it's"), "q is bound");
    assert!(
        sql.contains("unnest(t.\"tags\")"),
        "array facets count elements"
    );
    assert!(sql.contains("ts_headline"));
    assert!(sql.contains(":*"), "the last word is a prefix");
    assert_eq!(params.len(), 4, "q, the uid, the filter value, the options");
}

#[test]
fn meilisearch_ids_are_valid_distinct_and_reversible() {
    for key in [
        vec![json!(1)],
        vec![json!("1")],
        vec![json!("a/b c")],
        vec![json!(1), json!("x")],
        vec![json!("é\"'")],
    ] {
        let id = document_id(&key).unwrap();
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        assert_eq!(key_of_id(&id), Some(key));
    }
    assert_ne!(
        document_id(&[json!(1)]).unwrap(),
        document_id(&[json!("1")]).unwrap()
    );
    assert!(document_id(&[json!("x".repeat(600))]).is_err());
}

#[test]
fn meilisearch_filters_keep_sqls_meaning() {
    let user = Caller {
        uid: Some("u1"),
        role: "authenticated",
        claims: &json!({}),
    };
    let anon = Caller {
        uid: None,
        role: "anon",
        claims: &json!({}),
    };
    let meili = |text: &str, caller: &Caller| meili_filter(&parse_condition(text).unwrap(), caller);
    assert_eq!(
        meili("owner=eq.{auth.uid}", &user).unwrap(),
        "owner = \"u1\""
    );
    // No user: `owner = NULL` is never true, so nothing matches.
    assert_eq!(meili("owner=eq.{auth.uid}", &anon).unwrap(), "_id IS NULL");
    assert_eq!(
        meili("or=(public.is.true,owner.eq.{auth.uid})", &user).unwrap(),
        "(public = true) OR (owner = \"u1\")"
    );
    assert_eq!(
        meili("status=neq.draft", &user).unwrap(),
        "status IS NOT NULL AND status != \"draft\""
    );
    // NOT of a comparison needs a value, as in SQL.
    assert_eq!(
        meili("status=not.eq.a\"b", &user).unwrap(),
        "status IS NOT NULL AND NOT (status = \"a\\\"b\")"
    );
    assert_eq!(
        meili("not.or=(a.eq.1,b.is.null)", &user).unwrap(),
        "(a IS NOT NULL AND NOT (a = \"1\")) AND (b IS NOT NULL)"
    );
    assert_eq!(meili("score=gte.2.5", &user).unwrap(), "score >= 2.5");
    assert_eq!(
        meili("status=in.(a,b)", &user).unwrap(),
        "status IN [\"a\", \"b\"]"
    );
    for refused in [
        "title=ilike.*x*",
        "score=gt.abc",
        "title=fts.x",
        "tags=cs.{a}",
    ] {
        assert!(
            matches!(meili(refused, &user), Err(SearchError::Unsupported { .. })),
            "{refused}"
        );
    }
}
