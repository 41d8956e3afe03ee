//! Reads through /rest/v1 with the policy engine and row-level security both
//! in force: row conditions in the SQL, column lists, 401/403, and RLS as a
//! second layer that still hides rows the policies allow.

use basalt_tests::client::Client;
use basalt_tests::scenario::{Fixture, Scenario};
use basalt_tests::Basalt;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn reads_obey_policies_and_row_level_security() {
    let basalt = Basalt::start().await;
    let service = basalt.as_service();
    let mut fixture = Fixture::default();
    for name in ["alice", "bob"] {
        let (user, id) = Client::user(&basalt, &format!("{name}@example.com")).await;
        fixture.tokens.insert(name.into(), user.token.unwrap());
        fixture.vars.insert(name.into(), id);
    }
    let setup = fixture.fill(
        "create table posts (id serial primary key, author_id uuid, title text, secret text, published boolean);
         insert into posts (author_id, title, secret, published) values
           ('{alice}', 'alice draft', 's1', false), ('{alice}', 'alice public', 's2', true),
           ('{bob}', 'bob draft', 's3', false), ('{bob}', 'hidden by rls', 's4', true);
         grant select on posts to anon, authenticated;
         alter table posts enable row level security;
         create policy everyone on posts for select to anon, authenticated using (title <> 'hidden by rls');
         create table private_notes (id serial primary key, body text);
         insert into private_notes (body) values ('no grant');
         revoke all on private_notes from authenticated;",
    );
    assert_eq!(basalt.admin_sql(&setup).await.status(), 200);
    for policy in [
        json!({"subject": "anon", "object": "table:public.posts", "action": "select", "condition": "published=is.true", "columns": ["id", "title", "published"]}),
        json!({"subject": "authenticated", "object": "table:public.posts", "action": "select", "condition": "or=(published.is.true,author_id.eq.{auth.uid})"}),
        json!({"subject": "authenticated", "object": "table:public.private_notes", "action": "select"}),
    ] {
        service.policy(policy).await;
    }
    let scenarios = Scenario::load("scenarios/rest_reads.toml");
    Scenario::run_all(&scenarios, &basalt, &fixture).await;
}

#[tokio::test]
async fn counts_ranges_and_single_rows_respect_the_conditions() {
    let basalt = Basalt::start().await;
    let keys = basalt.keys();
    let (_, user) = basalt.as_service().call(Method::POST,
        "/auth/v1/admin/users",
        Some(json!({"email": "c@example.com", "password": "password one", "email_confirm": true})),
    )
    .await;
    let me = user["id"].as_str().unwrap().to_owned();
    let (_, session) = basalt
        .as_anon()
        .call(
            Method::POST,
            "/auth/v1/token?grant_type=password",
            Some(json!({"email": "c@example.com", "password": "password one"})),
        )
        .await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let setup = format!(
        "create table items (id int primary key, owner uuid, title text);
         insert into items select i, case when i <= 3 then '{me}'::uuid else gen_random_uuid() end, 'item ' || i from generate_series(1, 10) i;
         grant select on items to authenticated;"
    );
    assert_eq!(basalt.admin_sql(&setup).await.status(), 200);
    let (status, _) = basalt.as_service().call(Method::POST, "/admin/v1/policies",
        Some(json!({"subject": "authenticated", "object": "table:public.items", "action": "select", "condition": "owner=eq.{auth.uid}"}))).await;
    assert_eq!(status, 201);

    let get = |path: String, headers: Vec<(&'static str, &'static str)>| {
        let mut request = basalt
            .http
            .get(basalt.url(&path))
            .header("apikey", &keys.anon)
            .bearer_auth(&token);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    // The count sees only the caller's rows, whatever the page.
    let response = get(
        "/rest/v1/items?order=id&limit=2".into(),
        vec![("prefer", "count=exact")],
    )
    .await
    .unwrap();
    assert_eq!(response.headers()["content-range"], "0-1/3");
    assert_eq!(
        response
            .json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let response = get("/rest/v1/items?order=id&offset=2".into(), vec![])
        .await
        .unwrap();
    assert_eq!(response.headers()["content-range"], "2-2/*");
    let response = get(
        "/rest/v1/items?id=gt.100".into(),
        vec![("prefer", "count=exact")],
    )
    .await
    .unwrap();
    assert_eq!(response.headers()["content-range"], "*/0");
    // HEAD: the same count under the same condition, and no body.
    let response = basalt
        .http
        .head(basalt.url("/rest/v1/items?limit=1"))
        .header("apikey", &keys.anon)
        .bearer_auth(&token)
        .header("prefer", "count=exact")
        .send()
        .await
        .unwrap();
    // One of three rows: partial content, as PostgREST answers.
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()["content-range"], "0-0/3");
    assert!(response.bytes().await.unwrap().is_empty());

    let object = vec![("accept", "application/vnd.pgrst.object+json")];
    let response = get("/rest/v1/items?id=eq.2".into(), object.clone())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["title"], "item 2");
    // Another user's row by id: no row, never forbidden (406 PGRST116, as
    // PostgREST answers a single-row read that matches nothing).
    let response = get("/rest/v1/items?id=eq.7".into(), object.clone())
        .await
        .unwrap();
    assert_eq!(response.status(), 406);
    let body = response.json::<Value>().await.unwrap();
    assert_eq!(body["code"], "PGRST116");
    assert_eq!(body["details"], "The result contains 0 rows");
    let response = get("/rest/v1/items".into(), object).await.unwrap();
    assert_eq!(response.status(), 406);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "PGRST116");
}

/// Writes: the condition is checked on every new or updated row (the whole
/// statement rolls back otherwise), only granted columns may be written,
/// updates and deletes reach only the caller's rows, and need a filter.
#[tokio::test]
async fn writes_obey_conditions_and_column_lists() {
    let basalt = Basalt::start().await;
    let keys = basalt.keys();
    let anon = keys.anon.as_str();
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for name in ["alice", "bob"] {
        let (_, user) = basalt.as_service().call(Method::POST, "/auth/v1/admin/users", Some(json!({"email": format!("{name}@example.com"), "password": "password one", "email_confirm": true}))).await;
        ids.push(user["id"].as_str().unwrap().to_owned());
        let (_, session) = basalt
            .as_anon()
            .call(
                Method::POST,
                "/auth/v1/token?grant_type=password",
                Some(json!({"email": format!("{name}@example.com"), "password": "password one"})),
            )
            .await;
        tokens.push(session["access_token"].as_str().unwrap().to_owned());
    }
    let (alice, bob) = (ids[0].clone(), ids[1].clone());
    let (alice_token, bob_token) = (tokens[0].as_str(), tokens[1].as_str());
    let setup = "create table notes (id serial primary key, owner uuid, title text unique, secret text default 'x', published boolean default false);
                 grant select, insert, update, delete on notes to authenticated;
                 grant usage on sequence notes_id_seq to authenticated;";
    assert_eq!(basalt.admin_sql(setup).await.status(), 200);
    for policy in [
        json!({"subject": "authenticated", "object": "table:public.notes", "action": "insert", "condition": "owner=eq.{auth.uid}", "columns": ["owner", "title", "published"]}),
        json!({"subject": "authenticated", "object": "table:public.notes", "action": "select", "condition": "owner=eq.{auth.uid}"}),
        json!({"subject": "authenticated", "object": "table:public.notes", "action": "update", "condition": "owner=eq.{auth.uid}", "columns": ["title", "published"]}),
        json!({"subject": "authenticated", "object": "table:public.notes", "action": "delete", "condition": "owner=eq.{auth.uid}"}),
    ] {
        let (status, body) = basalt
            .as_service()
            .call(Method::POST, "/admin/v1/policies", Some(policy))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let write = |token: &str, method: Method, path: &str, body: Option<Value>, represent: bool| {
        let mut request = basalt
            .http
            .request(method, basalt.url(path))
            .header("apikey", anon)
            .bearer_auth(token);
        if represent {
            request = request.header("prefer", "return=representation");
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let count = || async {
        basalt
            .admin_sql("select count(*) from notes")
            .await
            .json::<Value>()
            .await
            .unwrap()["results"][0]["rows"][0][0]
            .clone()
    };

    let (status, rows) = write(
        alice_token,
        Method::POST,
        "/rest/v1/notes",
        Some(json!({"owner": alice, "title": "a1"})),
        true,
    )
    .await;
    assert_eq!(status, 201, "{rows}");
    assert_eq!(
        (rows[0]["title"].as_str(), rows[0]["secret"].as_str()),
        (Some("a1"), Some("x")),
        "defaults apply"
    );
    let (status, body) = write(
        alice_token,
        Method::POST,
        "/rest/v1/notes",
        Some(json!([{"owner": alice, "title": "a2"}, {"owner": alice, "title": "a3"}])),
        false,
    )
    .await;
    assert_eq!((status, body), (201, Value::Null), "bulk, minimal return");
    assert_eq!(count().await, "3");

    // A row for someone else: refused, and the whole statement rolls back.
    let (status, body) = write(
        alice_token,
        Method::POST,
        "/rest/v1/notes",
        Some(json!([{"owner": alice, "title": "a4"}, {"owner": bob, "title": "a5"}])),
        false,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("42501")),
        "{body}"
    );
    assert_eq!(count().await, "3", "nothing half-written");
    // A column no policy lets her write: no mass assignment.
    let (status, body) = write(
        alice_token,
        Method::POST,
        "/rest/v1/notes",
        Some(json!({"owner": alice, "title": "a6", "secret": "s"})),
        false,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("42501")),
        "{body}"
    );
    assert!(
        body["hint"]
            .as_str()
            .unwrap()
            .contains("owner, published, title"),
        "{body}"
    );
    // The database's own constraints answer 409.
    let (status, body) = write(
        alice_token,
        Method::POST,
        "/rest/v1/notes",
        Some(json!({"owner": alice, "title": "a1"})),
        false,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("23505")),
        "{body}"
    );
    let (status, body) = write(
        anon,
        Method::POST,
        "/rest/v1/notes",
        Some(json!({"title": "anon"})),
        false,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("42501")),
        "{body}"
    );

    // Updates: a filter is required; only her rows change; ownership cannot be handed over.
    let (status, body) = write(
        alice_token,
        Method::PATCH,
        "/rest/v1/notes",
        Some(json!({"title": "all"})),
        false,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("21000")),
        "{body}"
    );
    let (status, rows) = write(
        bob_token,
        Method::PATCH,
        "/rest/v1/notes?title=eq.a1",
        Some(json!({"title": "taken by bob"})),
        true,
    )
    .await;
    assert_eq!(
        (status, rows),
        (200, json!([])),
        "bob reaches none of alice's rows"
    );
    let (status, rows) = write(
        alice_token,
        Method::PATCH,
        "/rest/v1/notes?title=eq.a1",
        Some(json!({"title": "a1 edited", "published": true})),
        true,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (rows[0]["title"].as_str(), rows[0]["published"].as_bool()),
        (Some("a1 edited"), Some(true))
    );
    let (status, body) = write(
        alice_token,
        Method::PATCH,
        "/rest/v1/notes?title=eq.a2",
        Some(json!({"owner": bob})),
        false,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("42501")),
        "{body}"
    );

    // Deletes reach only the caller's rows.
    let (status, rows) = write(
        bob_token,
        Method::DELETE,
        "/rest/v1/notes?title=like.a*",
        None,
        true,
    )
    .await;
    assert_eq!((status, rows), (200, json!([])));
    let (status, body) = write(
        alice_token,
        Method::DELETE,
        "/rest/v1/notes?title=eq.a3",
        None,
        false,
    )
    .await;
    assert_eq!((status, body), (204, Value::Null));
    assert_eq!(count().await, "2");
    let (status, body) = write(alice_token, Method::DELETE, "/rest/v1/notes", None, false).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("21000")),
        "{body}"
    );
}

/// Writes no condition limits (the service key, an unconditional policy), the
/// columns a representation may show, and filter columns that are not writable.
#[tokio::test]
async fn unconditional_writes_and_what_a_representation_shows() {
    let basalt = Basalt::start().await;
    let keys = basalt.keys();
    let service = keys.service_role.as_str();
    let (_, user) = basalt.as_service().call(Method::POST,
        "/auth/v1/admin/users",
        Some(json!({"email": "w@example.com", "password": "password one", "email_confirm": true})),
    )
    .await;
    assert!(user["id"].is_string());
    let (_, session) = basalt
        .as_anon()
        .call(
            Method::POST,
            "/auth/v1/token?grant_type=password",
            Some(json!({"email": "w@example.com", "password": "password one"})),
        )
        .await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let setup = "create table staff (id int primary key, name text, salary int);
                 grant select, insert, update, delete on staff to authenticated;";
    assert_eq!(basalt.admin_sql(setup).await.status(), 200);
    for policy in [
        json!({"subject": "authenticated", "object": "table:public.staff", "action": "insert"}),
        json!({"subject": "authenticated", "object": "table:public.staff", "action": "update", "columns": ["name"]}),
        json!({"subject": "authenticated", "object": "table:public.staff", "action": "select", "columns": ["id", "name"]}),
    ] {
        let (status, body) = basalt
            .as_service()
            .call(Method::POST, "/admin/v1/policies", Some(policy))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let post = |key: &str, bearer: Option<&str>, method: Method, path: &str, body: Value| {
        let mut request = basalt
            .http
            .request(method, basalt.url(path))
            .header("apikey", key)
            .header("prefer", "return=representation")
            .json(&body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    // The service key: no condition at all.
    let (status, rows) = post(
        service,
        None,
        Method::POST,
        "/rest/v1/staff",
        json!({"id": 1, "name": "ann", "salary": 100}),
    )
    .await;
    assert_eq!(
        (status, rows[0]["salary"].clone()),
        (201, json!(100)),
        "{rows}"
    );
    // An unconditional policy; the answer shows only the columns she may select.
    let (status, rows) = post(
        &keys.anon,
        Some(&token),
        Method::POST,
        "/rest/v1/staff",
        json!({"id": 2, "name": "bo", "salary": 200}),
    )
    .await;
    assert_eq!(status, 201, "{rows}");
    assert_eq!(
        rows,
        json!([{"id": 2, "name": "bo"}]),
        "salary stays hidden"
    );
    // Filtering by id does not make id writable.
    let (status, rows) = post(
        &keys.anon,
        Some(&token),
        Method::PATCH,
        "/rest/v1/staff?id=eq.2",
        json!({"name": "bob"}),
    )
    .await;
    assert_eq!((status, rows), (200, json!([{"id": 2, "name": "bob"}])));
    let (status, body) = post(
        &keys.anon,
        Some(&token),
        Method::PATCH,
        "/rest/v1/staff?id=eq.2",
        json!({"id": 99}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("42501")),
        "{body}"
    );
}
