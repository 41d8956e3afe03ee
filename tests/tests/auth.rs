//! Auth end to end over HTTP: sign-up, sign-in, refresh rotation and reuse
//! detection, logout scopes, user updates, the admin user API and the audit log.

use basalt_tests::client::Client as Shared;
use basalt_tests::Basalt;
use reqwest::Method;
use serde_json::{json, Value};

struct Client<'a> {
    basalt: &'a Basalt,
    anon: String,
    service: String,
}

impl<'a> Client<'a> {
    fn new(basalt: &'a Basalt) -> Self {
        let keys = basalt.keys();
        Client {
            basalt,
            anon: keys.anon,
            service: keys.service_role,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let client = Shared {
            basalt: self.basalt,
            key: self.anon.clone(),
            token: bearer.map(str::to_owned),
        };
        let answer = client.send(method, path, &[], body).await;
        (answer.status, answer.json_or_null())
    }

    async fn signup(&self, email: &str, password: &str) -> Value {
        let (status, body) = self
            .call(
                Method::POST,
                "/auth/v1/signup",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn login(&self, email: &str, password: &str) -> (u16, Value) {
        self.call(
            Method::POST,
            "/auth/v1/token?grant_type=password",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await
    }

    async fn refresh(&self, token: &str) -> (u16, Value) {
        self.call(
            Method::POST,
            "/auth/v1/token?grant_type=refresh_token",
            None,
            Some(json!({"refresh_token": token})),
        )
        .await
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let client = Shared {
            basalt: self.basalt,
            key: self.service.clone(),
            token: None,
        };
        let answer = client.send(method, path, &[], body).await;
        (answer.status, answer.json_or_null())
    }
}

fn token(session: &Value, field: &str) -> String {
    session[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {session}"))
        .to_owned()
}

#[tokio::test]
async fn signup_signin_and_the_user_endpoints() {
    let basalt = Basalt::start().await;
    let client = Client::new(&basalt);
    let (status, session) = client
        .call(
            Method::POST,
            "/auth/v1/signup",
            None,
            Some(json!({"email": "Ada@Example.com", "password": "correct horse", "data": {"name": "Ada"}})),
        )
        .await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["token_type"], "bearer");
    assert_eq!(session["expires_in"], 3600);
    assert_eq!(session["user"]["email"], "Ada@Example.com");
    assert_eq!(session["user"]["user_metadata"]["name"], "Ada");
    assert!(session["user"]["email_confirmed_at"].is_string());

    // The access token's claims are the documented ones.
    let access = token(&session, "access_token");
    let payload = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    for claim in [
        "sub",
        "role",
        "aud",
        "exp",
        "iat",
        "session_id",
        "email",
        "app_metadata",
        "user_metadata",
    ] {
        assert!(
            claims.get(claim).is_some(),
            "claim {claim} missing: {claims}"
        );
    }
    assert_eq!(claims["aud"], "authenticated");
    assert_eq!(claims["role"], "authenticated");

    let (status, user) = client
        .call(Method::GET, "/auth/v1/user", Some(&access), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(user["id"], session["user"]["id"]);

    // An email differing only in case is the same account.
    let (status, body) = client
        .call(
            Method::POST,
            "/auth/v1/signup",
            None,
            Some(json!({"email": "ada@example.com", "password": "another pass"})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["code"], "user_already_exists");

    let (status, login) = client.login("ada@EXAMPLE.com", "correct horse").await;
    assert_eq!(status, 200, "{login}");
    assert_ne!(login["refresh_token"], session["refresh_token"]);

    // Update: merge metadata, change the password.
    let (status, user) = client
        .call(
            Method::PUT,
            "/auth/v1/user",
            Some(&access),
            Some(json!({"data": {"plan": "pro"}, "password": "new secret 1"})),
        )
        .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["user_metadata"], json!({"name": "Ada", "plan": "pro"}));
    assert_eq!(
        client.login("ada@example.com", "correct horse").await.0,
        400
    );
    assert_eq!(client.login("ada@example.com", "new secret 1").await.0, 200);

    let (status, settings) = client
        .call(Method::GET, "/auth/v1/settings", None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(settings["external"]["email"], true);
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_creates_nothing() {
    let basalt = Basalt::builder()
        .env("BASALT_AUTH_PASSWORD_REQUIRED_CLASSES", "digit")
        .env("BASALT_AUTH_PASSWORD_MAX_LENGTH", "20")
        .start()
        .await;
    let client = Client::new(&basalt);
    let cases = [
        (
            json!({"email": "not-an-email", "password": "abcdefg1"}),
            400,
            "validation_failed",
        ),
        (
            json!({"email": "a@example.com", "password": "short1"}),
            422,
            "weak_password",
        ),
        (
            json!({"email": "a@example.com", "password": "no digits here"}),
            422,
            "weak_password",
        ),
        (
            json!({"email": "a@example.com", "password": "1".repeat(21)}),
            422,
            "weak_password",
        ),
        // Email without password (neither is an anonymous sign-in).
        (json!({"email": "a@example.com"}), 400, "validation_failed"),
        (
            json!({"email": "a@example.com", "password": "abcdefg1", "data": [1]}),
            400,
            "validation_failed",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = client
            .call(Method::POST, "/auth/v1/signup", None, Some(body.clone()))
            .await;
        assert_eq!(
            (got, answer["code"].as_str().unwrap()),
            (status, code),
            "{body} → {answer}"
        );
    }
    let (_, too_long) = client
        .call(
            Method::POST,
            "/auth/v1/signup",
            None,
            Some(json!({"email": "a@example.com", "password": "1".repeat(21)})),
        )
        .await;
    assert!(
        too_long["details"].as_str().unwrap().contains("at most 20"),
        "never truncated: {too_long}"
    );
    let (_, list) = client
        .admin(Method::GET, "/auth/v1/admin/users", None)
        .await;
    assert_eq!(list["total"], 0, "no half-created user: {list}");
    let (status, body) = client
        .call(
            Method::POST,
            "/auth/v1/token?grant_type=magic",
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, body) = client
        .call(Method::POST, "/auth/v1/signup", None, None)
        .await;
    assert_eq!(status, 415, "{body}");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_the_same() {
    let basalt = Basalt::start().await;
    let client = Client::new(&basalt);
    client.signup("known@example.com", "right password").await;
    let (status_wrong, body_wrong) = client.login("known@example.com", "wrong password").await;
    let (status_unknown, body_unknown) = client.login("nobody@example.com", "wrong password").await;
    assert_eq!(status_wrong, 400);
    assert_eq!((status_wrong, &body_wrong), (status_unknown, &body_unknown));
    assert_eq!(body_wrong["code"], "invalid_credentials");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_session() {
    let basalt = Basalt::builder()
        .env("BASALT_AUTH_REFRESH_REUSE_GRACE_SECS", "0")
        .start()
        .await;
    let client = Client::new(&basalt);
    let session = client.signup("rot@example.com", "password one").await;
    let first = token(&session, "refresh_token");

    let (status, second) = client.refresh(&first).await;
    assert_eq!(status, 200, "{second}");
    let second_refresh = token(&second, "refresh_token");
    assert_ne!(second_refresh, first);
    let (status, third) = client.refresh(&second_refresh).await;
    assert_eq!(status, 200);
    let live_access = token(&third, "access_token");

    // The spent first token comes back (stolen?): the whole session dies.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body) = client.refresh(&first).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("refresh_token_already_used")),
        "{body}"
    );
    let (status, body) = client.refresh(&token(&third, "refresh_token")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("refresh_token_not_found")),
        "{body}"
    );
    let (status, body) = client
        .call(Method::GET, "/auth/v1/user", Some(&live_access), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("session_expired"))
    );

    let (status, body) = client.refresh("made-up-token").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("refresh_token_not_found"))
    );
}

#[tokio::test]
async fn concurrent_refreshes_within_the_grace_window_share_one_successor() {
    let basalt = Basalt::start().await;
    let client = Client::new(&basalt);
    let session = client.signup("tabs@example.com", "password one").await;
    let first = token(&session, "refresh_token");
    let (a, b) = tokio::join!(client.refresh(&first), client.refresh(&first));
    assert_eq!((a.0, b.0), (200, 200), "{} / {}", a.1, b.1);
    assert_eq!(
        a.1["refresh_token"], b.1["refresh_token"],
        "never two live branches"
    );
    let (status, next) = client.refresh(&token(&a.1, "refresh_token")).await;
    assert_eq!(status, 200, "{next}");
    // Once the successor has itself been used, the old token is reuse.
    let (status, body) = client.refresh(&first).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("refresh_token_already_used"))
    );
}

#[tokio::test]
async fn logout_scopes() {
    let basalt = Basalt::start().await;
    let client = Client::new(&basalt);
    client.signup("out@example.com", "password one").await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(client.login("out@example.com", "password one").await.1);
    }
    let client = &client;
    let works = |session: &Value| {
        let refresh = token(session, "refresh_token");
        async move { client.refresh(&refresh).await.0 == 200 }
    };
    let (status, _) = client
        .call(
            Method::POST,
            "/auth/v1/logout?scope=others",
            Some(&token(&sessions[0], "access_token")),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert!(
        !works(&sessions[1]).await && !works(&sessions[2]).await,
        "others ended"
    );
    let (status, renewed) = client.refresh(&token(&sessions[0], "refresh_token")).await;
    assert_eq!(status, 200, "this session lives on");

    let (status, _) = client
        .call(
            Method::POST,
            "/auth/v1/logout?scope=local",
            Some(&token(&renewed, "access_token")),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert!(!works(&renewed).await, "local ended this one");
    let (status, body) = client
        .call(
            Method::GET,
            "/auth/v1/user",
            Some(&token(&renewed, "access_token")),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("session_expired"))
    );

    let a = client.login("out@example.com", "password one").await.1;
    let b = client.login("out@example.com", "password one").await.1;
    let (status, _) = client
        .call(
            Method::POST,
            "/auth/v1/logout",
            Some(&token(&a, "access_token")),
            None,
        )
        .await;
    assert_eq!(status, 204, "global is the default");
    assert!(!works(&a).await && !works(&b).await);
    let c = client.login("out@example.com", "password one").await.1;
    let (status, body) = client
        .call(
            Method::POST,
            "/auth/v1/logout",
            Some(&token(&b, "access_token")),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("session_expired")),
        "a revoked session cannot sign out others"
    );
    let (status, body) = client
        .call(
            Method::POST,
            "/auth/v1/logout?scope=everything",
            Some(&token(&c, "access_token")),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_failed"))
    );
}

#[tokio::test]
async fn tokens_that_are_not_a_users_are_refused_on_user_endpoints() {
    let basalt = Basalt::builder()
        .env("BASALT_AUTH_ACCESS_TOKEN_TTL_SECS", "30")
        .env("BASALT_AUTH_CLOCK_SKEW_SECS", "0")
        .start()
        .await;
    let client = Client::new(&basalt);
    let session = client.signup("jwt@example.com", "password one").await;
    let cases = [
        (None, 401, "no_authorization"),
        (Some(client.anon.clone()), 401, "no_authorization"),
        (Some("garbage".to_owned()), 401, "bad_jwt"),
        (Some(token(&session, "access_token") + "x"), 401, "bad_jwt"),
    ];
    for (bearer, status, code) in cases {
        let (got, body) = client
            .call(Method::GET, "/auth/v1/user", bearer.as_deref(), None)
            .await;
        assert_eq!(
            (got, body["code"].as_str().unwrap_or("")),
            (status, code),
            "{bearer:?}"
        );
    }
    // A forged apikey is refused even with a valid user token.
    let response = basalt
        .http
        .get(basalt.url("/auth/v1/user"))
        .header("apikey", "forged")
        .bearer_auth(token(&session, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "api_key_invalid");
}

#[tokio::test]
async fn admin_user_management_with_the_service_key_only() {
    let basalt = Basalt::start().await;
    let client = Client::new(&basalt);
    let (status, body) = client
        .call(
            Method::GET,
            "/auth/v1/admin/users",
            Some(&client.anon.clone()),
            None,
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));

    let (status, created) = client
        .admin(
            Method::POST,
            "/auth/v1/admin/users",
            Some(json!({"email": "made@example.com", "password": "by the admin", "email_confirm": true, "app_metadata": {"roles": ["editor"]}})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["app_metadata"]["roles"], json!(["editor"]));
    assert_eq!(created["app_metadata"]["provider"], "email");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, login) = client.login("made@example.com", "by the admin").await;
    assert_eq!(status, 200);

    let (status, unconfirmed) = client
        .admin(
            Method::POST,
            "/auth/v1/admin/users",
            Some(json!({"email": "later@example.com", "password": "not yet confirmed"})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(unconfirmed["email_confirmed_at"].is_null());
    let (status, body) = client.login("later@example.com", "not yet confirmed").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("email_not_confirmed"))
    );

    for i in 0..3 {
        client
            .signup(&format!("user{i}@example.com"), "password one")
            .await;
    }
    let (status, page) = client
        .admin(Method::GET, "/auth/v1/admin/users?page=2&per_page=2", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 5);
    assert_eq!(page["users"].as_array().unwrap().len(), 2);

    let (status, fetched) = client
        .admin(Method::GET, &format!("/auth/v1/admin/users/{id}"), None)
        .await;
    assert_eq!(
        (status, &fetched["email"]),
        (200, &json!("made@example.com"))
    );

    // A ban ends the user's sessions and blocks sign-in until it is lifted.
    let (status, banned) = client
        .admin(
            Method::PUT,
            &format!("/auth/v1/admin/users/{id}"),
            Some(json!({"ban_duration": "24h", "user_metadata": {"note": "x"}})),
        )
        .await;
    assert_eq!(status, 200, "{banned}");
    assert!(banned["banned_until"].is_string());
    assert_eq!(banned["user_metadata"]["note"], "x");
    assert_eq!(
        client.login("made@example.com", "by the admin").await.1["code"],
        "user_banned"
    );
    assert_eq!(client.refresh(&token(&login, "refresh_token")).await.0, 400);
    client
        .admin(
            Method::PUT,
            &format!("/auth/v1/admin/users/{id}"),
            Some(json!({"ban_duration": "none"})),
        )
        .await;
    assert_eq!(
        client.login("made@example.com", "by the admin").await.0,
        200
    );

    let (status, _) = client
        .admin(Method::DELETE, &format!("/auth/v1/admin/users/{id}"), None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = client
        .admin(Method::GET, &format!("/auth/v1/admin/users/{id}"), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("user_not_found"))
    );
    let (status, body) = client
        .admin(Method::GET, "/auth/v1/admin/users/not-a-uuid", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_failed"))
    );
    let (status, body) = client
        .admin(
            Method::PUT,
            "/auth/v1/admin/users/00000000-0000-0000-0000-000000000000",
            Some(json!({"role": "x"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("user_not_found"))
    );
}

#[tokio::test]
async fn the_audit_log_records_auth_events() {
    let basalt = Basalt::builder()
        .env("BASALT_AUTH_REFRESH_REUSE_GRACE_SECS", "0")
        .start()
        .await;
    let client = Client::new(&basalt);
    let session = client.signup("audit@example.com", "password one").await;
    client.login("audit@example.com", "wrong").await;
    let first = token(&session, "refresh_token");
    client.refresh(&first).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    client.refresh(&first).await;
    let (status, log) = client.admin(Method::GET, "/admin/v1/audit", None).await;
    assert_eq!(status, 200);
    let events: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        vec![
            "token_reuse_detected",
            "token_refreshed",
            "login_failed",
            "signup"
        ],
        "{log}"
    );
    let entry = &log["entries"][3];
    assert_eq!(entry["ip"], "127.0.0.1");
    assert_eq!(entry["target_user_id"], session["user"]["id"]);
    let (_, filtered) = client
        .admin(Method::GET, "/admin/v1/audit?event=signup&limit=5", None)
        .await;
    assert_eq!(filtered["entries"].as_array().unwrap().len(), 1);
    let (status, _) = client
        .call(
            Method::GET,
            "/admin/v1/audit",
            Some(&client.anon.clone()),
            None,
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn sessions_are_listed_and_end_when_idle_or_too_old() {
    let idle = Basalt::builder()
        .env("BASALT_AUTH_SESSION_INACTIVITY_TIMEOUT_SECS", "1")
        .start()
        .await;
    let client = Client::new(&idle);
    let session = client.signup("idle@example.com", "password one").await;
    let id = session["user"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = client.refresh(&token(&session, "refresh_token")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("session_expired")),
        "idle too long"
    );
    let (status, listed) = client
        .admin(
            Method::GET,
            &format!("/auth/v1/admin/users/{id}/sessions"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["sessions"][0]["revoked_reason"], "expired",
        "{listed}"
    );
    assert_eq!(listed["sessions"][0]["live"], false);

    let old = Basalt::builder()
        .env("BASALT_AUTH_SESSION_MAX_LIFETIME_SECS", "2")
        .start()
        .await;
    let client = Client::new(&old);
    let session = client.signup("old@example.com", "password one").await;
    let (status, renewed) = client.refresh(&token(&session, "refresh_token")).await;
    assert_eq!(status, 200, "young enough: {renewed}");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = client.refresh(&token(&renewed, "refresh_token")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("session_expired")),
        "past its maximum lifetime"
    );

    // An admin can list a user's sessions and sign them out everywhere.
    let second = client.login("old@example.com", "password one").await.1;
    let id = second["user"]["id"].as_str().unwrap().to_owned();
    let (_, listed) = client
        .admin(
            Method::GET,
            &format!("/auth/v1/admin/users/{id}/sessions"),
            None,
        )
        .await;
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["live"], true);
    assert_eq!(sessions[0]["ip"], "127.0.0.1");
    let (status, body) = client
        .admin(
            Method::DELETE,
            &format!("/auth/v1/admin/users/{id}/sessions"),
            None,
        )
        .await;
    assert_eq!((status, &body["revoked"]), (200, &json!(1)));
    assert_eq!(
        client.refresh(&token(&second, "refresh_token")).await.0,
        400
    );
}

/// Every rejection of an incoming JWT, over HTTP, each with a 401 and the JSON error.
#[tokio::test]
async fn forged_and_broken_tokens_get_401() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let basalt = Basalt::start().await;
    let client = Client::new(&basalt);
    let session = client.signup("forge@example.com", "password one").await;
    let now = chrono_now();
    let claims = |changes: Value| {
        let mut claims = json!({
            "sub": session["user"]["id"], "session_id": uuid_of(&session), "aud": "authenticated",
            "role": "authenticated", "iss": "basalt", "iat": now, "exp": now + 600,
        });
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        claims
    };
    let secret = EncodingKey::from_secret(basalt_tests::TEST_JWT_SECRET.as_bytes());
    let sign = |claims: Value| encode(&Header::new(Algorithm::HS256), &claims, &secret).unwrap();
    let valid = sign(claims(json!({})));
    assert_eq!(
        client
            .call(Method::GET, "/auth/v1/user", Some(&valid), None)
            .await
            .0,
        200,
        "the forger's baseline works"
    );

    let payload = valid.split('.').nth(1).unwrap().to_owned();
    let b64 = |text: &str| {
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, text)
    };
    let hs_signature = |input: &str| {
        jsonwebtoken::crypto::sign(input.as_bytes(), &secret, Algorithm::HS256).unwrap()
    };
    let confused = {
        let input = format!("{}.{payload}", b64(r#"{"alg":"RS256","typ":"JWT"}"#));
        format!("{input}.{}", hs_signature(&input))
    };
    let cases = [
        (
            "alg none",
            format!("{}.{payload}.", b64(r#"{"alg":"none","typ":"JWT"}"#)),
            "bad_jwt",
        ),
        (
            "wrong key",
            encode(
                &Header::new(Algorithm::HS256),
                &claims(json!({})),
                &EncodingKey::from_secret(b"another-secret-another-secret-another-0"),
            )
            .unwrap(),
            "bad_jwt",
        ),
        ("RS256 header, HMAC signature", confused, "bad_jwt"),
        (
            "expired",
            sign(claims(json!({"exp": now - 120}))),
            "jwt_expired",
        ),
        (
            "nbf in the future",
            sign(claims(json!({"nbf": now + 600}))),
            "bad_jwt",
        ),
        (
            "wrong aud",
            sign(claims(json!({"aud": "elsewhere"}))),
            "bad_jwt",
        ),
        (
            "missing role",
            sign(claims(json!({"role": null}))),
            "bad_jwt",
        ),
        ("missing exp", sign(claims(json!({"exp": null}))), "bad_jwt"),
        (
            "malformed",
            "eyJhbGciOiJIUzI1NiJ9.not-json.sig".to_owned(),
            "bad_jwt",
        ),
    ];
    for (name, token, code) in cases {
        let (status, body) = client
            .call(Method::GET, "/auth/v1/user", Some(&token), None)
            .await;
        assert_eq!(
            (status, body["code"].as_str().unwrap_or("")),
            (401, code),
            "{name}: {body}"
        );
        assert!(
            body["details"].is_string(),
            "{name}: the reason is given: {body}"
        );
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn uuid_of(session: &Value) -> String {
    let access = session["access_token"].as_str().unwrap();
    let payload = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    claims["session_id"].as_str().unwrap().to_owned()
}

/// With an asymmetric signing key, access tokens are RS256/ES256, verifiable by
/// anyone from the JWKS endpoint; API keys stay HS256.
#[tokio::test]
async fn asymmetric_signing_keys_and_jwks() {
    use jsonwebtoken::{decode, decode_header, jwk::JwkSet, DecodingKey, Validation};
    let dir = tempfile::tempdir().unwrap();
    for (name, args, algorithm) in [
        (
            "rsa.pem",
            vec!["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            jsonwebtoken::Algorithm::RS256,
        ),
        (
            "ec.pem",
            vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            jsonwebtoken::Algorithm::ES256,
        ),
    ] {
        let key = dir.path().join(name);
        let output = std::process::Command::new("openssl")
            .arg("genpkey")
            .args(&args)
            .arg("-out")
            .arg(&key)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let basalt = Basalt::builder()
            .env("BASALT_JWT_SIGNING_KEY_FILE", key.display().to_string())
            .start()
            .await;
        let client = Client::new(&basalt);
        let session = client.signup("keys@example.com", "password one").await;
        let access = token(&session, "access_token");
        let header = decode_header(&access).unwrap();
        assert_eq!(header.alg, algorithm);

        let jwks: JwkSet = basalt
            .http
            .get(basalt.url("/auth/v1/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .expect("the token's kid is published");
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&["authenticated"]);
        let claims = decode::<Value>(&access, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["email"], "keys@example.com");

        assert_eq!(
            client
                .call(Method::GET, "/auth/v1/user", Some(&access), None)
                .await
                .0,
            200
        );
        // The refresh path signs with the same key.
        let (status, refreshed) = client.refresh(&token(&session, "refresh_token")).await;
        assert_eq!(status, 200);
        assert_eq!(
            decode_header(token(&refreshed, "access_token"))
                .unwrap()
                .alg,
            algorithm
        );

        // HS/RS confusion: an HS256 token keyed with the public key is refused.
        let public = serde_json::to_string(jwk).unwrap();
        let forged = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
        )
        .unwrap();
        let (status, body) = client
            .call(Method::GET, "/auth/v1/user", Some(&forged), None)
            .await;
        assert_eq!((status, body["code"].as_str()), (401, Some("bad_jwt")));
    }
    // Without a signing key the JWKS is empty.
    let plain = Basalt::start().await;
    let jwks: Value = plain
        .http
        .get(plain.url("/auth/v1/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks, json!({"keys": []}));
}

/// Inputs found by review: each gets a 4xx and changes nothing.
#[tokio::test]
async fn hostile_inputs_get_4xx_not_500() {
    let basalt = Basalt::start().await;
    let client = Client::new(&basalt);
    let cases = [
        (
            "/auth/v1/admin/users",
            json!({"email": "r@example.com", "role": "service_role"}),
            "validation_failed",
        ),
        (
            "/auth/v1/admin/users",
            json!({"email": "r@example.com", "role": "pg_read_all_data"}),
            "validation_failed",
        ),
        (
            "/auth/v1/admin/users",
            json!({"email": "r@example.com", "user_metadata": {"a": "x\u{0}y"}}),
            "validation_failed",
        ),
        (
            "/auth/v1/admin/users",
            json!({"email": "r@example.com", "ban_duration": "99999999999999999h"}),
            "validation_failed",
        ),
        (
            "/auth/v1/admin/users",
            json!({"email": "x<attacker@evil.com>"}),
            "validation_failed",
        ),
    ];
    for (path, body, code) in cases {
        let (status, answer) = client.admin(Method::POST, path, Some(body.clone())).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let (status, answer) = client
        .call(Method::POST, "/auth/v1/signup", None, Some(json!({"email": "n@example.com", "password": "password one", "data": {"k": "\u{0}"}})))
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("validation_failed"))
    );
    let (status, answer) = client.login("a\u{0}@b.co", "whatever").await;
    assert!(status == 400 || status == 429, "{status} {answer}");
    let (status, _) = client
        .admin(
            Method::GET,
            "/auth/v1/admin/users?page=9223372036854775807&per_page=1000",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (_, list) = client
        .admin(Method::GET, "/auth/v1/admin/users", None)
        .await;
    assert_eq!(list["total"], 0, "nothing was created: {list}");
}

#[tokio::test]
async fn a_new_password_ends_the_other_sessions() {
    let basalt = Basalt::start().await;
    let client = Client::new(&basalt);
    let here = client.signup("pw@example.com", "password one").await;
    let elsewhere = client.login("pw@example.com", "password one").await.1;
    let (status, _) = client
        .call(
            Method::PUT,
            "/auth/v1/user",
            Some(&token(&here, "access_token")),
            // Fields supabase-js adds are ignored, not refused.
            Some(json!({"password": "password two", "nonce": "n", "code_challenge": "c", "code_challenge_method": "s256"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        client.refresh(&token(&elsewhere, "refresh_token")).await.0,
        400,
        "the other session ended"
    );
    assert_eq!(
        client.refresh(&token(&here, "refresh_token")).await.0,
        200,
        "this one lives on"
    );

    // A password set by an admin ends every session.
    let id = here["user"]["id"].as_str().unwrap().to_owned();
    let current = client.login("pw@example.com", "password two").await.1;
    let (status, _) = client
        .admin(
            Method::PUT,
            &format!("/auth/v1/admin/users/{id}"),
            Some(json!({"password": "password three"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        client.refresh(&token(&current, "refresh_token")).await.0,
        400
    );
    let (_, log) = client
        .admin(
            Method::GET,
            "/admin/v1/audit?event=admin_user_updated",
            None,
        )
        .await;
    assert_eq!(
        log["entries"][0]["details"]["fields"],
        json!(["password"]),
        "{log}"
    );
}

#[tokio::test]
async fn auth_answers_announce_the_api_version_supabase_js_expects() {
    let basalt = Basalt::start().await;
    let keys = basalt.keys();
    let response = basalt
        .http
        .post(basalt.url("/auth/v1/token?grant_type=password"))
        .header("apikey", keys.anon)
        .json(&json!({"email": "no@example.com", "password": "nope nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-supabase-api-version"], "2024-01-01");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["code"], "invalid_credentials",
        "a string code, as auth-js reads it"
    );
    let other = basalt
        .http
        .get(basalt.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("x-supabase-api-version").is_none());
}

#[tokio::test]
async fn auth_routes_are_rate_limited_per_ip_and_forwarded_for_does_not_help() {
    let basalt = Basalt::builder()
        .env("BASALT_RATE_LIMIT_ENABLED", "true")
        .env("BASALT_RATE_LIMIT_AUTH_PER_IP", "3/1m")
        .start()
        .await;
    let client = Client::new(&basalt);
    for i in 0..3 {
        assert_eq!(
            client
                .login(&format!("u{i}@example.com"), "password one")
                .await
                .0,
            400
        );
    }
    let (status, body) = client.login("u9@example.com", "password one").await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
    let spoofed = basalt
        .http
        .post(basalt.url("/auth/v1/token?grant_type=password"))
        .header("apikey", &client.anon)
        .header("x-forwarded-for", "198.51.100.23")
        .json(&json!({"email": "u10@example.com", "password": "password one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 429);
    assert!(spoofed.headers().contains_key("retry-after"));
}
