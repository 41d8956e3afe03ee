use super::*;
use crate::errors::Problem;
use crate::filter::parse_condition;
use crate::rest::parse_read;

fn table(name: &str, columns: &[(&str, &str)]) -> Table {
    Table {
        schema: "public".into(),
        name: name.into(),
        columns: columns
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect(),
        primary_key: vec!["id".into()],
        unique_keys: vec![vec!["id".into()]],
        computed: Vec::new(),
        defaults: BTreeMap::new(),
        hides_rows: false,
    }
}

fn fk(name: &str, from: &str, column: &str, to: &str) -> ForeignKey {
    ForeignKey {
        name: name.into(),
        table: from.into(),
        columns: vec![column.into()],
        foreign_table: to.into(),
        foreign_columns: vec!["id".into()],
    }
}

fn schema() -> Schema {
    let tables = [
        table(
            "we\"ird",
            &[
                ("id", "integer"),
                ("owner", "uuid"),
                ("title", "text"),
                ("data", "jsonb"),
            ],
        ),
        table("users", &[("id", "integer"), ("name", "text")]),
        table(
            "posts",
            &[
                ("id", "integer"),
                ("author_id", "integer"),
                ("title", "text"),
            ],
        ),
        table(
            "comments",
            &[("id", "integer"), ("post_id", "integer"), ("body", "text")],
        ),
        table("tags", &[("id", "integer"), ("label", "text")]),
        table(
            "post_tags",
            &[("post_id", "integer"), ("tag_id", "integer")],
        ),
    ];
    Schema {
        name: "public".into(),
        tables: tables.into_iter().map(|t| (t.name.clone(), t)).collect(),
        foreign_keys: vec![
            fk("posts_author_id_fkey", "posts", "author_id", "users"),
            fk("comments_post_id_fkey", "comments", "post_id", "posts"),
            fk("post_tags_post_id_fkey", "post_tags", "post_id", "posts"),
            fk("post_tags_tag_id_fkey", "post_tags", "tag_id", "tags"),
        ],
        functions: BTreeMap::new(),
        computed_relationships: vec![super::super::ComputedRelationship {
            function: "top_comment".into(),
            table: "posts".into(),
            target: "comments".into(),
            to_one: true,
        }],
        postgis: None,
    }
}

/// Every embedded table may be read, except `users` rows only where
/// `name` is not null; `tags` are refused.
struct Rules;

/// What reading through [`Rules`] can fail with.
#[derive(Debug)]
enum Refused {
    Table,
    Query(QueryError),
}

impl From<QueryError> for Refused {
    fn from(error: QueryError) -> Self {
        Refused::Query(error)
    }
}

impl From<FilterError> for Refused {
    fn from(error: FilterError) -> Self {
        Refused::Query(error.into())
    }
}

impl Refused {
    fn query(self) -> QueryError {
        match self {
            Refused::Query(error) => error,
            Refused::Table => panic!("refused"),
        }
    }
}

impl Access for Rules {
    type Error = Refused;
    fn select(&self, table: &Table, _: &[String]) -> Result<Option<Expr>, Refused> {
        match table.name.as_str() {
            "users" => Ok(Some(parse_condition("name=not.is.null").unwrap())),
            "tags" => Err(Refused::Table),
            _ => Ok(None),
        }
    }
    fn execute(&self, _: &str, _: &str) -> Result<(), Refused> {
        Ok(())
    }
}

fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn text(value: &str) -> Param {
    Param::Text(Some(value.into()))
}

/// Snapshot tests: URL → plan → SQL and parameters, with no database.
#[test]
fn golden_read_sql() {
    let caller = Caller {
        uid: Some("u1"),
        role: "authenticated",
        claims: &serde_json::Value::Null,
    };
    let owner = parse_condition("owner=eq.{auth.uid}").unwrap();
    type Case<'a> = (&'a str, &'a str, Option<&'a Expr>);
    let cases: Vec<Case> = vec![
        (
            "we\"ird",
            "",
            None,
        ),
        (
            "we\"ird",
            "select=id,heading:title,data->a->>b,id::text&title=ilike.*a*&order=id.desc.nullslast&limit=5&offset=10",
            Some(&owner),
        ),
        (
            "posts",
            "select=title,author:users(name),comments(body)&comments.order=id.desc&comments.limit=2",
            None,
        ),
        (
            "users",
            "select=name,posts!inner(title)&posts.title=eq.x",
            None,
        ),
        // A computed relationship: the function over the parent's row.
        ("posts", "select=title,top_comment(body)", None),
    ];
    let rules = Rules;
    let mut snapshot = String::new();
    for (name, query, condition) in cases {
        let read = parse_read(&pairs(query)).unwrap();
        let schema = schema();
        let statements = read_sql(
            Source::table(&schema, &schema.tables[name], 100),
            &read,
            condition,
            &rules,
            &caller,
        )
        .unwrap();
        snapshot.push_str(&format!(
            "{name}?{query}\n{}\n{:?}\n\n",
            statements.read.0, statements.read.1
        ));
    }
    // Each case's SQL and parameters, reviewed: `UPDATE_EXPECT=1 cargo
    // test` rewrites the file after an intended change.
    expect_test::expect_file!["golden/read.sql"].assert_eq(&snapshot);

    // The count has the same conditions and only their parameters.
    let read = parse_read(&pairs("select=name,posts!inner(id)&name=eq.x")).unwrap();
    let schema = schema();
    let statements = read_sql(
        Source::table(&schema, &schema.tables["users"], 100),
        &read,
        None,
        &rules,
        &caller,
    )
    .unwrap();
    assert_eq!(
        statements.count_exact(),
        (
            "SELECT count(*) FROM \"public\".\"users\" AS \"t0\" WHERE (\"t0\".\"name\" = $1::text::text) AND EXISTS (SELECT 1 FROM \"public\".\"posts\" AS \"t1\" WHERE \"t1\".\"author_id\" = \"t0\".\"id\")".to_owned(),
            vec![text("x")]
        )
    );

    // Many-to-many goes through the junction; a refused table refuses the read.
    let read = parse_read(&pairs("select=title,comments(body)")).unwrap();
    let with_junction = read_sql(
        Source::table(&schema, &schema.tables["tags"], 100),
        &parse_read(&pairs("select=label,posts(title)")).unwrap(),
        None,
        &rules,
        &caller,
    )
    .unwrap();
    assert!(with_junction.read.0.contains("FROM \"public\".\"posts\" AS \"t1\" WHERE EXISTS (SELECT 1 FROM \"public\".\"post_tags\" AS \"t2\" WHERE \"t2\".\"tag_id\" = \"t0\".\"id\" AND \"t2\".\"post_id\" = \"t1\".\"id\")"), "{}", with_junction.read.0);
    assert!(read_sql(
        Source::table(&schema, &schema.tables["posts"], 100),
        &parse_read(&pairs("select=title,tags(label)")).unwrap(),
        None,
        &rules,
        &caller,
    )
    .is_err());
    assert!(read_sql(
        Source::table(&schema, &schema.tables["posts"], 100),
        &read,
        None,
        &rules,
        &caller
    )
    .is_ok());
    let error = read_sql(
        Source::table(&schema, &schema.tables["posts"], 100),
        &parse_read(&pairs("select=titel")).unwrap(),
        None,
        &rules,
        &caller,
    )
    .unwrap_err()
    .query();
    assert_eq!(error.hint().as_deref(), Some("did you mean `title`?"));
    let error = read_sql(
        Source::table(&schema, &schema.tables["posts"], 100),
        &parse_read(&pairs("select=title->a")).unwrap(),
        None,
        &rules,
        &caller,
    )
    .unwrap_err()
    .query();
    assert!(error.to_string().contains("not json"), "{error}");
    let mut paged = Source::table(&schema, &schema.tables["posts"], 100);
    paged.default_rows = 20;
    let default = read_sql(
        paged,
        &parse_read(&pairs("")).unwrap(),
        None,
        &rules,
        &caller,
    )
    .unwrap();
    assert!(
        default.read.0.ends_with(" LIMIT 20) t") && default.read.1.is_empty(),
        "the default page size applies: {}",
        default.read.0
    );
    let capped = read_sql(
        Source::table(&schema, &schema.tables["posts"], 100),
        &parse_read(&pairs("limit=100000")).unwrap(),
        None,
        &rules,
        &caller,
    )
    .unwrap();
    assert!(
        capped.read.0.ends_with(" LIMIT 100) t") && capped.read.1.is_empty(),
        "the cap applies: {}",
        capped.read.0
    );
}
