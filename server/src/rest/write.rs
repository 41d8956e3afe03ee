//! `POST` (insert, bulk, upsert), `PUT` (single-row upsert by primary key),
//! `PATCH` and `DELETE` on `/rest/v1/<table>`.

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
use basalt_core::filter::{Expr, FilterError, Op, Operand, Term};
use basalt_core::rest::request::{Resolution, Return};
use basalt_core::rest::{
    body_columns, check_values, delete_sql, insert_sql, update_sql, Conflict, InsertOptions,
    SelectItem, Table,
};
use serde_json::{Map, Value};

/// The written rows' JSON (first column of a write statement).
fn rows_of(row: &tokio_postgres::Row) -> Vec<Map<String, Value>> {
    serde_json::from_str(&row.get::<_, String>(0)).unwrap_or_default()
}

/// Refuses a write whose rows would break the policy's condition (the
/// statement's second column counts them), and one that changed more rows
/// than `Prefer: max-affected` allows (its third column).
fn checked(row: &tokio_postgres::Row, prefer: &Prefer) -> Result<i64, HttpError> {
    let violating: i64 = row.get(1);
    let written: i64 = row.get(2);
    if violating != 0 {
        return Err(ApiError::new(ErrorCode::RowViolatesPolicy)
            .with_details(format!(
                "{violating} written row(s) would not match your policy's condition"
            ))
            .into());
    }
    if let Some(max) = prefer.max_affected {
        if written > max {
            return Err(ApiError::new(ErrorCode::MaxAffectedExceeded)
                .with_details(format!(
                    "{written} rows would change; max-affected is {max}"
                ))
                .into());
        }
    }
    Ok(written)
}

/// The rows as the caller may see them: only columns their select policy
/// allows, shaped by `select=` (plain columns and renames).
pub fn representation(
    state: &AppState,
    caller: &Caller,
    target: &Target,
    rows: Vec<Map<String, Value>>,
) -> Result<String, HttpError> {
    let select = state
        .authz()
        .authorize(&subject_of(state, caller), &target.object, "select");
    if !select.allowed {
        return Ok("[]".into());
    }
    // Per row, only what a GET could read: the columns of the policies
    // whose condition holds on that row.
    let grants = select.grants();
    let uid = uid_of(caller);
    let variables = variables(caller, &uid);
    let mut shaped = Vec::new();
    for row in rows {
        let Some(columns) =
            basalt_core::policy::visible_columns(&grants, &Value::Object(row.clone()), &variables)
        else {
            continue;
        };
        let visible = |column: &str| {
            columns
                .as_ref()
                .is_none_or(|c| c.iter().any(|v| v == column))
        };
        let mut out = Map::new();
        if target.query.selects_all() {
            for (column, value) in &row {
                if visible(column) {
                    out.insert(column.clone(), value.clone());
                }
            }
        }
        for item in &target.query.select {
            match item {
                SelectItem::Star => {}
                SelectItem::Field(field)
                    if field.cast.is_none() && !field.column.contains("->") =>
                {
                    if !row.contains_key(&field.column) {
                        return Err(FilterError::new(format!(
                            "`{}` has no column `{}`",
                            target.table.name, field.column
                        ))
                        .into());
                    }
                    if visible(&field.column) {
                        out.insert(field.output_name(), row[&field.column].clone());
                    }
                }
                _ => {
                    return Err(FilterError::new(
                        "a write's select= takes columns and renames only",
                    )
                    .with_hint("read embedded resources with a GET after the write")
                    .into())
                }
            }
        }
        shaped.push(Value::Object(out));
    }
    Ok(Value::Array(shaped).to_string())
}

/// The reply to a write, as `Prefer: return=` asks: the rows
/// (`representation`), a `Location` for one inserted row (`headers-only`),
/// or nothing (`minimal`, the default).
pub fn reply(
    state: &AppState,
    caller: &Caller,
    target: &Target,
    prefer: &Prefer,
    row: &tokio_postgres::Row,
    status: StatusCode,
) -> Result<Reply, HttpError> {
    let rows = rows_of(row);
    let empty = if status == StatusCode::CREATED {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    };
    let mut reply = match prefer.return_ {
        Some(Return::Representation) => {
            Reply::json(status, representation(state, caller, target, rows)?)
        }
        Some(Return::HeadersOnly) => {
            let mut reply = Reply::new(empty);
            let may_read = state
                .authz()
                .authorize(&subject_of(state, caller), &target.object, "select")
                .allowed;
            if let ([row], false, true) = (&rows[..], target.table.primary_key.is_empty(), may_read)
            {
                let filters: Vec<String> = target
                    .table
                    .primary_key
                    .iter()
                    .map(|key| {
                        let value = match &row[key] {
                            Value::String(text) => text.clone(),
                            other => other.to_string(),
                        };
                        format!(
                            "{}=eq.{}",
                            url::form_urlencoded::byte_serialize(key.as_bytes())
                                .collect::<String>(),
                            url::form_urlencoded::byte_serialize(value.as_bytes())
                                .collect::<String>()
                        )
                    })
                    .collect();
                reply = reply.header(
                    "location",
                    format!(
                        "/rest/v1/{}?{}",
                        url::form_urlencoded::byte_serialize(target.table.name.as_bytes())
                            .collect::<String>(),
                        filters.join("&")
                    ),
                );
            }
            reply
        }
        _ => Reply::new(empty),
    };
    let applied = prefer.applied();
    if !applied.is_empty() {
        reply = reply.header("preference-applied", applied);
    }
    Ok(reply)
}

/// An insert's body (one object or an array of objects) as the union of
/// its keys and the list of objects.
pub fn insert_rows(body: Value) -> Result<(Vec<String>, Vec<Value>), HttpError> {
    let columns = body_columns(&body)?;
    let objects = match body {
        Value::Array(items) => items,
        object => vec![object],
    };
    Ok((columns, objects))
}

/// `columns=a,b`: the keys an insert reads (others in the body are ignored).
fn listed_columns(pairs: &[(String, String)]) -> Option<Vec<String>> {
    pairs
        .iter()
        .find(|(key, _)| key == "columns")
        .map(|(_, list)| {
            let mut columns: Vec<String> = list
                .split(',')
                .map(|c| c.trim().trim_matches('"').to_owned())
                .filter(|c| !c.is_empty())
                .collect();
            columns.sort();
            columns.dedup();
            columns
        })
}

/// `on_conflict=a,b`, or the primary key.
fn conflict_target(pairs: &[(String, String)], table: &Table) -> Result<Vec<String>, HttpError> {
    let target = match pairs.iter().find(|(key, _)| key == "on_conflict") {
        Some((_, list)) => list.split(',').map(|c| c.trim().to_owned()).collect(),
        None => table.primary_key.clone(),
    };
    if target.is_empty() {
        return Err(FilterError::new(format!(
            "`{}` has no primary key to resolve conflicts on",
            table.name
        ))
        .with_hint("name a unique column: on_conflict=email")
        .into());
    }
    Ok(target)
}

/// A write's statement and what its result must show.
pub struct WritePlan {
    pub step: Step,
    pub check: WriteCheck,
}

#[derive(Debug, Clone, Copy)]
pub struct WriteCheck {
    /// For a merge: every object must have been written (inserted or
    /// merged); fewer means the update policy skipped existing rows.
    merged_objects: Option<i64>,
}

impl WriteCheck {
    /// Checks the statement's row (see [`checked`]).
    pub fn check(&self, row: &tokio_postgres::Row, prefer: &Prefer) -> Result<(), HttpError> {
        let written = checked(row, prefer)?;
        match self.merged_objects {
            Some(count) if written < count => Err(ApiError::new(ErrorCode::RowViolatesPolicy)
                .with_details(format!(
                    "{} existing row(s) may not be updated under your policies",
                    count - written
                ))
                .into()),
            _ => Ok(()),
        }
    }
}

/// 400 `invalid_value` naming the column whose value does not fit its type.
fn values_fit(table: &Table, objects: &[Value]) -> Result<(), HttpError> {
    check_values(table, objects).map_err(|error| {
        let mut api = ApiError::new(ErrorCode::InvalidValue).with_details(error.message);
        if let Some(hint) = error.hint {
            api = api.with_hint(hint);
        }
        HttpError::from(api)
    })
}

/// The caller's `select` row condition, which limits the rows a
/// representation shows (the columns are limited in [`representation`]).
fn shown(state: &AppState, caller: &Caller, target: &Target) -> Option<Expr> {
    let select = state
        .authz()
        .authorize(&subject_of(state, caller), &target.object, "select");
    select.condition.filter(|_| select.allowed)
}

/// Plans an insert (or upsert on `conflict_on`) of `objects`.
pub fn plan_insert(
    state: &AppState,
    caller: &Caller,
    target: &Target,
    prefer: &Prefer,
    objects: Vec<Value>,
    columns: Vec<String>,
    conflict_on: Option<Vec<String>>,
) -> Result<WritePlan, HttpError> {
    // Only policies granting every written column count: no mass assignment.
    let decision = decide(state, caller, &target.object, "insert", &columns)?;
    values_fit(&target.table, &objects)?;
    let count = objects.len() as i64;
    let conflict = match (prefer.resolution, conflict_on) {
        (Some(Resolution::IgnoreDuplicates), Some(on)) => Conflict::Ignore { target: on },
        (_, Some(on)) => Conflict::Merge {
            target: on,
            condition: decide(state, caller, &target.object, "update", &columns)?.condition,
        },
        (_, None) => Conflict::Fail,
    };
    let merging = matches!(conflict, Conflict::Merge { .. });
    let uid = uid_of(caller);
    let variables = variables(caller, &uid);
    let statement = insert_sql(
        &target.table,
        Value::Array(objects).to_string(),
        &columns,
        decision.condition.as_ref(),
        &variables,
        &InsertOptions {
            conflict,
            missing_default: prefer.missing_default,
        },
        shown(state, caller, target).as_ref(),
    )?;
    Ok(WritePlan {
        step: Step::new(statement, &target.table.qualified()),
        check: WriteCheck {
            merged_objects: merging.then_some(count),
        },
    })
}

/// The target's filters, limited to the rows whose filtered columns a GET
/// could read: the select decision for those columns (only policies that
/// cover them all count) adds its row condition. Otherwise a filter on a
/// column the caller may not read would probe its values, through
/// `max-affected` or which rows changed. As in PostgreSQL, where an UPDATE's
/// or DELETE's WHERE needs SELECT on the columns it reads.
fn readable_filters(
    state: &AppState,
    caller: &Caller,
    target: &Target,
) -> Result<basalt_core::rest::ReadQuery, HttpError> {
    let mut query = target.query.clone();
    let filtered = query.filter_columns();
    if filtered.is_empty() {
        return Ok(query);
    }
    let readable = state.authz().authorize_columns(
        &subject_of(state, caller),
        &target.object,
        "select",
        &filtered,
    );
    if !readable.allowed {
        return Err(ApiError::new(ErrorCode::Forbidden)
            .with_message("Your policies do not allow this.")
            .with_details(format!(
                "the request filters on {}, which you may not read",
                filtered.join(", ")
            ))
            .with_hint("filter on columns your policies let you read")
            .into());
    }
    query.filters.extend(readable.condition);
    Ok(query)
}

/// Plans a `PATCH` of the target's rows with `patch` (one object).
pub fn plan_update(
    state: &AppState,
    caller: &Caller,
    target: &Target,
    patch: &Value,
) -> Result<WritePlan, HttpError> {
    require_filter(state, target)?;
    if !patch.is_object() {
        return Err(FilterError::new("the body of an update must be one JSON object").into());
    }
    // The decision covers the columns written; the filters read only what
    // a GET could (see `readable_filters`).
    let set = body_columns(patch)?;
    let decision = decide(state, caller, &target.object, "update", &set)?;
    let query = readable_filters(state, caller, target)?;
    values_fit(&target.table, std::slice::from_ref(patch))?;
    let uid = uid_of(caller);
    let variables = variables(caller, &uid);
    let statement = update_sql(
        &target.table,
        patch.to_string(),
        &set,
        &query,
        decision.condition.as_ref(),
        &variables,
        shown(state, caller, target).as_ref(),
    )?;
    Ok(WritePlan {
        step: Step::new(statement, &target.table.qualified()),
        check: WriteCheck {
            merged_objects: None,
        },
    })
}

/// Plans a `DELETE` of the target's rows.
pub fn plan_delete(
    state: &AppState,
    caller: &Caller,
    target: &Target,
) -> Result<WritePlan, HttpError> {
    require_filter(state, target)?;
    let decision = decide(state, caller, &target.object, "delete", &[])?;
    let query = readable_filters(state, caller, target)?;
    let uid = uid_of(caller);
    let variables = variables(caller, &uid);
    let statement = delete_sql(
        &target.table,
        &query,
        decision.condition.as_ref(),
        &variables,
        shown(state, caller, target).as_ref(),
    )?;
    Ok(WritePlan {
        step: Step::new(statement, &target.table.qualified()),
        check: WriteCheck {
            merged_objects: None,
        },
    })
}

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
        FilterError::new("PUT takes the primary key as filters and nothing else")
            .with_hint(format!(
                "write PUT /rest/v1/{}?{}",
                target.table.name,
                target
                    .table
                    .primary_key
                    .iter()
                    .map(|k| format!("{k}=eq.<value>"))
                    .collect::<Vec<_>>()
                    .join("&")
            ))
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
        return Err(FilterError::new("the body of a PUT must be one JSON object").into());
    };
    for (key, value) in &keys {
        let given = match object.get(key) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        if given.as_deref() != Some(value.as_str()) {
            return Err(FilterError::new(format!(
                "the body's `{key}` must equal the filter's value `{value}`"
            ))
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
        return Err(FilterError::new(format!(
            "PUT replaces the whole row; the body lacks {}",
            missing.join(", ")
        ))
        .with_hint("send every column, or use PATCH to change some")
        .into());
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

/// A `PATCH` or `DELETE` needs a filter (unless the config allows none),
/// and takes no `order`, `limit` or `offset`: refused rather than ignored,
/// so `limit=1` never silently changes every matching row.
fn require_filter(state: &AppState, target: &Target) -> Result<(), HttpError> {
    let query = &target.query;
    if !query.order.is_empty() || query.limit.is_some() || query.offset.is_some() {
        return Err(FilterError::new(
            "order, limit and offset do not apply to updates and deletes",
        )
        .with_hint("select the rows with filters, e.g. id=eq.1")
        .into());
    }
    if query.filters.is_empty() && !state.config.rest.allow_unfiltered_writes {
        Err(ErrorCode::FilterRequired.into())
    } else {
        Ok(())
    }
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
