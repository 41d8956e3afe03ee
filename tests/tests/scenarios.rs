//! The request scenarios of `tests/scenarios/*.toml` against a real server
//! (see `basalt_tests::scenario`).

use basalt_tests::client::Client;
use basalt_tests::scenario::{Fixture, Scenario};
use basalt_tests::Basalt;
use serde_json::json;
use std::collections::HashMap;

#[tokio::test]
async fn every_surface_refuses_with_a_catalogue_error() {
    let basalt = Basalt::start().await;
    let response = basalt
        .admin_sql(
            "create table posts (id serial primary key, title text, secret text);
             create function add(a int, b int) returns int language sql immutable as 'select a + b';
             create function reveal(posts) returns text language sql stable as 'select $1.secret';
             notify pgrst, 'reload schema'",
        )
        .await;
    assert_eq!(response.status(), 200);
    let service = basalt.as_service();
    service
        .policy(json!({"subject": "anon", "object": "table:public.posts", "action": "select", "columns": ["id", "title"]}))
        .await;
    service
        .post(
            "/storage/v1/bucket",
            json!({"name": "files", "public": true}),
        )
        .await
        .expect(200);
    let (alice, _) = Client::user(&basalt, "alice@example.com").await;
    let fixture = Fixture {
        tokens: HashMap::from([("alice".to_owned(), alice.token.unwrap())]),
        ..Fixture::default()
    };
    Scenario::run_all(&Scenario::load("scenarios/errors.toml"), &basalt, &fixture).await;
}
