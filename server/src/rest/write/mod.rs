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
use basalt_core::filter::{Expr, Op, Operand, Term};
use basalt_core::rest::request::{Resolution, Return};
use basalt_core::rest::{
    body_columns, check_values, delete_sql, insert_sql, update_sql, Conflict, InsertOptions,
    SelectItem, Table, WriteError,
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
    status: StatusCode,
) -> Result<HttpResponse, HttpError> {
    let idempotency = Idempotency::of(request, state, caller, body.to_string().as_bytes())?;
    let check = plan.check;
    let reply = tx::write(
        state,
        caller,
        idempotency.as_ref(),
        vec![plan.step],
        |rows| {
            check.check(&rows[0], prefer)?;
            reply(state, caller, target, prefer, &rows[0], status)
        },
    )
    .await?;
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
    let columns = listed_columns(&pairs).unwrap_or(body_keys);
    let conflict_on = match prefer.resolution {
        Some(_) => Some(conflict_target(&pairs, &target.table)?),
        None => None,
    };
    let fingerprint = Value::Array(objects.clone());
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
        StatusCode::CREATED,
    )
    .await
}

/// The `column=eq.value` filters of a PUT, which must name the primary key
/// exactly.
fn key_filters(target: &Target) -> Result<Vec<(String, String)>, HttpError> {
    let wrong = || -> HttpError {
        WriteError::PutFilters {
            table: target.table.name.clone(),
            key: target.table.primary_key.clone(),
        }
        .into()
    };
    let mut keys = Vec::new();
    for filter in &target.query.filters {
        match filter {
            Expr::Filter(f) if f.op == Op::Eq && f.quantifier.is_none() => match &f.operand {
                Operand::Scalar(Term::Literal(value)) => {
                    keys.push((f.column.clone(), value.clone()))
                }
                _ => return Err(wrong()),
            },
            _ => return Err(wrong()),
        }
    }
    let mut named: Vec<&String> = keys.iter().map(|(k, _)| k).collect();
    named.sort();
    let mut primary: Vec<&String> = target.table.primary_key.iter().collect();
    primary.sort();
    if primary.is_empty() || named != primary {
        return Err(wrong());
    }
    Ok(keys)
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
    let keys = key_filters(&target)?;
    let Value::Object(object) = body.into_inner() else {
        return Err(WriteError::NotOneObject { method: "a PUT" }.into());
    };
    for (key, value) in &keys {
        let given = match object.get(key) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        if given.as_deref() != Some(value.as_str()) {
            return Err(WriteError::PutKeyMismatch {
                column: key.clone(),
                value: value.clone(),
            }
            .into());
        }
    }
    let missing: Vec<String> = target
        .table
        .column_names()
        .into_iter()
        .filter(|column| !object.contains_key(column))
        .collect();
    if !missing.is_empty() {
        return Err(WriteError::PutMissing { columns: missing }.into());
    }
    let mut columns: Vec<String> = object.keys().cloned().collect();
    columns.sort();
    let merge = Prefer {
        resolution: Some(Resolution::MergeDuplicates),
        ..prefer.clone()
    };
    let body = Value::Object(object);
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
        StatusCode::OK,
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
        StatusCode::OK,
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
        StatusCode::OK,
    )
    .await
}
