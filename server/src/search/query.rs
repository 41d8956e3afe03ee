//! `GET`/`POST /search/v1/<index>`: decide `search` on `index:<name>` (before
//! the lookup) → parse the request → find the table and decide `select` on it with every
//! column the search touches (what it returns, searches, filters, sorts,
//! counts and marks), so a column the caller may not read is never
//! searched: a term found only there cannot produce a hit → run it on the
//! index's backend with the caller's row condition inside → one JSON shape
//! for both backends.

use super::Index;
use crate::authz::routes::subject_of;
use crate::error::HttpError;
use crate::identity::Caller;
use crate::rest::{self, tx, Reply, Step};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::web::{Data, Json, Path};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::filter::Expr;
use basalt_core::search::pg::{search_sql, Scoped};
use basalt_core::search::{touched_columns, SearchError, SearchQuery};
use serde_json::{json, Value};
use std::time::Instant;

pub async fn get(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let started = Instant::now();
    let index = allowed(&state, &caller, &path)?;
    let query = SearchQuery::from_pairs(&rest::query_pairs(&request), &index.def)?;
    search(&state, &caller, &index, query, started).await
}

pub async fn post(
    caller: Caller,
    state: Data<AppState>,
    path: Path<String>,
    body: Json<Value>,
) -> Result<HttpResponse, HttpError> {
    let started = Instant::now();
    let index = allowed(&state, &caller, &path)?;
    let query = SearchQuery::from_json(&body, &index.def)?;
    search(&state, &caller, &index, query, started).await
}

/// `search` decided on `index:<name>` before the index is looked up, so a
/// caller who may not search learns nothing of which indexes exist; then
/// the index.
fn allowed(state: &AppState, caller: &Caller, name: &str) -> Result<Index, HttpError> {
    let decision = state.authz().authorize(
        &subject_of(state, caller),
        &format!("index:{name}"),
        "search",
    );
    if !decision.allowed {
        return Err(rest::refusal(
            caller,
            decision.reason,
            format!("A policy must allow search on index:{name}, and select on its table."),
        ));
    }
    super::index(state, name)
}

/// What a search may see: the table, its key, the columns returned and
/// searched, and the caller's row condition for all the columns it touches.
pub struct Access {
    pub object: String,
    pub table: basalt_core::rest::Table,
    pub key: Vec<String>,
    pub returned: Vec<String>,
    pub searched: Vec<(String, char)>,
    pub condition: Option<Expr>,
}

/// Decides a search of an index the caller may search: `select` on its table.
pub async fn decide(
    state: &AppState,
    caller: &Caller,
    index: &Index,
    query: &SearchQuery,
) -> Result<Access, HttpError> {
    let def = &index.def;
    let subject = subject_of(state, caller);
    let (schema, name) = def.table_name(&state.config.rest.schema);
    if !state.schema().names().iter().any(|s| s == schema) {
        return Err(ApiError::new(ErrorCode::TableNotFound)
            .with_details(format!("{schema}.{name} is no longer in an exposed schema"))
            .into());
    }
    let (_, table) = rest::table_of(state, schema, name, false).await?;
    let object = format!("table:{schema}.{name}");
    let broad = state.authz().authorize(&subject, &object, "select");
    if !broad.allowed {
        return Err(rest::refusal(
            caller,
            broad.reason,
            format!("A policy must allow select on {object}."),
        ));
    }
    let all = table.column_names();
    let readable: Vec<String> = match broad.columns {
        None => all.clone(),
        Some(columns) => all
            .iter()
            .filter(|c| columns.contains(c))
            .cloned()
            .collect(),
    };
    let returned = match &query.select {
        None => readable.clone(),
        Some(asked) => {
            if let Some(unknown) = asked.iter().find(|c| !all.contains(c)) {
                return Err(SearchError::request(
                    "select",
                    format!("{object} has no column `{unknown}`"),
                )
                .into());
            }
            asked.clone()
        }
    };
    let searched: Vec<(String, char)> = def
        .weighted()
        .into_iter()
        .filter(|(column, _)| match &query.on {
            Some(on) => on.contains(column),
            None => readable.contains(column),
        })
        .collect();
    if searched.is_empty() {
        return Err(rest::refusal(
            caller,
            format!(
                "you may read none of the searchable columns of index {}",
                def.name
            ),
            "A policy must allow select on at least one searchable column.".into(),
        ));
    }
    let key = def.key(&table.primary_key);
    let names: Vec<String> = searched.iter().map(|(c, _)| c.clone()).collect();
    let mut touched = touched_columns(query, &returned, &names);
    for column in &key {
        if !touched.contains(column) {
            touched.push(column.clone());
        }
    }
    let decision = rest::decide(state, caller, &object, "select", &touched)?;
    Ok(Access {
        object,
        table,
        key,
        returned,
        searched,
        condition: decision.condition,
    })
}

async fn search(
    state: &AppState,
    caller: &Caller,
    index: &Index,
    query: SearchQuery,
    started: Instant,
) -> Result<HttpResponse, HttpError> {
    let access = decide(state, caller, index, &query).await?;
    let uid = rest::uid_of(caller);
    let variables = rest::variables(caller, &uid);
    let mut body = if index.def.is_meilisearch() {
        super::meili::search(state, index, &access, &query, &variables).await?
    } else {
        let step = search_sql(
            &Scoped {
                def: &index.def,
                table: &access.table,
                key: &access.key,
                returned: &access.returned,
                searched: &access.searched,
                condition: access.condition.as_ref(),
                documents: index.documents && access.searched.len() == index.def.searchable.len(),
            },
            &index.setup,
            &query,
            &variables,
        )?;
        let reply = tx::read(
            state,
            caller,
            vec![Step::new(step, &access.object)],
            |rows| Ok(Reply::json(StatusCode::OK, rows[0].get::<_, String>(0))),
        )
        .await?;
        serde_json::from_str(reply.body.as_deref().unwrap_or("{}")).map_err(|error| {
            HttpError::from(ApiError::new(ErrorCode::InternalError).with_details(error.to_string()))
        })?
    };
    body["query"] = json!(query.q);
    body["limit"] = json!(query.limit);
    body["offset"] = json!(query.offset);
    body["processingTimeMs"] = json!(started.elapsed().as_millis() as u64);
    body["backend"] = json!(index.def.backend);
    Ok(HttpResponse::Ok().json(body))
}
