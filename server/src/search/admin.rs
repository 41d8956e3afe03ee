//! `/admin/v1/search/indexes`: create, describe (with status), change,
//! delete, reindex and check for drift. Every change runs in one
//! transaction on Basalt's pool that records the index, makes its
//! PostgreSQL objects (text search configuration, GIN indexes), enables its
//! table's change capture, audits and announces it (`NOTIFY basalt_search`).
//! Indexes declared in the config file go through the same path and are
//! then refused to the API (`declared_in_config`).

use super::{meili, postgres, Index};
use crate::audit::{self, Actor};
use crate::authz::{Admin, SearchRead, SearchWrite};
use crate::error::HttpError;
use crate::http::resource;
use crate::http::security::request_ip;
use crate::rest;
use crate::state::AppState;
use actix_web::web::{self, Data, Json, Path};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::search::{IndexDef, SearchError};
use serde_json::{json, Value};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/admin/v1/search/indexes")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            resource("/admin/v1/search/indexes/{name}")
                .route(web::get().to(show))
                .route(web::patch().to(change))
                .route(web::delete().to(delete)),
        )
        .service(resource("/admin/v1/search/indexes/{name}/reindex").route(web::post().to(reindex)))
        .service(resource("/admin/v1/search/indexes/{name}/drift").route(web::post().to(drift)));
}

/// The consumer name of an index's sync worker in `basalt.feed_consumers`.
pub fn consumer(name: &str) -> String {
    format!("search:{name}")
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Create,
    Change,
    Declare,
}

fn actor<'a>(
    state: &AppState,
    request: &HttpRequest,
    caller: &'a crate::identity::Caller,
) -> Actor<'a> {
    Actor {
        id: caller.user.map(|(user, _)| user),
        role: &caller.role,
        ip: request_ip(request, &state.trusted_proxies),
    }
}

fn invalid(field: &str, problem: String) -> HttpError {
    SearchError::index(field, problem).into()
}

/// Ends a change: audits it (when an actor made it), announces it to every
/// replica (`NOTIFY basalt_search`), commits, and reloads this replica's
/// registry.
async fn commit_change(
    state: &AppState,
    tx: deadpool_postgres::Transaction<'_>,
    name: &str,
    audited: Option<(&str, Actor<'_>)>,
) -> Result<(), HttpError> {
    if let Some((event, actor)) = audited {
        audit::audit(&tx, event, actor, None, json!({"index": name})).await?;
    }
    tx.execute("SELECT pg_notify($1, $2)", &[&super::CHANNEL, &name])
        .await?;
    tx.commit().await?;
    state
        .search()
        .reload(&state.pool)
        .await
        .map_err(crate::error::database_unavailable)
}

/// Records `def` and makes what it needs; answers whether it changed.
async fn save(
    state: &AppState,
    def: &IndexDef,
    mode: Mode,
    actor: Option<Actor<'_>>,
) -> Result<bool, HttpError> {
    def.check()?;
    if def.is_meilisearch() && state.config.search.meilisearch_url.is_empty() {
        return Err(invalid(
            "backend",
            "this server has no Meilisearch (search.meilisearch_url is empty)".into(),
        ));
    }
    let (schema, name) = def.table_name(&state.config.rest.schema);
    if !state.schema().names().iter().any(|s| s == schema) {
        return Err(invalid(
            "table",
            format!("`{schema}` is not an exposed schema (rest.schema, rest.extra_schemas)"),
        ));
    }
    let (_, table) = rest::table_of(state, schema, name, true).await?;
    def.check_columns(&table.columns, &table.primary_key)?;
    if def.is_meilisearch() {
        meili::check_policies(state, schema, name)?;
    }
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let existing = tx
        .query_opt(
            "SELECT definition, declared FROM basalt.search_indexes WHERE name = $1 FOR UPDATE",
            &[&def.name],
        )
        .await?;
    let old: Option<IndexDef> = match (&existing, mode) {
        (Some(_), Mode::Create) => {
            return Err(ApiError::new(ErrorCode::AlreadyExists)
                .with_details(format!("index {}", def.name))
                .into())
        }
        (None, Mode::Change) => return Err(not_found(&def.name)),
        (Some(row), Mode::Change) if row.get::<_, bool>(1) => return Err(declared()),
        (Some(row), _) => serde_json::from_value(row.get(0)).ok(),
        (None, _) => None,
    };
    let setup = postgres::prepare(&tx, def).await?;
    let view = postgres::is_view(&tx, schema, name).await?;
    if view && def.is_meilisearch() {
        return Err(invalid(
            "table",
            format!("`{schema}.{name}` is a view, whose changes are not in the change feed: index its table, or use the postgres backend"),
        ));
    }
    // An unchanged declaration (a restart) keeps what it has.
    let changed = old.as_ref() != Some(def);
    if changed {
        if let Some(old) = old.as_ref().filter(|old| !old.is_meilisearch()) {
            postgres::remove(&tx, old, old.table_name(&state.config.rest.schema).0).await?;
        }
    }
    let documents = !view && !def.is_meilisearch();
    if !view {
        if documents && changed {
            postgres::build(&tx, &state.config, def, &setup, &table).await?;
        }
        tx.batch_execute(&crate::feed::enable_sql(schema, name))
            .await?;
    }
    let (new_state, reason) = match (def.is_meilisearch(), &old) {
        (true, None) => ("building", "created"),
        (true, Some(_)) => ("building", "changed"),
        (false, _) => ("ready", "created"),
    };
    tx.execute(
        "INSERT INTO basalt.search_indexes (name, definition, declared, text_config, trgm_schema, state, rebuild_reason, documents)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $9)
         ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition, declared = EXCLUDED.declared,
            text_config = EXCLUDED.text_config, trgm_schema = EXCLUDED.trgm_schema, documents = EXCLUDED.documents,
            state = CASE WHEN $8 THEN EXCLUDED.state ELSE basalt.search_indexes.state END,
            rebuild_reason = CASE WHEN $8 THEN EXCLUDED.rebuild_reason ELSE basalt.search_indexes.rebuild_reason END,
            last_error = CASE WHEN $8 THEN NULL ELSE basalt.search_indexes.last_error END,
            updated_at = now()",
        &[
            &def.name,
            &serde_json::to_value(def).expect("a declaration serializes"),
            &(mode == Mode::Declare),
            &setup.config,
            &setup.trgm_schema,
            &new_state,
            &reason,
            &changed,
            &documents,
        ],
    )
    .await?;
    let event = if old.is_some() {
        "search_index_changed"
    } else {
        "search_index_created"
    };
    commit_change(state, tx, &def.name, actor.map(|actor| (event, actor))).await?;
    if old.as_ref().is_some_and(|o| o.is_meilisearch()) && !def.is_meilisearch() {
        if let Err(error) = meili::delete_index(state, &def.name).await {
            tracing::warn!(index = %def.name, "cannot delete the Meilisearch index: {error}");
        }
    }
    Ok(changed)
}

/// An index the config file declares: created or updated, marked declared.
pub async fn apply_declared(state: &AppState, def: &IndexDef) -> Result<(), HttpError> {
    save(state, def, Mode::Declare, None).await.map(|_| ())
}

fn not_found(name: &str) -> HttpError {
    ApiError::new(ErrorCode::SearchIndexNotFound)
        .with_details(format!("no index `{name}`"))
        .into()
}

fn declared() -> HttpError {
    ApiError::new(ErrorCode::DeclaredInConfig)
        .with_hint("Change it in [[search.indexes]] of the config file and restart.")
        .into()
}

async fn create(
    admin: Admin<SearchWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    body: Json<IndexDef>,
) -> Result<HttpResponse, HttpError> {
    let actor = actor(&state, &request, &admin.caller);
    save(&state, &body, Mode::Create, Some(actor)).await?;
    let index = super::index(&state, &body.name)?;
    Ok(HttpResponse::Created().json(describe(&state, &index).await?))
}

/// `PATCH`: the fields sent replace the index's (`name` cannot change).
async fn change(
    admin: Admin<SearchWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: Json<Value>,
) -> Result<HttpResponse, HttpError> {
    let index = super::index(&state, &path)?;
    if index.declared {
        return Err(declared());
    }
    let Some(fields) = body.as_object() else {
        return Err(invalid(
            "body",
            "send a JSON object of the fields to change".into(),
        ));
    };
    let mut merged = serde_json::to_value(&index.def).expect("a declaration serializes");
    for (key, value) in fields {
        merged[key] = value.clone();
    }
    let def: IndexDef =
        serde_json::from_value(merged).map_err(|error| invalid("body", error.to_string()))?;
    if def.name != index.def.name {
        return Err(invalid(
            "name",
            "an index cannot be renamed: create another".into(),
        ));
    }
    let actor = actor(&state, &request, &admin.caller);
    save(&state, &def, Mode::Change, Some(actor)).await?;
    let index = super::index(&state, &def.name)?;
    Ok(HttpResponse::Ok().json(describe(&state, &index).await?))
}

async fn delete(
    admin: Admin<SearchWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let index = super::index(&state, &path)?;
    if index.declared {
        return Err(declared());
    }
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    if !index.def.is_meilisearch() {
        let (schema, _) = index.def.table_name(&state.config.rest.schema);
        postgres::remove(&tx, &index.def, schema).await?;
    }
    tx.execute(
        "DELETE FROM basalt.search_indexes WHERE name = $1",
        &[&index.def.name],
    )
    .await?;
    tx.execute(
        "DELETE FROM basalt.feed_consumers WHERE name = $1",
        &[&consumer(&index.def.name)],
    )
    .await?;
    let actor = actor(&state, &request, &admin.caller);
    commit_change(
        &state,
        tx,
        &index.def.name,
        Some(("search_index_deleted", actor)),
    )
    .await?;
    if index.def.is_meilisearch() {
        meili::delete_index(&state, &index.def.name).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

async fn list(_: Admin<SearchRead>, state: Data<AppState>) -> Result<HttpResponse, HttpError> {
    let mut out = Vec::new();
    for index in state.search().all().values() {
        out.push(describe(&state, index).await?);
    }
    Ok(HttpResponse::Ok().json(out))
}

async fn show(
    _: Admin<SearchRead>,
    state: Data<AppState>,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let index = super::index(&state, &path)?;
    Ok(HttpResponse::Ok().json(describe(&state, &index).await?))
}

/// Rebuilds the index from its table: the PostgreSQL backend's GIN indexes
/// are rebuilt now; a Meilisearch index is rebuilt by the sync worker into
/// a shadow index swapped in when complete (searches go on meanwhile).
async fn reindex(
    admin: Admin<SearchWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let index = super::index(&state, &path)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    if index.def.is_meilisearch() {
        tx.execute(
            "UPDATE basalt.search_indexes SET state = 'building', rebuild_reason = 'requested', updated_at = now() WHERE name = $1",
            &[&index.def.name],
        )
        .await?;
    } else {
        if index.documents {
            let (table, _) = super::table_and_key(&state, &index).await?;
            postgres::remove(&tx, &index.def, &table.schema).await?;
            postgres::build(&tx, &state.config, &index.def, &index.setup, &table).await?;
        }
        tx.execute(
            "UPDATE basalt.search_indexes SET rebuilt_at = now(), rebuild_reason = 'requested', last_error = NULL, updated_at = now() WHERE name = $1",
            &[&index.def.name],
        )
        .await?;
    }
    let actor = actor(&state, &request, &admin.caller);
    commit_change(
        &state,
        tx,
        &index.def.name,
        Some(("search_index_reindexed", actor)),
    )
    .await?;
    let status = if index.def.is_meilisearch() {
        actix_web::http::StatusCode::ACCEPTED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(describe(&state, &index).await?))
}

/// Compares the index with its table: counts, and a sample of documents.
async fn drift(
    _: Admin<SearchRead>,
    state: Data<AppState>,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let index = super::index(&state, &path)?;
    if !index.def.is_meilisearch() {
        return Ok(HttpResponse::Ok().json(json!({
            "drift": false,
            "reason": "the postgres backend searches the table itself",
        })));
    }
    Ok(HttpResponse::Ok().json(meili::drift(&state, &index).await?))
}

/// The declaration, where it comes from, and its status.
async fn describe(state: &AppState, index: &Index) -> Result<Value, HttpError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT state, last_error, to_jsonb(rebuilt_at) #>> '{}', rebuild_reason,
                    to_jsonb(created_at) #>> '{}', to_jsonb(updated_at) #>> '{}',
                    (SELECT position FROM basalt.feed_consumers WHERE name = $2)
             FROM basalt.search_indexes WHERE name = $1",
            &[&index.def.name, &consumer(&index.def.name)],
        )
        .await?
        .ok_or_else(|| not_found(&index.def.name))?;
    let mut last_error: Option<String> = row.get(1);
    let (documents, exact, lag) = if index.def.is_meilisearch() {
        let documents = match meili::document_count(state, &index.def.name).await {
            Ok(count) => Some(count),
            Err(error) => {
                last_error.get_or_insert(error);
                None
            }
        };
        let cursor: Option<i64> = row.get(6);
        let head = crate::feed::head(&client).await?;
        (documents, true, cursor.map(|c| (head - c).max(0)))
    } else {
        let (schema, table) = index.def.table_name(&state.config.rest.schema);
        let (count, exact) = postgres::documents(&client, schema, table).await?;
        (Some(count), exact, Some(0))
    };
    let mut out = serde_json::to_value(&index.def).expect("a declaration serializes");
    out["declared"] = json!(index.declared);
    out["status"] = json!({
        "state": row.get::<_, String>(0),
        "documents": documents,
        "documents_exact": exact,
        "lag": lag,
        "last_error": last_error,
        "rebuilt_at": row.get::<_, Option<String>>(2),
        "rebuild_reason": row.get::<_, Option<String>>(3),
        "created_at": row.get::<_, String>(4),
        "updated_at": row.get::<_, String>(5),
    });
    Ok(out)
}
