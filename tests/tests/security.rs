//! Regression tests for the findings of the outside review (docs/security.md):
//! each reproduces an attack that worked before the fix.

use basalt_tests::client::{Answer, Client};
use basalt_tests::{connect, Basalt};
use reqwest::Method;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;

/// An app function with a careless `EXECUTE`: whatever SQL reaches it runs
/// inside the request. It must not get out of the API roles.
const INJECTABLE: &str = r#"
create function public.run_sql(q text) returns text language plpgsql as $$
declare r text;
begin
  if q ilike 'select%' then execute q into r; else execute q; end if;
  return coalesce(r, 'done');
end $$;
"#;

#[tokio::test]
async fn sql_inside_a_request_cannot_leave_the_api_roles() {
    let basalt = Basalt::start().await;
    let answer = basalt.admin_sql(INJECTABLE).await;
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    let admin = Client::service(&basalt);
    admin
        .policy(
            json!({"subject": "anon", "object": "function:public.run_sql", "action": "execute"}),
        )
        .await;
    // Something worth stealing: a user with a password hash.
    let _ = Client::user(&basalt, "victim@example.com").await;
    let marker = std::env::temp_dir().join(format!("basalt-lo-export-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);

    let anon = Client::anon(&basalt);
    let run = |q: String| {
        let anon = &anon;
        async move {
            anon.send(
                Method::POST,
                "/rest/v1/rpc/run_sql",
                &[],
                Some(json!({"q": q})),
            )
            .await
        }
    };
    // The function is reachable, and runs as the API roles.
    let answer = run("select current_user || ',' || session_user".into()).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json(), json!("anon,authenticator"));
    let answer =
        run("select rolsuper::text from pg_roles where rolname = session_user".into()).await;
    assert_eq!(answer.json(), json!("false"));
    // Becoming another API role is what the login role is for; nothing else.
    let answer = run("select set_config('role', 'authenticated', true)".into()).await;
    assert_eq!(answer.status, 200, "{}", answer.text);

    let attacks = [
        "select set_config('role', 'postgres', true)".to_owned(),
        "select set_config('role', 'postgres', false)".to_owned(),
        "SET ROLE postgres".to_owned(),
        "SET SESSION AUTHORIZATION postgres".to_owned(),
        "select count(*)::text from auth.users".to_owned(),
        "select string_agg(encrypted_password, ',') from auth.users".to_owned(),
        "do $x$ begin reset role; perform count(*) from auth.users; end $x$".to_owned(),
        "do $x$ begin set local role service_role; perform count(*) from auth.users; end $x$"
            .to_owned(),
        "select pg_read_file('/etc/hostname')".to_owned(),
        "do $x$ begin reset role; perform pg_read_file('/etc/hostname'); end $x$".to_owned(),
        format!(
            "select lo_export(lo_from_bytea(0, 'pwned'::bytea), '{}')::text",
            marker.display()
        ),
        "select count(*)::text from basalt.idempotency_keys".to_owned(),
        "copy (select 1) to program 'true'".to_owned(),
    ];
    for attack in &attacks {
        let answer = run(attack.clone()).await;
        assert!(
            (400..500).contains(&answer.status),
            "{attack}: {} {}",
            answer.status,
            answer.text
        );
        assert!(
            !answer.text.contains("argon2"),
            "{attack} leaked a hash: {}",
            answer.text
        );
    }
    assert!(!marker.exists(), "lo_export wrote a server file");

    // The same through a batch.
    let answer = anon
        .send(
            Method::POST,
            "/rest/v1/batch",
            &[],
            Some(json!({"operations": [
                {"op": "rpc", "function": "run_sql", "args": {"q": "select set_config('role', 'postgres', true)"}}
            ]})),
        )
        .await;
    assert!(
        (400..500).contains(&answer.status),
        "{}: {}",
        answer.status,
        answer.text
    );
    // service_role requests run as service_role: no superuser either.
    let answer = admin
        .send(
            Method::POST,
            "/rest/v1/rpc/run_sql",
            &[],
            Some(json!({"q": "select current_user || ',' || (select rolsuper::text from pg_roles where rolname = current_user)"})),
        )
        .await;
    assert_eq!(answer.json(), json!("service_role,false"));
    let answer = admin
        .send(
            Method::POST,
            "/rest/v1/rpc/run_sql",
            &[],
            Some(json!({"q": "select count(*)::text from auth.users"})),
        )
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text);
}

/// A table made with plain psql works through the data API once a Basalt
/// policy allows it: no GRANT written by hand.
#[tokio::test]
async fn a_table_made_with_psql_needs_only_a_policy() {
    let basalt = Basalt::start().await;
    let psql = connect(basalt.database_url().unwrap()).await;
    psql.batch_execute(
        "create table notes (id serial primary key, owner uuid not null default auth.uid(), body text);
         create table later (id bigint generated always as identity primary key, body text);
         create view note_bodies as select id, body from notes;
         create function note_count() returns bigint language sql as 'select count(*) from notes';",
    )
    .await
    .unwrap();
    let admin = Client::service(&basalt);
    for policy in [
        json!({"object": "table:public.notes", "action": "insert"}),
        json!({"object": "table:public.notes", "action": "select", "condition": "owner=eq.{auth.uid}"}),
        json!({"object": "table:public.later", "action": "insert"}),
        json!({"object": "function:public.note_count", "action": "execute"}),
    ] {
        let mut policy = policy;
        policy["subject"] = json!("authenticated");
        admin.policy(policy).await;
    }
    let (alice, alice_id) = Client::user(&basalt, "alice@example.com").await;
    let answer = alice
        .send(
            Method::POST,
            "/rest/v1/notes",
            &[("prefer", "return=representation")],
            Some(json!({"body": "mine"})),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(answer.json()[0]["owner"], json!(alice_id));
    let answer = alice
        .send(Method::GET, "/rest/v1/notes?select=body", &[], None)
        .await;
    assert_eq!(answer.json(), json!([{"body": "mine"}]));
    let answer = alice
        .send(
            Method::POST,
            "/rest/v1/later",
            &[],
            Some(json!({"body": "x"})),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let answer = alice
        .send(
            Method::POST,
            "/rest/v1/rpc/note_count",
            &[],
            Some(json!({})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    // Basalt's policies stay the gate: no policy on the view, no rows.
    let answer = alice
        .send(Method::GET, "/rest/v1/note_bodies", &[], None)
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text);
    // The privileges exist in the database, given to the API roles only.
    let granted: Vec<String> = psql
        .query(
            "select distinct grantee::text from information_schema.role_table_grants
             where table_schema = 'public' and table_name in ('notes', 'later', 'note_bodies')
             order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        granted,
        ["anon", "authenticated", "postgres", "service_role"]
    );
}

/// `rest.grant_api_roles = false` leaves privileges to the operator.
#[tokio::test]
async fn zero_setup_privileges_can_be_turned_off() {
    let basalt = Basalt::builder()
        .env("BASALT_REST_GRANT_API_ROLES", "false")
        .start()
        .await;
    let psql = connect(basalt.database_url().unwrap()).await;
    psql.batch_execute("create table notes (id serial primary key, body text)")
        .await
        .unwrap();
    let admin = Client::service(&basalt);
    admin
        .policy(json!({"subject": "anon", "object": "table:public.notes", "action": "select"}))
        .await;
    let answer = Client::anon(&basalt)
        .send(Method::GET, "/rest/v1/notes", &[], None)
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text);
    // PostgreSQL's refusal, as PostgREST forwards it, with what to grant.
    assert!(
        answer.text.contains("permission denied for table notes"),
        "{}",
        answer.text
    );
    assert!(answer.text.contains("GRANT SELECT"), "{}", answer.text);
    psql.batch_execute("grant select on notes to anon")
        .await
        .unwrap();
    let answer = Client::anon(&basalt)
        .send(Method::GET, "/rest/v1/notes", &[], None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

/// Finding 2: `Prefer: count=planned|estimated` must not be computed over
/// rows the caller cannot read (statistics cover them all).
#[tokio::test]
async fn estimated_counts_never_cover_hidden_rows() {
    let basalt = Basalt::start().await;
    let admin = Client::service(&basalt);
    let (alice, alice_id) = Client::user(&basalt, "alice@example.com").await;
    let psql = connect(basalt.database_url().unwrap()).await;
    psql.batch_execute(&format!(
        "create table docs (id serial primary key, owner uuid, tag text);
         insert into docs (owner, tag) select gen_random_uuid(), 'bob-secret' from generate_series(1, 400);
         insert into docs (owner, tag) values ('{alice_id}', 'mine');
         create table rls_docs as select * from docs;
         alter table rls_docs enable row level security;
         create policy own on rls_docs for select using (owner = auth.uid());
         analyze docs; analyze rls_docs;"
    ))
    .await
    .unwrap();
    admin
        .policy(json!({"subject": "authenticated", "object": "table:public.docs", "action": "select", "condition": "owner=eq.{auth.uid}"}))
        .await;
    // No Basalt condition here: row-level security hides the rows.
    admin
        .policy(json!({"subject": "authenticated", "object": "table:public.rls_docs", "action": "select"}))
        .await;
    for table in ["docs", "rls_docs"] {
        for count in ["planned", "estimated"] {
            for filter in ["tag=eq.bob-secret", "tag=like.bob*"] {
                let answer = alice
                    .send(
                        Method::GET,
                        &format!("/rest/v1/{table}?{filter}&select=id"),
                        &[("prefer", &format!("count={count}"))],
                        None,
                    )
                    .await;
                assert_eq!(answer.status, 200, "{}", answer.text);
                assert_eq!(
                    answer.header("content-range"),
                    "*/0",
                    "{table} {count} {filter}: the estimate saw other users' rows"
                );
                assert_eq!(answer.header("preference-applied"), "count=exact");
            }
        }
        let answer = alice
            .send(
                Method::GET,
                &format!("/rest/v1/{table}?select=tag"),
                &[("prefer", "count=planned")],
                None,
            )
            .await;
        assert_eq!(answer.json(), json!([{"tag": "mine"}]));
        assert_eq!(answer.header("content-range"), "0-0/1");
    }
    // The service_role key sees every row: its estimate is the planner's.
    let answer = admin
        .send(
            Method::GET,
            "/rest/v1/docs?tag=eq.bob-secret&limit=1",
            &[("prefer", "count=planned")],
            None,
        )
        .await;
    assert_eq!(answer.header("preference-applied"), "count=planned");
    let total: i64 = answer
        .header("content-range")
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(total > 100, "{}", answer.header("content-range"));
}

/// Finding 4: with two select policies — every row of a few columns, and
/// every column of one's own rows — a write's representation and its
/// filters reach only what a GET could read, per row.
#[tokio::test]
async fn write_representations_and_filters_show_only_what_a_read_could() {
    let basalt = Basalt::start().await;
    let admin = Client::service(&basalt);
    let (alice, alice_id) = Client::user(&basalt, "alice@example.com").await;
    let psql = connect(basalt.database_url().unwrap()).await;
    psql.batch_execute(&format!(
        "create table profiles (id int primary key, owner uuid, name text, secret text);
         insert into profiles values (1, '{alice_id}', 'alice', 'alice-secret'),
                                     (2, gen_random_uuid(), 'bob', 'bob-secret');"
    ))
    .await
    .unwrap();
    for policy in [
        json!({"action": "select", "columns": ["id", "name"]}),
        json!({"action": "select", "condition": "owner=eq.{auth.uid}"}),
        json!({"action": "update", "columns": ["name"]}),
        json!({"action": "delete"}),
    ] {
        let mut policy = policy;
        policy["subject"] = json!("authenticated");
        policy["object"] = json!("table:public.profiles");
        admin.policy(policy).await;
    }
    // What a GET shows: bob's secret never.
    let answer = alice
        .send(
            Method::GET,
            "/rest/v1/profiles?select=id,secret&order=id",
            &[],
            None,
        )
        .await;
    assert_eq!(answer.json(), json!([{"id": 1, "secret": "alice-secret"}]));

    let answer = alice
        .send(
            Method::PATCH,
            "/rest/v1/profiles?id=in.(1,2)",
            &[("prefer", "return=representation")],
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let rows = answer.json();
    let rows = rows.as_array().unwrap();
    let bob = rows
        .iter()
        .find(|r| r["id"] == 2)
        .expect("bob's row: id and name are readable");
    assert_eq!(
        bob,
        &json!({"id": 2, "name": "renamed"}),
        "bob's secret leaked"
    );
    let own = rows.iter().find(|r| r["id"] == 1).unwrap();
    assert_eq!(own["secret"], "alice-secret");

    // A filter on the secret reaches only the rows whose secret a GET shows:
    // an oracle on bob's secret answers the same for a right and a wrong guess.
    for guess in ["bob-secret", "wrong-guess"] {
        for (method, body) in [
            (Method::PATCH, Some(json!({"name": "probe"}))),
            (Method::DELETE, None),
        ] {
            let answer = alice
                .send(
                    method.clone(),
                    &format!("/rest/v1/profiles?secret=eq.{guess}"),
                    &[("prefer", "max-affected=0")],
                    body,
                )
                .await;
            assert_eq!(answer.status, 204, "{method} {guess}: {}", answer.text);
        }
    }
    let names: Vec<String> = psql
        .query("select name from profiles order by id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["renamed", "renamed"]);
    // Her own secret is hers to filter on.
    let answer = alice
        .send(
            Method::PATCH,
            "/rest/v1/profiles?secret=eq.alice-secret",
            &[("prefer", "return=representation")],
            Some(json!({"name": "mine"})),
        )
        .await;
    assert_eq!(answer.json()[0]["name"], "mine");
}

/// Finding 5: an insert that breaks the caller's policy is refused before a
/// unique index could say that a hidden row holds the same values.
#[tokio::test]
async fn a_refused_insert_never_reveals_a_hidden_duplicate() {
    let basalt = Basalt::start().await;
    let admin = Client::service(&basalt);
    let (alice, _) = Client::user(&basalt, "alice@example.com").await;
    let bob = "7f0c3b5e-0000-4000-8000-00000000000b";
    let psql = connect(basalt.database_url().unwrap()).await;
    psql.batch_execute(&format!(
        "create table handles (id serial primary key, owner uuid not null default auth.uid(), handle text unique);
         insert into handles (owner, handle) values ('{bob}', 'taken-by-bob');"
    ))
    .await
    .unwrap();
    for action in ["select", "insert", "update"] {
        admin
            .policy(json!({"subject": "authenticated", "object": "table:public.handles", "action": action, "condition": "owner=eq.{auth.uid}"}))
            .await;
    }
    // The same answer whether or not the handle is taken by a hidden row.
    for handle in ["taken-by-bob", "free"] {
        let posts = [
            ("/rest/v1/handles", vec![]),
            (
                "/rest/v1/handles?on_conflict=handle",
                vec![("prefer", "resolution=ignore-duplicates")],
            ),
            (
                "/rest/v1/handles?on_conflict=handle",
                vec![("prefer", "resolution=merge-duplicates")],
            ),
        ];
        for (path, headers) in posts {
            let answer = alice
                .send(
                    Method::POST,
                    path,
                    &headers,
                    Some(json!([{"owner": bob, "handle": handle}])),
                )
                .await;
            assert_eq!(
                (
                    answer.status,
                    answer.json()["code"].as_str().map(str::to_owned)
                ),
                (403, Some("42501".to_owned())),
                "{path} {handle}: {}",
                answer.text
            );
        }
        let answer = alice
            .send(
                Method::POST,
                "/rest/v1/batch",
                &[],
                Some(json!({"operations": [
                    {"op": "insert", "table": "handles", "rows": [{"owner": bob, "handle": handle}]}
                ]})),
            )
            .await;
        assert_eq!(answer.status, 403, "batch {handle}: {}", answer.text);
    }
    // Her own row with a taken handle: the conflict is hers to see.
    let answer = alice
        .send(
            Method::POST,
            "/rest/v1/handles",
            &[],
            Some(json!({"handle": "taken-by-bob"})),
        )
        .await;
    assert_eq!(answer.status, 409, "{}", answer.text);
    let answer = alice
        .send(
            Method::POST,
            "/rest/v1/handles",
            &[("prefer", "return=representation")],
            Some(json!({"handle": "alice"})),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let count: i64 = psql
        .query_one("select count(*) from handles", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2, "nothing else was written");
}

/// Finding 3: with email confirmation on, signing up again with a confirmed
/// address answers exactly like signing up again with a pending one.
#[tokio::test]
async fn a_second_sign_up_reveals_nothing_about_the_address() {
    let smtp = basalt_tests::SmtpServer::start();
    let mut builder = Basalt::builder().env("BASALT_JOBS_POLL_INTERVAL_MS", "100");
    for (name, value) in smtp.env() {
        builder = builder.env(name, value);
    }
    let basalt = builder.start().await;
    let anon = Client::anon(&basalt);
    let signup = |email: &'static str| {
        let anon = &anon;
        async move {
            let answer = anon
                .send(
                    Method::POST,
                    "/auth/v1/signup",
                    &[],
                    Some(json!({"email": email, "password": "a long passphrase 2"})),
                )
                .await;
            assert_eq!(answer.status, 200, "{}", answer.text);
            answer.json()
        }
    };
    // A pending account, and a confirmed one.
    signup("pending@example.com").await;
    let confirmed = Client::service(&basalt)
        .send(
            Method::POST,
            "/auth/v1/admin/users",
            &[],
            Some(json!({"email": "confirmed@example.com", "password": "a long passphrase 1", "email_confirm": true})),
        )
        .await;
    assert_eq!(confirmed.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let again = [
        signup("PENDING@Example.com").await,
        signup("CONFIRMED@Example.com").await,
    ];
    for (answer, sent) in again
        .iter()
        .zip(["PENDING@Example.com", "CONFIRMED@Example.com"])
    {
        assert_eq!(answer["email"], sent, "{answer}");
        assert_eq!(answer["created_at"], answer["updated_at"], "{answer}");
        assert!(answer["email_confirmed_at"].is_null());
    }
    let keys = |value: &Value| {
        value
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&again[0]), keys(&again[1]));
}

/// Finding 6: lists in a request are bounded with a clear 400, never a 500
/// (PostgreSQL answers at most 1,664 columns) nor an ERROR in the log.
#[tokio::test]
async fn oversized_lists_are_refused_with_a_clear_error() {
    let basalt = Basalt::start().await;
    let answer = basalt
        .admin_sql(
            "create table items (id int primary key, name text); insert into items values (1, 'a')",
        )
        .await;
    assert_eq!(answer.status(), 200);
    let admin = Client::service(&basalt);
    admin
        .policy(json!({"subject": "anon", "object": "table:public.items", "action": "select"}))
        .await;
    let anon = Client::anon(&basalt);
    let repeat = |item: &str, n: usize| vec![item; n].join(",");
    let numbers = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    for query in [
        format!("select={}", repeat("id", 1700)),
        format!("select={}", repeat("name:id", 1001)),
        format!("select=id&id=in.({})", numbers(1500)),
        format!("select=id&or=({})", repeat("id.eq.1", 1200)),
        format!("select=id&order={}", repeat("id.desc", 1100)),
    ] {
        let answer = anon
            .send(Method::GET, &format!("/rest/v1/items?{query}"), &[], None)
            .await;
        assert_eq!(answer.status, 400, "{}: {}", &query[..40], answer.text);
        assert!(
            answer.json()["message"].is_string() && answer.json()["hint"].is_string(),
            "{}",
            answer.text
        );
    }
    // Within the bound, long lists work.
    let answer = anon
        .send(
            Method::GET,
            &format!(
                "/rest/v1/items?select={}&id=in.({})",
                repeat("id", 900),
                numbers(999)
            ),
            &[],
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        !basalt.logs().contains("\"level\":\"ERROR\""),
        "{}",
        basalt.logs()
    );
}

/// Finding 7: blobs on local disk are private to Basalt's user.
#[tokio::test]
async fn stored_blobs_are_private_to_basalts_user() {
    let basalt = Basalt::start().await;
    let admin = Client::service(&basalt);
    let answer = admin
        .send(
            Method::POST,
            "/storage/v1/bucket",
            &[],
            Some(json!({"id": "docs", "name": "docs"})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let response = basalt
        .http
        .post(basalt.url("/storage/v1/object/docs/a/b.txt"))
        .header("apikey", &admin.key)
        .header("content-type", "text/plain")
        .body("private")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let root = basalt.data_dir().join("storage");
    let mut seen_files = 0;
    let mut folders = vec![root.clone()];
    while let Some(folder) = folders.pop() {
        let mode = std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", folder.display());
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", path.display());
                seen_files += 1;
            }
        }
    }
    assert_eq!(seen_files, 1);
}

/// Concerns: answers that caches, other hosts or anonymous callers must not
/// get more of than they should.
#[tokio::test]
async fn caches_hosts_and_anon_learn_nothing_extra() {
    let basalt = Basalt::start().await;
    let admin = Client::service(&basalt);
    let anon = Client::anon(&basalt);
    // Auth answers (tokens, users) are never cached.
    let (user, _) = Client::user(&basalt, "cache@example.com").await;
    let answer = anon
        .send(
            Method::POST,
            "/auth/v1/token?grant_type=password",
            &[],
            Some(json!({"email": "cache@example.com", "password": "a long passphrase 1"})),
        )
        .await;
    assert_eq!(answer.header("cache-control"), "no-store");
    assert_eq!(
        user.send(Method::GET, "/auth/v1/user", &[], None)
            .await
            .header("cache-control"),
        "no-store"
    );

    // Private objects are `private` for caches; public downloads keep theirs.
    for (bucket, public) in [("secret", false), ("open", true)] {
        let answer = admin
            .send(
                Method::POST,
                "/storage/v1/bucket",
                &[],
                Some(json!({"id": bucket, "name": bucket, "public": public})),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let response = basalt
            .http
            .post(basalt.url(&format!("/storage/v1/object/{bucket}/f.txt")))
            .header("apikey", &admin.key)
            .header("content-type", "text/plain")
            .header("cache-control", "public, max-age=600")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let answer = admin
        .send(Method::GET, "/storage/v1/object/secret/f.txt", &[], None)
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("cache-control"), "private, max-age=600");
    let answer = anon
        .send(
            Method::GET,
            "/storage/v1/object/public/open/f.txt",
            &[],
            None,
        )
        .await;
    assert_eq!(answer.header("cache-control"), "public, max-age=600");

    // The OpenAPI document names only the columns the caller may use, and
    // its server URL is the configured one, whatever Host says.
    let answer = basalt
        .admin_sql("create table people (id int primary key, name text, salary int)")
        .await;
    assert_eq!(answer.status(), 200);
    // The document is made from the schema cache: reload it now rather
    // than wait for the DDL notification.
    let answer = admin
        .send(Method::POST, "/admin/v1/schema/reload", &[], None)
        .await;
    assert!(answer.status < 300, "{}", answer.text);
    admin
        .policy(json!({"subject": "anon", "object": "table:public.people", "action": "select", "columns": ["id", "name"]}))
        .await;
    let document = anon
        .send(
            Method::GET,
            "/rest/v1/",
            &[
                ("host", "evil.example"),
                ("x-forwarded-host", "evil.example"),
            ],
            None,
        )
        .await
        .json();
    let properties = &document["components"]["schemas"]["people"]["properties"];
    assert!(properties["name"].is_object(), "{document}");
    assert!(properties["salary"].is_null(), "{properties}");
    let server = document["servers"][0]["url"].as_str().unwrap();
    assert_eq!(server, format!("http://127.0.0.1:{}/rest/v1", basalt.port));

    // Casts to reg* types would probe the catalog.
    for cast in [
        "regclass",
        "regrole",
        "regproc",
        "pg_catalog.regnamespace",
        "regtype[]",
    ] {
        let answer = anon
            .send(
                Method::GET,
                &format!("/rest/v1/people?select=name::{cast}"),
                &[],
                None,
            )
            .await;
        assert_eq!(answer.status, 400, "{cast}: {}", answer.text);
    }
    let answer = admin
        .send(
            Method::GET,
            "/rest/v1/people?select=name::regclass",
            &[],
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

/// Concerns: weak passwords, malformed addresses and oversized metadata are
/// refused with clear errors.
#[tokio::test]
async fn sign_ups_refuse_weak_passwords_odd_addresses_and_huge_metadata() {
    let basalt = Basalt::start().await;
    let anon = Client::anon(&basalt);
    for (email, password, data, code) in [
        ("a@example.com", "12345678", json!({}), "weak_password"),
        ("a@example.com", "password", json!({}), "weak_password"),
        (
            "a@example..com",
            "a long passphrase 1",
            json!({}),
            "validation_failed",
        ),
        (
            "a@example.com",
            "a long passphrase 1",
            json!({"blob": "x".repeat(20_000)}),
            "validation_failed",
        ),
    ] {
        let answer = anon
            .send(
                Method::POST,
                "/auth/v1/signup",
                &[],
                Some(json!({"email": email, "password": password, "data": data})),
            )
            .await;
        assert!(
            (400..500).contains(&answer.status) && answer.json()["code"] == code,
            "{email} {password}: {} {}",
            answer.status,
            answer.text
        );
    }
    let answer = anon
        .send(
            Method::POST,
            "/auth/v1/signup",
            &[],
            Some(json!({"email": "a@example.com", "password": "a long passphrase 1"})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

/// Concern: CSV exports can neutralize spreadsheet formulas.
#[tokio::test]
async fn csv_formulas_are_neutralized_when_asked() {
    for neutralize in [false, true] {
        let basalt = Basalt::builder()
            .env(
                "BASALT_REST_CSV_NEUTRALIZE_FORMULAS",
                neutralize.to_string(),
            )
            .start()
            .await;
        let answer = basalt
            .admin_sql(
                "create table cells (id int primary key, label text, n int);
                 insert into cells values (1, '=HYPERLINK(\"http://x\")', -5), (2, '@SUM(A1)', 3), (3, 'plain', 0)",
            )
            .await;
        assert_eq!(answer.status(), 200);
        let answer = Client::service(&basalt)
            .send(
                Method::GET,
                "/rest/v1/cells?order=id",
                &[("accept", "text/csv")],
                None,
            )
            .await;
        let expected = if neutralize {
            "id,label,n\n1,\"'=HYPERLINK(\"\"http://x\"\")\",-5\n2,'@SUM(A1),3\n3,plain,0\n"
        } else {
            "id,label,n\n1,\"=HYPERLINK(\"\"http://x\"\")\",-5\n2,@SUM(A1),3\n3,plain,0\n"
        };
        assert_eq!(answer.text, expected, "neutralize={neutralize}");
    }
}

/// Concerns: client errors are not logged at ERROR, and the embedded
/// PostgreSQL's log lines carry neither row values nor statement text.
#[tokio::test]
async fn logs_keep_client_errors_low_and_values_out() {
    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let basalt = Basalt::builder()
        .embedded(&data.path().join("d"))
        .start()
        .await;
    let answer = basalt
        .admin_sql("create table accounts (id int primary key, balance int check (balance >= 0))")
        .await;
    assert_eq!(answer.status(), 200);
    for sql in [
        "insert into accounts values (1, -4242424)",
        "select 'statement-text-1337'::int",
        "insert into accounts values (1, 1); insert into accounts values (1, 7777777)",
    ] {
        let answer = basalt.admin_sql(sql).await;
        assert_eq!(answer.status(), 400, "{sql}");
    }
    // Data requests work on the embedded cluster: Basalt made the login role
    // (password authentication over its socket) and the grants.
    Client::service(&basalt)
        .policy(json!({"subject": "anon", "object": "table:public.accounts", "action": "select"}))
        .await;
    let answer = Client::anon(&basalt)
        .send(Method::GET, "/rest/v1/accounts?select=id", &[], None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    // Malformed requests from anyone.
    let key = basalt.keys().anon;
    for (content_type, body) in [
        ("application/json", "{not json"),
        ("application/json", "[1, 2"),
        ("text/plain", "x"),
    ] {
        let response = basalt
            .http
            .post(basalt.url("/auth/v1/signup"))
            .header("apikey", &key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error());
    }
    // Bad input on every API: answered 4xx, never logged as the server's error.
    let service = basalt.keys().service_role;
    let bad: [(Method, &str, &str, Option<Value>); 8] = [
        (
            Method::GET,
            "/auth/v1/admin/users/not-a-uuid",
            &service,
            None,
        ),
        (
            Method::DELETE,
            "/auth/v1/admin/users/00000000-0000-4000-8000-000000000000",
            &service,
            None,
        ),
        (
            Method::POST,
            "/storage/v1/bucket",
            &service,
            Some(json!({"id": 5})),
        ),
        (
            Method::GET,
            "/rest/v1/accounts?id=eq.not-a-number",
            &key,
            None,
        ),
        (Method::GET, "/rest/v1/accounts?select=nope", &key, None),
        (
            Method::POST,
            "/realtime/v1/broadcast",
            &service,
            Some(json!({"topic": 1})),
        ),
        (
            Method::POST,
            "/auth/v1/token?grant_type=refresh_token",
            &key,
            Some(json!({"refresh_token": "garbage"})),
        ),
        (
            Method::POST,
            "/admin/v1/policies",
            &service,
            Some(json!({"subject": "x", "object": "nope", "action": "fly"})),
        ),
    ];
    for (method, path, apikey, body) in bad {
        let client = Client {
            basalt: &basalt,
            key: apikey.to_owned(),
            token: None,
        };
        let answer = client.send(method.clone(), path, &[], body).await;
        assert!(
            (400..500).contains(&answer.status),
            "{method} {path}: {} {}",
            answer.status,
            answer.text
        );
    }
    let logs = basalt.logs();
    for secret in ["4242424", "statement-text-1337", "7777777"] {
        assert!(!logs.contains(secret), "{secret} in the log:\n{logs}");
    }
    assert!(
        !logs.contains("\"level\":\"ERROR\""),
        "an ERROR line:\n{logs}"
    );
}

/// Concern: after a sign-out, a ban or deleting the user, the access token
/// stops working within seconds on every replica, for the data API and
/// storage alike (not when it expires).
#[tokio::test]
async fn revoked_sessions_are_refused_within_seconds_on_every_replica() {
    let first = Basalt::start().await;
    let second = Basalt::builder()
        .database_url(first.database_url().unwrap())
        .start()
        .await;
    let answer = first
        .admin_sql("create table notes (id int primary key)")
        .await;
    assert_eq!(answer.status(), 200);
    let admin = Client::service(&first);
    admin
        .policy(
            json!({"subject": "authenticated", "object": "table:public.notes", "action": "select"}),
        )
        .await;
    let answer = admin
        .send(
            Method::POST,
            "/storage/v1/bucket",
            &[],
            Some(json!({"id": "b", "name": "b"})),
        )
        .await;
    assert_eq!(answer.status, 200);
    let paths = ["/rest/v1/notes", "/storage/v1/bucket"];
    let refused_everywhere = |token: String| {
        let (first, second) = (&first, &second);
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            for basalt in [first, second] {
                let client = Client {
                    basalt,
                    key: basalt.keys().anon,
                    token: Some(token.clone()),
                };
                for path in paths {
                    loop {
                        let answer = client.send(Method::GET, path, &[], None).await;
                        if answer.status == 401 {
                            let code = if path.starts_with("/rest/v1") {
                                "PGRST301"
                            } else {
                                "session_expired"
                            };
                            assert_eq!(answer.json()["code"], code, "{}", answer.text);
                            break;
                        }
                        assert!(
                            std::time::Instant::now() < deadline,
                            "{path} still answers {} after 5 s",
                            answer.status
                        );
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        }
    };
    // A signed-in user whose token works on both replicas.
    let signed_in = |email: &'static str| {
        let first = &first;
        async move {
            let (user, id) = Client::user(first, email).await;
            for path in paths {
                let answer = user.send(Method::GET, path, &[], None).await;
                assert_eq!(answer.status, 200, "{path}: {}", answer.text);
            }
            (user.token.unwrap(), id)
        }
    };

    let (token, _) = signed_in("logout@example.com").await;
    let answer = Client {
        basalt: &first,
        key: first.keys().anon,
        token: Some(token.clone()),
    }
    .send(Method::POST, "/auth/v1/logout", &[], None)
    .await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    refused_everywhere(token).await;

    let (token, id) = signed_in("banned@example.com").await;
    let answer = admin
        .send(
            Method::PUT,
            &format!("/auth/v1/admin/users/{id}"),
            &[],
            Some(json!({"ban_duration": "24h"})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    refused_everywhere(token).await;

    let (token, id) = signed_in("deleted@example.com").await;
    let answer = admin
        .send(
            Method::DELETE,
            &format!("/auth/v1/admin/users/{id}"),
            &[],
            None,
        )
        .await;
    assert!(answer.status < 300, "{}", answer.text);
    refused_everywhere(token).await;
}

/// Concern: a SECURITY INVOKER function returning a table's rows reads them
/// under the table's select policy, as a GET would; a SECURITY DEFINER one
/// returns what its owner's rights give (its `execute` policy grants them).
#[tokio::test]
async fn functions_returning_table_rows_answer_to_the_tables_policy() {
    let basalt = Basalt::start().await;
    let admin = Client::service(&basalt);
    let (alice, alice_id) = Client::user(&basalt, "alice@example.com").await;
    let psql = connect(basalt.database_url().unwrap()).await;
    psql.batch_execute(&format!(
        "create table diary (id int primary key, owner uuid, entry text, mood text);
         insert into diary values (1, '{alice_id}', 'mine', 'ok'), (2, gen_random_uuid(), 'not mine', 'sad');
         create function my_diary() returns setof diary language sql stable as 'select * from diary';
         create function all_diary() returns setof diary language sql stable security definer as 'select * from diary';"
    ))
    .await
    .unwrap();
    for policy in [
        json!({"object": "table:public.diary", "action": "select", "condition": "owner=eq.{auth.uid}", "columns": ["id", "owner", "entry"]}),
        json!({"object": "function:public.my_diary", "action": "execute"}),
        json!({"object": "function:public.all_diary", "action": "execute"}),
    ] {
        let mut policy = policy;
        policy["subject"] = json!("authenticated");
        admin.policy(policy).await;
    }
    let answer = alice
        .send(
            Method::GET,
            "/rest/v1/rpc/my_diary?select=id,entry",
            &[],
            None,
        )
        .await;
    assert_eq!(
        answer.json(),
        json!([{"id": 1, "entry": "mine"}]),
        "{}",
        answer.text
    );
    // A column the table's policy does not give is refused, as for a GET.
    let answer = alice
        .send(Method::GET, "/rest/v1/rpc/my_diary?select=mood", &[], None)
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text);
    let answer = alice
        .send(
            Method::GET,
            "/rest/v1/rpc/all_diary?select=id&order=id",
            &[],
            None,
        )
        .await;
    assert_eq!(
        answer.json(),
        json!([{"id": 1}, {"id": 2}]),
        "{}",
        answer.text
    );
}

/// Concern (fairness): one caller's parallel heavy queries cannot take the
/// pool from others, and each statement is bounded in the database.
#[tokio::test]
async fn one_caller_cannot_starve_the_others() {
    let basalt = Basalt::builder()
        .env("BASALT_REST_MAX_CONCURRENT_PER_CALLER", "3")
        .env("BASALT_REST_STATEMENT_TIMEOUT_MS", "2000")
        .start()
        .await;
    let answer = basalt
        .admin_sql("create function nap(s float8) returns int language sql volatile as 'select 1 from pg_sleep(s)'")
        .await;
    assert_eq!(answer.status(), 200);
    let admin = Client::service(&basalt);
    admin
        .policy(json!({"subject": "authenticated", "object": "function:public.nap", "action": "execute"}))
        .await;
    let (greedy, _) = Client::user(&basalt, "greedy@example.com").await;
    let (other, _) = Client::user(&basalt, "other@example.com").await;
    async fn nap(client: &Client<'_>, seconds: f64) -> Answer {
        client
            .send(
                Method::POST,
                "/rest/v1/rpc/nap",
                &[],
                Some(json!({"s": seconds})),
            )
            .await
    }
    let (answers, others) = tokio::join!(
        futures_util::future::join_all((0..6).map(|_| nap(&greedy, 1.0))),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            nap(&other, 0.0).await
        }
    );
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(
        (ok, refused.len()),
        (3, 3),
        "{:?}",
        answers.iter().map(|a| &a.text).collect::<Vec<_>>()
    );
    // On /rest/v1 the code is PostgREST's for a request refused for want of a slot.
    assert_eq!(refused[0].json()["code"], "PGRST003");
    assert_eq!(refused[0].header("retry-after"), "1");
    assert_eq!(others.status, 200, "{}", others.text);
    // The statement timeout cancels a statement in the database.
    let answer = nap(&other, 5.0).await;
    assert_eq!(answer.status, 504, "{}", answer.text);
    assert_eq!(
        answer.json()["code"],
        "57014",
        "PostgreSQL's query_canceled"
    );
    // The service_role key is not limited by either.
    let answer = nap(&admin, 2.5).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

/// On a managed database Basalt's user is no superuser: with CREATEROLE it
/// still makes the login role; without it, the operator provides the role
/// and its password, and start-up checks it.
#[tokio::test]
async fn least_privilege_works_without_a_superuser() {
    let cluster = basalt_tests::PgServer::shared();
    let admin = cluster.connect("postgres").await;
    let suffix = std::process::id();
    let (owner, login) = (format!("owner_{suffix}"), format!("api_login_{suffix}"));
    let database = format!("managed_{suffix}");
    for statement in [
        format!("CREATE ROLE {owner} LOGIN CREATEROLE"),
        format!("CREATE DATABASE {database} OWNER {owner}"),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
    let url = format!("postgres://{owner}@127.0.0.1:{}/{database}", cluster.port);
    let basalt = Basalt::builder()
        .database_url(&url)
        .env("BASALT_DATABASE_API_ROLE", login.clone())
        .start()
        .await;
    let answer = basalt
        .admin_sql("create table t (id int primary key); insert into t values (1)")
        .await;
    assert_eq!(answer.status(), 200);
    Client::service(&basalt)
        .policy(json!({"subject": "anon", "object": "table:public.t", "action": "select"}))
        .await;
    let answer = Client::anon(&basalt)
        .send(Method::GET, "/rest/v1/t", &[], None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    drop(basalt);

    // An operator-managed login role that could become more is refused.
    admin
        .batch_execute(&format!("GRANT {owner} TO {login}"))
        .await
        .unwrap();
    let mut refused = Basalt::builder()
        .database_url(&url)
        .env("BASALT_DATABASE_API_ROLE", login.clone())
        .env("BASALT_DATABASE_API_PASSWORD", "operator-set")
        .no_wait()
        .start()
        .await;
    assert!(!refused
        .wait_exit(std::time::Duration::from_secs(30))
        .await
        .success());
    assert!(
        refused.logs().contains(&format!("can become `{owner}`")),
        "{}",
        refused.logs()
    );
}
