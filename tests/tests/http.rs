//! The HTTP foundation against a real server: the error shape, limits, timeouts,
//! CORS, compression, security headers, request ids and metrics.

use basalt_tests::client::assert_error_shape;
use basalt_tests::Basalt;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

async fn json(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let basalt = Basalt::start().await;
    let response = basalt
        .http
        .get(basalt.url("/storage/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = json(response).await;
    assert_error_shape(&body, "route_not_found");
    assert_eq!(body["details"], "GET /storage/v1/nothing");

    let response = basalt
        .http
        .delete(basalt.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_error_shape(&json(response).await, "method_not_allowed");
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_whether_declared_or_streamed() {
    let basalt = Basalt::builder()
        .env("BASALT_SERVER_BODY_LIMIT_BYTES", "2048")
        .start()
        .await;
    let key = basalt.keys().service_role;
    let big_query = format!("select '{}'", "x".repeat(4096));

    // Declared with Content-Length: refused before the body is read.
    let response = basalt
        .http
        .post(basalt.url("/admin/v1/sql"))
        .header("apikey", &key)
        .json(&serde_json::json!({ "query": big_query }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body = json(response).await;
    assert_error_shape(&body, "payload_too_large");
    assert_eq!(body["details"], "limit: 2048 bytes");

    // Chunked, with no Content-Length: counted while it streams.
    let mut stream = TcpStream::connect(("127.0.0.1", basalt.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /admin/v1/sql HTTP/1.1\r\nHost: x\r\napikey: {key}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let first = "{\"query\": \"select '";
    let _ = write!(stream, "{:x}\r\n{first}\r\n", first.len());
    for _ in 0..8 {
        let _ = write!(stream, "200\r\n{}\r\n", "y".repeat(512));
    }
    let _ = write!(stream, "0\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"code\":\"payload_too_large\""),
        "{answer}"
    );

    assert!(
        answer.contains("\"details\":\"limit: 2048 bytes\""),
        "{answer}"
    );
    // Under the limit the same endpoint works.
    let response = basalt.admin_sql("select 1").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn slow_requests_get_504_and_their_sql_is_cancelled() {
    let basalt = Basalt::builder()
        .env("BASALT_SERVER_REQUEST_TIMEOUT_MS", "1000")
        .start()
        .await;
    let response = basalt
        .admin_sql("select pg_sleep(30) -- basalt-timeout-probe")
        .await;
    assert_eq!(response.status(), 504);
    let body = json(response).await;
    assert_error_shape(&body, "request_timeout");
    assert_eq!(body["details"], "limit: 1000 ms");

    // The statement does not run on unseen: it is cancelled on the server.
    let database = basalt_tests::connect(basalt.database_url().unwrap()).await;
    let mut still_running = 1;
    for _ in 0..100 {
        still_running = database
            .query_one(
                "select count(*) from pg_stat_activity where query like '%basalt-timeout-probe%' and state = 'active' and pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if still_running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(still_running, 0, "the timed-out statement is still running");
}

#[tokio::test]
async fn clients_that_do_not_finish_their_headers_are_dropped() {
    let basalt = Basalt::builder()
        .env("BASALT_SERVER_HEADER_READ_TIMEOUT_MS", "500")
        .start()
        .await;
    let mut stream = TcpStream::connect(("127.0.0.1", basalt.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Never send the blank line that ends the head: the server must give up.
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    assert!(
        read.is_ok(),
        "the server kept the connection open: {read:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // A client that sends its head in time is served on the same server.
    let response = basalt
        .http
        .get(basalt.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn cors_preflight_allows_listed_origins_only() {
    let basalt = Basalt::builder()
        .env("BASALT_CORS_ALLOWED_ORIGINS", "https://app.example.com")
        .start()
        .await;
    let preflight = |origin: &'static str| {
        basalt
            .http
            .request(reqwest::Method::OPTIONS, basalt.url("/admin/v1/status"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "apikey, content-type")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );
    assert!(allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("apikey"));
    assert_eq!(allowed.headers()["access-control-max-age"], "3600");

    let refused = preflight("https://evil.example.com").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert_error_shape(&json(refused).await, "cors_origin_not_allowed");

    // A plain request from an unlisted origin is served, but without CORS
    // headers, so the foreign page cannot read it (same-origin pages can).
    let foreign = basalt
        .http
        .get(basalt.url("/health/live"))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 200);
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    // A simple request from an allowed origin can read the exposed headers.
    let simple = basalt
        .http
        .get(basalt.url("/health/live"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        simple.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(simple.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("x-request-id"));
}

#[tokio::test]
async fn wildcard_cors_is_the_default() {
    let basalt = Basalt::start().await;
    let response = basalt
        .http
        .request(reqwest::Method::OPTIONS, basalt.url("/rest/v1/anything"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(response
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
}

#[tokio::test]
async fn responses_are_compressed_by_accept_encoding() {
    let basalt = Basalt::start().await;
    // Fill the metrics page so it is worth compressing.
    for _ in 0..3 {
        basalt
            .http
            .get(basalt.url("/health/live"))
            .send()
            .await
            .unwrap();
    }
    let plain = basalt
        .http
        .get(basalt.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.text().await.unwrap();
    assert!(plain.contains("basalt_http_requests_total"));

    for encoding in ["gzip", "br"] {
        let response = basalt
            .http
            .get(basalt.url("/metrics"))
            .header("accept-encoding", encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-encoding"], encoding);
        let bytes = response.bytes().await.unwrap();
        let mut text = String::new();
        match encoding {
            "gzip" => {
                flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_string(&mut text)
                    .unwrap();
            }
            _ => {
                brotli::Decompressor::new(&bytes[..], 4096)
                    .read_to_string(&mut text)
                    .unwrap();
            }
        }
        assert!(
            text.contains("# TYPE basalt_http_requests_total counter"),
            "{encoding}: {text}"
        );
        assert!(
            bytes.len() < text.len(),
            "{encoding} did not shrink the body"
        );
    }
}

#[tokio::test]
async fn security_headers_and_hsts_only_over_tls_from_a_trusted_proxy() {
    let basalt = Basalt::builder()
        .env("BASALT_SERVER_TRUSTED_PROXIES", "127.0.0.1")
        .start()
        .await;
    let plain = basalt
        .http
        .get(basalt.url("/health/live"))
        .send()
        .await
        .unwrap();
    let headers = plain.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(
        headers.get("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );

    let tls = basalt
        .http
        .get(basalt.url("/health/live"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(
        tls.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );

    // The same header from a peer that is not a trusted proxy proves nothing.
    let untrusted = Basalt::start().await;
    let response = untrusted
        .http
        .get(untrusted.url("/health/live"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(response
        .headers()
        .get("strict-transport-security")
        .is_none());
}

#[tokio::test]
async fn request_ids_are_returned_and_logged_with_the_trace() {
    let basalt = Basalt::start().await;
    let given = basalt
        .http
        .get(basalt.url("/health/live"))
        .header("x-request-id", "client-chosen-id-42")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "client-chosen-id-42");

    let made = basalt
        .http
        .get(basalt.url("/nowhere"))
        .send()
        .await
        .unwrap();
    let made_id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made_id.len(), 36, "a UUID: {made_id}");

    // An id with characters that could forge log lines is replaced.
    let hostile = basalt
        .http
        .get(basalt.url("/health/live"))
        .header("x-request-id", "abc\"} {\"level\":\"ERROR")
        .send()
        .await
        .unwrap();
    assert_ne!(
        hostile.headers()["x-request-id"],
        "abc\"} {\"level\":\"ERROR"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = basalt.logs();
    let line = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|entry| {
            entry["request_id"] == "client-chosen-id-42"
                || entry["span"]["request_id"] == "client-chosen-id-42"
        })
        .unwrap_or_else(|| panic!("no log line for the request:\n{logs}"));
    let span = if line.get("span").is_some() {
        &line["span"]
    } else {
        &line
    };
    assert_eq!(
        span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{line}"
    );
    assert_eq!(line["status"], 200, "{line}");
}

#[tokio::test]
async fn metrics_report_requests_pool_and_memory() {
    let basalt = Basalt::start().await;
    basalt
        .http
        .get(basalt.url("/health/live"))
        .send()
        .await
        .unwrap();
    basalt
        .http
        .get(basalt.url("/nowhere/at/all"))
        .send()
        .await
        .unwrap();
    let text = basalt
        .http
        .get(basalt.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        r#"basalt_http_requests_total{method="GET",route="/health/live",status="200"} 1"#,
        r#"basalt_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"basalt_http_request_duration_seconds_bucket{method="GET",route="/health/live",status="200",le="0.005"}"#,
        "basalt_db_pool_max_connections 16",
        r#"basalt_db_pool_connections{state="idle"}"#,
        "basalt_process_resident_memory_bytes",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    let resident: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("basalt_process_resident_memory_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(resident > 1_000_000.0, "resident memory {resident}");
}

/// Who may use the admin API: role × key → status.
#[tokio::test]
async fn admin_api_admits_only_the_service_role_key() {
    let basalt = Basalt::start().await;
    let keys = basalt.keys();
    let foreign = {
        let other = Basalt::builder()
            .env(
                "BASALT_JWT_SECRET",
                "a-different-secret-a-different-secret-0000",
            )
            .no_wait()
            .start()
            .await;
        other.keys().service_role
    };
    type Case<'a> = (&'a str, Option<(&'a str, String)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("no key", None, 401, "api_key_missing"),
        (
            "garbage",
            Some(("apikey", "not-a-jwt".to_owned())),
            401,
            "api_key_invalid",
        ),
        (
            "other server's key",
            Some(("apikey", foreign)),
            401,
            "api_key_invalid",
        ),
        (
            "anon key",
            Some(("apikey", keys.anon.clone())),
            403,
            "forbidden",
        ),
        (
            "anon bearer",
            Some(("authorization", format!("Bearer {}", keys.anon))),
            403,
            "forbidden",
        ),
        (
            "service key",
            Some(("apikey", keys.service_role.clone())),
            200,
            "",
        ),
        (
            "service bearer",
            Some(("authorization", format!("Bearer {}", keys.service_role))),
            200,
            "",
        ),
    ];
    for (name, header, status, code) in cases {
        let mut request = basalt.http.get(basalt.url("/admin/v1/status"));
        if let Some((header, value)) = header {
            request = request.header(header, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{name}");
        let body = json(response).await;
        if status == 200 {
            assert_eq!(
                body["migrations"],
                serde_json::json!(basalt_tests::migration_names()),
                "{body}"
            );
            assert_eq!(body["database"]["embedded"], false);
        } else {
            assert_error_shape(&body, code);
        }
    }
}

#[tokio::test]
async fn admin_sql_returns_rows_as_text_and_errors_as_sql_error() {
    let basalt = Basalt::start().await;
    let response = basalt
        .admin_sql("create table t (id int, note text); insert into t values (1, 'it''s'), (2, null); select * from t order by id")
        .await;
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[1]["row_count"], 2);
    assert_eq!(results[2]["columns"], serde_json::json!(["id", "note"]));
    assert_eq!(
        results[2]["rows"],
        serde_json::json!([["1", "it's"], ["2", null]])
    );

    let response = basalt.admin_sql("select * from no_such_table").await;
    assert_eq!(response.status(), 400);
    let body = json(response).await;
    assert_error_shape(&body, "sql_error");
    assert!(
        body["details"].as_str().unwrap().contains("42P01"),
        "{body}"
    );

    // Session state set by one call never leaks into another (fresh connection).
    basalt.admin_sql("set search_path to pg_catalog").await;
    let body = json(basalt.admin_sql("show search_path").await).await;
    assert_eq!(body["results"][0]["rows"][0][0], "\"$user\", public");

    let response = basalt
        .http
        .post(basalt.url("/admin/v1/sql"))
        .header("apikey", basalt.keys().service_role)
        .header("content-type", "application/json")
        .body("{\"query\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_error_shape(&json(response).await, "invalid_json");

    let response = basalt.admin_sql("select generate_series(1, 20000)").await;
    let body = json(response).await;
    assert_eq!(body["truncated"], true);
    assert_eq!(body["results"][0]["rows"].as_array().unwrap().len(), 10_000);
}
