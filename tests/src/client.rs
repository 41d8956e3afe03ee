//! One HTTP client for the suites: a caller of one server (an API key and,
//! for a user, an access token) whose every request answers status,
//! headers and text (`json()` parses it).

use crate::Basalt;
use reqwest::Method;
use serde_json::{json, Value};

/// A caller of one server: an API key and, for a user, an access token.
pub struct Client<'a> {
    pub basalt: &'a Basalt,
    pub key: String,
    pub token: Option<String>,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    /// The body as JSON, or `null` when it is not JSON.
    pub fn json_or_null(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {}", self.text))
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
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

    /// Creates a confirmed user and signs them in.
    pub async fn user(basalt: &'a Basalt, email: &str) -> (Self, String) {
        let created = Client::service(basalt)
            .send(
                Method::POST,
                "/auth/v1/admin/users",
                &[],
                Some(json!({"email": email, "password": "a long passphrase 1", "email_confirm": true})),
            )
            .await;
        assert_eq!(created.status, 200, "{}", created.text);
        let anon = Client::anon(basalt);
        let session = anon
            .send(
                Method::POST,
                "/auth/v1/token?grant_type=password",
                &[],
                Some(json!({"email": email, "password": "a long passphrase 1"})),
            )
            .await;
        assert_eq!(session.status, 200, "{}", session.text);
        let id = created.json()["id"].as_str().unwrap().to_owned();
        (
            Client {
                token: Some(session.json()["access_token"].as_str().unwrap().to_owned()),
                ..anon
            },
            id,
        )
    }

    /// Sends a request; `body` as JSON.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut request = self
            .basalt
            .http
            .request(method, self.basalt.url(path))
            .header("apikey", &self.key);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, &[], None).await
    }

    /// Adds a policy through the admin API (this client must be allowed to).
    pub async fn policy(&self, policy: Value) {
        let answer = self
            .send(Method::POST, "/admin/v1/policies", &[], Some(policy))
            .await;
        assert_eq!(answer.status, 201, "{}", answer.text);
    }
}
