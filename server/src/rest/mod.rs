//! The data API under `/rest/v1/`: reads (`GET` with `select`, filters,
//! `order`, `limit`, `offset`, counts, single rows) and writes (`POST`,
//! `PATCH`, `DELETE`). Every request is decided by the policy engine with the
//! columns it touches; the row condition is compiled into the SQL, checked on
//! every written row (a write that leaves a row the caller could not read back
//! is rolled back), and the statement runs in a transaction as the caller's
//! database role with their JWT claims, so row-level security applies too.

use crate::auth::Caller;
use crate::authz::engine::Decision;
use crate::authz::routes::subject_of;
use crate::db::{self, rls, CancelOnDrop};
use crate::http::error::HttpError;
use crate::http::resource;
use crate::state::AppState;
use actix_web::web::{self, Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::filter::sql::{Caller as Variables, Param};
use basalt_core::filter::FilterError;
use basalt_core::rest::{
    body_columns, count_sql, delete_sql, insert_sql, parse_read, read_sql, update_sql, ReadQuery,
    Select, Table,
};
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        resource("/rest/v1/{table}")
            .route(web::get().to(read))
            // HEAD runs the same read (with its count) and sends only the headers.
            .route(web::head().to(read))
            .route(web::post().to(insert))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    );
}

fn invalid_query(error: FilterError) -> HttpError {
    let mut api = ApiError::new(ErrorCode::InvalidQuery).with_details(error.message);
    if let Some(hint) = error.hint {
        api = api.with_hint(hint);
    }
    api.into()
}

/// The table from the catalog, or a 404 naming the closest table.
async fn load_table(
    client: &impl GenericClient,
    schema: &str,
    name: &str,
    suggest: bool,
) -> Result<Table, HttpError> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
               AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&schema, &name],
        )
        .await
        .map_err(db::failed)?;
    if !rows.is_empty() {
        return Ok(Table {
            schema: schema.to_owned(),
            name: name.to_owned(),
            columns: rows.iter().map(|row| (row.get(0), row.get(1))).collect(),
        });
    }
    let names: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY 1",
            &[&schema],
        )
        .await
        .map_err(db::failed)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let close = basalt_core::config::suggestion(name, names.iter().map(String::as_str));
    // Only the service_role key learns the schema's other table names.
    let hint = match (suggest, close) {
        (true, Some(close)) => format!("Did you mean `{close}`?"),
        (true, None) => format!("The schema {schema} has: {}", names.join(", ")),
        (false, _) => "Check the table's name.".to_owned(),
    };
    Err(ApiError::new(ErrorCode::TableNotFound)
        .with_details(format!("{schema}.{name}"))
        .with_hint(hint)
        .into())
}

/// Errors PostgreSQL raises for the caller's input or privileges.
fn query_failed(error: tokio_postgres::Error, role: &str, table: &Table) -> HttpError {
    let Some(db) = error.as_db_error() else {
        return db::failed(error);
    };
    let code = db.code().code();
    let message = db.message().to_owned();
    match code {
        // PostgreSQL's own row-level security refused a written row.
        "42501" if message.contains("row-level security") => {
            ApiError::new(ErrorCode::RowViolatesPolicy)
                .with_details(message)
                .into()
        }
        "42501" => ApiError::new(ErrorCode::Forbidden)
            .with_details(format!(
                "the database role {role} lacks a privilege on {}.{}: {message}",
                table.schema, table.name
            ))
            .with_hint(format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {role}; (the ones it needs)",
                table.qualified()
            ))
            .into(),
        _ if code.starts_with("23") => ApiError::new(ErrorCode::ConstraintViolation)
            .with_details(message)
            .into(),
        _ if code.starts_with("22") => ApiError::new(ErrorCode::InvalidQuery)
            .with_details(message)
            .with_hint("A value does not fit its column's type.")
            .into(),
        // The operator does not apply to the column's type, an unknown text
        // search configuration, a malformed search query: the caller's input.
        _ if code.starts_with("42") => ApiError::new(ErrorCode::InvalidQuery)
            .with_details(message)
            .with_hint("Use an operator and value that suit the column's type.")
            .into(),
        _ => db::failed(error),
    }
}

type Values = Vec<Box<dyn ToSql + Sync + Send>>;

/// Parameters as the driver takes them: text, or arrays of text.
fn boxed(params: Vec<Param>) -> Values {
    params
        .into_iter()
        .map(|param| -> Box<dyn ToSql + Sync + Send> {
            match param {
                Param::Text(text) => Box::new(text),
                Param::TextArray(items) => Box::new(items),
            }
        })
        .collect()
}

fn references(values: &Values) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

fn wants_exact_count(request: &HttpRequest) -> bool {
    request
        .headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|preference| preference.trim() == "count=exact")
}

fn wants_object(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/vnd.pgrst.object+json"))
}

/// What every data request starts from: its filters, the table, the caller's
/// variables for policy conditions.
struct Target {
    query: ReadQuery,
    table: Table,
    object: String,
}

async fn target(
    state: &AppState,
    client: &impl GenericClient,
    caller: &Caller,
    request: &HttpRequest,
    name: &str,
    action: &str,
) -> Result<Target, HttpError> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(request.query_string().as_bytes())
            .into_owned()
            .collect();
    let query = parse_read(&pairs).map_err(invalid_query)?;
    let schema = &state.config.rest.schema;
    let object = format!("table:{schema}.{name}");
    // Decide before looking the table up, so an answer never tells a caller
    // without access whether a table exists.
    let coarse = state
        .authz
        .authorize(&subject_of(state, caller), &object, action);
    if !coarse.allowed {
        return Err(refusal(
            caller,
            coarse.reason,
            "An admin can see why with POST /admin/v1/policies/explain.".into(),
        ));
    }
    let table = load_table(client, schema, name, is_service_key(caller)).await?;
    Ok(Target {
        query,
        table,
        object,
    })
}

fn is_service_key(caller: &Caller) -> bool {
    caller.role == crate::authz::engine::SERVICE_ROLE && caller.user.is_none()
}

/// 401 when only the anon key was sent (like PostgREST), 403 for a user.
fn refusal(caller: &Caller, reason: String, hint: String) -> HttpError {
    let api = if caller.user.is_none() {
        ApiError::new(ErrorCode::LoginRequired)
    } else {
        ApiError::new(ErrorCode::Forbidden).with_message("Your policies do not allow this.")
    };
    api.with_details(reason).with_hint(hint).into()
}

/// The policy decision for `action` with the columns the request touches;
/// a refusal is 401 for the anon key (like PostgREST) and 403 for a user.
fn decide(
    state: &AppState,
    caller: &Caller,
    target: &Target,
    action: &str,
    columns: &[String],
) -> Result<Decision, HttpError> {
    let subject = subject_of(state, caller);
    let decision = state
        .authz
        .authorize_columns(&subject, &target.object, action, columns);
    if decision.allowed {
        return Ok(decision);
    }
    // Would fewer columns do? Then say which.
    let broader = state.authz.authorize(&subject, &target.object, action);
    let hint = match (broader.allowed, &broader.columns) {
        (true, Some(allowed)) => format!("You may {action} these columns: {}.", allowed.join(", ")),
        _ => "An admin can see why with POST /admin/v1/policies/explain.".into(),
    };
    Err(refusal(caller, decision.reason, hint))
}

/// The values policy conditions read: `{auth.uid}`, `{auth.role}`, `{auth.claims.…}`.
fn variables<'a>(caller: &'a Caller, uid: &'a Option<String>) -> Variables<'a> {
    Variables {
        uid: uid.as_deref(),
        role: &caller.role,
        claims: &caller.claims,
    }
}

fn uid_of(caller: &Caller) -> Option<String> {
    caller.user.map(|(user, _)| user.to_string())
}

/// Runs statements in one transaction as the caller (read-only for reads);
/// returns each statement's first row. Commits only when `commit` says so.
async fn in_transaction(
    state: &AppState,
    client: &mut deadpool_postgres::Object,
    caller: &Caller,
    table: &Table,
    read_only: bool,
    statements: Vec<(String, Vec<Param>)>,
    commit: impl FnOnce(&[tokio_postgres::Row]) -> Result<(), HttpError>,
) -> Result<Vec<tokio_postgres::Row>, HttpError> {
    let bypass = is_service_key(caller);
    let role = rls::database_role(&state.config.authz, caller.user.is_some()).to_owned();
    let token = client.cancel_token();
    let transaction = client
        .build_transaction()
        .read_only(read_only)
        .start()
        .await
        .map_err(db::failed)?;
    if bypass {
        rls::set_claims(&transaction, &caller.claims)
            .await
            .map_err(db::failed)?;
    } else {
        rls::act_as(&transaction, &role, &caller.claims)
            .await
            .map_err(db::failed)?;
    }
    let mut rows = Vec::new();
    for (sql, params) in statements {
        let values = boxed(params);
        // Armed only while the statement runs: if the request is dropped
        // then (a timeout), the statement is cancelled; once it has returned,
        // a late cancel must not hit the next user of this connection.
        let mut running = CancelOnDrop::new(token.clone(), state.tls.clone());
        let result = transaction.query_one(&sql, &references(&values)).await;
        running.disarm();
        rows.push(result.map_err(|e| query_failed(e, &role, table))?);
    }
    let verdict = commit(&rows);
    if verdict.is_ok() && !read_only {
        transaction.commit().await.map_err(db::failed)?;
    } else {
        transaction.rollback().await.map_err(db::failed)?;
    }
    verdict.map(|()| rows)
}

async fn read(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let mut client = state.pool.get().await.map_err(db::unavailable)?;
    let target = target(&state, &client, &caller, &request, &path, "select").await?;
    // The columns this read touches: what it selects (all for `*`), filters and orders by.
    let mut columns = target.query.named_columns();
    if target.query.select == Select::All {
        columns.extend(target.table.column_names());
        columns.sort();
        columns.dedup();
    }
    let decision = decide(&state, &caller, &target, "select", &columns)?;
    let uid = uid_of(&caller);
    let variables = variables(&caller, &uid);
    let condition = decision.condition.as_ref();
    let mut statements = vec![read_sql(
        &target.table,
        &target.query,
        condition,
        &variables,
        state.config.rest.max_rows,
    )
    .map_err(invalid_query)?];
    let counted = wants_exact_count(&request);
    if counted {
        statements.push(
            count_sql(&target.table, &target.query, condition, &variables)
                .map_err(invalid_query)?,
        );
    }
    let rows = in_transaction(
        &state,
        &mut client,
        &caller,
        &target.table,
        true,
        statements,
        |_| Ok(()),
    )
    .await?;
    let (body, returned): (String, i64) = (rows[0].get(0), rows[0].get(1));
    let total: Option<i64> = counted.then(|| rows[1].get(0));

    let offset = target.query.offset.unwrap_or(0) as i64;
    let range = match (returned, total) {
        (0, Some(total)) => format!("*/{total}"),
        (0, None) => "*/*".to_owned(),
        (n, Some(total)) => format!("{offset}-{}/{total}", offset + n - 1),
        (n, None) => format!("{offset}-{}/*", offset + n - 1),
    };
    if wants_object(&request) {
        return match returned {
            // The array of one object without its brackets: the object as
            // PostgreSQL wrote it, keys in the selected order.
            1 => Ok(HttpResponse::Ok()
                .content_type("application/vnd.pgrst.object+json")
                .insert_header(("content-range", range))
                .body(body[1..body.len() - 1].to_owned())),
            0 => Err(ErrorCode::RowNotFound.into()),
            n => Err(ApiError::new(ErrorCode::NotSingleRow)
                .with_details(format!("{n} rows match"))
                .into()),
        };
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("content-range", range))
        .body(body))
}

fn wants_representation(request: &HttpRequest) -> bool {
    request
        .headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|preference| preference.trim() == "return=representation")
}

/// Refuses a write whose rows would break the policy's condition: the
/// statement's second column counts them.
fn no_violations(rows: &[tokio_postgres::Row]) -> Result<(), HttpError> {
    let violating: i64 = rows[0].get(1);
    if violating == 0 {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::RowViolatesPolicy)
            .with_details(format!(
                "{violating} written row(s) would not match your policy's condition"
            ))
            .into())
    }
}

/// The answer to a write: with `Prefer: return=representation`, the written
/// rows, showing only the columns the caller may select.
fn written(
    state: &AppState,
    caller: &Caller,
    target: &Target,
    request: &HttpRequest,
    rows: &[tokio_postgres::Row],
    status: actix_web::http::StatusCode,
) -> HttpResponse {
    if !wants_representation(request) {
        return if status == actix_web::http::StatusCode::CREATED {
            HttpResponse::Created().finish()
        } else {
            HttpResponse::NoContent().finish()
        };
    }
    let body: String = rows[0].get(0);
    let select = state
        .authz
        .authorize(&subject_of(state, caller), &target.object, "select");
    let body = match (select.allowed, select.columns) {
        (true, None) => body,
        (false, _) => "[]".to_owned(),
        (true, Some(visible)) => {
            let mut rows: Vec<serde_json::Map<String, serde_json::Value>> =
                serde_json::from_str(&body).unwrap_or_default();
            for row in &mut rows {
                row.retain(|column, _| visible.contains(column));
            }
            serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into())
        }
    };
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body)
}

/// `POST /rest/v1/<table>`: one object or an array of objects, in one statement.
async fn insert(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, HttpError> {
    let mut client = state.pool.get().await.map_err(db::unavailable)?;
    let target = target(&state, &client, &caller, &request, &path, "insert").await?;
    let columns = body_columns(&body).map_err(invalid_query)?;
    // Only policies granting every written column count: no mass assignment.
    let decision = decide(&state, &caller, &target, "insert", &columns)?;
    let rows_json = match body.into_inner() {
        object @ serde_json::Value::Object(_) => serde_json::Value::Array(vec![object]),
        array => array,
    }
    .to_string();
    let uid = uid_of(&caller);
    let variables = variables(&caller, &uid);
    let statement = insert_sql(
        &target.table,
        rows_json,
        &columns,
        decision.condition.as_ref(),
        &variables,
    )
    .map_err(invalid_query)?;
    let rows = in_transaction(
        &state,
        &mut client,
        &caller,
        &target.table,
        false,
        vec![statement],
        no_violations,
    )
    .await?;
    Ok(written(
        &state,
        &caller,
        &target,
        &request,
        &rows,
        actix_web::http::StatusCode::CREATED,
    ))
}

fn require_filter(state: &AppState, target: &Target) -> Result<(), HttpError> {
    if target.query.filters.is_empty() && !state.config.rest.allow_unfiltered_writes {
        Err(ErrorCode::FilterRequired.into())
    } else {
        Ok(())
    }
}

/// `PATCH /rest/v1/<table>?filters`: sets the body's columns on the matching
/// rows the caller may update; the updated rows must still match the condition.
async fn update(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, HttpError> {
    let mut client = state.pool.get().await.map_err(db::unavailable)?;
    let target = target(&state, &client, &caller, &request, &path, "update").await?;
    require_filter(&state, &target)?;
    if !body.is_object() {
        return Err(invalid_query(FilterError::new(
            "the body of a PATCH must be one JSON object",
        )));
    }
    // The decision covers the columns written; filters only pick rows.
    let set = body_columns(&body).map_err(invalid_query)?;
    let decision = decide(&state, &caller, &target, "update", &set)?;
    let uid = uid_of(&caller);
    let variables = variables(&caller, &uid);
    let statement = update_sql(
        &target.table,
        body.to_string(),
        &set,
        &target.query,
        decision.condition.as_ref(),
        &variables,
    )
    .map_err(invalid_query)?;
    let rows = in_transaction(
        &state,
        &mut client,
        &caller,
        &target.table,
        false,
        vec![statement],
        no_violations,
    )
    .await?;
    Ok(written(
        &state,
        &caller,
        &target,
        &request,
        &rows,
        actix_web::http::StatusCode::OK,
    ))
}

/// `DELETE /rest/v1/<table>?filters`: deletes the matching rows the caller may delete.
async fn delete(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let mut client = state.pool.get().await.map_err(db::unavailable)?;
    let target = target(&state, &client, &caller, &request, &path, "delete").await?;
    require_filter(&state, &target)?;
    let decision = decide(
        &state,
        &caller,
        &target,
        "delete",
        &target.query.named_columns(),
    )?;
    let uid = uid_of(&caller);
    let variables = variables(&caller, &uid);
    let statement = delete_sql(
        &target.table,
        &target.query,
        decision.condition.as_ref(),
        &variables,
    )
    .map_err(invalid_query)?;
    let rows = in_transaction(
        &state,
        &mut client,
        &caller,
        &target.table,
        false,
        vec![statement],
        |_| Ok(()),
    )
    .await?;
    Ok(written(
        &state,
        &caller,
        &target,
        &request,
        &rows,
        actix_web::http::StatusCode::OK,
    ))
}
