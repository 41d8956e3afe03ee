//! Auth's email flows against a real SMTP server (aiosmtpd on loopback): the
//! tests read the received messages and follow their links.

use basalt_tests::client::Client;
use basalt_tests::{Basalt, SmtpServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn with_smtp(smtp: &SmtpServer, extra: &[(&str, &str)]) -> Basalt {
    let mut builder = Basalt::builder()
        .env("BASALT_SITE_URL", "https://app.example.com")
        .env(
            "BASALT_AUTH_REDIRECT_ALLOW_LIST",
            "https://app.example.com/welcome,myapp://callback/*",
        )
        .env("BASALT_JOBS_POLL_INTERVAL_MS", "100")
        .env("BASALT_JOBS_RETRY_BASE_MS", "200")
        .env("BASALT_JOBS_RETRY_MAX_MS", "1000");
    for (name, value) in smtp.env() {
        builder = builder.env(name, value);
    }
    for (name, value) in extra {
        builder = builder.env(name, *value);
    }
    builder.start().await
}

struct Api<'a> {
    basalt: &'a Basalt,
    anon: String,
    no_redirects: reqwest::Client,
}

impl<'a> Api<'a> {
    fn new(basalt: &'a Basalt) -> Self {
        Api {
            basalt,
            anon: basalt.keys().anon,
            no_redirects: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let client = Client {
            basalt: self.basalt,
            key: self.anon.clone(),
            token: bearer.map(str::to_owned),
        };
        let answer = client.send(method, path, &[], Some(body)).await;
        (answer.status, answer.json_or_null())
    }

    async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
        self.send(Method::POST, path, bearer, body).await
    }

    async fn put_user(&self, bearer: &str, body: Value) -> (u16, Value) {
        self.send(Method::PUT, "/auth/v1/user", Some(bearer), body)
            .await
    }

    async fn login(&self, email: &str, password: &str) -> (u16, Value) {
        self.post(
            "/auth/v1/token?grant_type=password",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Opens an emailed link like a browser would, without following the redirect.
    async fn open(&self, link: &str) -> String {
        let link = link.replace("http://127.0.0.1:8000", &self.basalt.url(""));
        let response = self.no_redirects.get(&link).send().await.unwrap();
        assert_eq!(response.status(), 303, "{link}");
        response.headers()["location"].to_str().unwrap().to_owned()
    }
}

fn fragment(location: &str) -> std::collections::HashMap<String, String> {
    let fragment = location.split_once('#').map(|(_, f)| f).unwrap_or("");
    url_pairs(fragment)
}

fn url_pairs(text: &str) -> std::collections::HashMap<String, String> {
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(
                u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap(), 16).unwrap(),
            );
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn token_of(link: &str) -> String {
    url_pairs(link.split_once('?').unwrap().1)["token"].clone()
}

#[tokio::test]
async fn signup_confirmation_by_email_then_login() {
    let smtp = SmtpServer::start();
    let basalt = with_smtp(
        &smtp,
        &[(
            "BASALT_TEMPLATES_CONFIRMATION_SUBJECT",
            "Welcome to Acme, {{ email }}",
        )],
    )
    .await;
    let api = Api::new(&basalt);
    let (status, user) = api
        .post(
            "/auth/v1/signup?redirect_to=https://app.example.com/welcome",
            None,
            json!({"email": "new@example.com", "password": "password one"}),
        )
        .await;
    assert_eq!(status, 200, "{user}");
    assert!(
        user.get("access_token").is_none(),
        "no session before confirmation: {user}"
    );
    assert!(user["email_confirmed_at"].is_null());
    let (status, body) = api.login("new@example.com", "password one").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("email_not_confirmed"))
    );

    let mail = smtp.wait_for("new@example.com", 0, WAIT).await;
    assert_eq!(mail.subject, "Welcome to Acme, new@example.com");
    assert!(mail.html.contains("href=\""), "{}", mail.html);
    let link = mail.verify_link();
    assert!(link.contains("/auth/v1/verify?token="), "{link}");

    let location = api.open(&link).await;
    assert!(
        location.starts_with("https://app.example.com/welcome#"),
        "{location}"
    );
    let session = fragment(&location);
    assert_eq!(session["type"], "signup");
    assert_eq!(session["token_type"], "bearer");
    assert!(!session["refresh_token"].is_empty());
    let (status, _) = api.login("new@example.com", "password one").await;
    assert_eq!(status, 200);

    // The link works once.
    let again = api.open(&link).await;
    assert!(
        again.starts_with("https://app.example.com/welcome#"),
        "{again}"
    );
    assert_eq!(fragment(&again)["error_code"], "otp_expired");

    // The queued email keeps no token once sent.
    let database = basalt_tests::connect(basalt.database_url().unwrap()).await;
    let leftover: i64 = database
        .query_one(
            "select count(*) from basalt.jobs where payload::text like '%token=%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftover, 0);
}

#[tokio::test]
async fn signup_with_a_taken_address_reveals_nothing() {
    let smtp = SmtpServer::start();
    let basalt = with_smtp(&smtp, &[]).await;
    let api = Api::new(&basalt);
    let (status, first) = api
        .post(
            "/auth/v1/signup",
            None,
            json!({"email": "taken@example.com", "password": "password one"}),
        )
        .await;
    assert_eq!(status, 200);
    let link = smtp
        .wait_for("taken@example.com", 0, WAIT)
        .await
        .verify_link();
    api.open(&link).await;

    // The address now has a confirmed account: a sign-up answers like a new
    // one (same fields, same formats), and sends nothing.
    let (status, second) = api
        .post(
            "/auth/v1/signup",
            None,
            json!({"email": "TAKEN@example.com", "password": "password two"}),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    let (_, fresh) = api
        .post(
            "/auth/v1/signup",
            None,
            json!({"email": "fresh@example.com", "password": "password two"}),
        )
        .await;
    let shape = |value: &Value| {
        value
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, value)| {
                (
                    key.clone(),
                    value.as_str().map(|text| text.len()).unwrap_or(0) > 0,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        shape(&second),
        shape(&fresh),
        "same fields, null and filled alike"
    );
    // Timestamps come from PostgreSQL in both cases: at most microseconds, same offset.
    let timestamp_form = |value: &Value| {
        let text = value["created_at"].as_str().unwrap().to_owned();
        let (seconds, offset) = text.split_at(text.len() - 6);
        let fraction = seconds.split_once('.').map(|(_, f)| f.len()).unwrap_or(0);
        (fraction <= 6, offset.to_owned())
    };
    assert_eq!(
        timestamp_form(&second),
        timestamp_form(&fresh),
        "{second} / {fresh}"
    );
    assert!(timestamp_form(&second).0);
    assert_ne!(first["id"], second["id"]);
    let (_, again) = api
        .post(
            "/auth/v1/signup",
            None,
            json!({"email": "taken@example.com", "password": "password three"}),
        )
        .await;
    assert_eq!(
        again["id"], second["id"],
        "the look-alike id is stable, like a real pending account's"
    );
    smtp.wait_for("fresh@example.com", 0, WAIT).await;
    assert_eq!(
        smtp.messages()
            .iter()
            .filter(|m| m.to.to_lowercase().contains("taken@"))
            .count(),
        1
    );
    assert_eq!(
        api.login("taken@example.com", "password one").await.0,
        200,
        "the account is untouched"
    );
}

#[tokio::test]
async fn a_pre_registered_unconfirmed_account_cannot_be_kept_by_its_creator() {
    let smtp = SmtpServer::start();
    let basalt = with_smtp(&smtp, &[]).await;
    let api = Api::new(&basalt);
    // Someone signs up with the owner's address and a password of their own.
    api.post("/auth/v1/signup", None, json!({"email": "owner@example.com", "password": "attacker pass", "data": {"by": "attacker"}})).await;
    smtp.wait_for("owner@example.com", 0, WAIT).await;
    // The owner signs up too: their password and data replace the pending ones, and a new link comes.
    let (status, _) = api
        .post(
            "/auth/v1/signup",
            None,
            json!({"email": "owner@example.com", "password": "owner pass"}),
        )
        .await;
    assert_eq!(status, 200);
    let link = smtp
        .wait_for("owner@example.com", 1, WAIT)
        .await
        .verify_link();
    api.open(&link).await;
    assert_eq!(api.login("owner@example.com", "attacker pass").await.0, 400);
    assert_eq!(api.login("owner@example.com", "owner pass").await.0, 200);

    // Same story through a magic link: following it drops the creator's password.
    api.post(
        "/auth/v1/signup",
        None,
        json!({"email": "victim@example.com", "password": "attacker pass"}),
    )
    .await;
    smtp.wait_for("victim@example.com", 0, WAIT).await;
    api.post("/auth/v1/otp", None, json!({"email": "victim@example.com"}))
        .await;
    let link = smtp
        .wait_for("victim@example.com", 1, WAIT)
        .await
        .verify_link();
    let session = fragment(&api.open(&link).await);
    assert!(session.contains_key("access_token"), "{session:?}");
    assert_eq!(
        api.login("victim@example.com", "attacker pass").await.0,
        400,
        "the creator's password is gone"
    );
}

#[tokio::test]
async fn password_recovery_by_email() {
    let smtp = SmtpServer::start();
    let basalt = with_smtp(&smtp, &[("BASALT_AUTH_EMAIL_CONFIRMATION", "off")]).await;
    let api = Api::new(&basalt);
    let (status, _) = api
        .post(
            "/auth/v1/signup",
            None,
            json!({"email": "forgot@example.com", "password": "old password"}),
        )
        .await;
    assert_eq!(status, 200);

    let (known_status, known) = api
        .post(
            "/auth/v1/recover",
            None,
            json!({"email": "forgot@example.com"}),
        )
        .await;
    let (unknown_status, unknown) = api
        .post(
            "/auth/v1/recover",
            None,
            json!({"email": "ghost@example.com"}),
        )
        .await;
    assert_eq!((known_status, &known), (200, &json!({})));
    assert_eq!(
        (unknown_status, &unknown),
        (200, &json!({})),
        "no hint that the address is unknown"
    );

    let mail = smtp.wait_for("forgot@example.com", 0, WAIT).await;
    assert_eq!(mail.subject, "Reset your password");
    let token = token_of(&mail.verify_link());
    let (status, body) = api
        .post(
            "/auth/v1/verify",
            None,
            json!({"type": "magiclink", "token": token}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("otp_expired")),
        "a recovery token is not a magic link"
    );
    let (status, session) = api
        .post(
            "/auth/v1/verify",
            None,
            json!({"type": "recovery", "token": token}),
        )
        .await;
    assert_eq!(status, 200, "{session}");
    let access = session["access_token"].as_str().unwrap();
    let (status, _) = api
        .put_user(access, json!({"password": "new password"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(api.login("forgot@example.com", "new password").await.0, 200);
    assert_eq!(api.login("forgot@example.com", "old password").await.0, 400);
    assert!(smtp.messages().iter().all(|m| !m.to.contains("ghost@")));
    let audit: Value = basalt
        .http
        .get(basalt.url("/admin/v1/audit?event=recovery_email_sent"))
        .header("apikey", basalt.keys().service_role)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "only the known address got one: {audit}");
    assert_eq!(entries[0]["ip"], "127.0.0.1");
    assert_eq!(entries[0]["details"]["to"], "*@example.com");
}

#[tokio::test]
async fn magic_links_sign_in_and_create_users() {
    let smtp = SmtpServer::start();
    let basalt = with_smtp(&smtp, &[]).await;
    let api = Api::new(&basalt);
    let (status, _) = api
        .post(
            "/auth/v1/otp?redirect_to=myapp://callback/done",
            None,
            json!({"email": "magic@example.com", "data": {"source": "otp"}}),
        )
        .await;
    assert_eq!(status, 200);
    let mail = smtp.wait_for("magic@example.com", 0, WAIT).await;
    assert_eq!(mail.subject, "Your sign-in link");
    let location = api.open(&mail.verify_link()).await;
    assert!(location.starts_with("myapp://callback/done#"), "{location}");
    let session = fragment(&location);
    let (status, user) = {
        let response = basalt
            .http
            .get(basalt.url("/auth/v1/user"))
            .header("apikey", &api.anon)
            .bearer_auth(&session["access_token"])
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 200);
    assert_eq!(user["email"], "magic@example.com");
    assert!(
        user["email_confirmed_at"].is_string(),
        "the link confirmed the address"
    );
    assert_eq!(user["user_metadata"]["source"], "otp");

    // create_user: false for an unknown address: same answer, no email, no user.
    let (status, body) = api
        .post(
            "/auth/v1/otp",
            None,
            json!({"email": "nobody@example.com", "create_user": false}),
        )
        .await;
    assert_eq!((status, body), (200, json!({})));
    let (status, body) = api
        .post(
            "/auth/v1/otp?redirect_to=https://evil.example.net/",
            None,
            json!({"email": "magic@example.com"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_failed")),
        "redirects outside the allow-list are refused"
    );
}

#[tokio::test]
async fn email_change_is_confirmed_by_the_new_address() {
    let smtp = SmtpServer::start();
    let basalt = with_smtp(&smtp, &[("BASALT_AUTH_EMAIL_CONFIRMATION", "off")]).await;
    let api = Api::new(&basalt);
    let (_, session) = api
        .post(
            "/auth/v1/signup",
            None,
            json!({"email": "old@example.com", "password": "password one"}),
        )
        .await;
    let access = session["access_token"].as_str().unwrap().to_owned();
    let (status, user) = api
        .put_user(&access, json!({"email": "fresh@example.com"}))
        .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(
        user["email"], "old@example.com",
        "unchanged until confirmed"
    );
    let mail = smtp.wait_for("fresh@example.com", 0, WAIT).await;
    assert!(
        mail.text.contains("fresh@example.com") || mail.subject.contains("new email"),
        "{mail:?}"
    );
    let token = token_of(&mail.verify_link());
    let (status, _) = api
        .post(
            "/auth/v1/verify",
            None,
            json!({"type": "email_change", "token": token}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(api.login("fresh@example.com", "password one").await.0, 200);
    assert_eq!(api.login("old@example.com", "password one").await.0, 400);
}

#[tokio::test]
async fn expired_links_are_refused() {
    let smtp = SmtpServer::start();
    let basalt = with_smtp(&smtp, &[]).await;
    let api = Api::new(&basalt);
    api.post("/auth/v1/otp", None, json!({"email": "late@example.com"}))
        .await;
    let mail = smtp.wait_for("late@example.com", 0, WAIT).await;
    let database = basalt_tests::connect(basalt.database_url().unwrap()).await;
    database
        .execute(
            "update auth.one_time_tokens set expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let (status, body) = api
        .post(
            "/auth/v1/verify",
            None,
            json!({"type": "magiclink", "token": token_of(&mail.verify_link())}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("otp_expired")));
    let stored: i64 = database
        .query_one(
            "select count(*) from auth.one_time_tokens where token_hash = sha256($1::text::bytea)",
            &[&token_of(&mail.verify_link())],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "tokens are stored as SHA-256 hashes");
}

#[tokio::test]
async fn a_mail_server_outage_delays_email_but_loses_none() {
    let smtp = SmtpServer::start();
    let basalt = with_smtp(&smtp, &[]).await;
    let api = Api::new(&basalt);
    smtp.stop();
    let (status, _) = api
        .post(
            "/auth/v1/signup",
            None,
            json!({"email": "patient@example.com", "password": "password one"}),
        )
        .await;
    assert_eq!(status, 200, "sign-up does not wait on SMTP");
    let database = basalt_tests::connect(basalt.database_url().unwrap()).await;
    let mut failed_attempts = 0;
    for _ in 0..100 {
        failed_attempts = database
            .query_one(
                "select coalesce(max(attempts), 0) from basalt.jobs where last_error is not null",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i32>(0);
        if failed_attempts >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        failed_attempts >= 1,
        "the job was tried while SMTP was down"
    );
    smtp.resume();
    let mail = smtp.wait_for("patient@example.com", 0, WAIT).await;
    assert_eq!(mail.subject, "Confirm your email address");
    let status: String = database
        .query_one("select status from basalt.jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "done");
}

#[tokio::test]
async fn without_smtp_email_flows_say_so() {
    let basalt = Basalt::start().await;
    let api = Api::new(&basalt);
    let (status, body) = api
        .post("/auth/v1/recover", None, json!({"email": "a@example.com"}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("email_not_configured"))
    );
    assert!(basalt
        .logs()
        .contains("sign-ups are confirmed automatically"));
}

#[tokio::test]
async fn per_email_rate_limits() {
    let basalt = Basalt::builder()
        .env("BASALT_RATE_LIMIT_ENABLED", "true")
        .env("BASALT_RATE_LIMIT_AUTH_PER_IP", "off")
        .env("BASALT_RATE_LIMIT_AUTH_PER_EMAIL", "2/1h")
        .start()
        .await;
    let api = Api::new(&basalt);
    for _ in 0..2 {
        assert_eq!(api.login("target@example.com", "guess").await.0, 400);
    }
    let (status, body) = api.login("Target@Example.com", "guess").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("rate_limited")),
        "case does not reset it"
    );
    assert_eq!(
        api.login("other@example.com", "guess").await.0,
        400,
        "other addresses are not affected"
    );
}

#[tokio::test]
async fn supabase_js_verify_shapes_and_probing_by_email_change() {
    let smtp = SmtpServer::start();
    let basalt = with_smtp(&smtp, &[]).await;
    let api = Api::new(&basalt);
    api.post("/auth/v1/otp", None, json!({"email": "js@example.com"}))
        .await;
    let link = smtp.wait_for("js@example.com", 0, WAIT).await.verify_link();
    // verifyOtp({ token_hash, type: 'email' })
    let (status, session) = api
        .post(
            "/auth/v1/verify",
            None,
            json!({"type": "email", "token_hash": token_of(&link)}),
        )
        .await;
    assert_eq!(status, 200, "{session}");
    let access = session["access_token"].as_str().unwrap().to_owned();

    // Changing to a taken address answers like any change and sends nothing.
    api.post(
        "/auth/v1/signup",
        None,
        json!({"email": "other@example.com", "password": "password one"}),
    )
    .await;
    let (status, user) = api
        .put_user(&access, json!({"email": "other@example.com"}))
        .await;
    assert_eq!(status, 200, "{user}");
    let (status, _) = api
        .put_user(&access, json!({"email": "free@example.com"}))
        .await;
    assert_eq!(status, 200);
    smtp.wait_for("free@example.com", 0, WAIT).await;
    let to_other = smtp
        .messages()
        .iter()
        .filter(|m| m.to.contains("other@example.com"))
        .count();
    assert_eq!(
        to_other, 1,
        "only other@'s own confirmation, no change link"
    );

    // A link without its token still lands in the app, with an error.
    let location = api
        .open(&format!("{}/auth/v1/verify?type=signup", basalt.url("")))
        .await;
    assert!(
        location.starts_with("https://app.example.com#"),
        "{location}"
    );
    assert_eq!(fragment(&location)["error_code"], "validation_failed");
}

#[tokio::test]
async fn a_refused_recipient_fails_the_job_at_once() {
    let smtp = SmtpServer::start();
    let basalt = with_smtp(&smtp, &[]).await;
    let api = Api::new(&basalt);
    api.post(
        "/auth/v1/signup",
        None,
        json!({"email": "nobody+reject@example.com", "password": "password one"}),
    )
    .await;
    api.post(
        "/auth/v1/signup",
        None,
        json!({"email": "somebody@example.com", "password": "password one"}),
    )
    .await;
    smtp.wait_for("somebody@example.com", 0, WAIT).await;
    let database = basalt_tests::connect(basalt.database_url().unwrap()).await;
    let mut outcome = None;
    for _ in 0..100 {
        let row = database
            .query_opt(
                "select status, attempts, last_error from basalt.jobs where status = 'failed'",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            outcome = Some((
                row.get::<_, String>(0),
                row.get::<_, i32>(1),
                row.get::<_, String>(2),
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = database
        .query(
            "select status, attempts, coalesce(last_error, '') from basalt.jobs",
            &[],
        )
        .await
        .unwrap();
    let all: Vec<(String, i32, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let (status, attempts, error) =
        outcome.unwrap_or_else(|| panic!("no failed job: {all:?}\n{}", basalt.logs()));
    assert_eq!(
        (status.as_str(), attempts),
        ("failed", 1),
        "no retries for a 5xx"
    );
    assert!(error.contains("550"), "{error}");
}

/// Workers wake on NOTIFY at commit, on every replica: with polling set to ten
/// minutes, an email still goes out at once, whichever server queued it.
#[tokio::test]
async fn jobs_wake_workers_on_every_replica_at_commit() {
    let smtp = SmtpServer::start();
    let url = basalt_tests::PgServer::shared().fresh_database().await;
    let start = || {
        let mut builder = Basalt::builder()
            .database_url(&url)
            .env("BASALT_JOBS_POLL_INTERVAL_MS", "600000")
            .env("BASALT_SITE_URL", "https://app.example.com");
        for (name, value) in smtp.env() {
            builder = builder.env(name, value);
        }
        builder.start()
    };
    let (a, b) = tokio::join!(start(), start());
    // Give both listeners a moment to be in place before queuing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (server, email) in [(&a, "via-a@example.com"), (&b, "via-b@example.com")] {
        let api = Api::new(server);
        let (status, _) = api
            .post("/auth/v1/otp", None, json!({"email": email}))
            .await;
        assert_eq!(status, 200);
        smtp.wait_for(email, 0, WAIT).await;
    }
}
