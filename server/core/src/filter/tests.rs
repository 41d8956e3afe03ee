//! Golden SQL for the filter grammar: each case is the query parameter, the
//! SQL it compiles to, and the bound parameters. Hostile values only ever
//! appear among the parameters.

use super::sql::{to_sql, variables, Caller, Column, Columns, Param};
use super::*;
use crate::errors::Problem;
use serde_json::json;

struct Table;

impl Columns for Table {
    fn resolve(&self, name: &str, _params: &mut Vec<Param>) -> Result<Column, FilterError> {
        let ty = match name {
            "id" | "age" => "integer",
            "owner" => "uuid",
            "tags" => "text[]",
            "during" => "tstzrange",
            "doc" => "tsvector",
            "title" | "body" | "status" | "we\"ird; col" | "odd, col (x)" => "text",
            "public" => "boolean",
            _ => {
                return Err(FilterError::UnknownColumn {
                    table: "t".into(),
                    column: name.into(),
                    suggestion: None,
                    columns: vec!["id".into(), "age".into(), "owner".into()],
                })
            }
        };
        Ok(Column {
            sql: format!("\"{}\"", name.replace('"', "\"\"")),
            type_name: ty.into(),
        })
    }
}

fn text(value: &str) -> Param {
    Param::Text(Some(value.into()))
}

fn compile(expr: &Expr, caller: &Caller) -> (String, Vec<Param>) {
    let mut params = Vec::new();
    let sql = to_sql(expr, &Table, caller, &mut params).unwrap();
    (sql, params)
}

fn anon() -> Caller<'static> {
    static CLAIMS: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Caller {
        uid: None,
        role: "anon",
        claims: CLAIMS.get_or_init(|| json!({})),
    }
}

#[track_caller]
fn check(key: &str, value: &str, sql: &str, params: Vec<Param>) {
    let expr = parse_param(key, value).unwrap_or_else(|e| panic!("{key}={value}: {e}"));
    assert_eq!(
        compile(&expr, &anon()),
        (sql.to_owned(), params),
        "{key}={value}"
    );
}

#[test]
fn comparisons() {
    check(
        "age",
        "eq.5",
        "\"age\" = $1::text::integer",
        vec![text("5")],
    );
    check(
        "age",
        "neq.5",
        "\"age\" <> $1::text::integer",
        vec![text("5")],
    );
    check(
        "age",
        "gte.18",
        "\"age\" >= $1::text::integer",
        vec![text("18")],
    );
    check(
        "age",
        "lt.0",
        "\"age\" < $1::text::integer",
        vec![text("0")],
    );
    check(
        "title",
        "like.*rust*",
        "\"title\"::text LIKE $1::text",
        vec![text("%rust%")],
    );
    check(
        "title",
        "ilike.Hello*",
        "\"title\"::text ILIKE $1::text",
        vec![text("Hello%")],
    );
    check(
        "title",
        "match.^a.c$",
        "\"title\"::text ~ $1::text",
        vec![text("^a.c$")],
    );
    check(
        "title",
        "imatch.x",
        "\"title\"::text ~* $1::text",
        vec![text("x")],
    );
    check(
        "age",
        "isdistinct.3",
        "\"age\" IS DISTINCT FROM $1::text::integer",
        vec![text("3")],
    );
    check("public", "is.true", "\"public\" IS TRUE", vec![]);
    check("owner", "is.null", "\"owner\" IS NULL", vec![]);
    check("public", "is.unknown", "\"public\" IS UNKNOWN", vec![]);
    check(
        "age",
        "not.eq.5",
        "NOT (\"age\" = $1::text::integer)",
        vec![text("5")],
    );
}

#[test]
fn lists_ranges_arrays_and_search() {
    check(
        "id",
        "in.(1,2,3)",
        "\"id\" = ANY($1::text[]::integer[])",
        vec![Param::TextArray(vec![
            Some("1".into()),
            Some("2".into()),
            Some("3".into()),
        ])],
    );
    check(
        "status",
        "in.(\"a,b\",\"say \\\"hi\\\"\")",
        "\"status\" = ANY($1::text[]::text[])",
        vec![Param::TextArray(vec![
            Some("a,b".into()),
            Some("say \"hi\"".into()),
        ])],
    );
    check(
        "id",
        "in.()",
        "\"id\" = ANY($1::text[]::integer[])",
        vec![Param::TextArray(vec![])],
    );
    check(
        "age",
        "gt(all).{1,2}",
        "\"age\" > ALL($1::text[]::integer[])",
        vec![Param::TextArray(vec![Some("1".into()), Some("2".into())])],
    );
    check(
        "title",
        "like(any).{a*,*b}",
        "\"title\"::text LIKE ANY($1::text[])",
        vec![Param::TextArray(vec![Some("a%".into()), Some("%b".into())])],
    );
    check(
        "tags",
        "cs.{rust,sql}",
        "\"tags\" @> $1::text::text[]",
        vec![text("{rust,sql}")],
    );
    check(
        "tags",
        "ov.{a}",
        "\"tags\" && $1::text::text[]",
        vec![text("{a}")],
    );
    check(
        "during",
        "adj.[2026-01-01,2026-02-01)",
        "\"during\" -|- $1::text::tstzrange",
        vec![text("[2026-01-01,2026-02-01)")],
    );
    check(
        "during",
        "sl.[1,2)",
        "\"during\" << $1::text::tstzrange",
        vec![text("[1,2)")],
    );
    check(
        "doc",
        "fts.cat & dog",
        "\"doc\" @@ to_tsquery($1::text)",
        vec![text("cat & dog")],
    );
    check(
        "body",
        "wfts(english).cat -dog",
        "to_tsvector($1::text::regconfig, \"body\"::text) @@ websearch_to_tsquery($1::text::regconfig, $2::text)",
        vec![text("english"), text("cat -dog")],
    );
}

#[test]
fn logical_groups_nest() {
    check(
        "or",
        "(age.lt.18,and(public.is.true,status.eq.done),not.and(id.eq.1,id.eq.2))",
        "(\"age\" < $1::text::integer) OR ((\"public\" IS TRUE) AND (\"status\" = $2::text::text)) OR (NOT ((\"id\" = $3::text::integer) AND (\"id\" = $4::text::integer)))",
        vec![text("18"), text("done"), text("1"), text("2")],
    );
    check(
        "not.or",
        "(age.eq.1,age.not.is.null)",
        "NOT ((\"age\" = $1::text::integer) OR (NOT (\"age\" IS NULL)))",
        vec![text("1")],
    );
    check(
        "and",
        "(title.eq.\"a,b (c)\",\"odd, col (x)\".eq.x)",
        "(\"title\" = $1::text::text) AND (\"odd, col (x)\" = $2::text::text)",
        vec![text("a,b (c)"), text("x")],
    );
}

/// Values that would break naive SQL stay in the parameters.
#[test]
fn hostile_values_are_parameters() {
    for value in [
        "'; DROP TABLE users; --",
        "a\\b",
        "x)y(z",
        "nul\0byte",
        "$1",
        "\"quoted\"",
    ] {
        check(
            "title",
            &format!("eq.{value}"),
            "\"title\" = $1::text::text",
            vec![text(value)],
        );
    }
    check(
        "we\"ird; col",
        "eq.1",
        "\"we\"\"ird; col\" = $1::text::text",
        vec![text("1")],
    );
}

#[test]
fn conditions_with_variables() {
    let claims = json!({"org_id": 42, "app_metadata": {"team": "blue"}});
    let user = Caller {
        uid: Some("7f0c3b5e-0000-4000-8000-000000000001"),
        role: "authenticated",
        claims: &claims,
    };
    let expr =
        parse_condition("or=(public.is.true,owner.eq.{auth.uid})&age=eq.{auth.claims.org_id}")
            .unwrap();
    assert_eq!(
        variables(&expr),
        vec![
            vec!["auth".to_owned(), "uid".to_owned()],
            vec!["auth".into(), "claims".into(), "org_id".into()]
        ]
    );
    assert_eq!(
        compile(&expr, &user),
        (
            "((\"public\" IS TRUE) OR (\"owner\" = $1::text::uuid)) AND (\"age\" = $2::text::integer)".to_owned(),
            vec![text("7f0c3b5e-0000-4000-8000-000000000001"), text("42")]
        )
    );
    // Without a user, {auth.uid} is NULL: the comparison matches no row.
    let expr = parse_condition("owner=eq.{auth.uid}").unwrap();
    assert_eq!(compile(&expr, &anon()).1, vec![Param::Text(None)]);
    let expr =
        parse_condition("status=eq.{auth.claims.app_metadata.team}&title=eq.{auth.role}").unwrap();
    assert_eq!(
        compile(&expr, &user).1,
        vec![text("blue"), text("authenticated")]
    );
    let expr = parse_condition("status=in.({auth.claims.missing},x)").unwrap();
    assert_eq!(
        compile(&expr, &user).1,
        vec![Param::TextArray(vec![None, Some("x".into())])]
    );
    // Braces that are not an auth variable are plain text.
    let expr = parse_condition("status=eq.{not_a_variable}").unwrap();
    assert_eq!(compile(&expr, &user).1, vec![text("{not_a_variable}")]);
}

#[test]
fn errors_say_what_to_fix() {
    let cases: &[(&str, &str, &str)] = &[
        ("age", "equals.5", "not a filter operator"),
        ("age", "5", "is not `op.value`"),
        ("age", "is.maybe", "is.null"),
        ("id", "in.1,2", "is not a list"),
        ("age", "in(any).(1)", "is not allowed"),
        ("or", "age.eq.1", "list in parentheses"),
        ("or", "(age.eq.1", "list in parentheses"),
        ("or", "(age)", "column.op.value"),
        ("or", "()", "empty"),
        ("and", "(title.eq.\"open)", "unbalanced"),
    ];
    for (key, value, message) in cases {
        let error = parse_param(key, value).expect_err(value);
        let text = format!("{error} {}", error.hint().unwrap_or_default());
        assert!(text.contains(message), "{key}={value}: {text}");
    }
    let error = to_sql(
        &parse_param("nope", "eq.1").unwrap(),
        &Table,
        &anon(),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("no column `nope`"));
    let unknown = parse_condition("age=eq.{auth.secret}").unwrap();
    let error = super::sql::check_variables(&unknown).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`{auth.secret}` is not a variable"),
        "{error:?}"
    );
    assert!(error.hint().unwrap().contains("{auth.uid}"));
    assert!(to_sql(&unknown, &Table, &anon(), &mut Vec::new()).is_err());
    assert!(super::sql::check_variables(
        &parse_condition("owner=eq.{auth.uid}&age=eq.{auth.claims.a.b}").unwrap()
    )
    .is_ok());
    assert!(parse_condition("").is_err());
    assert!(parse_condition("just-text")
        .unwrap_err()
        .hint()
        .unwrap()
        .contains("user_id=eq.{auth.uid}"));
}
