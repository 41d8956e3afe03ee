//! The command line: version, configuration layering and validation as the
//! binary sees them, `config show` redaction, and secrets kept out of logs.

use basalt_tests::{basalt_command, Basalt, PgServer};

fn run(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Each command runs in a scratch directory, so the default data dir
    // (`./basalt-data`) never lands in the source tree.
    let scratch = tempfile::tempdir().unwrap();
    let output = basalt_command(&env)
        .current_dir(scratch.path())
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn version_is_printed() {
    let (code, out, _) = run(&[], &["--version"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.trim(), format!("basalt {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_bad_setting_stops_start_up_with_the_setting_the_problem_and_the_fix() {
    let (code, out, err) = run(&[("BASALT_SERVER_REQUEST_TIMEOUT_MS", "soon")], &["serve"]);
    assert_eq!(code, Some(2));
    assert!(out.is_empty());
    assert!(err.contains("`server.request_timeout_ms`"), "{err}");
    assert!(
        err.contains("environment variable BASALT_SERVER_REQUEST_TIMEOUT_MS"),
        "{err}"
    );
    assert!(err.contains("`soon` is not a whole number"), "{err}");
    assert!(err.contains("fix: "), "{err}");

    let (code, _, err) = run(&[], &["serve", "--http", "localhost"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("flag --http") && err.contains("IP:PORT"),
        "{err}"
    );

    let (code, _, err) = run(
        &[("DATABASE_URL", "postgres://app:pw@db/app?sslmode=sometimes")],
        &["migrate"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`database.url`") && err.contains("DATABASE_URL"),
        "{err}"
    );
    assert!(!err.contains(":pw@"), "the URL is not echoed: {err}");

    let (code, _, err) = run(
        &[
            ("BASALT_JWT_SIGNING_KEY_FILE", "/nonexistent/key.pem"),
            ("DATABASE_URL", "postgres://a@127.0.0.1:1/a"),
        ],
        &["serve"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("jwt.signing_key_file: cannot read /nonexistent/key.pem"),
        "{err}"
    );

    let (code, _, err) = run(&[("BASALT_JWT_SECRET", "too-short")], &["keys"]);
    assert_eq!(code, Some(2), "every subcommand validates");
    assert!(
        err.contains("jwt.secret") && err.contains("at least 32"),
        "{err}"
    );
    assert!(
        !err.contains("too-short"),
        "the secret itself is not echoed: {err}"
    );
}

#[test]
fn the_config_file_is_checked_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("basalt.toml");
    std::fs::write(&file, "[server]\nrequest_timout_ms = 10\n").unwrap();
    let (code, _, err) = run(&[], &["config", "show", "--config", file.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("did you mean `server.request_timeout_ms`"),
        "{err}"
    );

    let (code, _, err) = run(
        &[],
        &["config", "show", "--config", "/nonexistent/basalt.toml"],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot be read"), "{err}");
}

#[test]
fn layers_meet_in_config_show_and_secrets_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("basalt.toml");
    std::fs::write(
        &file,
        "http = \"127.0.0.1:7001\"\n[server]\nrequest_timeout_ms = 1111\nbody_limit_bytes = 4096\n[jwt]\nsecret = \"file-secret-file-secret-file-secret-0000\"\n",
    )
    .unwrap();
    let (code, out, err) = run(
        &[
            ("BASALT_CONFIG", file.to_str().unwrap()),
            ("BASALT_SERVER_REQUEST_TIMEOUT_MS", "2222"),
            (
                "DATABASE_URL",
                "postgres://app:hunter2-password@db.internal:5432/app",
            ),
        ],
        &["config", "show", "--http", "127.0.0.1:7002"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("http = \"127.0.0.1:7002\""),
        "flag wins:\n{out}"
    );
    assert!(
        out.contains("request_timeout_ms = 2222"),
        "env beats file:\n{out}"
    );
    assert!(
        out.contains("body_limit_bytes = 4096"),
        "file beats default:\n{out}"
    );
    assert!(
        out.contains("url = \"postgres://app:<redacted>@db.internal:5432/app\""),
        "{out}"
    );
    assert!(out.contains("secret = \"<redacted>\""), "{out}");
    assert!(
        !out.contains("hunter2") && !out.contains("file-secret"),
        "{out}"
    );
}

#[tokio::test]
async fn secrets_stay_out_of_the_logs() {
    let port = PgServer::shared().port;
    let database = PgServer::shared().fresh_database().await;
    let name = database.rsplit('/').next().unwrap();
    // The test cluster trusts loopback, so any password is accepted: it is only
    // here to be looked for in the logs.
    let url = format!("postgres://postgres:hunter2-db-password@127.0.0.1:{port}/{name}");
    let basalt = Basalt::builder()
        .database_url(&url)
        .env("BASALT_LOG_LEVEL", "debug")
        .start()
        .await;
    basalt.admin_sql("select 1").await;
    basalt
        .http
        .get(basalt.url("/admin/v1/status?apikey=leaky"))
        .send()
        .await
        .unwrap();
    let logs = basalt.logs();
    assert!(
        !logs.contains("hunter2-db-password"),
        "the database password was logged"
    );
    assert!(
        !logs.contains(basalt_tests::TEST_JWT_SECRET),
        "the JWT secret was logged"
    );
    assert!(
        !logs.contains(&basalt.keys().service_role),
        "an API key was logged"
    );
    assert!(
        !logs.contains("leaky"),
        "query strings (which may carry keys) were logged"
    );

    // A connection failure names the server but not the password.
    let (code, _, err) = run(
        &[
            (
                "DATABASE_URL",
                "postgres://app:hunter2-db-password@127.0.0.1:1/app",
            ),
            ("BASALT_DATABASE_STARTUP_TIMEOUT_MS", "0"),
        ],
        &["migrate"],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot reach the database"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
