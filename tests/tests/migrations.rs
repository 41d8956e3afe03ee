//! Basalt's own schema migrations: idempotent, listed by --dry-run, applied
//! exactly once when several replicas start together, kept out of `public`.

use basalt_tests::{basalt_command, connect, Basalt, PgServer};

/// The output of `basalt migrate` for every migration: `pending: V1__…` lines.
fn listed(word: &str) -> String {
    basalt_tests::migration_names()
        .iter()
        .map(|name| format!("{word}: {name}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn migrate(url: &str, args: &[&str]) -> (bool, String, String) {
    let output = basalt_command(&[("DATABASE_URL".to_owned(), url.to_owned())])
        .arg("migrate")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn dry_run_lists_then_migrate_applies_once() {
    let url = PgServer::shared().fresh_database().await;
    let (ok, out, err) = migrate(&url, &["--dry-run"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), listed("pending"));
    let client = connect(&url).await;
    let exists: bool = client
        .query_one("select to_regnamespace('basalt') is not null", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "--dry-run changed the database");

    let (ok, out, err) = migrate(&url, &[]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), listed("applied"));
    let (ok, out, _) = migrate(&url, &[]);
    assert!(ok);
    assert_eq!(out.trim(), "up to date: no pending migrations");
    let (_, out, _) = migrate(&url, &["--dry-run"]);
    assert_eq!(out.trim(), "up to date: no pending migrations");
}

#[tokio::test]
async fn concurrent_migrators_apply_each_migration_exactly_once() {
    let url = PgServer::shared().fresh_database().await;
    let spawned: Vec<std::process::Child> = (0..4)
        .map(|_| {
            basalt_command(&[("DATABASE_URL".to_owned(), url.clone())])
                .arg("migrate")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut applied_by = 0;
    for child in spawned {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if String::from_utf8_lossy(&output.stdout).contains("applied: V1__basalt_schema") {
            applied_by += 1;
        }
    }
    assert_eq!(applied_by, 1, "exactly one starter applies the migration");
    let client = connect(&url).await;
    let row = client
        .query_one(
            "select count(*), count(distinct version) from basalt.schema_migrations",
            &[],
        )
        .await
        .unwrap();
    let (rows, versions): (i64, i64) = (row.get(0), row.get(1));
    let count = basalt_tests::migration_names().len() as i64;
    assert_eq!(
        (rows, versions),
        (count, count),
        "each migration recorded once"
    );
    let instances: i64 = client
        .query_one("select count(*) from basalt.instance", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(instances, 1, "the migration's insert ran once");
}

#[tokio::test]
async fn two_servers_starting_together_on_one_database_both_serve() {
    let url = PgServer::shared().fresh_database().await;
    let (a, b) = tokio::join!(
        Basalt::builder().database_url(&url).start(),
        Basalt::builder().database_url(&url).start()
    );
    for basalt in [&a, &b] {
        let response = basalt
            .http
            .get(basalt.url("/admin/v1/status"))
            .header("apikey", basalt.keys().service_role)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test]
async fn basalt_keeps_out_of_the_public_schema() {
    let basalt = Basalt::start().await;
    let client = connect(basalt.database_url().unwrap()).await;
    let public: i64 = client
        .query_one("select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(public, 0, "Basalt created objects in public");
    let ours: Vec<String> = client
        .query(
            "select tablename::text from pg_tables where schemaname = 'basalt' order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        ours,
        vec![
            "api_grants",
            "app_migrations",
            "changes",
            "feed_consumers",
            "feed_state",
            "idempotency_keys",
            "instance",
            "jobs",
            "policies",
            "presence",
            "realtime_replicas",
            "role_parents",
            "roles",
            "schema_migrations",
            "search_indexes",
            "user_roles"
        ]
    );
}

#[tokio::test]
async fn migrate_works_on_the_embedded_cluster_too() {
    let dir = tempfile::Builder::new()
        .prefix("basalt-migrate-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let env = [(
        "BASALT_DATA_DIR".to_owned(),
        dir.path().display().to_string(),
    )];
    let run = |args: &[&str]| {
        let output = basalt_command(&env).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(run(&["migrate", "--dry-run"]), listed("pending"));
    assert_eq!(run(&["migrate"]), listed("applied"));
    assert_eq!(
        run(&["migrate", "--dry-run"]),
        "up to date: no pending migrations"
    );
    assert!(
        !dir.path().join("postgres/postmaster.pid").exists(),
        "the cluster was left running"
    );
}
