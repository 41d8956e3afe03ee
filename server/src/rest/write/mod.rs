//! `POST` (insert, bulk, upsert), `PUT` (single-row upsert by primary key),
//! `PATCH` and `DELETE` on `/rest/v1/<table>`.

mod plan;
mod reply;

pub use plan::*;
pub use reply::*;

use super::idempotency::Idempotency;
use super::{decide, table_request, tx, uid_of, variables, Prefer, Reply, Step, Target};
use crate::authz::routes::subject_of;
use crate::error::HttpError;
use crate::identity::Caller;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::filter::Expr;
use basalt_core::rest::request::{self, Format, Resolution, Return, Shaping, OBJECT};
use basalt_core::rest::{
    body_columns, check_values, delete_sql, insert_sql, put_row, update_sql, Conflict,
    InsertOptions, SelectItem, Table, WriteError,
};
use serde_json::{Map, Value};

/// Runs one planned write and answers it.
#[allow(clippy::too_many_arguments)]
async fn run(
    state: &AppState,
    caller: &Caller,
    request: &HttpRequest,
    target: &Target,
    prefer: &Prefer,
    plan: WritePlan,
    body: &Value,
    outcome: Outcome,
) -> Result<HttpResponse, HttpError> {
    let idempotency = Idempotency::of(request, state, caller, body.to_string().as_bytes())?;
    let accept = request
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok());
    let shape = match request::format(accept) {
        Some(Format::Object) => Shape::Object,
        _ => Shape::Rows,
    };
    // Nothing in the reply can refuse this write once its statement
    // succeeded: its COMMIT goes with it (`tx::write_at_once`).
    let at_once = plan.unconditional
        && prefer.max_affected.is_none()
        && shape == Shape::Rows
        && !matches!(prefer.return_, Some(Return::Representation))
        && idempotency.is_none();
    let check = plan.check;
    let respond = |rows: &[tokio_postgres::Row]| {
        check.check(&rows[0], prefer)?;
        reply(state, caller, target, prefer, &rows[0], outcome, shape)
    };
    let reply = if prefer.rollback {
        tx::write_then_roll_back(state, caller, vec![plan.step], respond).await?
    } else if at_once {
        tx::write_at_once(state, caller, vec![plan.step], respond).await?
    } else {
        tx::write(
            state,
            caller,
            idempotency.as_ref(),
            vec![plan.step],
            respond,
        )
        .await?
    };
    Ok(reply.into_response())
}

/// `POST /rest/v1/<table>`: one object or an array of objects, in one
/// statement; with `Prefer: resolution=…` an upsert on `on_conflict=` (or
/// the primary key).
pub async fn insert(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, HttpError> {
    let (prefer, pairs, target) = table_request(&state, &caller, &request, &path, "insert").await?;
    let (body_keys, objects) = insert_rows(body.into_inner())?;
    let columns = Shaping::parse(&pairs).columns.unwrap_or(body_keys);
    let conflict_on = match prefer.resolution {
        Some(_) => Some(conflict_target(&pairs, &target.table)?),
        None => None,
    };
    let fingerprint = Value::Array(objects.clone());
    let outcome = match prefer.resolution {
        Some(_) => Outcome::Upserted,
        None => Outcome::Created,
    };
    let plan = plan_insert(
        &state,
        &caller,
        &target,
        &prefer,
        objects,
        columns,
        conflict_on,
    )?;
    run(
        &state,
        &caller,
        &request,
        &target,
        &prefer,
        plan,
        &fingerprint,
        outcome,
    )
    .await
}

/// `PUT /rest/v1/<table>?pk=eq.v`: creates or replaces the one row with this
/// primary key; the body holds every column, its key equal to the filters.
pub async fn put(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, HttpError> {
    let (prefer, _, target) = table_request(&state, &caller, &request, &path, "insert").await?;
    let (columns, body) = put_row(&target.table, &target.query, body.into_inner())?;
    let merge = Prefer {
        resolution: Some(Resolution::MergeDuplicates),
        ..prefer.clone()
    };
    let plan = plan_insert(
        &state,
        &caller,
        &target,
        &merge,
        vec![body.clone()],
        columns,
        Some(target.table.primary_key.clone()),
    )?;
    run(
        &state,
        &caller,
        &request,
        &target,
        &merge,
        plan,
        &body,
        Outcome::Upserted,
    )
    .await
}

/// `PATCH /rest/v1/<table>?filters`: sets the body's columns on the matching
/// rows the caller may update; the updated rows must still match the condition.
pub async fn update(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, HttpError> {
    let (prefer, _, target) = table_request(&state, &caller, &request, &path, "update").await?;
    let plan = plan_update(&state, &caller, &target, &body)?;
    run(
        &state,
        &caller,
        &request,
        &target,
        &prefer,
        plan,
        &body,
        Outcome::Changed,
    )
    .await
}

/// `DELETE /rest/v1/<table>?filters`: deletes the matching rows the caller may delete.
pub async fn delete(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let (prefer, _, target) = table_request(&state, &caller, &request, &path, "delete").await?;
    let plan = plan_delete(&state, &caller, &target)?;
    run(
        &state,
        &caller,
        &request,
        &target,
        &prefer,
        plan,
        &Value::Null,
        Outcome::Changed,
    )
    .await
}
