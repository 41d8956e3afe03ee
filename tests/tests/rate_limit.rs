//! Rate limiting against a real server: 429 with Retry-After and RateLimit-*
//! headers, buckets per IP and per key, and X-Forwarded-For believed only from
//! trusted proxies.

use basalt_tests::Basalt;
use reqwest::Method;

#[tokio::test]
async fn the_bucket_empties_into_429_with_retry_after() {
    let basalt = Basalt::builder()
        .env("BASALT_RATE_LIMIT_ENABLED", "true")
        .env("BASALT_RATE_LIMIT_DEFAULT_PER_IP", "3/1m")
        .start()
        .await;
    for expected_remaining in ["2", "1", "0"] {
        let response = basalt
            .as_nobody()
            .send(Method::GET, "/nowhere", &[], None)
            .await;
        assert_eq!(response.status, 404);
        assert_eq!(response.header("ratelimit-limit"), "3");
        assert_eq!(response.header("ratelimit-remaining"), expected_remaining);
        assert_eq!(response.header("ratelimit-policy"), "3;w=60");
    }
    let refused = basalt
        .as_nobody()
        .send(Method::GET, "/nowhere", &[], None)
        .await;
    assert_eq!(refused.status, 429);
    let retry_after: u64 = refused.header("retry-after").parse().unwrap();
    assert!(
        (1..=20).contains(&retry_after),
        "one token refills in 20 s: {retry_after}"
    );
    assert_eq!(refused.header("ratelimit-remaining"), "0");
    let body = refused.json();
    assert_eq!(body["code"], "rate_limited");

    // Probes are never limited, and other groups have their own buckets.
    assert_eq!(
        basalt
            .as_nobody()
            .send(Method::GET, "/health/live", &[], None)
            .await
            .status,
        200
    );
    assert_eq!(
        basalt
            .as_nobody()
            .send(Method::GET, "/admin/v1/status", &[], None)
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_reset_the_bucket() {
    let basalt = Basalt::builder()
        .env("BASALT_RATE_LIMIT_ENABLED", "true")
        .env("BASALT_RATE_LIMIT_DEFAULT_PER_IP", "2/1m")
        .start()
        .await;
    for _ in 0..2 {
        assert_eq!(
            basalt
                .as_nobody()
                .send(Method::GET, "/nowhere", &[], None)
                .await
                .status,
            404
        );
    }
    for spoof in ["203.0.113.1", "203.0.113.2", "198.51.100.7, 203.0.113.3"] {
        let response = basalt
            .as_nobody()
            .send(Method::GET, "/nowhere", &[("x-forwarded-for", spoof)], None)
            .await;
        assert_eq!(
            response.status, 429,
            "X-Forwarded-For {spoof} from an untrusted peer"
        );
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let basalt = Basalt::builder()
        .env("BASALT_RATE_LIMIT_ENABLED", "true")
        .env("BASALT_RATE_LIMIT_DEFAULT_PER_IP", "2/1m")
        .env("BASALT_SERVER_TRUSTED_PROXIES", "127.0.0.0/8")
        .start()
        .await;
    let alice = [("x-forwarded-for", "203.0.113.1")];
    let bob = [("x-forwarded-for", "203.0.113.2")];
    for _ in 0..2 {
        assert_eq!(
            basalt
                .as_nobody()
                .send(Method::GET, "/nowhere", &alice, None)
                .await
                .status,
            404
        );
    }
    assert_eq!(
        basalt
            .as_nobody()
            .send(Method::GET, "/nowhere", &alice, None)
            .await
            .status,
        429
    );
    assert_eq!(
        basalt
            .as_nobody()
            .send(Method::GET, "/nowhere", &bob, None)
            .await
            .status,
        404
    );
    // A client cannot escape by prepending a fake hop: the proxy's own entry is the right-most.
    let alice_spoofing = [("x-forwarded-for", "198.51.100.9, 203.0.113.1")];
    assert_eq!(
        basalt
            .as_nobody()
            .send(Method::GET, "/nowhere", &alice_spoofing, None)
            .await
            .status,
        429
    );
}

#[tokio::test]
async fn per_key_buckets_limit_a_key_across_addresses() {
    let basalt = Basalt::builder()
        .env("BASALT_RATE_LIMIT_ENABLED", "true")
        .env("BASALT_RATE_LIMIT_ADMIN_PER_IP", "off")
        .env("BASALT_RATE_LIMIT_ADMIN_PER_KEY", "2/1m")
        .env("BASALT_SERVER_TRUSTED_PROXIES", "127.0.0.1")
        .start()
        .await;
    for ip in ["203.0.113.1", "203.0.113.2"] {
        let response = basalt
            .as_service()
            .send(
                Method::GET,
                "/admin/v1/status",
                &[("x-forwarded-for", ip)],
                None,
            )
            .await;
        assert_eq!(response.status, 200);
    }
    let response = basalt
        .as_service()
        .send(
            Method::GET,
            "/admin/v1/status",
            &[("x-forwarded-for", "203.0.113.3")],
            None,
        )
        .await;
    assert_eq!(
        response.status, 429,
        "the key's bucket is empty whatever the address"
    );
    let other_key = basalt.as_anon().get("/admin/v1/status").await;
    assert_eq!(other_key.status, 403, "another key has its own bucket");
}
