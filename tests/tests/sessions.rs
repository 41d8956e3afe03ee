//! The data API's shortcuts must never be taken where they would be wrong.
//! An API key's read runs alone in its connection's session (role, claims
//! and statement timeout set once per connection, `rest/tx.rs`); prepared
//! statements and generic plans are kept per connection. Here one HTTP
//! worker with one data connection makes every request reuse the same
//! connection, warm, after the change under test.

use basalt_tests::client::Client;
use basalt_tests::Basalt;
use reqwest::Method;
use serde_json::{json, Value};

/// One worker, one data connection: every request below shares it.
async fn one_connection() -> Basalt {
    Basalt::builder()
        .env("BASALT_SERVER_WORKERS", "1")
        .env("BASALT_DATABASE_API_POOL_SIZE", "1")
        .start()
        .await
}

async fn whoami(client: &Client<'_>) -> Value {
    client.get("/rest/v1/rpc/whoami").await.expect(200).json()
}

async fn sql(basalt: &Basalt, query: &str) {
    let answer = basalt.admin_sql(query).await;
    let status = answer.status();
    assert_eq!(status, 200, "{query}: {}", answer.text().await.unwrap());
}

/// Who a request runs as, from inside PostgreSQL: the role, the claims' role
/// and subject, the statement timeout and whether it may write.
const WHOAMI: &str = r#"
create function public.whoami() returns json language sql stable as $$
  select json_build_object(
    'user', current_user,
    'role', auth.role(),
    'sub', auth.jwt() ->> 'sub',
    'timeout', current_setting('statement_timeout'),
    'read_only', current_setting('transaction_read_only'),
    'search_path', current_setting('search_path'))
$$;
-- Careless app code: runs whatever it is given, in a read (stable) or a write.
create function public.run_read(q text) returns text language plpgsql stable as $$
begin execute q; return 'done'; end $$;
create function public.run_write(q text) returns text language plpgsql volatile as $$
begin execute q; return 'done'; end $$;
"#;

#[tokio::test]
async fn sql_that_changes_the_session_never_reaches_the_next_request() {
    let basalt = one_connection().await;
    sql(&basalt, WHOAMI).await;
    let admin = Client::service(&basalt);
    for function in ["whoami", "run_read", "run_write"] {
        admin
            .policy(json!({"subject": "anon", "object": format!("function:public.{function}"), "action": "execute"}))
            .await;
    }
    admin
        .policy(json!({"subject": "authenticated", "object": "function:public.whoami", "action": "execute"}))
        .await;
    let anon = Client::anon(&basalt);
    let (user, user_id) = Client::user(&basalt, "sessions@example.com").await;
    let as_anon = whoami(&anon).await;
    assert_eq!(as_anon["user"], "anon", "{as_anon}");
    assert_eq!(as_anon["role"], "anon");
    assert_eq!(as_anon["sub"], Value::Null);
    assert_eq!(as_anon["read_only"], "on");
    let timeout = as_anon["timeout"].clone();
    assert_ne!(timeout, "0", "callers' statements are bounded");
    let search_path = as_anon["search_path"].clone();

    // Every way app SQL can change a session setting, from a read (GET: the
    // API key's one-statement path) and from a write (POST: committed).
    let attacks = [
        "select set_config('role', 'service_role', false)",
        "set role service_role",
        "reset role",
        "select set_config('request.jwt.claims', '{\"role\":\"authenticated\",\"sub\":\"00000000-0000-4000-8000-000000000001\"}', false)",
        "set statement_timeout = 0",
        "set default_transaction_read_only = off",
        "set search_path = pg_catalog",
        "reset all",
        // (A STABLE function may not run SET: these reach the read's guard.)
        "select set_config('statement_timeout', '0', false)",
        "select set_config('default_transaction_read_only', 'off', false)",
        "select set_config('search_path', 'pg_catalog', false)",
    ];
    for attack in attacks {
        for (method, function) in [(Method::GET, "run_read"), (Method::POST, "run_write")] {
            let answer = match method {
                Method::GET => {
                    let q: String =
                        url::form_urlencoded::byte_serialize(attack.as_bytes()).collect();
                    anon.get(&format!("/rest/v1/rpc/{function}?q={q}")).await
                }
                _ => {
                    anon.post(&format!("/rest/v1/rpc/{function}"), json!({"q": attack}))
                        .await
                }
            };
            assert!(
                answer.status == 200 || (400..500).contains(&answer.status),
                "{attack} via {function}: {} {}",
                answer.status,
                answer.text
            );
            // The next requests on the same connection run as they should.
            let after = whoami(&anon).await;
            assert_eq!(
                after["user"], "anon",
                "after {attack} via {function}: {after}"
            );
            assert_eq!(
                after["role"], "anon",
                "after {attack} via {function}: {after}"
            );
            assert_eq!(
                after["sub"],
                Value::Null,
                "after {attack} via {function}: {after}"
            );
            assert_eq!(after["timeout"], timeout, "after {attack} via {function}");
            assert_eq!(after["read_only"], "on", "after {attack} via {function}");
            assert_eq!(
                after["search_path"], search_path,
                "after {attack} via {function}"
            );
            let as_user = whoami(&user).await;
            assert_eq!(
                as_user["user"], "authenticated",
                "after {attack}: {as_user}"
            );
            assert_eq!(
                as_user["search_path"], search_path,
                "after {attack}: {as_user}"
            );
            assert_eq!(
                as_user["sub"],
                user_id.as_str(),
                "after {attack}: {as_user}"
            );
            let service = whoami(&admin).await;
            assert_eq!(service["user"], "service_role", "after {attack}: {service}");
            assert_eq!(service["timeout"], "0", "after {attack}: {service}");
        }
    }
    // Writes still write after all of that (the session is read-only only
    // for reads).
    sql(
        &basalt,
        "create table notes (id serial primary key, body text); grant select, insert on notes to anon; grant usage on sequence notes_id_seq to anon",
    )
    .await;
    admin
        .policy(json!({"subject": "anon", "object": "table:public.notes", "action": "insert"}))
        .await;
    anon.post("/rest/v1/notes", json!({"body": "still writable"}))
        .await
        .expect(201);
}

#[tokio::test]
async fn database_changes_apply_to_warm_connections_at_once() {
    let basalt = one_connection().await;
    sql(
        &basalt,
        "create table posts (id int primary key, owner uuid, who text default auth.role(), sub text default auth.jwt() ->> 'sub', body text);
         insert into posts (id, body) values (1, 'public'), (2, 'private');
         grant select, insert on posts to anon, authenticated;
         create view post_bodies with (security_invoker = true) as select id, body from posts;
         grant select on post_bodies to anon;",
    )
    .await;
    let admin = Client::service(&basalt);
    for (subject, object, action) in [
        ("anon", "table:public.posts", "select"),
        ("anon", "table:public.post_bodies", "select"),
        ("anon", "table:public.posts", "insert"),
        ("authenticated", "table:public.posts", "select"),
        ("authenticated", "table:public.posts", "insert"),
    ] {
        admin
            .policy(json!({"subject": subject, "object": object, "action": action}))
            .await;
    }
    let anon = Client::anon(&basalt);
    let (user, user_id) = Client::user(&basalt, "warm@example.com").await;
    let ids = |answer: basalt_tests::client::Answer| -> Vec<i64> {
        answer
            .expect(200)
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["id"].as_i64().unwrap())
            .collect()
    };
    // Warm: the same statements, prepared and planned, many times over.
    for _ in 0..12 {
        assert_eq!(
            ids(anon.get("/rest/v1/posts?select=id&order=id").await),
            [1, 2]
        );
        assert_eq!(
            ids(anon.get("/rest/v1/post_bodies?select=id&order=id").await),
            [1, 2]
        );
    }

    // Row-level security turned on after start-up: the next read obeys it,
    // through the table and through a view over it.
    sql(
        &basalt,
        "alter table posts enable row level security;
         create policy public_rows on posts for select to anon using (body = 'public');
         create policy own_rows on posts for select to authenticated using (owner = auth.uid());
         create policy anyone_inserts on posts for insert with check (true);",
    )
    .await;
    assert_eq!(
        ids(anon.get("/rest/v1/posts?select=id&order=id").await),
        [1]
    );
    assert_eq!(
        ids(anon.get("/rest/v1/post_bodies?select=id&order=id").await),
        [1]
    );
    assert_eq!(
        ids(user.get("/rest/v1/posts?select=id&order=id").await),
        Vec::<i64>::new()
    );

    // Claims read by a column default and by a policy, alternating callers
    // on the one connection: each write and read sees its own caller's.
    sql(
        &basalt,
        &format!("insert into posts (id, owner, body) values (3, '{user_id}', 'mine')"),
    )
    .await;
    let (mut mine, mut public) = (vec![3], vec![1]);
    for round in 0..3 {
        let id = 10 + round * 2;
        anon.post("/rest/v1/posts", json!({"id": id, "body": "public"}))
            .await
            .expect(201);
        user.post(
            "/rest/v1/posts",
            json!({"id": id + 1, "owner": user_id, "body": "mine"}),
        )
        .await
        .expect(201);
        public.push(id);
        mine.push(id + 1);
        assert_eq!(
            ids(user.get("/rest/v1/posts?select=id&order=id").await),
            mine
        );
        assert_eq!(
            ids(anon.get("/rest/v1/posts?select=id&order=id").await),
            public
        );
    }
    let written = admin
        .get("/rest/v1/posts?select=id,who,sub&id=gte.10&order=id")
        .await
        .expect(200)
        .json();
    assert_eq!(written.as_array().unwrap().len(), 6, "{written}");
    for row in written.as_array().unwrap() {
        let by_user = row["id"].as_i64().unwrap() % 2 == 1;
        let (who, sub) = if by_user {
            (json!("authenticated"), json!(user_id))
        } else {
            (json!("anon"), Value::Null)
        };
        assert_eq!((&row["who"], &row["sub"]), (&who, &sub), "{written}");
    }

    // A grant revoked after start-up: refused at once, on the warm path.
    sql(&basalt, "revoke select on posts from anon").await;
    let refused = anon.get("/rest/v1/posts?select=id&order=id").await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    // ... and given back.
    sql(&basalt, "grant select on posts to anon").await;
    assert_eq!(
        ids(anon.get("/rest/v1/posts?select=id&order=id").await),
        public
    );
}

#[tokio::test]
async fn a_write_committed_with_its_statement_keeps_nothing_it_refused() {
    let basalt = one_connection().await;
    sql(
        &basalt,
        "create table owners (id int primary key);
         create table pets (id int primary key, name text unique,
           owner int references owners deferrable initially deferred);
         insert into owners values (1);
         grant select, insert on pets to anon;",
    )
    .await;
    let admin = Client::service(&basalt);
    for action in ["select", "insert"] {
        admin
            .policy(json!({"subject": "anon", "object": "table:public.pets", "action": action}))
            .await;
    }
    let anon = Client::anon(&basalt);
    // A plain insert, no row condition, return=minimal: COMMIT goes with it.
    anon.post("/rest/v1/pets", json!({"id": 1, "name": "rex", "owner": 1}))
        .await
        .expect(201);
    // Refused by the statement: nothing kept.
    let duplicate = anon
        .post("/rest/v1/pets", json!({"id": 2, "name": "rex", "owner": 1}))
        .await;
    assert_eq!(duplicate.status, 409, "{}", duplicate.text);
    // Refused only at COMMIT (a deferred foreign key): nothing kept either.
    let orphan = anon
        .post("/rest/v1/pets", json!({"id": 3, "name": "tom", "owner": 9}))
        .await;
    assert_eq!(orphan.status, 409, "{}", orphan.text);
    assert_eq!(orphan.json()["code"], "23503", "{}", orphan.text);
    // A bulk insert whose second row fails keeps neither.
    let bulk = anon
        .post(
            "/rest/v1/pets",
            json!([{"id": 4, "name": "felix", "owner": 1}, {"id": 5, "name": "rex", "owner": 1}]),
        )
        .await;
    assert_eq!(bulk.status, 409, "{}", bulk.text);
    let kept = admin
        .get("/rest/v1/pets?select=id&order=id")
        .await
        .expect(200)
        .json();
    assert_eq!(kept, json!([{"id": 1}]));
    // The connection serves the next write and read as usual.
    anon.post("/rest/v1/pets", json!({"id": 6, "name": "tom", "owner": 1}))
        .await
        .expect(201);
    let kept = anon
        .get("/rest/v1/pets?select=id&order=id")
        .await
        .expect(200)
        .json();
    assert_eq!(kept, json!([{"id": 1}, {"id": 6}]));
}

#[tokio::test]
async fn statements_are_prepared_as_the_login_role_whatever_a_session_left() {
    let basalt = Basalt::builder()
        .env("BASALT_SERVER_WORKERS", "1")
        .env("BASALT_DATABASE_API_POOL_SIZE", "1")
        .env("BASALT_REST_EXTRA_SCHEMAS", "members")
        .env("BASALT_REST_GRANT_API_ROLES", "false")
        .start()
        .await;
    // A schema only signed-in users (and the login role, to resolve names)
    // may use; anon may not.
    sql(
        &basalt,
        "create schema members; create table members.notes (id int primary key);
         insert into members.notes values (7);
         grant usage on schema members to authenticated, authenticator;
         grant select on members.notes to authenticated;
         create table public.open (id int primary key); insert into public.open values (1);
         grant select on public.open to anon;",
    )
    .await;
    let admin = Client::service(&basalt);
    admin
        .policy(json!({"subject": "anon", "object": "table:public.open", "action": "select"}))
        .await;
    admin
        .policy(json!({"subject": "authenticated", "object": "table:members.notes", "action": "select"}))
        .await;
    let anon = Client::anon(&basalt);
    let (user, _) = Client::user(&basalt, "members@example.com").await;
    for _ in 0..3 {
        // The anon key's read leaves its session (role anon) on the one connection ...
        let open = anon.get("/rest/v1/open?select=id").await.expect(200).json();
        assert_eq!(open, json!([{"id": 1}]));
        // ... and a user's statement over a schema anon may not use is
        // still prepared and run.
        let notes = user
            .send(
                Method::GET,
                "/rest/v1/notes?select=id",
                &[("accept-profile", "members")],
                None,
            )
            .await;
        assert_eq!(notes.status, 200, "{}", notes.text);
        assert_eq!(notes.json(), json!([{"id": 7}]));
    }
}
