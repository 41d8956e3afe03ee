//! Losing the database and shutting down: 503 with Retry-After while PostgreSQL
//! is down, recovery without a restart, and graceful shutdown on SIGTERM.

use basalt_tests::client::Client;
use basalt_tests::{Basalt, PgServer};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Status, `Retry-After` and JSON body of a GET with `key`.
async fn status_of(basalt: &Basalt, path: &str, key: &str) -> (u16, Option<String>, Value) {
    let answer = Client {
        basalt,
        key: key.to_owned(),
        token: None,
    }
    .get(path)
    .await;
    let retry = Some(answer.header("retry-after").to_owned()).filter(|r| !r.is_empty());
    (answer.status, retry, answer.json_or_null())
}

#[tokio::test]
async fn database_outage_gives_503_then_recovers_without_restart() {
    let postgres = PgServer::start();
    let url = postgres.fresh_database().await;
    let basalt = Basalt::builder()
        .database_url(&url)
        .env("BASALT_DATABASE_CONNECT_TIMEOUT_MS", "1000")
        .env("BASALT_DATABASE_POOL_WAIT_TIMEOUT_MS", "1000")
        .env("BASALT_SERVER_REQUEST_TIMEOUT_MS", "20000")
        .start()
        .await;
    let key = basalt.keys().service_role;
    assert_eq!(status_of(&basalt, "/admin/v1/status", &key).await.0, 200);

    postgres.stop();
    let (status, retry, body) = status_of(&basalt, "/health/ready", &key).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "not_ready");
    assert_eq!(retry.as_deref(), Some("1"));
    // Requests that need the database fail fast with 503, not the 504 of a hang.
    for _ in 0..3 {
        let (status, retry, body) = status_of(&basalt, "/admin/v1/status", &key).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["code"], "database_unavailable");
        assert_eq!(retry.as_deref(), Some("1"));
    }
    assert_eq!(
        status_of(&basalt, "/health/live", &key).await.0,
        200,
        "liveness is not readiness"
    );

    postgres.resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = status_of(&basalt, "/health/ready", &key).await.0;
        let status = status_of(&basalt, "/admin/v1/status", &key).await.0;
        if ready == 200 && status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: ready {ready}, status {status}\n{}",
            basalt.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let mut basalt = Basalt::builder()
        .env("BASALT_SERVER_SHUTDOWN_DRAIN_MS", "1500")
        .env("BASALT_SERVER_WORKERS", "6")
        .start()
        .await;
    let key = basalt.keys().service_role;
    // Open pooled connections from several workers (each request on its own
    // TCP connection), then run slow statements from several workers: some run
    // on connections another worker opened, and that worker may go idle and
    // stop first at shutdown, which must not break them.
    let fresh = || {
        reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let warm: Vec<_> = (0..12)
        .map(|_| {
            fresh()
                .get(basalt.url("/admin/v1/status"))
                .header("apikey", &key)
                .send()
        })
        .collect();
    for response in futures_util::future::join_all(warm).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let request = fresh()
                .post(basalt.url("/admin/v1/sql"))
                .header("apikey", &key)
                .json(&serde_json::json!({"query": "select pg_sleep(3), 'finished' as outcome"}));
            tokio::spawn(request.send())
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    basalt.signal(Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // While draining, readiness is false so load balancers stop sending traffic.
    let (status, _, body) = status_of(&basalt, "/health/ready", &key).await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], "shutting_down");

    for request in slow {
        let response = request
            .await
            .unwrap()
            .expect("the in-flight request is answered");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["results"][0]["rows"][0][1], "finished", "{body}");
    }

    // After the drain, the listener is closed: new connections are refused.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refused = reqwest::Client::new()
        .get(basalt.url("/health/live"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a new connection was accepted during shutdown"
    );

    let status = basalt.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", basalt.logs());
}

#[tokio::test]
async fn sigint_also_stops_cleanly() {
    let mut basalt = Basalt::start().await;
    basalt.signal(Signal::SIGINT);
    let status = basalt.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", basalt.logs());
    assert!(basalt.logs().contains("SIGINT received"));
}

#[tokio::test]
async fn external_databases_over_tls_are_verified_against_the_configured_ca() {
    let (postgres, ca) = PgServer::start_with_tls();
    let url = postgres.fresh_database().await;
    // libpq's strictest mode is accepted; Basalt verifies certificates in every TLS mode.
    let url = format!("{url}?sslmode=verify-full");

    let basalt = Basalt::builder()
        .database_url(&url)
        .env("BASALT_DATABASE_CA_FILE", ca.display().to_string())
        .start()
        .await;
    let result = basalt
        .admin_sql("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        .await;
    let body: Value = result.json().await.unwrap();
    assert_eq!(
        body["results"][0]["rows"][0][0], "t",
        "the connection is encrypted: {body}"
    );

    // Without the CA, the server's certificate is not trusted: no silent downgrade.
    let output = basalt_tests::basalt_command(&[
        ("DATABASE_URL".to_owned(), url.clone()),
        (
            "BASALT_DATABASE_STARTUP_TIMEOUT_MS".to_owned(),
            "0".to_owned(),
        ),
    ])
    .arg("migrate")
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot reach the database"), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("certificate") || stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
}
