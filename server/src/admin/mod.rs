//! The admin API (`/admin/v1/`, service_role key only): the installation's
//! status and a SQL endpoint for the console's SQL editor.

mod tables;

use crate::authz::{Admin, SchemaWrite, SqlWrite, SystemRead};
use crate::db::{migrate, CancelOnDrop};
use crate::error::{database_unavailable, HttpError};
use crate::http::resource;
use crate::state::AppState;
use actix_web::web::{self, Data, Json};
use actix_web::HttpResponse;
use basalt_core::errors::{ApiError, ErrorCode};
use deadpool_postgres::Object;
use futures_util::{pin_mut, TryStreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::SimpleQueryMessage;

/// Rows returned by one `POST /admin/v1/sql` call, over all its statements.
pub const SQL_MAX_ROWS: usize = 10_000;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/admin/v1/status").route(web::get().to(status)))
        .service(resource("/admin/v1/sql").route(web::post().to(sql)))
        .service(resource("/admin/v1/schema/reload").route(web::post().to(reload_schema)))
        .service(resource("/admin/v1/storage/cleanup").route(web::post().to(storage_cleanup)))
        .configure(tables::routes);
}

/// Runs storage's cleanup task now (service_role only) and says what it removed.
async fn storage_cleanup(
    _: crate::identity::ServiceRole,
    state: Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let swept = crate::storage::cleanup::sweep(&state)
        .await
        .map_err(|error| {
            tracing::error!("storage cleanup: {error:#}");
            HttpError::from(basalt_core::errors::ErrorCode::StorageUnavailable)
        })?;
    Ok(HttpResponse::Ok().json(swept))
}

/// Reloads the data API's schema cache now (after DDL on a database where
/// the event trigger could not be installed); other replicas follow through
/// `NOTIFY basalt_schema`.
async fn reload_schema(
    _: Admin<SchemaWrite>,
    state: Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    state
        .schema()
        .reload(&state.pool)
        .await
        .map_err(database_unavailable)?;
    let client = state.pool.get().await?;
    client
        .execute("SELECT pg_notify('basalt_schema', '')", &[])
        .await?;
    let schema = state.schema().get();
    Ok(HttpResponse::Ok().json(json!({
        "schema": schema.name,
        "tables": schema.tables.len(),
        "functions": schema.functions.len(),
    })))
}

async fn status(_: Admin<SystemRead>, state: Data<AppState>) -> Result<HttpResponse, HttpError> {
    let mut client = state.pool.get().await?;
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), instance_id::text, to_jsonb(created_at) #>> '{}' FROM basalt.instance",
            &[],
        )
        .await
        ?;
    let applied = migrate::applied(&mut client)
        .await
        .map_err(database_unavailable)?;
    Ok(HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "instance_id": row.get::<_, String>(1),
        "created_at": row.get::<_, String>(2),
        "database": {
            "server_version": row.get::<_, String>(0),
            "embedded": state.embedded,
        },
        "migrations": applied,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    query: String,
}

/// Runs SQL text as PostgreSQL's simple query protocol does (several statements
/// allowed) and returns each statement's columns and rows as text.
///
/// The connection is taken out of the pool for good: whatever session state the
/// SQL leaves behind (`SET`, temporary tables, an open transaction) never
/// reaches another request.
async fn sql(
    _: Admin<SqlWrite>,
    state: Data<AppState>,
    body: Json<SqlRequest>,
) -> Result<HttpResponse, HttpError> {
    let client = Object::take(state.pool.get().await?);
    let mut cancel = CancelOnDrop::new(client.cancel_token(), state.tls.clone());
    let stream = client
        .simple_query_raw(&body.query)
        .await
        .map_err(statement_error)?;
    pin_mut!(stream);
    let mut results = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    let mut rows: Vec<Vec<Option<String>>> = Vec::new();
    let mut total_rows = 0;
    let mut truncated = false;
    while let Some(message) = stream.try_next().await.map_err(statement_error)? {
        match message {
            SimpleQueryMessage::RowDescription(description) => {
                columns = description.iter().map(|c| c.name().to_owned()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                total_rows += 1;
                if total_rows > SQL_MAX_ROWS {
                    truncated = true;
                    break;
                }
                rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                );
            }
            SimpleQueryMessage::CommandComplete(count) => {
                results.push(json!({
                    "columns": std::mem::take(&mut columns),
                    "rows": std::mem::take(&mut rows),
                    "row_count": count,
                }));
            }
            _ => {}
        }
    }
    if truncated {
        results.push(json!({"columns": columns, "rows": rows, "row_count": Value::Null}));
    } else {
        // Finished normally: nothing to cancel.
        cancel.disarm();
    }
    Ok(HttpResponse::Ok().json(json!({
        "results": results,
        "truncated": truncated,
        "max_rows": SQL_MAX_ROWS,
    })))
}

/// Maps a failed statement the caller wrote (admin SQL): the server's own error is the caller's to fix (400),
/// a broken connection is the database being unavailable (503).
fn statement_error(error: tokio_postgres::Error) -> HttpError {
    match error.as_db_error() {
        Some(db) => {
            let mut api = ApiError::new(ErrorCode::SqlError)
                .with_message(db.message().to_owned())
                .with_details(format!(
                    "SQLSTATE {}{}",
                    db.code().code(),
                    db.detail().map(|d| format!(": {d}")).unwrap_or_default()
                ));
            if let Some(hint) = db.hint() {
                api = api.with_hint(hint.to_owned());
            }
            api.into()
        }
        None => database_unavailable(error),
    }
}
