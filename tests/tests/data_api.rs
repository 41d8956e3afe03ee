//! The data API over a fixture schema with hostile identifiers (quotes,
//! dots, semicolons, spaces, commas, parentheses, mixed case) and hostile
//! values: embedding shapes, select renames/casts/JSON paths, both pagination
//! styles, every `Prefer`, upserts, bulk inserts, idempotency (concurrent
//! too), batches, RPC, error mapping, the schema cache following DDL, and
//! policy conditions inside embedded resources and counts.

use basalt_tests::Basalt;
use reqwest::Method;
use serde_json::{json, Value};

/// The fixture: authors ← posts (a table named with a quote, a semicolon, a
/// dot and a space) ← comments, posts ↔ tags through post_tags, and two
/// foreign keys from posts to authors (author and editor) to disambiguate.
const FIXTURE: &str = r#"
create table "Authors" (id serial primary key, "Full Name" text not null, bio jsonb);
create table "we""ird; tab.le" (
    id serial primary key,
    "Author Id" int references "Authors"(id),
    editor int constraint post_editor references "Authors"(id),
    "ti""tle" text,
    "odd, col (x)" text,
    "a.b" int,
    score int constraint score_not_negative check (score >= 0),
    status text not null default 'draft',
    data jsonb default '{}'
);
create table comments (id serial primary key, post_id int references "we""ird; tab.le"(id) on delete cascade, body text);
create table tags (id serial primary key, label text unique not null);
create table post_tags (post_id int references "we""ird; tab.le"(id), tag_id int references tags(id), primary key (post_id, tag_id));
insert into "Authors" ("Full Name", bio) values ('Ann', '{"city": "Oslo", "langs": ["no", "en"]}'), ('Bo', '{"city": "Rome"}'), ('Cy', null);
insert into "we""ird; tab.le" ("Author Id", editor, "ti""tle", "odd, col (x)", "a.b", score, data) values
  (1, 2, 'first', 'o''brien, (x)', 1, 10, '{"n": 1}'),
  (1, null, 'second', '50%_off\path', 2, 20, '{"n": 2}'),
  (2, 1, 'third', null, 3, 30, '{"n": 3}');
insert into comments (post_id, body) values (1, 'c1'), (1, 'c2'), (1, 'c3'), (2, 'c4');
insert into tags (label) values ('rust'), ('sql'), ('web');
insert into post_tags values (1, 1), (1, 2), (2, 2);
"#;

/// The posts table in a path, and (quoted, its quote escaped) in select=.
const POSTS: &str = "we%22ird%3B%20tab.le";
const POSTS_QUOTED: &str = "%22we%5C%22ird%3B%20tab.le%22";

async fn fixture() -> Basalt {
    let basalt = Basalt::start().await;
    let response = basalt.admin_sql(FIXTURE).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    basalt
}

#[tokio::test]
async fn embedding_every_shape_in_one_statement() {
    let basalt = fixture().await;
    let api = basalt.as_service();

    // Many-to-one with a rename, disambiguated by the FK column, and by the
    // constraint name; one-to-many with its own order and limit; many-to-many.
    let answer = api
        .get(&format!(
            "/rest/v1/{POSTS}?select=id,heading:%22ti%5C%22tle%22,writer:Authors!Author%20Id(name:%22Full%20Name%22),editor:Authors!post_editor(%22Full%20Name%22),comments(body),tags(label)&comments.order=id.desc&comments.limit=2&tags.order=label&order=id"
        ))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let rows = answer.json();
    assert_eq!(
        rows[0],
        json!({"id": 1, "heading": "first", "writer": {"name": "Ann"}, "editor": {"Full Name": "Bo"},
               "comments": [{"body": "c3"}, {"body": "c2"}], "tags": [{"label": "rust"}, {"label": "sql"}]})
    );
    assert_eq!(
        rows[1]["editor"],
        Value::Null,
        "a to-one without a row is null"
    );
    assert_eq!(
        rows[2]["comments"],
        json!([]),
        "a to-many without rows is []"
    );

    // Without a hint, two keys to Authors are ambiguous: as PostgREST, 300
    // Multiple Choices (PGRST201) naming both.
    let answer = api
        .get(&format!("/rest/v1/{POSTS}?select=id,Authors(id)"))
        .await;
    assert_eq!(answer.status, 300);
    assert_eq!(answer.json()["code"], "PGRST201");
    let hint = answer.json()["hint"].as_str().unwrap().to_owned();
    assert!(
        hint.contains("Authors!post_editor") && hint.contains("Authors!"),
        "{hint}"
    );

    // Nested, reversed (one-to-many from Authors), with a filter on the
    // embedded rows only (parents stay), and !inner (parents filtered too,
    // counts included).
    let answer = api
        .send(
            Method::GET,
            &format!("/rest/v1/Authors?select=%22Full%20Name%22,posts:{POSTS_QUOTED}!Author%20Id(id,comments(body))&posts.id=eq.2&order=id"),
            &[],
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.json(),
        json!([
            {"Full Name": "Ann", "posts": [{"id": 2, "comments": [{"body": "c4"}]}]},
            {"Full Name": "Bo", "posts": []},
            {"Full Name": "Cy", "posts": []}
        ])
    );
    let answer = api
        .send(
            Method::GET,
            &format!("/rest/v1/Authors?select=%22Full%20Name%22,posts:{POSTS_QUOTED}!Author%20Id!inner(id)&posts.score=gte.20"),
            &[("prefer", "count=exact")],
            None,
        )
        .await;
    assert_eq!(
        answer.json(),
        json!([
            {"Full Name": "Ann", "posts": [{"id": 2}]},
            {"Full Name": "Bo", "posts": [{"id": 3}]}
        ])
    );
    assert_eq!(answer.header("content-range"), "0-1/2");

    // An unknown relation is a 400 with a hint, never a 500.
    let answer = api.get("/rest/v1/tags?select=label,Authors(id)").await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert_eq!(answer.json()["code"], "PGRST200");
}

#[tokio::test]
async fn select_renames_casts_json_paths_and_hostile_values() {
    let basalt = fixture().await;
    let api = basalt.as_service();
    let answer = api
        .get("/rest/v1/Authors?select=who:%22Full%20Name%22,id::text,city:bio->>city,first_lang:bio->langs->>0,bio->langs&order=id&bio->>city=like.*o*")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.json(),
        json!([
            {"who": "Ann", "id": "1", "city": "Oslo", "first_lang": "no", "langs": ["no", "en"]},
            {"who": "Bo", "id": "2", "city": "Rome", "first_lang": null, "langs": null}
        ])
    );
    // Order by a JSON path; a column with a dot in its name, quoted.
    let answer = api
        .get(&format!(
            "/rest/v1/{POSTS}?select=id,%22a.b%22&order=data->n.desc&%22a.b%22=lt.3"
        ))
        .await;
    assert_eq!(
        answer.json(),
        json!([{"id": 2, "a.b": 2}, {"id": 1, "a.b": 1}])
    );
    // A cast to something that is not a type name never reaches SQL.
    let answer = api.get("/rest/v1/Authors?select=id::text;drop").await;
    assert_eq!(answer.status, 400);
    // An unknown type in a cast: PostgreSQL's error, as a 400.
    let answer = api.get("/rest/v1/Authors?select=id::nosuchtype").await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    // A JSON path on a non-JSON column.
    let answer = api.get("/rest/v1/Authors?select=id->x").await;
    assert_eq!(answer.status, 400);

    // Hostile values round-trip through writes and filters unchanged.
    let long = "x".repeat(5_000);
    for value in [
        "o'brien \"quoted\"",
        "back\\slash",
        "a,b (c)",
        "50%_off",
        long.as_str(),
    ] {
        let answer = api
            .send(
                Method::POST,
                "/rest/v1/tags",
                &[("prefer", "return=representation")],
                Some(json!({"label": value})),
            )
            .await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        let quoted = format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""));
        let encoded: String = url::form_urlencoded::byte_serialize(quoted.as_bytes()).collect();
        let answer = api
            .get(&format!("/rest/v1/tags?select=label&label=in.({encoded})"))
            .await;
        assert_eq!(answer.json(), json!([{"label": value}]), "{value:.40}");
    }
    // A 100 kB value is written and read back whole.
    let huge = "y".repeat(100_000);
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/tags",
            &[("prefer", "return=representation")],
            Some(json!({"label": huge})),
        )
        .await;
    let id = answer.json()[0]["id"].clone();
    assert_eq!(
        api.get(&format!("/rest/v1/tags?id=eq.{id}")).await.json()[0]["label"],
        huge.as_str()
    );
    // `%` and `_` in eq are literal, not wildcards.
    let answer = api.get("/rest/v1/tags?label=eq.50%25_of_").await;
    assert_eq!(answer.json(), json!([]));
    // NUL cannot be stored in text: a 400, nothing written.
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/tags",
            &[],
            Some(json!({"label": "nul\u{0}byte"})),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
}

#[tokio::test]
async fn pagination_by_range_offset_and_cursor_with_every_count() {
    let basalt = fixture().await;
    let api = basalt.as_service();
    let insert = (0..25)
        .map(|i| json!({"label": format!("t{i:02}")}))
        .collect::<Vec<_>>();
    assert_eq!(
        api.send(
            Method::POST,
            "/rest/v1/tags",
            &[],
            Some(Value::Array(insert))
        )
        .await
        .status,
        201
    );
    // 28 tags in all. Range header: 206 with the total.
    let answer = api
        .send(
            Method::GET,
            "/rest/v1/tags?select=id&order=id",
            &[("range", "5-9"), ("prefer", "count=exact")],
            None,
        )
        .await;
    assert_eq!(answer.status, 206);
    assert_eq!(answer.header("content-range"), "5-9/28");
    assert_eq!(answer.json().as_array().unwrap().len(), 5);
    // Past the end: 416 with the total.
    let answer = api
        .send(
            Method::GET,
            "/rest/v1/tags",
            &[("range", "40-49"), ("prefer", "count=exact")],
            None,
        )
        .await;
    assert_eq!(answer.status, 416, "{}", answer.text);
    let answer = api
        .send(Method::GET, "/rest/v1/tags", &[("range", "9-5")], None)
        .await;
    assert_eq!(answer.status, 416);
    // Planned and estimated counts come back as numbers in Content-Range.
    for count in ["planned", "estimated"] {
        let answer = api
            .send(
                Method::GET,
                "/rest/v1/tags?limit=1",
                &[("prefer", &format!("count={count}"))],
                None,
            )
            .await;
        assert_eq!(answer.status, 206, "{}", answer.text);
        let total = answer
            .header("content-range")
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        assert!(total.parse::<i64>().unwrap() > 0, "{count}: {total}");
        assert_eq!(
            answer.header("preference-applied"),
            format!("count={count}")
        );
    }
    let answer = api
        .send(
            Method::GET,
            "/rest/v1/tags?limit=1",
            &[("prefer", "count=estimated")],
            None,
        )
        .await;
    assert_eq!(answer.header("content-range"), "0-0/28", "small: exact");

    // Cursor pagination over a non-unique order (the key completes it):
    // every row exactly once, and a row inserted before the cursor
    // position meanwhile does not shift the pages.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let answer = api
            .get(&format!(
                "/rest/v1/tags?select=id,label&order=label.desc&limit=10&cursor={cursor}"
            ))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        for row in answer.json().as_array().unwrap() {
            seen.push(row["label"].as_str().unwrap().to_owned());
        }
        pages += 1;
        if pages == 1 {
            api.send(
                Method::POST,
                "/rest/v1/tags",
                &[],
                Some(json!({"label": "zzz"})),
            )
            .await;
        }
        match answer.headers.get("basalt-next-cursor") {
            Some(next) => cursor = next.to_str().unwrap().to_owned(),
            None => break,
        }
    }
    let mut expected = seen.clone();
    expected.sort_by(|a, b| b.cmp(a));
    expected.dedup();
    assert_eq!(seen, expected, "in order, each once");
    assert_eq!(
        seen.len(),
        28,
        "the row inserted behind the cursor is not served"
    );
    // A tampered cursor, or one reused with other filters: 400 invalid_cursor.
    let first = api
        .get("/rest/v1/tags?select=id,label&order=label&limit=2&cursor=")
        .await;
    let token = first.header("basalt-next-cursor").to_owned();
    let mut forged = token.clone().into_bytes();
    forged[3] ^= 1;
    let forged = String::from_utf8(forged).unwrap();
    for path in [
        format!("/rest/v1/tags?select=id,label&order=label&limit=2&cursor={forged}"),
        format!("/rest/v1/tags?select=id,label&order=label&limit=2&label=neq.x&cursor={token}"),
    ] {
        let answer = api.get(&path).await;
        assert_eq!(answer.status, 400, "{}", answer.text);
        assert_eq!(answer.json()["code"], "invalid_cursor");
    }
}

#[tokio::test]
async fn formats_csv_and_single_object() {
    let basalt = fixture().await;
    let api = basalt.as_service();
    let answer = api
        .send(
            Method::GET,
            &format!("/rest/v1/{POSTS}?select=id,%22odd,%20col%20(x)%22&order=id"),
            &[("accept", "text/csv")],
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.header("content-type").starts_with("text/csv"));
    assert_eq!(
        answer.text,
        "id,\"odd, col (x)\"\n1,\"o'brien, (x)\"\n2,50%_off\\path\n3,\n"
    );
    let answer = api
        .send(
            Method::GET,
            "/rest/v1/tags",
            &[("accept", "image/png")],
            None,
        )
        .await;
    assert_eq!(answer.status, 406);
    assert_eq!(answer.json()["code"], "PGRST107");
}

#[tokio::test]
async fn writes_upserts_and_every_prefer() {
    let basalt = fixture().await;
    let api = basalt.as_service();
    // Bulk insert with missing=default: an absent key takes the default, a
    // null stays null; columns= ignores other keys.
    let answer = api
        .send(
            Method::POST,
            &format!("/rest/v1/{POSTS}?select=title:%22ti%5C%22tle%22,status,score"),
            &[("prefer", "return=representation, missing=default")],
            Some(json!([{"ti\"tle": "a", "score": 1}, {"ti\"tle": "b", "status": "live", "score": null}])),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(
        answer.json(),
        json!([{"title": "a", "status": "draft", "score": 1}, {"title": "b", "status": "live", "score": null}])
    );
    assert_eq!(
        answer.header("preference-applied"),
        "return=representation, missing=default"
    );
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/tags?columns=label",
            &[("prefer", "return=representation")],
            Some(json!({"label": "extra", "id": 999})),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_ne!(
        answer.json()[0]["id"],
        999,
        "columns= left id to its default"
    );

    // return=headers-only: a Location for the one inserted row.
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/tags",
            &[("prefer", "return=headers-only")],
            Some(json!({"label": "located"})),
        )
        .await;
    assert_eq!(answer.status, 201);
    let location = answer.header("location").to_owned();
    assert!(location.starts_with("/rest/v1/tags?id=eq."), "{location}");
    assert_eq!(api.get(&location).await.json()[0]["label"], "located");

    // Upsert on a unique column: merge updates, ignore keeps.
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/tags?on_conflict=label&select=label",
            &[(
                "prefer",
                "resolution=ignore-duplicates,return=representation",
            )],
            Some(json!([{"label": "rust"}, {"label": "new"}])),
        )
        .await;
    assert_eq!(
        answer.json(),
        json!([{"label": "new"}]),
        "the duplicate was skipped"
    );
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/Authors",
            &[(
                "prefer",
                "resolution=merge-duplicates,return=representation",
            )],
            Some(json!({"id": 3, "Full Name": "Cyrus"})),
        )
        .await;
    assert_eq!(answer.status, 200, "merged, none created: {}", answer.text);
    assert_eq!(answer.json()[0]["Full Name"], "Cyrus");

    // PUT: the whole row by primary key; the key in the body must match.
    let row = json!({"id": 2, "Full Name": "Bob", "bio": null});
    let answer = api
        .send(
            Method::PUT,
            "/rest/v1/Authors?id=eq.2",
            &[("prefer", "return=representation")],
            Some(row.clone()),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json(), json!([row]));
    let answer = api
        .send(
            Method::PUT,
            "/rest/v1/Authors?id=eq.9",
            &[],
            Some(json!({"id": 9, "Full Name": "New", "bio": null})),
        )
        .await;
    assert_eq!(
        answer.status, 201,
        "creates (PostgREST 12: 201 for a PUT that inserts)"
    );
    for (path, body) in [
        (
            "/rest/v1/Authors?id=eq.2",
            json!({"id": 3, "Full Name": "x", "bio": null}),
        ),
        (
            "/rest/v1/Authors?id=eq.2",
            json!({"id": 2, "Full Name": "x"}),
        ),
        (
            "/rest/v1/Authors?id=gt.2",
            json!({"id": 3, "Full Name": "x", "bio": null}),
        ),
    ] {
        let answer = api.send(Method::PUT, path, &[], Some(body)).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.text);
    }

    // max-affected: more rows would change → nothing changes.
    let answer = api
        .send(
            Method::PATCH,
            &format!("/rest/v1/{POSTS}?score=gte.0"),
            &[("prefer", "max-affected=2")],
            Some(json!({"status": "bulk"})),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert_eq!(answer.json()["code"], "PGRST124");
    let answer = api.get(&format!("/rest/v1/{POSTS}?status=eq.bulk")).await;
    assert_eq!(answer.json(), json!([]), "rolled back");
    let answer = api
        .send(
            Method::DELETE,
            "/rest/v1/comments?post_id=eq.1",
            &[("prefer", "max-affected=3,return=representation")],
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json().as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn database_errors_map_to_documented_statuses() {
    let basalt = fixture().await;
    let api = basalt.as_service();
    let cases = [
        (
            "/rest/v1/tags",
            json!({"label": "rust"}),
            409,
            "23505",
            "tags_label_key",
        ),
        (
            "/rest/v1/post_tags",
            json!({"post_id": 1, "tag_id": 99}),
            409,
            "23503",
            "post_tags_tag_id_fkey",
        ),
        (
            "/rest/v1/Authors",
            json!({"bio": {}}),
            400,
            "23502",
            "Full Name",
        ),
        (
            &format!("/rest/v1/{POSTS}")[..],
            json!({"score": -1}),
            400,
            "23514",
            "score_not_negative",
        ),
        (
            "/rest/v1/tags",
            json!({"id": "not a number", "label": "x"}),
            400,
            "22P02",
            "`id` is integer",
        ),
        (
            "/rest/v1/tags",
            json!([{"label": "ok"}, {"label": ["x"]}]),
            400,
            "22P02",
            "(row 1)",
        ),
    ];
    // On /rest/v1, as PostgREST: the SQLSTATE (or the one PostgreSQL would
    // raise), and PostgreSQL's message and detail naming the culprit.
    for (path, body, status, code, named) in cases {
        let answer = api.send(Method::POST, path, &[], Some(body.clone())).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.text);
        let error = answer.json();
        assert_eq!(error["code"], code, "{body}");
        let text = format!("{} {}", error["message"], error["details"]);
        assert!(text.contains(named), "{body}: {error}");
    }
    let answer = api.get("/rest/v1/tagz").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["hint"], "Did you mean `tags`?");
    let answer = api.get("/rest/v1/tags?lable=eq.x").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["hint"], "did you mean `label`?");
}

#[tokio::test]
async fn the_schema_cache_follows_ddl_on_every_replica() {
    let basalt = fixture().await;
    let other = Basalt::builder()
        .database_url(basalt.database_url().unwrap())
        .start()
        .await;
    let api = basalt.as_service();
    let other_api = other.as_service();
    // Warm both caches, then change the schema through SQL.
    assert_eq!(
        other_api
            .get("/rest/v1/tags?select=label&limit=1")
            .await
            .status,
        200
    );
    let response = basalt
        .admin_sql("alter table tags add column color text default 'red'; create table fresh (id int primary key)")
        .await;
    assert_eq!(response.status(), 200);
    // The other replica learns it from NOTIFY: a new column is not a miss
    // (the table is known), so only the notification can teach it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let answer = other_api.get("/rest/v1/tags?select=color&limit=1").await;
        if answer.status == 200 {
            assert_eq!(answer.json(), json!([{"color": "red"}]));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", answer.text);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(api.get("/rest/v1/fresh").await.text, "[]");
    // Embedding follows a new foreign key too.
    basalt
        .admin_sql("create table labels (id serial primary key, tag_id int references tags(id), note text); insert into labels (tag_id, note) values (1, 'n')")
        .await;
    // A relationship is not a table name, so only the notification teaches it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let answer = api
            .get("/rest/v1/tags?select=label,labels(note)&id=eq.1")
            .await;
        if answer.status == 200 {
            assert_eq!(
                answer.json(),
                json!([{"label": "rust", "labels": [{"note": "n"}]}])
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", answer.text);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The admin endpoint reloads on demand.
    let answer = api
        .send(Method::POST, "/admin/v1/schema/reload", &[], None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.json()["tables"].as_u64().unwrap() >= 7);
}

#[tokio::test]
async fn rpc_calls_functions_with_named_arguments() {
    let basalt = fixture().await;
    let api = basalt.as_service();
    let response = basalt
        .admin_sql(
            r#"create function add_them(a int, b int default 10) returns int language sql immutable as $$ select a + b $$;
               create function posts_above(min_score int) returns setof "we""ird; tab.le" language sql stable as $$ select * from "we""ird; tab.le" where score > min_score $$;
               create function add_tag(name text) returns tags language sql as $$ insert into tags (label) values (name) returning * $$;
               create function try_write() returns int language sql stable as $$ select 1 $$;
               create function sneaky() returns int language sql stable as $$ select (add_tag('sneaky')).id $$;
               create function touch() returns void language plpgsql volatile as $$ begin update tags set label = label where false; end $$;
               create function labels_of(ids int[]) returns setof text language sql stable as $$ select label from tags where id = any(ids) order by label $$;
               create function fail(msg text) returns int language plpgsql as $$ begin raise exception '%', msg; end $$;"#,
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(api.get("/rest/v1/rpc/add_them?a=1&b=2").await.text, "3");
    assert_eq!(
        api.get("/rest/v1/rpc/add_them?a=1").await.text,
        "11",
        "defaults"
    );
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/rpc/add_them",
            &[],
            Some(json!({"a": 5, "b": 6})),
        )
        .await;
    assert_eq!(answer.text, "11");
    // Rows of a table: filters, order and limit apply to the result.
    let answer = api
        .get("/rest/v1/rpc/posts_above?min_score=5&score=lt.30&order=score.desc&limit=1")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json()[0]["score"], 20);
    // ... and select= with embedding, like a read of the table.
    let answer = api
        .get("/rest/v1/rpc/posts_above?min_score=5&select=id,comments(body)&comments.order=id&order=id&limit=1")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.json(),
        json!([{"id": 1, "comments": [{"body": "c1"}, {"body": "c2"}, {"body": "c3"}]}])
    );
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/rpc/labels_of",
            &[],
            Some(json!({"ids": [1, 3]})),
        )
        .await;
    assert_eq!(answer.json(), json!(["rust", "web"]));
    // Volatile: POST only, and it writes.
    assert_eq!(api.get("/rest/v1/rpc/add_tag?name=x").await.status, 405);
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/rpc/add_tag",
            &[],
            Some(json!({"name": "via rpc"})),
        )
        .await;
    assert_eq!(answer.json()["label"], "via rpc");
    // A stable function runs read-only: its write fails and nothing stays.
    let answer = api
        .send(Method::POST, "/rest/v1/rpc/sneaky", &[], None)
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert_eq!(api.get("/rest/v1/tags?label=eq.sneaky").await.text, "[]");
    // Unknown function or argument names: 404 with a hint.
    let answer = api.get("/rest/v1/rpc/add_them?c=1").await;
    assert_eq!(answer.status, 404);
    assert_eq!(
        answer.json()["details"],
        "`add_them` cannot be called with the arguments c"
    );
    assert!(answer.json()["hint"]
        .as_str()
        .unwrap()
        .contains("add_them(a integer, b integer)"));
    let answer = api.get("/rest/v1/rpc/add_thme?a=1").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["hint"], "did you mean `add_them`?");
    // RAISE in the function: a 400 with its message.
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/rpc/fail",
            &[],
            Some(json!({"msg": "no way"})),
        )
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        (
            answer.json()["code"].as_str(),
            answer.json()["message"].as_str()
        ),
        (Some("P0001"), Some("no way")),
        "as PostgREST: the SQLSTATE and the raised message"
    );
    assert_eq!(api.get("/rest/v1/rpc/try_write").await.text, "1");
}

#[tokio::test]
async fn idempotency_keys_replay_and_never_write_twice() {
    let basalt = fixture().await;
    let api = basalt.as_service();
    let post = |idempotency: &'static str, label: &'static str| {
        let api = &api;
        async move {
            api.send(
                Method::POST,
                "/rest/v1/tags",
                &[
                    ("idempotency-key", idempotency),
                    ("prefer", "return=representation"),
                ],
                Some(json!({"label": label})),
            )
            .await
        }
    };
    let first = post("key-1", "once").await;
    assert_eq!(first.status, 201);
    let again = post("key-1", "once").await;
    assert_eq!(again.status, 201);
    assert_eq!(again.text, first.text, "the stored response");
    assert_eq!(again.header("idempotent-replayed"), "true");
    let count = api.get("/rest/v1/tags?label=eq.once").await.json();
    assert_eq!(count.as_array().unwrap().len(), 1, "written once");
    // The same key with another body: 422.
    let other = post("key-1", "different").await;
    assert_eq!(other.status, 422);
    assert_eq!(other.json()["code"], "idempotency_key_reused");
    // A failed write stores nothing: the retry runs.
    let failed = post("key-2", "rust").await;
    assert_eq!(failed.status, 409);
    assert_eq!(post("key-2", "rust").await.status, 409);

    // Concurrent requests with one key: exactly one write, one response.
    let slow = basalt
        .admin_sql("create function slow_insert(name text) returns tags language sql as $$ select pg_sleep(0.3); insert into tags (label) values (name) returning * $$")
        .await;
    assert_eq!(slow.status(), 200);
    let call = || {
        api.send(
            Method::POST,
            "/rest/v1/rpc/slow_insert",
            &[("idempotency-key", "concurrent")],
            Some(json!({"name": "raced"})),
        )
    };
    let answers = futures_util::future::join_all((0..4).map(|_| call())).await;
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.text, answers[0].text);
    }
    let raced = api.get("/rest/v1/tags?label=eq.raced").await.json();
    assert_eq!(
        raced.as_array().unwrap().len(),
        1,
        "one write for four requests"
    );
}

#[tokio::test]
async fn batches_commit_together_or_not_at_all() {
    let basalt = fixture().await;
    let api = basalt.as_service();
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/batch",
            &[],
            Some(json!({"operations": [
                {"op": "insert", "table": "tags", "rows": [{"label": "b1"}, {"label": "b2"}]},
                {"op": "update", "table": "Authors", "filter": "id=eq.1", "set": {"Full Name": "Anne"}},
                {"op": "upsert", "table": "tags", "rows": {"label": "rust"}, "on_conflict": ["label"], "ignore_duplicates": true},
                {"op": "delete", "table": "comments", "filter": "post_id=eq.2"},
                {"op": "rpc", "function": "now", "args": {}}
            ]})),
        )
        .await;
    // `now` is not in the exposed schema: the whole batch is refused with
    // the index of the operation, before anything runs.
    assert_eq!(answer.status, 404, "{}", answer.text);
    assert!(answer.json()["details"]
        .as_str()
        .unwrap()
        .starts_with("operations[4]"));
    basalt
        .admin_sql("create function tag_count() returns bigint language sql stable as $$ select count(*) from tags $$")
        .await;
    let operations = json!({"operations": [
        {"op": "insert", "table": "tags", "rows": [{"label": "b1"}, {"label": "b2"}]},
        {"op": "update", "table": "Authors", "filter": "id=eq.1", "set": {"Full Name": "Anne"}},
        {"op": "upsert", "table": "tags", "rows": {"label": "rust"}, "on_conflict": ["label"], "ignore_duplicates": true},
        {"op": "delete", "table": "comments", "filter": "post_id=eq.2"},
        {"op": "rpc", "function": "tag_count"}
    ]});
    let answer = api
        .send(Method::POST, "/rest/v1/batch", &[], Some(operations))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let results = answer.json()["results"].clone();
    assert_eq!(results[0]["rows"].as_array().unwrap().len(), 2);
    assert_eq!(results[1]["rows"][0]["Full Name"], "Anne");
    assert_eq!(results[2]["rows"], json!([]));
    assert_eq!(results[3]["rows"][0]["body"], "c4");
    assert_eq!(
        results[4]["result"], 5,
        "the rpc sees the batch's own insert"
    );

    // A failure in the middle rolls back what came before it.
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/batch",
            &[],
            Some(json!({"operations": [
                {"op": "insert", "table": "tags", "rows": {"label": "rolled back"}},
                {"op": "insert", "table": "tags", "rows": {"label": "rust"}}
            ]})),
        )
        .await;
    assert_eq!(answer.status, 409, "{}", answer.text);
    assert!(answer.json()["details"]
        .as_str()
        .unwrap()
        .starts_with("operations[1]: "));
    assert_eq!(
        api.get("/rest/v1/tags?label=eq.rolled%20back").await.text,
        "[]"
    );
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/batch",
            &[],
            Some(json!({"operations": []})),
        )
        .await;
    assert_eq!(answer.status, 400);
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/batch",
            &[],
            Some(json!({"operations": [{"op": "truncate", "table": "tags"}]})),
        )
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["code"], "invalid_json");
}

/// Policies reach inside embedded resources and counts: a user sees only
/// the embedded rows their condition allows, a refused embedded table
/// refuses the read, and `!inner` counts only visible rows.
#[tokio::test]
async fn policy_conditions_apply_to_embedded_rows_and_counts() {
    let basalt = fixture().await;
    let admin = basalt.as_service();
    let user = admin
        .send(Method::POST, "/auth/v1/admin/users", &[], Some(json!({"email": "u@example.com", "password": "password one", "email_confirm": true})))
        .await
        .json();
    assert!(user["id"].is_string(), "{user}");
    let session = basalt
        .as_anon()
        .send(
            Method::POST,
            "/auth/v1/token?grant_type=password",
            &[],
            Some(json!({"email": "u@example.com", "password": "password one"})),
        )
        .await
        .json();
    let response = basalt
        .admin_sql(r#"grant select on all tables in schema public to authenticated"#)
        .await;
    assert_eq!(response.status(), 200);
    for policy in [
        json!({"subject": "authenticated", "object": "table:public.Authors", "action": "select"}),
        json!({"subject": "authenticated", "object": "table:public.we\"ird; tab.le", "action": "select", "condition": "score=gte.20"}),
        json!({"subject": "authenticated", "object": "table:public.comments", "action": "select", "condition": "body=neq.c4"}),
    ] {
        let answer = admin
            .send(Method::POST, "/admin/v1/policies", &[], Some(policy))
            .await;
        assert_eq!(answer.status, 201, "{}", answer.text);
    }
    let user_api = basalt.as_user(session["access_token"].as_str().unwrap());
    let answer = user_api
        .send(
            Method::GET,
            &format!("/rest/v1/Authors?select=id,posts:{POSTS_QUOTED}!Author%20Id(id,comments(body))&order=id"),
            &[],
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.json(),
        json!([
            {"id": 1, "posts": [{"id": 2, "comments": []}]},
            {"id": 2, "posts": [{"id": 3, "comments": []}]},
            {"id": 3, "posts": []}
        ]),
        "post 1 (score 10) is hidden; comment c4 is hidden"
    );
    let answer = user_api
        .send(
            Method::GET,
            &format!("/rest/v1/Authors?select=id,{POSTS_QUOTED}!Author%20Id!inner(id)"),
            &[("prefer", "count=exact")],
            None,
        )
        .await;
    assert_eq!(answer.header("content-range"), "0-1/2");
    // Tags have no policy: embedding them is refused, not silently empty.
    let answer = user_api
        .get(&format!("/rest/v1/{POSTS}?select=id,tags(label)"))
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text);
}

/// `GET /rest/v1/` is an OpenAPI 3 document of what the caller may do,
/// generated from the schema cache.
#[tokio::test]
async fn openapi_describes_what_the_caller_may_do() {
    let basalt = fixture().await;
    basalt
        .admin_sql("create function add_them(a int, b int default 10) returns int language sql immutable as $$ select a + b $$")
        .await;
    basalt
        .admin_sql("select pg_notify('basalt_schema', '')")
        .await;
    let api = basalt.as_service();
    // The fixture's tables arrive through NOTIFY (the document names no
    // table, so it never reloads on a miss).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let answer = loop {
        let answer = api.get("/rest/v1/").await;
        if answer.text.contains("/we\\\"ird; tab.le") {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "{}", answer.text);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.header("content-type"), "application/openapi+json");
    // It parses as an OpenAPI 3.0 document (types, required fields, shapes).
    let document: openapiv3::OpenAPI = serde_json::from_str(&answer.text).unwrap();
    assert_eq!(document.openapi, "3.0.3");
    let posts = document.paths.paths["/we\"ird; tab.le"].as_item().unwrap();
    assert!(posts.get.is_some() && posts.post.is_some() && posts.put.is_some());
    let value = answer.json();
    let properties = &value["components"]["schemas"]["we\"ird; tab.le"]["properties"];
    assert_eq!(properties["score"]["type"], "integer");
    assert_eq!(properties["data"]["description"], "jsonb");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let value = api.get("/rest/v1/").await.json();
        if value["paths"]["/rpc/add_them"].is_object() {
            assert_eq!(
                value["paths"]["/rpc/add_them"]["post"]["requestBody"]["content"]
                    ["application/json"]["schema"]["required"],
                json!(["a"])
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The anon key, with no policy granting it anything, sees no paths; a
    // grant of select on one table shows that table's GET only.
    let anon = basalt.as_anon();
    assert_eq!(anon.get("/rest/v1/").await.json()["paths"], json!({}));
    let answer = api
        .send(
            Method::POST,
            "/admin/v1/policies",
            &[],
            Some(json!({"subject": "anon", "object": "table:public.tags", "action": "select"})),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let paths = anon.get("/rest/v1/").await.json()["paths"].clone();
        if paths != json!({}) {
            assert_eq!(paths.as_object().unwrap().len(), 1);
            assert!(paths["/tags"]["get"].is_object() && paths["/tags"]["post"].is_null());
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Schema changes through `/admin/v1/tables`: applied in a transaction with
/// their migration record, visible to the data API at once, exportable as
/// SQL files that rebuild the same schema elsewhere.
#[tokio::test]
async fn schema_changes_through_the_admin_api_are_recorded_and_reproducible() {
    let basalt = Basalt::start().await;
    let api = basalt.as_service();
    let send = |method: Method, path: &'static str, body: Value| {
        let api = &api;
        async move { api.send(method, path, &[], Some(body)).await }
    };
    let answer = send(
        Method::POST,
        "/admin/v1/tables",
        json!({"name": "projects", "columns": [
            {"name": "id", "type": "bigserial", "primary_key": true},
            {"name": "title", "type": "text", "nullable": false, "unique": true},
            {"name": "budget", "type": "numeric(10,2)", "check": "budget=gte.0", "default": 0},
            {"name": "created", "type": "timestamptz", "default_expression": "now()"}
        ]}),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let created = answer.json();
    assert_eq!(created["version"], 1);
    assert!(created["sql"]
        .as_str()
        .unwrap()
        .starts_with("CREATE TABLE \"public\".\"projects\""));
    assert_eq!(created["table"]["primary_key"], json!(["id"]));
    // The data API knows the table at once.
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/projects",
            &[("prefer", "return=representation")],
            Some(json!({"title": "apollo"})),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(answer.json()[0]["budget"], 0.0);
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/projects",
            &[],
            Some(json!({"title": "x", "budget": -5})),
        )
        .await;
    assert_eq!(answer.json()["code"], "23514");

    let answer = send(
        Method::PATCH,
        "/admin/v1/tables/projects",
        json!({"rename_columns": {"title": "name"}, "add_columns": [{"name": "status", "type": "text", "default": "open", "nullable": false}],
               "alter_columns": [{"name": "budget", "nullable": false}]}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        api.get("/rest/v1/projects?select=name,status").await.json(),
        json!([{"name": "apollo", "status": "open"}])
    );
    for (path, body) in [
        (
            "/admin/v1/tables",
            json!({"name": "tasks", "columns": [
            {"name": "id", "type": "serial", "primary_key": true},
            {"name": "project_id", "type": "bigint"},
            {"name": "title", "type": "text"}]}),
        ),
        (
            "/admin/v1/tables/tasks/foreign_keys",
            json!({"columns": ["project_id"], "references": {"table": "projects", "columns": ["id"]}, "on_delete": "cascade"}),
        ),
        (
            "/admin/v1/tables/tasks/indexes",
            json!({"columns": ["project_id", "title"]}),
        ),
    ] {
        let answer = send(Method::POST, path, body).await;
        assert_eq!(answer.status, 201, "{path}: {}", answer.text);
    }
    api.send(
        Method::POST,
        "/rest/v1/tasks",
        &[],
        Some(json!({"project_id": 1, "title": "launch"})),
    )
    .await;
    assert_eq!(
        api.get("/rest/v1/projects?select=name,tasks(title)")
            .await
            .json(),
        json!([{"name": "apollo", "tasks": [{"title": "launch"}]}]),
        "embedding follows the new foreign key at once"
    );

    // Refusals change nothing and record nothing.
    for (method, path, body, status) in [
        (
            Method::POST,
            "/admin/v1/tables",
            json!({"name": "projects", "columns": [{"name": "id", "type": "int"}]}),
            409,
        ),
        (
            Method::POST,
            "/admin/v1/tables",
            json!({"name": "t", "columns": [{"name": "a", "type": "text; drop table projects"}]}),
            400,
        ),
        (
            Method::POST,
            "/admin/v1/tables",
            json!({"name": "t", "columns": [{"name": "a", "type": "text", "default_expression": "pg_sleep(5)"}]}),
            400,
        ),
        (
            Method::POST,
            "/admin/v1/tables",
            json!({"name": "t", "columns": [{"name": "a", "type": "nosuchtype"}]}),
            400,
        ),
        (
            Method::PATCH,
            "/admin/v1/tables/projects",
            json!({"drop_columns": ["nope"]}),
            400,
        ),
        (
            Method::PATCH,
            "/admin/v1/tables/nope",
            json!({"drop_columns": ["x"]}),
            404,
        ),
        (
            Method::POST,
            "/admin/v1/tables",
            json!({"name": "t", "columns": [], "extra": 1}),
            400,
        ),
    ] {
        let answer = api.send(method, path, &[], Some(body.clone())).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.text);
    }
    let history = api.get("/admin/v1/migrations").await.json();
    let names: Vec<&str> = history["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "create table projects",
            "alter table projects",
            "create table tasks",
            "add foreign key on tasks",
            "create index on tasks"
        ]
    );
    let anon = basalt.as_anon();
    assert_eq!(anon.get("/admin/v1/tables").await.status, 403);

    // Exported, the history rebuilds the same tables in an empty database.
    let directory = tempfile::tempdir().unwrap();
    let output = basalt.run(&["migrate", "--export", directory.path().to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut files: Vec<_> = std::fs::read_dir(directory.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort_by_key(|path| {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        name[1..name.find("__").unwrap()].parse::<u32>().unwrap()
    });
    assert_eq!(files.len(), 5);
    assert!(files[0].ends_with("V1__create_table_projects.sql"));
    let elsewhere =
        basalt_tests::connect(&basalt_tests::PgServer::shared().fresh_database().await).await;
    for file in &files {
        elsewhere
            .batch_execute(&std::fs::read_to_string(file).unwrap())
            .await
            .unwrap();
    }
    let shape = "select table_name::text, column_name::text, data_type::text, is_nullable::text, coalesce(column_default, '')
                 from information_schema.columns where table_schema = 'public' order by 1, 2";
    let original = basalt_tests::connect(basalt.database_url().unwrap()).await;
    let read = |rows: Vec<tokio_postgres::Row>| -> Vec<Vec<String>> {
        rows.iter()
            .map(|row| (0..5).map(|i| row.get::<_, String>(i)).collect())
            .collect()
    };
    assert_eq!(
        read(elsewhere.query(shape, &[]).await.unwrap()),
        read(original.query(shape, &[]).await.unwrap())
    );

    let answer = api
        .send(Method::DELETE, "/admin/v1/tables/tasks", &[], None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(api.get("/rest/v1/tasks").await.status, 404);
}

/// A fuzz of the URL grammar over HTTP: random query strings, headers and
/// A fuzz of the URL grammar over HTTP: query strings, headers and bodies
/// built from the grammar's own pieces (well-formed parameters, mutated ones
/// and random ones) against the fixture schema never get a 5xx, and every
/// 4xx carries the error body.
#[tokio::test]
async fn the_url_grammar_never_yields_a_server_error() {
    let basalt = fixture().await;
    let api = basalt.as_service();
    // xorshift64*, seeded: the same requests on every run.
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: usize| -> usize {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    };
    let keys = [
        "select",
        "order",
        "limit",
        "offset",
        "cursor",
        "columns",
        "on_conflict",
        "id",
        "score",
        "\"ti\\\"tle\"",
        "data->n",
        "data->>n",
        "Authors.id",
        "comments.limit",
        "comments.order",
        "or",
        "and",
        "not.or",
        "\"a.b\"",
        "status",
        "x",
        "",
    ];
    // Lists past the 1,000-item bound (a select of ~1,700 items once
    // reached PostgreSQL's column limit and answered 500).
    let many = ",id".repeat(1100);
    let pieces = [
        many.as_str(),
        "eq.",
        "neq.",
        "gt.",
        "in.(",
        ")",
        "(",
        "1",
        "-1",
        "99999999999999999999",
        "abc",
        "*",
        ",",
        ".",
        "\"",
        "\\",
        "::text",
        "::",
        "->",
        "->>",
        "!inner",
        "!",
        ":",
        "%",
        "_",
        "{",
        "}",
        "is.null",
        "not.",
        "fts(english).",
        "cs.{1,2}",
        "id",
        "score",
        "comments(body)",
        "Authors!post_editor(id)",
        "tags(label)",
        "desc",
        ".nullsfirst",
        "\u{0}",
        "é",
        " ",
        "'",
        ";",
        "(any)",
        "like.*a*",
        "or(id.eq.1,score.gt.2)",
        "and(",
        "{auth.uid}",
    ];
    // Well-formed parameters per table, used as they are or with a piece
    // inserted.
    let tables: [(&str, &[(&str, &str)]); 6] = [
        (
            "tags",
            &[
                ("select", "id,label"),
                ("id", "in.(1,2,3)"),
                ("label", "like.*s*"),
                ("order", "id.desc"),
                ("limit", "2"),
                ("offset", "1"),
                ("or", "(id.eq.1,id.eq.2)"),
            ],
        ),
        (
            "Authors",
            &[
                ("select", "id,bio->city"),
                ("Full Name", "eq.Ann"),
                ("order", "id"),
                ("select", "*"),
                ("id", "lt.3"),
            ],
        ),
        (
            POSTS,
            &[
                ("select", "id,comments(body),tags(label)"),
                ("score", "gte.10"),
                ("order", "score.desc"),
                ("select", "n:id,data->n"),
                ("limit", "1"),
            ],
        ),
        (
            "comments",
            &[
                ("select", "id,body"),
                ("post_id", "eq.1"),
                ("body", "neq.c1"),
            ],
        ),
        ("nope", &[("select", "id")]),
        ("rpc/nope", &[("a", "1")]),
    ];
    let word = |next: &mut dyn FnMut(usize) -> usize| -> String {
        (0..1 + next(4))
            .map(|_| pieces[next(pieces.len())])
            .collect()
    };
    let mut failures = Vec::new();
    let (mut ok, mut refused) = (0, 0);
    for round in 0..400 {
        let (table, good) = tables[next(tables.len())];
        let mut pairs = Vec::new();
        for _ in 0..1 + next(3) {
            let (key, value) = match next(4) {
                0 => (keys[next(keys.len())].to_owned(), word(&mut next)),
                1 => {
                    let (key, value) = good[next(good.len())];
                    let at = next(value.len() + 1);
                    let piece = pieces[next(pieces.len())];
                    (
                        key.to_owned(),
                        format!("{}{piece}{}", &value[..at], &value[at..]),
                    )
                }
                _ => {
                    let (key, value) = good[next(good.len())];
                    (key.to_owned(), value.to_owned())
                }
            };
            pairs.push(format!(
                "{}={}",
                url::form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>(),
                url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
            ));
        }
        let path = format!("/rest/v1/{table}?{}", pairs.join("&"));
        let method = [
            Method::GET,
            Method::GET,
            Method::GET,
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
        ][next(8)]
        .clone();
        let mut headers = Vec::new();
        let range = format!("{}-{}", next(10), next(30));
        if next(4) == 0 {
            headers.push(("range", range.as_str()));
        }
        if next(2) == 0 {
            headers.push((
                "prefer",
                [
                    "count=exact",
                    "count=planned",
                    "return=representation",
                    "resolution=merge-duplicates",
                    "max-affected=1",
                    "missing=default",
                    "count=estimated",
                ][next(7)],
            ));
        }
        if next(3) == 0 {
            headers.push((
                "accept",
                [
                    "text/csv",
                    "application/vnd.pgrst.object+json",
                    "*/*",
                    "image/png",
                ][next(4)],
            ));
        }
        let body = match next(5) {
            0 => None,
            1 => Some(json!({"label": word(&mut next)})),
            2 => Some(json!([{"id": word(&mut next)}, {"score": next(50)}])),
            3 => Some(json!({word(&mut next): word(&mut next)})),
            _ => Some(json!("just a string")),
        };
        let answer = api
            .send(method.clone(), &path, &headers, body.clone())
            .await;
        if answer.status < 300 {
            ok += 1;
        } else {
            refused += 1;
        }
        let erred = answer.status >= 500
            || (answer.status >= 400
                && method != Method::HEAD
                && serde_json::from_str::<Value>(&answer.text)
                    .map_or(true, |v| v["code"].as_str().is_none()));
        if erred {
            failures.push(format!(
                "#{round} {method} {path} {headers:?} body={body:?}: {} {}",
                answer.status, answer.text
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The fuzz reaches both the planner's answers and its refusals.
    assert!(ok > 40 && refused > 40, "{ok} succeeded, {refused} refused");
}

/// A role that does not exist stops the start with a message.
#[tokio::test]
async fn a_missing_database_role_stops_the_start() {
    let mut bad = Basalt::builder()
        .env("BASALT_AUTHZ_DB_ROLE_ANON", "no_such_role")
        .no_wait()
        .start()
        .await;
    let status = bad.wait_exit(std::time::Duration::from_secs(30)).await;
    assert!(!status.success());
    assert!(
        bad.logs()
            .contains("authz.db_role_anon = `no_such_role`: PostgreSQL has no such role"),
        "{}",
        bad.logs()
    );
}

/// A read pipelines BEGIN, the role switch, the statement and ROLLBACK; when
/// the switch fails (here: the configured role was dropped after the start),
/// the rows the statement may still have produced are never answered.
#[tokio::test]
async fn a_failed_role_switch_answers_no_rows() {
    let role = format!("vanishing_anon_{}", std::process::id());
    let admin = basalt_tests::PgServer::shared().connect("postgres").await;
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} NOLOGIN"
        ))
        .await
        .unwrap();
    // Roles are cluster-wide: a login role of its own, so that the servers
    // of other tests never see a membership they did not ask for.
    let basalt = Basalt::builder()
        .env("BASALT_AUTHZ_DB_ROLE_ANON", role.clone())
        .env("BASALT_DATABASE_API_ROLE", format!("{role}_login"))
        .start()
        .await;
    basalt_tests::connect(basalt.database_url().unwrap())
        .await
        .batch_execute(&format!("DROP OWNED BY {role}"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
    let response = basalt
        .admin_sql("create table secrets (id int); insert into secrets values (42)")
        .await;
    assert_eq!(response.status(), 200);
    let api = basalt.as_service();
    let answer = api
        .send(
            Method::POST,
            "/admin/v1/policies",
            &[],
            Some(json!({"subject": "anon", "object": "table:public.secrets", "action": "select"})),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let anon = basalt.as_anon();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let answer = anon.get("/rest/v1/secrets").await;
        assert!(!answer.text.contains("42"), "{}", answer.text);
        if answer.status >= 500 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", answer.text);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// More schemas than the default one, picked with `Accept-Profile` (reads)
/// and `Content-Profile` (writes), as in PostgREST; policies name them.
#[tokio::test]
async fn extra_schemas_are_picked_by_profile_headers() {
    let basalt = Basalt::builder()
        .env("BASALT_REST_EXTRA_SCHEMAS", "api")
        .start()
        .await;
    let response = basalt
        .admin_sql(
            "create schema api; create table api.items (id serial primary key, name text);
             insert into api.items (name) values ('in api'); create table public.items (id int);
             grant usage on schema api to anon; grant select on api.items to anon",
        )
        .await;
    assert_eq!(response.status(), 200);
    let api = basalt.as_service();
    assert_eq!(
        api.get("/rest/v1/items").await.text,
        "[]",
        "the default schema"
    );
    let answer = api
        .send(
            Method::GET,
            "/rest/v1/items?select=name",
            &[("accept-profile", "api")],
            None,
        )
        .await;
    assert_eq!(
        answer.json(),
        json!([{"name": "in api"}]),
        "{}",
        answer.text
    );
    let answer = api
        .send(
            Method::POST,
            "/rest/v1/items",
            &[
                ("content-profile", "api"),
                ("prefer", "return=representation"),
            ],
            Some(json!({"name": "written"})),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(answer.json()[0]["name"], "written");
    let answer = api
        .send(
            Method::GET,
            "/rest/v1/items",
            &[("accept-profile", "secret")],
            None,
        )
        .await;
    assert_eq!(answer.status, 406);
    assert_eq!(answer.json()["code"], "PGRST106");
    // The policy object names the schema.
    let answer = api
        .send(
            Method::POST,
            "/admin/v1/policies",
            &[],
            Some(json!({"subject": "anon", "object": "table:api.items", "action": "select"})),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let anon = basalt.as_anon();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let answer = anon
            .send(
                Method::GET,
                "/rest/v1/items?select=name&order=id",
                &[("accept-profile", "api")],
                None,
            )
            .await;
        if answer.status == 200 {
            assert_eq!(
                answer.json(),
                json!([{"name": "in api"}, {"name": "written"}])
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", answer.text);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        anon.get("/rest/v1/items").await.status,
        401,
        "public.items is not granted"
    );
}

/// What the security review found, each now refused: SQL in a cast, deep
/// nesting, NUL in the query string, `limit` on writes, probing hidden
/// columns through filters or embedding, representations beyond the select
/// condition, idempotency keys shared by all anonymous callers.
#[tokio::test]
async fn hostile_requests_are_refused_and_hidden_data_stays_hidden() {
    let basalt = fixture().await;
    let api = basalt.as_service();
    for path in [
        "/rest/v1/tags?select=id::text%20from%20secrets%20t0%20union%20select%20label".to_owned(),
        format!(
            "/rest/v1/tags?select={}id{}",
            "tags(".repeat(40),
            ")".repeat(40)
        ),
        format!(
            "/rest/v1/tags?or=({}id.eq.1{})",
            "or(".repeat(40),
            ")".repeat(40)
        ),
        "/rest/v1/tags?label=eq.a%00b".to_owned(),
        "/rest/v1/tags?select=a%00b:id".to_owned(),
    ] {
        let answer = api.get(&path).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.text);
    }
    let answer = api
        .send(Method::DELETE, "/rest/v1/tags?id=gt.0&limit=1", &[], None)
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert_eq!(
        api.get("/rest/v1/tags")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        3,
        "nothing deleted"
    );
    let answer = api
        .send(
            Method::GET,
            "/rest/v1/tags",
            &[("range", "0-18446744073709551615")],
            None,
        )
        .await;
    assert!(answer.status < 500, "{}", answer.text);

    // A user who may read posts' id and title where score >= 20, and update
    // their status and id.
    let user = api
        .send(Method::POST, "/auth/v1/admin/users", &[], Some(json!({"email": "p@example.com", "password": "password one", "email_confirm": true})))
        .await
        .json();
    assert!(user["id"].is_string(), "{user}");
    let token = api
        .send(
            Method::POST,
            "/auth/v1/token?grant_type=password",
            &[],
            Some(json!({"email": "p@example.com", "password": "password one"})),
        )
        .await
        .json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    basalt
        .admin_sql("grant select, update on all tables in schema public to authenticated")
        .await;
    let object = "table:public.we\"ird; tab.le";
    for policy in [
        json!({"subject": "authenticated", "object": object, "action": "select", "condition": "score=gte.20", "columns": ["id", "score", "status"]}),
        json!({"subject": "authenticated", "object": object, "action": "update", "columns": ["id", "status"]}),
        json!({"subject": "authenticated", "object": "table:public.Authors", "action": "select"}),
    ] {
        let answer = api
            .send(Method::POST, "/admin/v1/policies", &[], Some(policy))
            .await;
        assert_eq!(answer.status, 201, "{}", answer.text);
    }
    let user = basalt.as_user(&token);
    // Filtering an update on a column the caller may neither update nor
    // read is refused; on one it may read (score), it is allowed.
    let answer = user
        .send(
            Method::PATCH,
            &format!("/rest/v1/{POSTS}?%22a.b%22=lt.100"),
            &[("prefer", "max-affected=0")],
            Some(json!({"status": "x"})),
        )
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text);
    let answer = user
        .send(
            Method::PATCH,
            &format!("/rest/v1/{POSTS}?score=lt.0"),
            &[],
            Some(json!({"status": "x"})),
        )
        .await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    // Embedding over a hidden column ("Author Id") is refused too.
    let answer = user
        .get(&format!(
            "/rest/v1/{POSTS}?select=id,Authors!Author%20Id!inner(id)&Authors.id=eq.1"
        ))
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text);
    // An update of every post shows only the rows and columns the caller may read.
    let answer = user
        .send(
            Method::PATCH,
            &format!("/rest/v1/{POSTS}?id=gt.0"),
            &[("prefer", "return=representation")],
            Some(json!({"status": "seen"})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let mut rows: Vec<Value> = answer.json().as_array().unwrap().clone();
    rows.sort_by_key(|row| row["id"].as_i64());
    assert_eq!(
        rows,
        vec![
            json!({"id": 2, "score": 20, "status": "seen"}),
            json!({"id": 3, "score": 30, "status": "seen"})
        ],
        "post 1 (score 10) was updated but is not shown; no other column is"
    );
    // Idempotency keys need a user (or the service_role key): all anonymous
    // callers share the anon key.
    let answer = api
        .send(
            Method::POST,
            "/admin/v1/policies",
            &[],
            Some(json!({"subject": "anon", "object": "table:public.tags", "action": "insert"})),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let anon = basalt.as_anon();
    let answer = anon
        .send(
            Method::POST,
            "/rest/v1/tags",
            &[("idempotency-key", "k")],
            Some(json!({"label": "x"})),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
}

/// Every filter operator over HTTP, on the data of docs/data-api.md's filter
/// table: each filter answers exactly the ids the docs list.
#[tokio::test]
async fn every_filter_operator_over_http() {
    let basalt = Basalt::start().await;
    let response = basalt
        .admin_sql(
            "create table posts (id int primary key, title text, body text, tags text[], published boolean);
             insert into posts values (1, 'Hello, world', 'First post.', '{intro}', true), (2, 'Draft: ideas', 'Not ready.', '{}', false),
               (3, 'Rust tips', 'Use clippy.', '{rust,tips}', true), (4, 'Bob''s draft', null, '{rust}', false), (5, 'Spam', 'Buy now!', '{}', true);
             create table shifts (id int primary key, hours int4range);
             insert into shifts values (1, '[8,12)'), (2, '[12,16)'), (3, '[14,20)'), (4, '[20,24)')",
        )
        .await;
    assert_eq!(response.status(), 200);
    let api = basalt.as_service();
    let cases: &[(&str, &str, &[i64])] = &[
        ("posts", "id=eq.3", &[3]),
        ("posts", "id=neq.3", &[1, 2, 4, 5]),
        ("posts", "id=gt.3", &[4, 5]),
        ("posts", "id=gte.3", &[3, 4, 5]),
        ("posts", "id=lt.3", &[1, 2]),
        ("posts", "id=lte.3", &[1, 2, 3]),
        ("posts", "title=like.*draft*", &[4]),
        ("posts", "title=ilike.*draft*", &[2, 4]),
        ("posts", "title=match.^[A-D]", &[2, 4]),
        ("posts", "title=imatch.^r", &[3]),
        ("posts", "body=is.null", &[4]),
        ("posts", "body=not.is.null", &[1, 2, 3, 5]),
        ("posts", "published=is.false", &[2, 4]),
        ("posts", "body=isdistinct.Not%20ready.", &[1, 3, 4, 5]),
        ("posts", "id=in.(1,3,5)", &[1, 3, 5]),
        ("posts", "title=in.(%22Hello,%20world%22,Spam)", &[1, 5]),
        ("posts", "tags=cs.%7Brust%7D", &[3, 4]),
        ("posts", "tags=cd.%7Brust,tips%7D", &[2, 3, 4, 5]),
        ("posts", "tags=ov.%7Bintro,tips%7D", &[1, 3]),
        ("shifts", "hours=sl.%5B16,18)", &[1, 2]),
        ("shifts", "hours=sr.%5B10,13)", &[3, 4]),
        ("shifts", "hours=nxl.%5B10,30)", &[2, 3, 4]),
        ("shifts", "hours=nxr.%5B0,14)", &[1]),
        ("shifts", "hours=adj.%5B16,20)", &[2, 4]),
        ("posts", "body=fts.clippy", &[3]),
        ("posts", "body=fts(english).posts", &[1]),
        ("posts", "body=plfts.first%20post", &[1]),
        ("posts", "body=phfts(english).buy%20now", &[5]),
        ("posts", "body=wfts(english).ready%20or%20clippy", &[2, 3]),
        ("posts", "title=like(any).%7B*Rust*,*Hello*%7D", &[1, 3]),
        ("posts", "id=gt(all).%7B1,2%7D", &[3, 4, 5]),
        ("posts", "title=not.ilike(any).%7B*draft*,spam%7D", &[1, 3]),
        (
            "posts",
            "or=(published.is.false,tags.cs.%7Btips%7D)",
            &[2, 3, 4],
        ),
        (
            "posts",
            "or=(id.eq.1,and(published.is.true,title.ilike.*tips*))",
            &[1, 3],
        ),
        ("posts", "not.or=(published.is.true,body.is.null)", &[2]),
        (
            "posts",
            "and=(id.gt.1,or(tags.cs.%7Brust%7D,title.eq.Spam))",
            &[3, 4, 5],
        ),
        ("posts", "id=gt.1&id=lt.4", &[2, 3]),
    ];
    for (table, filter, expected) in cases {
        let answer = api
            .get(&format!("/rest/v1/{table}?select=id&order=id&{filter}"))
            .await;
        assert_eq!(answer.status, 200, "{filter}: {}", answer.text);
        let ids: Vec<i64> = answer
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["id"].as_i64().unwrap())
            .collect();
        assert_eq!(&ids, expected, "{filter}");
    }
}
