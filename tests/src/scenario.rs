//! Request scenarios as data, in the spirit of PocketBase's `ApiScenario`:
//! a TOML file of `[[scenario]]` tables, each one request and what must come
//! back. Every scenario of a file runs, and a failure lists all that failed.
//!
//! ```toml
//! [[scenario]]
//! name = "an unknown column is named, with the closest one"
//! method = "GET"                       # default GET
//! path = "/rest/v1/posts?select=titel"
//! caller = "anon"                      # anon | service | nobody | user:<name>
//! headers = { Range = "0-9" }          # optional
//! body = { title = "x" }               # optional, sent as JSON (or raw = "…")
//! status = 400
//! code = "invalid_query"               # optional: asserts the error shape too
//! contains = ["did you mean `title`?"] # optional fragments of the body
//! absent = ["secret"]                  # optional fragments that must not appear
//! [scenario.response_headers]          # optional: header values, exactly
//! content-type = "application/json"
//! ```

use crate::client::Client;
use crate::Basalt;
use reqwest::Method;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    #[serde(default = "anon")]
    pub caller: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<toml::Value>,
    pub raw: Option<String>,
    pub status: u16,
    pub code: Option<String>,
    #[serde(default)]
    pub contains: Vec<String>,
    #[serde(default)]
    pub absent: Vec<String>,
    #[serde(default)]
    pub response_headers: BTreeMap<String, String>,
}

fn get() -> String {
    "GET".into()
}

fn anon() -> String {
    "anon".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    scenario: Vec<Scenario>,
}

impl Scenario {
    /// The scenarios of a file under `tests/` (e.g. `scenarios/errors.toml`).
    pub fn load(relative: &str) -> Vec<Scenario> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        toml::from_str::<File>(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .scenario
    }

    /// Runs every scenario; `users` maps `user:<name>` callers to access
    /// tokens. Panics listing every scenario that failed, and why.
    pub async fn run_all(scenarios: &[Scenario], basalt: &Basalt, users: &HashMap<String, String>) {
        let mut failures = Vec::new();
        for scenario in scenarios {
            if let Err(why) = scenario.run(basalt, users).await {
                failures.push(format!("- {}: {why}", scenario.name));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} scenarios failed:\n{}",
            failures.len(),
            scenarios.len(),
            failures.join("\n")
        );
    }

    /// Sends the request and checks the answer; `Err` says what differed.
    pub async fn run(
        &self,
        basalt: &Basalt,
        users: &HashMap<String, String>,
    ) -> Result<(), String> {
        let client = match self.caller.as_str() {
            "anon" => basalt.as_anon(),
            "service" => basalt.as_service(),
            "nobody" => basalt.as_nobody(),
            other => match other.strip_prefix("user:").and_then(|name| users.get(name)) {
                Some(token) => basalt.as_user(token),
                None => return Err(format!("unknown caller `{other}`")),
            },
        };
        let method = Method::from_bytes(self.method.as_bytes()).map_err(|e| e.to_string())?;
        let answer = client.answer(self.request(&client, method)).await;
        let text = &answer.text;
        if answer.status != self.status {
            return Err(format!(
                "status {} (wanted {}): {text}",
                answer.status, self.status
            ));
        }
        if let Some(code) = &self.code {
            let body = answer.json_or_null();
            let shaped = body["code"] == code.as_str()
                && body["message"].as_str().is_some_and(|m| !m.is_empty())
                && body.get("details").is_some()
                && body.get("hint").is_some();
            if !shaped {
                return Err(format!("not a `{code}` error: {text}"));
            }
        }
        if let Some(missing) = self.contains.iter().find(|f| !text.contains(f.as_str())) {
            return Err(format!("the body lacks `{missing}`: {text}"));
        }
        if let Some(found) = self.absent.iter().find(|f| text.contains(f.as_str())) {
            return Err(format!("the body holds `{found}`: {text}"));
        }
        for (name, wanted) in &self.response_headers {
            if answer.header(name) != wanted {
                return Err(format!(
                    "{name}: `{}` (wanted `{wanted}`)",
                    answer.header(name)
                ));
            }
        }
        Ok(())
    }

    fn request(&self, client: &Client, method: Method) -> reqwest::RequestBuilder {
        let mut request = client.request(method, &self.path);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &self.body {
            request = request.json(&serde_json::to_value(body).expect("TOML is JSON"));
        }
        if let Some(raw) = &self.raw {
            request = request.body(raw.clone());
        }
        request
    }
}
