//! Request scenarios as data, in the spirit of PocketBase's `ApiScenario`:
//! a TOML file of `[[scenario]]` tables, each one request and what must come
//! back. The scenarios of a file run in order (a later one may read what an
//! earlier one wrote), every one of them, and a failure lists all that
//! failed. `{name}` in a path, body or fragment stands for the fixture's
//! variable `name` (a user's id, say); other braces are left as they are.
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
//! equals = []                          # optional: the whole body, as JSON
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
    pub equals: Option<toml::Value>,
    #[serde(default)]
    pub response_headers: BTreeMap<String, String>,
}

/// What scenarios refer to: users' access tokens (`caller = "user:<name>"`)
/// and variables (`{name}`).
#[derive(Default)]
pub struct Fixture {
    pub tokens: HashMap<String, String>,
    pub vars: HashMap<String, String>,
}

impl Fixture {
    /// `{name}` replaced by each variable's value.
    pub fn fill(&self, text: &str) -> String {
        self.vars
            .iter()
            .fold(text.to_owned(), |text, (name, value)| {
                text.replace(&format!("{{{name}}}"), value)
            })
    }
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

    /// Runs every scenario, in order. Panics listing every scenario that
    /// failed, and why.
    pub async fn run_all(scenarios: &[Scenario], basalt: &Basalt, fixture: &Fixture) {
        let mut failures = Vec::new();
        for scenario in scenarios {
            if let Err(why) = scenario.run(basalt, fixture).await {
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
    pub async fn run(&self, basalt: &Basalt, fixture: &Fixture) -> Result<(), String> {
        let client = match self.caller.as_str() {
            "anon" => basalt.as_anon(),
            "service" => basalt.as_service(),
            "nobody" => basalt.as_nobody(),
            other => match other
                .strip_prefix("user:")
                .and_then(|name| fixture.tokens.get(name))
            {
                Some(token) => basalt.as_user(token),
                None => return Err(format!("unknown caller `{other}`")),
            },
        };
        let method = Method::from_bytes(self.method.as_bytes()).map_err(|e| e.to_string())?;
        let answer = client.answer(self.request(&client, method, fixture)).await;
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
        for fragment in &self.contains {
            let fragment = fixture.fill(fragment);
            if !text.contains(&fragment) {
                return Err(format!("the body lacks `{fragment}`: {text}"));
            }
        }
        for fragment in &self.absent {
            let fragment = fixture.fill(fragment);
            if text.contains(&fragment) {
                return Err(format!("the body holds `{fragment}`: {text}"));
            }
        }
        if let Some(equals) = &self.equals {
            let wanted = fill_json(json(equals), fixture);
            if answer.json_or_null() != wanted {
                return Err(format!("the body is not {wanted}: {text}"));
            }
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

    fn request(
        &self,
        client: &Client,
        method: Method,
        fixture: &Fixture,
    ) -> reqwest::RequestBuilder {
        let mut request = client.request(method, &fixture.fill(&self.path));
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &self.body {
            request = request.json(&fill_json(json(body), fixture));
        }
        if let Some(raw) = &self.raw {
            request = request.body(fixture.fill(raw));
        }
        request
    }
}

fn json(value: &toml::Value) -> serde_json::Value {
    serde_json::to_value(value).expect("TOML is JSON")
}

/// The fixture's variables filled into every string of a JSON value.
fn fill_json(value: serde_json::Value, fixture: &Fixture) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(text) => Value::String(fixture.fill(&text)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| fill_json(v, fixture)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, fill_json(v, fixture)))
                .collect(),
        ),
        other => other,
    }
}
