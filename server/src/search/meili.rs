//! The Meilisearch backend (meilisearch-sdk): the one client of a replica,
//! searches with the caller's filter (their policies' row conditions and
//! their own filters, as Meilisearch filters with SQL's meaning), the
//! searched and returned attributes narrowed to the columns they may read,
//! index settings from a declaration, tasks awaited and their failures
//! reported, and the drift check.

use super::query::Access;
use super::Index;
use crate::error::HttpError;
use crate::state::AppState;
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::filter::sql::Caller as Variables;
use basalt_core::search::meili::{self as rules, ID};
use basalt_core::search::{columns_of, IndexDef, SearchError, SearchQuery};
use meilisearch_sdk::errors::{Error, ErrorCode as MeiliCode};
use meilisearch_sdk::request::{parse_response, HttpClient, Method};
use meilisearch_sdk::search::{SearchResults, Selectors};
use meilisearch_sdk::settings::Settings;
use meilisearch_sdk::task_info::TaskInfo;
use meilisearch_sdk::tasks::Task;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The SDK's client over [`Http`].
pub type Client = meilisearch_sdk::client::Client<Http>;

/// meilisearch-sdk's HTTP transport, written again: the SDK's own
/// (`ReqwestClient`, 0.33) streams every request body through a reader
/// whose buffer is 8 MiB zeroed per request, which cost Basalt five times
/// the search itself (measured with perf). Bodies here are JSON that is
/// already in memory, sent whole.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

impl Http {
    fn new(key: Option<&str>) -> anyhow::Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(Http {
            client: reqwest::Client::builder()
                .default_headers(headers)
                .build()?,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for Http {
    async fn stream_request<
        Query: serde::Serialize + Send + Sync,
        Body: futures_util::io::AsyncRead + Send + Sync + 'static,
        Output: serde::de::DeserializeOwned + 'static,
    >(
        &self,
        url: &str,
        method: Method<Query, Body>,
        content_type: &str,
        expected_status_code: u16,
    ) -> Result<Output, Error> {
        use futures_util::io::AsyncReadExt;
        let query = yaup::to_string(method.query())?;
        let url = format!("{url}{query}");
        let verb = match &method {
            Method::Get { .. } => reqwest::Method::GET,
            Method::Delete { .. } => reqwest::Method::DELETE,
            Method::Post { .. } => reqwest::Method::POST,
            Method::Put { .. } => reqwest::Method::PUT,
            Method::Patch { .. } => reqwest::Method::PATCH,
        };
        let mut request = self.client.request(verb, &url);
        if let Some(body) = method.into_body() {
            let mut bytes = Vec::new();
            std::pin::pin!(body)
                .read_to_end(&mut bytes)
                .await
                .map_err(|error| Error::Other(Box::new(error)))?;
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let mut body = response.text().await?;
        if body.is_empty() {
            body = "null".into();
        }
        parse_response(status, expected_status_code, &body, url)
    }

    fn is_tokio(&self) -> bool {
        true
    }
}

/// The replica's Meilisearch client, when `search.meilisearch_url` is set.
pub struct Meili {
    pub client: Option<Client>,
    pub task_timeout: Duration,
}

impl Meili {
    pub fn new(config: &basalt_core::config::SearchConfig) -> anyhow::Result<Self> {
        let client = if config.meilisearch_url.is_empty() {
            None
        } else {
            let key = config.meilisearch_key.expose();
            let key = (!key.is_empty()).then_some(key);
            Some(Client::new_with_client(
                &config.meilisearch_url,
                key,
                Http::new(key)?,
            ))
        };
        Ok(Meili {
            client,
            task_timeout: Duration::from_secs(config.task_timeout_secs),
        })
    }
}

impl crate::state::AppState {
    pub fn meili(&self) -> &std::sync::Arc<Meili> {
        self.services.get()
    }
}

pub fn unavailable(error: impl std::fmt::Display) -> HttpError {
    ApiError::new(ErrorCode::SearchUnavailable)
        .with_details(error.to_string())
        .into()
}

pub fn client(state: &AppState) -> Result<&Client, HttpError> {
    state
        .meili()
        .client
        .as_ref()
        .ok_or_else(|| unavailable("search.meilisearch_url is not set on this server"))
}

fn not_found(error: &Error) -> bool {
    matches!(error, Error::Meilisearch(e) if matches!(e.error_code, MeiliCode::IndexNotFound | MeiliCode::DocumentNotFound))
}

/// Waits for a task; a failed or unfinished one is an error with its reason.
pub async fn finish(client: &Client, task: TaskInfo, timeout: Duration) -> Result<(), String> {
    match task
        .wait_for_completion(client, Some(Duration::from_millis(25)), Some(timeout))
        .await
    {
        Ok(Task::Succeeded { .. }) => Ok(()),
        Ok(task @ Task::Failed { .. }) => {
            let error = task.unwrap_failure();
            Err(format!(
                "Meilisearch task failed: {} ({:?})",
                error.error_message, error.error_code
            ))
        }
        Ok(_) => Err("Meilisearch task did not finish".into()),
        Err(error) => Err(format!("Meilisearch: {error}")),
    }
}

/// The columns any policy's condition on the index's table uses (made
/// filterable, so every caller's search can be narrowed), refusing a
/// condition that has no Meilisearch form.
pub fn check_policies(
    state: &AppState,
    schema: &str,
    table: &str,
) -> Result<Vec<String>, HttpError> {
    let object = format!("table:{schema}.{table}");
    let someone = Variables {
        uid: Some("00000000-0000-0000-0000-000000000000"),
        role: "authenticated",
        claims: &Value::Null,
    };
    let mut columns = Vec::new();
    for policy in state.authz().policies_on(&object, "select") {
        let Some(condition) = &policy.parsed else {
            continue;
        };
        if let Err(error) = rules::filter(condition, &someone) {
            return Err(SearchError::index(
                "backend",
                format!(
                    "policy {} on {object} ({}) cannot be a Meilisearch filter: {error}",
                    policy.id,
                    policy.condition.as_deref().unwrap_or_default()
                ),
            )
            .into());
        }
        for column in columns_of(condition) {
            if !columns.contains(&column) {
                columns.push(column);
            }
        }
    }
    Ok(columns)
}

/// The settings of `def`, with the columns its table's policies need.
pub fn settings(state: &AppState, def: &IndexDef) -> Result<Settings, String> {
    let (schema, table) = def.table_name(&state.config.rest.schema);
    let columns = check_policies(state, schema, table).map_err(|e| e.to_string())?;
    serde_json::from_value(rules::settings(def, &columns)).map_err(|e| e.to_string())
}

/// One search on Meilisearch, in the shape of the PostgreSQL backend's.
pub async fn search(
    state: &AppState,
    index: &Index,
    access: &Access,
    query: &SearchQuery,
    caller: &Variables<'_>,
) -> Result<Value, HttpError> {
    let client = client(state)?;
    let mut filters = Vec::new();
    if let Some(condition) = &access.condition {
        filters.push(format!("({})", rules::filter(condition, caller)?));
    }
    if let Some(filter) = &query.filter {
        filters.push(format!("({})", rules::filter(filter, caller)?));
    }
    let filter = filters.join(" AND ");
    let meili_index = client.index(&index.def.name);
    let mut search = meili_index.search();
    let searched: Vec<&str> = access.searched.iter().map(|(c, _)| c.as_str()).collect();
    let mut retrieved: Vec<&str> = access.returned.iter().map(String::as_str).collect();
    for key in &access.key {
        if !retrieved.contains(&key.as_str()) {
            retrieved.push(key);
        }
    }
    let sort: Vec<String> = query
        .sort
        .iter()
        .map(|(c, desc)| format!("{c}:{}", if *desc { "desc" } else { "asc" }))
        .collect();
    let sort: Vec<&str> = sort.iter().map(String::as_str).collect();
    let facets: Vec<&str> = query.facets.iter().map(String::as_str).collect();
    let highlight: Vec<&str> = query.highlight.iter().map(String::as_str).collect();
    search
        .with_query(&query.q)
        .with_limit(query.limit as usize)
        .with_offset(query.offset as usize)
        .with_show_ranking_score(true)
        .with_attributes_to_search_on(&searched)
        .with_attributes_to_retrieve(Selectors::Some(&retrieved));
    if !filter.is_empty() {
        search.with_filter(&filter);
    }
    if !sort.is_empty() {
        search.with_sort(&sort);
    }
    if !facets.is_empty() {
        search.with_facets(Selectors::Some(&facets));
    }
    if !highlight.is_empty() {
        search
            .with_attributes_to_highlight(Selectors::Some(&highlight))
            .with_highlight_pre_tag(&query.pre_tag)
            .with_highlight_post_tag(&query.post_tag);
    }
    let results: SearchResults<Map<String, Value>> = search.execute().await.map_err(unavailable)?;
    let hits: Vec<Value> = results
        .hits
        .into_iter()
        .map(|hit| {
            let id = match access.key.as_slice() {
                [one] => hit.result.get(one).cloned().unwrap_or(Value::Null),
                many => Value::Array(
                    many.iter()
                        .map(|k| hit.result.get(k).cloned().unwrap_or(Value::Null))
                        .collect(),
                ),
            };
            let document: Map<String, Value> = access
                .returned
                .iter()
                .map(|c| (c.clone(), hit.result.get(c).cloned().unwrap_or(Value::Null)))
                .collect();
            let highlights: Map<String, Value> = query
                .highlight
                .iter()
                .map(|c| {
                    let marked = hit
                        .formatted_result
                        .as_ref()
                        .and_then(|f| f.get(c).cloned())
                        .unwrap_or(Value::Null);
                    let text = match marked {
                        Value::String(text) => Value::String(text),
                        Value::Null => Value::String(String::new()),
                        other => Value::String(other.to_string()),
                    };
                    (c.clone(), text)
                })
                .collect();
            json!({"id": id, "document": document, "rank": hit.ranking_score, "highlights": highlights})
        })
        .collect();
    let facets: Map<String, Value> = query
        .facets
        .iter()
        .map(|facet| {
            let mut counts: Vec<(String, usize)> = results
                .facet_distribution
                .as_ref()
                .and_then(|d| d.get(facet))
                .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default();
            counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let object: Map<String, Value> =
                counts.into_iter().map(|(k, v)| (k, json!(v))).collect();
            (facet.clone(), Value::Object(object))
        })
        .collect();
    Ok(json!({
        "hits": hits,
        "estimatedTotalHits": results.estimated_total_hits.unwrap_or(0),
        "facetDistribution": facets,
    }))
}

/// Deletes the index and its leftover rebuild (absent ones are fine).
pub async fn delete_index(state: &AppState, name: &str) -> Result<(), HttpError> {
    let client = client(state)?;
    let timeout = state.meili().task_timeout;
    for uid in [name.to_owned(), super::sync::shadow(name)] {
        match client.get_index(&uid).await {
            Ok(_) => {}
            Err(error) if not_found(&error) => continue,
            Err(error) => return Err(unavailable(error)),
        }
        match client.delete_index(&uid).await {
            Ok(task) => finish(client, task, timeout).await.map_err(unavailable)?,
            Err(error) if not_found(&error) => {}
            Err(error) => return Err(unavailable(error)),
        }
    }
    Ok(())
}

/// Documents in the index (an error as text, for the status).
pub async fn document_count(state: &AppState, name: &str) -> Result<i64, String> {
    let client = client(state).map_err(|e| e.to_string())?;
    match client.index(name).get_stats().await {
        Ok(stats) => Ok(stats.number_of_documents as i64),
        Err(error) if not_found(&error) => Ok(0),
        Err(error) => Err(format!("Meilisearch: {error}")),
    }
}

/// Rows sampled by the drift check.
const DRIFT_SAMPLE: i64 = 50;

/// Counts (table rows, documents) and a sample of rows compared with their
/// documents (missing or different ones listed by key).
pub async fn drift(state: &AppState, index: &Index) -> Result<Value, HttpError> {
    let client = client(state)?;
    let (table, key) = super::table_and_key(state, index).await?;
    let table = table.qualified();
    let db = state.pool.get().await?;
    let rows: i64 = db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get(0);
    let documents = client
        .index(&index.def.name)
        .get_stats()
        .await
        .map_err(unavailable)?
        .number_of_documents as i64;
    let sample = db
        .query(
            &format!("SELECT to_jsonb(t) FROM {table} t ORDER BY random() LIMIT {DRIFT_SAMPLE}"),
            &[],
        )
        .await?;
    let mut mismatched = Vec::new();
    for row in &sample {
        let Value::Object(row) = row.get::<_, Value>(0) else {
            continue;
        };
        let Ok(Value::Object(expected)) = rules::document(&row, &key) else {
            continue;
        };
        let id = expected[ID].as_str().unwrap_or_default().to_owned();
        let found = match client
            .index(&index.def.name)
            .get_document::<Value>(&id)
            .await
        {
            Ok(found) => Some(found),
            Err(error) if not_found(&error) => None,
            Err(error) => return Err(unavailable(error)),
        };
        if found.as_ref() != Some(&Value::Object(expected)) {
            let key: Vec<Value> = key
                .iter()
                .map(|k| row.get(k).cloned().unwrap_or(Value::Null))
                .collect();
            mismatched.push(json!(key));
        }
    }
    Ok(json!({
        "drift": rows != documents || !mismatched.is_empty(),
        "table_rows": rows,
        "documents": documents,
        "sampled": sample.len(),
        "mismatched": mismatched,
    }))
}
