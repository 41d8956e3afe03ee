//! The embedded default: Basalt runs its own PostgreSQL cluster in the data
//! directory, keeps data and generated secrets across restarts, restarts the
//! cluster when it dies, and stops it cleanly.

use basalt_tests::{parse_keys, Basalt};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("basalt-embedded-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

async fn embedded(dir: &Path) -> Basalt {
    // No JWT secret configured: Basalt generates and keeps one.
    Basalt::builder()
        .embedded(dir)
        .env("BASALT_JWT_SECRET", "")
        .start()
        .await
}

fn postmaster_pid(dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(dir.join("postgres/postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

async fn sql(basalt: &Basalt, query: &str) -> Value {
    let response = basalt.admin_sql(query).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_embedded_cluster_keeps_data_and_keys_across_restarts() {
    let dir = data_dir();
    let mut first = embedded(dir.path()).await;
    let keys = first.keys();
    let status: Value = first
        .http
        .get(first.url("/admin/v1/status"))
        .header("apikey", &keys.service_role)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["database"]["embedded"], true, "{status}");

    // Unix socket only: no TCP port is taken.
    let listen = sql(&first, "show listen_addresses").await;
    assert_eq!(listen["results"][0]["rows"][0][0], "");
    assert!(dir.path().join("run/.s.PGSQL.5432").exists());

    let secrets = dir.path().join("secrets.toml");
    assert_eq!(
        std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let secret_text = std::fs::read_to_string(&secrets).unwrap();
    let jwt_secret = secret_text
        .lines()
        .find_map(|line| line.strip_prefix("jwt_secret = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert!(
        !first.logs().contains(&jwt_secret),
        "the generated secret was logged"
    );

    sql(
        &first,
        "create table notes (body text); insert into notes values ('kept')",
    )
    .await;
    // Unqualified names land in public, not in Basalt's own schema.
    let schema = sql(
        &first,
        "select table_schema::text from information_schema.tables where table_name = 'notes'",
    )
    .await;
    assert_eq!(
        schema["results"][0]["rows"],
        serde_json::json!([["public"]])
    );

    first.signal(Signal::SIGTERM);
    assert_eq!(
        first.wait_exit(Duration::from_secs(60)).await.code(),
        Some(0),
        "{}",
        first.logs()
    );
    assert!(
        postmaster_pid(dir.path()).is_none(),
        "PostgreSQL was not stopped cleanly"
    );
    assert!(first.logs().contains("embedded PostgreSQL stopped"));
    drop(first);

    let second = embedded(dir.path()).await;
    assert_eq!(
        second.keys().service_role,
        keys.service_role,
        "the generated JWT secret is kept"
    );
    let rows = sql(&second, "select body from notes").await;
    assert_eq!(rows["results"][0]["rows"], serde_json::json!([["kept"]]));

    // `basalt keys --data-dir D` with nothing else set prints the same keys.
    let output = basalt_tests::basalt_command(&[])
        .args(["keys", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        parse_keys(&String::from_utf8_lossy(&output.stdout)).anon,
        keys.anon
    );
}

#[tokio::test]
async fn a_dead_cluster_is_restarted_and_service_resumes() {
    let dir = data_dir();
    let basalt = embedded(dir.path()).await;
    let key = basalt.keys().service_role;
    let before = postmaster_pid(dir.path()).unwrap();
    signal::kill(Pid::from_raw(before), Signal::SIGKILL).unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let after = postmaster_pid(dir.path());
        let status = basalt
            .http
            .get(basalt.url("/admin/v1/status"))
            .header("apikey", &key)
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 && after.is_some_and(|pid| pid != before) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery (status {status}):\n{}",
            basalt.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(basalt
        .logs()
        .contains("embedded PostgreSQL exited unexpectedly"));
    let ready = basalt
        .http
        .get(basalt.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn killing_basalt_does_not_leave_the_cluster_running() {
    let dir = data_dir();
    let basalt = embedded(dir.path()).await;
    let postmaster = postmaster_pid(dir.path()).unwrap();
    basalt.signal(Signal::SIGKILL);
    drop(basalt);
    // The cluster was told to stop when its parent died.
    let deadline = Instant::now() + Duration::from_secs(30);
    while signal::kill(Pid::from_raw(postmaster), None).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the orphaned PostgreSQL kept running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And the next start on the same directory works.
    let again = embedded(dir.path()).await;
    assert_eq!(
        again
            .http
            .get(again.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_second_basalt_on_the_same_data_directory_is_refused() {
    let dir = data_dir();
    let first = embedded(dir.path()).await;
    let output = basalt_tests::basalt_command(&[])
        .args(["migrate", "--dry-run", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("another Basalt process is using the data directory"),
        "{stderr}"
    );
    // The first one is unharmed.
    let ready = first
        .http
        .get(first.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn start_up_problems_are_explained() {
    let dir = data_dir();
    let run = |extra: &[(&str, &str)]| {
        let mut env = vec![
            (
                "BASALT_DATA_DIR".to_owned(),
                dir.path().display().to_string(),
            ),
            (
                "BASALT_HTTP".to_owned(),
                format!("127.0.0.1:{}", basalt_tests::free_port()),
            ),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        basalt_tests::basalt_command(&env)
            .arg("serve")
            .output()
            .unwrap()
    };
    let output = run(&[("BASALT_EMBEDDED_BIN_DIR", "/nonexistent/bin")]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("BASALT_EMBEDDED_BIN_DIR"), "{stderr}");

    if nix::unistd::geteuid().is_root() {
        let output = run(&[("BASALT_EMBEDDED_OS_USER", "no-such-user-basalt")]);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("refuses to run as root") && stderr.contains("useradd"),
            "{stderr}"
        );
    } else {
        println!("not root: the run-as-root case does not apply here");
    }
}
