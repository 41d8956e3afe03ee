//! Schema management (`/admin/v1/tables`): create, alter and drop tables,
//! create indexes and foreign keys. Each change runs in one transaction with
//! its record in `basalt.app_migrations` (numbered, with the SQL that ran)
//! and an audit entry; the schema cache is reloaded before the answer, and
//! the event trigger tells the other replicas.

use crate::audit::{self, Actor};
use crate::authz::{Admin, RealtimeRead, SchemaRead, SchemaWrite};
use crate::error::{database_unavailable, HttpError};
use crate::http::resource;
use crate::http::security::request_ip;
use crate::state::AppState;
use actix_web::web::{self, Data, Json, Path, Query};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::rest::ddl::{self, AlterTable, CreateForeignKey, CreateIndex, CreateTable};
use basalt_core::rest::Table;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/admin/v1/tables")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            resource("/admin/v1/tables/{name}")
                .route(web::get().to(show))
                .route(web::patch().to(alter))
                .route(web::delete().to(drop_table)),
        )
        .service(resource("/admin/v1/tables/{name}/indexes").route(web::post().to(index)))
        .service(
            resource("/admin/v1/tables/{name}/foreign_keys").route(web::post().to(foreign_key)),
        )
        .service(
            resource("/admin/v1/tables/{name}/realtime")
                .route(web::post().to(enable_realtime))
                .route(web::delete().to(disable_realtime)),
        )
        .service(resource("/admin/v1/realtime/tables").route(web::get().to(realtime_tables)))
        .service(resource("/admin/v1/changes").route(web::get().to(changes)))
        .service(resource("/admin/v1/migrations").route(web::get().to(migrations)));
}

/// A table as the schema cache knows it, with its foreign keys.
fn describe(state: &AppState, name: &str) -> Option<Value> {
    let schema = state.schema().get();
    let table = schema.tables.get(name)?;
    let foreign_keys: Vec<Value> = schema
        .foreign_keys
        .iter()
        .filter(|fk| fk.table == name)
        .map(|fk| {
            json!({"name": fk.name, "columns": fk.columns,
                   "references": {"table": fk.foreign_table, "columns": fk.foreign_columns}})
        })
        .collect();
    Some(json!({
        "name": table.name,
        "columns": table.columns.iter().map(|(column, type_name)| json!({
            "name": column, "type": type_name, "default": table.defaults.get(column),
        })).collect::<Vec<_>>(),
        "primary_key": table.primary_key,
        "foreign_keys": foreign_keys,
    }))
}

/// The table in the default schema (reloading the cache once if it is new).
async fn known(state: &AppState, name: &str) -> Result<Table, HttpError> {
    let default = state.schema().names()[0].clone();
    let schema =
        crate::rest::snapshot(state, &default, |schema| schema.tables.contains_key(name)).await;
    schema.tables.get(name).cloned().ok_or_else(|| {
        ApiError::new(ErrorCode::TableNotFound)
            .with_details(format!("{}.{name}", state.config.rest.schema))
            .into()
    })
}

/// DDL errors: the admin's input, worded by PostgreSQL.
fn ddl_failed(error: tokio_postgres::Error) -> HttpError {
    let Some(db) = error.as_db_error() else {
        return HttpError::from(error);
    };
    let code = db.code().code();
    let api = match code {
        "42P07" | "42701" | "42710" => ApiError::new(ErrorCode::AlreadyExists),
        "42P01" => ApiError::new(ErrorCode::TableNotFound),
        _ if code.starts_with("42")
            || code.starts_with("22")
            || code.starts_with("23")
            || code == "2BP01" =>
        {
            ApiError::new(ErrorCode::ValidationFailed)
        }
        _ => return HttpError::from(error),
    };
    api.with_details(db.message().to_owned()).into()
}

/// Runs `statements` with their migration record and audit entry in one
/// transaction, then reloads the schema cache.
async fn apply(
    state: &AppState,
    caller: &crate::identity::Caller,
    request: &HttpRequest,
    name: String,
    statements: Vec<String>,
) -> Result<Value, HttpError> {
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    for statement in &statements {
        transaction
            .batch_execute(statement)
            .await
            .map_err(ddl_failed)?;
    }
    let sql = format!("{};\n", statements.join(";\n"));
    let applied_by = match caller.user {
        Some((user, _)) => format!("user:{user}"),
        None => format!("role:{}", caller.role),
    };
    let version: i32 = transaction
        .query_one(
            "INSERT INTO basalt.app_migrations (name, statements, applied_by) VALUES ($1, $2, $3) RETURNING version",
            &[&name, &sql, &applied_by],
        )
        .await
        ?
        .get(0);
    let actor = Actor {
        id: caller.user.map(|(user, _)| user),
        role: &caller.role,
        ip: request_ip(request, &state.trusted_proxies),
    };
    audit::audit(
        &transaction,
        "schema_changed",
        actor,
        None,
        json!({"version": version, "name": name}),
    )
    .await?;
    // Replicas without the event trigger (no superuser) still hear of it.
    transaction
        .execute("SELECT pg_notify('basalt_schema', '')", &[])
        .await?;
    transaction.commit().await?;
    state
        .schema()
        .reload(&state.pool)
        .await
        .map_err(database_unavailable)?;
    Ok(json!({"version": version, "name": name, "sql": sql}))
}

async fn list(_: Admin<SchemaRead>, state: Data<AppState>) -> HttpResponse {
    let names: Vec<String> = state.schema().get().tables.keys().cloned().collect();
    let tables: Vec<Value> = names
        .iter()
        .filter_map(|name| describe(&state, name))
        .collect();
    HttpResponse::Ok().json(json!({"schema": state.config.rest.schema, "tables": tables}))
}

async fn show(
    _: Admin<SchemaRead>,
    state: Data<AppState>,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    known(&state, &path).await?;
    Ok(HttpResponse::Ok().json(describe(&state, &path)))
}

async fn create(
    admin: Admin<SchemaWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    body: Json<CreateTable>,
) -> Result<HttpResponse, HttpError> {
    let statements = ddl::create_table_sql(&state.config.rest.schema, &body)?;
    let mut answer = apply(
        &state,
        &admin.caller,
        &request,
        format!("create table {}", body.name),
        statements,
    )
    .await?;
    answer["table"] = describe(&state, &body.name).unwrap_or_default();
    Ok(HttpResponse::Created().json(answer))
}

async fn alter(
    admin: Admin<SchemaWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: Json<AlterTable>,
) -> Result<HttpResponse, HttpError> {
    let table = known(&state, &path).await?;
    let statements = ddl::alter_table_sql(&table, &body)?;
    let mut answer = apply(
        &state,
        &admin.caller,
        &request,
        format!("alter table {}", table.name),
        statements,
    )
    .await?;
    let now = body.rename_to.clone().unwrap_or(table.name);
    answer["table"] = describe(&state, &now).unwrap_or_default();
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DropOptions {
    #[serde(default)]
    cascade: bool,
}

async fn drop_table(
    admin: Admin<SchemaWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    options: Query<DropOptions>,
) -> Result<HttpResponse, HttpError> {
    let table = known(&state, &path).await?;
    let answer = apply(
        &state,
        &admin.caller,
        &request,
        format!("drop table {}", table.name),
        vec![ddl::drop_table_sql(&table, options.cascade)],
    )
    .await?;
    Ok(HttpResponse::Ok().json(answer))
}

async fn index(
    admin: Admin<SchemaWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: Json<CreateIndex>,
) -> Result<HttpResponse, HttpError> {
    let table = known(&state, &path).await?;
    let statement = ddl::create_index_sql(&table, &body)?;
    let answer = apply(
        &state,
        &admin.caller,
        &request,
        format!("create index on {}", table.name),
        vec![statement],
    )
    .await?;
    Ok(HttpResponse::Created().json(answer))
}

async fn foreign_key(
    admin: Admin<SchemaWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: Json<CreateForeignKey>,
) -> Result<HttpResponse, HttpError> {
    let table = known(&state, &path).await?;
    let statement = ddl::create_foreign_key_sql(&table, &body)?;
    let mut answer = apply(
        &state,
        &admin.caller,
        &request,
        format!("add foreign key on {}", table.name),
        vec![statement],
    )
    .await?;
    answer["table"] = describe(&state, &table.name).unwrap_or_default();
    Ok(HttpResponse::Created().json(answer))
}

/// The app's schema history, oldest first.
async fn migrations(
    _: Admin<SchemaRead>,
    state: Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT version, name, statements, to_jsonb(applied_at) #>> '{}', applied_by
             FROM basalt.app_migrations ORDER BY version",
            &[],
        )
        .await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({"version": row.get::<_, i32>(0), "name": row.get::<_, String>(1),
                   "sql": row.get::<_, String>(2), "applied_at": row.get::<_, String>(3),
                   "applied_by": row.get::<_, String>(4)})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"migrations": list})))
}

/// `POST /admin/v1/tables/{name}/realtime` captures the table's changes
/// into the change feed (a trigger, recorded as a migration); `DELETE`
/// stops capturing them.
async fn enable_realtime(
    admin: Admin<SchemaWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    set_realtime(admin, state, request, path, true).await
}

async fn disable_realtime(
    admin: Admin<SchemaWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    set_realtime(admin, state, request, path, false).await
}

async fn set_realtime(
    admin: Admin<SchemaWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    enable: bool,
) -> Result<HttpResponse, HttpError> {
    let table = known(&state, &path).await?;
    let (name, statement) = if enable {
        (
            "enable",
            crate::feed::enable_sql(&table.schema, &table.name),
        )
    } else {
        (
            "disable",
            crate::feed::disable_sql(&table.schema, &table.name),
        )
    };
    let answer = apply(
        &state,
        &admin.caller,
        &request,
        format!("{name} realtime on {}", table.name),
        vec![statement],
    )
    .await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// `GET /admin/v1/realtime/tables`: the tables whose changes are captured.
async fn realtime_tables(
    _: Admin<SchemaRead>,
    state: Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let client = state.pool.get().await?;
    let tables: Vec<String> = crate::feed::enabled_tables(&client)
        .await?
        .into_iter()
        .map(|(schema, table)| format!("{schema}.{table}"))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "tables": tables })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedPage {
    #[serde(default)]
    after: i64,
    #[serde(default = "page_size")]
    limit: i64,
}

fn page_size() -> i64 {
    100
}

/// `GET /admin/v1/changes?after=<position>&limit=<n>`: the change feed in
/// commit order; `410 feed_gap` when changes after `after` were pruned.
async fn changes(
    _: Admin<RealtimeRead>,
    state: Data<AppState>,
    page: Query<FeedPage>,
) -> Result<HttpResponse, HttpError> {
    if !(1..=1000).contains(&page.limit) || page.after < 0 {
        return Err(ApiError::new(ErrorCode::ValidationFailed)
            .with_details("after: a position (0 or more); limit: 1 to 1000")
            .into());
    }
    let client = state.pool.get().await?;
    match crate::feed::read_after(&client, page.after, page.limit).await? {
        crate::feed::Page::Changes(changes) => {
            let next = changes.last().map_or(page.after, |c| c.position);
            Ok(HttpResponse::Ok().json(json!({ "changes": changes, "next": next })))
        }
        crate::feed::Page::Gap { pruned_through } => Err(ApiError::new(ErrorCode::FeedGap)
            .with_details(format!(
                "changes up to position {pruned_through} were pruned; {} is older",
                page.after
            ))
            .into()),
    }
}
