//! PostgreSQL row-level security as the second layer: a transaction acting as
//! the caller (role and JWT claims) sees only what the table's RLS policies
//! allow, through the `auth.uid()`/`auth.role()`/`auth.jwt()` helpers.

use basalt_server::db::rls::{database_role, ACT_AS};
use basalt_tests::{connect, Basalt};
use serde_json::json;

#[tokio::test]
async fn rls_policies_see_the_callers_claims() {
    // A server migrates the database: roles and helper functions exist.
    let basalt = Basalt::start().await;
    let mut client = connect(basalt.database_url().unwrap()).await;
    client
        .batch_execute(
            "CREATE TABLE notes (id serial PRIMARY KEY, owner uuid, org text, body text);
             ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
             CREATE POLICY own_notes ON notes FOR SELECT TO authenticated USING (owner = auth.uid());
             CREATE POLICY org_notes ON notes FOR SELECT TO authenticated USING (org = auth.jwt() -> 'app_metadata' ->> 'org');
             CREATE POLICY public_notes ON notes FOR SELECT TO anon USING (owner IS NULL AND auth.role() = 'anon');
             GRANT SELECT ON notes TO anon, authenticated;
             INSERT INTO notes (owner, org, body) VALUES
               ('7f0c3b5e-0000-4000-8000-00000000000a', 'x', 'alice''s'),
               ('7f0c3b5e-0000-4000-8000-00000000000b', 'y', 'bob''s'),
               ('7f0c3b5e-0000-4000-8000-00000000000c', 'z', 'carol''s, org y member can read? no: org z'),
               (NULL, NULL, 'public');",
        )
        .await
        .unwrap();
    let config = basalt_core::config::AuthzConfig::default();

    let bodies = |rows: Vec<tokio_postgres::Row>| {
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    let cases = [
        (
            true,
            json!({"sub": "7f0c3b5e-0000-4000-8000-00000000000a", "role": "authenticated", "app_metadata": {"org": "y"}}),
            vec!["alice's", "bob's"],
        ),
        (
            true,
            json!({"sub": "7f0c3b5e-0000-4000-8000-00000000000c", "role": "authenticated"}),
            vec!["carol's, org y member can read? no: org z"],
        ),
        (false, json!({"role": "anon"}), vec!["public"]),
    ];
    for (signed_in, claims, expected) in cases {
        let transaction = client.transaction().await.unwrap();
        transaction
            .execute(
                ACT_AS,
                &[
                    &claims.to_string(),
                    &database_role(&config, signed_in),
                    &"0",
                ],
            )
            .await
            .unwrap();
        let rows = transaction
            .query("SELECT body FROM notes ORDER BY id", &[])
            .await
            .unwrap();
        assert_eq!(bodies(rows), expected, "{claims}");
        let who: String = transaction
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, database_role(&config, signed_in));
        transaction.rollback().await.unwrap();
    }
    // The role and claims end with the transaction.
    let who: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(who, "authenticated");
    let claims: Option<String> = client
        .query_one(
            "SELECT nullif(current_setting('request.jwt.claims', true), '')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(claims, None);
    // A role name is a parameter, never SQL: a hostile one is just an unknown role.
    let transaction = client.transaction().await.unwrap();
    let error = transaction
        .execute(ACT_AS, &[&"{}", &"authenticated; DROP TABLE notes", &"0"])
        .await
        .unwrap_err();
    let message = error
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("does not exist"), "{message}");
    drop(transaction);
    let count: i64 = client
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 4);
}
