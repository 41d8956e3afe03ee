//! Authorization against a real server: the matrix file through the policy
//! explainer, the admin API's checks, propagation between two servers sharing
//! one database, and admin access granted by policy.

use basalt_tests::{Basalt, PgServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Replaces `{name}` placeholders with user ids, in strings at any depth.
fn fill(value: &Value, ids: &HashMap<String, String>) -> Value {
    match value {
        Value::String(text) => {
            let mut text = text.clone();
            for (name, id) in ids {
                text = text.replace(&format!("{{{name}}}"), id);
            }
            Value::String(text)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, ids)).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), fill(v, ids))).collect())
        }
        other => other.clone(),
    }
}

#[tokio::test]
async fn the_authorization_matrix() {
    let matrix: Value = {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/authz_matrix.toml"))
                .unwrap();
        serde_json::to_value(text.parse::<toml::Table>().unwrap()).unwrap()
    };
    let basalt = Basalt::start().await;
    let admin = basalt.as_service();
    for role in matrix["roles"].as_array().unwrap() {
        let (status, body) = admin
            .call(
                Method::POST,
                "/admin/v1/roles",
                Some(json!({"name": role["name"]})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    for role in matrix["roles"].as_array().unwrap() {
        for parent in role["parents"].as_array().into_iter().flatten() {
            let path = format!("/admin/v1/roles/{}/parents", role["name"].as_str().unwrap());
            let (status, body) = admin
                .call(Method::POST, &path, Some(json!({"parent": parent})))
                .await;
            assert_eq!(status, 201, "{body}");
        }
    }
    let mut ids = HashMap::new();
    for user in matrix["users"].as_array().unwrap() {
        let key = user["key"].as_str().unwrap();
        let mut body = json!({"email": format!("{key}@example.com"), "password": "password one", "email_confirm": true});
        if let Some(app_metadata) = user.get("app_metadata") {
            body["app_metadata"] = app_metadata.clone();
        }
        let (status, created) = admin
            .call(Method::POST, "/auth/v1/admin/users", Some(body))
            .await;
        assert_eq!(status, 200, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        for role in user["roles"].as_array().into_iter().flatten() {
            let (status, body) = admin
                .call(
                    Method::POST,
                    &format!("/admin/v1/users/{id}/roles"),
                    Some(json!({"role": role})),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
        ids.insert(key.to_owned(), id);
    }
    for policy in matrix["policies"].as_array().unwrap() {
        let (status, body) = admin
            .call(Method::POST, "/admin/v1/policies", Some(fill(policy, &ids)))
            .await;
        assert_eq!(status, 201, "{policy} → {body}");
    }
    let cases = matrix["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let case = fill(case, &ids);
        let mut question =
            json!({"subject": case["subject"], "object": case["object"], "action": case["action"]});
        if let Some(row) = case.get("row") {
            question["row"] = row.clone();
        }
        let (status, answer) = admin
            .call(Method::POST, "/admin/v1/policies/explain", Some(question))
            .await;
        assert_eq!(status, 200, "{answer}");
        let name = &case["name"];
        assert_eq!(answer["allowed"], case["allowed"], "{name}: {answer}");
        if let Some(expected) = case.get("row_allowed") {
            assert_eq!(&answer["row_allowed"], expected, "{name}: {answer}");
        }
        if let Some(expected) = case.get("columns") {
            assert_eq!(&answer["columns"], expected, "{name}: {answer}");
        }
        if answer["allowed"] == true && case["subject"] != "service_role" {
            assert!(
                answer["policy"]["id"].is_string(),
                "{name}: which policy decided: {answer}"
            );
        }
    }
}

#[tokio::test]
async fn explain_shows_the_sql_condition_for_a_real_table() {
    let basalt = Basalt::start().await;
    let admin = basalt.as_service();
    basalt
        .admin_sql("create table posts (id serial primary key, author_id uuid, published boolean)")
        .await;
    let (_, user) = admin
        .call(
            Method::POST,
            "/auth/v1/admin/users",
            Some(json!({"email": "w@example.com", "email_confirm": true})),
        )
        .await;
    let id = user["id"].as_str().unwrap();
    admin
        .call(
            Method::POST,
            "/admin/v1/policies",
            Some(json!({"subject": "authenticated", "object": "table:public.posts", "action": "select",
                        "condition": "or=(published.is.true,author_id.eq.{auth.uid})"})),
        )
        .await;
    let (status, answer) = admin
        .call(
            Method::POST,
            "/admin/v1/policies/explain",
            Some(json!({"subject": format!("user:{id}"), "object": "table:public.posts", "action": "select"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["condition"],
        "or=(published.is.true,author_id.eq.{auth.uid})"
    );
    assert_eq!(
        answer["sql"]["where"],
        "(\"published\" IS TRUE) OR (\"author_id\" = $1::text::uuid)"
    );
    assert_eq!(answer["sql"]["params"], json!([id]));
    assert!(answer["subjects"]
        .as_array()
        .unwrap()
        .contains(&json!("authenticated")));
    let (_, denied) = admin
        .call(
            Method::POST,
            "/admin/v1/policies/explain",
            Some(json!({"subject": "anon", "object": "table:public.posts", "action": "select"})),
        )
        .await;
    assert_eq!(denied["allowed"], false, "deny by default");
    assert!(
        denied["reason"].as_str().unwrap().contains("no policy"),
        "{denied}"
    );
}

#[tokio::test]
async fn bad_policies_and_roles_are_refused_with_reasons() {
    let basalt = Basalt::start().await;
    let admin = basalt.as_service();
    let cases = [
        (
            json!({"subject": "authenticated", "object": "table:public.posts", "action": "read"}),
            400,
            "action",
        ),
        (
            json!({"subject": "authenticated", "object": "tables:posts", "action": "select"}),
            400,
            "object",
        ),
        (
            json!({"subject": "authenticated", "object": "table:", "action": "select"}),
            400,
            "object",
        ),
        (
            json!({"subject": "authenticated", "object": "table:public.posts", "action": "select", "condition": "owner=equals.1"}),
            400,
            "condition",
        ),
        (
            json!({"subject": "authenticated", "object": "table:public.posts", "action": "select", "condition": "owner=eq.{auth.password}"}),
            400,
            "condition",
        ),
        (
            json!({"subject": "ghosts", "object": "table:public.posts", "action": "select"}),
            404,
            "ghosts",
        ),
        (
            json!({"subject": "Bad Name", "object": "table:public.posts", "action": "select"}),
            400,
            "subject",
        ),
        (
            json!({"subject": "authenticated", "object": "table:public.posts", "action": "select", "columns": []}),
            400,
            "columns",
        ),
    ];
    for (body, status, mention) in cases {
        let (got, answer) = admin
            .call(Method::POST, "/admin/v1/policies", Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(
            answer["details"].as_str().unwrap_or("").contains(mention),
            "{body}: {answer}"
        );
    }
    admin
        .call(Method::POST, "/admin/v1/roles", Some(json!({"name": "a"})))
        .await;
    admin
        .call(
            Method::POST,
            "/admin/v1/roles",
            Some(json!({"name": "b", "parents": ["a"]})),
        )
        .await;
    let (status, answer) = admin
        .call(
            Method::POST,
            "/admin/v1/roles/a/parents",
            Some(json!({"parent": "b"})),
        )
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("validation_failed")),
        "cycles are refused: {answer}"
    );
    let (status, answer) = admin
        .call(Method::POST, "/admin/v1/roles", Some(json!({"name": "a"})))
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("already_exists"))
    );
    let (status, body) = admin
        .call(
            Method::PUT,
            "/admin/v1/roles/b",
            Some(json!({"description": "bees"})),
        )
        .await;
    assert_eq!(
        (status, body["description"].as_str()),
        (200, Some("bees")),
        "{body}"
    );
    let (_, roles) = admin.call(Method::GET, "/admin/v1/roles", None).await;
    assert!(roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "b" && r["description"] == "bees"));
    let (status, _) = admin
        .call(
            Method::PUT,
            "/admin/v1/roles/ghost",
            Some(json!({"description": "x"})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = admin
        .call(Method::DELETE, "/admin/v1/roles/authenticated", None)
        .await;
    assert_eq!(status, 400, "built-in roles stay");
    let (status, answer) = admin
        .call(
            Method::DELETE,
            "/admin/v1/policies/00000000-0000-0000-0000-000000000000",
            None,
        )
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (404, Some("policy_not_found"))
    );
    let (_, list) = admin.call(Method::GET, "/admin/v1/policies", None).await;
    assert_eq!(list["policies"], json!([]), "nothing half-written");
    let (_, log) = admin
        .call(Method::GET, "/admin/v1/audit?event=role_created", None)
        .await;
    assert_eq!(
        log["entries"].as_array().unwrap().len(),
        2,
        "changes are audited"
    );
}

#[tokio::test]
async fn a_change_on_one_server_reaches_another_sharing_the_database() {
    let url = PgServer::shared().fresh_database().await;
    let (a, b) = tokio::join!(
        Basalt::builder().database_url(&url).start(),
        Basalt::builder().database_url(&url).start()
    );
    let admin_a = a.as_service();
    let admin_b = b.as_service();
    let question = json!({"subject": "anon", "object": "channel:lobby", "action": "subscribe"});
    let (_, before) = admin_b
        .call(
            Method::POST,
            "/admin/v1/policies/explain",
            Some(question.clone()),
        )
        .await;
    assert_eq!(before["allowed"], false);
    let (status, policy) = admin_a
        .call(
            Method::POST,
            "/admin/v1/policies",
            Some(json!({"subject": "anon", "object": "channel:lobby", "action": "subscribe"})),
        )
        .await;
    assert_eq!(status, 201);
    // LISTEN/NOTIFY carries the change; poll for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, answer) = admin_b
            .call(
                Method::POST,
                "/admin/v1/policies/explain",
                Some(question.clone()),
            )
            .await;
        if answer["allowed"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the policy never reached the second server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    admin_a
        .call(
            Method::DELETE,
            &format!("/admin/v1/policies/{}", policy["id"].as_str().unwrap()),
            None,
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, answer) = admin_b
            .call(
                Method::POST,
                "/admin/v1/policies/explain",
                Some(question.clone()),
            )
            .await;
        if answer["allowed"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deletion never reached the second server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn admin_access_can_be_granted_by_policy() {
    let basalt = Basalt::start().await;
    let admin = basalt.as_service();
    let anon = basalt.keys().anon;
    let (_, user) = admin
        .call(Method::POST, "/auth/v1/admin/users", Some(json!({"email": "ops@example.com", "password": "password one", "email_confirm": true})))
        .await;
    let id = user["id"].as_str().unwrap().to_owned();
    let login = basalt
        .http
        .post(basalt.url("/auth/v1/token?grant_type=password"))
        .header("apikey", &anon)
        .json(&json!({"email": "ops@example.com", "password": "password one"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    let as_user = |method: Method, path: &'static str, body: Option<Value>| {
        let token = token.clone();
        let anon = anon.clone();
        let basalt = &basalt;
        async move {
            let mut request = basalt
                .http
                .request(method, basalt.url(path))
                .header("apikey", anon)
                .bearer_auth(token);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, _) = as_user(Method::GET, "/admin/v1/policies", None).await;
    assert_eq!(status, 403, "no policy, no admin");
    admin
        .call(
            Method::POST,
            "/admin/v1/roles",
            Some(json!({"name": "ops"})),
        )
        .await;
    admin
        .call(
            Method::POST,
            "/admin/v1/policies",
            Some(json!({"subject": "ops", "object": "admin:authz", "action": "*"})),
        )
        .await;
    admin
        .call(
            Method::POST,
            &format!("/admin/v1/users/{id}/roles"),
            Some(json!({"role": "ops"})),
        )
        .await;
    let (status, body) = as_user(Method::GET, "/admin/v1/policies", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_user(
        Method::POST,
        "/admin/v1/policies",
        Some(json!({"subject": "authenticated", "object": "index:docs", "action": "search"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, log) = admin
        .call(Method::GET, "/admin/v1/audit?event=policy_created", None)
        .await;
    assert_eq!(
        log["entries"][0]["actor_id"],
        json!(id),
        "the audit names the admin user"
    );
    // The service_role cannot be handed to a user.
    let (status, _) = admin
        .call(
            Method::POST,
            &format!("/admin/v1/users/{id}/roles"),
            Some(json!({"role": "service_role"})),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn declared_roles_and_policies_are_reconciled_at_start_up() {
    let url = PgServer::shared().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("basalt.toml");
    let declared = r#"
[[authz.roles]]
name = "editor"
parents = ["authenticated"]

[[authz.policies]]
subject = "editor"
object = "table:public.posts"
action = "update"
columns = ["title"]

[[authz.policies]]
subject = "anon"
object = "channel:news"
action = "subscribe"
"#;
    std::fs::write(&file, declared).unwrap();
    let start = || {
        Basalt::builder()
            .database_url(&url)
            .env("BASALT_CONFIG", file.display().to_string())
            .start()
    };
    let first = start().await;
    let admin = first.as_service();
    let (_, listed) = admin.call(Method::GET, "/admin/v1/policies", None).await;
    let policies = listed["policies"].as_array().unwrap().clone();
    assert_eq!(policies.len(), 2, "{listed}");
    assert!(policies.iter().all(|p| p["source"] == "config"));
    let (_, answer) = admin
        .call(
            Method::POST,
            "/admin/v1/policies/explain",
            Some(json!({"subject": "editor", "object": "table:public.posts", "action": "update"})),
        )
        .await;
    assert_eq!(
        (answer["allowed"].clone(), answer["columns"].clone()),
        (json!(true), json!(["title"]))
    );

    let id = policies[0]["id"].as_str().unwrap();
    let (status, body) = admin
        .call(Method::DELETE, &format!("/admin/v1/policies/{id}"), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("declared_in_config")),
        "{body}"
    );
    let (status, body) = admin
        .call(Method::DELETE, "/admin/v1/roles/editor", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("declared_in_config"))
    );
    let (status, _) = admin
        .call(
            Method::DELETE,
            "/admin/v1/roles/editor/parents/authenticated",
            None,
        )
        .await;
    assert_eq!(status, 409);
    // A policy made through the API lives beside the declared ones.
    admin
        .call(
            Method::POST,
            "/admin/v1/policies",
            Some(json!({"subject": "anon", "object": "index:docs", "action": "search"})),
        )
        .await;
    drop(first);

    // Same file: same ids, nothing duplicated.
    let second = start().await;
    let (_, again) = second
        .as_service()
        .call(Method::GET, "/admin/v1/policies", None)
        .await;
    let ids = |list: &Value| -> Vec<String> {
        let mut ids: Vec<String> = list["policies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["source"] == "config")
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&again), ids(&listed), "reconciling is idempotent");
    assert_eq!(again["policies"].as_array().unwrap().len(), 3);
    drop(second);

    // A declaration removed from the file is removed from the database; API ones stay.
    std::fs::write(&file, declared.replace("[[authz.policies]]\nsubject = \"anon\"\nobject = \"channel:news\"\naction = \"subscribe\"\n", "")).unwrap();
    let third = start().await;
    let (_, after) = third
        .as_service()
        .call(Method::GET, "/admin/v1/policies", None)
        .await;
    let objects: Vec<&str> = after["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["object"].as_str().unwrap())
        .collect();
    assert_eq!(objects, vec!["table:public.posts", "index:docs"], "{after}");
}

#[tokio::test]
async fn a_policy_can_be_updated_in_place() {
    let basalt = Basalt::start().await;
    let admin = basalt.as_service();
    let (_, policy) = admin
        .call(
            Method::POST,
            "/admin/v1/policies",
            Some(json!({"subject": "anon", "object": "channel:lobby", "action": "subscribe"})),
        )
        .await;
    let id = policy["id"].as_str().unwrap();
    let changed = json!({"subject": "authenticated", "object": "channel:lobby", "action": "broadcast",
                         "condition": "room=eq.{auth.role}", "description": "members may talk"});
    let (status, updated) = admin
        .call(
            Method::PUT,
            &format!("/admin/v1/policies/{id}"),
            Some(changed),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (updated["id"].as_str(), updated["action"].as_str()),
        (Some(id), Some("broadcast"))
    );
    let ask = |subject: &str, action: &str, row: Value| json!({"subject": subject, "object": "channel:lobby", "action": action, "row": row});
    let (_, old) = admin
        .call(
            Method::POST,
            "/admin/v1/policies/explain",
            Some(ask("anon", "subscribe", json!({}))),
        )
        .await;
    assert_eq!(old["allowed"], false, "the old rule is gone");
    let (_, new) = admin
        .call(
            Method::POST,
            "/admin/v1/policies/explain",
            Some(ask(
                "authenticated",
                "broadcast",
                json!({"room": "authenticated"}),
            )),
        )
        .await;
    assert_eq!(
        (new["allowed"].clone(), new["row_allowed"].clone()),
        (json!(true), json!(true)),
        "{new}"
    );
    let (status, body) = admin
        .call(
            Method::PUT,
            &format!("/admin/v1/policies/{id}"),
            Some(json!({"subject": "anon", "object": "channel:lobby", "action": "fly"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_failed"))
    );
    let (_, log) = admin
        .call(Method::GET, "/admin/v1/audit?event=policy_updated", None)
        .await;
    assert_eq!(log["entries"].as_array().unwrap().len(), 1);
}

/// Found by review: the key role's bypass cannot be reached by a user, and
/// policies with different rows and columns never widen each other.
#[tokio::test]
async fn no_way_around_the_service_role_and_no_widening_by_combination() {
    let basalt = Basalt::start().await;
    let admin = basalt.as_service();
    let (_, user) = admin
        .call(
            Method::POST,
            "/auth/v1/admin/users",
            Some(json!({"email": "sneaky@example.com", "email_confirm": true, "app_metadata": {"roles": ["service_role"]}})),
        )
        .await;
    let id = user["id"].as_str().unwrap().to_owned();
    let explain = |body: Value| admin.call(Method::POST, "/admin/v1/policies/explain", Some(body));
    let (_, answer) = explain(
        json!({"subject": format!("user:{id}"), "object": "admin:authz", "action": "write"}),
    )
    .await;
    assert_eq!(
        answer["allowed"], false,
        "a claim cannot make a user the service role: {answer}"
    );
    let (status, body) = admin
        .call(
            Method::POST,
            "/admin/v1/roles",
            Some(json!({"name": "root", "parents": ["service_role"]})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_failed")),
        "{body}"
    );

    basalt
        .admin_sql("create table posts (id int, author_id uuid, title text, secret text)")
        .await;
    admin
        .call(
            Method::POST,
            "/admin/v1/roles",
            Some(json!({"name": "editor"})),
        )
        .await;
    admin
        .call(
            Method::POST,
            &format!("/admin/v1/users/{id}/roles"),
            Some(json!({"role": "editor"})),
        )
        .await;
    for policy in [
        json!({"subject": "editor", "object": "table:public.posts", "action": "select", "columns": ["id", "title"]}),
        json!({"subject": "authenticated", "object": "table:public.posts", "action": "select", "condition": "author_id=eq.{auth.uid}"}),
    ] {
        let (status, body) = admin
            .call(Method::POST, "/admin/v1/policies", Some(policy))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let ask = |columns: Value| json!({"subject": format!("user:{id}"), "object": "table:public.posts", "action": "select", "columns": columns});
    let (_, titles) = explain(ask(json!(["title"]))).await;
    assert_eq!(
        (titles["allowed"].clone(), titles["condition"].clone()),
        (json!(true), Value::Null),
        "every row's title: {titles}"
    );
    let (_, secrets) = explain(ask(json!(["title", "secret"]))).await;
    assert_eq!(secrets["allowed"], true);
    assert_eq!(
        secrets["condition"], "author_id=eq.{auth.uid}",
        "the secret only on own rows: {secrets}"
    );

    // A condition naming a column the table lacks is refused when saved.
    let (status, body) = admin
        .call(Method::POST, "/admin/v1/policies", Some(json!({"subject": "anon", "object": "table:public.posts", "action": "select", "condition": "auther_id=eq.{auth.uid}"})))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["details"].as_str().unwrap().contains("auther_id"),
        "{body}"
    );

    // Deleting the user takes their own policies along.
    admin
        .call(Method::POST, "/admin/v1/policies", Some(json!({"subject": format!("user:{id}"), "object": "channel:x", "action": "subscribe"})))
        .await;
    admin
        .call(Method::DELETE, &format!("/auth/v1/admin/users/{id}"), None)
        .await;
    let (_, list) = admin.call(Method::GET, "/admin/v1/policies", None).await;
    assert!(
        list["policies"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| !p["subject"].as_str().unwrap().starts_with("user:")),
        "{list}"
    );
}
