//! One HTTP client for the suites: a caller of one server (an API key and,
//! for a user, an access token) whose every request answers status,
//! headers and body (`json()` parses it, `expect(status)` checks it).
//!
//! ```text
//! let rows = basalt.as_anon().get("/rest/v1/posts").await.expect(200).json();
//! basalt.as_service().post("/admin/v1/roles", json!({"name": "editor"})).await.expect(201);
//! ```

use crate::Basalt;
use reqwest::Method;
use serde_json::{json, Value};

/// A caller of one server: an API key (none when empty) and, for a user,
/// an access token sent as the bearer.
#[derive(Clone)]
pub struct Client<'a> {
    pub basalt: &'a Basalt,
    pub key: String,
    pub token: Option<String>,
}

/// What the server answered.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
    /// The body as text (lossy for binary bodies).
    pub text: String,
}

impl Answer {
    pub async fn from(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap().to_vec();
        Answer {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        }
    }

    /// The body as JSON, or `null` when it is not JSON.
    pub fn json_or_null(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|_| panic!("not JSON: {}", self.text))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// Asserts the status (showing the body when it differs).
    #[track_caller]
    pub fn expect(self, status: u16) -> Answer {
        assert_eq!(self.status, status, "{}", self.text);
        self
    }

    /// Asserts a catalogue error: the status, the code, and the whole shape
    /// (`code`, a non-empty `message`, `details` and `hint` present).
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Answer {
        let answer = self.expect(status);
        assert_error_shape(&answer.json(), code);
        answer
    }

    /// Status and JSON body (`null` when not JSON), for tables of cases.
    pub fn pair(&self) -> (u16, Value) {
        (self.status, self.json_or_null())
    }
}

/// Basalt's error body: `{"code", "message", "details", "hint"}`.
#[track_caller]
pub fn assert_error_shape(body: &Value, code: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body.get("details").is_some() && body.get("hint").is_some(),
        "{body}"
    );
}

impl Basalt {
    /// The anon key, no user.
    pub fn as_anon(&self) -> Client<'_> {
        Client::anon(self)
    }

    /// The service_role key.
    pub fn as_service(&self) -> Client<'_> {
        Client::service(self)
    }

    /// The anon key with a user's access token (or any key) as the bearer.
    pub fn as_user(&self, token: &str) -> Client<'_> {
        Client {
            token: Some(token.to_owned()),
            ..Client::anon(self)
        }
    }

    /// No key and no token.
    pub fn as_nobody(&self) -> Client<'_> {
        Client {
            basalt: self,
            key: String::new(),
            token: None,
        }
    }
}

impl<'a> Client<'a> {
    /// The service_role key.
    pub fn service(basalt: &'a Basalt) -> Self {
        Client {
            basalt,
            key: basalt.keys().service_role,
            token: None,
        }
    }

    /// The anon key, no user.
    pub fn anon(basalt: &'a Basalt) -> Self {
        Client {
            basalt,
            key: basalt.keys().anon,
            token: None,
        }
    }

    /// `key` as the `apikey` header and as the bearer.
    pub fn with_key(basalt: &'a Basalt, key: &str) -> Self {
        Client {
            basalt,
            key: key.to_owned(),
            token: Some(key.to_owned()),
        }
    }

    /// Creates a confirmed user and signs them in: the user's client and id.
    pub async fn user(basalt: &'a Basalt, email: &str) -> (Self, String) {
        let created = Client::service(basalt)
            .post(
                "/auth/v1/admin/users",
                json!({"email": email, "password": "a long passphrase 1", "email_confirm": true}),
            )
            .await
            .expect(200);
        let anon = Client::anon(basalt);
        let session = anon
            .post(
                "/auth/v1/token?grant_type=password",
                json!({"email": email, "password": "a long passphrase 1"}),
            )
            .await
            .expect(200);
        let id = created.json()["id"].as_str().unwrap().to_owned();
        (
            Client {
                token: Some(session.json()["access_token"].as_str().unwrap().to_owned()),
                ..anon
            },
            id,
        )
    }

    /// A request with this caller's key and token, to finish and `answer`.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.basalt.http.request(method, self.basalt.url(path));
        if !self.key.is_empty() {
            request = request.header("apikey", &self.key);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends a request built with [`Client::request`].
    pub async fn answer(&self, request: reqwest::RequestBuilder) -> Answer {
        Answer::from(request.send().await.unwrap()).await
    }

    /// Sends a request; `body` as JSON.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.request(method, path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.answer(request).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, &[], None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(Method::PATCH, path, &[], Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(Method::PUT, path, &[], Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, &[], None).await
    }

    /// A JSON call answering status and JSON (`null` when not JSON).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(method, path, &[], body).await.pair()
    }

    /// Adds a policy through the admin API (this client must be allowed to).
    pub async fn policy(&self, policy: Value) {
        self.post("/admin/v1/policies", policy).await.expect(201);
    }
}
